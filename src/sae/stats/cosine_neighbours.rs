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
    CosineNeighbours::new(rows, n_rows, dim)?.nearest(query, n)
}

/// [`nearest_by_cosine`] for many queries on the same rows: each row's norm is computed once
/// (a card per feature asked again for every row's norm, `n_rows^2 * dim` work in all).
pub struct CosineNeighbours<'a> {
    rows: &'a [f32],
    dim: usize,
    /// Each row's norm; `None` for a row with NaN or infinity.
    norms: Vec<Option<f64>>,
}

impl<'a> CosineNeighbours<'a> {
    pub fn new(rows: &'a [f32], n_rows: usize, dim: usize) -> Result<Self, StatsError> {
        check_shape(rows.len(), n_rows, dim, "rows")?;
        let norms = (0..n_rows)
            .map(|i| {
                let norm = rows[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>()
                    .sqrt();
                norm.is_finite().then_some(norm)
            })
            .collect();
        Ok(Self { rows, dim, norms })
    }

    pub fn nearest(&self, query: usize, n: usize) -> Result<Vec<(usize, f32)>, StatsError> {
        let dim = self.dim;
        let row = |index: usize| &self.rows[index * dim..(index + 1) * dim];
        let Some(&query_norm) = self.norms.get(query) else {
            return Err(StatsError::Invalid(format!(
                "query row {query} is out of range for {} rows",
                self.norms.len()
            )));
        };
        let Some(query_norm) = query_norm else {
            return Err(StatsError::Invalid(format!(
                "query row {query} contains NaN or infinity"
            )));
        };
        let query_row = row(query);
        let mut similar: Vec<(usize, f64)> = self
            .norms
            .iter()
            .enumerate()
            .filter(|&(index, _)| index != query)
            .filter_map(|(index, &other_norm)| {
                let other_norm = other_norm?;
                if query_norm == 0.0 || other_norm == 0.0 {
                    return Some((index, 0.0));
                }
                let dot = dot_f64(query_row, row(index));
                let cosine = dot / (query_norm * other_norm);
                // Products of large finite values can still overflow to NaN.
                (!cosine.is_nan()).then_some((index, cosine.clamp(-1.0, 1.0)))
            })
            .collect();
        let order = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if n < similar.len() {
            if n == 0 {
                return Ok(Vec::new());
            }
            similar.select_nth_unstable_by(n - 1, order);
            similar.truncate(n);
        }
        similar.sort_by(order);
        Ok(similar
            .into_iter()
            .map(|(index, cosine)| (index, cosine as f32))
            .collect())
    }
}

/// `a . b` accumulated in f64 over four lanes (which the compiler can keep in vector registers).
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let split = a.len() / 4 * 4;
    for (ca, cb) in a[..split].chunks_exact(4).zip(b[..split].chunks_exact(4)) {
        for l in 0..4 {
            lanes[l] += f64::from(ca[l]) * f64::from(cb[l]);
        }
    }
    let tail: f64 = a[split..]
        .iter()
        .zip(&b[split..])
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    lanes.iter().sum::<f64>() + tail
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
