//! Explanations of features that a program can check, scored with no language model.
//!
//! Hosted tools have a language model read an explanation and predict activations from it
//! (OpenAI's simulator, Delphi). Here an explanation is concrete enough to predict from directly:
//! clauses separated by `;`, a token predicted active when any clause matches it.
//!
//! - `cat, dog, "once upon"`: tokens that end one of these words or phrases (case-insensitive,
//!   at a word boundary; a phrase may span several tokens); `*ing` ends so anywhere, inside a
//!   word too;
//! - `concept:animal`: tokens with that TinyTales concept (the built-in world's labels);
//! - `after: once, the`: tokens right after one of these;
//! - `before: ., !`: tokens right before one of these (what the logit lens says a feature
//!   promotes).
//!
//! Scores are computed on held-out contexts (spans of [`CONTEXT_BEFORE`] tokens before and
//! [`CONTEXT_AFTER`] after a focus token) of the scan's odd windows; the automatic explainer
//! reads only the even windows, so it is never scored on what it explained.
//!
//! - simulation: Pearson correlation of predicted (0/1) with true activations over every token
//!   of the top-activating and random contexts together (OpenAI's "all at once" score);
//! - detection: balanced accuracy of telling top-activating contexts from random contexts where
//!   the feature does not fire, a context predicted positive when any token in it is (Delphi).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Sae;
use super::features::{Scan, logit_lens};
use crate::error::{Result, SaeplayError};
use crate::model::Model;
use crate::rng::SplitMix64;
use crate::tinytales::{Concept, ConceptSet};
use crate::tokenizer::TextTokenizer;

/// Tokens before and after the focus token in a scored context.
pub const CONTEXT_BEFORE: usize = 12;
pub const CONTEXT_AFTER: usize = 4;
/// Top-activating and random contexts per score (each).
pub const CONTEXTS: usize = 20;
/// Longest explanation accepted, in characters.
pub const MAX_EXPLANATION_CHARS: usize = 2_000;

/// Why an explanation could not be read; each message is a sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExplanationError {
    #[error("the explanation is empty: write words, a concept (concept:animal), after: or before:")]
    Empty,
    #[error("the explanation is {0} characters long; at most {MAX_EXPLANATION_CHARS} are read")]
    TooLong(usize),
    #[error("a quotation mark in `{0}` is never closed")]
    OpenQuote(String),
    #[error("`{0}` has an empty word or phrase (two commas in a row?)")]
    EmptyTerm(String),
    #[error("unknown concept `{name}`: the concepts are {known}")]
    UnknownConcept { name: String, known: String },
}

/// One clause of an explanation.
#[derive(Debug, Clone, PartialEq)]
enum Clause {
    /// Lower-case words or phrases, matched where they end.
    Words(Vec<String>),
    Concept(Concept),
    After(Vec<String>),
    Before(Vec<String>),
}

/// A parsed explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    clauses: Vec<Clause>,
}

/// Split `text` at `separator` outside double quotes.
fn split_outside_quotes(text: &str, separator: char) -> Result<Vec<String>, ExplanationError> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                parts.last_mut().expect("never empty").push(c);
            }
            c if c == separator && !quoted => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    if quoted {
        return Err(ExplanationError::OpenQuote(text.trim().to_string()));
    }
    Ok(parts)
}

/// A comma-separated list of words or phrases, lower-cased; quotes keep commas and semicolons.
fn terms(text: &str) -> Result<Vec<String>, ExplanationError> {
    split_outside_quotes(text, ',')?
        .iter()
        .map(|term| {
            let term = term.trim();
            let unquoted = term
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(term);
            let normal = normalise(unquoted);
            if normal.is_empty() {
                Err(ExplanationError::EmptyTerm(text.trim().to_string()))
            } else {
                Ok(normal)
            }
        })
        .collect()
}

/// Lower case, runs of white space as one space, trimmed.
fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A term as an explanation writes it: quoted when it holds a separator or a space.
fn write_term(term: &str) -> String {
    if term.contains([',', ';', ':', '"', ' ']) {
        format!("\"{}\"", term.replace('"', ""))
    } else {
        term.to_string()
    }
}

