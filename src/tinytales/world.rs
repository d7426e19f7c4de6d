//! The TinyTales world: every word list, in one place.
//!
//! The lists are disjoint, and the story templates only use a listed word in the sense its list
//! gives it (a colour word is always a colour, a past-tense form is never a participle), so a
//! word's concepts are a property of the word: [`lexicon`] labels every occurrence. Words that
//! express no concept are in [`OTHER_WORDS`]; a test keeps generated text inside this closed
//! vocabulary, so a new template word must be classified here before it can be used.

use super::concepts::Concept;
use super::concepts::ConceptSet;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A character's gender, which decides their pronouns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    /// Subject, object, possessive pronouns.
    pub const fn pronouns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Gender::Male => ("he", "him", "his"),
            Gender::Female => ("she", "her", "her"),
        }
    }

    /// "boy" or "girl".
    pub const fn child(self) -> &'static str {
        match self {
            Gender::Male => "boy",
            Gender::Female => "girl",
        }
    }
}

pub const MALE_NAMES: &[&str] = &[
    "Tom", "Ben", "Sam", "Leo", "Jack", "Noah", "Finn", "Oscar", "Theo", "Hugo", "Eli", "Luke",
    "Omar", "Ravi", "Kai", "Adam", "Owen", "Liam", "Max", "Felix", "Milo", "Otto", "Ivan", "Arlo",
];

pub const FEMALE_NAMES: &[&str] = &[
    "Mia", "Lily", "Anna", "Emma", "Zoe", "Ella", "Lucy", "Sara", "Ruby", "Maya", "Nora", "Ivy",
    "Rosa", "Lena", "Ada", "Amy", "Clara", "Hana", "Iris", "Leah", "Tara", "Nina", "Eva", "Julia",
];

/// Gendered pronouns (lowercase). Every one of them refers to a named character.
pub const MALE_PRONOUNS: &[&str] = &["he", "him", "his", "himself"];
pub const FEMALE_PRONOUNS: &[&str] = &["she", "her", "hers", "herself"];

/// (singular, plural)
pub const ANIMALS: &[(&str, &str)] = &[
    ("cat", "cats"),
    ("dog", "dogs"),
    ("fox", "foxes"),
    ("rabbit", "rabbits"),
    ("bird", "birds"),
    ("mouse", "mice"),
    ("duck", "ducks"),
    ("frog", "frogs"),
    ("owl", "owls"),
    ("bear", "bears"),
    ("horse", "horses"),
    ("goat", "goats"),
    ("pig", "pigs"),
    ("hen", "hens"),
    ("cow", "cows"),
    ("turtle", "turtles"),
    ("squirrel", "squirrels"),
    ("goose", "geese"),
    ("puppy", "puppies"),
    ("kitten", "kittens"),
    ("hedgehog", "hedgehogs"),
    ("lamb", "lambs"),
];

pub const COLOURS: &[&str] = &[
    "red", "blue", "green", "yellow", "purple", "pink", "brown", "white", "black", "grey",
    "orange", "silver",
];

/// Every size word the labels know: the stories' `THING_SIZES` and `KID_SIZES` (templates.rs).
pub const SIZES: &[&str] = &[
    "big", "small", "tiny", "huge", "little", "tall", "short", "large",
];

/// Number words, two to twelve (index 0 is "two"). "one" is never used, so it is not here.
pub const NUMBER_WORDS: &[&str] = &[
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
];

pub const PLACES: &[&str] = &[
    "park", "forest", "garden", "beach", "farm", "school", "kitchen", "river", "hill", "village",
    "market", "library", "pond", "meadow", "lake", "zoo", "castle", "house", "home", "town",
];

