//! The geometric median by Weiszfeld's algorithm with the Vardi-Zhang guard, e.g. to initialise
//! an SAE's decoder bias.

use super::StatsError;
use super::check_shape;

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
) -> Result<Vec<f32>, StatsError> {
    check_shape(points.len(), n_points, dim, "points")?;
    if n_points == 0 {
        return Err(StatsError::Invalid("geometric median of no points".into()));
    }
    if points.iter().any(|value| !value.is_finite()) {
        return Err(StatsError::Invalid("points contain NaN or infinity".into()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::stats::test_support::TestRng;

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
