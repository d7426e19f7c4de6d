//! Weight matrices kept as a GGUF file stores them (Q4_1, Q6_K, F16, ...) and unpacked each time
//! a forward uses one. On the CPU path this holds SmolLM2-135M in ~100 MB instead of 540 MB of
//! f32, which is what lets the page and its worker each hold the model (see ARCHITECTURE.md,
//! "Weights in memory"). GPU devices get the unpacked values at upload instead.

use crate::error::{Result, SaeplayError};
use crate::io::gguf::{GgmlType, dequantize_into};
use crate::io::tensors::HostTensor;

/// A `[rows, cols]` matrix in ggml blocks, row-major: each row is `cols / block_size` whole blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantisedMatrix {
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
    data: Vec<u8>,
}

impl QuantisedMatrix {
    /// Check that `data` is exactly `rows` rows of whole blocks of a type saeplay unpacks.
    pub fn new(ggml_type: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self> {
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
        Self { data, ..*self }
    }
}
