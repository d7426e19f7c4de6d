//! Standard SAE: `f = ReLU(pre)`, with the L1 penalty weighted by decoder-row norms,
//! `lambda * sum_i f_i ||W_dec[i]||` (Anthropic, April 2024; SAELens's `standard`).

use burn::tensor::Tensor;

use super::{
    Activity, Params, TrainingContext, TrainingForward, decode, decoder_norms, pre_activation,
    squared_error,
};
use crate::error::Result;

pub fn encode(params: &Params, x: Tensor<2>) -> Tensor<2> {
    pre_activation(params, x).clamp_min(0.0)
}

pub async fn training_forward(
    params: &Params,
    x: Tensor<2>,
    context: &TrainingContext,
) -> Result<TrainingForward> {
    let feature_acts = encode(params, x.clone());
    let x_hat = decode(params, feature_acts.clone());
    let mse = squared_error(x_hat.clone(), x);
    let l1 = (feature_acts.clone() * decoder_norms(params))
        .sum_dim(1)
        .mean();
    let loss = mse.clone() + l1.clone() * context.sparsity_coefficient;
    Ok(TrainingForward {
        activity: Activity::Dense(Box::new(feature_acts)),
        x_hat,
        loss,
        terms: vec![("mse_loss", mse), ("l1_loss", l1)],
        smallest_kept: None,
    })
}