impl Explanation {
    pub fn parse(text: &str) -> Result<Self, ExplanationError> {
        let chars = text.chars().count();
        if chars > MAX_EXPLANATION_CHARS {
            return Err(ExplanationError::TooLong(chars));
        }
        let mut clauses = Vec::new();
        for clause in split_outside_quotes(text, ';')? {
            let clause = clause.trim();
            if clause.is_empty() {
                continue;
            }
            let lower = clause.to_ascii_lowercase();
            let rest = |prefix: &str| clause[prefix.len()..].to_string();
            clauses.push(if lower.starts_with("concept:") {
                let name = normalise(&rest("concept:")).replace(' ', "_");
                Clause::Concept(Concept::from_name(&name).ok_or_else(|| {
                    ExplanationError::UnknownConcept {
                        name,
                        known: Concept::ALL.map(|c| c.name()).join(", "),
                    }
                })?)
            } else if lower.starts_with("after:") {
                Clause::After(terms(&rest("after:"))?)
            } else if lower.starts_with("before:") {
                Clause::Before(terms(&rest("before:"))?)
            } else if lower.starts_with("words:") {
                Clause::Words(terms(&rest("words:"))?)
            } else {
                Clause::Words(terms(clause)?)
            });
        }
        if clauses.is_empty() {
            return Err(ExplanationError::Empty);
        }
        Ok(Self { clauses })
    }

