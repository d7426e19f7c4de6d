//! The CPU path's kernels on plain `f32` buffers: matrix products through the `gemm` crate (AVX2/FMA
//! or NEON natively, over every core; wasm SIMD128 in the page), and the small row-wise steps of a
//! transformer (layer norm, GELU, softmax) as loops the compiler vectorises. At the built-in
//! model's sizes a forward is ~200 small operations: done as burn tensor ops, each paid dispatch,
//! allocation and copies that cost more than its arithmetic (see docs/speed.md).

#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod lanes;
#[cfg(any(target_arch = "wasm32", test))]
mod panel;
#[cfg(target_arch = "wasm32")]
pub(crate) use panel::product_unpacking as matmul_unpacking;

/// A read-only matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A contiguous row-major `[rows, cols]` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a contiguous row-major `[cols, rows]` matrix, read in place.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// Whether every element lies inside `data` (the bound `gemm`'s raw pointers rely on).
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Work (multiply-adds) below which a product runs on one thread: splitting a small product over
/// threads costs more than it saves.
#[cfg(not(target_arch = "wasm32"))]
const PARALLEL_WORK: usize = 1 << 18;

/// `out[m, n] = scale * a @ b`, or `out += scale * a @ b` when `accumulate`; `out` is contiguous
/// row-major.
pub(crate) fn matmul(out: &mut [f32], a: MatRef, b: MatRef, scale: f32, accumulate: bool) {
    product(out, a, b, scale, accumulate, true)
}

/// [`matmul`] on the calling thread only: for callers that already split work across cores.
pub(crate) fn matmul_one_thread(
    out: &mut [f32],
    a: MatRef,
    b: MatRef,
    scale: f32,
    accumulate: bool,
) {
    product(out, a, b, scale, accumulate, false)
}

fn product(out: &mut [f32], a: MatRef, b: MatRef, scale: f32, accumulate: bool, threads: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && out.len() >= m * n && a.in_bounds() && b.in_bounds(),
        "matmul shapes: [{m}, {k}] @ [{}, {n}] into {}",
        b.rows,
        out.len()
    );
    if nothing_to_multiply(out, m, k, n, accumulate) {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    let parallelism = if !threads || m * n * k < PARALLEL_WORK {
        gemm::Parallelism::None
    } else if m < FEW_ROWS && n >= 2 * COLUMN_BLOCK {
        return matmul_by_column_blocks(out, a, b, scale, accumulate);
    } else {
        gemm::Parallelism::Rayon(0)
    };
    #[cfg(target_arch = "wasm32")]
    let parallelism = {
        let _ = threads;
        if m >= PANEL_ROWS && a.col_stride == 1 {
            return panel::product(out, a, b, scale, accumulate);
        }
        // Every browser with WebGPU (and every current one) runs wasm SIMD128.
        gemm::set_wasm_simd128(true);
        gemm::Parallelism::None
    };
    // SAFETY: the assert above keeps every element of `a`, `b` and `out` inside its slice, and
    // `out` does not alias the inputs (it is borrowed mutably).
    unsafe { product_columns(out.as_mut_ptr(), a, b, 0..n, scale, accumulate, parallelism) }
}

/// Whether a product `[m, k] @ [k, n]` is already done: nothing to write (`m` or `n` is 0), or,
/// with `k` 0, a sum of nothing (zeros, written here unless accumulating).
fn nothing_to_multiply(out: &mut [f32], m: usize, k: usize, n: usize, accumulate: bool) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return true;
    }
    false
}

