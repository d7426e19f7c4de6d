//! The page's matrix product on wasm SIMD128: `out = scale * a @ b (+ out)` in tiles of 4 rows by
//! 8 columns. `b` is packed a block of columns at a time into panels of 8 columns, `[k][8]`, which
//! the tiles read in order.
//!
//! Why not `gemm`'s SIMD128 kernel: its 12x4 tiles hold more vectors than V8 keeps in registers,
//! and it reached ~22 GFLOP/s in Node here, where 4x8 tiles (8 accumulators, 2 panel vectors, 1
//! broadcast) reach ~32 (docs/speed.md, sixth session). Natively this file is compiled only for
//! the tests, on plain arrays, so the blocking and the edges are checked against loops there.

use super::matmul::MatRef;

/// Rows of a tile.
const TILE_ROWS: usize = 4;
/// Columns of a panel: two 4-lane vectors.
const PANEL: usize = 8;
/// Floats of `a` a block of rows holds (128 KB), so they stay in the core's cache while the tiles
/// run along a block's panels. (Cutting the depth into first-level-cache pieces as well made no
/// difference in Node here.)
const BLOCK_FLOATS: usize = 32 * 1024;
/// Floats of packed `b` a block of columns holds (512 KB): wide enough that packing reads long
/// runs of a row-major `b`.
const PACKED_FLOATS: usize = 128 * 1024;

use super::lanes::F4;

/// `out[m, n] = scale * a @ b`, or `out += ...` when `accumulate`; `out` contiguous row-major.
pub(crate) fn product(out: &mut [f32], a: MatRef, b: MatRef, scale: f32, accumulate: bool) {
    assert!(
        b.rows == a.cols && b.in_bounds(),
        "matmul shapes: [{}, {}] @ [{}, {}]",
        a.rows,
        a.cols,
        b.rows,
        b.cols
    );
    blocks(out, a, b.cols, scale, accumulate, &mut |packed, cols| {
        let (k, width) = (b.rows, cols.len());
        if b.col_stride == 1 {
            // Row-major (GPT-2's Conv1D weights): each row's run of the block's columns is
            // contiguous, and goes to the panels 8 values at a time.
            for kk in 0..k {
                let row = &b.data[kk * b.row_stride + cols.start..][..width];
                let mut whole = row.chunks_exact(PANEL);
                for (p, values) in (&mut whole).enumerate() {
                    let panel_row = &mut packed[(p * k + kk) * PANEL..][..PANEL];
                    panel_row.iter_mut().zip(values).for_each(|(v, w)| *v = *w);
                }
                let rest = whole.remainder();
                if !rest.is_empty() {
                    let panel_row = &mut packed[(width / PANEL * k + kk) * PANEL..];
                    panel_row.iter_mut().zip(rest).for_each(|(v, w)| *v = *w);
                }
            }
        } else if b.row_stride == 1 {
            // Each column of `b` is a contiguous row of an `[n, k]` weight.
            for (p, panel) in packed.chunks_exact_mut(k * PANEL).enumerate() {
                let first = cols.start + p * PANEL;
                let mut columns: [&[f32]; PANEL] = [&[]; PANEL];
                let count = cols.end.min(first + PANEL) - first;
                for (slot, col) in columns.iter_mut().zip(first..first + count) {
                    *slot = &b.data[col * b.col_stride..][..k];
                }
                interleave(panel, &columns[..count]);
            }
        } else {
            for (j, col) in cols.enumerate() {
                let panel = &mut packed[j / PANEL * k * PANEL..][..k * PANEL];
                for (kk, value) in panel[j % PANEL..].iter_mut().step_by(PANEL).enumerate() {
                    *value = b.data[col * b.col_stride + kk * b.row_stride];
                }
            }
        }
    });
}

/// `out[m, n] = a @ w^T` for a `w` `[n, k]` that `unpack_row(r, row)` writes a row at a time (a
/// GGUF matrix): unpacked 8 rows at a time straight into the panels, so no f32 copy of `w` is
/// made.
pub(crate) fn product_unpacking(
    out: &mut [f32],
    a: MatRef,
    n: usize,
    unpack_row: impl Fn(usize, &mut [f32]),
) {
    let k = a.cols;
    let mut rows = vec![0.0f32; PANEL * k];
    blocks(out, a, n, 1.0, false, &mut |packed, cols| {
        for (p, panel) in packed.chunks_exact_mut(k * PANEL).enumerate() {
            let first = cols.start + p * PANEL;
            let count = cols.end.min(first + PANEL) - first;
            let mut unpacked: [&[f32]; PANEL] = [&[]; PANEL];
            for (j, row) in rows.chunks_exact_mut(k).take(count).enumerate() {
                unpack_row(first + j, row);
            }
            for (slot, row) in unpacked.iter_mut().zip(rows.chunks_exact(k)) {
                *slot = row;
            }
            interleave(panel, &unpacked[..count]);
        }
    });
}

