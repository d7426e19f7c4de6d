//! Top-k selection masks for TopK and BatchTopK SAEs.
//!
//! burn's sorting top-k reads back synchronously and panics on WebGPU in wasm (burn issue 5110),
//! so two selections are offered, both giving a 0/1 float mask of the pre-activation's shape:
//!
//! - [`topk_mask_by_bisection`]: pure tensor ops, no read-back, safe everywhere (WebGPU, inside a
//!   hook function, in wasm). It finds each row's k-th largest value by bisecting on a threshold:
//!   30 halvings of the row's range. Exactly k entries are kept unless values tie to within
//!   2^-30 of the row's range, in which case all the tied values are kept.
//! - [`topk_mask_on_host`]: reads the values back and selects with `select_nth_unstable` (exact,
//!   ties broken by the lower index); much faster on the CPU backends, where a read costs a copy.

use burn::tensor::{Device, Tensor};

use crate::backend::{float_tensor, read_f32};
use crate::error::Result;

/// Halvings of the search interval in [`topk_mask_by_bisection`].
const BISECTION_STEPS: usize = 30;

/// How a trainer picks top-k masks on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Read back and select on the host (CPU backends).
    Host,
    /// Bisection in tensor ops (GPU backends).
    Bisection,
}

impl Selection {
    /// Host selection on the CPU backends, bisection elsewhere.
    pub fn for_device(device: &Device) -> Self {
        if crate::backend::is_host_device(device) {
            Selection::Host
        } else {
            Selection::Bisection
        }
    }
}

/// Whether selection runs per row (TopK) or over the whole batch (BatchTopK, k x rows in all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    PerRow,
    WholeBatch,
}

/// 0/1 mask of the `k` largest entries of each row of `values` `[rows, n]` (or of the `k * rows`
/// largest of the whole tensor for [`Scope::WholeBatch`]), by bisection. No read-back.
pub fn topk_mask_by_bisection(values: Tensor<2>, k: usize, scope: Scope) -> Tensor<2> {
    let [rows, n] = values.dims();
    if k >= n {
        return values.ones_like();
    }
    if k == 0 {
        return values.zeros_like();
    }
    // Work on a [groups, m] view: one group per row, or one group for the whole batch.
    let (grouped, target) = match scope {
        Scope::PerRow => (values.clone(), k as f32),
        Scope::WholeBatch => (values.clone().reshape([1, rows * n]), (k * rows) as f32),
    };
    // Invariant: count(x >= lo) >= target and count(x >= hi) < target.
    let mut lo = grouped.clone().min_dim(1);
    let max = grouped.clone().max_dim(1);
    let span = (max.clone() - lo.clone()).clamp_min(f32::MIN_POSITIVE);
    let mut hi = max + span * 1e-6 + 1e-30;
    for _ in 0..BISECTION_STEPS {
        let mid = (lo.clone() + hi.clone()) * 0.5;
        let count = grouped
            .clone()
            .greater_equal(mid.clone())
            .float()
            .sum_dim(1);
        let enough = count.greater_equal_elem(target);
        lo = lo.mask_where(enough.clone(), mid.clone());
        hi = mid.mask_where(enough, hi);
    }
    let mask = grouped.greater_equal(lo).float();
    mask.reshape([rows, n])
}

/// 0/1 mask of the `k` largest entries per row (or `k * rows` in the whole batch), selected on
/// the host. Exact; ties go to the lower index.
pub async fn topk_mask_on_host(values: Tensor<2>, k: usize, scope: Scope) -> Result<Tensor<2>> {
    let [rows, n] = values.dims();
    let device = values.device();
    let host = read_f32(values).await?;
    Ok(float_tensor(
        host_topk_mask(&host, rows, n, k, scope),
        [rows, n],
        &device,
    ))
}