/// Columns `columns` of `out = scale * a @ b (+ out)`, `out` row-major with `b.cols` columns.
///
/// # Safety
/// `out` must hold `a.rows * b.cols` elements that nothing else reads or writes in these columns
/// meanwhile, and `a` and `b` must be in bounds.
unsafe fn product_columns(
    out: *mut f32,
    a: MatRef,
    b: MatRef,
    columns: std::ops::Range<usize>,
    scale: f32,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    if a.rows == 1 && b.col_stride == 1 {
        // SAFETY: as the caller promised: these columns of `out`'s one row are ours alone.
        let out = unsafe { std::slice::from_raw_parts_mut(out.add(columns.start), columns.len()) };
        return row_times_matrix(out, a, b, columns.start, scale, accumulate);
    }
    // SAFETY: as the caller promised; the offsets stay inside `out` and `b`.
    unsafe {
        gemm::gemm(
            a.rows,
            columns.len(),
            a.cols,
            out.add(columns.start),
            1,
            b.cols as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr().add(columns.start * b.col_stride),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `out = scale * a @ b[:, first..first + out.len()] (+ out)` for a one-row `a` and a row-major
/// `b`: a generated token's product with a weight stored `[in, out]` (GPT-2's Conv1D). `gemm`
/// runs it as one axpy per input, loading and storing the whole output row each time; here four
/// rows of `b` add into the output at once, streamed in order.
fn row_times_matrix(
    out: &mut [f32],
    a: MatRef,
    b: MatRef,
    first: usize,
    scale: f32,
    accumulate: bool,
) {
    let width = out.len();
    if !accumulate {
        out.fill(0.0);
    }
    let x = |i: usize| a.data[i * a.col_stride] * scale;
    let row = |i: usize| &b.data[i * b.row_stride + first..][..width];
    let mut i = 0;
    while i + 4 <= a.cols {
        let (x0, x1, x2, x3) = (x(i), x(i + 1), x(i + 2), x(i + 3));
        let rows = out
            .iter_mut()
            .zip(row(i))
            .zip(row(i + 1))
            .zip(row(i + 2))
            .zip(row(i + 3));
        for ((((o, w0), w1), w2), w3) in rows {
            *o += x0 * w0 + x1 * w1 + x2 * w2 + x3 * w3;
        }
        i += 4;
    }
    for i in i..a.cols {
        let xi = x(i);
        out.iter_mut().zip(row(i)).for_each(|(o, w)| *o += xi * w);
    }
}

/// Rows from which the page's products run on [`panel`]'s tiles; fewer (a generated token) go to
/// `gemm`'s matrix-vector kernels, which need no packing. So does an `a` read transposed (the
/// SAE's weight gradients, `acts^T @ error`): the tiles read `a` in place, a column apart per
/// step there, and ran at 0.35 of `gemm` (which packs `a`).
#[cfg(target_arch = "wasm32")]
const PANEL_ROWS: usize = 4;

/// Below this many rows `gemm` runs a product on one thread (a matrix-vector product always):
/// one token of generation would read a large model's weights on one core.
#[cfg(not(target_arch = "wasm32"))]
const FEW_ROWS: usize = 64;
#[cfg(not(target_arch = "wasm32"))]
const COLUMN_BLOCK: usize = 64;

/// [`matmul`] with the output's columns split between threads, each a one-thread product.
#[cfg(not(target_arch = "wasm32"))]
fn matmul_by_column_blocks(out: &mut [f32], a: MatRef, b: MatRef, scale: f32, accumulate: bool) {
    use rayon::prelude::*;
    let n = b.cols;
    let threads = rayon::current_num_threads().max(1);
    let block = n.div_ceil(threads * 2).next_multiple_of(COLUMN_BLOCK);
    let out_ptr = out.as_mut_ptr() as usize;
    (0..n.div_ceil(block)).into_par_iter().for_each(|i| {
        let columns = i * block..n.min((i + 1) * block);
        // SAFETY: `matmul`'s assert bounds every element read; each task writes only its own
        // columns of `out`'s rows, so no two tasks write the same element.
        unsafe {
            product_columns(
                out_ptr as *mut f32,
                a,
                b,
                columns,
                scale,
                accumulate,
                gemm::Parallelism::None,
            )
        }
    });
}

/// A row-major `[rows, cols]` matrix transposed into `[cols, rows]`.
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * cols];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// `row` repeated `n` times, row-major: a product's output that starts from its bias.
pub(crate) fn repeat_rows(row: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * row.len());
    for _ in 0..n {
        out.extend_from_slice(row);
    }
    out
}

/// `x[n, d_in] @ weight[d_in, d_out] + bias` (GPT-2's Conv1D layout), into a new buffer.
pub(crate) fn linear(x: &[f32], n: usize, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let d_out = bias.len();
    let d_in = weight.len() / d_out;
    let mut out = repeat_rows(bias, n);
    matmul(
        &mut out,
        MatRef::rows(x, n, d_in),
        MatRef::rows(weight, d_in, d_out),
        1.0,
        true,
    );
    out
}

/// Each row of `x` `[_, d]` as `(x - mean) / sqrt(var + eps)` (biased variance, as torch's
/// LayerNorm), in place; natively over every core for large inputs.
pub(crate) fn normalize_rows(x: &mut [f32], d: usize, eps: f32) {
    for_each_chunk(x, 64 * d, |_, rows| {
        for row in rows.chunks_exact_mut(d) {
            let mean = sum_lanes(row) / d as f32;
            row.iter_mut().for_each(|v| *v -= mean);
            let squares = sum_squares(row);
            let inv = 1.0 / (squares / d as f32 + eps).sqrt();
            row.iter_mut().for_each(|v| *v *= inv);
        }
    });
}

/// Sums in eight running lanes: one running sum is a chain of dependent adds the compiler may not
/// reorder; eight lanes vectorise.
fn sum_lanes(row: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

pub(crate) fn sum_squares(row: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v * v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|v| v * v).sum::<f32>()
}

/// `x * weight + bias` on each row of `x` `[_, d]`, in place.
pub(crate) fn scale_shift_rows(x: &mut [f32], weight: &[f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(weight.len()) {
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = *v * w + b;
        }
    }
}

/// `a += b`, element-wise.
pub(crate) fn add_into(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
}

/// tanh in f32 as a rational function on [-7.9, 7.9] (Eigen's `generic_fast_tanh_float`, within
/// a few ulp): unlike `f32::tanh` it has no branches or calls, so loops over it vectorise.
#[inline(always)]
pub(crate) fn fast_tanh(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
    p = x2 * p + -8.604_672e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619e-4;
    p = x2 * p + 4.893_524_6e-3;
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347e-4;
    q = x2 * q + 2.268_434_6e-3;
    q = x2 * q + 4.893_525e-3;
    x * p / q
}

/// GPT-2's `gelu_new`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, in place.
pub(crate) fn gelu_tanh(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x.iter_mut() {
        let u = *v;
        *v = 0.5 * u * (1.0 + fast_tanh(SQRT_2_OVER_PI * (u + 0.044_715 * u * u * u)));
    }
}

/// erf in f32 (Abramowitz and Stegun 7.1.26, absolute error under 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    sign * (1.0 - poly * (-x * x).exp())
}

