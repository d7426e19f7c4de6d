//! Standard SAE: `f = ReLU(pre)`, with the L1 penalty weighted by decoder-row norms,
//! `lambda * sum_i f_i ||W_dec[i]||` (Anthropic, April 2024; SAELens's `standard`).

use burn::tensor::Tensor;

use super::{
    Activity, B_ENC, HostVectors, Kind, LocalFuture, Params, SaeArchitecture, TrainingContext,
    TrainingForward, decode, decoder_norms, for_each_host_row, pre_activation, squared_error,
};
use crate::error::Result;
use crate::kernels::for_each_chunk;
use crate::sae::Architecture;
use crate::sae::host_train::dense::{dense_figures, mask_where};
use crate::sae::host_train::{
    HostSae, HostStep, HostStepError, HostStepFigures, ROW_BLOCK, sum_of_squares,
};

pub struct Standard;

/// Its names, and the SAELens cfg.json it reads (`architecture: "standard"`, or an older file's
/// activation function).
pub(crate) const KIND: Kind = Kind {
    name: "standard",
    aliases: &["relu"],
    written_as: "standard",
    build: |_k| Ok(Architecture::Standard),
    reads_saelens: |names| {
        (KIND.named_by(names) && !names.standard_with_topk_activation())
            || (names.architecture.is_none() && matches!(names.activation, None | Some("relu")))
    },
};

impl SaeArchitecture for Standard {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn vectors(&self) -> &'static [&'static str] {
        &[B_ENC]
    }

    fn default_sparsity_coefficient(&self) -> f64 {
        5.0
    }

    fn encode(&self, params: &Params, x: Tensor<2>) -> Tensor<2> {
        encode(params, x)
    }

    fn activate_host_rows(&self, product: &mut [f32], d_sae: usize, _vectors: &HostVectors) {
        for_each_host_row(product, d_sae, |row| {
            row.iter_mut().for_each(|v| *v = v.max(0.0))
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

/// Standard: `f = ReLU(pre)`; MSE plus the L1 penalty weighted by decoder-row norms.
fn host_step(
    host: &mut HostSae,
    x: &[f32],
    s: &HostStep,
) -> std::result::Result<HostStepFigures, HostStepError> {
    let (d_in, d_sae) = (host.d_in, host.d_sae);
    let rows = x.len() / d_in;
    let lambda = s.sparsity_coefficient;
    let centred = host.centred(x);
    let mut acts = host.encode(&centred, Some(&host.vector(B_ENC).values));
    for_each_chunk(&mut acts, ROW_BLOCK * d_sae, |_, part| {
        part.iter_mut().for_each(|v| *v = v.max(0.0))
    });
    let error = host.decode_error(&acts, x);
    let sse = sum_of_squares(&error);
    let mse = sse / rows as f64;
    let (fired, l1) = host.norm_weighted_l1(&acts, lambda);
    let loss = mse + lambda * l1.value;
    if !loss.is_finite() {
        return Err(HostStepError::Loss);
    }

    // d(loss)/d(x_hat) = 2 error / rows.
    let two_over_rows = 2.0 / rows as f32;
    host.decoder_grad(&acts, &error, two_over_rows, Some(&l1));
    let mut d_pre = host.back_through_decoder(&error, two_over_rows, Some(&l1.penalty()));
    // Through the ReLU: only where it was open.
    mask_where(&mut d_pre, &acts, d_sae, |f| f > 0.0);
    let d_pre_sums = host.encoder_grad(&d_pre, &centred);
    host.set_vector_grad(B_ENC, &d_pre_sums);
    host.b_dec_grad(&error, two_over_rows, &d_pre_sums);
    Ok(dense_figures(
        loss,
        vec![("mse_loss", mse as f32), ("l1_loss", l1.value as f32)],
        fired,
        sse,
        x,
        d_in,
    ))
}
