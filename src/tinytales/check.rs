//! Checks the world's rules on free text (a story a model wrote), without labels.
//!
//! - quotes: an even number of `"` (straight double quotes; TinyTales writes no others);
//! - parentheses / square brackets: every closer has an opener before it, and all are closed;
//! - pronouns: every gendered pronoun (he, him, his, himself, she, her, hers, herself, any case)
//!   has the gender of the most recently mentioned character name (from the world's name
//!   lists, capitalised, possessive "Mia's" included); a pronoun before any name fails; a
//!   story with no pronouns passes;
//! - ending: the last sentence is exactly one of the world's endings ("The end.", ...),
//!   preceded by nothing or by the end of another sentence.

use super::world::{self, Gender};
use serde::{Deserialize, Serialize};

/// Which of the world's rules a story keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoryCheck {
    pub balanced_quotes: bool,
    pub balanced_parens: bool,
    pub balanced_brackets: bool,
    pub pronouns_agree: bool,
    pub proper_ending: bool,
}

impl StoryCheck {
    /// Whether the story keeps every rule.
    pub fn passes_all(&self) -> bool {
        self.balanced_quotes
            && self.balanced_parens
            && self.balanced_brackets
            && self.pronouns_agree
            && self.proper_ending
    }

    /// The names of the rules the story breaks.
    pub fn broken_rules(&self) -> Vec<&'static str> {
        [
            ("balanced_quotes", self.balanced_quotes),
            ("balanced_parens", self.balanced_parens),
            ("balanced_brackets", self.balanced_brackets),
            ("pronouns_agree", self.pronouns_agree),
            ("proper_ending", self.proper_ending),
        ]
        .into_iter()
        .filter(|&(_, kept)| !kept)
        .map(|(name, _)| name)
        .collect()
    }
}

/// Checks one story (see the module docs for the rules).
pub fn check_story(text: &str) -> StoryCheck {
    StoryCheck {
        balanced_quotes: text.bytes().filter(|&b| b == b'"').count() % 2 == 0,
        balanced_parens: balanced(text, b'(', b')'),
        balanced_brackets: balanced(text, b'[', b']'),
        pronouns_agree: pronouns_agree(text),
        proper_ending: proper_ending(text),
    }
}

fn balanced(text: &str, open: u8, close: u8) -> bool {
    let mut depth = 0usize;
    for b in text.bytes() {
        if b == open {
            depth += 1;
        } else if b == close {
            if depth == 0 {
                return false;
            }
            depth -= 1;
        }
    }
    depth == 0
}

fn pronouns_agree(text: &str) -> bool {
    let mut last: Option<Gender> = None;
    for (s, e) in world::words(text) {
        let word = &text[s..e];
        let stem = word.strip_suffix("'s").unwrap_or(word);
        if let Some(g) = world::name_gender(stem) {
            last = Some(g);
        } else if let Some(g) = world::pronoun_gender(word)
            && last != Some(g)
        {
            return false;
        }
    }
    true
}

fn proper_ending(text: &str) -> bool {
    let text = text.trim_end();
    world::ENDINGS.iter().any(|ending| {
        let Some(before) = text.strip_suffix(ending) else {
            return false;
        };
        if before.is_empty() {
            return true;
        }
        if !before.ends_with(|c: char| c.is_whitespace()) {
            return false;
        }
        let before = before.trim_end();
        let before = before.trim_end_matches(['"', ')', ']']);
        before.ends_with(['.', '!', '?'])
    })
}

/// Counts of stories keeping each rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTally {
    pub stories: usize,
    pub balanced_quotes: usize,
    pub balanced_parens: usize,
    pub balanced_brackets: usize,
    pub pronouns_agree: usize,
    pub proper_ending: usize,
    pub passes_all: usize,
}

impl CheckTally {
    pub fn add(&mut self, c: &StoryCheck) {
        self.stories += 1;
        self.balanced_quotes += c.balanced_quotes as usize;
        self.balanced_parens += c.balanced_parens as usize;
        self.balanced_brackets += c.balanced_brackets as usize;
        self.pronouns_agree += c.pronouns_agree as usize;
        self.proper_ending += c.proper_ending as usize;
        self.passes_all += c.passes_all() as usize;
    }