/// The host selection itself on a row-major `[rows, n]` slice.
pub fn host_topk_mask(values: &[f32], rows: usize, n: usize, k: usize, scope: Scope) -> Vec<f32> {
    let mut mask = vec![0.0f32; rows * n];
    let (groups, width, keep) = match scope {
        Scope::PerRow => (rows, n, k.min(n)),
        Scope::WholeBatch => (1, rows * n, (k * rows).min(rows * n)),
    };
    if keep == 0 {
        return mask;
    }
    let mut order: Vec<u32> = Vec::with_capacity(width);
    for g in 0..groups {
        let group = &values[g * width..(g + 1) * width];
        let out = &mut mask[g * width..(g + 1) * width];
        if keep == width {
            out.fill(1.0);
            continue;
        }
        order.clear();
        order.extend(0..width as u32);
        // Larger first; NaN counts as smallest; ties by lower index.
        let rank = |a: &u32, b: &u32| {
            let (va, vb) = (group[*a as usize], group[*b as usize]);
            let va = if va.is_nan() { f32::NEG_INFINITY } else { va };
            let vb = if vb.is_nan() { f32::NEG_INFINITY } else { vb };
            vb.total_cmp(&va).then(a.cmp(b))
        };
        order.select_nth_unstable_by(keep - 1, rank);
        for &i in &order[..keep] {
            out[i as usize] = 1.0;
        }
    }
    mask
}

/// The `k` largest entries of each row of a row-major `[rows, n]` slice, as column indices
/// (`[rows, k]` row-major, best first; ties to the lower index). With `allowed`,
/// only columns with `allowed[i] > 0` compete, and `k` is capped at their number.
pub fn host_topk_indices(
    values: &[f32],
    rows: usize,
    n: usize,
    k: usize,
    allowed: Option<&[f32]>,
) -> Vec<u32> {
    host_topk(values, rows, n, k, allowed).0
}

/// [`host_topk_indices`], with the chosen values beside them (NaN read as -inf).
pub fn host_topk(
    values: &[f32],
    rows: usize,
    n: usize,
    k: usize,
    allowed: Option<&[f32]>,
) -> (Vec<u32>, Vec<f32>) {
    let candidates: Option<Vec<u32>> =
        allowed.map(|mask| (0..n as u32).filter(|&i| mask[i as usize] > 0.0).collect());
    let k = k.min(candidates.as_ref().map_or(n, Vec::len));
    let mut out = vec![0u32; rows * k];
    let mut out_values = vec![0.0f32; rows * k];
    if k == 0 {
        return (out, out_values);
    }
    // Per row, a bar from a sample of it (every 8th entry's `3k / 8`-th best: about the row's
    // `3k`-th best); the entries at or above it are found with vector comparisons, and if there
    // are k or more, the row's k best are among them. Otherwise (rarely), and with `allowed`,
    // one pass with the best so far in a min-heap of keys.
    let select_rows = |first_row: usize, out: &mut [u32], out_values: &mut [f32]| {
        let mut keys: Vec<u64> = Vec::with_capacity(4 * k);
        let rows_out = out.chunks_exact_mut(k).zip(out_values.chunks_exact_mut(k));
        for (r, (chosen, chosen_values)) in rows_out.enumerate() {
            let row = &values[(first_row + r) * n..(first_row + r + 1) * n];
            keys.clear();
            if candidates.is_none() {
                at_or_above(row, sampled_bar(row, k), &mut keys);
            }
            if keys.len() >= k {
                let descending = |a: &u64, b: &u64| b.cmp(a);
                if keys.len() > k {
                    keys.select_nth_unstable_by(k - 1, descending);
                }
                keys[..k].sort_unstable_by(descending);
            } else {
                keys.clear();
                heap_select(row, candidates.as_deref(), k, &mut keys);
            }
            for ((c, v), &key) in chosen.iter_mut().zip(chosen_values.iter_mut()).zip(&keys) {
                (*c, *v) = from_rank_key(key);
            }
        }
    };
    // Natively, rows are split across the cores (on rayon's pool, which the products around it
    // use: separate threads would compete with its spinning workers); the page has one thread.
    #[cfg(not(target_arch = "wasm32"))]
    if rows * n >= 1 << 18 {
        use rayon::prelude::*;
        const ROWS_PER_TASK: usize = 32;
        out.par_chunks_mut(ROWS_PER_TASK * k)
            .zip(out_values.par_chunks_mut(ROWS_PER_TASK * k))
            .enumerate()
            .for_each(|(t, (part, part_values))| select_rows(t * ROWS_PER_TASK, part, part_values));
        return (out, out_values);
    }
    select_rows(0, &mut out, &mut out_values);
    (out, out_values)
}

