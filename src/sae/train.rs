//! Training an SAE on batches of activations.
//!
//! The recipe ([`SaeTrainingConfig`]) is everything needed to train the same SAE again: it is
//! saved beside the SAE and carried by shared links. The trainer works one step at a time
//! ([`SaeTrainer::train_step`]), so the page can drive it between frames; [`run`] drives it with a
//! progress callback that can pause or stop.
//!
//! Inputs are scaled by a factor `s` so that their mean norm is `sqrt(d_in)` (SAELens's
//! `expected_average_only_in`); the SAE the trainer hands out has `s` folded into its weights
//! (`W_enc * s`, `W_dec / s`, `b_dec / s`), so it reads and writes the model's own scale.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::arch::{
    self, Activity, B_DEC, B_ENC, B_GATE, B_MAG, Params, R_MAG, THRESHOLD, TrainingContext,
    TrainingForward, W_DEC, W_ENC,
};
use super::host_train::{AuxK, HostSae, HostStep, HostStepError, NamedHostParam};
use super::select::Selection;
use super::stats::geometric_median;
use super::store::Corpus;
use super::{Architecture, Sae, SaeConfig};
use crate::backend::{float_tensor, read_f32};
use crate::error::{Result, SaeplayError};
use crate::io::tensors::write_safetensors;
pub use crate::optim::LrSchedule;
use crate::optim::checkpoint::{self, FIRST_MOMENT_PREFIX, SECOND_MOMENT_PREFIX, moment_key};
use crate::optim::{Adam, Moments, Schedule};
use crate::rng::SplitMix64;

/// How `b_dec` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderBiasInit {
    Zeros,
    /// The mean of the first batch.
    Mean,
    /// The geometric median of the first batch (robust to outlier tokens).
    GeometricMedian,
}

/// A training recipe: the SAE's shape, the data, and the optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaeTrainingConfig {
    #[serde(flatten)]
    pub architecture: Architecture,
    /// TransformerLens hook name the SAE reads.
    pub hook_name: String,
    /// `d_sae = d_in * expansion_factor`.
    pub expansion_factor: usize,
    pub corpus: Corpus,
    /// Tokens per window, BOS included.
    pub context: usize,
    pub skip_special_tokens: bool,
    /// Activation vectors to train on; steps = training_tokens / batch_size.
    pub training_tokens: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub lr_warmup_steps: usize,
    pub lr_schedule: LrSchedule,
    pub lr_end_fraction: f64,
    /// L1 coefficient (Standard, Gated) or L0 coefficient (JumpReLU); unused by TopK/BatchTopK.
    pub sparsity_coefficient: f64,
    pub sparsity_warmup_steps: usize,
    /// AuxK coefficient (TopK, BatchTopK).
    pub aux_coefficient: f64,
    /// A latent that has not fired for this many training vectors counts as dead.
    pub dead_window_tokens: usize,
    pub b_dec_init: DecoderBiasInit,
    /// Initial norm of each decoder row (`W_enc` starts as `W_dec` transposed).
    pub decoder_init_norm: f64,
    pub jumprelu_init_threshold: f64,
    pub jumprelu_bandwidth: f64,
    /// JumpReLU: the threshold's learning rate relative to the others. Adam moves a parameter
    /// by at most about the learning rate per step, so at 1e-3 a threshold could not rise past
    /// ~0.5 in a 1000-step run while the encoder grew to stay above it (measured: L0 145 at any
    /// L0 coefficient); a faster threshold lets the penalty set the sparsity.
    pub jumprelu_threshold_lr_multiplier: f64,
    /// BatchTopK: rate of the running average that becomes the inference threshold.
    pub batchtopk_threshold_rate: f64,
    /// Matryoshka BatchTopK: the nested prefix widths (SAELens's `matryoshka_widths`), `d_sae`
    /// added last when missing; empty means `d_sae / 8`, `/ 4`, `/ 2` and `d_sae`.
    pub matryoshka_widths: Vec<usize>,
    /// Scale inputs to mean norm sqrt(d_in) during training (folded into the weights after).
    pub normalize_activations: bool,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub seed: u64,
}

impl Default for SaeTrainingConfig {
    fn default() -> Self {
        Self {
            architecture: Architecture::TopK { k: 16 },
            hook_name: "blocks.2.hook_resid_pre".into(),
            expansion_factor: 8,
            corpus: Corpus::TinyTales { seed: 1 },
            context: 128,
            skip_special_tokens: true,
            training_tokens: 1_000_000,
            // Measured on the built-in model: at 1M tokens, batch 1024 (977 steps) beats 4096
            // (244 steps): TopK k=16 explains 0.93 of the variance against 0.90.
            batch_size: 1024,
            learning_rate: 1e-3,
            lr_warmup_steps: 20,
            lr_schedule: LrSchedule::Cosine,
            lr_end_fraction: 0.1,
            sparsity_coefficient: 5.0,
            sparsity_warmup_steps: 50,
            aux_coefficient: 1.0 / 32.0,
            dead_window_tokens: 200_000,
            b_dec_init: DecoderBiasInit::GeometricMedian,
            decoder_init_norm: 0.1,
            // In units of the normalised input (mean norm sqrt(d_in)); initial pre-activations
            // are ~0.1, so 0.05 lets about half fire, and a bandwidth as wide lets the
            // straight-through gradient reach the threshold. (0.001, the paper's value for far
            // longer runs, left the threshold where it started: L0 stayed ~220 at any penalty.)
            jumprelu_init_threshold: 0.05,
            jumprelu_bandwidth: 0.05,
            jumprelu_threshold_lr_multiplier: 10.0,
            matryoshka_widths: Vec::new(),
            batchtopk_threshold_rate: 0.01,
            normalize_activations: true,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            seed: 1,
        }
    }
}

