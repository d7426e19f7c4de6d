//! Gated SAE (Rajamanoharan et al. 2024): a gate path decides which latents are active and a
//! magnitude path (the same encoder rescaled by `exp(r_mag)`) how strongly, which removes the
//! L1 penalty's shrinkage. As SAELens: no `b_enc`; `b_gate`, `r_mag`, `b_mag` instead.
//!
//! - `pi_gate = (x - b_dec) @ W_enc + b_gate`, `pi_mag = (x - b_dec) @ (W_enc * exp(r_mag)) + b_mag`
//! - `f = 1[pi_gate > 0] * ReLU(pi_mag)`
//! - loss = MSE + lambda * sum_i ReLU(pi_gate)_i ||W_dec[i]|| + ||x - (ReLU(pi_gate) @ sg(W_dec) + sg(b_dec))||^2

use burn::tensor::Tensor;

use super::{
    Activity, B_DEC, B_GATE, B_MAG, HostVectors, Kind, LocalFuture, Params, R_MAG, SaeArchitecture,
    TrainingContext, TrainingForward, W_DEC, W_ENC, decode, decoder_norms, for_each_host_row,
    param, squared_error,
};
use crate::error::Result;
use crate::kernels::for_each_chunk;
use crate::sae::Architecture;
use crate::sae::host_train::dense::{dense_figures, mask_where, per_latent_rows};
use crate::sae::host_train::{
    HostSae, HostStep, HostStepError, HostStepFigures, ROW_BLOCK, column_counts_and_sums,
    sum_of_squares,
};

pub struct Gated;

/// Its names, and the SAELens cfg.json it reads (`architecture: "gated"`).
pub(crate) const KIND: Kind = Kind {
    name: "gated",
    aliases: &[],
    written_as: "gated",
    build: |_k| Ok(Architecture::Gated),
    reads_saelens: |names| KIND.named_by(names),
};

impl SaeArchitecture for Gated {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn vectors(&self) -> &'static [&'static str] {
        &[B_GATE, R_MAG, B_MAG]
    }

    /// Unit-norm decoder rows, as in the paper (Rajamanoharan et al. 2024): without the
    /// constraint the gate stayed open on hundreds of latents here.
    fn unit_norm_decoder(&self) -> bool {
        true
    }

    fn default_sparsity_coefficient(&self) -> f64 {
        5.0
    }

    fn plain_encoder(&self) -> bool {
        false
    }

    fn encoder_biases(&self) -> &'static [(&'static str, Option<&'static str>)] {
        &[(B_GATE, None), (B_MAG, Some(R_MAG))]
    }

    fn pre_activation(&self, params: &Params, x: Tensor<2>) -> Tensor<2> {
        magnitude_pre_activation(params, x)
    }

    fn encode(&self, params: &Params, x: Tensor<2>) -> Tensor<2> {
        encode(params, x)
    }

    fn activate_host_rows(&self, product: &mut [f32], d_sae: usize, vectors: &HostVectors) {
        let (b_gate, b_mag) = (&vectors[B_GATE], &vectors[B_MAG]);
        let scale: Vec<f32> = vectors[R_MAG].iter().map(|r| r.exp()).collect();
        for_each_host_row(product, d_sae, |row| {
            for (((v, &g), &e), &m) in row.iter_mut().zip(b_gate).zip(&scale).zip(b_mag) {
                *v = if *v + g > 0.0 {
                    (*v * e + m).max(0.0)
                } else {
                    0.0
                };
            }
        });
    }

    fn training_forward<'a>(
        &'a self,
        params: &'a Params,
        x: Tensor<2>,
        _nested_widths: &'a [usize],
        context: &'a TrainingContext,
    ) -> LocalFuture<'a, Result<TrainingForward>> {
        Box::pin(training_forward(params, x, context))
    }

    fn host_step(
        &self,
        host: &mut HostSae,
        x: &[f32],
        step: &HostStep,
    ) -> std::result::Result<HostStepFigures, HostStepError> {
        host_step(host, x, step)
    }
}

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