    /// The explanation written back in its own language.
    pub fn text(&self) -> String {
        let list = |terms: &[String]| terms.iter().map(|t| write_term(t)).collect::<Vec<_>>();
        self.clauses
            .iter()
            .map(|clause| match clause {
                Clause::Words(t) => list(t).join(", "),
                Clause::Concept(c) => format!("concept:{}", c.name()),
                Clause::After(t) => format!("after: {}", list(t).join(", ")),
                Clause::Before(t) => format!("before: {}", list(t).join(", ")),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether this explanation predicts token `t` of `text` active.
    pub fn predicts(&self, text: &ScanText, t: usize) -> bool {
        self.clauses.iter().any(|clause| match clause {
            Clause::Words(terms) => terms.iter().any(|term| text.ends_with(t, term)),
            Clause::Concept(c) => ConceptSet(text.concepts[t] as u32).contains(*c),
            Clause::After(terms) => text
                .previous(t)
                .is_some_and(|p| terms.iter().any(|term| text.ends_with(p, term))),
            Clause::Before(terms) => text
                .next(t)
                .is_some_and(|n| terms.iter().any(|term| text.ends_with(n, term))),
        })
    }
}

/// The text of a scan's tokens, for matching explanations.
pub struct ScanText {
    /// Lower-cased text of each distinct token id.
    table: Vec<String>,
    /// The same, normalised (trimmed, white space collapsed).
    normal: Vec<String>,
    /// Per token, its index in `table`.
    token: Vec<u32>,
    concepts: Vec<u64>,
    /// Per token, its window and position.
    place: Vec<(usize, usize)>,
}

impl ScanText {
    pub fn new(tokenizer: &TextTokenizer, scan: &Scan) -> Self {
        let mut index: HashMap<u32, u32> = HashMap::new();
        let mut table = Vec::new();
        let token = scan
            .ids
            .iter()
            .map(|&id| {
                *index.entry(id).or_insert_with(|| {
                    table.push(tokenizer.token_text(id).to_lowercase());
                    (table.len() - 1) as u32
                })
            })
            .collect();
        Self {
            normal: table.iter().map(|t| normalise(t)).collect(),
            table,
            token,
            concepts: scan.concepts.clone(),
            place: scan.place.clone(),
        }
    }

    /// From token texts directly (tests).
    pub fn from_tokens(texts: &[&str], window_len: usize, concepts: Vec<u64>) -> Self {
        Self {
            normal: texts.iter().map(|t| normalise(t)).collect(),
            table: texts.iter().map(|t| t.to_lowercase()).collect(),
            token: (0..texts.len() as u32).collect(),
            concepts,
            place: (0..texts.len())
                .map(|t| (t / window_len, t % window_len))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.token.is_empty()
    }

    fn raw(&self, t: usize) -> &str {
        &self.table[self.token[t] as usize]
    }

    /// The trimmed text of token `t`.
    pub fn word(&self, t: usize) -> &str {
        self.raw(t).trim()
    }

    fn previous(&self, t: usize) -> Option<usize> {
        (t > 0 && self.place[t - 1].0 == self.place[t].0).then(|| t - 1)
    }

    fn next(&self, t: usize) -> Option<usize> {
        (t + 1 < self.len() && self.place[t + 1].0 == self.place[t].0).then_some(t + 1)
    }

    /// Whether the window's text up to the end of token `t` ends with `term` (normalised), the
    /// term starting at a word boundary and token `t` holding more than white space.
    fn ends_with(&self, t: usize, term: &str) -> bool {
        if self.normal[self.token[t] as usize].is_empty() {
            return false;
        }
        // `*ing`: any text ending so, inside a word too.
        let (term, inside_words) = match term.strip_prefix('*') {
            Some(rest) if !rest.is_empty() => (rest, true),
            _ => (term, false),
        };
        let whole_word = !inside_words && term.starts_with(char::is_alphanumeric);
        // Fast path, no allocation: a term of one word within this token's own text.
        let own = &self.normal[self.token[t] as usize];
        // The window's text up to here ends with this token's own (normalised) text, so a
        // longer term must too.
        if term.len() > own.len() && !term.ends_with(own.as_str()) {
            return false;
        }
        if !term.contains(' ') && own.len() >= term.len() {
            if !own.ends_with(term) {
                return false;
            }
            if !whole_word {
                return true;
            }
            let start = own.len() - term.len();
            return if start > 0 {
                own[..start]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric())
            } else {
                self.raw(t).starts_with(char::is_whitespace)
                    || self
                        .previous(t)
                        .is_none_or(|p| !self.raw(p).ends_with(char::is_alphanumeric))
            };
        }
        // Take in earlier tokens until the text is longer than the term.
        let mut from = t;
        let mut tail = normalise(self.raw(t));
        while tail.len() <= term.len() {
            let Some(p) = self.previous(from) else { break };
            from = p;
            tail = normalise(&(from..=t).map(|u| self.raw(u)).collect::<String>());
        }
        let Some(start) = tail.len().checked_sub(term.len()) else {
            return false;
        };
        // A word is whole (`cat` is not in `bobcat`); punctuation needs no boundary.
        tail.ends_with(term)
            && (!whole_word
                || tail[..start]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric()))
    }
}

/// Which windows of a scan a step reads: the explainer the even ones, the scores the odd ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    Explain,
    Score,
}

impl Half {
    fn holds(self, window: usize) -> bool {
        window.is_multiple_of(2) == (self == Half::Explain)
    }
}

/// How well an explanation predicts a feature on held-out contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationScore {
    /// Pearson correlation of predicted with true activations over every token of the top and
    /// random contexts (0 when the explanation predicts the same everywhere).
    pub simulation: f64,
    /// Balanced accuracy of telling top-activating from non-activating contexts; `None` when the
    /// feature fires in every context.
    pub detection: Option<f64>,
    pub top_contexts: usize,
    pub random_contexts: usize,
}

/// What an automatic explanation was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplanationSource {
    TopTokens,
    PreviousTokens,
    LogitLens,
    Concept,
    Person,
}

impl ExplanationSource {
    pub fn describe(self) -> &'static str {
        match self {
            Self::TopTokens => "its top tokens",
            Self::PreviousTokens => "the tokens before its top tokens",
            Self::LogitLens => "its logit lens",
            Self::Concept => "the best TinyTales concept",
            Self::Person => "a person",
        }
    }
}

/// A feature's explanation and its held-out score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureExplanation {
    pub feature: usize,
    pub explanation: String,
    pub source: ExplanationSource,
    /// `None` when the feature never fires on the scored half of the held-out text.
    pub score: Option<ExplanationScore>,
}

