//! Streaming per-feature activation summaries (density, max, mean when active) and the
//! whole-SAE figures derived from them (L0, dead and dense fractions), in O(d_sae) memory.

use super::StatsError;
use serde::{Deserialize, Serialize};

use super::check_shape;

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
    pub fn add_batch(&mut self, acts: &[f32], n_rows: usize) -> Result<(), StatsError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::stats::test_support::{TestRng, close};

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
}