/// Gated: a gate path `pi_gate = c @ W_enc + b_gate` decides which latents are active, a
/// magnitude path `pi_mag = (c @ W_enc) exp(r_mag) + b_mag` how strongly; MSE, the L1
/// penalty on `ReLU(pi_gate)` weighted by decoder norms, and the gate's own reconstruction
/// through the frozen decoder.
fn host_step(
    host: &mut HostSae,
    x: &[f32],
    s: &HostStep,
) -> std::result::Result<HostStepFigures, HostStepError> {
    let (d_in, d_sae) = (host.d_in, host.d_sae);
    let rows = x.len() / d_in;
    let lambda = s.sparsity_coefficient;
    let centred = host.centred(x);
    // One encoder product serves both paths.
    let product = host.encode(&centred, None);
    let b_gate = &host.vector(B_GATE).values;
    let b_mag = &host.vector(B_MAG).values;
    let scale: Vec<f32> = host.vector(R_MAG).values.iter().map(|r| r.exp()).collect();
    let mut gate = product.clone();
    let mut acts = product.clone();
    for_each_chunk(&mut gate, ROW_BLOCK * d_sae, |_, part| {
        for row in part.chunks_exact_mut(d_sae) {
            row.iter_mut().zip(b_gate).for_each(|(v, b)| *v += b);
        }
    });
    let gate_ref = &gate;
    for_each_chunk(&mut acts, ROW_BLOCK * d_sae, |block, part| {
        let first = block * ROW_BLOCK * d_sae;
        for (j, row) in part.chunks_exact_mut(d_sae).enumerate() {
            let gate_row = &gate_ref[first + j * d_sae..first + (j + 1) * d_sae];
            for (((v, &g), &e), &b) in row.iter_mut().zip(gate_row).zip(&scale).zip(b_mag) {
                *v = if g > 0.0 { (*v * e + b).max(0.0) } else { 0.0 };
            }
        }
    });
    let error = host.decode_error(&acts, x);
    let sse = sum_of_squares(&error);
    let mse = sse / rows as f64;
    // ReLU(pi_gate), in place.
    for_each_chunk(&mut gate, ROW_BLOCK * d_sae, |_, part| {
        part.iter_mut().for_each(|v| *v = v.max(0.0))
    });
    let gate_relu = gate;
    let aux_error = host.decode_error(&gate_relu, x);
    let aux = sum_of_squares(&aux_error) / rows as f64;
    let (_, l1) = host.norm_weighted_l1(&gate_relu, lambda);
    let loss = mse + lambda * l1.value + aux;
    if !loss.is_finite() {
        return Err(HostStepError::Loss);
    }

    let two_over_rows = 2.0 / rows as f32;
    // The auxiliary term reaches neither `W_dec` nor `b_dec` (both frozen there).
    host.decoder_grad(&acts, &error, two_over_rows, Some(&l1));
    let mut d_mag = host.back_through_decoder(&error, two_over_rows, None);
    let mut d_gate = host.back_through_decoder(&aux_error, two_over_rows, Some(&l1.penalty()));
    mask_where(&mut d_mag, &acts, d_sae, |f| f > 0.0);
    mask_where(&mut d_gate, &gate_relu, d_sae, |g| g > 0.0);
    let d_mag_ref = &d_mag;
    let r_mag_grad = per_latent_rows(&product, d_sae, |r, row, sums| {
        let d_row = &d_mag_ref[r * d_sae..(r + 1) * d_sae];
        for (((s, &p), &d), &e) in sums.iter_mut().zip(row).zip(d_row).zip(&scale) {
            *s += d * p * e;
        }
    });
    let (_, b_mag_grad) = column_counts_and_sums(&d_mag, d_sae);
    let (_, b_gate_grad) = column_counts_and_sums(&d_gate, d_sae);
    // d(product) = d_gate + d_mag * exp(r_mag), into `d_gate`.
    for_each_chunk(&mut d_gate, ROW_BLOCK * d_sae, |block, part| {
        let first = block * ROW_BLOCK * d_sae;
        for (j, row) in part.chunks_exact_mut(d_sae).enumerate() {
            let d_row = &d_mag_ref[first + j * d_sae..first + (j + 1) * d_sae];
            for ((v, &d), &e) in row.iter_mut().zip(d_row).zip(&scale) {
                *v += d * e;
            }
        }
    });
    let d_product_sums = host.encoder_grad(&d_gate, &centred);
    for (name, grad) in [
        (B_GATE, b_gate_grad),
        (R_MAG, r_mag_grad),
        (B_MAG, b_mag_grad),
    ] {
        host.set_vector_grad(name, &grad);
    }
    host.b_dec_grad(&error, two_over_rows, &d_product_sums);
    let (fired, _) = column_counts_and_sums(&acts, d_sae);
    Ok(dense_figures(
        loss,
        vec![
            ("mse_loss", mse as f32),
            ("l1_loss", l1.value as f32),
            ("auxiliary_reconstruction_loss", aux as f32),
        ],
        fired,
        sse,
        x,
        d_in,
    ))
}
