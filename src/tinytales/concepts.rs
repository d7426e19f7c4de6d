//! The concepts TinyTales labels. Each concept is described here, and only here.
//!
//! A concept's position in [`Concept::ALL`] is its bit index in a [`ConceptSet`](super::ConceptSet)
//! and its [`Concept::name`] is what files store: both are stable. Add new concepts at the end.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing a span of TinyTales text can express.
///
/// Serialises as its [`name`](Concept::name) (snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Concept {
    CharacterName = 0,
    MaleCharacter,
    FemaleCharacter,
    Pronoun,
    Animal,
    Colour,
    Size,
    NumberWord,
    Place,
    Object,
    Food,
    Weather,
    Feeling,
    TimeOfDay,
    Quotation,
    Speaker,
    Parenthetical,
    Bracketed,
    Question,
    Negation,
    PastTenseVerb,
    PluralNoun,
    StoryOpening,
    StoryEnding,
}

impl Concept {
    /// Every concept, in bit-index order.
    pub const ALL: [Concept; 24] = [
        Concept::CharacterName,
        Concept::MaleCharacter,
        Concept::FemaleCharacter,
        Concept::Pronoun,
        Concept::Animal,
        Concept::Colour,
        Concept::Size,
        Concept::NumberWord,
        Concept::Place,
        Concept::Object,
        Concept::Food,
        Concept::Weather,
        Concept::Feeling,
        Concept::TimeOfDay,
        Concept::Quotation,
        Concept::Speaker,
        Concept::Parenthetical,
        Concept::Bracketed,
        Concept::Question,
        Concept::Negation,
        Concept::PastTenseVerb,
        Concept::PluralNoun,
        Concept::StoryOpening,
        Concept::StoryEnding,
    ];

    /// How many concepts there are.
    pub const COUNT: usize = Concept::ALL.len();

    /// The bit index of this concept (its position in [`Concept::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The concept with this bit index.
    pub fn from_index(index: usize) -> Option<Concept> {
        Concept::ALL.get(index).copied()
    }

