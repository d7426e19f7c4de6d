//! Sparse autoencoders: architectures, training, metrics, features, interventions and files.
//!
//! `f = act((x - b_dec) @ W_enc + b_enc)`, `x_hat = f @ W_dec + b_dec` (see docs/product.md). An
//! [`Sae`] always holds its weights at the model's scale: an input-scaling factor used in training
//! is folded into the weights when training ends, as SAELens expects on disk.
//!
//! - [`arch`]: the six architectures, one file each behind one trait over a shared base;
//! - [`select`]: top-k masks that work on WebGPU (no synchronous read-back);
//! - [`store`]: the activation store that feeds training;
//! - [`train`]: the trainer (Adam, schedules, dead latents, checkpoints, progress);
//! - `host_train`, `host_encode`: the CPU path's training step and scan encode on host buffers;
//! - [`pipeline`]: capture -> train -> evaluate -> files, and the feature scan job, for the CLI,
//!   the worker and the page; [`spread`]: forwards shared with helper workers;
//! - [`metrics`]: held-out evaluation (MSE, explained variance, L0, loss recovered, KL, ...);
//! - [`features`]: per-feature data for feature cards, and concept recovery;
//! - [`explain`]: checkable explanations of features, their scores and an automatic explainer;
//! - [`steer`]: interventions at the SAE's hook (add, clamp, ablate, splice);
//! - [`saelens`]: SAELens directories in and out;
//! - [`sae_hooks`]: SAELens's `HookedSAETransformer` hook points (`hook_sae_acts_post`, ...);
//! - [`releases`]: the published SAELens releases the page can open by name;
//! - [`stats`]: host-side statistics (AUROC, histograms, examples, nearest features);
//! - [`circuits`]: attribution and cross-layer graphs over SAEs at several blocks;
//! - [`fixtures`]: deterministic random SAEs for tests and `make-test-sae`.

pub mod arch;
pub mod circuits;
pub mod explain;
pub mod features;
pub mod fixtures;
mod host_encode;
mod host_train;
pub mod metrics;
pub mod pipeline;
pub mod releases;
pub mod sae_hooks;
pub mod saelens;
pub mod select;
pub mod spread;
pub mod stats;
pub mod steer;
pub mod store;
pub mod train;

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::{float_tensor, read_f32};
use crate::error::{Result, SaeplayError};
use crate::io::tensors::HostTensor;
use arch::{B_DEC, Params, W_DEC, W_ENC};

/// Which sparsity mechanism an SAE uses. Serialised as SAELens's architecture names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "architecture", rename_all = "lowercase")]
pub enum Architecture {
    /// ReLU with the decoder-norm-weighted L1 penalty.
    Standard,
    /// Exactly `k` active latents per token.
    #[serde(rename = "topk")]
    TopK { k: usize },
    /// `k x batch` active latents across a training batch; a threshold at inference.
    #[serde(rename = "batchtopk")]
    BatchTopK { k: usize },
    /// Separate gate and magnitude paths.
    Gated,
    /// Learned per-latent thresholds with an L0 penalty.
    #[serde(rename = "jumprelu")]
    JumpRelu,
    /// BatchTopK whose nested prefixes of latents each reconstruct the input (the widths are in
    /// the training recipe); a threshold at inference.
    #[serde(rename = "matryoshka_batchtopk")]
    MatryoshkaBatchTopK { k: usize },
}

impl Architecture {
    /// The default sparsity coefficient for inputs normalised to mean norm sqrt(d_in): L1 for
    /// Standard and Gated, L0 for JumpReLU, none for the top-k architectures.
    pub fn default_sparsity_coefficient(self) -> f64 {
        self.behaviour().default_sparsity_coefficient()
    }
}

/// How an SAE normalises the activations it reads: SAELens's `normalize_activations` as it
/// stands at inference. (`expected_average_only_in` is a constant, folded into the weights when
/// the files are read, so it never reaches here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationNormalization {
    #[default]
    None,
    /// Per token: `(x - mean) / (std + 1e-5)` over d_in (std with Bessel's correction, as
    /// torch's), and the reconstruction mapped back by `* std + mean` (SAELens's `layer_norm`).
    LayerNorm,
    /// Per token: `x * sqrt(d_in) / ||x||`, and the reconstruction divided by the same factor
    /// (SAELens's `constant_norm_rescale`).
    ConstantNormRescale,
}

impl ActivationNormalization {
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// SAELens's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::LayerNorm => "layer_norm",
            Self::ConstantNormRescale => "constant_norm_rescale",
        }
    }
}

/// SAELens's epsilon in the `layer_norm` input normalisation.
const LAYER_NORM_EPS: f32 = 1e-5;

