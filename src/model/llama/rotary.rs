//! Rotary positions: the angles of a run of positions (computed once per forward call, in f64 as
//! transformers computes them), and the rotation of a head, on host buffers and on tensors.

use burn::tensor::{Device, Tensor};

use crate::backend::float_tensor;

/// `cos` and `sin` of the rotary angles for positions `offset..offset + t`, `[t, d_head / 2]`:
/// one per frequency of `inv_freq`.
pub(super) fn angles(inv_freq: &[f64], offset: usize, t: usize) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(t * inv_freq.len());
    let mut sin = Vec::with_capacity(t * inv_freq.len());
    for pos in offset..offset + t {
        for &f in inv_freq {
            let angle = pos as f64 * f;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// [`angles`] as tensors `[1, 1, t, d_head]`, each frequency twice (`cat(freqs, freqs)`,
/// transformers' layout).
pub(super) fn angle_tensors(
    inv_freq: &[f64],
    offset: usize,
    t: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let half = inv_freq.len();
    let (cos, sin) = angles(inv_freq, offset, t);
    let twice = |values: Vec<f32>| -> Vec<f32> {
        values
            .chunks_exact(half.max(1))
            .flat_map(|row| row.iter().chain(row))
            .copied()
            .collect()
    };
    (
        float_tensor(twice(cos), [1, 1, t, 2 * half], device),
        float_tensor(twice(sin), [1, 1, t, 2 * half], device),
    )
}

/// One head rotated in place: `x * cos + rotate_half(x) * sin` with `rotate_half(x) =
/// cat(-x2, x1)` and each frequency used for both halves (transformers' layout).
pub(super) fn rotate_head(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let (x1, x2) = head.split_at_mut(cos.len());
    for (((a, b), c), s) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
        let (u, v) = (*a, *b);
        *a = u * c - v * s;
        *b = v * c + u * s;
    }
}

/// [`rotate_head`] on tensors: `x` `[b, heads, t, d_head]` with [`angle_tensors`].
pub(super) fn rotate_heads(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, t, dh] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..dh / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..t, dh / 2..dh]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}
