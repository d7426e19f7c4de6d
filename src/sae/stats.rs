//! Host-side statistics over SAE feature activations: AUROC and concept recovery, histograms,
//! per-feature summaries, example selection for feature cards, nearest neighbours by cosine, and
//! the geometric median.
//!
//! Activations arrive row-major as `&[f32]` of shape `[n_tokens, d_sae]`. Inputs are `f32`; sums
//! and results where precision matters are `f64`. Nothing here panics on any input: malformed
//! input (mismatched lengths, out-of-range ids) gives an `Err(String)` or, where the signature has
//! no error channel, an empty or `None` result, as each item documents. NaN values are skipped
//! unless an item says otherwise.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Orders two values known not to be NaN. Unlike `total_cmp`, `-0.0` and `0.0` compare equal,
/// which is what ties and "exactly zero" mean for activations.
fn cmp_non_nan(a: f32, b: f32) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Checks that a flat buffer holds `n_rows * n_cols` values, without overflowing.
fn check_shape(data_len: usize, n_rows: usize, n_cols: usize, what: &str) -> Result<(), String> {
    match n_rows.checked_mul(n_cols) {
        Some(expected) if expected == data_len => Ok(()),
        Some(expected) => Err(format!(
            "{what} has {data_len} values but {n_rows} x {n_cols} = {expected} were expected"
        )),
        None => Err(format!("{what} shape {n_rows} x {n_cols} is too large")),
    }
}

/// SplitMix64's output function: a cheap, well-mixed 64-bit hash. Used to give every
/// (feature, token) pair a reproducible pseudo-random sampling key, the same on every platform.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The indices of the set bits of `mask`, lowest first.
fn set_bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let bit = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(bit)
    })
}

// ---------------------------------------------------------------------------------------------
// AUROC
// ---------------------------------------------------------------------------------------------

/// AUROC from twice the Mann-Whitney U. Both AUROC paths build the same exact integer, so they
/// agree to the last bit.
fn auroc_from_twice_u(twice_u: u128, positives: u128, negatives: u128) -> f64 {
    twice_u as f64 / (2 * positives * negatives) as f64
}

/// Area under the ROC curve for telling positives (`labels[i] == true`) from negatives by score:
/// P(score_pos > score_neg) + 0.5 P(score_pos == score_neg), i.e. ties count half (midranks).
///
/// Tokens whose score is NaN are left out. Returns `None` when the lengths differ or when, after
/// that, there are no positives or no negatives. `-0.0` ties with `0.0`.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let mut scored: Vec<(f32, bool)> = scores
        .iter()
        .zip(labels)
        .filter(|(score, _)| !score.is_nan())
        .map(|(&score, &label)| (score, label))
        .collect();
    let positives = scored.iter().filter(|(_, label)| *label).count() as u128;
    let negatives = scored.len() as u128 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    scored.sort_unstable_by(|a, b| cmp_non_nan(a.0, b.0));
    // Each positive beats every negative scored strictly lower and ties half of those equal.
    let mut twice_u: u128 = 0;
    let mut negatives_below: u128 = 0;
    for group in scored.chunk_by(|a, b| a.0 == b.0) {
        let group_positives = group.iter().filter(|(_, label)| *label).count() as u128;
        let group_negatives = group.len() as u128 - group_positives;
        twice_u += group_positives * (2 * negatives_below + group_negatives);
        negatives_below += group_negatives;
    }
    Some(auroc_from_twice_u(twice_u, positives, negatives))
}

// ---------------------------------------------------------------------------------------------
// Concept recovery
// ---------------------------------------------------------------------------------------------

/// The most concepts [`concept_auroc_matrix`] handles: one bit each of a `u64` mask.
pub const MAX_CONCEPTS: usize = 64;

/// The nonzero entries of a row-major matrix regrouped by column (feature): what concept AUROC
/// needs, since zeros are handled as one tie group. Costs 8 bytes per nonzero entry.
struct SparseColumns {
    /// `entries[offsets[f]..offsets[f + 1]]` are feature `f`'s (value, token) pairs.
    offsets: Vec<usize>,
    entries: Vec<(f32, u32)>,
}

impl SparseColumns {
    /// `acts` must hold `n_tokens * d_sae` values with `d_sae > 0` and `n_tokens <= u32::MAX`.
    fn from_rows(acts: &[f32], d_sae: usize) -> Self {
        // NaN != 0.0, so NaN entries are kept here and set aside per feature later.
        let mut counts = vec![0usize; d_sae];
        for row in acts.chunks_exact(d_sae) {
            for (count, &value) in counts.iter_mut().zip(row) {
                *count += usize::from(value != 0.0);
            }
        }
        let mut offsets = Vec::with_capacity(d_sae + 1);
        offsets.push(0);
        for count in &counts {
            offsets.push(offsets[offsets.len() - 1] + count);
        }
        let mut next_slot: Vec<usize> = offsets[..d_sae].to_vec();
        let mut entries = vec![(0.0f32, 0u32); offsets[d_sae]];
        for (token, row) in acts.chunks_exact(d_sae).enumerate() {
            for (feature, &value) in row.iter().enumerate() {
                if value != 0.0 {
                    entries[next_slot[feature]] = (value, token as u32);
                    next_slot[feature] += 1;
                }
            }
        }
        Self { offsets, entries }
    }

    fn column_mut(&mut self, feature: usize) -> &mut [(f32, u32)] {
        &mut self.entries[self.offsets[feature]..self.offsets[feature + 1]]
    }
}

/// Per-concept working buffers reused across features.
struct ConceptScratch {
    /// Sum over positive tokens with a nonzero activation of twice their midrank.
    twice_rank_sums: Vec<u128>,
    /// Positive tokens with a nonzero (non-NaN) activation.
    nonzero_positives: Vec<u64>,
    /// Positive tokens whose activation is NaN (left out of this feature's AUROC).
    nan_positives: Vec<u64>,
}

/// Fills `out[c]` with the AUROC of one feature for each concept `c`, in
/// O(nnz log nnz + nnz * concepts_per_token + n_concepts).
fn feature_concept_aurocs(
    entries: &mut [(f32, u32)],
    n_tokens: usize,
    token_concepts: &[u64],
    concept_bits: u64,
    concept_totals: &[u64],
    scratch: &mut ConceptScratch,
    out: &mut [f32],
) {
    scratch.twice_rank_sums.fill(0);
    scratch.nonzero_positives.fill(0);
    scratch.nan_positives.fill(0);

    // Move NaN entries to the back: those tokens are left out, as `auroc` does.
    let mut valid_len = 0;
    for index in 0..entries.len() {
        if !entries[index].0.is_nan() {
            entries.swap(index, valid_len);
            valid_len += 1;
        }
    }
    let (valid, nan) = entries.split_at_mut(valid_len);
    for &(_, token) in nan.iter() {
        for concept in set_bits(token_concepts[token as usize] & concept_bits) {
            scratch.nan_positives[concept] += 1;
        }
    }
    let n_valid = (n_tokens - nan.len()) as u64;
    let n_zeros = n_valid - valid.len() as u64;

    valid.sort_unstable_by(|a, b| cmp_non_nan(a.0, b.0));
    // Walk tie groups in ascending order; the zeros form one group between negatives and positives.
    // Ranks are kept doubled so that midranks stay integers.
    let mut below: u64 = 0;
    let mut zero_twice_rank: Option<u64> = None;
    for group in valid.chunk_by(|a, b| a.0 == b.0) {
        if zero_twice_rank.is_none() && group[0].0 > 0.0 {
            zero_twice_rank = Some(2 * below + n_zeros + 1);
            below += n_zeros;
        }
        let twice_rank = 2 * below + group.len() as u64 + 1;
        for &(_, token) in group {
            for concept in set_bits(token_concepts[token as usize] & concept_bits) {
                scratch.twice_rank_sums[concept] += u128::from(twice_rank);
                scratch.nonzero_positives[concept] += 1;
            }
        }
        below += group.len() as u64;
    }
    let zero_twice_rank = zero_twice_rank.unwrap_or(2 * below + n_zeros + 1);

    for (concept, slot) in out.iter_mut().enumerate() {
        let positives = concept_totals[concept] - scratch.nan_positives[concept];
        let negatives = n_valid - positives;
        if positives == 0 || negatives == 0 {
            *slot = f32::NAN;
            continue;
        }
        let zero_positives = positives - scratch.nonzero_positives[concept];
        let twice_rank_sum = scratch.twice_rank_sums[concept]
            + u128::from(zero_twice_rank) * u128::from(zero_positives);
        // Mann-Whitney: U = R - P(P+1)/2.
        let positives = u128::from(positives);
        let twice_u = twice_rank_sum - positives * (positives + 1);
        *slot = auroc_from_twice_u(twice_u, positives, u128::from(negatives)) as f32;
    }
}