/// Scores explanations of one scan's features.
pub struct Scorer<'a> {
    scan: &'a Scan,
    text: &'a ScanText,
    seed: u64,
    /// Each half's tokens, in order.
    halves: [Vec<usize>; 2],
}

/// The contexts a score reads for one feature on one half: top-activating focus tokens (one per
/// window), random focus tokens, random focus tokens whose context never activates, and every
/// token of the top and random contexts once with its activation (simulation's tokens).
struct Contexts {
    top: Vec<usize>,
    random: Vec<usize>,
    quiet: Vec<usize>,
    tokens: Vec<usize>,
    actual: Vec<f64>,
    /// Every token of every context, sorted: each candidate's predictions are made once.
    all: Vec<usize>,
}

impl<'a> Scorer<'a> {
    pub fn new(scan: &'a Scan, text: &'a ScanText, seed: u64) -> Self {
        let n = text.len().min(scan.tokens);
        let halves = [Half::Explain, Half::Score]
            .map(|half| (0..n).filter(|&t| half.holds(text.place[t].0)).collect());
        Self {
            scan,
            text,
            seed,
            halves,
        }
    }

    fn act(&self, t: usize, feature: usize) -> f32 {
        self.scan.acts[t * self.scan.d_sae + feature]
    }

    /// The tokens of the context around focus token `t`, within its window.
    fn span(&self, t: usize) -> std::ops::Range<usize> {
        let (window, position) = self.text.place[t];
        let start = t - position.min(CONTEXT_BEFORE);
        let mut end = t + 1;
        while end < self.text.len() && end <= t + CONTEXT_AFTER && self.text.place[end].0 == window
        {
            end += 1;
        }
        start..end
    }

    /// `None` when the feature never fires on this half.
    fn contexts(&self, feature: usize, half: Half) -> Option<Contexts> {
        let in_half = &self.halves[usize::from(half == Half::Score)];
        // The highest activation of each window in this half.
        let mut best: HashMap<usize, (f32, usize)> = HashMap::new();
        for &t in in_half {
            let a = self.act(t, feature);
            if a > 0.0 {
                let entry = best.entry(self.text.place[t].0).or_insert((a, t));
                if a > entry.0 {
                    *entry = (a, t);
                }
            }
        }
        if best.is_empty() {
            return None;
        }
        let mut top: Vec<(f32, usize)> = best.into_values().collect();
        top.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        top.truncate(CONTEXTS);
        let top_windows: std::collections::HashSet<usize> =
            top.iter().map(|&(_, t)| self.text.place[t].0).collect();
        let mut rng = SplitMix64::new(self.seed ^ (feature as u64).wrapping_mul(0x9E37_79B9));
        // Random tokens of the half outside the top windows, by rejection.
        let mut draw = |accept: &dyn Fn(usize) -> bool| {
            let mut chosen = Vec::new();
            for _ in 0..CONTEXTS * 20 {
                if chosen.len() == CONTEXTS || in_half.is_empty() {
                    break;
                }
                let t = in_half[(rng.next_u64() % in_half.len() as u64) as usize];
                if !top_windows.contains(&self.text.place[t].0) && !chosen.contains(&t) && accept(t)
                {
                    chosen.push(t);
                }
            }
            chosen
        };
        let random = draw(&|_| true);
        let quiet = draw(&|t| self.span(t).all(|u| self.act(u, feature) <= 0.0));
        let top: Vec<usize> = top.into_iter().map(|(_, t)| t).collect();
        let mut tokens: Vec<usize> = top
            .iter()
            .chain(&random)
            .flat_map(|&t| self.span(t))
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        let actual = tokens
            .iter()
            .map(|&t| f64::from(self.act(t, feature).max(0.0)))
            .collect();
        let mut all: Vec<usize> = tokens
            .iter()
            .copied()
            .chain(quiet.iter().flat_map(|&t| self.span(t)))
            .collect();
        all.sort_unstable();
        all.dedup();
        Some(Contexts {
            top,
            random,
            quiet,
            tokens,
            actual,
            all,
        })
    }