    /// The fraction of stories keeping each rule (all 0 when there are no stories).
    pub fn rates(&self) -> CheckRates {
        let r = |n: usize| {
            if self.stories == 0 {
                0.0
            } else {
                n as f64 / self.stories as f64
            }
        };
        CheckRates {
            stories: self.stories,
            balanced_quotes: r(self.balanced_quotes),
            balanced_parens: r(self.balanced_parens),
            balanced_brackets: r(self.balanced_brackets),
            pronouns_agree: r(self.pronouns_agree),
            proper_ending: r(self.proper_ending),
            passes_all: r(self.passes_all),
        }
    }
}

/// The fraction of stories keeping each rule, in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckRates {
    pub stories: usize,
    pub balanced_quotes: f64,
    pub balanced_parens: f64,
    pub balanced_brackets: f64,
    pub pronouns_agree: f64,
    pub proper_ending: f64,
    pub passes_all: f64,
}

/// Checks many stories and gives the rate of each rule. (For one text holding several stories,
/// split it first, e.g. `text.split("<|endoftext|>")`.)
pub fn check_stories<'a>(texts: impl IntoIterator<Item = &'a str>) -> CheckRates {
    let mut tally = CheckTally::default();
    for t in texts {
        tally.add(&check_story(t));
    }
    tally.rates()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Once upon a time, there was a girl named Mia. She had a dog [a small one]. \
        \"Look!\" said Mia. Tom (a boy from the farm) waved. He smiled. The end.";

    fn fails_only(text: &str, which: &str) {
        let c = check_story(text);
        let got = [
            ("balanced_quotes", c.balanced_quotes),
            ("balanced_parens", c.balanced_parens),
            ("balanced_brackets", c.balanced_brackets),
            ("pronouns_agree", c.pronouns_agree),
            ("proper_ending", c.proper_ending),
        ];
        for (name, ok) in got {
            assert_eq!(ok, name != which, "{name} on {text:?}");
        }
        assert!(!c.passes_all());
    }

    #[test]
    fn a_good_story_passes() {
        let c = check_story(GOOD);
        assert!(c.passes_all(), "{c:?}");
        assert!(check_story("The end.").passes_all());
        assert!(
            check_story("Tom ran. \"Bye!\"\n\nAnd they lived happily ever after.\n").passes_all()
        );
        assert!(
            check_story("Mia's cat was hers. She liked it. (Then she slept.) The end.")
                .passes_all()
        );
    }

    #[test]
    fn broken_stories_fail_the_right_check() {
        fails_only("Mia said, \"Look! The end.", "balanced_quotes");
        fails_only("Mia ran (fast. The end.", "balanced_parens");
        fails_only("Mia ran) (fast. The end.", "balanced_parens");
        fails_only("Mia ran [fast. The end.", "balanced_brackets");
        fails_only("Mia ran ]fast[. The end.", "balanced_brackets");
        fails_only("Mia ran. He laughed. The end.", "pronouns_agree");
        fails_only("Mia saw Tom. She laughed. The end.", "pronouns_agree");
        fails_only("She ran to Mia. The end.", "pronouns_agree"); // pronoun before any name
        fails_only(
            "Tom's hat was red. HER hat was blue. The end.",
            "pronouns_agree",
        );
        fails_only("Mia ran. She laughed.", "proper_ending");
        fails_only("Mia ran. The end. She laughed.", "proper_ending");
        fails_only("Mia ran and The end.", "proper_ending");
        fails_only("Mia ranThe end.", "proper_ending");
        fails_only("Mia ran. The end", "proper_ending");
    }

    #[test]
    fn no_pronouns_agree() {
        assert!(check_story("The cat ran. It was fast. They played.").pronouns_agree);
    }

    #[test]
    fn tally_and_rates() {
        let rates = check_stories([GOOD, "Mia ran. He laughed. The end.", "x"]);
        assert_eq!(rates.stories, 3);
        assert!((rates.pronouns_agree - 2.0 / 3.0).abs() < 1e-12);
        assert!((rates.proper_ending - 2.0 / 3.0).abs() < 1e-12);
        assert!((rates.balanced_quotes - 1.0).abs() < 1e-12);
        assert!((rates.passes_all - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(check_stories([]).passes_all, 0.0);
    }
}
