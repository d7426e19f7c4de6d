//! BatchTopK SAE (Bussmann et al. 2024): training keeps the `k x batch` largest ReLU'd
//! pre-activations across the whole batch, so tokens may use more or fewer than k latents. For
//! inference a single threshold replaces the batch: `f = ReLU(pre) * (pre > threshold)`, the
//! threshold being a running average of the smallest activation kept in training. It is stored
//! per latent (all equal), which is how SAELens saves BatchTopK for inference (as JumpReLU).

use burn::tensor::Tensor;

use super::{
    Activity, B_ENC, HostVectors, Kind, LocalFuture, Params, SaeArchitecture, THRESHOLD,
    TrainingContext, TrainingForward, decode, mse_with_auxk, need_k, pre_activation, select,
    threshold_host_rows,
};
use crate::error::Result;
use crate::sae::Architecture;
use crate::sae::host_train::{HostSae, HostStep, HostStepError, HostStepFigures};
use crate::sae::select::Scope;

pub struct BatchTopK {
    pub k: usize,
}

/// The BatchTopK family's inference and storage, shared with Matryoshka BatchTopK.
pub(crate) const VECTORS: &[&str] = &[B_ENC, THRESHOLD];
/// The threshold is a running average, not trained.
pub(crate) const TRAINED_VECTORS: &[&str] = &[B_ENC];

/// Its names, and the SAELens cfg.json it reads (`architecture: "batchtopk"`).
pub(crate) const KIND: Kind = Kind {
    name: "batchtopk",
    aliases: &[],
    build: |k| {
        Ok(Architecture::BatchTopK {
            k: need_k(k, "batchtopk")?,
        })
    },
    reads_saelens: |names| KIND.named_by(names),
};

impl SaeArchitecture for BatchTopK {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn k(&self) -> Option<usize> {
        Some(self.k)
    }

    fn vectors(&self) -> &'static [&'static str] {
        VECTORS
    }

    fn trained_vectors(&self) -> &'static [&'static str] {
        TRAINED_VECTORS
    }

    fn uses_auxk(&self) -> bool {
        true
    }

    fn keeps_running_threshold(&self) -> bool {
        true
    }

    fn saelens_name(&self) -> &'static str {
        "jumprelu"
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
        Box::pin(training_forward(params, x, self.k, context))
    }

    fn host_step(
        &self,
        host: &mut HostSae,
        x: &[f32],
        step: &HostStep,
    ) -> std::result::Result<HostStepFigures, HostStepError> {
        host.sparse_step(x, self.k, true, &[], step)
    }
}

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
