//! The recipe: everything needed to train the same SAE again.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SaeplayError};
use crate::optim::{LrSchedule, Schedule};
use crate::sae::Architecture;
use crate::sae::store::Corpus;

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
        self.architecture
            .behaviour()
            .check_recipe(self)
            .or_else(bad)?;
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
