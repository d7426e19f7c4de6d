//! TinyTales: short, grammatical stories about a small world whose concepts are known exactly.
//!
//! The built-in model is trained on TinyTales, so an SAE's features can be scored against
//! ground truth: every story comes with labelled byte spans saying which text expresses which
//! [`Concept`] (a colour, a character's name, a quotation, a question, ...).
//!
//! ```text
//! let story = generate_story(7);                    // same seed, same bytes, any platform
//! for span in &story.spans { span.concept; span.text(&story.text); }
//! let labels = token_labels(&story.spans, &offsets); // one ConceptSet per token
//! let corpus = generate_corpus(0, 10_000, "<|endoftext|>");
//! let check = check_story(model_written_text);       // the world's rules, on free text
//! ```
//!
//! # The world
//! Named characters (each male or female, referred to by he/him/his or she/her), a pet,
//! animals, colours, sizes, number words, places, objects, foods, weather, feelings and the
//! time of day ([`world`] holds every list). A story opens with a phrase such as "Once upon a
//! time", introduces its hero, a pet and a friend, follows one of a few plots (a lost toy, an
//! animal, a change in the weather, the market, a present, a new friend) with dialogue, asides
//! in parentheses or square brackets, questions and negations, and ends with a fixed final
//! sentence such as "The end." Every story is 60 to 200 words.
//!
//! # Rules every story keeps ([`check_story`] tests them on any text)
//! Quotes, parentheses and brackets are balanced; every gendered pronoun agrees with the most
//! recently named character (the generator writes the name again whenever someone else was
//! named since); the last sentence is one of the world's endings.
//!
//! # How labels are made
//! Word concepts (names, pronouns, animals, ..., negations, past-tense verbs, plural nouns)
//! are properties of words in this closed world, so every occurrence of such a word is
//! labelled ([`labels::word_spans`]). Structural concepts come from the writer as it writes:
//! quotations, parentheticals and bracketed asides from their punctuation, questions from
//! the sentence start to its `?`, speakers from the attribution slot, and the opening and
//! ending from the plan. See [`Concept::description`] for what each covers exactly, and
//! [`labels`] for how spans become per-token labels.
//!
//! Portable: std only, no threads, no clock, no OS randomness (a SplitMix64 seeded by the
//! caller), so it runs unchanged in wasm.

pub mod check;
pub mod concepts;
pub mod generate;
pub mod labels;
pub mod templates;
pub mod world;

pub use check::{CheckRates, CheckTally, StoryCheck, check_stories, check_story};
pub use concepts::{Concept, ConceptSet};
pub use generate::{
    MAX_WORDS, MIN_WORDS, Story, StoryCorpus, StoryGenerator, generate_corpus,
    generate_corpus_bytes, generate_story, story_seed,
};
pub use labels::{Span, concept_counts, concept_mask, token_labels};

/// Held-out stories come from this corpus seed, never used for training (the model's and the
/// SAEs' held-out loss, metrics and feature scans).
pub const HELD_OUT_SEED: u64 = 0xE7A1_5EED;