/// (singular, plural)
pub const OBJECTS: &[(&str, &str)] = &[
    ("ball", "balls"),
    ("kite", "kites"),
    ("box", "boxes"),
    ("book", "books"),
    ("hat", "hats"),
    ("key", "keys"),
    ("cup", "cups"),
    ("drum", "drums"),
    ("boat", "boats"),
    ("lamp", "lamps"),
    ("bell", "bells"),
    ("map", "maps"),
    ("rope", "ropes"),
    ("basket", "baskets"),
    ("spoon", "spoons"),
    ("umbrella", "umbrellas"),
    ("scarf", "scarves"),
    ("brush", "brushes"),
    ("jar", "jars"),
    ("whistle", "whistles"),
    ("crayon", "crayons"),
    ("blanket", "blankets"),
];

/// (singular, plural); all countable.
pub const FOODS: &[(&str, &str)] = &[
    ("apple", "apples"),
    ("cake", "cakes"),
    ("cookie", "cookies"),
    ("pie", "pies"),
    ("banana", "bananas"),
    ("plum", "plums"),
    ("carrot", "carrots"),
    ("sandwich", "sandwiches"),
    ("muffin", "muffins"),
    ("pear", "pears"),
    ("cherry", "cherries"),
    ("biscuit", "biscuits"),
    ("pancake", "pancakes"),
    ("strawberry", "strawberries"),
    ("egg", "eggs"),
    ("bun", "buns"),
];

/// Weather kinds: (adjective, noun). "It was a rainy morning." / "the rain".
pub const WEATHER: &[(&str, &str)] = &[
    ("sunny", "sunshine"),
    ("rainy", "rain"),
    ("windy", "wind"),
    ("snowy", "snow"),
    ("cloudy", "clouds"),
    ("foggy", "fog"),
    ("stormy", "storm"),
];

/// Indices into [`WEATHER`] of the weather that spoils a day out (nouns take "the").
pub const BAD_WEATHER: &[usize] = &[1, 2, 3, 5, 6];

pub const FEELINGS_GOOD: &[&str] = &["happy", "excited", "proud", "glad", "calm", "cheerful"];
pub const FEELINGS_BAD: &[&str] = &[
    "sad", "scared", "angry", "worried", "lonely", "upset", "nervous", "grumpy", "tired",
];

pub const TIMES_OF_DAY: &[&str] = &["morning", "afternoon", "evening", "night"];

pub const NEGATIONS: &[&str] = &[
    "not", "never", "no", "nobody", "nothing", "didn't", "don't", "doesn't", "wasn't", "weren't",
    "couldn't", "can't", "won't", "isn't",
];

/// Simple-past verb forms. Participles and modals are deliberately absent (see
/// [`Concept::PastTenseVerb`]); templates never use these words in any other tense.
pub const PAST_TENSE_VERBS: &[&str] = &[
    "was",
    "were",
    "had",
    "did",
    "didn't",
    "wasn't",
    "weren't",
    "went",
    "saw",
    "found",
    "looked",
    "said",
    "asked",
    "shouted",
    "whispered",
    "replied",
    "cried",
    "called",
    "laughed",
    "smiled",
    "ran",
    "jumped",
    "walked",
    "played",
    "lived",
    "loved",
    "liked",
    "wanted",
    "ate",
    "drank",
    "gave",
    "took",
    "picked",
    "put",
    "made",
    "came",
    "began",
    "stopped",
    "hugged",
    "helped",
    "counted",
    "searched",
    "opened",
    "carried",
    "climbed",
    "sat",
    "held",
    "felt",
    "knew",
    "thought",
    "wondered",
    "decided",
    "shared",
    "waved",
    "nodded",
    "told",
    "heard",
    "followed",
    "hid",
    "waited",
    "painted",
    "built",
    "dropped",
    "lost",
    "fell",
    "flew",
    "sang",
    "danced",
    "hopped",
    "giggled",
    "sighed",
    "hoped",
    "tried",
    "turned",
    "rushed",
    "noticed",
    "brought",
    "bought",
    "got",
    "blew",
    "wrapped",
    "looked",
    "slept",
    "dreamed",
    "splashed",
    "peeked",
    "licked",
    "chased",
    "hurried",
    "watched",
    "pointed",
    "forgot",
    "agreed",
    "ate",
    "sniffed",
    "yelled",
    "paid",
    "shook",
    "showed",
    "rolled",
    "skipped",
    "raced",
    "filled",
    "happened",
    "met",
    "stood",
];

