//! Host-side statistics over SAE feature activations, one topic per file: AUROC, concept
//! recovery, histograms, per-feature summaries, example selection for feature cards, nearest
//! neighbours by cosine, top and bottom values for a logit lens, and the geometric median.
//! Everything public is re-exported here, so callers keep using `stats::item`.
//!
//! Activations arrive row-major as `&[f32]` of shape `[n_tokens, d_sae]`. Inputs are `f32`; sums
//! and results where precision matters are `f64`. Nothing here panics on any input: malformed
//! input (mismatched lengths, out-of-range ids) gives a [`StatsError`] or, where the signature has
//! no error channel, an empty or `None` result, as each item documents. NaN values are skipped
//! unless an item says otherwise.

mod auroc;
mod concept_recovery;
mod cosine_neighbours;
mod feature_examples;
mod feature_summary;
mod geometric_median;
mod histogram;
mod logistic;
mod probing;
#[cfg(test)]
mod test_support;
mod top_and_bottom;

pub use auroc::auroc;
pub use concept_recovery::{
    ConceptMatch, MAX_CONCEPTS, best_concept_per_feature, best_feature_per_concept,
    concept_auroc_matrix, mean_best_auroc,
};
pub use cosine_neighbours::{CosineNeighbours, nearest_by_cosine};
pub use feature_examples::{
    ExampleCollector, ExampleConfig, FeatureExamples, MAX_BANDS, QuantileBand,
};
pub use feature_summary::{DEFAULT_DENSE_THRESHOLD, FeatureStatsAccumulator, FeatureSummary};
pub use geometric_median::geometric_median;
pub use histogram::{Histogram, LOG10_DENSITY_RANGE, histogram, log10_density_histogram};
pub use logistic::{Logistic, fit_logistic};
pub use probing::{
    ConceptAbsorption, LabelledTokens, PROBE_KS, SparseProbe, absorption, absorption_fraction,
    sparse_probing,
};
pub use top_and_bottom::{IndexedValues, top_and_bottom};

use std::cmp::Ordering;

/// Why a statistic could not be computed from its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("{what} has {found} values but {rows} x {cols} = {expected} were expected")]
    Shape {
        what: String,
        found: usize,
        rows: usize,
        cols: usize,
        expected: usize,
    },
    #[error("{what} shape {rows} x {cols} is too large")]
    TooLarge {
        what: String,
        rows: usize,
        cols: usize,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Orders two values known not to be NaN. Unlike `total_cmp`, `-0.0` and `0.0` compare equal,
/// which is what ties and "exactly zero" mean for activations.
fn cmp_non_nan(a: f32, b: f32) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Checks that a flat buffer holds `n_rows * n_cols` values, without overflowing.
fn check_shape(
    data_len: usize,
    n_rows: usize,
    n_cols: usize,
    what: &str,
) -> Result<(), StatsError> {
    match n_rows.checked_mul(n_cols) {
        Some(expected) if expected == data_len => Ok(()),
        Some(expected) => Err(StatsError::Shape {
            what: what.to_string(),
            found: data_len,
            rows: n_rows,
            cols: n_cols,
            expected,
        }),
        None => Err(StatsError::TooLarge {
            what: what.to_string(),
            rows: n_rows,
            cols: n_cols,
        }),
    }
}
