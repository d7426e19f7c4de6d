//! Equal-width histograms of activation values, and the log10 feature-density histogram that
//! reports dead features separately (as SAELens and Neuronpedia show it).

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::stats::test_support::TestRng;

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
}