/// Plural nouns that belong to no other list.
pub const EXTRA_PLURALS: &[&str] = &[
    "friends", "trees", "flowers", "coins", "stones", "years", "shells", "leaves", "stars", "toys",
    "bushes", "rocks", "puddles", "paws", "games", "feathers", "songs",
];

/// Story openings; a story starts with one of these followed by ", ".
pub const OPENINGS: &[&str] = &[
    "Once upon a time",
    "Long ago",
    "A long time ago",
    "In a land far away",
    "Not so long ago",
    "Once",
];

/// Story endings; a story's last sentence is exactly one of these.
pub const ENDINGS: &[&str] = &[
    "The end.",
    "And they lived happily ever after.",
    "And that is the end of the story.",
    "And so the day came to an end.",
    "It was the best day ever.",
    "And everyone was happy.",
    "From that day on, they were the best of friends.",
];

/// Every other word TinyTales writes; none of them expresses a concept. (Lowercase; a word is
/// also allowed capitalised at the start of a sentence.)
pub const OTHER_WORDS: &[&str] = &[
    // articles, determiners, quantifiers
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "some",
    "all",
    "every",
    "each",
    "any",
    "many",
    "more",
    "other",
    "another",
    "whole",
    "half",
    "both",
    "much",
    "only",
    "own",
    // other pronouns (not gendered, so not labelled)
    "i",
    "me",
    "my",
    "mine",
    "you",
    "your",
    "yours",
    "we",
    "us",
    "our",
    "they",
    "them",
    "their",
    "it",
    "its",
    "everyone",
    "everything",
    "something",
    "anyone",
    "anything",
    "what",
    "who",
    "which",
    "where",
    "why",
    "how",
    "when",
    "there",
    "here",
    // prepositions, conjunctions
    "and",
    "but",
    "or",
    "so",
    "because",
    "then",
    "if",
    "to",
    "of",
    "in",
    "on",
    "at",
    "by",
    "for",
    "with",
    "from",
    "into",
    "under",
    "behind",
    "near",
    "over",
    "up",
    "down",
    "out",
    "off",
    "around",
    "after",
    "before",
    "until",
    "through",
    "across",
    "next",
    "about",
    "than",
    "like",
    "as",
    "upon",
    "far",
    "away",
    "back",
    "inside",
    "together",
    "along",
    "again",
    "too",
    // adverbs
    "very",
    "so",
    "soon",
    "suddenly",
    "once",
    "ago",
    "long",
    "always",
    "just",
    "still",
    "now",
    "also",
    "even",
    "ever",
    "happily",
    "quickly",
    "slowly",
    "softly",
    "loudly",
    "everywhere",
    "at",
    "last",
    "first",
    "later",
    "yet",
    "all",
    "really",
    "yes",
    "please",
    "well",
    "today",
    "tomorrow",
    "alone",
    "closer",
    "best",
    "right",
    "hard",
    "quietly",
    "ahead",
    "anywhere",
    "enough",
    "while",
    "tight",
    "course",
    "outside",
    // present / infinitive / modal verb forms (used in speech or after "to" / "did not")
    "is",
    "are",
    "am",
    "be",
    "have",
    "has",
    "do",
    "can",
    "could",
    "will",
    "would",
    "let's",
    "let",
    "go",
    "come",
    "look",
    "see",
    "find",
    "play",
    "help",
    "eat",
    "give",
    "take",
    "make",
    "get",
    "want",
    "love",
    "like",
    "know",
    "think",
    "hide",
    "stay",
    "run",
    "share",
    "buy",
    "keep",
    "worry",
    "cry",
    "try",
    "wait",
    "fly",
    "swim",
    "jump",
    "sing",
    "dance",
    "walk",
    "climb",
    "blow",
    "carry",
    "open",
    "catch",
    "bring",
    "stop",
    "hold",
    "use",
    "wear",
    "listen",
    "build",
    "need",
    "sleep",
    "count",
    "thank",
    "fall",
    "show",
    "seek",
    // participles and gerunds (never labelled past tense)
    "named",
    "gone",
    "seen",
    "playing",
    "sitting",
    "shining",
    "missing",
    "looking",
    "waiting",
    "hiding",
    "falling",
    "singing",
    "flying",
    "dripping",
    "wet",
    // other nouns
    "time",
    "land",
    "day",
    "boy",
    "girl",
    "story",
    "end",
    "friend",
    "family",
    "tree",
    "flower",
    "sky",
    "water",
    "grass",
    "path",
    "mum",
    "dad",
    "name",
    "birthday",
    "present",
    "paper",
    "lunch",
    "picnic",
    "milk",
    "coin",
    "hand",
    "mouth",
    "bush",
    "fur",
    "nose",
    "tail",
    "gift",
    "top",
    "side",
    "ground",
    "way",
    "idea",
    "surprise",
    "bed",
    "door",
    "corner",
    "window",
    "shelf",
    "song",
    "game",
    "rock",
    "puddle",
    "feather",
    "shell",
    "stone",
    "light",
    "thing",
    "bit",
    "hello",
    "hooray",
    "oh",
    "wow",
    "fun",
    "lot",
    "dream",
    "adventure",
    // category words name a kind of concept but are not one
    "pet",
    "colour",
    "weather",
    "animal",
    "food",
    "snack",
    // other adjectives
    "old",
    "new",
    "good",
    "nice",
    "kind",
    "warm",
    "cold",
    "dark",
    "bright",
    "soft",
    "shiny",
    "pretty",
    "funny",
    "friendly",
    "dangerous",
    "favourite",
    "best",
    "lovely",
    "quiet",
    "loud",
    "busy",
    "safe",
    "brave",
    "clever",
    "hungry",
    "full",
    "dry",
    "special",
    "beautiful",
    "fast",
    "great",
    "wonderful",
    "real",
    "sure",
    "late",
    "empty",
    "fresh",
    "sweet",
    // numbers that are not number words in our sense
    "one",
    // other verbs in the past that are never simple-past in TinyTales? none: see PAST_TENSE_VERBS
];