/// AUROC of every feature for every concept, as a `[d_sae, n_concepts]` row-major matrix.
///
/// `acts` is `[n_tokens, d_sae]` row-major; `token_concepts[t]` has bit `c` set when token `t`
/// carries concept `c` (bits at or above `n_concepts` are ignored). Entry `(f, c)` equals
/// `auroc(column f, has concept c)`, NaN where the concept has no positives or no negatives
/// among the tokens whose activation is not NaN.
///
/// Built for sparse activations: zeros are never sorted but ranked as one tie group, so each
/// feature costs O(nnz log nnz + nnz * concepts_per_token + n_concepts) after one pass over `acts`
/// that regroups the nonzero entries by feature (8 bytes of memory per nonzero entry).
///
/// Errors when the lengths do not match the shape, when `n_concepts > 64`, or when
/// `n_tokens > u32::MAX`. An empty `d_sae` or `n_concepts` gives an empty matrix.
pub fn concept_auroc_matrix(
    acts: &[f32],
    n_tokens: usize,
    d_sae: usize,
    token_concepts: &[u64],
    n_concepts: usize,
) -> Result<Vec<f32>, String> {
    check_shape(acts.len(), n_tokens, d_sae, "activations")?;
    if token_concepts.len() != n_tokens {
        return Err(format!(
            "token_concepts has {} masks but there are {n_tokens} tokens",
            token_concepts.len()
        ));
    }
    if n_concepts > MAX_CONCEPTS {
        return Err(format!(
            "{n_concepts} concepts requested but a u64 mask holds at most {MAX_CONCEPTS}"
        ));
    }
    if u32::try_from(n_tokens).is_err() {
        return Err(format!(
            "{n_tokens} tokens is more than this function indexes (u32)"
        ));
    }
    if d_sae == 0 || n_concepts == 0 {
        return Ok(Vec::new());
    }

    let concept_bits = if n_concepts == MAX_CONCEPTS {
        u64::MAX
    } else {
        (1u64 << n_concepts) - 1
    };
    let mut concept_totals = vec![0u64; n_concepts];
    for &mask in token_concepts {
        for concept in set_bits(mask & concept_bits) {
            concept_totals[concept] += 1;
        }
    }

    let mut columns = SparseColumns::from_rows(acts, d_sae);
    let mut scratch = ConceptScratch {
        twice_rank_sums: vec![0; n_concepts],
        nonzero_positives: vec![0; n_concepts],
        nan_positives: vec![0; n_concepts],
    };
    let mut matrix = vec![f32::NAN; d_sae * n_concepts];
    for (feature, out) in matrix.chunks_exact_mut(n_concepts).enumerate() {
        feature_concept_aurocs(
            columns.column_mut(feature),
            n_tokens,
            token_concepts,
            concept_bits,
            &concept_totals,
            &mut scratch,
            out,
        );
    }
    Ok(matrix)
}

/// One (concept, feature) pairing and its AUROC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConceptMatch {
    pub concept: usize,
    pub feature: usize,
    pub auroc: f64,
}

/// The highest non-NaN value among `(index, value)` candidates; ties go to the first (lowest).
fn best_candidate(candidates: impl Iterator<Item = (usize, f32)>) -> Option<(usize, f32)> {
    candidates
        .filter(|(_, value)| !value.is_nan())
        .fold(None, |best, (index, value)| match best {
            Some((_, best_value)) if best_value >= value => best,
            _ => Some((index, value)),
        })
}

/// For each concept, the feature with the highest AUROC in a `[d_sae, n_concepts]` matrix from
/// [`concept_auroc_matrix`]; ties go to the lowest feature id, and `None` where the concept's
/// column is all NaN. Returns an empty vector when `matrix.len() != d_sae * n_concepts`.
pub fn best_feature_per_concept(
    matrix: &[f32],
    d_sae: usize,
    n_concepts: usize,
) -> Vec<Option<ConceptMatch>> {
    if d_sae.checked_mul(n_concepts) != Some(matrix.len()) {
        return Vec::new();
    }
    (0..n_concepts)
        .map(|concept| {
            let column =
                (0..d_sae).map(|feature| (feature, matrix[feature * n_concepts + concept]));
            best_candidate(column).map(|(feature, value)| ConceptMatch {
                concept,
                feature,
                auroc: f64::from(value),
            })
        })
        .collect()
}

/// For each feature, the concept it detects best (highest AUROC) in a `[d_sae, n_concepts]`
/// matrix; ties go to the lowest concept id, and `None` where the feature's row is all NaN.
/// Returns an empty vector when `matrix.len() != d_sae * n_concepts`.
pub fn best_concept_per_feature(
    matrix: &[f32],
    d_sae: usize,
    n_concepts: usize,
) -> Vec<Option<ConceptMatch>> {
    if d_sae.checked_mul(n_concepts) != Some(matrix.len()) {
        return Vec::new();
    }
    (0..d_sae)
        .map(|feature| {
            let row = &matrix[feature * n_concepts..(feature + 1) * n_concepts];
            best_candidate(row.iter().copied().enumerate()).map(|(concept, value)| ConceptMatch {
                concept,
                feature,
                auroc: f64::from(value),
            })
        })
        .collect()
}

/// Mean AUROC over the matches present (`None` entries and non-finite AUROCs are skipped);
/// `None` when nothing is left. The usual one-number summary of concept recovery.
pub fn mean_best_auroc(best: &[Option<ConceptMatch>]) -> Option<f64> {
    let values: Vec<f64> = best
        .iter()
        .flatten()
        .map(|found| found.auroc)
        .filter(|value| value.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

// ---------------------------------------------------------------------------------------------
// Histograms
// ---------------------------------------------------------------------------------------------

/// Counts of values in equal-width bins. `edges.len() == counts.len() + 1`, or both are empty.
/// Bin `i` is `[edges[i], edges[i + 1])`, except the last, which also holds `edges[bins]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Histogram {
    fn empty() -> Self {
        Self {
            edges: Vec::new(),
            counts: Vec::new(),
        }
    }
}

/// Histogram of `values` in `bins` equal-width bins over `range`, or over the data's min..max
/// when `range` is `None` (or not finite). NaN and infinite values are skipped, as are values
/// outside an explicit range; the range's upper end lands in the last bin. A reversed range is
/// swapped; a zero-width one is widened by 0.5 on each side (as numpy does).
///
/// Returns an empty histogram (no edges, no counts) when `bins == 0`, when there is neither data
/// nor an explicit range, or when the range is too wide for `f64`. With an explicit range and no
/// data, the counts are all zero.
pub fn histogram(
    values: impl IntoIterator<Item = f64>,
    bins: usize,
    range: Option<(f64, f64)>,
) -> Histogram {
    let finite: Vec<f64> = values
        .into_iter()
        .filter(|value| value.is_finite())
        .collect();
    let explicit = range
        .filter(|(low, high)| low.is_finite() && high.is_finite())
        .map(|(low, high)| {
            if low <= high {
                (low, high)
            } else {
                (high, low)
            }
        });
    let data_range = || {
        let low = finite.iter().copied().reduce(f64::min)?;
        let high = finite.iter().copied().reduce(f64::max)?;
        Some((low, high))
    };
    let Some((mut low, mut high)) = explicit.or_else(data_range) else {
        return Histogram::empty();
    };
    if bins == 0 {
        return Histogram::empty();
    }
    if low == high {
        // Large magnitudes need a wider pad for the two ends to stay distinct.
        let pad = 0.5_f64.max(low.abs() * f64::EPSILON * 16.0);
        low -= pad;
        high += pad;
    }
    let span = high - low;
    if !span.is_finite() || span <= 0.0 {
        return Histogram::empty();
    }

    let edges: Vec<f64> = (0..=bins)
        .map(|i| {
            if i == bins {
                high
            } else {
                low + span * (i as f64 / bins as f64)
            }
        })
        .collect();
    let mut counts = vec![0u64; bins];
    for value in finite {
        if value < low || value > high {
            continue;
        }
        // `as usize` saturates, and the nudge fixes rounding so the bin agrees with `edges`.
        let mut bin = ((((value - low) / span) * bins as f64) as usize).min(bins - 1);
        while bin > 0 && value < edges[bin] {
            bin -= 1;
        }
        while bin + 1 < bins && value >= edges[bin + 1] {
            bin += 1;
        }
        counts[bin] += 1;
    }
    Histogram { edges, counts }
}

/// The default log10 range for feature-density histograms: one in 10^8 tokens up to every token.
pub const LOG10_DENSITY_RANGE: (f64, f64) = (-8.0, 0.0);

/// Histogram of log10(density) over features that fire at all, plus the number of dead features
/// (density exactly 0) returned separately, as SAELens and Neuronpedia show it: dead features
/// have no logarithm and would otherwise vanish.
///
/// The range is [`LOG10_DENSITY_RANGE`], widened to the data where a density falls outside it.
/// Negative, NaN and infinite densities are neither counted nor dead.
pub fn log10_density_histogram(densities: &[f64], bins: usize) -> (Histogram, usize) {
    let dead = densities.iter().filter(|&&density| density == 0.0).count();
    let logs: Vec<f64> = densities
        .iter()
        .filter(|density| density.is_finite() && **density > 0.0)
        .map(|density| density.log10())
        .collect();
    let low = logs.iter().copied().fold(LOG10_DENSITY_RANGE.0, f64::min);
    let high = logs.iter().copied().fold(LOG10_DENSITY_RANGE.1, f64::max);
    (histogram(logs, bins, Some((low, high))), dead)
}

// ---------------------------------------------------------------------------------------------
// Per-feature summary
// ---------------------------------------------------------------------------------------------

/// Density above which a feature is commonly called dense: firing on more than 10% of tokens.
pub const DEFAULT_DENSE_THRESHOLD: f64 = 0.1;

/// One feature's activation summary. A feature is active on a token when its activation is > 0.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct FeatureSummary {
    /// Fraction of tokens on which the feature is active (0 when no tokens were seen).
    pub density: f64,
    /// Largest activation seen, 0 when the feature never fired.
    pub max_activation: f32,
    /// Mean activation over the tokens where the feature is active, 0 when it never fired.
    pub mean_active: f64,
}

