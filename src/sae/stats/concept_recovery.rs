//! Concept recovery: the AUROC of every SAE feature for every labelled concept, built for sparse
//! activations (zeros are ranked as one tie group, never sorted), and the best feature/concept
//! matches read off that matrix.

use super::StatsError;
use serde::{Deserialize, Serialize};

use super::auroc::auroc_from_twice_u;
use super::{check_shape, cmp_non_nan};

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
) -> Result<Vec<f32>, StatsError> {
    check_shape(acts.len(), n_tokens, d_sae, "activations")?;
    if token_concepts.len() != n_tokens {
        return Err(StatsError::Invalid(format!(
            "token_concepts has {} masks but there are {n_tokens} tokens",
            token_concepts.len()
        )));
    }
    if n_concepts > MAX_CONCEPTS {
        return Err(StatsError::Invalid(format!(
            "{n_concepts} concepts requested but a u64 mask holds at most {MAX_CONCEPTS}"
        )));
    }
    if u32::try_from(n_tokens).is_err() {
        return Err(StatsError::Invalid(format!(
            "{n_tokens} tokens is more than this function indexes (u32)"
        )));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::stats::auroc::auroc;
    use crate::sae::stats::test_support::{TestRng, column};

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
}