    /// Score `explanation` for `feature` on `half` of the scan; `None` when the feature never
    /// fires there.
    pub fn score(
        &self,
        feature: usize,
        explanation: &Explanation,
        half: Half,
    ) -> Option<ExplanationScore> {
        Some(self.score_on(&self.contexts(feature, half)?, explanation))
    }

    fn score_on(&self, contexts: &Contexts, explanation: &Explanation) -> ExplanationScore {
        let predictions: Vec<bool> = contexts
            .all
            .iter()
            .map(|&t| explanation.predicts(self.text, t))
            .collect();
        let predicts = |t: usize| contexts.all.binary_search(&t).is_ok_and(|i| predictions[i]);
        let predicted: Vec<f64> = contexts
            .tokens
            .iter()
            .map(|&t| f64::from(u8::from(predicts(t))))
            .collect();
        let simulation = pearson(&predicted, &contexts.actual).unwrap_or(0.0);
        // Detection: a context is called activating when the explanation matches any token.
        let called = |t: usize| self.span(t).any(predicts);
        let detection = (!contexts.quiet.is_empty()).then(|| {
            let hits = contexts.top.iter().filter(|&&t| called(t)).count() as f64;
            let rejections = contexts.quiet.iter().filter(|&&t| !called(t)).count() as f64;
            0.5 * (hits / contexts.top.len() as f64 + rejections / contexts.quiet.len() as f64)
        });
        ExplanationScore {
            simulation,
            detection,
            top_contexts: contexts.top.len(),
            random_contexts: contexts.random.len(),
        }
    }

    /// The best explanation the explainer finds for `feature` from the explaining half: its top
    /// tokens, the tokens before them, the logit lens's `promoted` tokens (when given) and the
    /// TinyTales concepts its activations fall on, each tried and the best by simulation kept;
    /// then scored on the other half.
    pub fn explain(&self, feature: usize, promoted: Option<&[String]>) -> FeatureExplanation {
        let explaining = self.contexts(feature, Half::Explain);
        let candidates = match &explaining {
            Some(_) => self.candidates(feature, promoted),
            None => Vec::new(),
        };
        let best = candidates
            .into_iter()
            .filter_map(|(source, explanation)| {
                let score = self.score_on(explaining.as_ref()?, &explanation);
                Some((score.simulation, source, explanation))
            })
            .fold(
                None::<(f64, ExplanationSource, Explanation)>,
                |best, c| match &best {
                    Some(b) if b.0 >= c.0 => best,
                    _ => Some(c),
                },
            );
        match best {
            Some((_, source, explanation)) => FeatureExplanation {
                feature,
                explanation: explanation.text(),
                source,
                score: self.score(feature, &explanation, Half::Score),
            },
            None => FeatureExplanation {
                feature,
                explanation: String::new(),
                source: ExplanationSource::TopTokens,
                score: None,
            },
        }
    }