/// Stories from TinyTales totalling at least `bytes`, from `seed`.
pub fn stories(seed: u64, bytes: usize) -> Vec<String> {
    let mut total = 0;
    let mut stories = Vec::new();
    for story in StoryGenerator::new(seed) {
        if total >= bytes {
            break;
        }
        total += story.text.len() + 1;
        stories.push(story.text);
    }
    stories
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn stories(n: u64) -> impl Iterator<Item = Story> {
        StoryGenerator::new(12345).take(n as usize)
    }

    #[test]
    fn same_seed_same_bytes_different_seeds_differ() {
        for seed in [0u64, 1, 42, u64::MAX] {
            assert_eq!(generate_story(seed), generate_story(seed));
        }
        let texts: BTreeSet<String> = (0..200u64).map(|s| generate_story(s).text).collect();
        assert_eq!(
            texts.len(),
            200,
            "200 seeds should give 200 different stories"
        );
        let a = generate_corpus(9, 50, "<|endoftext|>");
        let b = generate_corpus(9, 50, "<|endoftext|>");
        assert_eq!(a, b);
        assert_ne!(a.text, generate_corpus(10, 50, "<|endoftext|>").text);
    }

    /// Pins the bytes of a few stories so that any change to the output (a new platform, a
    /// refactor) is noticed: generated corpora and the models trained on them depend on them.
    #[test]
    fn output_is_pinned() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a over 100 stories and their spans
        let mut eat = |b: u8| h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        for s in StoryGenerator::new(2024).take(100) {
            s.text.bytes().for_each(&mut eat);
            for sp in &s.spans {
                let nums = [sp.concept.index() as u64, sp.start as u64, sp.end as u64];
                nums.iter().flat_map(|n| n.to_le_bytes()).for_each(&mut eat);
            }
        }
        println!("pinned hash: {h:#018x}");
        assert_eq!(
            h, PINNED_HASH,
            "TinyTales output changed; update PINNED_HASH if intended"
        );
    }
    const PINNED_HASH: u64 = 0xb70e_c4a5_171a_448d;

    #[test]
    fn every_story_keeps_the_rules_and_length() {
        let mut tally = CheckTally::default();
        for s in stories(5000) {
            let c = check_story(&s.text);
            assert!(c.passes_all(), "{c:?}\n{}", s.text);
            tally.add(&c);
            let n = s.word_count();
            assert!(
                (MIN_WORDS..=MAX_WORDS).contains(&n),
                "{n} words:\n{}",
                s.text
            );
            assert!(s.text.is_ascii());
            assert!(!s.text.contains("  ") && !s.text.starts_with(char::is_whitespace));
            assert!(!s.text.ends_with(char::is_whitespace));
        }
        assert_eq!(tally.rates().passes_all, 1.0);
    }

    #[test]
    fn spans_match_their_concepts() {
        use world::*;
        let lower_in = |list: &[&str], w: &str| list.contains(&w.to_ascii_lowercase().as_str());
        let pair_in = |list: &[(&str, &str)], w: &str| {
            let w = w.to_ascii_lowercase();
            list.iter().any(|&(s, p)| s == w || p == w)
        };
        for s in stories(2000) {
            let t = &s.text;
            let mut sorted = s.spans.clone();
            sorted.sort();
            assert_eq!(sorted, s.spans, "spans are sorted");
            for sp in &s.spans {
                assert!(sp.start < sp.end && sp.end <= t.len());
                assert!(t.is_char_boundary(sp.start) && t.is_char_boundary(sp.end));
                let x = sp.text(t);
                let ok = match sp.concept {
                    Concept::CharacterName => name_gender(x).is_some(),
                    Concept::MaleCharacter => name_gender(x) == Some(Gender::Male),
                    Concept::FemaleCharacter => name_gender(x) == Some(Gender::Female),
                    Concept::Pronoun => pronoun_gender(x).is_some(),
                    Concept::Animal => pair_in(ANIMALS, x),
                    Concept::Colour => lower_in(COLOURS, x),
                    Concept::Size => lower_in(SIZES, x),
                    Concept::NumberWord => lower_in(NUMBER_WORDS, x),
                    Concept::Place => lower_in(PLACES, x),
                    Concept::Object => pair_in(OBJECTS, x),
                    Concept::Food => pair_in(FOODS, x),
                    Concept::Weather => pair_in(WEATHER, x),
                    Concept::Feeling => lower_in(FEELINGS_GOOD, x) || lower_in(FEELINGS_BAD, x),
                    Concept::TimeOfDay => lower_in(TIMES_OF_DAY, x),
                    Concept::Quotation => {
                        t[..sp.start].ends_with('"')
                            && t[sp.end..].starts_with('"')
                            && !x.contains('"')
                    }
                    Concept::Speaker => {
                        // A name beside a speech verb, with a quote mark close by.
                        let near = &t[sp.start.saturating_sub(16)..(sp.end + 16).min(t.len())];
                        name_gender(x).is_some()
                            && near.contains('"')
                            && [
                                "said",
                                "asked",
                                "shouted",
                                "whispered",
                                "cried",
                                "wondered",
                                "laughed",
                            ]
                            .iter()
                            .any(|v| {
                                t[..sp.start].ends_with(&format!("{v} "))
                                    || t[sp.end..].starts_with(&format!(" {v}"))
                            })
                    }
                    Concept::Parenthetical => {
                        t[..sp.start].ends_with('(')
                            && t[sp.end..].starts_with(')')
                            && !x.contains(['(', ')'])
                    }
                    Concept::Bracketed => {
                        t[..sp.start].ends_with('[')
                            && t[sp.end..].starts_with(']')
                            && !x.contains(['[', ']'])
                    }
                    Concept::Question => {
                        x.ends_with('?')
                            && x.starts_with(|c: char| c.is_ascii_uppercase())
                            && !x[..x.len() - 1].contains(['.', '?', '!', '"', '(', '['])
                    }
                    Concept::Negation => lower_in(NEGATIONS, x),
                    Concept::PastTenseVerb => lower_in(PAST_TENSE_VERBS, x),
                    Concept::PluralNoun => {
                        let w = x.to_ascii_lowercase();
                        EXTRA_PLURALS.contains(&w.as_str())
                            || w == "clouds"
                            || ANIMALS
                                .iter()
                                .chain(OBJECTS)
                                .chain(FOODS)
                                .any(|&(_, p)| p == w)
                    }
                    Concept::StoryOpening => sp.start == 0 && OPENINGS.contains(&x),
                    Concept::StoryEnding => sp.end == t.len() && ENDINGS.contains(&x),
                };
                assert!(ok, "{} span {x:?} in:\n{t}", sp.concept);
            }
            for c in [Concept::StoryOpening, Concept::StoryEnding] {
                assert_eq!(s.spans_of(c).count(), 1, "{c}");
            }
            // Every quote pair, bracket pair and '?' has its span.
            assert_eq!(
                s.spans_of(Concept::Quotation).count() * 2,
                t.matches('"').count()
            );
            assert_eq!(
                s.spans_of(Concept::Parenthetical).count(),
                t.matches('(').count()
            );
            assert_eq!(
                s.spans_of(Concept::Bracketed).count(),
                t.matches('[').count()
            );
            assert_eq!(
                s.spans_of(Concept::Question).count(),
                t.matches('?').count()
            );
            // Every word with a concept is labelled with it (completeness).
            for (ws, we) in world::words(t) {
                if let Some((set, len)) = world::word_concepts(&t[ws..we]) {
                    for c in set.iter() {
                        assert!(
                            s.spans.contains(&Span::new(c, ws, ws + len)),
                            "{c} not labelled on {:?}",
                            &t[ws..we]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn vocabulary_is_closed() {
        // Every word written is either labelled or in OTHER_WORDS, so nothing expressing a
        // concept goes unlabelled through a word the lists forgot.
        let mut unknown = BTreeMap::<String, String>::new();
        for s in stories(3000) {
            for (a, b) in world::words(&s.text) {
                let w = &s.text[a..b];
                if world::word_concepts(w).is_some() {
                    continue;
                }
                let lower = w.to_ascii_lowercase();
                if !world::OTHER_WORDS.contains(&lower.as_str()) {
                    unknown.entry(lower).or_insert_with(|| s.text.clone());
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "unclassified words: {:?}",
            unknown.keys().collect::<Vec<_>>()
        );
        // Unlabelled words must not look like past tenses or plurals.
        let not_past = ["named", "bed", "need"];
        let not_plural = [
            "was",
            "his",
            "is",
            "this",
            "yes",
            "us",
            "always",
            "has",
            "its",
            "yours",
            "does",
            "let's",
            "these",
            "across",
            "as",
            "grass",
            "dangerous",
        ];
        for w in world::OTHER_WORDS {
            assert!(
                !w.ends_with("ed") || not_past.contains(w),
                "{w}: past tense?"
            );
            assert!(!w.ends_with('s') || not_plural.contains(w), "{w}: plural?");
        }
    }

    #[test]
    fn every_concept_occurs() {
        let mut counts = [0usize; Concept::COUNT];
        for s in stories(300) {
            for sp in &s.spans {
                counts[sp.concept.index()] += 1;
            }
        }
        for c in Concept::ALL {
            assert!(counts[c.index()] > 0, "{c} never occurs");
        }
    }

    #[test]
    fn corpus_joins_stories_and_shifts_spans() {
        let sep = "<|endoftext|>";
        let corpus = generate_corpus(3, 20, sep);
        assert_eq!(corpus.stories.len(), 20);
        let parts: Vec<&str> = corpus.text.split(sep).collect();
        assert_eq!(parts.len(), 20);
        for (i, (part, story)) in parts.iter().zip(StoryGenerator::new(3)).enumerate() {
            assert_eq!(*part, story.text);
            assert_eq!(corpus.story_text(i), story.text);
            let (start, _) = corpus.stories[i];
            let shifted: Vec<Span> = story.spans.iter().map(|s| s.shifted(start)).collect();
            let inside: Vec<Span> = corpus
                .spans
                .iter()
                .copied()
                .filter(|s| s.start >= start && s.end <= corpus.stories[i].1)
                .collect();
            assert_eq!(inside, shifted);
        }
        assert_eq!(
            story_seed(3, 0),
            StoryGenerator::new(3).next().unwrap().seed
        );

        let by_bytes = generate_corpus_bytes(3, 5000, "\n");
        assert!(by_bytes.text.len() >= 5000);
        let n = by_bytes.stories.len();
        let fewer = generate_corpus(3, n - 1, "\n");
        assert!(fewer.text.len() < 5000);
        assert!(by_bytes.text.starts_with(&fewer.text));
        assert!(generate_corpus(3, 0, sep).text.is_empty());
    }

    #[test]
    fn token_labels_on_a_story() {
        // Single-byte tokens: each byte carries exactly the concepts whose spans contain it.
        let s = generate_story(77);
        let offs: Vec<(usize, usize)> = (0..s.text.len()).map(|i| (i, i + 1)).collect();
        let labels = token_labels(&s.spans, &offs);
        for (i, l) in labels.iter().enumerate() {
            let want: ConceptSet = s
                .spans
                .iter()
                .filter(|sp| sp.start <= i && i < sp.end)
                .map(|sp| sp.concept)
                .collect();
            assert_eq!(*l, want, "byte {i}");
        }
        assert!(labels[0].contains(Concept::StoryOpening));
        assert!(labels.last().unwrap().contains(Concept::StoryEnding));

        // Whitespace words (each with its leading space, as GPT-2 tokens have), checked
        // against the rule applied by brute force, on a whole corpus.
        let corpus = generate_corpus(5, 40, "<|endoftext|>");
        let t = &corpus.text;
        let mut offs = Vec::new();
        let mut start = 0;
        for (i, ch) in t.char_indices() {
            if ch == ' ' && i > start {
                offs.push((start, i));
                start = i;
            }
        }
        offs.push((start, t.len()));
        let labels = token_labels(&corpus.spans, &offs);
        for (&(ts, te), l) in offs.iter().zip(&labels) {
            let want: ConceptSet = corpus
                .spans
                .iter()
                .filter(|sp| ts < sp.end && sp.start < te)
                .map(|sp| sp.concept)
                .collect();
            assert_eq!(*l, want, "token {:?}", &t[ts..te]);
        }
    }

    #[test]
    fn corpus_statistics_and_samples() {
        let n = 2000;
        let mut words = Vec::new();
        let mut vocab = BTreeSet::new();
        let mut concept_spans = [0usize; Concept::COUNT];
        for s in stories(n) {
            words.push(s.word_count());
            for (a, b) in world::words(&s.text) {
                vocab.insert(s.text[a..b].to_ascii_lowercase());
            }
            for sp in &s.spans {
                concept_spans[sp.concept.index()] += 1;
            }
        }
        words.sort();
        let mean = words.iter().sum::<usize>() as f64 / words.len() as f64;
        println!(
            "{n} stories: words per story min {} median {} mean {mean:.1} max {}; vocabulary {} words",
            words[0],
            words[words.len() / 2],
            words[words.len() - 1],
            vocab.len()
        );
        for c in Concept::ALL {
            println!(
                "  {:>18}: {:.2} spans/story",
                c.name(),
                concept_spans[c.index()] as f64 / n as f64
            );
        }
        for seed in [1u64, 2] {
            let s = generate_story(seed);
            println!("--- generate_story({seed}) ---\n{}\n", s.text);
        }
    }

    #[test]
    fn throughput() {
        // Prints the rate; does not assert it (machines differ). Run with --release and
        // --nocapture to see a meaningful number.
        let start = std::time::Instant::now();
        let corpus = generate_corpus_bytes(1, 4_000_000, "<|endoftext|>");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "generated {} stories, {:.2} MB, {} spans in {secs:.3}s: {:.1} MB/s",
            corpus.stories.len(),
            corpus.text.len() as f64 / 1e6,
            corpus.spans.len(),
            corpus.text.len() as f64 / 1e6 / secs
        );
        let start = std::time::Instant::now();
        let rates = check_stories(corpus.text.split("<|endoftext|>"));
        let secs = start.elapsed().as_secs_f64();
        println!(
            "checked in {secs:.3}s: {:.1} MB/s",
            corpus.text.len() as f64 / 1e6 / secs
        );
        assert_eq!(rates.passes_all, 1.0);
    }
}
