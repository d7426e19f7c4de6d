//! The burn forwards' shared steps: causal attention (grouped-query included), the product with
//! a matrix stored by rows, and what freezing a model for attribution cuts from the gradient.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::cache::TensorKv;
use super::output::LogitsFor;
use crate::backend::float_tensor;

/// Additive mask for future positions; exp() of it is exactly 0 in f32.
const MASKED: f32 = -1.0e9;

/// `x` cut from the gradient when the model is frozen for attribution (circuit-tracer's frozen
/// replacement model: attention patterns and normalisation scales); its values are unchanged.
pub(crate) fn frozen_if<const D: usize>(x: Tensor<D>, frozen: bool) -> Tensor<D> {
    if frozen { x.detach() } else { x }
}

/// `x` as a constant on the autodiff twin of its device (no gradient is kept for it): a
/// weight of a model frozen for attribution.
pub(crate) fn constant_on_autodiff<const D: usize>(x: &Tensor<D>) -> Tensor<D> {
    Tensor::from_inner(x.clone())
}

/// `[b, t, heads * dh]` split into heads, `[b, heads, t, dh]`.
pub(crate) fn split_heads(x: Tensor<3>, heads: usize, dh: usize) -> Tensor<4> {
    let [b, t, _] = x.dims();
    x.reshape([b, t, heads, dh]).swap_dims(1, 2)
}

/// Causal attention of queries `q` `[b, heads, t, dh]` over the cached keys and values and the
/// new ones (`[b, kv_heads, t, dh]`; grouped-query when there are fewer key/value heads), scores
/// scaled by `scale`: `z` `[b, t, heads * dh]`, and the keys and values of every position so far.
pub(crate) fn causal_attention(
    q: Tensor<4>,
    (k_new, v_new): (Tensor<4>, Tensor<4>),
    past: TensorKv,
    scale: f64,
    frozen: bool,
) -> (Tensor<3>, Tensor<4>, Tensor<4>) {
    let [b, heads, t, dh] = q.dims();
    let (keys, values) = match past {
        Some((k, v)) => (
            Tensor::cat(vec![k, k_new], 2),
            Tensor::cat(vec![v, v_new], 2),
        ),
        None => (k_new, v_new),
    };
    let [_, kv_heads, total, _] = keys.dims();
    let group = heads / kv_heads;
    let k_all = repeat_kv(keys.clone(), group);
    let v_all = repeat_kv(values.clone(), group);
    let mut scores = q.matmul(k_all.swap_dims(2, 3)) * scale; // [b, head, t, total]
    if let Some(mask) = causal_mask(t, total, &keys.device()) {
        scores = scores + mask;
    }
    let pattern = frozen_if(softmax(scores, 3), frozen);
    let z = pattern
        .matmul(v_all) // [b, head, t, dh]
        .swap_dims(1, 2)
        .reshape([b, t, heads * dh]);
    (z, keys, values)
}

/// The positions of `resid` `[b, t, d]` whose logits are asked for.
pub(crate) fn logit_positions(resid: Tensor<3>, logits_for: LogitsFor) -> Tensor<3> {
    let [b, t, d] = resid.dims();
    match logits_for {
        LogitsFor::AllPositions => resid,
        LogitsFor::LastPosition => resid.slice([0..b, t - 1..t, 0..d]),
    }
}

/// Repeat each key/value head for the query heads that share it: `[b, kv, t, dh]` to
/// `[b, kv * group, t, dh]` (head h reads kv head h / group, as transformers' `repeat_kv`).
fn repeat_kv(x: Tensor<4>, group: usize) -> Tensor<4> {
    if group == 1 {
        return x;
    }
    let [b, kv, t, dh] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, group, t, dh])
        .reshape([b, kv * group, t, dh])
}

/// The causal mask `[1, 1, new, total]` for `new` positions after `total - new` cached ones, or
/// `None` when one new position may see everything.
fn causal_mask(new: usize, total: usize, device: &Device) -> Option<Tensor<4>> {
    if new <= 1 {
        return None;
    }
    let offset = total - new;
    let mask: Vec<f32> = (0..new)
        .flat_map(|i| (0..total).map(move |j| if j > offset + i { MASKED } else { 0.0 }))
        .collect();
    Some(float_tensor(mask, [1, 1, new, total], device))
}

/// `x @ rows^T` for `x` `[n, k]` and `rows` `[m, k]`, computed as `(rows @ x^T)^T` so the large
/// `rows` is read in its stored layout: burn's CPU backends first copy a transposed operand into
/// standard layout, which for an unembedding would be 113-154 MB per forward. The transposed
/// operand and result here are `n` rows.
pub(crate) fn times_transposed(x: Tensor<2>, rows: &Tensor<2>) -> Tensor<2> {
    rows.clone().matmul(x.transpose()).transpose()
}