/// Per-feature summaries accumulated one batch of activation rows at a time, so callers can
/// stream. Memory is O(d_sae). NaN activations count as inactive.
#[derive(Debug, Clone)]
pub struct FeatureStatsAccumulator {
    d_sae: usize,
    tokens: u64,
    active_counts: Vec<u64>,
    active_sums: Vec<f64>,
    max_activations: Vec<f32>,
    /// Sum over tokens of the number of active features, for L0.
    total_active: u64,
}

impl FeatureStatsAccumulator {
    /// An empty accumulator for `d_sae` features.
    pub fn new(d_sae: usize) -> Self {
        Self {
            d_sae,
            tokens: 0,
            active_counts: vec![0; d_sae],
            active_sums: vec![0.0; d_sae],
            max_activations: vec![0.0; d_sae],
            total_active: 0,
        }
    }

    /// Adds `n_rows` tokens of activations, `[n_rows, d_sae]` row-major. Errors, changing
    /// nothing, when `acts.len() != n_rows * d_sae`.
    pub fn add_batch(&mut self, acts: &[f32], n_rows: usize) -> Result<(), String> {
        check_shape(acts.len(), n_rows, self.d_sae, "activations")?;
        for row_index in 0..n_rows {
            let row = &acts[row_index * self.d_sae..(row_index + 1) * self.d_sae];
            for (feature, &value) in row.iter().enumerate() {
                if value > 0.0 {
                    self.active_counts[feature] += 1;
                    self.active_sums[feature] += f64::from(value);
                    self.max_activations[feature] = self.max_activations[feature].max(value);
                    self.total_active += 1;
                }
            }
        }
        self.tokens += n_rows as u64;
        Ok(())
    }

    /// The summary of each feature so far, indexed by feature id.
    pub fn finish(&self) -> Vec<FeatureSummary> {
        (0..self.d_sae)
            .map(|feature| {
                let active = self.active_counts[feature];
                FeatureSummary {
                    density: ratio(active, self.tokens),
                    max_activation: self.max_activations[feature],
                    mean_active: if active == 0 {
                        0.0
                    } else {
                        self.active_sums[feature] / active as f64
                    },
                }
            })
            .collect()
    }

    /// Tokens (rows) seen so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// L0: the mean number of active features per token (0 when no tokens were seen).
    pub fn l0(&self) -> f64 {
        ratio(self.total_active, self.tokens)
    }

    /// Fraction of features that never fired (density 0); 0 when `d_sae == 0`.
    pub fn dead_fraction(&self) -> f64 {
        let dead = self
            .active_counts
            .iter()
            .filter(|&&count| count == 0)
            .count();
        ratio(dead as u64, self.d_sae as u64)
    }

    /// Fraction of features whose density exceeds `threshold` (see [`DEFAULT_DENSE_THRESHOLD`]);
    /// 0 when `d_sae == 0` or no tokens were seen.
    pub fn dense_fraction(&self, threshold: f64) -> f64 {
        let dense = self
            .active_counts
            .iter()
            .filter(|&&count| ratio(count, self.tokens) > threshold)
            .count();
        ratio(dense as u64, self.d_sae as u64)
    }
}

/// `part / whole`, 0 when `whole` is 0.
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

// ---------------------------------------------------------------------------------------------
// Example selection for feature cards
// ---------------------------------------------------------------------------------------------

/// What [`ExampleCollector`] keeps per feature.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ExampleConfig {
    /// How many top-activating tokens to keep.
    pub n_top: usize,
    /// How many equal-width intervals split (0, max activation], at most [`MAX_BANDS`].
    pub n_bands: usize,
    /// Examples per interval.
    pub per_band: usize,
    /// Seed for the sampling keys; the same seed gives the same examples.
    pub seed: u64,
}

impl Default for ExampleConfig {
    fn default() -> Self {
        Self {
            n_top: 20,
            n_bands: 10,
            per_band: 5,
            seed: 0,
        }
    }
}

/// The most bands [`ExampleCollector`] accepts; each costs up to 8 fine bins per feature.
pub const MAX_BANDS: usize = 1024;

/// One interval of activation, `(low, high]`, and examples sampled from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuantileBand {
    pub low: f32,
    pub high: f32,
    /// `(activation, token index)`, highest activation first.
    pub examples: Vec<(f32, usize)>,
}

/// Examples for one feature's card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureExamples {
    /// The feature id these examples belong to.
    pub feature: usize,
    /// `(activation, token index)` of the highest activations, highest first, ties by index.
    pub top: Vec<(f32, usize)>,
    /// Bands from lowest to highest activation; empty when the feature never fired.
    pub quantiles: Vec<QuantileBand>,
}

/// A top-activation candidate. Orders "worse first is greater" so that a max-heap's top is the
/// one to evict: lower activation is worse, and on equal activation the later token.
#[derive(Debug, Clone, Copy)]
struct TopEntry {
    value: f32,
    token: usize,
}

impl Ord for TopEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .value
            .total_cmp(&self.value)
            .then(self.token.cmp(&other.token))
    }
}
impl PartialOrd for TopEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for TopEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for TopEntry {}

/// A sampling candidate, ordered by its pseudo-random key (then token, for determinism).
#[derive(Debug, Clone, Copy)]
struct SampleEntry {
    key: u64,
    value: f32,
    token: usize,
}

impl Ord for SampleEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key).then(self.token.cmp(&other.token))
    }
}
impl PartialOrd for SampleEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for SampleEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for SampleEntry {}

/// Keeps the `capacity` smallest entries of a max-heap.
fn push_bounded<T: Ord>(heap: &mut BinaryHeap<T>, entry: T, capacity: usize) {
    if heap.len() < capacity {
        heap.push(entry);
    } else if let Some(mut largest) = heap.peek_mut()
        && entry < *largest
    {
        *largest = entry;
    }
}

/// 2^exponent as f64 (exact for the exponents used here).
fn power_of_two(exponent: i32) -> f64 {
    2f64.powi(exponent)
}

/// The smallest exponent `e` with `value <= 2^e`, for positive finite `value`.
fn ceil_log2(value: f32) -> i32 {
    let value = f64::from(value);
    let mut exponent = value.log2().ceil() as i32;
    while power_of_two(exponent) < value {
        exponent += 1;
    }
    while power_of_two(exponent - 1) >= value {
        exponent -= 1;
    }
    exponent
}

/// One feature's streaming state.
///
/// Band sampling uses a fixed grid of `G` equal fine bins over (0, 2^scale_exponent], the smallest
/// power of two holding the running max. Each fine bin keeps the `per_band` entries with the
/// smallest hash keys (a bottom-k sample, i.e. a uniform sample without replacement). When the max
/// outgrows the grid the scale doubles and neighbouring bins merge; the bottom-k of a union is the
/// bottom-k of the two bottom-k sets, and with power-of-two scales the bin of a value is exact, so
/// the kept sets do not depend on batch order or size.
///
/// The "bars" are cheap pre-checks: most candidates lose, and testing them against a small array
/// avoids a cache miss into the heaps (measured about 2x faster over 2048 features).
#[derive(Debug, Clone)]
struct FeatureTracker {
    top: BinaryHeap<TopEntry>,
    /// The lowest kept top activation once `top` is full, -inf until then.
    top_bar: f32,
    max_activation: f32,
    /// `e` with the fine grid covering (0, 2^e]; `None` until the feature first fires.
    scale_exponent: Option<i32>,
    /// 2^e as f64, cached.
    scale: f64,
    /// 2^(log2 G - e): multiplies a value into fine-bin units, cached.
    to_fine_units: f64,
    fine_bins: Vec<BinaryHeap<SampleEntry>>,
    /// Per fine bin, the largest kept key once the bin is full, `u64::MAX` until then.
    fine_bin_bars: Vec<u64>,
}

impl FeatureTracker {
    fn new() -> Self {
        Self {
            top: BinaryHeap::new(),
            top_bar: f32::NEG_INFINITY,
            max_activation: 0.0,
            scale_exponent: None,
            scale: 0.0,
            to_fine_units: 0.0,
            fine_bins: Vec::new(),
            fine_bin_bars: Vec::new(),
        }
    }

    /// The fine bin `(j, j + 1]` (in fine-bin units) holding `value`.
    fn fine_bin_of(&self, value: f32) -> usize {
        // value * 2^(log2 G - e) is exact in f64, so the bin depends on the value alone.
        let position = f64::from(value) * self.to_fine_units;
        (position.ceil() as usize)
            .saturating_sub(1)
            .min(self.fine_bins.len() - 1)
    }

    fn bar_of(bin: &BinaryHeap<SampleEntry>, capacity: usize) -> u64 {
        match bin.peek() {
            Some(largest) if bin.len() >= capacity => largest.key,
            _ => u64::MAX,
        }
    }

    /// Sets the scale to the smallest power of two holding `value`, merging neighbouring fine
    /// bins once per doubling.
    fn grow_scale(&mut self, value: f32, fine_bins_log2: u32, capacity: usize) {
        let target = ceil_log2(value);
        let current = self.scale_exponent.unwrap_or(target);
        if target > current {
            // After log2(G) doublings everything already sits in bin 0.
            let doublings = (target - current).min(fine_bins_log2 as i32);
            let bins = self.fine_bins.len();
            for _ in 0..doublings {
                for index in 0..bins / 2 {
                    let mut merged = std::mem::take(&mut self.fine_bins[2 * index]);
                    merged.append(&mut std::mem::take(&mut self.fine_bins[2 * index + 1]));
                    while merged.len() > capacity {
                        merged.pop();
                    }
                    self.fine_bins[index] = merged;
                }
                for bin in &mut self.fine_bins[bins / 2..] {
                    bin.clear();
                }
            }
            for (bar, bin) in self.fine_bin_bars.iter_mut().zip(&self.fine_bins) {
                *bar = Self::bar_of(bin, capacity);
            }
        }
        let exponent = target.max(current);
        self.scale_exponent = Some(exponent);
        self.scale = power_of_two(exponent);
        self.to_fine_units = power_of_two(fine_bins_log2 as i32 - exponent);
    }

