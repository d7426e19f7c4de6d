//! Gated SAE (Rajamanoharan et al. 2024): a gate path decides which latents are active and a
//! magnitude path (the same encoder rescaled by `exp(r_mag)`) how strongly, which removes the
//! L1 penalty's shrinkage. As SAELens: no `b_enc`; `b_gate`, `r_mag`, `b_mag` instead.
//!
//! - `pi_gate = (x - b_dec) @ W_enc + b_gate`, `pi_mag = (x - b_dec) @ (W_enc * exp(r_mag)) + b_mag`
//! - `f = 1[pi_gate > 0] * ReLU(pi_mag)`
//! - loss = MSE + lambda * sum_i ReLU(pi_gate)_i ||W_dec[i]|| + ||x - (ReLU(pi_gate) @ sg(W_dec) + sg(b_dec))||^2

use burn::tensor::Tensor;

use super::{
    Activity, B_DEC, B_GATE, B_MAG, Params, R_MAG, TrainingContext, TrainingForward, W_DEC, W_ENC,
    decode, decoder_norms, param, squared_error,
};
use crate::error::Result;

/// `(pi_gate, pi_mag)`.
fn paths(params: &Params, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let centred = x - param(params, B_DEC);
    let w_enc = param(params, W_ENC);
    let gate = centred.clone().matmul(w_enc.clone()) + param(params, B_GATE);
    let w_mag = w_enc * param(params, R_MAG).exp();
    let magnitude = centred.matmul(w_mag) + param(params, B_MAG);
    (gate, magnitude)
}

/// `pi_mag`: what SAELens's `hook_sae_acts_pre` shows for a gated SAE.
pub fn magnitude_pre_activation(params: &Params, x: Tensor<2>) -> Tensor<2> {
    paths(params, x).1
}

pub fn encode(params: &Params, x: Tensor<2>) -> Tensor<2> {
    let (gate, magnitude) = paths(params, x);
    gate.greater_elem(0.0).float() * magnitude.clamp_min(0.0)
}

pub async fn training_forward(
    params: &Params,
    x: Tensor<2>,
    context: &TrainingContext,
) -> Result<TrainingForward> {
    let (gate, magnitude) = paths(params, x.clone());
    let active = gate.clone().detach().greater_elem(0.0).float();
    let feature_acts = active * magnitude.clamp_min(0.0);
    let x_hat = decode(params, feature_acts.clone());
    let mse = squared_error(x_hat.clone(), x.clone());
    let gate_relu = gate.clamp_min(0.0);
    let l1 = (gate_relu.clone() * decoder_norms(params))
        .sum_dim(1)
        .mean();
    let frozen = gate_relu.matmul(param(params, W_DEC).detach()) + param(params, B_DEC).detach();
    let aux = squared_error(frozen, x);
    let loss = mse.clone() + l1.clone() * context.sparsity_coefficient + aux.clone();
    Ok(TrainingForward {
        activity: Activity::Dense(Box::new(feature_acts)),
        x_hat,
        loss,
        terms: vec![
            ("mse_loss", mse),
            ("l1_loss", l1),
            ("auxiliary_reconstruction_loss", aux),
        ],
        smallest_kept: None,
    })
}
