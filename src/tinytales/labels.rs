//! Concept labels: byte spans over a text, and per-token concept sets for a tokenisation.
//!
//! # The token rule
//!
//! A token with byte range `[ts, te)` is labelled with concept `c` when its range intersects a
//! span `[ss, se)` of `c`: `ts < se && ss < te`. So a token is labelled if it holds at least one
//! byte of the span, even when it also holds bytes outside it (GPT-2's " red", with its leading
//! space, is a colour token; `."` at the end of a quotation is a quotation token). A token with
//! an empty range (`ts >= te`, e.g. special tokens) gets no labels.

use super::concepts::{Concept, ConceptSet};
use super::world;
use serde::{Deserialize, Serialize};

/// One labelled span: `text[start..end]` expresses `concept`. Byte offsets, `start < end`.
/// Spans order by (start, end, concept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub concept: Concept,
    pub start: usize,
    pub end: usize,
}

impl Ord for Span {
    fn cmp(&self, other: &Span) -> std::cmp::Ordering {
        (self.start, self.end, self.concept).cmp(&(other.start, other.end, other.concept))
    }
}

impl PartialOrd for Span {
    fn partial_cmp(&self, other: &Span) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Span {
    pub fn new(concept: Concept, start: usize, end: usize) -> Span {
        Span {
            concept,
            start,
            end,
        }
    }

    /// The spanned text.
    pub fn text<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.end]
    }

    /// Whether this span intersects the byte range `[start, end)` (the token rule).
    pub fn overlaps(&self, start: usize, end: usize) -> bool {
        start < end && start < self.end && self.start < end
    }

    /// The same span moved `by` bytes to the right.
    pub fn shifted(self, by: usize) -> Span {
        Span {
            start: self.start + by,
            end: self.end + by,
            ..self
        }
    }
}

/// The concepts of each token: `offsets[i]` is token i's byte range `(start, end)` in the text
/// the spans label (as the `tokenizers` crate reports them). See the module docs for the rule.
///
/// Runs in O((spans + tokens) log tokens) when the token ranges are in order (starts and ends
/// non-decreasing, as a tokenizer gives them); any other order still works, more slowly.
pub fn token_labels(spans: &[Span], offsets: &[(usize, usize)]) -> Vec<ConceptSet> {
    let mut labels = vec![ConceptSet::EMPTY; offsets.len()];
    let sorted = offsets
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
    for span in spans {
        let bit = ConceptSet::single(span.concept);
        let (lo, hi) = if sorted {
            // Tokens ending after the span starts, up to tokens starting before it ends.
            let lo = offsets.partition_point(|&(_, e)| e <= span.start);
            let hi = offsets.partition_point(|&(s, _)| s < span.end);
            (lo, hi.max(lo))
        } else {
            (0, offsets.len())
        };
        for (label, &(s, e)) in labels[lo..hi].iter_mut().zip(&offsets[lo..hi]) {
            if span.overlaps(s, e) {
                *label = label.union(bit);
            }
        }
    }
    labels
}

/// Whether each token carries `concept`.
pub fn concept_mask(labels: &[ConceptSet], concept: Concept) -> Vec<bool> {
    labels.iter().map(|l| l.contains(concept)).collect()
}

/// How many tokens carry each concept, indexed by [`Concept::index`].
pub fn concept_counts(labels: &[ConceptSet]) -> [usize; Concept::COUNT] {
    let mut counts = [0; Concept::COUNT];
    for l in labels {
        for c in l.iter() {
            counts[c.index()] += 1;
        }
    }
    counts
}