/// Every how many entries [`sampled_bar`] samples.
const SAMPLE_STRIDE: usize = 8;

/// The deepest rank [`sampled_bar`] keeps (k up to 170: BatchTopK's offers of 4k included).
const MAX_SAMPLE_RANK: usize = 64;

/// A bar about as high as the `3k`-th best of `row`: the `3k / 8`-th best of every 8th entry
/// (NaN where the row is too short for that to mean much, or the sample is NaN).
fn sampled_bar(row: &[f32], k: usize) -> f32 {
    let rank = (3 * k).div_ceil(SAMPLE_STRIDE);
    if 3 * k > row.len() / 2 || rank > MAX_SAMPLE_RANK {
        return f32::NAN;
    }
    // The best `rank` samples, best first.
    let mut best = [f32::NEG_INFINITY; MAX_SAMPLE_RANK];
    let best = &mut best[..rank];
    for &v in row.iter().step_by(SAMPLE_STRIDE) {
        if v > best[rank - 1] {
            let at = best.iter().position(|&b| v > b).expect("v beats the last");
            best.copy_within(at..rank - 1, at + 1);
            best[at] = v;
        }
    }
    let bar = best[rank - 1];
    if bar == f32::NEG_INFINITY {
        f32::NAN
    } else {
        bar
    }
}

/// Entries [`at_or_above`] compares with its bar at once.
const SCAN_CHUNK: usize = 4;

/// The keys of `row`'s entries at or above `bar` (none where `bar` is NaN; NaN entries never),
/// a chunk at a time without a branch per entry, so the compiler makes them vector comparisons.
fn at_or_above(row: &[f32], bar: f32, keys: &mut Vec<u64>) {
    if bar.is_nan() {
        return;
    }
    let chunks = row.chunks_exact(SCAN_CHUNK);
    let start = row.len() - chunks.remainder().len();
    for (c, chunk) in chunks.enumerate() {
        if chunk.iter().fold(false, |any, &v| any | (v >= bar)) {
            for (j, &v) in chunk.iter().enumerate() {
                if v >= bar {
                    keys.push(rank_key(v, (c * SCAN_CHUNK + j) as u32));
                }
            }
        }
    }
    for (j, &v) in row[start..].iter().enumerate() {
        if v >= bar {
            keys.push(rank_key(v, (start + j) as u32));
        }
    }
}

/// The keys of `row`'s `keep` best entries (among `allowed` columns where given), best first:
/// one pass with the best so far in a min-heap, whose worst (`bar`) most entries lose to with
/// one float comparison (an equal value loses the tie: it comes later; NaN loses too).
fn heap_select(row: &[f32], allowed: Option<&[u32]>, keep: usize, heap: &mut Vec<u64>) {
    let mut bar = f32::NAN;
    let mut offer = |i: u32, value: f32| {
        if heap.len() == keep {
            if value.partial_cmp(&bar) != Some(std::cmp::Ordering::Greater) {
                return;
            }
            heap[0] = rank_key(value, i);
            sift_down(heap);
        } else {
            heap.push(rank_key(value, i));
            if heap.len() < keep {
                return;
            }
            heap.sort_unstable();
        }
        bar = from_rank_key(heap[0]).1;
    };
    match allowed {
        Some(columns) => columns.iter().for_each(|&i| offer(i, row[i as usize])),
        None => row
            .iter()
            .enumerate()
            .for_each(|(i, &v)| offer(i as u32, v)),
    }
    heap.sort_unstable_by(|a, b| b.cmp(a));
}

