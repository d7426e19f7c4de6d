//! A packed matrix as the host forwards multiply by it: read packed for a few rows, unpacked
//! (once natively, in pieces in the page) for more.

use std::sync::Arc;

use super::matmul::{MatRef, matmul};
use super::quantised::QuantisedMatrix;

/// Rows of input up to which a packed product reads each packed row once (generation); above
/// it each matrix is unpacked and multiplied by `gemm` (natively) or the page's panel kernel here,
/// by burn in the Llama's burn forward.
pub(crate) const PACKED_ROWS: usize = 8;

/// A packed torch-layout matrix `[out, in]` as the host forward multiplies by it.
#[derive(Debug)]
pub(crate) struct PackedWeight {
    pub matrix: Arc<QuantisedMatrix>,
    /// Natively, the values unpacked the first time a product of more than [`PACKED_ROWS`] rows
    /// needs them, and kept: a CLI forward then costs what `gemm` does (PyTorch holds the same
    /// f32 values). A tab cannot spare the memory, and unpacks 8 rows at a time into each
    /// product's panels (`panel::product_unpacking`). An F32
    /// matrix (a safetensors checkpoint's) is multiplied where it lies.
    #[cfg(not(target_arch = "wasm32"))]
    unpacked: std::sync::OnceLock<Vec<f32>>,
}

impl PackedWeight {
    pub fn new(matrix: Arc<QuantisedMatrix>) -> Self {
        Self {
            matrix,
            #[cfg(not(target_arch = "wasm32"))]
            unpacked: std::sync::OnceLock::new(),
        }
    }

    /// `x @ M^T` for `x` `[n, in]`: `[n, out]`.
    pub fn times_transposed(&self, x: &[f32], n: usize) -> Vec<f32> {
        let matrix = &self.matrix;
        if n <= PACKED_ROWS {
            return matrix.matmul_transposed(x, n);
        }
        let (rows, cols) = (matrix.rows, matrix.cols);
        let mut y = vec![0.0f32; n * rows];
        if let Some(values) = matrix.as_f32() {
            let w = MatRef::transposed(values, cols, rows);
            matmul(&mut y, MatRef::rows(x, n, cols), w, 1.0, false);
            return y;
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let values = self.unpacked.get_or_init(|| matrix.dequantize());
            let w = MatRef::transposed(values, cols, rows);
            matmul(&mut y, MatRef::rows(x, n, cols), w, 1.0, false);
        }
        // The page unpacks the matrix 8 rows at a time straight into the product's panels.
        #[cfg(target_arch = "wasm32")]
        super::panel::product_unpacking(&mut y, MatRef::rows(x, n, cols), rows, |r, out| {
            matrix.unpack_row(r, out)
        });
        y
    }
}