    /// Takes one positive, finite activation.
    fn observe(
        &mut self,
        value: f32,
        token: usize,
        key: u64,
        config: &ExampleConfig,
        fine_bins_log2: Option<u32>,
    ) {
        self.max_activation = self.max_activation.max(value);
        if value >= self.top_bar {
            push_bounded(&mut self.top, TopEntry { value, token }, config.n_top);
            if self.top.len() >= config.n_top {
                self.top_bar = self.top.peek().map_or(f32::INFINITY, |worst| worst.value);
            }
        }
        let Some(fine_bins_log2) = fine_bins_log2 else {
            return;
        };
        if self.fine_bins.is_empty() {
            self.fine_bins = vec![BinaryHeap::new(); 1 << fine_bins_log2];
            self.fine_bin_bars = vec![u64::MAX; 1 << fine_bins_log2];
        }
        if self.scale_exponent.is_none() || f64::from(value) > self.scale {
            self.grow_scale(value, fine_bins_log2, config.per_band);
        }
        let bin = self.fine_bin_of(value);
        if key <= self.fine_bin_bars[bin] {
            let heap = &mut self.fine_bins[bin];
            push_bounded(heap, SampleEntry { key, value, token }, config.per_band);
            self.fine_bin_bars[bin] = Self::bar_of(heap, config.per_band);
        }
    }

    fn retained(&self) -> usize {
        self.top.len() + self.fine_bins.iter().map(BinaryHeap::len).sum::<usize>()
    }

    fn finish(&self, feature: usize, config: &ExampleConfig) -> FeatureExamples {
        let top = self
            .top
            .clone()
            .into_sorted_vec()
            .into_iter()
            .map(|entry| (entry.value, entry.token))
            .collect();
        if self.max_activation <= 0.0 || config.n_bands == 0 {
            return FeatureExamples {
                feature,
                top,
                quantiles: Vec::new(),
            };
        }

        let n_bands = config.n_bands;
        let max = f64::from(self.max_activation);
        // Edges rounded to f32 first, so the reported (low, high] bounds hold exactly.
        let edges: Vec<f64> = (0..=n_bands)
            .map(|b| f64::from((max * b as f64 / n_bands as f64) as f32))
            .collect();
        let mut candidates: Vec<Vec<SampleEntry>> = vec![Vec::new(); n_bands];
        for entry in self.fine_bins.iter().flat_map(BinaryHeap::iter) {
            let value = f64::from(entry.value);
            // Band b is (edges[b], edges[b + 1]]; the nudge fixes rounding at the edges.
            let mut band = ((value / max * n_bands as f64).ceil() as usize)
                .saturating_sub(1)
                .min(n_bands - 1);
            while band > 0 && value <= edges[band] {
                band -= 1;
            }
            while band + 1 < n_bands && value > edges[band + 1] {
                band += 1;
            }
            candidates[band].push(*entry);
        }
        let quantiles = candidates
            .into_iter()
            .enumerate()
            .map(|(band, mut pool)| {
                pool.sort_unstable();
                pool.truncate(config.per_band);
                let mut examples: Vec<(f32, usize)> = pool
                    .iter()
                    .map(|entry| (entry.value, entry.token))
                    .collect();
                examples.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                QuantileBand {
                    low: edges[band] as f32,
                    high: edges[band + 1] as f32,
                    examples,
                }
            })
            .collect();
        FeatureExamples {
            feature,
            top,
            quantiles,
        }
    }
}

/// Streams activation rows and keeps, per feature, the top activations and a bounded, seeded
/// sample from which examples for each interval of the max activation are drawn (the
/// Anthropic/Neuronpedia feature-card layout).
///
/// Only activations that are > 0 and finite are candidates. Token indices are global row numbers
/// counted from 0 across all batches; the caller maps them back to (sequence, position). Band
/// examples may repeat top examples.
///
/// Sampling: every (feature, token) gets a key hashed from the seed, and each band's examples are
/// the ones with the smallest keys, i.e. a uniform sample without replacement. It is exact where
/// a band covers whole internal fine bins and close to uniform near band edges. Results depend
/// only on the data and seed, not on how rows are split into batches.
///
/// Memory bound: per tracked feature at most `n_top + G * per_band` entries of 24 bytes plus `G`
/// empty-heap headers (once the feature fires), where `G = next_power_of_two(4 * n_bands)` (so
/// `G <= 8 * n_bands`), independent of the token count; see
/// [`ExampleCollector::max_retained_per_feature`].
#[derive(Debug, Clone)]
pub struct ExampleCollector {
    d_sae: usize,
    config: ExampleConfig,
    /// log2 of the fine-bin count; `None` when no band examples are wanted.
    fine_bins_log2: Option<u32>,
    features: Vec<usize>,
    /// Whether `features` is exactly `0..d_sae`, so rows can be walked directly.
    tracks_all: bool,
    trackers: Vec<FeatureTracker>,
    tokens_seen: usize,
}

impl ExampleCollector {
    /// A collector for rows of `d_sae` activations, tracking `features` (in that order) or every
    /// feature when `None`. Errors when a feature id is `>= d_sae` or listed twice, or when
    /// `n_bands > MAX_BANDS`.
    pub fn new(
        d_sae: usize,
        features: Option<Vec<usize>>,
        config: ExampleConfig,
    ) -> Result<Self, String> {
        let features = features.unwrap_or_else(|| (0..d_sae).collect());
        let mut seen = vec![false; d_sae];
        for &feature in &features {
            match seen.get_mut(feature) {
                None => {
                    return Err(format!(
                        "feature id {feature} is out of range for d_sae = {d_sae}"
                    ));
                }
                Some(true) => return Err(format!("feature id {feature} is listed twice")),
                Some(flag) => *flag = true,
            }
        }
        if config.n_bands > MAX_BANDS {
            return Err(format!(
                "{} bands requested but at most {MAX_BANDS} are supported",
                config.n_bands
            ));
        }
        // Fine bins at most half a band wide (the scale is under twice the max), so every band
        // covers at least one whole fine bin.
        let fine_bins_log2 = (config.n_bands > 0 && config.per_band > 0)
            .then(|| (4 * config.n_bands).next_power_of_two().trailing_zeros());
        let trackers = vec![FeatureTracker::new(); features.len()];
        let tracks_all =
            features.len() == d_sae && features.iter().enumerate().all(|(i, &f)| i == f);
        Ok(Self {
            d_sae,
            config,
            fine_bins_log2,
            features,
            tracks_all,
            trackers,
            tokens_seen: 0,
        })
    }

    /// Adds `n_rows` rows of activations, `[n_rows, d_sae]` row-major; their token indices
    /// continue from the rows already added. Errors, changing nothing, on a shape mismatch.
    pub fn add_batch(&mut self, acts: &[f32], n_rows: usize) -> Result<(), String> {
        check_shape(acts.len(), n_rows, self.d_sae, "activations")?;
        let Some(end) = self.tokens_seen.checked_add(n_rows) else {
            return Err("token count overflowed".to_string());
        };
        for row_index in 0..n_rows {
            let token = self.tokens_seen + row_index;
            let row = &acts[row_index * self.d_sae..(row_index + 1) * self.d_sae];
            let is_candidate = |value: f32| value > 0.0 && value.is_finite();
            let observe = |tracker: &mut FeatureTracker, feature: usize, value: f32| {
                let key = mix64(mix64(self.config.seed ^ mix64(feature as u64)) ^ token as u64);
                tracker.observe(value, token, key, &self.config, self.fine_bins_log2);
            };
            if self.tracks_all {
                // Tracker i is feature i: walk the row directly, touching trackers only when active.
                for (feature, &value) in row.iter().enumerate() {
                    if is_candidate(value) {
                        observe(&mut self.trackers[feature], feature, value);
                    }
                }
            } else {
                for (tracker, &feature) in self.trackers.iter_mut().zip(&self.features) {
                    if is_candidate(row[feature]) {
                        observe(tracker, feature, row[feature]);
                    }
                }
            }
        }
        self.tokens_seen = end;
        Ok(())
    }

    /// The tracked feature ids, in the order [`ExampleCollector::finish`] reports them.
    pub fn feature_ids(&self) -> &[usize] {
        &self.features
    }

    /// Tokens (rows) seen so far.
    pub fn tokens(&self) -> usize {
        self.tokens_seen
    }

    /// The most entries kept for any one feature, whatever the number of tokens.
    pub fn max_retained_per_feature(&self) -> usize {
        let fine_bins = self.fine_bins_log2.map_or(0, |log2| 1usize << log2);
        self.config
            .n_top
            .saturating_add(fine_bins.saturating_mul(self.config.per_band))
    }

    /// Entries currently kept, over all features (for checking the memory bound).
    pub fn retained_entries(&self) -> usize {
        self.trackers.iter().map(FeatureTracker::retained).sum()
    }