/// The spans of every labelled word in `text` (names, pronouns, animals, colours, ..., past
/// verbs, plural nouns): the concepts that are properties of words (see [`world`]). The
/// structural concepts (quotation, speaker, parenthetical, bracketed, question, story opening
/// and ending) are not found here; the generator records them as it writes.
pub fn word_spans(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    for (start, end) in world::words(text) {
        if let Some((set, len)) = world::word_concepts(&text[start..end]) {
            for c in set.iter() {
                spans.push(Span::new(c, start, start + len));
            }
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use Concept::*;

    /// Byte offsets of whitespace-separated words.
    fn ws_offsets(text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, ch) in text.char_indices() {
            match (ch.is_whitespace(), start) {
                (true, Some(s)) => {
                    out.push((s, i));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, text.len()));
        }
        out
    }

    fn set(cs: &[Concept]) -> ConceptSet {
        cs.iter().copied().collect()
    }

    #[test]
    fn concept_set_basics() {
        let mut s = ConceptSet::EMPTY;
        assert!(s.is_empty());
        s.insert(Colour);
        s.insert(StoryEnding);
        s.insert(Colour);
        assert_eq!(s.len(), 2);
        assert!(s.contains(Colour) && s.contains(StoryEnding) && !s.contains(Animal));
        assert_eq!(s.bits(), (1 << 5) | (1 << 23));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Colour, StoryEnding]);
        assert_eq!(s.to_string(), "colour+story_ending");
        s.remove(Colour);
        assert_eq!(s, ConceptSet::single(StoryEnding));
        assert_eq!(serde_json::to_string(&s).unwrap(), (1u32 << 23).to_string());
        assert_eq!(
            set(&[Colour, Size]).intersection(set(&[Size])),
            set(&[Size])
        );
    }

    #[test]
    fn word_tokens_hand_computed() {
        // 0         1         2         3         4
        // 0123456789012345678901234567890123456789012345
        // Mia saw a red fox. "Is it big?" asked Tom.
        let text = "Mia saw a red fox. \"Is it big?\" asked Tom.";
        let spans = vec![
            Span::new(CharacterName, 0, 3),
            Span::new(PastTenseVerb, 4, 7),
            Span::new(Colour, 10, 13),
            Span::new(Animal, 14, 17),
            Span::new(Quotation, 20, 30),
            Span::new(Question, 20, 30),
            Span::new(Size, 26, 29),
            Span::new(Speaker, 38, 41),
        ];
        for s in &spans {
            assert!(!s.text(text).is_empty());
        }
        assert_eq!(spans[4].text(text), "Is it big?");
        assert_eq!(spans[7].text(text), "Tom");
        let offs = ws_offsets(text);
        // Mia | saw | a | red | fox. | "Is | it | big?" | asked | Tom.
        assert_eq!(offs.len(), 10);
        let labels = token_labels(&spans, &offs);
        let expect = [
            set(&[CharacterName]),
            set(&[PastTenseVerb]),
            set(&[]),
            set(&[Colour]),
            set(&[Animal]),
            set(&[Quotation, Question]), // "Is  (the quote mark is outside, "Is" inside)
            set(&[Quotation, Question]),
            set(&[Quotation, Question, Size]), // big?"
            set(&[]),
            set(&[Speaker]),
        ];
        assert_eq!(labels, expect);
    }

    #[test]
    fn character_tokens_and_edge_rules() {
        let text = "(a \"b\")";
        let spans = vec![Span::new(Parenthetical, 1, 6), Span::new(Quotation, 4, 5)];
        let offs: Vec<(usize, usize)> = (0..text.len()).map(|i| (i, i + 1)).collect();
        let labels = token_labels(&spans, &offs);
        let p = set(&[Parenthetical]);
        let q = set(&[Parenthetical, Quotation]);
        assert_eq!(labels, vec![set(&[]), p, p, p, q, p, set(&[])]);

        // Empty tokens get nothing; a token that only touches a span's edge gets nothing;
        // a token straddling the edge gets the label.
        let offs = vec![(0, 0), (0, 1), (1, 1), (5, 7), (6, 7), (7, 7)];
        let labels = token_labels(&spans, &offs);
        assert_eq!(
            labels,
            vec![set(&[]), set(&[]), set(&[]), p, set(&[]), set(&[])]
        );

        // Unsorted offsets give the same answer as sorted ones.
        let offs = vec![(4, 5), (0, 2), (6, 7), (3, 4)];
        let labels = token_labels(&spans, &offs);
        assert_eq!(labels, vec![q, p, set(&[]), p]);
    }

    #[test]
    fn masks_and_counts() {
        let labels = vec![set(&[Colour]), set(&[]), set(&[Colour, Size])];
        assert_eq!(concept_mask(&labels, Colour), vec![true, false, true]);
        let counts = concept_counts(&labels);
        assert_eq!(counts[Colour.index()], 2);
        assert_eq!(counts[Size.index()], 1);
        assert_eq!(counts.iter().sum::<usize>(), 3);
    }

    #[test]
    fn word_spans_label_words() {
        let text = "Tom didn't see Mia's two red foxes.";
        let spans = word_spans(text);
        let got: Vec<(Concept, &str)> = spans.iter().map(|s| (s.concept, s.text(text))).collect();
        assert_eq!(
            got,
            vec![
                (CharacterName, "Tom"),
                (MaleCharacter, "Tom"),
                (Negation, "didn't"),
                (PastTenseVerb, "didn't"),
                (CharacterName, "Mia"),
                (FemaleCharacter, "Mia"),
                (NumberWord, "two"),
                (Colour, "red"),
                (Animal, "foxes"),
                (PluralNoun, "foxes"),
            ]
        );
    }
}