/// Most Matryoshka levels a recipe may have.
pub const MAX_MATRYOSHKA_LEVELS: usize = 32;

impl SaeTrainingConfig {
    pub fn steps(&self) -> usize {
        self.training_tokens / self.batch_size.max(1)
    }

    /// The Matryoshka prefix widths for an SAE of `d_sae` latents: strictly increasing, each
    /// from 1 to `d_sae`, `d_sae` last (as SAELens checks them).
    pub fn matryoshka_levels(&self, d_sae: usize) -> Result<Vec<usize>> {
        let mut widths = if self.matryoshka_widths.is_empty() {
            let mut w: Vec<usize> = [8, 4, 2]
                .iter()
                .map(|f| d_sae / f)
                .filter(|&w| w > 0)
                .collect();
            w.dedup();
            w
        } else {
            self.matryoshka_widths.clone()
        };
        if widths.last() != Some(&d_sae) {
            widths.push(d_sae);
        }
        if widths.len() > MAX_MATRYOSHKA_LEVELS {
            return Err(SaeplayError::InvalidSetting(format!(
                "{} Matryoshka widths were given; at most {MAX_MATRYOSHKA_LEVELS} are allowed",
                widths.len()
            )));
        }
        if widths[0] == 0
            || widths.windows(2).any(|p| p[0] >= p[1])
            || widths.iter().any(|&w| w > d_sae)
        {
            return Err(SaeplayError::InvalidSetting(format!(
                "the Matryoshka widths must rise strictly from at least 1 to the SAE's {d_sae} latents (got {})",
                widths
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(widths)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(SaeplayError::InvalidSetting(what));
        if self.batch_size == 0 {
            return bad("the batch size must be at least 1".into());
        }
        if self.expansion_factor == 0 {
            return bad("the expansion factor must be at least 1".into());
        }
        if self.steps() == 0 {
            return bad(format!(
                "{} training tokens make no step at batch size {}: train on more tokens",
                self.training_tokens, self.batch_size
            ));
        }
        for (name, value) in [
            ("learning rate", self.learning_rate),
            ("sparsity coefficient", self.sparsity_coefficient),
            ("aux coefficient", self.aux_coefficient),
            ("decoder init norm", self.decoder_init_norm),
            ("JumpReLU bandwidth", self.jumprelu_bandwidth),
            ("JumpReLU initial threshold", self.jumprelu_init_threshold),
            (
                "JumpReLU threshold learning-rate multiplier",
                self.jumprelu_threshold_lr_multiplier,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return bad(format!(
                    "the {name} must be a finite number >= 0 (got {value})"
                ));
            }
        }
        if self.learning_rate == 0.0 {
            return bad("the learning rate must be above 0".into());
        }
        if matches!(self.architecture, Architecture::JumpRelu)
            && (self.jumprelu_bandwidth == 0.0 || self.jumprelu_init_threshold == 0.0)
        {
            return bad("JumpReLU needs a bandwidth and an initial threshold above 0".into());
        }
        // The widths' upper bound, d_sae, is checked when the trainer knows d_in.
        if self.matryoshka_widths.first() == Some(&0)
            || self.matryoshka_widths.windows(2).any(|p| p[0] >= p[1])
        {
            return bad("the Matryoshka widths must rise strictly, from at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.lr_end_fraction) {
            return bad("the final learning-rate fraction must be between 0 and 1".into());
        }
        if !(0.0..1.0).contains(&self.adam_beta1) || !(0.0..1.0).contains(&self.adam_beta2) {
            return bad("Adam's betas must be in [0, 1)".into());
        }
        Ok(())
    }

    /// Bytes a run would hold at its peak for activations of width `d_in`, with `stored_vectors`
    /// input vectors kept beside it (captured, or the shuffle buffer): the parameters four times
    /// over (values, gradients, Adam's two moments) plus a transposed copy, and per batch row
    /// about eight latent-wide and six input-wide f32 tensors (pre-activations, activations, the
    /// selection mask, their gradients, the reconstruction and its error).
    pub fn memory_needed(&self, d_in: usize, stored_vectors: usize) -> u64 {
        let (d_in, batch) = (d_in as u128, self.batch_size as u128);
        let d_sae = d_in.saturating_mul(self.expansion_factor as u128);
        let parameters = d_sae.saturating_mul(2 * d_in + 3).saturating_add(d_in);
        let per_row = d_sae.saturating_mul(8).saturating_add(6 * d_in);
        crate::memory::f32_bytes(
            parameters
                .saturating_mul(5)
                .saturating_add(batch.saturating_mul(per_row))
                .saturating_add((stored_vectors as u128).saturating_mul(d_in)),
        )
    }

    /// The learning rate at a step: linear warm-up, then constant or cosine decay.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        Schedule {
            kind: self.lr_schedule,
            peak: self.learning_rate,
            end: self.learning_rate * self.lr_end_fraction,
            warmup_steps: self.lr_warmup_steps,
            total_steps: self.steps(),
        }
        .at(step)
    }

    /// The sparsity coefficient at a step, after its linear warm-up.
    pub fn sparsity_coefficient_at(&self, step: usize) -> f64 {
        if step >= self.sparsity_warmup_steps {
            self.sparsity_coefficient
        } else {
            self.sparsity_coefficient * (step + 1) as f64 / self.sparsity_warmup_steps as f64
        }
    }
}

/// One step's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    pub step: usize,
    pub loss: f32,
    /// Each loss term by SAELens's name (`mse_loss`, `l1_loss`, `auxk_loss`, ...).
    pub terms: Vec<(String, f32)>,
    /// Mean active latents per vector.
    pub l0: f32,
    /// `1 - SSE / SST` on this batch (variance about the batch mean).
    pub explained_variance: f32,
    /// Latents that have not fired within the dead window.
    pub dead_fraction: f32,
    pub learning_rate: f64,
    pub sparsity_coefficient: f64,
    pub tokens_seen: usize,
}

/// Trains one SAE.
pub struct SaeTrainer {
    pub config: SaeTrainingConfig,
    pub sae_config: SaeConfig,
    /// Autodiff device the parameters live on, and the plain device under it.
    device: Device,
    inner_device: Device,
    params: Params,
    moments: Moments<&'static str, Tensor<2>>,
    selection: Selection,
    /// Inputs are multiplied by this before the SAE sees them.
    pub input_scale: f32,
    pub step: usize,
    pub tokens_seen: usize,
    /// Training vectors since each latent last fired.
    since_fired: Vec<usize>,
    /// BatchTopK's running inference threshold (in the scaled space).
    batchtopk_threshold: Option<f64>,
    /// On a CPU device every architecture trains on host buffers (`host_train`); `params` and
    /// `moments` are then empty.
    host: Option<HostSae>,
}

/// What one step measured, whichever path ran it.
struct StepFigures {
    loss: f32,
    terms: Vec<(&'static str, f32)>,
    l0_sum: f32,
    fired: Vec<f32>,
    sse: f32,
    sst: f32,
    /// BatchTopK: the smallest activation kept (1e30 when none).
    smallest: f32,
}

/// Parameters and moments where training keeps them: on the host on a CPU device
/// (unless `burn_ops`), as burn tensors on `device` otherwise.
fn place(
    sae_config: &SaeConfig,
    named: Vec<NamedHostParam>,
    device: &Device,
    burn_ops: bool,
) -> (Params, Moments<&'static str, Tensor<2>>, Option<HostSae>) {
    if !burn_ops && crate::backend::is_host_device(device) {
        let unit_norm_decoder = matches!(sae_config.architecture, Architecture::Gated);
        let host = HostSae::from_named(sae_config.d_in, sae_config.d_sae, named, unit_norm_decoder);
        return (Params::new(), Moments::default(), Some(host));
    }
    let mut params = Params::new();
    let mut moments = Moments::default();
    for p in named {
        moments
            .first
            .insert(p.name, float_tensor(p.first, p.shape, device));
        moments
            .second
            .insert(p.name, float_tensor(p.second, p.shape, device));
        let tensor = float_tensor(p.values, p.shape, device);
        params.insert(p.name, Tensor::from_inner(tensor).require_grad());
    }
    (params, moments, None)
}

impl SaeTrainer {
    /// A fresh SAE for activations of width `d_in`; `first_batch` (row-major, at least one row)
    /// sets the input scale and `b_dec`.
    pub fn new(
        config: SaeTrainingConfig,
        d_in: usize,
        model_name: &str,
        first_batch: &[f32],
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let sae_config = SaeConfig {
            architecture: config.architecture,
            d_in,
            d_sae: d_in * config.expansion_factor,
            hook_name: config.hook_name.clone(),
            model_name: model_name.to_string(),
            normalize_activations: Default::default(),
        };
        sae_config.validate()?;
        if matches!(
            config.architecture,
            Architecture::MatryoshkaBatchTopK { .. }
        ) {
            config.matryoshka_levels(sae_config.d_sae)?;
        }
        if first_batch.is_empty() || !first_batch.len().is_multiple_of(d_in) {
            return Err(SaeplayError::InvalidSetting(format!(
                "the first batch must be whole rows of {d_in} numbers"
            )));
        }
        if first_batch.iter().any(|v| !v.is_finite()) {
            return Err(SaeplayError::InvalidSetting(
                "the activations hold values that are not finite".into(),
            ));
        }
        let rows = first_batch.len() / d_in;
        let input_scale = if config.normalize_activations {
            let mean_norm = first_batch
                .chunks_exact(d_in)
                .map(|r| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
                .sum::<f64>()
                / rows as f64;
            if mean_norm > 0.0 {
                ((d_in as f64).sqrt() / mean_norm) as f32
            } else {
                1.0
            }
        } else {
            1.0
        };
        let scaled: Vec<f32> = first_batch.iter().map(|v| v * input_scale).collect();
        let named = initial_params(&config, &sae_config, &scaled, rows)?
            .into_iter()
            .map(|(name, (shape, values))| NamedHostParam {
                name,
                shape,
                first: vec![0.0; values.len()],
                second: vec![0.0; values.len()],
                values,
            })
            .collect();
        let inner_device = device.clone();
        let device = device.clone().autodiff();
        let (params, moments, host) = place(&sae_config, named, &inner_device, false);
        let batchtopk_threshold = matches!(
            config.architecture,
            Architecture::BatchTopK { .. } | Architecture::MatryoshkaBatchTopK { .. }
        )
        .then_some(0.0);
        Ok(Self {
            selection: Selection::for_device(&inner_device),
            since_fired: vec![0; sae_config.d_sae],
            sae_config,
            config,
            device,
            inner_device,
            params,
            moments,
            input_scale,
            step: 0,
            tokens_seen: 0,
            batchtopk_threshold,
            host,
        })
    }

    /// Train on burn's ops even where the host path would run (for comparison and tests).
    pub fn with_burn_ops(mut self) -> Self {
        if let Some(host) = self.host.take() {
            let (params, moments, _) =
                place(&self.sae_config, host.named(), &self.inner_device, true);
            self.params = params;
            self.moments = moments;
        }
        self
    }

    /// Whether steps run on host buffers (`host_train`) rather than burn's ops.
    pub fn trains_on_host(&self) -> bool {
        self.host.is_some()
    }

    pub fn total_steps(&self) -> usize {
        self.config.steps()
    }

    pub fn is_finished(&self) -> bool {
        self.step >= self.total_steps()
    }

    /// Bytes of a [`SaeTrainer::checkpoint`]'s tensors: each parameter and its two Adam moments.
    pub fn checkpoint_bytes(&self) -> u64 {
        let values: usize = match &self.host {
            Some(host) => host.parameter_count(),
            None => self.params.values().map(|t| t.shape().num_elements()).sum(),
        };
        crate::memory::f32_bytes(3 * values as u128)
    }

    fn dead_row(&self) -> (Vec<f32>, usize) {
        let window = self.config.dead_window_tokens;
        let row: Vec<f32> = self
            .since_fired
            .iter()
            .map(|&n| if n >= window { 1.0 } else { 0.0 })
            .collect();
        let count = row.iter().filter(|&&v| v > 0.0).count();
        (row, count)
    }

    /// One Adam step on `batch` (row-major `[n, d_in]`, at the model's scale). If the loss or
    /// the update is not finite, nothing changes and [`SaeplayError::Diverged`] is returned.
    pub async fn train_step(&mut self, batch: &[f32]) -> Result<StepStats> {
        let d_in = self.sae_config.d_in;
        if batch.is_empty() || !batch.len().is_multiple_of(d_in) {
            return Err(SaeplayError::InvalidSetting(format!(
                "a batch must be whole rows of {d_in} numbers"
            )));
        }
        let rows = batch.len() / d_in;
        let lr = self.config.learning_rate_at(self.step);
        let sparsity_coefficient = self.config.sparsity_coefficient_at(self.step);
        let figures = if self.host.is_some() {
            self.host_step(batch, lr, sparsity_coefficient)?
        } else {
            self.device_step(batch, rows, lr, sparsity_coefficient)
                .await?
        };
        Ok(self.finish_step(figures, rows, lr, sparsity_coefficient))
    }

    /// A step on host buffers.
    fn host_step(
        &mut self,
        batch: &[f32],
        lr: f64,
        sparsity_coefficient: f64,
    ) -> Result<StepFigures> {
        let (dead, dead_count) = self.dead_row();
        let scale = self.input_scale;
        let x: Vec<f32> = batch.iter().map(|v| v * scale).collect();
        let matryoshka_widths = match self.config.architecture {
            Architecture::MatryoshkaBatchTopK { .. } => {
                self.config.matryoshka_levels(self.sae_config.d_sae)?
            }
            _ => Vec::new(),
        };
        let settings = HostStep {
            architecture: self.config.architecture,
            matryoshka_widths: &matryoshka_widths,
            adam: Adam::new(self.config.adam_beta1, self.config.adam_beta2),
            step: self.step,
            lr,
            sparsity_coefficient,
            bandwidth: self.config.jumprelu_bandwidth,
            threshold_lr_multiplier: self.config.jumprelu_threshold_lr_multiplier,
            auxk: Some(AuxK {
                dead: &dead,
                dead_count,
                coefficient: self.config.aux_coefficient,
            }),
        };
        let step = self.step;
        let host = self.host.as_mut().expect("checked by the caller");
        let figures = host
            .step(&x, &settings)
            .map_err(|e| SaeplayError::Diverged {
                step,
                what: match e {
                    HostStepError::Loss => "the loss",
                    HostStepError::Update => "a parameter update",
                }
                .into(),
            })?;
        Ok(StepFigures {
            loss: figures.loss,
            terms: figures.terms,
            l0_sum: figures.l0_sum,
            fired: figures.fired,
            sse: figures.sse,
            sst: figures.sst,
            smallest: figures.smallest,
        })
    }

    /// A step on burn's ops, with autodiff.
    async fn device_step(
        &mut self,
        batch: &[f32],
        rows: usize,
        lr: f64,
        sparsity_coefficient: f64,
    ) -> Result<StepFigures> {
        let (d_in, d_sae) = (self.sae_config.d_in, self.sae_config.d_sae);
        let scale = self.input_scale;
        let x = float_tensor(
            batch.iter().map(|v| v * scale).collect(),
            [rows, d_in],
            &self.device,
        );
        let (dead_row, dead_count) = self.dead_row();
        let needs_dead = matches!(
            self.config.architecture,
            Architecture::TopK { .. }
                | Architecture::BatchTopK { .. }
                | Architecture::MatryoshkaBatchTopK { .. }
        );
        let context = TrainingContext {
            selection: self.selection,
            sparsity_coefficient,
            aux_coefficient: self.config.aux_coefficient,
            dead: (needs_dead && dead_count > 0)
                .then(|| (float_tensor(dead_row, [1, d_sae], &self.device), dead_count)),
            bandwidth: self.config.jumprelu_bandwidth,
        };
        let forward = self.training_forward(x.clone(), &context).await?;
        let TrainingForward {
            activity,
            x_hat,
            loss,
            terms,
            smallest_kept,
        } = forward;
        let grads = loss.backward();

        // Everything the host needs, in one read: loss, terms, L0 sum, SSE, SST, smallest kept,
        // then how often each latent fired (unless the architecture already knows on the host).
        let x_inner = x.inner();
        let err = (x_inner.clone() - x_hat.inner()).powi_scalar(2).sum();
        let centred = x_inner.clone() - x_inner.mean_dim(0);
        let total = centred.powi_scalar(2).sum();
        let (l0_tensor, fired_tensor, host_activity) = match activity {
            Activity::Dense(acts) => {
                let active = acts.inner().greater_elem(0.0).float();
                let l0_sum = active.clone().sum();
                (l0_sum, Some(active.sum_dim(0).reshape([d_sae])), None)
            }
            Activity::Host { l0_sum, fired } => (
                Tensor::zeros([1], &self.inner_device),
                None,
                Some((l0_sum, fired)),
            ),
        };
        let mut scalars = vec![loss.inner()];
        scalars.extend(terms.iter().map(|(_, t)| t.clone().inner()));
        scalars.extend([l0_tensor, err, total]);
        scalars.push(match &smallest_kept {
            Some(t) => t.clone().inner(),
            None => Tensor::zeros([1], &self.inner_device),
        });
        let n_scalars = scalars.len();
        scalars.extend(fired_tensor);
        let host = read_f32(Tensor::cat(scalars, 0)).await?;
        let (values, device_fired) = host.split_at(n_scalars);
        let loss_value = values[0];
        if !loss_value.is_finite() {
            return Err(SaeplayError::Diverged {
                step: self.step,
                what: "the loss".into(),
            });
        }
        let term_values = &values[1..1 + terms.len()];
        let [device_l0_sum, sse, sst, smallest] = values[1 + terms.len()..] else {
            unreachable!("four figures follow the terms")
        };
        let (l0_sum, fired) = match &host_activity {
            Some((l0_sum, fired)) => (*l0_sum, fired.as_slice()),
            None => (device_l0_sum, device_fired),
        };

        // Adam, into new tensors first: the old ones stay if anything is not finite.
        let adam = Adam::new(self.config.adam_beta1, self.config.adam_beta2);
        let mut updated = Vec::new();
        let mut check: Option<Tensor<1>> = None;
        for (&name, param) in &self.params {
            let Some(grad) = param.grad(&grads) else {
                continue;
            };
            let lr = if name == THRESHOLD {
                lr * self.config.jumprelu_threshold_lr_multiplier
            } else {
                lr
            };
            let (new, m, v) = adam.update(
                param.clone().inner(),
                grad,
                (
                    self.moments.first[name].clone(),
                    self.moments.second[name].clone(),
                ),
                self.step,
                lr,
                0.0,
            );
            let new = if name == THRESHOLD {
                new.clamp_min(0.0)
            } else {
                new
            };
            let sum = new.clone().sum();
            check = Some(match check {
                Some(acc) => acc + sum,
                None => sum,
            });
            updated.push((name, new, m, v));
        }
        if let Some(check) = check
            && !read_f32(check).await?[0].is_finite()
        {
            return Err(SaeplayError::Diverged {
                step: self.step,
                what: "a parameter update".into(),
            });
        }
        for (name, mut new, m, v) in updated {
            // Gated SAEs keep unit-norm decoder rows, as in the paper (Rajamanoharan et al.
            // 2024): without the constraint the gate stayed open on hundreds of latents here.
            if name == W_DEC && matches!(self.config.architecture, Architecture::Gated) {
                let norms = new.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-8);
                new = new / norms;
            }
            self.params
                .insert(name, Tensor::from_inner(new).require_grad());
            self.moments.first.insert(name, m);
            self.moments.second.insert(name, v);
        }
        Ok(StepFigures {
            loss: loss_value,
            terms: terms
                .iter()
                .map(|(name, _)| *name)
                .zip(term_values.iter().copied())
                .collect(),
            l0_sum,
            fired: fired.to_vec(),
            sse,
            sst,
            smallest,
        })
    }

    /// The bookkeeping after a step: dead-latent counts, BatchTopK's threshold, the figures.
    fn finish_step(
        &mut self,
        figures: StepFigures,
        rows: usize,
        lr: f64,
        sparsity_coefficient: f64,
    ) -> StepStats {
        let d_sae = self.sae_config.d_sae;
        let StepFigures {
            loss,
            terms,
            l0_sum,
            fired,
            sse,
            sst,
            smallest,
        } = figures;
        for (since, &count) in self.since_fired.iter_mut().zip(&fired) {
            *since = if count > 0.0 { 0 } else { *since + rows };
        }
        if let Some(threshold) = &mut self.batchtopk_threshold
            && smallest < 1e29
        {
            let rate = self.config.batchtopk_threshold_rate;
            *threshold = if self.step == 0 {
                f64::from(smallest)
            } else {
                (1.0 - rate) * *threshold + rate * f64::from(smallest)
            };
        }
        let stats = StepStats {
            step: self.step,
            loss,
            terms: terms
                .into_iter()
                .map(|(name, v)| (name.to_string(), v))
                .collect(),
            l0: l0_sum / rows as f32,
            explained_variance: if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
            dead_fraction: self.dead_row().1 as f32 / d_sae as f32,
            learning_rate: lr,
            sparsity_coefficient,
            tokens_seen: self.tokens_seen + rows,
        };
        self.step += 1;
        self.tokens_seen += rows;
        stats
    }

    async fn training_forward(
        &self,
        x: Tensor<2>,
        context: &TrainingContext,
    ) -> Result<TrainingForward> {
        let p = &self.params;
        match self.config.architecture {
            Architecture::Standard => arch::standard::training_forward(p, x, context).await,
            Architecture::TopK { k } => arch::topk::training_forward(p, x, k, context).await,
            Architecture::BatchTopK { k } => {
                arch::batchtopk::training_forward(p, x, k, context).await
            }
            Architecture::Gated => arch::gated::training_forward(p, x, context).await,
            Architecture::JumpRelu => arch::jumprelu::training_forward(p, x, context).await,
            Architecture::MatryoshkaBatchTopK { k } => {
                let widths = self.config.matryoshka_levels(self.sae_config.d_sae)?;
                arch::matryoshka::training_forward(p, x, k, &widths, context).await
            }
        }
    }

    /// Latents that have not fired within the dead window, as a fraction.
    pub fn dead_fraction(&self) -> f32 {
        self.dead_row().1 as f32 / self.sae_config.d_sae as f32
    }

    /// The SAE as trained so far, at the model's scale (the input scale folded in), on the
    /// plain device.
    pub fn sae(&self) -> Sae {
        let s = self.input_scale;
        let host: BTreeMap<&str, Tensor<2>> = match &self.host {
            Some(host) => host
                .named()
                .into_iter()
                .map(|p| (p.name, float_tensor(p.values, p.shape, &self.inner_device)))
                .collect(),
            None => BTreeMap::new(),
        };
        let get = |name: &'static str| match host.get(name) {
            Some(tensor) => tensor.clone(),
            None => arch::param(&self.params, name).inner(),
        };
        let mut params = Params::new();
        params.insert(W_ENC, get(W_ENC) * s);
        params.insert(W_DEC, get(W_DEC) / s);
        params.insert(B_DEC, get(B_DEC) / s);
        match self.config.architecture {
            Architecture::Gated => {
                for name in [B_GATE, R_MAG, B_MAG] {
                    params.insert(name, get(name));
                }
            }
            Architecture::JumpRelu => {
                params.insert(B_ENC, get(B_ENC));
                params.insert(THRESHOLD, get(THRESHOLD));
            }
            Architecture::BatchTopK { .. } | Architecture::MatryoshkaBatchTopK { .. } => {
                params.insert(B_ENC, get(B_ENC));
                let threshold = self.batchtopk_threshold.unwrap_or(0.0) as f32;
                params.insert(
                    THRESHOLD,
                    Tensor::full([1, self.sae_config.d_sae], threshold, &self.inner_device),
                );
            }
            Architecture::Standard | Architecture::TopK { .. } => {
                params.insert(B_ENC, get(B_ENC));
            }
        }
        Sae::from_params(self.sae_config.clone(), params, &self.inner_device)
    }

    /// Everything needed to resume exactly: parameters and Adam moments (safetensors) and the
    /// trainer's state (JSON).
    pub async fn checkpoint(&self) -> Result<TrainerCheckpoint> {
        let mut tensors = Vec::new();
        if let Some(host) = &self.host {
            for p in host.named() {
                tensors.push((p.name.to_string(), p.shape.to_vec(), p.values));
                for (prefix, values) in [
                    (FIRST_MOMENT_PREFIX, p.first),
                    (SECOND_MOMENT_PREFIX, p.second),
                ] {
                    tensors.push((moment_key(prefix, p.name), p.shape.to_vec(), values));
                }
            }
        }
        for (prefix, params) in [
            ("", &self.params),
            (FIRST_MOMENT_PREFIX, &self.moments.first),
            (SECOND_MOMENT_PREFIX, &self.moments.second),
        ] {
            for (name, tensor) in params {
                let tensor = if prefix.is_empty() {
                    tensor.clone().inner()
                } else {
                    tensor.clone()
                };
                let shape = tensor.dims().to_vec();
                tensors.push((format!("{prefix}{name}"), shape, read_f32(tensor).await?));
            }
        }
        let named: Vec<(&str, &[usize], &[f32])> = tensors
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
            .collect();
        let state = CheckpointState {
            config: self.config.clone(),
            sae_config: self.sae_config.clone(),
            input_scale: self.input_scale,
            step: self.step,
            tokens_seen: self.tokens_seen,
            since_fired: self.since_fired.clone(),
            batchtopk_threshold: self.batchtopk_threshold,
        };
        Ok(TrainerCheckpoint {
            tensors: write_safetensors(named.into_iter()),
            state: serde_json::to_string_pretty(&state).map_err(|source| SaeplayError::Json {
                what: "the trainer state",
                source,
            })?,
        })
    }

    /// The run a checkpoint belongs to, as it was configured, and the steps it had taken.
    pub fn run_of(checkpoint: &TrainerCheckpoint) -> Result<(SaeTrainingConfig, usize)> {
        let state: CheckpointState = serde_json::from_str(&checkpoint.state)
            .map_err(|e| SaeplayError::Checkpoint(format!("its state is not valid JSON: {e}")))?;
        Ok((state.config, state.step))
    }

    /// Resume from a checkpoint.
    pub fn restore(checkpoint: &TrainerCheckpoint, device: &Device) -> Result<Self> {
        let state: CheckpointState = serde_json::from_str(&checkpoint.state)
            .map_err(|e| SaeplayError::SaeFile(format!("the trainer state is not valid: {e}")))?;
        state.config.validate()?;
        let tensors = crate::io::tensors::read_f32_tensors(&checkpoint.tensors)
            .map_err(|e| SaeplayError::SaeFile(format!("the checkpoint: {e}")))?;
        let inner_device = device.clone();
        let autodiff = device.clone().autodiff();
        let expected = trained_shapes(&state.config, &state.sae_config);
        let mut named = Vec::new();
        for (name, shape) in expected {
            let load = |key: String| -> Result<Vec<f32>> {
                Ok(checkpoint::take(&tensors, &key, &shape)?.values.clone())
            };
            named.push(NamedHostParam {
                name,
                shape,
                values: load(name.to_string())?,
                first: load(moment_key(FIRST_MOMENT_PREFIX, name))?,
                second: load(moment_key(SECOND_MOMENT_PREFIX, name))?,
            });
        }
        let (params, moments, host) = place(&state.sae_config, named, &inner_device, false);
        if state.since_fired.len() != state.sae_config.d_sae {
            return Err(SaeplayError::SaeFile(
                "the trainer state's dead-latent counts do not match d_sae".into(),
            ));
        }
        Ok(Self {
            selection: Selection::for_device(&inner_device),
            config: state.config,
            sae_config: state.sae_config,
            device: autodiff,
            inner_device,
            params,
            moments,
            input_scale: state.input_scale,
            step: state.step,
            tokens_seen: state.tokens_seen,
            since_fired: state.since_fired,
            batchtopk_threshold: state.batchtopk_threshold,
            host,
        })
    }
}

/// A trainer saved to resume later.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerCheckpoint {
    /// Parameters (training names) and Adam moments (`adam_m.*`, `adam_v.*`).
    pub tensors: Vec<u8>,
    /// [`CheckpointState`] as JSON.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    config: SaeTrainingConfig,
    sae_config: SaeConfig,
    input_scale: f32,
    step: usize,
    tokens_seen: usize,
    since_fired: Vec<usize>,
    batchtopk_threshold: Option<f64>,
}

/// The parameters an architecture trains, with their `[rows, cols]` shapes (vectors as
/// `[1, n]`): the SAE's own, less BatchTopK's threshold, which is a running average.
fn trained_shapes(config: &SaeTrainingConfig, sae: &SaeConfig) -> Vec<(&'static str, [usize; 2])> {
    let batchtopk = matches!(
        config.architecture,
        Architecture::BatchTopK { .. } | Architecture::MatryoshkaBatchTopK { .. }
    );
    sae.parameter_shapes()
        .into_iter()
        .filter(|(name, _)| !(batchtopk && *name == THRESHOLD))
        .map(|(name, shape)| match shape[..] {
            [rows, cols] => (name, [rows, cols]),
            _ => (name, [1, shape[0]]),
        })
        .collect()
}

/// Host parameters by name: `[rows, cols]` and values.
type InitialParams = BTreeMap<&'static str, ([usize; 2], Vec<f32>)>;

/// Initial parameters on the host: decoder rows in random directions with norm
/// `decoder_init_norm`, `W_enc = W_dec^T`, `b_dec` from the first (scaled) batch, biases zero.
fn initial_params(
    config: &SaeTrainingConfig,
    sae: &SaeConfig,
    scaled_batch: &[f32],
    rows: usize,
) -> Result<InitialParams> {
    let (d_in, d_sae) = (sae.d_in, sae.d_sae);
    let mut rng = SplitMix64::new(config.seed ^ 0x5AE0_1417);
    let mut w_dec = vec![0.0f32; d_sae * d_in];
    for row in w_dec.chunks_exact_mut(d_in) {
        for v in row.iter_mut() {
            *v = rng.normal();
        }
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        // Gated keeps unit-norm decoder rows throughout (see `train_step`).
        let target = match config.architecture {
            Architecture::Gated => 1.0,
            _ => config.decoder_init_norm as f32,
        };
        let scale = target / norm;
        row.iter_mut().for_each(|v| *v *= scale);
    }
    let mut w_enc = vec![0.0f32; d_in * d_sae];
    for i in 0..d_sae {
        for j in 0..d_in {
            w_enc[j * d_sae + i] = w_dec[i * d_in + j];
        }
    }
    let b_dec = match config.b_dec_init {
        DecoderBiasInit::Zeros => vec![0.0; d_in],
        DecoderBiasInit::Mean => {
            let mut mean = vec![0.0f64; d_in];
            for row in scaled_batch.chunks_exact(d_in) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += f64::from(*v);
                }
            }
            mean.iter().map(|m| (m / rows as f64) as f32).collect()
        }
        DecoderBiasInit::GeometricMedian => geometric_median(scaled_batch, rows, d_in, 100, 1e-5)?,
    };
    let zeros = vec![0.0f32; d_sae];
    let mut params = BTreeMap::new();
    params.insert(W_ENC, ([d_in, d_sae], w_enc));
    params.insert(W_DEC, ([d_sae, d_in], w_dec));
    params.insert(B_DEC, ([1, d_in], b_dec));
    match config.architecture {
        Architecture::Gated => {
            for name in [B_GATE, R_MAG, B_MAG] {
                params.insert(name, ([1, d_sae], zeros.clone()));
            }
        }
        Architecture::JumpRelu => {
            params.insert(B_ENC, ([1, d_sae], zeros.clone()));
            let threshold = config.jumprelu_init_threshold as f32;
            params.insert(THRESHOLD, ([1, d_sae], vec![threshold; d_sae]));
        }
        _ => {
            params.insert(B_ENC, ([1, d_sae], zeros));
        }
    }
    Ok(params)
}

