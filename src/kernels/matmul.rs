//! Matrix products on host buffers: `gemm` natively (over every core for large products, split by
//! columns for a few rows), the page's panel kernel from 4 rows, and a one-row kernel for a
//! generated token against a row-major weight.

#[cfg(any(target_arch = "wasm32", test))]
use super::panel;

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
    pub(super) fn in_bounds(&self) -> bool {
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
pub(super) fn nothing_to_multiply(
    out: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
