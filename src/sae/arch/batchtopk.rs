//! BatchTopK SAE (Bussmann et al. 2024): training keeps the `k x batch` largest ReLU'd
//! pre-activations across the whole batch, so tokens may use more or fewer than k latents. For
//! inference a single threshold replaces the batch: `f = ReLU(pre) * (pre > threshold)`, the
//! threshold being a running average of the smallest activation kept in training. It is stored
//! per latent (all equal), which is how SAELens saves BatchTopK for inference (as JumpReLU).

use burn::tensor::Tensor;

use super::{
    Activity, Params, TrainingContext, TrainingForward, decode, mse_with_auxk, pre_activation,
    select,
};
use crate::error::Result;
use crate::sae::select::Scope;

pub fn encode(params: &Params, x: Tensor<2>) -> Tensor<2> {
    super::jumprelu::encode(params, x)
}

pub async fn training_forward(
    params: &Params,
    x: Tensor<2>,
    k: usize,
    context: &TrainingContext,
) -> Result<TrainingForward> {
    let pre = pre_activation(params, x.clone());
    let relu = pre.clone().clamp_min(0.0);
    let mask = select(relu.clone(), k, Scope::WholeBatch, context.selection).await?;
    let feature_acts = relu * mask.clone();
    let x_hat = decode(params, feature_acts.clone());
    // Smallest positive kept activation: unkept or zero entries are lifted out of the way.
    let kept = feature_acts.clone().detach();
    let unkept = kept.clone().lower_equal_elem(0.0).float();
    let smallest_kept = (kept + unkept * 1e30).min().reshape([1]);
    let (loss, terms) = mse_with_auxk(params, &pre, &x, &x_hat, context).await?;
    Ok(TrainingForward {
        activity: Activity::Dense(Box::new(feature_acts)),
        x_hat,
        loss,
        terms,
        smallest_kept: Some(smallest_kept),
    })
}