/// The gender of a character name (exact, capitalised), or None if it is not a name.
pub fn name_gender(word: &str) -> Option<Gender> {
    if MALE_NAMES.contains(&word) {
        Some(Gender::Male)
    } else if FEMALE_NAMES.contains(&word) {
        Some(Gender::Female)
    } else {
        None
    }
}

/// The gender of a gendered pronoun (any case), or None.
pub fn pronoun_gender(word: &str) -> Option<Gender> {
    let mut buf = [0u8; 16];
    let lower = lowercase(word, &mut buf)?;
    if MALE_PRONOUNS.contains(&lower) {
        Some(Gender::Male)
    } else if FEMALE_PRONOUNS.contains(&lower) {
        Some(Gender::Female)
    } else {
        None
    }
}

/// Lowercases an ASCII word into `buf`; None if it does not fit.
fn lowercase<'b>(word: &str, buf: &'b mut [u8]) -> Option<&'b str> {
    let bytes = word.as_bytes();
    if bytes.len() > buf.len() {
        return None;
    }
    let out = &mut buf[..bytes.len()];
    out.copy_from_slice(bytes);
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

/// The word -> concepts table: names (capitalised, exact) and every other labelled word
/// (lowercase).
pub fn lexicon() -> &'static HashMap<&'static str, ConceptSet> {
    static LEXICON: OnceLock<HashMap<&'static str, ConceptSet>> = OnceLock::new();
    LEXICON.get_or_init(|| {
        let mut m: HashMap<&'static str, ConceptSet> = HashMap::new();
        let mut add = |w: &'static str, c: Concept| m.entry(w).or_default().insert(c);
        for &n in MALE_NAMES {
            add(n, Concept::CharacterName);
            add(n, Concept::MaleCharacter);
        }
        for &n in FEMALE_NAMES {
            add(n, Concept::CharacterName);
            add(n, Concept::FemaleCharacter);
        }
        for &p in MALE_PRONOUNS.iter().chain(FEMALE_PRONOUNS) {
            add(p, Concept::Pronoun);
        }
        for &(s, p) in ANIMALS {
            add(s, Concept::Animal);
            add(p, Concept::Animal);
            add(p, Concept::PluralNoun);
        }
        for &(s, p) in OBJECTS {
            add(s, Concept::Object);
            add(p, Concept::Object);
            add(p, Concept::PluralNoun);
        }
        for &(s, p) in FOODS {
            add(s, Concept::Food);
            add(p, Concept::Food);
            add(p, Concept::PluralNoun);
        }
        for &w in COLOURS {
            add(w, Concept::Colour);
        }
        for &w in SIZES {
            add(w, Concept::Size);
        }
        for &w in NUMBER_WORDS {
            add(w, Concept::NumberWord);
        }
        for &w in PLACES {
            add(w, Concept::Place);
        }
        for &(a, n) in WEATHER {
            add(a, Concept::Weather);
            add(n, Concept::Weather);
        }
        add("clouds", Concept::PluralNoun);
        for &w in FEELINGS_GOOD.iter().chain(FEELINGS_BAD) {
            add(w, Concept::Feeling);
        }
        for &w in TIMES_OF_DAY {
            add(w, Concept::TimeOfDay);
        }
        for &w in NEGATIONS {
            add(w, Concept::Negation);
        }
        for &w in PAST_TENSE_VERBS {
            add(w, Concept::PastTenseVerb);
        }
        for &w in EXTRA_PLURALS {
            add(w, Concept::PluralNoun);
        }
        m
    })
}