    /// The examples for each tracked feature, in [`ExampleCollector::feature_ids`] order. May be
    /// called at any point; streaming can continue afterwards.
    pub fn finish(&self) -> Vec<FeatureExamples> {
        self.trackers
            .iter()
            .zip(&self.features)
            .map(|(tracker, &feature)| tracker.finish(feature, &self.config))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Nearest neighbours and logit lens
// ---------------------------------------------------------------------------------------------

/// The `n` rows most cosine-similar to row `query` of `rows` (`[n_rows, dim]` row-major),
/// excluding the query itself, as `(row, similarity)` sorted by similarity descending then row
/// index. Rows of zero norm have similarity 0; rows containing NaN or infinity are skipped.
/// Errors on a shape mismatch, an out-of-range `query`, or a query row with NaN or infinity.
pub fn nearest_by_cosine(
    rows: &[f32],
    n_rows: usize,
    dim: usize,
    query: usize,
    n: usize,
) -> Result<Vec<(usize, f32)>, String> {
    check_shape(rows.len(), n_rows, dim, "rows")?;
    if query >= n_rows {
        return Err(format!(
            "query row {query} is out of range for {n_rows} rows"
        ));
    }
    let row = |index: usize| &rows[index * dim..(index + 1) * dim];
    let norm = |values: &[f32]| {
        values
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt()
    };
    let query_row = row(query);
    let query_norm = norm(query_row);
    if !query_norm.is_finite() {
        return Err(format!("query row {query} contains NaN or infinity"));
    }
    let mut similar: Vec<(usize, f64)> = (0..n_rows)
        .filter(|&index| index != query)
        .filter_map(|index| {
            let other = row(index);
            let other_norm = norm(other);
            if !other_norm.is_finite() {
                return None;
            }
            if query_norm == 0.0 || other_norm == 0.0 {
                return Some((index, 0.0));
            }
            let dot: f64 = query_row
                .iter()
                .zip(other)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let cosine = dot / (query_norm * other_norm);
            // Products of large finite values can still overflow to NaN.
            (!cosine.is_nan()).then_some((index, cosine.clamp(-1.0, 1.0)))
        })
        .collect();
    similar.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    similar.truncate(n);
    Ok(similar
        .into_iter()
        .map(|(index, cosine)| (index, cosine as f32))
        .collect())
}

/// `(index, value)` pairs, e.g. token ids and their logits.
pub type IndexedValues = Vec<(usize, f32)>;

/// The `n` largest values (descending) and the `n` smallest (ascending) with their indices; ties
/// by index, NaN ignored. For a logit lens: the tokens a feature promotes and suppresses most.
pub fn top_and_bottom(values: &[f32], n: usize) -> (IndexedValues, IndexedValues) {
    let indexed: Vec<(usize, f32)> = values
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, value)| !value.is_nan())
        .collect();
    let select = |mut candidates: Vec<(usize, f32)>, descending: bool| {
        let order = |a: &(usize, f32), b: &(usize, f32)| {
            let by_value = if descending {
                cmp_non_nan(b.1, a.1)
            } else {
                cmp_non_nan(a.1, b.1)
            };
            by_value.then(a.0.cmp(&b.0))
        };
        // Partition first so a vocabulary-sized input costs O(len + n log n).
        if n < candidates.len() {
            if n > 0 {
                candidates.select_nth_unstable_by(n - 1, order);
            }
            candidates.truncate(n);
        }
        candidates.sort_by(order);
        candidates
    };
    (select(indexed.clone(), true), select(indexed, false))
}

// ---------------------------------------------------------------------------------------------
// Geometric median
// ---------------------------------------------------------------------------------------------

