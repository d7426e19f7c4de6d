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

    /// An F32 matrix of `values` (`[rows, cols]` row-major), holding them without a copy where
    /// this machine stores f32 little-endian.
    pub fn from_f32(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self> {
        /// `values` seen as their bytes.
        struct F32Bytes(Vec<f32>);
        impl AsRef<[u8]> for F32Bytes {
            fn as_ref(&self) -> &[u8] {
                bytemuck::cast_slice(&self.0)
            }
        }
        let data = if cfg!(target_endian = "little") {
            Bytes::from_owner(F32Bytes(values))
        } else {
            Bytes::from(
                values
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            )
        };
        Self::new(GgmlType::F32, rows, cols, data)
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ggml_type.block_size() * self.ggml_type.type_size()
    }

    /// Bytes held.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// The values themselves, `[rows, cols]` row-major, when they are stored as f32 the way this
    /// machine holds them (an F32 matrix, aligned, little-endian): nothing to unpack.
    pub fn as_f32(&self) -> Option<&[f32]> {
        if self.ggml_type != GgmlType::F32 || cfg!(target_endian = "big") {
            return None;
        }
        bytemuck::try_cast_slice(&self.data).ok()
    }

    /// The values as f32, `[rows, cols]` row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        // `new` checked the type and the lengths, so this always unpacks.
        let _ = dequantize_into(self.ggml_type, &self.data, &mut out);
        out
    }

    /// Row `r` unpacked into `out` (`cols` values).
    pub(crate) fn unpack_row(&self, r: usize, out: &mut [f32]) {
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

    /// `x @ self^T` for `x` `[n, cols]` row-major: `[n, rows]`. For one or two rows of `x`
    /// (generation) the common block types are dotted while still packed ([`PackedDot`]); other
    /// types, and more rows, unpack each weight row once into a small buffer and dot it with
    /// every row of `x`. Either way the packed bytes are read once and no f32 matrix is written.
    pub fn matmul_transposed(&self, x: &[f32], n: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.cols);
        let packed = PackedDot::of(self.ggml_type).filter(|_| n <= PACKED_DOT_ROWS);
        // Each row of x's sum over every block (the blocks' offsets multiply it).
        let sums: Vec<f32> = match packed {
            Some(_) => x
                .chunks_exact(PACKED_BLOCK)
                .map(|block| block.iter().sum())
                .collect(),
            None => Vec::new(),
        };
        let blocks_per_row = self.cols / PACKED_BLOCK;
        let row_bytes = self.row_bytes();
        // `[rows, n]` first, so each group of output rows is one contiguous piece of work.
        let mut by_row = vec![0.0f32; self.rows * n];
        let rows_per_group = 64;
        let group = |(g, out): (usize, &mut [f32])| {
            let first = g * rows_per_group;
            match packed {
                Some(kernel) => {
                    for (i, y) in out.chunks_exact_mut(n).enumerate() {
                        let row = &self.data[(first + i) * row_bytes..][..row_bytes];
                        for ((value, xr), sums) in y
                            .iter_mut()
                            .zip(x.chunks_exact(self.cols))
                            .zip(sums.chunks_exact(blocks_per_row))
                        {
                            *value = kernel.dot(row, xr, sums);
                        }
                    }
                }
                None if let Some(values) = self.as_f32() => {
                    // f32 rows are dotted where they lie.
                    for (i, y) in out.chunks_exact_mut(n).enumerate() {
                        let row = &values[(first + i) * self.cols..][..self.cols];
                        for (value, xr) in y.iter_mut().zip(x.chunks_exact(self.cols)) {
                            *value = dot(row, xr);
                        }
                    }
                }
                None => {
                    let mut row = vec![0.0f32; self.cols];
                    for (i, y) in out.chunks_exact_mut(n).enumerate() {
                        self.unpack_row(first + i, &mut row);
                        for (value, xr) in y.iter_mut().zip(x.chunks_exact(self.cols)) {
                            *value = dot(&row, xr);
                        }
                    }
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

/// Rows of `x` up to which [`QuantisedMatrix::matmul_transposed`] dots packed rows directly: each
/// row of `x` converts the weights' nibbles again, so for more rows unpacking once is cheaper.
const PACKED_DOT_ROWS: usize = 2;

/// Values per block of the types [`PackedDot`] reads.
const PACKED_BLOCK: usize = 32;

/// A weight row's dot product with `x` computed from its ggml blocks as they are stored. A block
/// is a scale `d` (and for Q4_1 an offset `m`) over 32 small integers `q`, so
/// `sum(w * x) = d * sum(q * x) + m * sum(x)`: the integers meet `x` directly, the scales once per
/// block, and the block's `sum(x)` is computed once per row of `x`. In the page this is most of a
/// Llama model's generation (SmolLM2's GGUF is Q4_1, its embedding Q8_0).
#[derive(Clone, Copy, Debug, PartialEq)]
enum PackedDot {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl PackedDot {
    fn of(ty: GgmlType) -> Option<Self> {
        match ty {
            GgmlType::Q4_0 => Some(Self::Q4_0),
            GgmlType::Q4_1 => Some(Self::Q4_1),
            GgmlType::Q8_0 => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// `sum(w * x)` for one row's bytes, `x` of the row's length and `sums` its per-block sums.
    fn dot(self, row: &[u8], x: &[f32], sums: &[f32]) -> f32 {
        // The page converts the integers 16 at a time by hand: the compiler's own vectorising of
        // the loops below ran 1.3-1.5x slower in Node (docs/speed.md, sixth session).
        #[cfg(target_arch = "wasm32")]
        return self.dot_lanes(row, x, sums);
        #[cfg(not(target_arch = "wasm32"))]
        self.dot_scalar(row, x, sums)
    }

    /// Bytes per block of 32 values.
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }

    /// A block's scale `d`, its offset `m` (each value is `d * q + m`) and its integers' bytes.
    fn block_parts<'a>(self, block: &'a [u8], f16_table: &[f32; 1 << 16]) -> (f32, f32, &'a [u8]) {
        let f16 =
            |at: usize| f16_table[usize::from(u16::from_le_bytes([block[at], block[at + 1]]))];
        let d = f16(0);
        match self {
            // Q4_0 centres its nibbles on 8.
            Self::Q4_0 => (d, -8.0 * d, &block[2..]),
            Self::Q4_1 => (d, f16(2), &block[4..]),
            Self::Q8_0 => (d, 0.0, &block[2..]),
        }
    }

    /// [`Self::dot`] in 4-lane vectors: each block's 32 integers become 8 vectors of `f32` that
    /// meet `x` directly, and the block's sum is scaled once.
    #[cfg(any(target_arch = "wasm32", test))]
    fn dot_lanes(self, row: &[u8], x: &[f32], sums: &[f32]) -> f32 {
        use crate::kernels::lanes::{Bytes16, F4};
        let table = f16_table();
        let mut lanes = F4::splat(0.0);
        let mut offsets = 0.0f32;
        let blocks = row.chunks_exact(self.block_bytes());
        for ((block, x), &sum) in blocks.zip(x.as_chunks::<32>().0).zip(sums) {
            let (d, m, quants) = self.block_parts(block, table);
            let bytes = |range: std::ops::Range<usize>| {
                Bytes16::from_array(quants[range].try_into().unwrap_or(&[0; 16]))
            };
            // The 32 integers, in order, as 8 vectors.
            let [q0, q1, q2, q3, q4, q5, q6, q7] = match self {
                Self::Q8_0 => {
                    let [a0, a1, a2, a3] = bytes(0..16).signed_to_f32();
                    let [b0, b1, b2, b3] = bytes(16..32).signed_to_f32();
                    [a0, a1, a2, a3, b0, b1, b2, b3]
                }
                // Low nibbles are values 0-15, high nibbles 16-31.
                Self::Q4_0 | Self::Q4_1 => {
                    let [l0, l1, l2, l3] = bytes(0..16).low_nibbles().unsigned_to_f32();
                    let [h0, h1, h2, h3] = bytes(0..16).high_nibbles().unsigned_to_f32();
                    [l0, l1, l2, l3, h0, h1, h2, h3]
                }
            };
            let x = x.as_chunks::<4>().0;
            let x = |v: usize| F4::from_array(&x[v]);
            let even = q0
                .mul(x(0))
                .mul_add(q2, x(2))
                .mul_add(q4, x(4))
                .mul_add(q6, x(6));
            let odd = q1
                .mul(x(1))
                .mul_add(q3, x(3))
                .mul_add(q5, x(5))
                .mul_add(q7, x(7));
            lanes = lanes.mul_add(F4::splat(d), even.add(odd));
            offsets += m * sum;
        }
        lanes.sum() + offsets
    }

    /// [`Self::dot`] as loops the compiler vectorises (AVX2 natively).
    #[cfg(any(not(target_arch = "wasm32"), test))]
    fn dot_scalar(self, row: &[u8], x: &[f32], sums: &[f32]) -> f32 {
        let table = f16_table();
        // Sixteen lanes, each block scaled before it joins them; the offsets apart.
        let mut lanes = [0.0f32; 16];
        let mut offsets = 0.0f32;
        let blocks = row.chunks_exact(self.block_bytes());
        for ((block, x), &sum) in blocks.zip(x.as_chunks::<32>().0).zip(sums) {
            let (d, m, quants) = self.block_parts(block, table);
            match self {
                Self::Q8_0 => {
                    let qs: &[u8; 32] = quants.try_into().unwrap_or(&[0; 32]);
                    for j in 0..16 {
                        let (a, b) = (qs[j] as i8, qs[j + 16] as i8);
                        lanes[j] += d * (f32::from(a) * x[j] + f32::from(b) * x[j + 16]);
                    }
                }
                Self::Q4_0 | Self::Q4_1 => {
                    let qs: &[u8; 16] = quants.try_into().unwrap_or(&[0; 16]);
                    let (lo, hi) = x.split_at(16);
                    for j in 0..16 {
                        let q = qs[j];
                        lanes[j] += d * (f32::from(q & 0x0F) * lo[j] + f32::from(q >> 4) * hi[j]);
                    }
                }
            }
            offsets += m * sum;
        }
        lanes.iter().sum::<f32>() + offsets
    }
}

/// Every f16's value, by its bits: the page has no f16 instructions, and every block of 32
/// values has one or two scales to convert.
fn f16_table() -> &'static [f32; 1 << 16] {
    static TABLE: std::sync::OnceLock<Box<[f32; 1 << 16]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([0.0f32; 1 << 16]);
        for (bits, value) in (0..=u16::MAX).zip(table.iter_mut()) {
            *value = half::f16::from_bits(bits).to_f32();
        }
        table
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64 as Rng;

    /// Blocks of `ty` with random integers and scales (f16 bytes), `rows` rows of `cols`.
    fn random_matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> QuantisedMatrix {
        let blocks = rows * cols / 32;
        let mut data = Vec::new();
        for _ in 0..blocks {
            let scale = |rng: &mut Rng| {
                half::f16::from_f32((rng.uniform() * 0.2 - 0.1) as f32).to_le_bytes()
            };
            data.extend(scale(rng));
            if ty == GgmlType::Q4_1 {
                data.extend(scale(rng));
            }
            let quants = if ty == GgmlType::Q8_0 { 32 } else { 16 };
            data.extend((0..quants).map(|_| (rng.uniform() * 256.0) as u8));
        }
        QuantisedMatrix::new(ty, rows, cols, data).unwrap()
    }

    /// The packed dot products (one and two rows of x) and the unpacking route (three rows)
    /// equal the product with the unpacked values, computed directly in f64.
    #[test]
    fn packed_products_equal_the_unpacked_values_product() {
        let mut rng = Rng::new(7);
        let (rows, cols) = (131, 96);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::F32,
        ] {
            let matrix = match ty {
                GgmlType::F32 => {
                    let values = (0..rows * cols)
                        .map(|_| rng.uniform() as f32 - 0.5)
                        .collect();
                    QuantisedMatrix::from_f32(rows, cols, values).unwrap()
                }
                _ => random_matrix(ty, rows, cols, &mut rng),
            };
            let values = matrix.dequantize();
            for n in [1, 2, 3] {
                let x: Vec<f32> = (0..n * cols)
                    .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
                    .collect();
                let got = matrix.matmul_transposed(&x, n);
                for i in 0..n {
                    for r in 0..rows {
                        let want: f64 = (0..cols)
                            .map(|c| f64::from(x[i * cols + c]) * f64::from(values[r * cols + c]))
                            .sum();
                        let have = f64::from(got[i * rows + r]);
                        assert!(
                            (have - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{ty}, n {n}, row {i}, column {r}: {have} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// An F32 matrix is read in place, bit for bit; other types are not f32.
    #[test]
    fn f32_matrices_are_their_own_values() {
        let values: Vec<f32> = (0..6 * 64).map(|i| (i as f32 - 100.0) / 7.0).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let matrix = QuantisedMatrix::new(GgmlType::F32, 6, 64, bytes).unwrap();
        assert_eq!(matrix.dequantize(), values);
        let held = QuantisedMatrix::from_f32(6, 64, values.clone()).unwrap();
        assert_eq!(held, matrix);
        assert_eq!(held.as_f32(), Some(values.as_slice()));
        assert!(QuantisedMatrix::from_f32(6, 63, values.clone()).is_err());
        let mut rng = Rng::new(3);
        assert_eq!(
            random_matrix(GgmlType::Q8_0, 2, 64, &mut rng).as_f32(),
            None
        );
    }

    /// The page's vector dot products equal the compiler-vectorised ones and the unpacked
    /// values' product in f64, for every packed type.
    #[test]
    fn vector_packed_dots_equal_the_unpacked_values_dot() {
        let mut rng = Rng::new(11);
        let (rows, cols) = (17, 160);
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let matrix = random_matrix(ty, rows, cols, &mut rng);
            let kernel = PackedDot::of(ty).unwrap();
            let values = matrix.dequantize();
            let x: Vec<f32> = (0..cols)
                .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
                .collect();
            let sums: Vec<f32> = x.chunks_exact(32).map(|b| b.iter().sum()).collect();
            for r in 0..rows {
                let bytes = &matrix.data[r * matrix.row_bytes()..][..matrix.row_bytes()];
                let want: f64 = (0..cols)
                    .map(|c| f64::from(x[c]) * f64::from(values[r * cols + c]))
                    .sum();
                for (name, have) in [
                    ("vector", kernel.dot_lanes(bytes, &x, &sums)),
                    ("scalar", kernel.dot_scalar(bytes, &x, &sums)),
                ] {
                    let have = f64::from(have);
                    assert!(
                        (have - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{ty} {name}, row {r}: {have} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_f16_table_converts_every_value() {
        for bits in [0u16, 1, 0x3C00, 0xBC00, 0x7BFF, 0x7C00, 0x8001, 0x3555] {
            let want = half::f16::from_bits(bits).to_f32();
            assert_eq!(f16_table()[usize::from(bits)].to_bits(), want.to_bits());
        }
    }
}