/// Up to 8 rows of `k` values as a panel `[k][8]` (a transpose): 4x4 blocks through registers
/// when all 8 are there.
fn interleave(panel: &mut [f32], rows: &[&[f32]]) {
    let k = panel.len() / PANEL;
    let whole = if rows.len() == PANEL { k / 4 * 4 } else { 0 };
    for kk in (0..whole).step_by(4) {
        for half in 0..2 {
            // SAFETY: each row holds `k` values and `kk + 4 <= k`; the panel's rows
            // `kk..kk + 4` hold 8 values each.
            unsafe {
                let block = std::array::from_fn(|r| F4::load(rows[4 * half + r][kk..].as_ptr()));
                for (q, column) in F4::transpose(block).into_iter().enumerate() {
                    column.store(panel[(kk + q) * PANEL + 4 * half..].as_mut_ptr());
                }
            }
        }
    }
    for (j, row) in rows.iter().enumerate() {
        for kk in whole..k {
            panel[kk * PANEL + j] = row[kk];
        }
    }
}

/// The blocked product with `b` `[k, n]` packed a block of columns at a time by
/// `pack(packed, columns)`: panel `p` of the block is `packed[p * k * 8..][..k * 8]`, `[k][8]`,
/// left zero past the last column.
fn blocks(
    out: &mut [f32],
    a: MatRef,
    n: usize,
    scale: f32,
    accumulate: bool,
    pack: &mut dyn FnMut(&mut [f32], std::ops::Range<usize>),
) {
    let (m, k) = (a.rows, a.cols);
    assert!(
        out.len() >= m * n && a.in_bounds(),
        "matmul shapes: [{m}, {k}] into [{m}, {n}] in {}",
        out.len()
    );
    if super::matmul::nothing_to_multiply(out, m, k, n, accumulate) {
        return;
    }
    let row_block = (BLOCK_FLOATS / k).max(TILE_ROWS) / TILE_ROWS * TILE_ROWS;
    let col_block = (PACKED_FLOATS / k).max(PANEL) / PANEL * PANEL;
    let mut packed = Vec::new();
    for first_col in (0..n).step_by(col_block) {
        let width = col_block.min(n - first_col);
        let panels = width.div_ceil(PANEL);
        packed.clear();
        packed.resize(panels * k * PANEL, 0.0);
        pack(&mut packed, first_col..first_col + width);
        for first_row in (0..m).step_by(row_block) {
            let rows = row_block.min(m - first_row);
            for p in 0..panels {
                let col = first_col + p * PANEL;
                let cols = PANEL.min(n - col);
                let panel = packed[p * k * PANEL..][..k * PANEL].as_ptr();
                let mut i = first_row;
                while i < first_row + rows {
                    let tile = TILE_ROWS.min(first_row + rows - i);
                    let job = Tile {
                        k,
                        a: a.data[i * a.row_stride..].as_ptr(),
                        a_row: a.row_stride,
                        a_col: a.col_stride,
                        panel,
                        // SAFETY: row `i < m` and column `col < n` lie inside `out`.
                        out: unsafe { out.as_mut_ptr().add(i * n + col) },
                        out_row: n,
                        cols,
                        scale,
                        accumulate,
                    };
                    // SAFETY: `a`'s rows `i..i + tile` and every column are in bounds, the panel
                    // holds `k * 8` values, and `out`'s `tile` rows have `cols` columns from
                    // `col`.
                    unsafe {
                        match tile {
                            4 => job.run::<4>(),
                            3 => job.run::<3>(),
                            2 => job.run::<2>(),
                            _ => job.run::<1>(),
                        }
                    }
                    i += tile;
                }
            }
        }
    }
}

/// One tile's product: up to 4 rows of `a` against one panel, into `out`.
struct Tile {
    k: usize,
    a: *const f32,
    a_row: usize,
    a_col: usize,
    panel: *const f32,
    out: *mut f32,
    out_row: usize,
    cols: usize,
    scale: f32,
    accumulate: bool,
}

impl Tile {
    /// # Safety
    /// `a` must reach `ROWS` rows of `k` values (strides `a_row`, `a_col`), `panel` `k * 8`
    /// values, and `out` `ROWS` rows (`out_row` apart) of `cols` values.
    #[inline(never)]
    unsafe fn run<const ROWS: usize>(&self) {
        let mut acc = [[F4::splat(0.0); 2]; ROWS];
        for kk in 0..self.k {
            // SAFETY: `kk < k`, within the panel and `a` as the caller promised.
            unsafe {
                let row = self.panel.add(kk * PANEL);
                let (b0, b1) = (F4::load(row), F4::load(row.add(4)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = F4::splat(*self.a.add(r * self.a_row + kk * self.a_col));
                    acc[0] = acc[0].mul_add(x, b0);
                    acc[1] = acc[1].mul_add(x, b1);
                }
            }
        }
        let scale = F4::splat(self.scale);
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: row `r < ROWS` of `out`, `cols` values, as the caller promised.
            unsafe {
                let out = self.out.add(r * self.out_row);
                if self.cols == PANEL {
                    for (v, acc) in acc.iter().enumerate() {
                        let mut y = acc.mul(scale);
                        if self.accumulate {
                            y = y.add(F4::load(out.add(4 * v)));
                        }
                        y.store(out.add(4 * v));
                    }
                } else {
                    let (low, high) = (acc[0].to_array(), acc[1].to_array());
                    for (j, value) in low.iter().chain(&high).take(self.cols).enumerate() {
                        let y = value * self.scale;
                        *out.add(j) = if self.accumulate { *out.add(j) + y } else { y };
                    }
                }
            }
        }
    }
}
