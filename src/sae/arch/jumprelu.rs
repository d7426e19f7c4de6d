//! JumpReLU SAE (Rajamanoharan et al. 2024b): `f = ReLU(pre) * 1[pre > threshold]` with a
//! learned threshold per latent and an L0 penalty. The step function has no useful gradient, so
//! the threshold learns through straight-through pseudo-derivatives with a rectangle kernel of
//! width `bandwidth`: d f/d theta = -(theta/eps) K((pre - theta)/eps), d L0/d theta =
//! -(1/eps) K(...). They are injected as `(theta - sg(theta)) * sg(g)`: zero in value, `g` in
//! gradient.
//!
//! The threshold is trained directly rather than as its log (SAELens's choice): with Adam, a log
//! threshold moves by a factor of at most `e^lr` per step, far too slowly for the few hundred
//! steps a playground trains for. The trainer keeps it non-negative.

use burn::tensor::Tensor;

use super::{
    Activity, Params, THRESHOLD, TrainingContext, TrainingForward, decode, param, pre_activation,
    squared_error,
};
use crate::error::Result;

/// Inference with the stored `threshold` (also BatchTopK's inference form).
pub fn encode(params: &Params, x: Tensor<2>) -> Tensor<2> {
    let pre = pre_activation(params, x);
    let above = pre.clone().greater(param(params, THRESHOLD)).float();
    pre.clamp_min(0.0) * above
}

pub async fn training_forward(
    params: &Params,
    x: Tensor<2>,
    context: &TrainingContext,
) -> Result<TrainingForward> {
    let pre = pre_activation(params, x.clone());
    let theta = param(params, THRESHOLD); // [1, d_sae]
    let theta_stopped = theta.clone().detach();
    let eps = context.bandwidth;
    let pre_stopped = pre.clone().detach();
    let above = pre_stopped.clone().greater(theta_stopped.clone()).float();
    let kernel = ((pre_stopped - theta_stopped.clone()) / eps)
        .abs()
        .lower_elem(0.5)
        .float();
    let zero_with_grad = theta - theta_stopped.clone(); // value 0, gradient 1 wrt theta
    let feature_acts = pre.clamp_min(0.0) * above.clone()
        + zero_with_grad.clone() * (kernel.clone() * theta_stopped * (-1.0 / eps));
    let l0_surrogate = above + zero_with_grad * (kernel * (-1.0 / eps));
    let x_hat = decode(params, feature_acts.clone());
    let mse = squared_error(x_hat.clone(), x);
    let l0 = l0_surrogate.sum_dim(1).mean();
    let loss = mse.clone() + l0.clone() * context.sparsity_coefficient;
    Ok(TrainingForward {
        activity: Activity::Dense(Box::new(feature_acts)),
        x_hat,
        loss,
        terms: vec![("mse_loss", mse), ("l0_loss", l0)],
        smallest_kept: None,
    })
}