/// The concepts a word expresses, and the byte length of the part that expresses them
/// ("Mia's" -> the 3 bytes of "Mia"). Names match exactly; other words in any case.
pub fn word_concepts(word: &str) -> Option<(ConceptSet, usize)> {
    let lex = lexicon();
    if let Some(&set) = lex.get(word) {
        return Some((set, word.len()));
    }
    let mut buf = [0u8; 24];
    if let Some(lower) = lowercase(word, &mut buf)
        && lower != word
        && let Some(&set) = lex.get(lower)
    {
        // Names only match capitalised; a lowercase key is never a name.
        return Some((set, word.len()));
    }
    if let Some(stem) = word.strip_suffix("'s") {
        return word_concepts(stem).map(|(set, _)| (set, stem.len()));
    }
    None
}

/// The byte ranges of the words of `text`: runs of ASCII letters, with an apostrophe kept
/// when letters follow it ("didn't", "Mia's").
pub fn words(text: &str) -> Words<'_> {
    Words {
        bytes: text.as_bytes(),
        pos: 0,
    }
}

/// Iterator returned by [`words`].
pub struct Words<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for Words<'_> {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        let b = self.bytes;
        let mut i = self.pos;
        while i < b.len() && !b[i].is_ascii_alphabetic() {
            i += 1;
        }
        if i >= b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        loop {
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'\'' && b[i + 1].is_ascii_alphabetic() {
                i += 1;
            } else {
                break;
            }
        }
        self.pos = i;
        Some((start, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_size_a_story_uses_is_labelled_a_size() {
        use crate::tinytales::templates::{KID_SIZES, THING_SIZES};
        for word in THING_SIZES.iter().chain(KID_SIZES) {
            assert!(
                SIZES.contains(word),
                "{word} is a size in stories but not in SIZES"
            );
        }
    }

    #[test]
    fn lists_are_disjoint_where_it_matters() {
        // A word may carry several concepts only by design (plural animals are animals and
        // plural nouns; "clouds" is weather and plural; past negations are both).
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let mut lists: Vec<(&str, Vec<&str>)> = vec![
            ("male", MALE_NAMES.to_vec()),
            ("female", FEMALE_NAMES.to_vec()),
            (
                "pronoun",
                MALE_PRONOUNS
                    .iter()
                    .chain(FEMALE_PRONOUNS)
                    .copied()
                    .collect(),
            ),
            (
                "animal",
                ANIMALS.iter().flat_map(|&(a, b)| [a, b]).collect(),
            ),
            (
                "object",
                OBJECTS.iter().flat_map(|&(a, b)| [a, b]).collect(),
            ),
            ("food", FOODS.iter().flat_map(|&(a, b)| [a, b]).collect()),
            ("colour", COLOURS.to_vec()),
            ("size", SIZES.to_vec()),
            ("number", NUMBER_WORDS.to_vec()),
            ("place", PLACES.to_vec()),
            (
                "weather",
                WEATHER.iter().flat_map(|&(a, b)| [a, b]).collect(),
            ),
            (
                "feeling",
                FEELINGS_GOOD.iter().chain(FEELINGS_BAD).copied().collect(),
            ),
            ("time", TIMES_OF_DAY.to_vec()),
            ("extra_plural", EXTRA_PLURALS.to_vec()),
        ];
        let past_not_neg: Vec<&str> = PAST_TENSE_VERBS
            .iter()
            .copied()
            .filter(|w| !NEGATIONS.contains(w))
            .collect();
        lists.push(("past", past_not_neg));
        lists.push(("negation", NEGATIONS.to_vec()));
        for (list, ws) in &lists {
            let mut dedup = HashSet::new();
            for w in ws {
                if !dedup.insert(*w) {
                    continue; // duplicates inside one list are harmless
                }
                if let Some(other) = seen.insert(w, list) {
                    panic!("{w:?} is in both {other} and {list}");
                }
                let lower = w.to_ascii_lowercase();
                assert!(
                    !OTHER_WORDS.contains(&lower.as_str()),
                    "{w:?} is labelled ({list}) but also in OTHER_WORDS"
                );
            }
        }
        for n in MALE_NAMES.iter().chain(FEMALE_NAMES) {
            let lower = n.to_ascii_lowercase();
            assert!(word_concepts(&lower).is_none(), "name {n} is also a word");
        }
    }

    #[test]
    fn words_split_like_the_docs_say() {
        let t = "Mia's cat didn't \"run\" (far)... 'ok' x";
        let ws: Vec<&str> = words(t).map(|(s, e)| &t[s..e]).collect();
        assert_eq!(ws, ["Mia's", "cat", "didn't", "run", "far", "ok", "x"]);
    }

    #[test]
    fn word_concepts_handles_case_and_possessives() {
        let (set, len) = word_concepts("Mia's").unwrap();
        assert!(set.contains(Concept::FemaleCharacter) && set.contains(Concept::CharacterName));
        assert_eq!(len, 3);
        let (set, _) = word_concepts("Red").unwrap();
        assert!(set.contains(Concept::Colour));
        let (set, _) = word_concepts("didn't").unwrap();
        assert!(set.contains(Concept::Negation) && set.contains(Concept::PastTenseVerb));
        assert!(word_concepts("tom").is_none());
        assert!(word_concepts("TOM").is_none());
        assert_eq!(pronoun_gender("She"), Some(Gender::Female));
        assert_eq!(pronoun_gender("his"), Some(Gender::Male));
        assert_eq!(pronoun_gender("they"), None);
        assert_eq!(name_gender("Tom"), Some(Gender::Male));
        assert_eq!(name_gender("tom"), None);
    }
}