/// A key whose order is the selection's: larger values first (NaN as -inf), then lower indices.
fn rank_key(value: f32, index: u32) -> u64 {
    let value = if value.is_nan() {
        f32::NEG_INFINITY
    } else {
        value
    };
    let bits = value.to_bits();
    // IEEE order as unsigned order: flip the sign bit of positives, every bit of negatives.
    let ordered = if bits >> 31 == 0 {
        bits | 1 << 31
    } else {
        !bits
    };
    (u64::from(ordered) << 32) | u64::from(!index)
}

/// The index and value a [`rank_key`] was made from.
fn from_rank_key(key: u64) -> (u32, f32) {
    let ordered = (key >> 32) as u32;
    let bits = if ordered >> 31 == 1 {
        ordered & !(1 << 31)
    } else {
        !ordered
    };
    (!(key as u32), f32::from_bits(bits))
}

/// Restore a min-heap whose root alone may be out of place.
fn sift_down(heap: &mut [u64]) {
    let mut at = 0;
    loop {
        let left = 2 * at + 1;
        if left >= heap.len() {
            return;
        }
        let right = left + 1;
        let child = if right < heap.len() && heap[right] < heap[left] {
            right
        } else {
            left
        };
        if heap[child] >= heap[at] {
            return;
        }
        heap.swap(at, child);
        at = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{block_on, cpu_device};
    use crate::rng::SplitMix64;

    fn random(rows: usize, n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..rows * n)
            .map(|_| rng.uniform() as f32 * 4.0 - 2.0)
            .collect()
    }

    /// Reference: sort each row.
    fn sorted_mask(values: &[f32], rows: usize, n: usize, k: usize) -> Vec<f32> {
        let mut mask = vec![0.0; rows * n];
        for r in 0..rows {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by(|&a, &b| values[r * n + b].total_cmp(&values[r * n + a]));
            for &i in &idx[..k] {
                mask[r * n + i] = 1.0;
            }
        }
        mask
    }

    #[test]
    fn host_selection_equals_sorting() {
        let (rows, n) = (7, 50);
        let values = random(rows, n, 3);
        for k in [1, 5, 49] {
            assert_eq!(
                host_topk_mask(&values, rows, n, k, Scope::PerRow),
                sorted_mask(&values, rows, n, k)
            );
        }
        let whole = host_topk_mask(&values, rows, n, 4, Scope::WholeBatch);
        assert_eq!(whole, sorted_mask(&values, 1, rows * n, 4 * rows));
    }

    #[test]
    fn host_indices_equal_the_mask_including_the_threaded_path() {
        // 300 x 4096 is above the size at which rows are split across threads.
        for (rows, n, k) in [(5, 40, 3), (300, 4096, 16), (40, 1024, 64)] {
            let values = random(rows, n, 17);
            let indices = host_topk_indices(&values, rows, n, k, None);
            let mut mask = vec![0.0f32; rows * n];
            for (r, chosen) in indices.chunks(k).enumerate() {
                for &i in chosen {
                    mask[r * n + i as usize] = 1.0;
                }
            }
            assert_eq!(mask, host_topk_mask(&values, rows, n, k, Scope::PerRow));
        }
        // Ties go to the lower index and NaN ranks as -inf, as in the mask.
        let values = [1.0, 3.0, 3.0, f32::NAN, 3.0, f32::NEG_INFINITY, 0.0, 3.0];
        for k in [1, 2, 4, 6, 7, 8] {
            let mut picked = host_topk_indices(&values, 1, 8, k, None);
            picked.sort_unstable();
            let mask = host_topk_mask(&values, 1, 8, k, Scope::PerRow);
            let from_mask: Vec<u32> = (0..8).filter(|&i| mask[i as usize] > 0.0).collect();
            assert_eq!(picked, from_mask, "k {k}");
        }
        assert_eq!(host_topk_indices(&values, 1, 8, 2, None), vec![1, 2]);
        // The same over whole chunks of the scan: many ties (equal to the bar), NaN, -inf.
        let n = 70;
        let values: Vec<f32> = (0..2 * n)
            .map(|i| match i % 11 {
                3 => f32::NAN,
                7 => f32::NEG_INFINITY,
                _ => ((i * 7) % 5) as f32,
            })
            .collect();
        for k in [1, 3, 16, 17, 40, 69, 70] {
            let picked = host_topk_indices(&values, 2, n, k, None);
            let mask = host_topk_mask(&values, 2, n, k, Scope::PerRow);
            for r in 0..2 {
                let mut row: Vec<u32> = picked[r * k..(r + 1) * k].to_vec();
                row.sort_unstable();
                let from_mask: Vec<u32> = (0..n as u32)
                    .filter(|&i| mask[r * n + i as usize] > 0.0)
                    .collect();
                assert_eq!(row, from_mask, "k {k}, row {r}");
            }
        }
        // Rows of different scales, a row of NaN and -inf, and one whose sampled entries (every
        // 8th) are its largest, so that fewer than k reach the sample's bar.
        let (rows, n) = (7, 300);
        let mut values = random(rows, n, 23);
        let scales = [100.0, 0.01, 100.0, 1.0, 0.0, 1.0, 1.0];
        for (r, scale) in scales.iter().enumerate() {
            values[r * n..(r + 1) * n]
                .iter_mut()
                .for_each(|v| *v *= scale);
        }
        values[4 * n..5 * n]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| {
                *v = if i % 3 == 0 {
                    f32::NAN
                } else {
                    f32::NEG_INFINITY
                }
            });
        values[6 * n..]
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % 8 == 0)
            .for_each(|(i, v)| *v = 10.0 + i as f32);
        for k in [1, 7, 16, 150] {
            let picked = host_topk_indices(&values, rows, n, k, None);
            let mut mask = vec![0.0f32; rows * n];
            for (r, chosen) in picked.chunks(k).enumerate() {
                chosen.iter().for_each(|&i| mask[r * n + i as usize] = 1.0);
            }
            assert_eq!(
                mask,
                host_topk_mask(&values, rows, n, k, Scope::PerRow),
                "k {k}"
            );
        }
        // Only allowed columns compete, and k is capped at their number.
        let values = random(2, 10, 4);
        let allowed: Vec<f32> = (0..10)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let picked = host_topk_indices(&values, 2, 10, 5, Some(&allowed));
        assert_eq!(picked.len(), 2 * 3);
        assert!(picked.iter().all(|&i| i % 4 == 0));
    }

    #[test]
    fn bisection_equals_host_selection() {
        let device = cpu_device();
        let (rows, n) = (9, 64);
        let values = random(rows, n, 11);
        for (k, scope) in [
            (1, Scope::PerRow),
            (8, Scope::PerRow),
            (63, Scope::PerRow),
            (3, Scope::WholeBatch),
        ] {
            let tensor = float_tensor(values.clone(), [rows, n], &device);
            let got = block_on(read_f32(topk_mask_by_bisection(tensor, k, scope))).unwrap();
            assert_eq!(got, host_topk_mask(&values, rows, n, k, scope), "k {k}");
        }
    }

    #[test]
    fn bisection_handles_constant_rows_and_extremes() {
        let device = cpu_device();
        let tensor = float_tensor(vec![1.0; 8], [2, 4], &device);
        // All tied: every tied value is kept (documented).
        let got = block_on(read_f32(topk_mask_by_bisection(
            tensor.clone(),
            2,
            Scope::PerRow,
        )));
        assert_eq!(got.unwrap(), vec![1.0; 8]);
        let all = block_on(read_f32(topk_mask_by_bisection(
            tensor.clone(),
            4,
            Scope::PerRow,
        )));
        assert_eq!(all.unwrap(), vec![1.0; 8]);
        let none = block_on(read_f32(topk_mask_by_bisection(tensor, 0, Scope::PerRow)));
        assert_eq!(none.unwrap(), vec![0.0; 8]);
    }
}