/// The exact GELU `0.5 x (1 + erf(x / sqrt 2))`, in place.
pub(crate) fn gelu_erf(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

pub(crate) fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// e^x in f32 without calls or branches, so loops over it vectorise (Cephes' `expf`: e^x =
/// 2^k e^r with |r| <= ln2/2 and a degree-6 polynomial, within 2 ulp), for x in [-87, 88].
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    // Rounding by the 1.5 * 2^23 trick: `round()` is a call on baseline x86-64.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((k as i32 + 127) << 23) as u32)
}

/// Softmax of `row[..visible]` in place; the rest (future positions) becomes exactly 0.
pub(crate) fn softmax_prefix(row: &mut [f32], visible: usize) {
    let (seen, future) = row.split_at_mut(visible);
    future.fill(0.0);
    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    seen.iter_mut().for_each(|v| *v = fast_exp(*v - max));
    let inv = 1.0 / sum_lanes(seen);
    seen.iter_mut().for_each(|v| *v *= inv);
}

/// The rows the logits are read from: every position of `resid` `[b * t, d]`, or each
/// sequence's last; with the positions per sequence that remain.
pub(crate) fn logit_rows(
    resid: Vec<f32>,
    (b, t, d): (usize, usize, usize),
    all_positions: bool,
) -> (Vec<f32>, usize) {
    if all_positions {
        return (resid, t);
    }
    let mut last = Vec::with_capacity(b * d);
    for seq in resid.chunks_exact(t * d) {
        last.extend_from_slice(&seq[(t - 1) * d..]);
    }
    (last, 1)
}