/// The geometric median (the point minimising the sum of Euclidean distances) of `n_points`
/// points of `dim` values, row-major, by Weiszfeld's algorithm from the mean, with the
/// Vardi-Zhang guard for when an iterate lands on a data point. Stops after `max_iter` steps or
/// once a step is shorter than `tol` (absolute, in the points' units; NaN or negative counts as
/// 0). Often used to initialise an SAE's decoder bias.
///
/// Errors on a shape mismatch, no points, or NaN/infinite coordinates.
pub fn geometric_median(
    points: &[f32],
    n_points: usize,
    dim: usize,
    max_iter: usize,
    tol: f64,
) -> Result<Vec<f32>, String> {
    check_shape(points.len(), n_points, dim, "points")?;
    if n_points == 0 {
        return Err("geometric median of no points".to_string());
    }
    if points.iter().any(|value| !value.is_finite()) {
        return Err("points contain NaN or infinity".to_string());
    }
    let data: Vec<f64> = points.iter().map(|&value| f64::from(value)).collect();
    let point = |index: usize| &data[index * dim..(index + 1) * dim];
    let distance = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    };

    let mut current = vec![0.0f64; dim];
    for index in 0..n_points {
        for (sum, value) in current.iter_mut().zip(point(index)) {
            *sum += value;
        }
    }
    for value in &mut current {
        *value /= n_points as f64;
    }

    // An iterate this close to a data point counts as on it: 1/d would swamp everything else.
    let scale = data
        .iter()
        .fold(0.0f64, |largest, value| largest.max(value.abs()));
    let coincide = scale * 1e-12;
    let tol = if tol.is_nan() { 0.0 } else { tol.max(0.0) };

    let mut weighted_sum = vec![0.0f64; dim];
    let mut pull = vec![0.0f64; dim];
    for _ in 0..max_iter {
        weighted_sum.fill(0.0);
        pull.fill(0.0);
        let mut weight_total = 0.0f64;
        let mut coincident = 0usize;
        for index in 0..n_points {
            let p = point(index);
            let d = distance(p, &current);
            if d <= coincide {
                coincident += 1;
                continue;
            }
            let weight = 1.0 / d;
            weight_total += weight;
            for ((sum, pull), (&x, &y)) in weighted_sum
                .iter_mut()
                .zip(&mut pull)
                .zip(p.iter().zip(&current))
            {
                *sum += weight * x;
                *pull += weight * (x - y);
            }
        }
        if weight_total == 0.0 {
            break; // every point coincides with the iterate
        }
        let weiszfeld: Vec<f64> = weighted_sum.iter().map(|sum| sum / weight_total).collect();
        let next = if coincident == 0 {
            weiszfeld
        } else {
            // Vardi-Zhang: on a data point with multiplicity m, stay if the other points' unit
            // pull is at most m (that point is the median), else step only part of the way.
            let pull_norm = pull.iter().map(|v| v * v).sum::<f64>().sqrt();
            let stay = coincident as f64 / pull_norm;
            if stay >= 1.0 {
                break;
            }
            weiszfeld
                .iter()
                .zip(&current)
                .map(|(t, y)| (1.0 - stay) * t + stay * y)
                .collect()
        };
        let step = distance(&next, &current);
        current = next;
        if step <= tol {
            break;
        }
    }
    Ok(current.into_iter().map(|value| value as f32).collect())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded generator for test data (SplitMix64).
    struct TestRng(u64);

    impl TestRng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(1);
            mix64(self.0)
        }
        fn below(&mut self, bound: u64) -> u64 {
            self.next_u64() % bound
        }
        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn chance(&mut self, p: f64) -> bool {
            self.uniform() < p
        }
    }

    /// AUROC by counting every (positive, negative) pair.
    fn brute_force_auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
        let mut wins = 0.0f64;
        let (mut positives, mut negatives) = (0u64, 0u64);
        for (&s, &l) in scores.iter().zip(labels) {
            if s.is_nan() {
                continue;
            }
            if l { positives += 1 } else { negatives += 1 }
        }
        if positives == 0 || negatives == 0 {
            return None;
        }
        for (&sp, &lp) in scores.iter().zip(labels) {
            for (&sn, &ln) in scores.iter().zip(labels) {
                if lp && !ln && !sp.is_nan() && !sn.is_nan() {
                    wins += if sp > sn {
                        1.0
                    } else if sp == sn {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        Some(wins / (positives * negatives) as f64)
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    // --- AUROC ---

    #[test]
    fn auroc_hand_worked_cases() {
        let labels = [false, false, true, true];
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(auroc(&[3.0; 4], &labels), Some(0.5));
        // Positives {2, 4} vs negatives {1, 3}: 2>1, 4>1, 4>3 win; 2<3 loses.
        assert_eq!(auroc(&[1.0, 3.0, 2.0, 4.0], &labels), Some(0.75));
        // Positives {0, 1} vs negatives {0, 1}: two ties, one win, one loss.
        assert_eq!(auroc(&[0.0, 1.0, 0.0, 1.0], &labels), Some(0.5));
        // Midranks: positive at 1 ties one negative and beats one.
        assert_eq!(auroc(&[0.0, 1.0, 1.0], &[false, false, true]), Some(0.75));
    }

    #[test]
    fn auroc_none_without_both_classes_or_on_mismatch() {
        assert_eq!(auroc(&[], &[]), None);
        assert_eq!(auroc(&[1.0, 2.0], &[true, true]), None);
        assert_eq!(auroc(&[1.0, 2.0], &[false, false]), None);
        assert_eq!(auroc(&[1.0, 2.0], &[true]), None);
        assert_eq!(auroc(&[f32::NAN, 2.0], &[true, false]), None);
    }

    #[test]
    fn auroc_skips_nan_and_ties_signed_zeros() {
        let scores = [f32::NAN, 0.0, -0.0, 1.0, f32::NAN];
        let labels = [true, true, false, true, false];
        assert_eq!(auroc(&scores, &labels), Some(0.75));
        assert_eq!(
            auroc(&[f32::NEG_INFINITY, f32::INFINITY], &[false, true]),
            Some(1.0)
        );
    }

    #[test]
    fn auroc_matches_brute_force_with_many_ties() {
        let mut rng = TestRng(7);
        for trial in 0..200 {
            let n = 1 + rng.below(60) as usize;
            let scores: Vec<f32> = (0..n)
                .map(|_| {
                    if rng.chance(0.7) {
                        0.0
                    } else {
                        rng.below(5) as f32 - 1.0
                    }
                })
                .collect();
            let p = rng.uniform();
            let labels: Vec<bool> = (0..n).map(|_| rng.chance(p)).collect();
            let fast = auroc(&scores, &labels);
            let slow = brute_force_auroc(&scores, &labels);
            match (fast, slow) {
                (Some(a), Some(b)) => assert!(close(a, b, 1e-12), "trial {trial}: {a} vs {b}"),
                (a, b) => assert_eq!(a, b, "trial {trial}"),
            }
        }
    }

    // --- Concept recovery ---

    fn column(acts: &[f32], d_sae: usize, feature: usize) -> Vec<f32> {
        acts.iter().skip(feature).step_by(d_sae).copied().collect()
    }

    fn labels_for(token_concepts: &[u64], concept: usize) -> Vec<bool> {
        token_concepts
            .iter()
            .map(|mask| (mask >> concept) & 1 == 1)
            .collect()
    }

    /// Checks the matrix entry by entry against `auroc` (NaN where `auroc` is `None`).
    fn assert_matches_columnwise(
        acts: &[f32],
        n_tokens: usize,
        d_sae: usize,
        concepts: &[u64],
        n_concepts: usize,
    ) {
        let matrix = concept_auroc_matrix(acts, n_tokens, d_sae, concepts, n_concepts).unwrap();
        assert_eq!(matrix.len(), d_sae * n_concepts);
        for feature in 0..d_sae {
            let scores = column(acts, d_sae, feature);
            for concept in 0..n_concepts {
                let got = matrix[feature * n_concepts + concept];
                match auroc(&scores, &labels_for(concepts, concept)) {
                    Some(expected) => {
                        assert_eq!(got, expected as f32, "feature {feature} concept {concept}")
                    }
                    None => assert!(got.is_nan(), "feature {feature} concept {concept}: {got}"),
                }
            }
        }
    }

    #[test]
    fn concept_matrix_equals_columnwise_auroc_on_sparse_data() {
        let mut rng = TestRng(11);
        for trial in 0..30 {
            let n_tokens = rng.below(300) as usize;
            let d_sae = 1 + rng.below(12) as usize;
            let n_concepts = 1 + rng.below(8) as usize;
            let density = [0.01, 0.05, 0.3, 1.0][trial % 4];
            let acts: Vec<f32> = (0..n_tokens * d_sae)
                .map(|_| {
                    if !rng.chance(density) {
                        return if rng.chance(0.1) { -0.0 } else { 0.0 };
                    }
                    // Repeated values, some negative, the odd NaN.
                    match rng.below(10) {
                        0 => -(rng.below(3) as f32) - 0.5,
                        1 => f32::NAN,
                        2..=5 => rng.below(4) as f32 * 0.5 + 0.5,
                        _ => rng.uniform() as f32 * 4.0,
                    }
                })
                .collect();
            let concepts: Vec<u64> = (0..n_tokens)
                .map(|_| {
                    let mut mask = 0u64;
                    for concept in 0..n_concepts {
                        if rng.chance(0.2) {
                            mask |= 1 << concept;
                        }
                    }
                    mask | (rng.below(2) << 40) // bits past n_concepts are ignored
                })
                .collect();
            assert_matches_columnwise(&acts, n_tokens, d_sae, &concepts, n_concepts);
        }
    }

    #[test]
    fn concept_matrix_hand_case_and_all_64_concepts() {
        // Feature 0 fires exactly on concept 0's tokens; feature 1 on the others.
        let acts = [1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 1.0];
        let concepts = [1u64, 1, 0, 0];
        let matrix = concept_auroc_matrix(&acts, 4, 2, &concepts, 1).unwrap();
        assert_eq!(matrix, vec![1.0, 0.0]);

        let mut rng = TestRng(3);
        let n_tokens = 200;
        let acts: Vec<f32> = (0..n_tokens * 3)
            .map(|_| {
                if rng.chance(0.1) {
                    rng.below(3) as f32 + 1.0
                } else {
                    0.0
                }
            })
            .collect();
        let concepts: Vec<u64> = (0..n_tokens).map(|_| rng.next_u64()).collect();
        assert_matches_columnwise(&acts, n_tokens, 3, &concepts, 64);
    }

    #[test]
    fn concept_matrix_nan_without_positives_or_negatives() {
        let acts = [1.0, 0.0, 2.0];
        // Concept 0 on every token, concept 1 on none.
        let matrix = concept_auroc_matrix(&acts, 3, 1, &[1, 1, 1], 2).unwrap();
        assert!(matrix.iter().all(|v| v.is_nan()));
        let empty = concept_auroc_matrix(&[], 0, 4, &[], 2).unwrap();
        assert_eq!(empty.len(), 8);
        assert!(empty.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn concept_matrix_rejects_bad_shapes() {
        assert!(concept_auroc_matrix(&[1.0; 5], 2, 3, &[0, 0], 1).is_err());
        assert!(concept_auroc_matrix(&[1.0; 6], 2, 3, &[0], 1).is_err());
        assert!(concept_auroc_matrix(&[1.0; 6], 2, 3, &[0, 0], 65).is_err());
        assert!(concept_auroc_matrix(&[], usize::MAX, 2, &[], 1).is_err());
        assert_eq!(
            concept_auroc_matrix(&[], 3, 0, &[0, 0, 0], 2),
            Ok(Vec::new())
        );
        assert_eq!(
            concept_auroc_matrix(&[1.0; 6], 2, 3, &[0, 0], 0),
            Ok(Vec::new())
        );
    }

    #[test]
    fn best_matches_pick_highest_lowest_index_on_ties_and_skip_nan() {
        // [d_sae = 3, n_concepts = 2]
        let nan = f32::NAN;
        let matrix = [0.9, nan, 0.95, nan, 0.95, nan];
        let per_concept = best_feature_per_concept(&matrix, 3, 2);
        assert_eq!(
            per_concept,
            vec![
                Some(ConceptMatch {
                    concept: 0,
                    feature: 1,
                    auroc: f64::from(0.95f32)
                }),
                None
            ]
        );
        let per_feature = best_concept_per_feature(&matrix, 3, 2);
        assert_eq!(per_feature.len(), 3);
        assert_eq!(
            per_feature[0].as_ref().map(|m| (m.concept, m.feature)),
            Some((0, 0))
        );
        let matrix = [0.7, 0.7];
        assert_eq!(
            best_concept_per_feature(&matrix, 1, 2)[0]
                .as_ref()
                .map(|m| m.concept),
            Some(0)
        );
        assert_eq!(
            best_feature_per_concept(&matrix, 2, 1)[0]
                .as_ref()
                .map(|m| m.feature),
            Some(0)
        );
        assert!(best_feature_per_concept(&matrix, 3, 1).is_empty());
        assert!(best_concept_per_feature(&matrix, 3, 1).is_empty());
        assert!(best_concept_per_feature(&matrix, usize::MAX, 2).is_empty());
    }

    #[test]
    fn mean_best_auroc_averages_present_matches() {
        let found = |auroc| {
            Some(ConceptMatch {
                concept: 0,
                feature: 0,
                auroc,
            })
        };
        assert_eq!(mean_best_auroc(&[found(1.0), None, found(0.5)]), Some(0.75));
        assert_eq!(mean_best_auroc(&[None, found(f64::NAN)]), None);
        assert_eq!(mean_best_auroc(&[]), None);
    }

    #[test]
    fn concept_match_round_trips_through_json() {
        let original = ConceptMatch {
            concept: 2,
            feature: 17,
            auroc: 0.875,
        };
        let json = serde_json::to_string(&original).unwrap();
        assert_eq!(
            serde_json::from_str::<ConceptMatch>(&json).unwrap(),
            original
        );
    }

    // --- Histograms ---

    #[test]
    fn histogram_counts_and_puts_max_in_last_bin() {
        let h = histogram([0.0, 0.5, 1.0, 1.5, 2.0, f64::NAN, f64::INFINITY], 4, None);
        assert_eq!(h.edges, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(h.counts, vec![1, 1, 1, 2]);
    }

    #[test]
    fn histogram_explicit_range_skips_outside_and_swaps_reversed() {
        let h = histogram([-1.0, 0.0, 0.25, 0.99, 1.0, 1.01], 2, Some((1.0, 0.0)));
        assert_eq!(h.edges, vec![0.0, 0.5, 1.0]);
        assert_eq!(h.counts, vec![2, 2]);
        let zeros = histogram(std::iter::empty(), 3, Some((0.0, 3.0)));
        assert_eq!(zeros.counts, vec![0, 0, 0]);
        assert_eq!(zeros.edges.len(), 4);
        // A non-finite range falls back to the data.
        let h = histogram([1.0, 3.0], 2, Some((f64::NAN, 1.0)));
        assert_eq!(h.edges, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn histogram_empty_cases() {
        let empty = Histogram {
            edges: vec![],
            counts: vec![],
        };
        assert_eq!(histogram(std::iter::empty(), 5, None), empty);
        assert_eq!(histogram([f64::NAN], 5, None), empty);
        assert_eq!(histogram([1.0, 2.0], 0, None), empty);
        assert_eq!(histogram([f64::MAX, f64::MIN], 2, None), empty);
    }

    #[test]
    fn histogram_single_value_is_widened() {
        let h = histogram([2.0, 2.0], 2, None);
        assert_eq!(h.edges, vec![1.5, 2.0, 2.5]);
        assert_eq!(h.counts, vec![0, 2]);
        let big = histogram([1e20], 3, None);
        assert_eq!(big.counts.iter().sum::<u64>(), 1);
    }

    #[test]
    fn histogram_bins_agree_with_edges_on_random_data() {
        let mut rng = TestRng(5);
        let values: Vec<f64> = (0..5000).map(|_| rng.uniform() * 7.3 - 2.1).collect();
        let h = histogram(values.iter().copied(), 37, None);
        assert_eq!(h.counts.iter().sum::<u64>(), 5000);
        for (bin, &count) in h.counts.iter().enumerate() {
            let expected = values
                .iter()
                .filter(|&&v| {
                    v >= h.edges[bin] && (v < h.edges[bin + 1] || (bin == 36 && v <= h.edges[37]))
                })
                .count() as u64;
            assert_eq!(count, expected, "bin {bin}");
        }
    }

    #[test]
    fn log10_density_histogram_counts_dead_separately() {
        let densities = [0.0, 0.0, 1e-3, 1e-3, 0.5, 1.0, f64::NAN, -0.1];
        let (h, dead) = log10_density_histogram(&densities, 8);
        assert_eq!(dead, 2);
        assert_eq!(h.edges.first(), Some(&-8.0));
        assert_eq!(h.edges.last(), Some(&0.0));
        assert_eq!(h.counts.iter().sum::<u64>(), 4);
        assert_eq!(h.counts[5], 2); // log10(1e-3) = -3 starts bin 5
        assert_eq!(h.counts[7], 2); // log10(0.5) and log10(1) = 0, the last edge
        let (h, dead) = log10_density_histogram(&[1e-10, 0.1], 10);
        assert_eq!(dead, 0);
        assert!(h.edges[0] <= -9.99 && h.edges[0] > -10.01);
        let (h, dead) = log10_density_histogram(&[], 4);
        assert_eq!((h.counts, dead), (vec![0; 4], 0));
    }

    // --- Per-feature summary ---

    #[test]
    fn feature_stats_hand_case() {
        // 4 tokens x 3 features.
        #[rustfmt::skip]
        let acts = [
            1.0, 0.0, 0.0,
            3.0, 0.0, 0.5,
            0.0, 0.0, f32::NAN,
            -1.0, 0.0, 0.5,
        ];
        let mut stats = FeatureStatsAccumulator::new(3);
        stats.add_batch(&acts, 4).unwrap();
        let summary = stats.finish();
        assert_eq!(
            summary[0],
            FeatureSummary {
                density: 0.5,
                max_activation: 3.0,
                mean_active: 2.0
            }
        );
        assert_eq!(
            summary[1],
            FeatureSummary {
                density: 0.0,
                max_activation: 0.0,
                mean_active: 0.0
            }
        );
        assert_eq!(
            summary[2],
            FeatureSummary {
                density: 0.5,
                max_activation: 0.5,
                mean_active: 0.5
            }
        );
        assert_eq!(stats.tokens(), 4);
        assert_eq!(stats.l0(), 1.0);
        assert!(close(stats.dead_fraction(), 1.0 / 3.0, 1e-12));
        assert!(close(
            stats.dense_fraction(DEFAULT_DENSE_THRESHOLD),
            2.0 / 3.0,
            1e-12
        ));
        assert_eq!(stats.dense_fraction(0.5), 0.0);
    }

    #[test]
    fn feature_stats_streaming_equals_one_batch_and_errors_change_nothing() {
        let mut rng = TestRng(9);
        let d_sae = 7;
        let acts: Vec<f32> = (0..50 * d_sae)
            .map(|_| {
                if rng.chance(0.2) {
                    rng.uniform() as f32
                } else {
                    0.0
                }
            })
            .collect();
        let mut whole = FeatureStatsAccumulator::new(d_sae);
        whole.add_batch(&acts, 50).unwrap();
        let mut streamed = FeatureStatsAccumulator::new(d_sae);
        for (start, end) in [(0, 13), (13, 13), (13, 50)] {
            streamed
                .add_batch(&acts[start * d_sae..end * d_sae], end - start)
                .unwrap();
        }
        assert!(streamed.add_batch(&acts[..5], 1).is_err());
        assert!(streamed.add_batch(&[], usize::MAX).is_err());
        assert_eq!(streamed.tokens(), 50);
        for (a, b) in whole.finish().iter().zip(streamed.finish()) {
            assert_eq!(a.max_activation, b.max_activation);
            assert!(
                close(a.density, b.density, 1e-12) && close(a.mean_active, b.mean_active, 1e-9)
            );
        }
        assert!(close(whole.l0(), streamed.l0(), 1e-12));
    }

    #[test]
    fn feature_stats_empty_cases() {
        let stats = FeatureStatsAccumulator::new(0);
        assert!(stats.finish().is_empty());
        assert_eq!(
            (stats.l0(), stats.dead_fraction(), stats.dense_fraction(0.1)),
            (0.0, 0.0, 0.0)
        );
        let stats = FeatureStatsAccumulator::new(2);
        assert_eq!(stats.dead_fraction(), 1.0);
        assert_eq!(stats.finish()[0].density, 0.0);
    }

    // --- Example selection ---

    fn random_acts(rng: &mut TestRng, n_tokens: usize, d_sae: usize, density: f64) -> Vec<f32> {
        (0..n_tokens * d_sae)
            .map(|_| {
                if rng.chance(density) {
                    (rng.uniform() * 10.0) as f32 + f32::MIN_POSITIVE
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn collect(
        acts: &[f32],
        d_sae: usize,
        batch_rows: usize,
        config: ExampleConfig,
        features: Option<Vec<usize>>,
    ) -> Vec<FeatureExamples> {
        let mut collector = ExampleCollector::new(d_sae, features, config).unwrap();
        for batch in acts.chunks(batch_rows * d_sae) {
            collector.add_batch(batch, batch.len() / d_sae).unwrap();
        }
        collector.finish()
    }

    #[test]
    fn examples_top_matches_sorting() {
        let mut rng = TestRng(21);
        let d_sae = 5;
        let mut acts = random_acts(&mut rng, 400, d_sae, 0.3);
        acts[3 * d_sae] = 50.0; // a tie at the top of feature 0, broken by token index
        acts[9 * d_sae] = 50.0;
        let config = ExampleConfig {
            n_top: 7,
            ..ExampleConfig::default()
        };
        let examples = collect(&acts, d_sae, 64, config, None);
        for (feature, found) in examples.iter().enumerate() {
            assert_eq!(found.feature, feature);
            let mut expected: Vec<(f32, usize)> = column(&acts, d_sae, feature)
                .into_iter()
                .enumerate()
                .filter(|(_, v)| *v > 0.0)
                .map(|(token, v)| (v, token))
                .collect();
            expected.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            expected.truncate(7);
            assert_eq!(found.top, expected);
        }
        assert_eq!(&examples[0].top[..2], &[(50.0, 3), (50.0, 9)]);
    }

    #[test]
    fn examples_bands_split_max_and_hold_their_values() {
        let mut rng = TestRng(22);
        let d_sae = 4;
        let acts = random_acts(&mut rng, 3000, d_sae, 0.4);
        let config = ExampleConfig {
            n_top: 3,
            n_bands: 6,
            per_band: 4,
            seed: 1,
        };
        for found in collect(&acts, d_sae, 100, config, None) {
            let max = found.top[0].0;
            assert_eq!(found.quantiles.len(), 6);
            assert_eq!(found.quantiles[0].low, 0.0);
            assert_eq!(found.quantiles[5].high, max);
            for pair in found.quantiles.windows(2) {
                assert_eq!(pair[0].high, pair[1].low);
            }
            for band in &found.quantiles {
                // ~200 activations per band: every band is full.
                assert_eq!(band.examples.len(), 4);
                for &(value, token) in &band.examples {
                    assert!(
                        value > band.low && value <= band.high,
                        "{value} outside ({}, {}]",
                        band.low,
                        band.high
                    );
                    assert_eq!(acts[token * d_sae + found.feature], value);
                }
                assert!(band.examples.windows(2).all(|w| w[0].0 >= w[1].0));
            }
        }
    }

    #[test]
    fn examples_bands_hold_every_activation_when_few() {
        let mut rng = TestRng(23);
        let d_sae = 3;
        let acts = random_acts(&mut rng, 60, d_sae, 0.3);
        let config = ExampleConfig {
            n_top: 0,
            n_bands: 3,
            per_band: 100,
            seed: 4,
        };
        for found in collect(&acts, d_sae, 7, config, None) {
            let active: Vec<f32> = column(&acts, d_sae, found.feature)
                .into_iter()
                .filter(|v| *v > 0.0)
                .collect();
            let kept: usize = found.quantiles.iter().map(|band| band.examples.len()).sum();
            assert_eq!(kept, active.len());
            assert!(found.top.is_empty());
        }
    }

    #[test]
    fn examples_do_not_depend_on_batch_split_and_change_with_seed() {
        let mut rng = TestRng(24);
        let d_sae = 6;
        // Rising values force the scale to grow while streaming.
        let mut acts = random_acts(&mut rng, 2000, d_sae, 0.25);
        for (index, value) in acts.iter_mut().enumerate() {
            *value *= (index / d_sae) as f32 / 100.0;
        }
        let config = ExampleConfig {
            n_top: 5,
            n_bands: 5,
            per_band: 3,
            seed: 9,
        };
        let one_batch = collect(&acts, d_sae, 2000, config, None);
        assert_eq!(one_batch, collect(&acts, d_sae, 1, config, None));
        assert_eq!(one_batch, collect(&acts, d_sae, 37, config, None));
        let reseeded = collect(
            &acts,
            d_sae,
            2000,
            ExampleConfig { seed: 10, ..config },
            None,
        );
        assert_ne!(one_batch, reseeded);
        assert_eq!(one_batch[0].top, reseeded[0].top);
    }

    #[test]
    fn examples_for_a_subset_and_memory_bound() {
        let mut rng = TestRng(25);
        let d_sae = 8;
        let acts = random_acts(&mut rng, 5000, d_sae, 0.5);
        let config = ExampleConfig {
            n_top: 4,
            n_bands: 3,
            per_band: 2,
            seed: 0,
        };
        let mut collector = ExampleCollector::new(d_sae, Some(vec![6, 2]), config).unwrap();
        collector.add_batch(&acts, 5000).unwrap();
        assert_eq!(collector.feature_ids(), &[6, 2]);
        assert_eq!(collector.tokens(), 5000);
        assert_eq!(collector.max_retained_per_feature(), 4 + 16 * 2);
        assert!(collector.retained_entries() <= 2 * collector.max_retained_per_feature());
        let subset = collector.finish();
        let all = collect(&acts, d_sae, 5000, config, None);
        assert_eq!(subset[0], all[6]);
        assert_eq!(subset[1], all[2]);
    }

    #[test]
    fn examples_edge_cases() {
        let config = ExampleConfig::default();
        assert!(ExampleCollector::new(3, Some(vec![3]), config).is_err());
        assert!(ExampleCollector::new(3, Some(vec![1, 1]), config).is_err());
        assert!(
            ExampleCollector::new(
                3,
                None,
                ExampleConfig {
                    n_bands: usize::MAX,
                    ..config
                }
            )
            .is_err()
        );
        assert!(
            ExampleCollector::new(
                3,
                None,
                ExampleConfig {
                    n_bands: MAX_BANDS,
                    ..config
                }
            )
            .is_ok()
        );
        let mut collector = ExampleCollector::new(2, None, config).unwrap();
        assert!(collector.add_batch(&[1.0; 3], 2).is_err());
        assert_eq!(collector.tokens(), 0);
        // Never-firing, negative, NaN and infinite values give no examples.
        collector
            .add_batch(&[0.0, -1.0, f32::NAN, f32::INFINITY], 2)
            .unwrap();
        for found in collector.finish() {
            assert!(found.top.is_empty() && found.quantiles.is_empty());
        }
        // No bands wanted, or no examples per band.
        let mut collector = ExampleCollector::new(
            1,
            None,
            ExampleConfig {
                n_bands: 0,
                ..config
            },
        )
        .unwrap();
        collector.add_batch(&[2.0], 1).unwrap();
        assert!(collector.finish()[0].quantiles.is_empty());
        let mut collector = ExampleCollector::new(
            1,
            None,
            ExampleConfig {
                per_band: 0,
                ..config
            },
        )
        .unwrap();
        collector.add_batch(&[2.0, 1e-40, 3e38], 3).unwrap();
        let found = &collector.finish()[0];
        assert_eq!(found.quantiles.len(), 10);
        assert!(found.quantiles.iter().all(|band| band.examples.is_empty()));
        // Extreme magnitudes, smallest first so the scale grows a long way.
        let mut collector = ExampleCollector::new(1, None, config).unwrap();
        collector.add_batch(&[1e-45, 1e-20, 3e38], 3).unwrap();
        let found = &collector.finish()[0];
        assert_eq!(found.top.len(), 3);
        assert_eq!(found.quantiles[0].examples.len(), 2);
        assert_eq!(found.quantiles[9].examples, vec![(3e38, 2)]);
    }

    // --- Nearest neighbours and logit lens ---

    #[test]
    fn nearest_by_cosine_ranks_and_breaks_ties_by_index() {
        let rows = [
            1.0, 0.0, // 0: query
            0.0, 1.0, // 1: orthogonal
            2.0, 0.0, // 2: same direction
            -1.0, 0.0, // 3: opposite
            0.0, 0.0, // 4: zero norm
            1.0, 1.0, // 5: 45 degrees
            0.0, 3.0, // 6: orthogonal, ties with 1 and 4
        ];
        let found = nearest_by_cosine(&rows, 7, 2, 0, 10).unwrap();
        let order: Vec<usize> = found.iter().map(|(row, _)| *row).collect();
        assert_eq!(order, vec![2, 5, 1, 4, 6, 3]);
        assert_eq!(found[0].1, 1.0);
        assert!((found[1].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(found[5].1, -1.0);
        assert_eq!(nearest_by_cosine(&rows, 7, 2, 0, 2).unwrap().len(), 2);
        assert!(nearest_by_cosine(&rows, 7, 2, 0, 0).unwrap().is_empty());
        // A zero query is similarity 0 to everything.
        assert!(
            nearest_by_cosine(&rows, 7, 2, 4, 10)
                .unwrap()
                .iter()
                .all(|(_, s)| *s == 0.0)
        );
    }

    #[test]
    fn nearest_by_cosine_errors_and_skips_non_finite_rows() {
        assert!(nearest_by_cosine(&[1.0; 5], 2, 3, 0, 1).is_err());
        assert!(nearest_by_cosine(&[1.0; 6], 2, 3, 2, 1).is_err());
        assert!(nearest_by_cosine(&[f32::NAN, 1.0], 2, 1, 0, 1).is_err());
        let found = nearest_by_cosine(&[1.0, f32::NAN, 2.0, f32::INFINITY], 4, 1, 0, 5).unwrap();
        assert_eq!(found, vec![(2, 1.0)]);
        assert_eq!(nearest_by_cosine(&[1.0], 1, 1, 0, 5).unwrap(), vec![]);
    }

    #[test]
    fn top_and_bottom_with_ties_and_nan() {
        let values = [0.5, f32::NAN, 2.0, -1.0, 2.0, -1.0, 0.0];
        let (top, bottom) = top_and_bottom(&values, 3);
        assert_eq!(top, vec![(2, 2.0), (4, 2.0), (0, 0.5)]);
        assert_eq!(bottom, vec![(3, -1.0), (5, -1.0), (6, 0.0)]);
        let (top, bottom) = top_and_bottom(&values, 100);
        assert_eq!((top.len(), bottom.len()), (6, 6));
        assert_eq!(top_and_bottom(&values, 0), (vec![], vec![]));
        assert_eq!(top_and_bottom(&[], 3), (vec![], vec![]));
    }

    #[test]
    fn top_and_bottom_matches_full_sort() {
        let mut rng = TestRng(31);
        let values: Vec<f32> = (0..1000).map(|_| rng.below(50) as f32).collect();
        let mut sorted: Vec<(usize, f32)> = values.iter().copied().enumerate().collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let (top, _) = top_and_bottom(&values, 25);
        assert_eq!(top, sorted[..25].to_vec());
    }

    // --- Geometric median ---

    fn assert_close_points(got: &[f32], expected: &[f32], tolerance: f32) {
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() <= tolerance, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn geometric_median_of_collinear_points_is_the_middle_one() {
        let points = [0.0, 0.0, 1.0, 1.0, 10.0, 10.0];
        let median = geometric_median(&points, 3, 2, 1000, 1e-9).unwrap();
        assert_close_points(&median, &[1.0, 1.0], 1e-5);
    }

    #[test]
    fn geometric_median_of_symmetric_set_is_its_centre() {
        let points = [1.0, 1.0, 1.0, 3.0, 3.0, 1.0, 3.0, 3.0, 2.0, 4.0, 2.0, 0.0];
        let median = geometric_median(&points, 6, 2, 1000, 1e-9).unwrap();
        assert_close_points(&median, &[2.0, 2.0], 1e-5);
    }

    #[test]
    fn geometric_median_resists_an_outlier() {
        let mut rng = TestRng(41);
        let mut points: Vec<f32> = (0..3 * 50)
            .map(|_| rng.uniform() as f32 * 0.2 - 0.1)
            .collect();
        points.extend([1000.0, 1000.0, 1000.0]);
        let median = geometric_median(&points, 51, 3, 500, 1e-9).unwrap();
        let mean_x: f32 = points.iter().step_by(3).sum::<f32>() / 51.0;
        assert!(mean_x > 15.0);
        assert!(median.iter().all(|v| v.abs() < 0.2), "{median:?}");
    }

    #[test]
    fn geometric_median_stops_on_a_data_point_that_is_the_median() {
        // The mean is (1, 0), a data point with multiplicity 2: the Vardi-Zhang guard keeps it.
        let points = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, -1.0];
        let median = geometric_median(&points, 6, 2, 100, 0.0).unwrap();
        assert_eq!(median, vec![1.0, 0.0]);
        // Iterates pass near data points without dividing by zero.
        let points = [0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 1.0, 0.0, 3.0];
        let median = geometric_median(&points, 3, 3, 1000, 1e-12).unwrap();
        assert!(median.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn geometric_median_edge_cases() {
        assert_eq!(
            geometric_median(&[1.5, -2.0], 1, 2, 10, 1e-6).unwrap(),
            vec![1.5, -2.0]
        );
        assert_eq!(
            geometric_median(&[3.0, 5.0], 2, 1, 0, 1e-6).unwrap(),
            vec![4.0]
        );
        assert_eq!(
            geometric_median(&[], 3, 0, 10, 1e-6).unwrap(),
            Vec::<f32>::new()
        );
        assert_eq!(
            geometric_median(&[2.0, 2.0], 2, 1, 10, f64::NAN).unwrap(),
            vec![2.0]
        );
        assert!(geometric_median(&[], 0, 2, 10, 1e-6).is_err());
        assert!(geometric_median(&[1.0; 3], 2, 2, 10, 1e-6).is_err());
        assert!(geometric_median(&[1.0, f32::NAN], 1, 2, 10, 1e-6).is_err());
    }
}
