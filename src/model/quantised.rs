//! Weight matrices kept as a GGUF file stores them (Q4_1, Q6_K, F16, ...) and unpacked each time
//! a forward uses one. On the CPU path this holds SmolLM2-135M's block matrices (106 M values) in
//! 66 MB of Q4_1 instead of 425 MB of f32, which is what lets the page and its worker each hold the
//! model (see ARCHITECTURE.md, "Weights in memory"). GPUs get the unpacked values at upload.
//!
//! The bytes are shared ([`Bytes`]): a matrix read from a GGUF file is a view of the file's own
//! bytes, so loading copies nothing.

use bytes::Bytes;

use crate::error::{Result, SaeplayError};
use crate::io::gguf::{GgmlType, dequantize_into};
use crate::io::tensors::HostTensor;

/// A `[rows, cols]` matrix in ggml blocks, row-major: each row is `cols / block_size` whole blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantisedMatrix {
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
    data: Bytes,
}

impl QuantisedMatrix {
    /// Check that `data` is exactly `rows` rows of whole blocks of a type saeplay unpacks.
    pub fn new(
        ggml_type: GgmlType,
        rows: usize,
        cols: usize,
        data: impl Into<Bytes>,
    ) -> Result<Self> {
        let data = data.into();
        let block = ggml_type.block_size();
        let fits = ggml_type.is_supported()
            && cols.is_multiple_of(block)
            && rows
                .checked_mul(cols / block * ggml_type.type_size())
                .is_some_and(|n| n == data.len());
        if !fits {
            return Err(SaeplayError::GgufModel(format!(
                "has a {ggml_type} matrix of {rows} x {cols} stored in {} bytes, which is not whole {ggml_type} rows",
                data.len()
            )));
        }
        Ok(Self {
            ggml_type,
            rows,
            cols,
            data,
        })
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ggml_type.block_size() * self.ggml_type.type_size()
    }

    /// Bytes held.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// The values as f32, `[rows, cols]` row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        // `new` checked the type and the lengths, so this always unpacks.
        let _ = dequantize_into(self.ggml_type, &self.data, &mut out);
        out
    }

    /// Row `r` unpacked into `out` (`cols` values).
    fn unpack_row(&self, r: usize, out: &mut [f32]) {
        let bytes = self.row_bytes();
        // `new` checked the type and the lengths, so this always unpacks.
        let _ = dequantize_into(self.ggml_type, &self.data[r * bytes..(r + 1) * bytes], out);
    }

    /// Rows `rows` unpacked, `[rows.len(), cols]` row-major (an embedding lookup), or `None` when
    /// a row is out of range.
    pub fn select_rows(&self, rows: &[usize]) -> Option<Vec<f32>> {
        let mut out = vec![0.0f32; rows.len() * self.cols];
        for (&r, values) in rows.iter().zip(out.chunks_exact_mut(self.cols)) {
            if r >= self.rows {
                return None;
            }
            self.unpack_row(r, values);
        }
        Some(out)
    }

    /// Rows `start..end` unpacked, `[end - start, cols]` row-major.
    pub fn unpack_rows(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let mut out = vec![0.0f32; rows.len() * self.cols];
        let bytes = self.row_bytes();
        let _ = dequantize_into(
            self.ggml_type,
            &self.data[rows.start * bytes..rows.end * bytes],
            &mut out,
        );
        out
    }

    /// Whether every value is finite, unpacking one row at a time (no matrix-sized buffer).
    pub fn all_finite(&self) -> bool {
        let mut row = vec![0.0f32; self.cols];
        (0..self.rows).all(|r| {
            self.unpack_row(r, &mut row);
            row.iter().all(|v| v.is_finite())
        })
    }

    /// `x @ self^T` for `x` `[n, cols]` row-major: `[n, rows]`, each row unpacked once into a
    /// small buffer and dotted with every row of `x`. For a few rows of `x` (generation) this
    /// reads the packed bytes once instead of writing and reading the unpacked f32 matrix.
    pub fn matmul_transposed(&self, x: &[f32], n: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.cols);
        // `[rows, n]` first, so each group of output rows is one contiguous piece of work.
        let mut by_row = vec![0.0f32; self.rows * n];
        let rows_per_group = 64;
        let group = |(g, out): (usize, &mut [f32])| {
            let mut row = vec![0.0f32; self.cols];
            let first = g * rows_per_group;
            for (i, y) in out.chunks_exact_mut(n).enumerate() {
                self.unpack_row(first + i, &mut row);
                for (value, xr) in y.iter_mut().zip(x.chunks_exact(self.cols)) {
                    *value = dot(&row, xr);
                }
            }
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            by_row
                .par_chunks_mut(rows_per_group * n)
                .enumerate()
                .for_each(group);
        }
        #[cfg(target_arch = "wasm32")]
        by_row
            .chunks_mut(rows_per_group * n)
            .enumerate()
            .for_each(group);
        let mut y = vec![0.0f32; n * self.rows];
        for (o, values) in by_row.chunks_exact(n).enumerate() {
            for (r, &v) in values.iter().enumerate() {
                y[r * self.rows + o] = v;
            }
        }
        y
    }

    /// The values as a host tensor of shape `[rows, cols]`.
    pub fn to_host(&self) -> HostTensor {
        HostTensor {
            shape: vec![self.rows, self.cols],
            values: self.dequantize(),
        }
    }

    /// Row `r` of the result is row `source(r)` of this matrix (rows are whole blocks, so
    /// reordering them needs no unpacking).
    pub fn reorder_rows(&self, source: impl Fn(usize) -> usize) -> Self {
        let n = self.row_bytes();
        let mut data = Vec::with_capacity(self.data.len());
        for r in 0..self.rows {
            let s = source(r);
            data.extend_from_slice(&self.data[s * n..(s + 1) * n]);
        }
        Self {
            data: data.into(),
            ..*self
        }
    }
}

/// A dot product in eight lanes, which the compiler turns into SIMD where the target has it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    for (x, y) in a8.iter().zip(b8) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}