/// What a progress callback sees after each step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub stats: StepStats,
    pub total_steps: usize,
    /// Training vectors per second over the run so far (activation capture included).
    pub vectors_per_second: f64,
    pub elapsed_seconds: f64,
    pub seconds_left: f64,
}

/// What a progress callback asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Return now; calling [`run`] again resumes.
    Pause,
    /// Return now and train no further.
    Stop,
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Finished,
    Paused,
    Stopped,
}

/// Where training batches come from: a live store, or activations captured earlier.
pub trait BatchSource {
    /// The next `n` vectors, row-major `[n, d_in]`.
    fn next_batch(&mut self, n: usize) -> impl std::future::Future<Output = Result<Vec<f32>>>;
    /// Vectors handed out so far, where replaying that many gives the same next batch (`None`
    /// for a source that cannot be replayed, such as the model streaming text).
    fn rows_served(&self) -> Option<u64> {
        None
    }
}

impl BatchSource for super::store::ActivationStore {
    async fn next_batch(&mut self, n: usize) -> Result<Vec<f32>> {
        let mut batches = super::store::ActivationStore::next_batch(self, n).await?;
        Ok(batches.swap_remove(0))
    }
}

/// Captured activations in memory, served in a fresh random order each pass.
pub struct CapturedActivations {
    values: Vec<f32>,
    width: usize,
    order: Vec<usize>,
    cursor: usize,
    rng: SplitMix64,
    served: u64,
}