/// Keys and values of one layer on the host: `[batch, kv_head, pos, d_head]`.
#[derive(Clone, Debug, Default)]
pub struct HostKv {
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// Where queries, keys and values sit in each row of a `[b * t, row]` buffer: `heads` query
/// heads from `q`, and `kv_heads` key and value heads from `k` and `v` (grouped-query attention
/// when fewer: query head `h` reads key/value head `h / (heads / kv_heads)`, as transformers'
/// `repeat_kv`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct QkvLayout {
    pub heads: usize,
    pub kv_heads: usize,
    pub d_head: usize,
    pub row: usize,
    pub q: usize,
    pub k: usize,
    pub v: usize,
}

/// Causal self-attention of the new positions in `qkv` over the cached and new keys, scores
/// scaled by `scale`; appends the new keys and values to `kv`. Returns `z`
/// `[b * t, heads * d_head]`.
pub(crate) fn causal_attention(
    qkv: &[f32],
    layout: QkvLayout,
    (b, t): (usize, usize),
    offset: usize,
    scale: f32,
    kv: &mut HostKv,
) -> Vec<f32> {
    let QkvLayout {
        heads,
        kv_heads,
        d_head: dh,
        row: width,
        ..
    } = layout;
    let group = heads / kv_heads;
    let total = offset + t;
    // The cache grows to [b, kv_head, total, dh]: old positions first, then the new ones.
    let mut keys = vec![0.0f32; b * kv_heads * total * dh];
    let mut values = vec![0.0f32; b * kv_heads * total * dh];
    for (bh, (k_seq, v_seq)) in keys
        .chunks_exact_mut(total * dh)
        .zip(values.chunks_exact_mut(total * dh))
        .enumerate()
    {
        let (bi, h) = (bh / kv_heads, bh % kv_heads);
        if offset > 0 {
            k_seq[..offset * dh].copy_from_slice(&kv.keys[bh * offset * dh..][..offset * dh]);
            v_seq[..offset * dh].copy_from_slice(&kv.values[bh * offset * dh..][..offset * dh]);
        }
        for i in 0..t {
            let row = &qkv[(bi * t + i) * width..][..width];
            k_seq[(offset + i) * dh..][..dh].copy_from_slice(&row[layout.k + h * dh..][..dh]);
            v_seq[(offset + i) * dh..][..dh].copy_from_slice(&row[layout.v + h * dh..][..dh]);
        }
    }

    // Per (batch, head): scores [t, total] = q k^T * scale, masked softmax, z = pattern v.
    let mut z_heads = vec![0.0f32; b * heads * t * dh]; // [b, head, t, dh]
    // Queries go in blocks that read only the keys they can see: half the work of a causal
    // forward from position 0.
    const QUERY_BLOCK: usize = 32;
    for_each_chunk(&mut z_heads, t * dh, |bh, z| {
        let (bi, h) = (bh / heads, bh % heads);
        let kv_index = bi * kv_heads + h / group;
        let k_seq = &keys[kv_index * total * dh..][..total * dh];
        let v_seq = &values[kv_index * total * dh..][..total * dh];
        let mut scores = vec![0.0f32; QUERY_BLOCK.min(t) * total];
        for first in (0..t).step_by(QUERY_BLOCK) {
            let rows = QUERY_BLOCK.min(t - first);
            let seen = offset + first + rows; // keys visible to the block's last query
            let q = MatRef {
                data: &qkv[(bi * t + first) * width + layout.q + h * dh..],
                rows,
                cols: dh,
                row_stride: width,
                col_stride: 1,
            };
            let block = &mut scores[..rows * seen];
            matmul(block, q, MatRef::transposed(k_seq, dh, seen), scale, false);
            for (i, row) in block.chunks_exact_mut(seen).enumerate() {
                softmax_prefix(row, offset + first + i + 1);
            }
            matmul(
                &mut z[first * dh..(first + rows) * dh],
                MatRef::rows(block, rows, seen),
                MatRef::rows(v_seq, seen, dh),
                1.0,
                false,
            );
        }
    });
    *kv = HostKv { keys, values };

    // [b, head, t, dh] -> [b, t, head * dh]
    let d = heads * dh;
    let mut z = vec![0.0f32; b * t * d];
    for (bh, z_head) in z_heads.chunks_exact(t * dh).enumerate() {
        let (bi, h) = (bh / heads, bh % heads);
        for (i, row) in z_head.chunks_exact(dh).enumerate() {
            z[(bi * t + i) * d + h * dh..][..dh].copy_from_slice(row);
        }
    }
    z
}