/// What an SAE is: its shape, architecture, and where it reads the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    #[serde(flatten)]
    pub architecture: Architecture,
    pub d_in: usize,
    pub d_sae: usize,
    /// TransformerLens hook name, e.g. `blocks.2.hook_resid_pre`.
    pub hook_name: String,
    /// The model it was trained on (e.g. `saeplay/tinytales-gpt2`).
    pub model_name: String,
    /// Normalisation of each token's activation before encoding (inverted on reconstruction).
    #[serde(default, skip_serializing_if = "ActivationNormalization::is_none")]
    pub normalize_activations: ActivationNormalization,
}

impl SaeConfig {
    pub fn validate(&self) -> Result<()> {
        if self.d_in == 0 || self.d_sae == 0 {
            return Err(SaeplayError::InvalidSetting(format!(
                "an SAE needs d_in and d_sae of at least 1 (got {} and {})",
                self.d_in, self.d_sae
            )));
        }
        // Every later size (d_in * d_sae weights, in bytes) is then known to fit in a usize.
        let weight_bytes = self
            .d_in
            .checked_mul(self.d_sae)
            .and_then(|n| n.checked_mul(size_of::<f32>()))
            .filter(|&bytes| bytes <= isize::MAX as usize);
        if weight_bytes.is_none() {
            return Err(SaeplayError::InvalidSetting(format!(
                "an SAE with d_in {} and d_sae {} would have more weights than this machine can \
                 address",
                self.d_in, self.d_sae
            )));
        }
        if let Some(k) = self.architecture.k()
            && (k == 0 || k > self.d_sae)
        {
            return Err(SaeplayError::InvalidSetting(format!(
                "k must be between 1 and d_sae = {} (got {k})",
                self.d_sae
            )));
        }
        Ok(())
    }

    /// Parameter names and shapes (SAELens's) this configuration needs.
    pub fn parameter_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let mut shapes = vec![
            (W_ENC, vec![d_in, d_sae]),
            (W_DEC, vec![d_sae, d_in]),
            (B_DEC, vec![d_in]),
        ];
        let vectors = self.architecture.behaviour().vectors();
        shapes.extend(vectors.iter().map(|&name| (name, vec![d_sae])));
        shapes
    }
}

/// A sparse autoencoder with weights on a device, at the model's activation scale.
#[derive(Clone)]
pub struct Sae {
    pub config: SaeConfig,
    params: Params,
    device: Device,
}

impl std::fmt::Debug for Sae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sae").field("config", &self.config).finish()
    }
}

impl Sae {
    /// Upload host weights (SAELens names and shapes), checking names, shapes and finiteness.
    pub fn from_host(
        config: SaeConfig,
        weights: &BTreeMap<String, HostTensor>,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut params = Params::new();
        for (name, shape) in config.parameter_shapes() {
            let tensor = weights
                .get(name)
                .ok_or_else(|| SaeplayError::MissingSaeTensor {
                    name: name.to_string(),
                    architecture: config.architecture.name(),
                })?;
            if tensor.shape != shape {
                return Err(SaeplayError::TensorShape {
                    name: name.to_string(),
                    expected: shape,
                    found: tensor.shape.clone(),
                });
            }
            if tensor.values.iter().any(|v| !v.is_finite()) {
                return Err(SaeplayError::NonFinite {
                    name: name.to_string(),
                });
            }
            let rows = if shape.len() == 2 { shape[0] } else { 1 };
            let cols = *shape.last().expect("shapes are non-empty");
            params.insert(
                name,
                float_tensor(tensor.values.clone(), [rows, cols], device),
            );
        }
        Ok(Self {
            config,
            params,
            device: device.clone(),
        })
    }

    /// Build from device parameters that already have the right names and shapes.
    pub(crate) fn from_params(config: SaeConfig, params: Params, device: &Device) -> Self {
        Self {
            config,
            params,
            device: device.clone(),
        }
    }