    /// Stable snake_case name, used in files and URLs.
    pub const fn name(self) -> &'static str {
        match self {
            Concept::CharacterName => "character_name",
            Concept::MaleCharacter => "male_character",
            Concept::FemaleCharacter => "female_character",
            Concept::Pronoun => "pronoun",
            Concept::Animal => "animal",
            Concept::Colour => "colour",
            Concept::Size => "size",
            Concept::NumberWord => "number_word",
            Concept::Place => "place",
            Concept::Object => "object",
            Concept::Food => "food",
            Concept::Weather => "weather",
            Concept::Feeling => "feeling",
            Concept::TimeOfDay => "time_of_day",
            Concept::Quotation => "quotation",
            Concept::Speaker => "speaker",
            Concept::Parenthetical => "parenthetical",
            Concept::Bracketed => "bracketed",
            Concept::Question => "question",
            Concept::Negation => "negation",
            Concept::PastTenseVerb => "past_tense_verb",
            Concept::PluralNoun => "plural_noun",
            Concept::StoryOpening => "story_opening",
            Concept::StoryEnding => "story_ending",
        }
    }

    /// The concept with this [`name`](Concept::name).
    pub fn from_name(name: &str) -> Option<Concept> {
        Concept::ALL.into_iter().find(|c| c.name() == name)
    }

    /// What a span labelled with this concept covers, in one sentence for people.
    pub const fn description(self) -> &'static str {
        match self {
            Concept::CharacterName => {
                "The name of a character (any gender), e.g. \"Mia\"; in \"Mia's\" only \"Mia\"."
            }
            Concept::MaleCharacter => "The name of a male character, e.g. \"Tom\".",
            Concept::FemaleCharacter => "The name of a female character, e.g. \"Mia\".",
            Concept::Pronoun => {
                "A gendered personal pronoun (he, him, his, himself, she, her, hers, herself); \
                 in TinyTales it always refers back to the most recently named character."
            }
            Concept::Animal => {
                "An animal species noun, singular or plural, e.g. \"fox\", \"mice\" (not \"pet\")."
            }
            Concept::Colour => "A colour word, e.g. \"red\".",
            Concept::Size => "A size adjective, e.g. \"big\", \"tiny\".",
            Concept::NumberWord => "A number written as a word, from \"two\" to \"twelve\".",
            Concept::Place => "A place noun, e.g. \"park\", \"forest\", \"home\".",
            Concept::Object => "An object noun (a thing to hold or use), e.g. \"kite\", \"boxes\".",
            Concept::Food => {
                "A kind of food, singular or plural, e.g. \"apple\", \"cakes\" (not \"snack\")."
            }
            Concept::Weather => {
                "A kind of weather, e.g. \"rainy\", \"snow\", \"wind\" (not the word \"weather\")."
            }
            Concept::Feeling => "A feeling adjective, e.g. \"happy\", \"scared\".",
            Concept::TimeOfDay => "A time of day: morning, afternoon, evening or night.",
            Concept::Quotation => "The words spoken inside double quotes, without the quote marks.",
            Concept::Speaker => "The name in a speech attribution, e.g. \"Mia\" in \"said Mia\".",
            Concept::Parenthetical => "The text inside round brackets, without the brackets.",
            Concept::Bracketed => "The text inside square brackets, without the brackets.",
            Concept::Question => {
                "A whole question sentence, from its first word to its '?' \
                 (inside the quotes when it is spoken)."
            }
            Concept::Negation => {
                "A negation word: not, never, no, nobody, nothing, or a contraction such as \
                 \"didn't\" (the whole word)."
            }
            Concept::PastTenseVerb => {
                "A verb in the simple past: walked, saw, was, had, did, said; also didn't, \
                 wasn't, weren't (which are negations too). Participles (named, gone, seen) \
                 and modals (could, would) are not."
            }
            Concept::PluralNoun => {
                "A plural noun, e.g. \"ducks\", \"apples\", \"friends\", \"years\"."
            }
            Concept::StoryOpening => {
                "The story's opening phrase at the very start, e.g. \"Once upon a time\"."
            }
            Concept::StoryEnding => {
                "The story's final sentence, e.g. \"The end.\" or \"And they lived happily ever after.\""
            }
        }
    }
}

// A ConceptSet is a u32 bitmask.
const _: () = assert!(Concept::COUNT <= 32);

impl fmt::Display for Concept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of concepts as a bitmask: bit `c.index()` is set when concept `c` is in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConceptSet(pub u32);

impl ConceptSet {
    pub const EMPTY: ConceptSet = ConceptSet(0);

    pub const fn single(c: Concept) -> ConceptSet {
        ConceptSet(1 << c as u32)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn contains(self, c: Concept) -> bool {
        self.0 & (1 << c as u32) != 0
    }

    pub fn insert(&mut self, c: Concept) {
        self.0 |= 1 << c as u32;
    }

    pub fn remove(&mut self, c: Concept) {
        self.0 &= !(1 << c as u32);
    }

    pub const fn union(self, other: ConceptSet) -> ConceptSet {
        ConceptSet(self.0 | other.0)
    }

    pub const fn intersection(self, other: ConceptSet) -> ConceptSet {
        ConceptSet(self.0 & other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The concepts in the set, in bit-index order.
    pub fn iter(self) -> impl Iterator<Item = Concept> {
        Concept::ALL.into_iter().filter(move |&c| self.contains(c))
    }

    /// The concepts' names, in bit-index order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Concept::name).collect()
    }
}

impl FromIterator<Concept> for ConceptSet {
    fn from_iter<I: IntoIterator<Item = Concept>>(iter: I) -> ConceptSet {
        let mut s = ConceptSet::EMPTY;
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl fmt::Display for ConceptSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_round_trip() {
        for (i, c) in Concept::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Concept::from_index(i), Some(c));
            assert_eq!(Concept::from_name(c.name()), Some(c));
            assert!(!c.description().is_empty());
            // serde uses the same name
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.name()));
            let back: Concept = serde_json::from_str(&json).unwrap();
            assert_eq!(back, c);
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(Concept::from_name("nope"), None);
        assert_eq!(Concept::from_index(Concept::COUNT), None);
    }
}