impl CapturedActivations {
    pub fn new(values: Vec<f32>, width: usize, seed: u64) -> Result<Self> {
        if width == 0 || values.is_empty() || !values.len().is_multiple_of(width) {
            return Err(SaeplayError::InvalidSetting(format!(
                "captured activations must be whole rows of {width} numbers"
            )));
        }
        let rows = values.len() / width;
        Ok(Self {
            values,
            width,
            order: (0..rows).collect(),
            cursor: rows,
            rng: SplitMix64::new(seed),
            served: 0,
        })
    }

    pub fn rows(&self) -> usize {
        self.order.len()
    }

    /// The next row's index, shuffling again at the start of each pass (Fisher-Yates).
    fn next_row(&mut self) -> usize {
        if self.cursor == self.order.len() {
            for i in (1..self.order.len()).rev() {
                let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
                self.order.swap(i, j);
            }
            self.cursor = 0;
        }
        self.cursor += 1;
        self.served += 1;
        self.order[self.cursor - 1]
    }

    /// Hand out `rows` rows without copying them: where a resumed run picks up.
    pub fn skip(&mut self, rows: u64) {
        for _ in 0..rows {
            self.next_row();
        }
    }
}

impl BatchSource for CapturedActivations {
    async fn next_batch(&mut self, n: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(n * self.width);
        for _ in 0..n {
            let row = self.next_row();
            out.extend_from_slice(&self.values[row * self.width..(row + 1) * self.width]);
        }
        Ok(out)
    }