    fn candidates(
        &self,
        feature: usize,
        promoted: Option<&[String]>,
    ) -> Vec<(ExplanationSource, Explanation)> {
        let mut own: HashMap<String, f64> = HashMap::new();
        let mut before: HashMap<String, f64> = HashMap::new();
        let mut concepts = [0.0f64; Concept::COUNT];
        for &t in &self.halves[0] {
            let a = self.act(t, feature);
            if a <= 0.0 {
                continue;
            }
            if let Some(term) = self.term(t) {
                *own.entry(term).or_default() += f64::from(a);
            }
            if let Some(term) = self.text.previous(t).and_then(|p| self.term(p)) {
                *before.entry(term).or_default() += f64::from(a);
            }
            for c in ConceptSet(self.text.concepts[t] as u32).iter() {
                concepts[c.index()] += f64::from(a);
            }
        }
        let ranked = |mass: HashMap<String, f64>| {
            let mut terms: Vec<(String, f64)> = mass.into_iter().collect();
            terms.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            terms.into_iter().map(|(t, _)| t).collect::<Vec<_>>()
        };
        let (own, before) = (ranked(own), ranked(before));
        let mut out = Vec::new();
        let mut add = |source, clause: Clause| {
            out.push((
                source,
                Explanation {
                    clauses: vec![clause],
                },
            ))
        };
        for n in [1, 3, 5] {
            if own.len() >= n || (n == 1 && !own.is_empty()) {
                add(
                    ExplanationSource::TopTokens,
                    Clause::Words(own.iter().take(n).cloned().collect()),
                );
            }
        }
        for n in [1, 3] {
            if before.len() >= n || (n == 1 && !before.is_empty()) {
                add(
                    ExplanationSource::PreviousTokens,
                    Clause::After(before.iter().take(n).cloned().collect()),
                );
            }
        }
        if let Some(promoted) = promoted {
            let terms: Vec<String> = promoted
                .iter()
                .map(|t| normalise(t))
                .filter(|t| !t.is_empty() && !t.contains('"'))
                .take(5)
                .collect();
            if !terms.is_empty() {
                add(ExplanationSource::LogitLens, Clause::Before(terms));
            }
        }
        let mut by_mass: Vec<(usize, f64)> = concepts
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, m)| m > 0.0)
            .collect();
        by_mass.sort_by(|a, b| b.1.total_cmp(&a.1));
        for &(c, _) in by_mass.iter().take(3) {
            add(ExplanationSource::Concept, Clause::Concept(Concept::ALL[c]));
        }
        out
    }

    /// Token `t` as a term: its trimmed text, `*`-prefixed when it continues a word.
    fn term(&self, t: usize) -> Option<String> {
        let word = normalise(self.text.word(t));
        if word.is_empty() || word.contains('"') {
            return None;
        }
        let continues = !self.text.raw(t).starts_with(char::is_whitespace)
            && word.starts_with(char::is_alphanumeric)
            && self
                .text
                .previous(t)
                .is_some_and(|p| self.text.raw(p).ends_with(|c: char| c.is_alphanumeric()));
        Some(if continues { format!("*{word}") } else { word })
    }
}

/// Logit-lens tokens the explainer tries as a `before:` clause.
pub const LENS_TERMS: usize = 5;

/// The logit lens's promoted tokens of `features`, as text, for [`Scorer::explain`].
pub async fn promoted_tokens(
    model: &Model,
    tokenizer: &TextTokenizer,
    sae: &Sae,
    features: &[usize],
) -> Result<Vec<Vec<String>>> {
    Ok(logit_lens(model, sae, features, LENS_TERMS)
        .await?
        .into_iter()
        .map(|(top, _)| {
            top.into_iter()
                .map(|(id, _)| tokenizer.token_text(id as u32))
                .collect()
        })
        .collect())
}

/// Explain and score each of `features` on `scan` (see [`Scorer::explain`]).
pub async fn explain_features(
    model: &Model,
    tokenizer: &TextTokenizer,
    sae: &Sae,
    scan: &Scan,
    features: &[usize],
    seed: u64,
) -> Result<Vec<FeatureExplanation>> {
    if let Some(&bad) = features.iter().find(|&&f| f >= scan.d_sae) {
        return Err(SaeplayError::InvalidSetting(format!(
            "feature {bad} does not exist: this SAE has features 0 to {}",
            scan.d_sae.saturating_sub(1)
        )));
    }
    let text = ScanText::new(tokenizer, scan);
    let scorer = Scorer::new(scan, &text, seed);
    let mut out = Vec::with_capacity(features.len());
    // The logit lens in pieces, so a wide SAE's is never whole.
    for piece in features.chunks(256) {
        let promoted = promoted_tokens(model, tokenizer, sae, piece).await?;
        out.extend(
            piece
                .iter()
                .zip(&promoted)
                .map(|(&f, p)| scorer.explain(f, Some(p))),
        );
    }
    Ok(out)
}