    /// Read the weights back (SAELens names and shapes).
    pub async fn to_host(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut out = BTreeMap::new();
        for (name, shape) in self.config.parameter_shapes() {
            let values = read_f32(arch::param(&self.params, name)).await?;
            out.insert(name.to_string(), HostTensor { shape, values });
        }
        Ok(out)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One parameter, `[rows, cols]` (vectors as `[1, n]`).
    pub fn param(&self, name: &'static str) -> Tensor<2> {
        arch::param(&self.params, name)
    }

    /// The activations as the SAE's weights read them, and for `layer_norm` the per-token
    /// `(mean, std)` `[n, 1]` that map a reconstruction back.
    fn normalize(&self, x: Tensor<2>) -> (Tensor<2>, Option<(Tensor<2>, Tensor<2>)>) {
        match self.config.normalize_activations {
            ActivationNormalization::None => (x, None),
            ActivationNormalization::LayerNorm => {
                let d = x.dims()[1];
                let mean = x.clone().mean_dim(1);
                let centred = x - mean.clone();
                // Bessel's correction as torch's `std`; a width of 1 has no spread to measure.
                let dof = d.saturating_sub(1).max(1) as f32;
                let std = centred
                    .clone()
                    .powi_scalar(2)
                    .sum_dim(1)
                    .div_scalar(dof)
                    .sqrt();
                let normalized = centred / std.clone().add_scalar(LAYER_NORM_EPS);
                (normalized, Some((mean, std)))
            }
            ActivationNormalization::ConstantNormRescale => {
                let d = x.dims()[1];
                // The inverse factor ||x|| / sqrt(d_in) plays the part of layer_norm's std.
                let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
                let inverse = norm.div_scalar((d as f32).sqrt()).clamp_min(1e-12);
                let normalized = x.clone() / inverse.clone();
                (normalized, Some((x.zeros_like().narrow(1, 0, 1), inverse)))
            }
        }
    }

    /// Per token, what one unit of a feature's decoder row is worth in the model's activation
    /// space: `std` `[n, 1]` for `layer_norm`, none (1) otherwise. Steering and clamping scale
    /// decoder directions by it so that they move the reconstruction as decoding would.
    pub fn direction_scale(&self, x: Tensor<2>) -> Option<Tensor<2>> {
        self.normalize(x).1.map(|(_, std)| std)
    }

    /// The pre-activations `[n, d_sae]` before the sparsity function (the magnitude path for a
    /// gated SAE), as SAELens's `hook_sae_acts_pre`.
    pub fn pre_activation(&self, x: Tensor<2>) -> Tensor<2> {
        let (x, _) = self.normalize(x);
        self.config
            .architecture
            .behaviour()
            .pre_activation(&self.params, x)
    }

    /// Feature activations `[n, d_sae]` of activations `x` `[n, d_in]`. Synchronous and free of
    /// read-backs, so it runs inside hook functions and on WebGPU.
    pub fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        let (x, _) = self.normalize(x);
        self.encode_normalized(x)
    }

    fn encode_normalized(&self, x: Tensor<2>) -> Tensor<2> {
        self.config.architecture.behaviour().encode(&self.params, x)
    }

    /// [`Sae::encode`], but TopK on the CPU backends selects on the host: far faster than
    /// bisection there (30 passes over `[n, d_sae]`), and the same result. Use it outside hooks.
    pub async fn encode_async(&self, x: Tensor<2>) -> Result<Tensor<2>> {
        let (x, _) = self.normalize(x);
        self.encode_normalized_async(x).await
    }

    async fn encode_normalized_async(&self, x: Tensor<2>) -> Result<Tensor<2>> {
        let selection = select::Selection::for_device(&self.device);
        let behaviour = self.config.architecture.behaviour();
        behaviour.encode_async(&self.params, x, selection).await
    }

    /// `f @ W_dec + b_dec`, in the space the SAE's weights live in: the model's activations,
    /// or for a `layer_norm` SAE the normalised ones (use [`Sae::encode_and_reconstruct`] to get
    /// back to the model's).
    pub fn decode(&self, feature_acts: Tensor<2>) -> Tensor<2> {
        arch::decode(&self.params, feature_acts)
    }

    /// Features `[n, d_sae]` and the reconstruction `[n, d_in]` in the model's activation space.
    pub fn encode_and_reconstruct(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let (normalized, stats) = self.normalize(x);
        let acts = self.encode_normalized(normalized);
        let x_hat = self.decode_to_model_space(acts.clone(), stats);
        (acts, x_hat)
    }

    /// Decode, then undo the input normalisation whose statistics `normalize` returned.
    fn decode_to_model_space(
        &self,
        acts: Tensor<2>,
        stats: Option<(Tensor<2>, Tensor<2>)>,
    ) -> Tensor<2> {
        let decoded = self.decode(acts);
        match stats {
            None => decoded,
            Some((mean, std)) => decoded * std + mean,
        }
    }

    /// [`Sae::encode_and_reconstruct`] with [`Sae::encode_async`]'s selection. Use it outside
    /// hooks.
    pub async fn encode_and_reconstruct_async(
        &self,
        x: Tensor<2>,
    ) -> Result<(Tensor<2>, Tensor<2>)> {
        let (normalized, stats) = self.normalize(x);
        let acts = self.encode_normalized_async(normalized).await?;
        let x_hat = self.decode_to_model_space(acts.clone(), stats);
        Ok((acts, x_hat))
    }

    /// Encode then decode, back in the model's activation space.
    pub fn reconstruct(&self, x: Tensor<2>) -> Tensor<2> {
        self.encode_and_reconstruct(x).1
    }

    /// Check that this SAE reads a hook of `d_in` wide activations named `hook_name`.
    pub fn check_fits(&self, hook_name: &str, width: usize) -> Result<()> {
        if self.config.d_in != width {
            return Err(SaeplayError::SaeMismatch(format!(
                "the SAE reads {} numbers per token, but `{hook_name}` in this model has {width}",
                self.config.d_in
            )));
        }
        Ok(())
    }
}