    fn rows_served(&self) -> Option<u64> {
        Some(self.served)
    }
}

/// Train until finished, or until `on_step` asks to pause or stop. `now` gives seconds from
/// any fixed origin (the page passes `performance.now() / 1000`).
pub async fn run(
    trainer: &mut SaeTrainer,
    source: &mut impl BatchSource,
    now: &dyn Fn() -> f64,
    on_step: &mut dyn FnMut(&Progress) -> Control,
) -> Result<RunOutcome> {
    let start = now();
    let start_tokens = trainer.tokens_seen;
    while !trainer.is_finished() {
        let batch = source.next_batch(trainer.config.batch_size).await?;
        let stats = trainer.train_step(&batch).await?;
        let elapsed = (now() - start).max(1e-9);
        let vectors_per_second = (trainer.tokens_seen - start_tokens) as f64 / elapsed;
        let steps_left = trainer.total_steps().saturating_sub(trainer.step);
        let progress = Progress {
            stats,
            total_steps: trainer.total_steps(),
            vectors_per_second,
            elapsed_seconds: elapsed,
            seconds_left: steps_left as f64 * trainer.config.batch_size as f64
                / vectors_per_second.max(1e-9),
        };
        match on_step(&progress) {
            Control::Continue => {}
            Control::Pause => return Ok(RunOutcome::Paused),
            Control::Stop => return Ok(RunOutcome::Stopped),
        }
    }
    Ok(RunOutcome::Finished)
}
