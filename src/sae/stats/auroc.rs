//! AUROC with ties counted half (midranks), computed exactly from the Mann-Whitney U so that
//! the dense path here and the sparse concept matrix in `concept_recovery` agree to the bit.

use super::cmp_non_nan;

/// AUROC from twice the Mann-Whitney U. Both AUROC paths build the same exact integer, so they
/// agree to the last bit.
pub(super) fn auroc_from_twice_u(twice_u: u128, positives: u128, negatives: u128) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::stats::test_support::{TestRng, close};

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
}