/// Pearson's correlation; `None` when either side is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        cov += da * db;
        va += da * da;
        vb += db * db;
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows of `texts.len() / window_len` tokens; one feature with `acts`.
    fn scan_of(texts: &[&str], window_len: usize, acts: Vec<f32>, concepts: Vec<u64>) -> Scan {
        let n = texts.len();
        Scan {
            tokens: n,
            d_sae: 1,
            acts,
            ids: (0..n as u32).collect(),
            place: (0..n).map(|t| (t / window_len, t % window_len)).collect(),
            concepts,
            window_len,
        }
    }

    #[test]
    fn explanations_parse_and_write_back() {
        let e = Explanation::parse(
            r#"Cat, "once  upon"; concept:Animal ; after: the, "a,b"; before: ."#,
        )
        .unwrap();
        assert_eq!(
            e.text(),
            r#"cat, "once upon"; concept:animal; after: the, "a,b"; before: ."#
        );
        assert_eq!(Explanation::parse(&e.text()).unwrap(), e);
        assert_eq!(Explanation::parse(" ; "), Err(ExplanationError::Empty));
        assert!(matches!(
            Explanation::parse("\"cat"),
            Err(ExplanationError::OpenQuote(_))
        ));
        assert!(matches!(
            Explanation::parse("cat,,dog"),
            Err(ExplanationError::EmptyTerm(_))
        ));
        let unknown = Explanation::parse("concept:unicorn")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("unicorn") && unknown.contains("animal"),
            "{unknown}"
        );
        assert!(matches!(
            Explanation::parse(&"a".repeat(MAX_EXPLANATION_CHARS + 1)),
            Err(ExplanationError::TooLong(_))
        ));
    }

    #[test]
    fn words_phrases_and_context_match_where_they_end() {
        let texts = [
            "Once", " upon", " a", " time", ",", " the", " cat", "s", " play", "ing", ".",
        ];
        let animal = 1u64 << Concept::Animal.index();
        let mut concepts = vec![0; texts.len()];
        concepts[6] = animal;
        let text = ScanText::from_tokens(&texts, texts.len(), concepts);
        let hits = |e: &str| -> Vec<usize> {
            let e = Explanation::parse(e).unwrap();
            (0..text.len()).filter(|&t| e.predicts(&text, t)).collect()
        };
        assert_eq!(hits("once upon"), vec![1]);
        assert_eq!(hits("\"upon a time\""), vec![3]);
        assert_eq!(hits("CAT"), vec![6]);
        assert_eq!(hits("ing"), Vec::<usize>::new(), "inside a word");
        assert_eq!(hits("*ing"), vec![9]);
        assert_eq!(hits("time"), vec![3]);
        assert_eq!(hits("ime"), Vec::<usize>::new());
        assert_eq!(hits("after: the"), vec![6]);
        assert_eq!(hits("before: ."), vec![9]);
        assert_eq!(hits("concept:animal"), vec![6]);
        assert_eq!(hits(r#"cat; before: ",""#), vec![3, 6]);
        // Matches stay inside a window.
        let split = ScanText::from_tokens(&texts, 2, vec![0; texts.len()]);
        let e = Explanation::parse("once upon").unwrap();
        assert!(e.predicts(&split, 1));
        let e = Explanation::parse("upon a").unwrap();
        assert!(!e.predicts(&split, 2), "` a` starts the next window");
    }

    #[test]
    fn scores_equal_a_direct_computation() {
        // Eight windows of five tokens: every context is a whole window. The scored half is the
        // odd windows; the feature fires on `cat` in windows 1 and 3 and on `dog` in window 3.
        let words = ["the", "cat", "sat", "dog", "ran"];
        let texts: Vec<&str> = (0..40).map(|t| words[(t * 7 + t / 5) % 5]).collect();
        let acts: Vec<f32> = (0..40)
            .map(|t| {
                let window = t / 5;
                match (window, texts[t]) {
                    (1 | 3, "cat") => 2.0,
                    (3, "dog") => 1.0,
                    (0, _) => 5.0, // the explaining half is never scored
                    _ => 0.0,
                }
            })
            .collect();
        assert!(texts[5..10].contains(&"cat") && texts[15..20].contains(&"dog"));
        let scan = scan_of(&texts, 5, acts.clone(), vec![0; 40]);
        let text = ScanText::from_tokens(&texts, 5, vec![0; 40]);
        let scorer = Scorer::new(&scan, &text, 7);
        for explanation in ["cat", "dog", "cat, dog", "sat", "after: the"] {
            let e = Explanation::parse(explanation).unwrap();
            let score = scorer.score(0, &e, Half::Score).unwrap();
            // Direct: every token of the odd windows (top: 1 and 3; random: all of 5 and 7).
            let tokens: Vec<usize> = (0..40).filter(|t| (t / 5) % 2 == 1).collect();
            let predicted: Vec<f64> = tokens
                .iter()
                .map(|&t| f64::from(u8::from(e.predicts(&text, t))))
                .collect();
            let actual: Vec<f64> = tokens.iter().map(|&t| f64::from(acts[t])).collect();
            let expected = pearson(&predicted, &actual).unwrap_or(0.0);
            assert!(
                (score.simulation - expected).abs() < 1e-12,
                "{explanation}: {} vs {expected}",
                score.simulation
            );
            let called = |w: usize| (w * 5..w * 5 + 5).any(|t| e.predicts(&text, t));
            let hits = [1, 3].iter().filter(|&&w| called(w)).count() as f64 / 2.0;
            let rejections = [5, 7].iter().filter(|&&w| !called(w)).count() as f64 / 2.0;
            assert_eq!(
                score.detection,
                Some(0.5 * (hits + rejections)),
                "{explanation}"
            );
            assert_eq!((score.top_contexts, score.random_contexts), (2, 10));
        }
        // Never firing on the scored half: no score.
        let quiet = scan_of(&texts, 5, vec![0.0; 40], vec![0; 40]);
        let e = Explanation::parse("cat").unwrap();
        assert_eq!(
            Scorer::new(&quiet, &text, 7).score(0, &e, Half::Score),
            None
        );
    }

    #[test]
    fn the_explainer_finds_words_concepts_and_the_logit_lens() {
        let words = [
            "the", " cat", " ran", " dog", " fox", " owl", " bee", " ant", ".", " a",
        ];
        let texts: Vec<&str> = (0..400)
            .map(|t| words[(crate::rng::mix64(t as u64) % 10) as usize])
            .collect();
        let animal = 1u64 << Concept::Animal.index();
        let concepts: Vec<u64> = texts
            .iter()
            .map(|w| {
                if [" cat", " dog", " fox", " owl", " bee", " ant"].contains(w) {
                    animal
                } else {
                    0
                }
            })
            .collect();
        let text = ScanText::from_tokens(&texts, 10, concepts.clone());
        let explain = |fires: &dyn Fn(usize) -> bool, promoted: Option<&[String]>| {
            let acts = (0..400).map(|t| if fires(t) { 1.0 } else { 0.0 }).collect();
            let scan = scan_of(&texts, 10, acts, concepts.clone());
            Scorer::new(&scan, &text, 3).explain(0, promoted)
        };
        let cat = explain(&|t| texts[t] == " cat", None);
        assert_eq!(cat.explanation, "cat");
        assert_eq!(cat.source, ExplanationSource::TopTokens);
        let score = cat.score.unwrap();
        assert!((score.simulation - 1.0).abs() < 1e-12 && score.detection == Some(1.0));
        let animals = explain(&|t| concepts[t] != 0, None);
        assert_eq!(animals.explanation, "concept:animal");
        let before_stop = explain(
            &|t| t + 1 < 400 && texts[t + 1] == "." && t % 10 != 9,
            Some(&[".".to_string(), " the".to_string()]),
        );
        assert_eq!(
            before_stop.source,
            ExplanationSource::LogitLens,
            "{before_stop:?}"
        );
        let never = explain(&|_| false, None);
        assert_eq!((never.explanation.as_str(), never.score), ("", None));
    }

    #[test]
    fn pearson_is_the_textbook_formula() {
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]).unwrap();
        // By hand: deviations (-1.5, -0.5, 0.5, 1.5) and (-3, -1, 0, 4): r = 11 / sqrt(5 * 26).
        assert!((r - 11.0 / (5.0f64 * 26.0).sqrt()).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[0.0, 3.0]), None);
    }
}
