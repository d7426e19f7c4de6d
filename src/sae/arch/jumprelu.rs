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
    Activity, B_ENC, HostVectors, Kind, LocalFuture, Params, SaeArchitecture, THRESHOLD,
    TrainingContext, TrainingForward, VectorUpdate, decode, param, pre_activation, squared_error,
    threshold_host_rows,
};
use crate::error::Result;
use crate::kernels::for_each_chunk;
use crate::sae::Architecture;
use crate::sae::host_train::dense::{dense_figures, mask_where, per_latent, per_latent_rows};
use crate::sae::host_train::{
    HostSae, HostStep, HostStepError, HostStepFigures, ROW_BLOCK, column_counts_and_sums,
    sum_of_squares,
};
use crate::sae::train::SaeTrainingConfig;

pub struct JumpRelu;

/// Its names, and the SAELens cfg.json it reads (`architecture: "jumprelu"`).
pub(crate) const KIND: Kind = Kind {
    name: "jumprelu",
    aliases: &[],
    written_as: "jumprelu",
    build: |_k| Ok(Architecture::JumpRelu),
    reads_saelens: |names| KIND.named_by(names),
};

impl SaeArchitecture for JumpRelu {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn vectors(&self) -> &'static [&'static str] {
        &[B_ENC, THRESHOLD]
    }

    fn initial_value(&self, vector: &str, recipe: &SaeTrainingConfig) -> f32 {
        if vector == THRESHOLD {
            recipe.jumprelu_init_threshold as f32
        } else {
            0.0
        }
    }

    fn default_sparsity_coefficient(&self) -> f64 {
        1.0
    }

    fn vector_update(&self, vector: &str, recipe: &SaeTrainingConfig) -> VectorUpdate {
        if vector == THRESHOLD {
            VectorUpdate {
                lr_multiplier: recipe.jumprelu_threshold_lr_multiplier,
                floor: Some(0.0),
            }
        } else {
            VectorUpdate::default()
        }
    }

    fn check_recipe(&self, recipe: &SaeTrainingConfig) -> std::result::Result<(), String> {
        if recipe.jumprelu_bandwidth == 0.0 || recipe.jumprelu_init_threshold == 0.0 {
            return Err("JumpReLU needs a bandwidth and an initial threshold above 0".into());
        }
        Ok(())
    }

    fn encode(&self, params: &Params, x: Tensor<2>) -> Tensor<2> {
        encode(params, x)
    }

    fn activate_host_rows(&self, product: &mut [f32], _d_sae: usize, vectors: &HostVectors) {
        threshold_host_rows(product, &vectors[THRESHOLD]);
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

/// JumpReLU: `f = ReLU(pre) * 1[pre > theta]`; MSE plus an L0 penalty. The threshold learns
/// through the straight-through pseudo-derivatives of `arch::jumprelu` (a rectangle kernel
/// `K` of width `bandwidth` around it): `d f / d theta = -(theta / eps) K` and
/// `d L0 / d theta = -K / eps`.
fn host_step(
    host: &mut HostSae,
    x: &[f32],
    s: &HostStep,
) -> std::result::Result<HostStepFigures, HostStepError> {
    let (d_in, d_sae) = (host.d_in, host.d_sae);
    let rows = x.len() / d_in;
    let (lambda, eps) = (s.sparsity_coefficient, s.bandwidth as f32);
    let centred = host.centred(x);
    let pre = host.encode(&centred, Some(&host.vector(B_ENC).values));
    let theta = &host.vector(THRESHOLD).values.clone();
    let mut acts = pre.clone();
    for_each_chunk(&mut acts, ROW_BLOCK * d_sae, |_, part| {
        for row in part.chunks_exact_mut(d_sae) {
            for (v, &t) in row.iter_mut().zip(theta) {
                *v = if *v > t { v.max(0.0) } else { 0.0 };
            }
        }
    });
    let error = host.decode_error(&acts, x);
    let sse = sum_of_squares(&error);
    let mse = sse / rows as f64;
    let above = per_latent(&pre, d_sae, |row, sums| {
        for ((s, &p), &t) in sums.iter_mut().zip(row).zip(theta) {
            *s += f32::from(u8::from(p > t));
        }
    });
    let l0 = above.iter().map(|&c| f64::from(c)).sum::<f64>() / rows as f64;
    let loss = mse + lambda * l0;
    if !loss.is_finite() {
        return Err(HostStepError::Loss);
    }

    let two_over_rows = 2.0 / rows as f32;
    host.decoder_grad(&acts, &error, two_over_rows, None);
    let mut d_acts = host.back_through_decoder(&error, two_over_rows, None);
    // The threshold: sum_r d_acts * -(theta / eps) K, plus lambda / rows * sum_r -K / eps.
    let in_window = |p: f32, t: f32| ((p - t) / eps).abs() < 0.5;
    let window_sums = per_latent(&pre, d_sae, |row, sums| {
        for ((s, &p), &t) in sums.iter_mut().zip(row).zip(theta) {
            *s += f32::from(u8::from(in_window(p, t)));
        }
    });
    let d_acts_ref = &d_acts;
    let weighted_window = per_latent_rows(&pre, d_sae, |r, row, sums| {
        let d_row = &d_acts_ref[r * d_sae..(r + 1) * d_sae];
        for (((s, &p), &t), &d) in sums.iter_mut().zip(row).zip(theta).zip(d_row) {
            *s += if in_window(p, t) { d } else { 0.0 };
        }
    });
    let l0_scale = (lambda / rows as f64) as f32;
    let theta_grad: Vec<f32> = (0..d_sae)
        .map(|i| -(theta[i] / eps) * weighted_window[i] - l0_scale * window_sums[i] / eps)
        .collect();
    // Into the pre-activation where the output was open.
    mask_where(&mut d_acts, &acts, d_sae, |f| f > 0.0);
    let d_pre_sums = host.encoder_grad(&d_acts, &centred);
    host.set_vector_grad(THRESHOLD, &theta_grad);
    host.set_vector_grad(B_ENC, &d_pre_sums);
    host.b_dec_grad(&error, two_over_rows, &d_pre_sums);
    let (fired, _) = column_counts_and_sums(&acts, d_sae);
    Ok(dense_figures(
        loss,
        vec![("mse_loss", mse as f32), ("l0_loss", l0 as f32)],
        fired,
        sse,
        x,
        d_in,
    ))
}