/// Run `work(i, chunk)` on each `chunk`-sized piece of `data`: natively over every core.
pub(crate) fn for_each_chunk(
    data: &mut [f32],
    chunk: usize,
    work: impl Fn(usize, &mut [f32]) + Send + Sync,
) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| work(i, c));
    }
    #[cfg(target_arch = "wasm32")]
    data.chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| work(i, c));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_matches_f64_tanh() {
        let worst = (-2000..=2000)
            .map(|i| i as f64 / 100.0)
            .map(|x| (fast_tanh(x as f32) as f64 - x.tanh()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "worst |fast_tanh - tanh| = {worst}");
    }

    #[test]
    fn fast_exp_matches_f64_exp() {
        let worst = (-8700..=8800)
            .map(|i| (i as f32 / 100.0) as f64)
            .map(|x| ((fast_exp(x as f32) as f64 - x.exp()) / x.exp()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(-1e9) < 1e-37 && fast_exp(-1e9) > 0.0);
    }

    #[test]
    fn erf_gelu_matches_a_direct_computation() {
        // erf(1) = 0.8427007929497149, erf(-0.5) = -0.5204998778130465 (tables).
        for (x, erf_x) in [
            (1.0f64, 0.842_700_792_949_714_9),
            (-0.5, -0.520_499_877_813_046_5),
        ] {
            let mut v = [(x * std::f64::consts::SQRT_2) as f32];
            gelu_erf(&mut v);
            let expected = 0.5 * x * std::f64::consts::SQRT_2 * (1.0 + erf_x);
            assert!(
                (v[0] as f64 - expected).abs() < 1e-6,
                "{} vs {expected}",
                v[0]
            );
        }
    }

    /// `1 + scale * a @ bt^T` (accumulating into ones) or `scale * a @ bt^T`, through [`matmul`]
    /// with `bt` read transposed in place, against f64 loops.
    fn check_product(m: usize, k: usize, n: usize, scale: f32, accumulate: bool) {
        check_product_of(matmul, m, k, n, scale, accumulate, false)
    }

    type Product = fn(&mut [f32], MatRef, MatRef, f32, bool);

    /// `check_product` of `product`, with `b` stored transposed (`[n, k]`, read as a view) or,
    /// with `b_row_major`, as `[k, n]`.
    fn check_product_of(
        product: Product,
        m: usize,
        k: usize,
        n: usize,
        scale: f32,
        accumulate: bool,
        b_row_major: bool,
    ) {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let bt: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let base = if accumulate { 1.0 } else { 0.0 };
        let mut out = vec![base as f32; m * n];
        let b_rows = transpose(&bt, n, k);
        let b = if b_row_major {
            MatRef::rows(&b_rows, k, n)
        } else {
            MatRef::transposed(&bt, k, n)
        };
        product(&mut out, MatRef::rows(&a, m, k), b, scale, accumulate);
        for i in 0..m {
            for j in 0..n {
                let direct: f64 = (0..k)
                    .map(|p| a[i * k + p] as f64 * bt[j * k + p] as f64)
                    .sum();
                let expected = base + scale as f64 * direct;
                let got = out[i * n + j] as f64;
                assert!(
                    (got - expected).abs() < 1e-2,
                    "[{m}x{k}x{n}] ({i},{j}): {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn matmul_matches_loops_with_strides() {
        check_product(37, 129, 53, 0.5, true);
        check_product(37, 129, 53, 1.0, false);
    }

    #[test]
    fn few_row_products_split_by_columns_match_loops() {
        // One and three rows against a wide matrix: the generation shape, split between threads
        // natively.
        for m in [1, 3] {
            check_product(m, 300, 1000, 1.0, false);
        }
    }

    #[test]
    fn one_row_products_with_row_major_weights_match_loops() {
        // A generated token against a GPT-2 Conv1D weight: whole register blocks and a rest.
        for (n, accumulate) in [(1000, false), (1000, true), (64, true), (7, false)] {
            check_product_of(matmul, 1, 300, n, 0.5, accumulate, true);
        }
        check_product_of(matmul, 3, 300, 1000, 1.0, false, true);
    }

    #[test]
    fn panel_products_match_loops() {
        // Every tile height (1-4 rows), whole and partial panels, weights row-major and read
        // transposed, several column and row blocks (k = 129: 248-column blocks; k = 9000: 4-row
        // blocks).
        for (m, k, n) in [
            (1, 7, 8),
            (3, 1, 7),
            (5, 129, 53),
            (37, 129, 300),
            (9, 9000, 17),
            (6, 1500, 20),
        ] {
            for b_row_major in [false, true] {
                check_product_of(panel::product, m, k, n, 0.5, true, b_row_major);
                check_product_of(panel::product, m, k, n, 1.0, false, b_row_major);
            }
        }
        // A matrix unpacked a row at a time straight into panels (a GGUF one in the page).
        fn unpacking(out: &mut [f32], a: MatRef, b: MatRef, scale: f32, accumulate: bool) {
            assert!(scale == 1.0 && !accumulate);
            panel::product_unpacking(out, a, b.cols, |r, row| {
                for (kk, value) in row.iter_mut().enumerate() {
                    *value = b.data[r * b.col_stride + kk * b.row_stride];
                }
            });
        }
        for (m, k, n) in [(1, 7, 8), (5, 129, 53), (37, 129, 300), (9, 9000, 17)] {
            check_product_of(unpacking, m, k, n, 1.0, false, false);
        }
        // `a` read transposed (the page sends these to `gemm`, which packs `a`, but the tiles
        // take any strides).
        let (m, k, n) = (6, 10, 9);
        let a_t: Vec<f32> = (0..k * m).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.25).collect();
        let mut out = vec![0.0f32; m * n];
        panel::product(
            &mut out,
            MatRef::transposed(&a_t, m, k),
            MatRef::rows(&b, k, n),
            1.0,
            false,
        );
        for i in 0..m {
            for j in 0..n {
                let direct: f32 = (0..k).map(|p| a_t[p * m + i] * b[p * n + j]).sum();
                assert!((out[i * n + j] - direct).abs() < 1e-4, "({i},{j})");
            }
        }
    }

    #[test]
    fn softmax_prefix_zeroes_the_future() {
        let mut row = [1.0, 2.0, 3.0, 100.0];
        softmax_prefix(&mut row, 3);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let sum: f64 = e.iter().sum();
        for i in 0..3 {
            assert!((row[i] as f64 - e[i] / sum).abs() < 1e-6);
        }
        assert_eq!(row[3], 0.0);
    }

    #[test]
    fn layer_norm_rows_have_zero_mean_and_unit_variance() {
        let mut x: Vec<f32> = (0..24).map(|i| (i * i) as f32 * 0.1).collect();
        normalize_rows(&mut x, 8, 0.0);
        for row in x.chunks(8) {
            let mean: f32 = row.iter().sum::<f32>() / 8.0;
            let var: f32 = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 8.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        }
    }
}
