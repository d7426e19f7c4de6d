//! The largest and smallest values of a vector with their indices, for a logit lens: the tokens
//! a feature promotes and suppresses most.

use super::cmp_non_nan;

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
        // Truncating keeps the input's capacity: without this every feature card's logit lens
        // would hold two vocabulary-sized buffers (1.6 MB each for SmolLM2) for good.
        candidates.shrink_to_fit();
        candidates
    };
    (select(indexed.clone(), true), select(indexed, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::stats::test_support::TestRng;

    #[test]
    fn top_and_bottom_with_ties_and_nan() {
        let values = [0.5, f32::NAN, 2.0, -1.0, 2.0, -1.0, 0.0];
        let (top, bottom) = top_and_bottom(&values, 3);
        assert_eq!(top, vec![(2, 2.0), (4, 2.0), (0, 0.5)]);
        assert_eq!(bottom, vec![(3, -1.0), (5, -1.0), (6, 0.0)]);
        // What is kept is what is returned, not the input's size.
        let (top, bottom) = top_and_bottom(&vec![1.0; 10_000], 3);
        assert!(top.capacity() <= 3 && bottom.capacity() <= 3);
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
}
