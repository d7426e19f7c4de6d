//! The six SAE architectures over one shared base, one small file each (as in SAELens).
//!
//! Shapes: `x` `[batch, d_in]`; `W_enc` `[d_in, d_sae]`; `W_dec` `[d_sae, d_in]`; vectors are
//! kept on the device as `[1, n]` rows so that they broadcast over the batch. Parameter names are
//! SAELens's, so files map one to one.
//!
//! Each architecture has a synchronous `encode` (inference; safe inside a hook function and on
//! WebGPU: no read-back) and an async `training_forward` that returns the loss and its terms.

pub mod batchtopk;
pub mod gated;
pub mod jumprelu;
pub mod matryoshka;
pub mod standard;
pub mod topk;

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::select::{Scope, Selection, topk_mask_by_bisection, topk_mask_on_host};
use crate::error::Result;

pub const W_ENC: &str = "W_enc";
pub const B_ENC: &str = "b_enc";
pub const W_DEC: &str = "W_dec";
pub const B_DEC: &str = "b_dec";
pub const THRESHOLD: &str = "threshold";
pub const B_GATE: &str = "b_gate";
pub const R_MAG: &str = "r_mag";
pub const B_MAG: &str = "b_mag";

/// Parameters by SAELens name; vectors are `[1, n]`.
pub type Params = BTreeMap<&'static str, Tensor<2>>;

/// A parameter that validation guarantees is present.
pub(crate) fn param(params: &Params, name: &'static str) -> Tensor<2> {
    params
        .get(name)
        .unwrap_or_else(|| panic!("SAE parameter `{name}` is validated on load"))
        .clone()
}

/// `(x - b_dec) @ W_enc + b_enc`: the pre-activation of every architecture but Gated.
pub fn pre_activation(params: &Params, x: Tensor<2>) -> Tensor<2> {
    (x - param(params, B_DEC)).matmul(param(params, W_ENC)) + param(params, B_ENC)
}

/// `f @ W_dec + b_dec`.
pub fn decode(params: &Params, feature_acts: Tensor<2>) -> Tensor<2> {
    feature_acts.matmul(param(params, W_DEC)) + param(params, B_DEC)
}

/// `||W_dec[i]||` as a `[1, d_sae]` row.
pub fn decoder_norms(params: &Params) -> Tensor<2> {
    let w_dec = param(params, W_DEC);
    let d_sae = w_dec.dims()[0];
    w_dec.powi_scalar(2).sum_dim(1).sqrt().reshape([1, d_sae])
}

/// `sum_j (a - b)^2` per row, averaged over rows: SAELens's MSE loss.
pub fn squared_error(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    (a - b).powi_scalar(2).sum_dim(1).mean()
}

/// What a training step needs to know beyond the batch.
#[derive(Debug, Clone)]
pub struct TrainingContext {
    pub selection: Selection,
    /// The sparsity penalty's coefficient at this step (after its warm-up): L1 for Standard and
    /// Gated, L0 for JumpReLU.
    pub sparsity_coefficient: f64,
    /// AuxK's coefficient (TopK, BatchTopK).
    pub aux_coefficient: f64,
    /// Dead latents as a `[1, d_sae]` 0/1 row, and how many there are (for AuxK).
    pub dead: Option<(Tensor<2>, usize)>,
    /// JumpReLU's straight-through bandwidth.
    pub bandwidth: f64,
}

/// Which latents were active in a training batch.
pub enum Activity {
    /// The feature activations `[batch, d_sae]` on the device.
    Dense(Box<Tensor<2>>),
    /// Already known on the host (sparse TopK): the sum of active counts over rows, and how
    /// many rows each latent was active in.
    Host { l0_sum: f32, fired: Vec<f32> },
}

/// One training forward: the activations, reconstruction, total loss and its named terms.
pub struct TrainingForward {
    pub activity: Activity,
    pub x_hat: Tensor<2>,
    pub loss: Tensor<1>,
    pub terms: Vec<(&'static str, Tensor<1>)>,
    /// BatchTopK: the smallest activation kept in this batch (for its inference threshold).
    pub smallest_kept: Option<Tensor<1>>,
}

/// A top-k mask of `values` (detached), by the context's selection.
pub(crate) async fn select(
    values: Tensor<2>,
    k: usize,
    scope: Scope,
    selection: Selection,
) -> Result<Tensor<2>> {
    let values = values.detach();
    match selection {
        Selection::Host => topk_mask_on_host(values, k, scope).await,
        Selection::Bisection => Ok(topk_mask_by_bisection(values, k, scope)),
    }
}

/// The top-k architectures' loss: MSE plus, when latents are dead, AuxK; with named terms.
pub(crate) async fn mse_with_auxk(
    params: &Params,
    pre: &Tensor<2>,
    x: &Tensor<2>,
    x_hat: &Tensor<2>,
    context: &TrainingContext,
) -> Result<(Tensor<1>, Vec<(&'static str, Tensor<1>)>)> {
    let mse = squared_error(x_hat.clone(), x.clone());
    let mut loss = mse.clone();
    let mut terms = vec![("mse_loss", mse)];
    if let Some(aux) = auxk_loss(params, pre, x, x_hat, context).await? {
        loss = loss + aux.clone() * context.aux_coefficient;
        terms.push(("auxk_loss", aux));
    }
    Ok((loss, terms))
}

/// AuxK (Gao et al. 2024, as in SAELens): the dead latents' top `d_in / 2` activations must
/// reconstruct the detached residual `x - x_hat`; scaled down while few latents are dead.
pub(crate) async fn auxk_loss(
    params: &Params,
    pre: &Tensor<2>,
    x: &Tensor<2>,
    x_hat: &Tensor<2>,
    context: &TrainingContext,
) -> Result<Option<Tensor<1>>> {
    let Some((dead, dead_count)) = &context.dead else {
        return Ok(None);
    };
    if *dead_count == 0 {
        return Ok(None);
    }
    let d_in = x.dims()[1];
    let k_aux_full = (d_in / 2).max(1);
    let k_aux = k_aux_full.min(*dead_count);
    let scale = (*dead_count as f64 / k_aux_full as f64).min(1.0);
    let residual = (x.clone() - x_hat.clone()).detach();
    // Live latents are pushed just below the row's smallest value before selecting (not to
    // -inf: bisection needs a finite, natural range to resolve the dead latents' values).
    let [rows, d_sae] = pre.dims();
    let values = pre.clone().detach();
    let floor = (values.clone().min_dim(1) - 1.0).expand([rows, d_sae]);
    let live = dead.clone().lower_elem(0.5).expand([rows, d_sae]);
    let candidates = values.mask_where(live, floor);
    let mask = select(candidates, k_aux, Scope::PerRow, context.selection).await? * dead.clone();
    let aux_acts = pre.clone().clamp_min(0.0) * mask;
    let recons = aux_acts.matmul(param(params, W_DEC));
    Ok(Some(squared_error(recons, residual) * scale))
}
