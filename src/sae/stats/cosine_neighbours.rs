//! Nearest neighbours by cosine similarity among the rows of a matrix, e.g. the features whose
//! decoder directions are closest to a given feature's.

use super::StatsError;
use super::check_shape;

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
) -> Result<Vec<(usize, f32)>, StatsError> {
    check_shape(rows.len(), n_rows, dim, "rows")?;
    if query >= n_rows {
        return Err(StatsError::Invalid(format!(
            "query row {query} is out of range for {n_rows} rows"
        )));
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
        return Err(StatsError::Invalid(format!(
            "query row {query} contains NaN or infinity"
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
