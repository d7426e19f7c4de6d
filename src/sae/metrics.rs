//! Held-out evaluation of an SAE, with SAELens's definitions.
//!
//! Over held-out windows the model runs three times per batch: clean, with the SAE's
//! reconstruction spliced in at its hook, and with the hook zero-ablated; the last two start at
//! the hook's block from the clean run's residual. The splice and the
//! ablation apply at the positions the SAE is trained on (special tokens are left as they are when
//! it was trained without them), and every reconstruction figure counts those positions only.
//!
//! - `mse`: mean over tokens and dimensions of `(x - x_hat)^2`;
//! - `explained_variance`: `1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`, pooled;
//! - `l0`: mean active latents per token; `l1`: mean `sum_i f_i` per token;
//! - dead: never active on the held-out tokens; dense: active on more than 10% of them;
//! - `shrinkage`: the relative reconstruction bias gamma of the Gated-SAE paper,
//!   `E||x_hat||^2 / E[x_hat . x]` (1 is unbiased, below 1 is shrinkage); `l2_ratio`: mean
//!   `||x_hat|| / ||x||` (SAELens); `cossim`: mean cosine of `x` and `x_hat` per token (SAEBench);
//! - SAEBench's core figures: the consistent-activation heuristic (per live feature, the tokens it
//!   fires on over the windows it fires in at least once, averaged), and the mean over latents of
//!   the largest cosine with any other latent's decoder row (and encoder column);
//! - on TinyTales windows, SAEBench's sparse probing (k = 1, 2, 5) and feature absorption per
//!   concept (`stats::probing`), training on the even windows and testing on the odd ones;
//! - cross-entropy clean / spliced / zero-ablated, `loss_recovered =
//!   (CE_zero - CE_sae) / (CE_zero - CE_clean)`, and `kl`: mean KL(clean || spliced) per token.

use std::sync::Arc;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::Sae;
use super::arch::{W_DEC, W_ENC};
use super::spread::{ForwardHelpers, HelperTask, SaeForHelpers, Spread};
use super::stats::{
    ConceptAbsorption, FeatureStatsAccumulator, Histogram, LabelledTokens, PROBE_KS, SparseProbe,
    absorption, log10_density_histogram, sparse_probing,
};
use super::store::Window;
use crate::backend::{float_tensor, int_tensor, read_f32};
use crate::clock::{sleep_ms, yield_now};
use crate::error::Result;
use crate::model::{HookContext, HookPoint, Hooks, LogitsFor, Model, PatchOp};

/// JSON has no NaN: serde_json writes it as `null`, and this reads `null` back as NaN, so a
/// metric that could not be computed does not make the whole file unreadable.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// A feature counts as dense above this density.
pub const DENSE_THRESHOLD: f64 = 0.1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeMetrics {
    /// Held-out tokens the figures are over.
    pub tokens: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub mse: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub explained_variance: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub l0: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub l1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub dead_fraction: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub dense_fraction: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub shrinkage: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub l2_ratio: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub ce_clean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub ce_with_sae: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub ce_zero_ablation: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_recovered: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub kl: f64,
    /// log10 of each live feature's density; dead features counted apart.
    pub density_histogram: Histogram,
    pub dead_features: usize,
    /// Fraction of held-out tokens on which each feature is active (for `sparsity.safetensors`).
    pub feature_density: Vec<f64>,
    /// TinyTales only: per concept, the best single feature by AUROC, and their mean.
    #[serde(default)]
    pub concept_recovery: Vec<super::features::ConceptRecovery>,
    #[serde(default)]
    pub mean_concept_auroc: Option<f64>,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub cossim: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub consistent_activation_heuristic: f64,
    /// NaN when the SAE is too wide to compare every pair of latents here.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub mean_max_decoder_cosine: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub mean_max_encoder_cosine: f64,
    /// TinyTales only: sparse probing per concept.
    #[serde(default)]
    pub sparse_probing: Vec<SparseProbe>,
    /// TinyTales only: absorption per concept.
    #[serde(default)]
    pub absorption: Vec<ConceptAbsorption>,
}

fn nan() -> f64 {
    f64::NAN
}

/// A figure a Pareto chart can put on an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    L0,
    ExplainedVariance,
    LossRecovered,
    Kl,
    Cossim,
    L2Ratio,
    RelativeReconstructionBias,
    FractionAlive,
    ConsistentActivation,
    MeanMaxDecoderCosine,
    MeanConceptAuroc,
    SparseProbingTop1,
    SparseProbingTop5,
    MeanAbsorptionFraction,
    FullAbsorptionRate,
}

impl Figure {
    pub const ALL: [Figure; 15] = [
        Figure::L0,
        Figure::ExplainedVariance,
        Figure::LossRecovered,
        Figure::Kl,
        Figure::Cossim,
        Figure::L2Ratio,
        Figure::RelativeReconstructionBias,
        Figure::FractionAlive,
        Figure::ConsistentActivation,
        Figure::MeanMaxDecoderCosine,
        Figure::MeanConceptAuroc,
        Figure::SparseProbingTop1,
        Figure::SparseProbingTop5,
        Figure::MeanAbsorptionFraction,
        Figure::FullAbsorptionRate,
    ];

    /// The name used in links and files (SAEBench's where it has one).
    pub fn name(self) -> &'static str {
        match self {
            Figure::L0 => "l0",
            Figure::ExplainedVariance => "explained_variance",
            Figure::LossRecovered => "loss_recovered",
            Figure::Kl => "kl",
            Figure::Cossim => "cossim",
            Figure::L2Ratio => "l2_ratio",
            Figure::RelativeReconstructionBias => "relative_reconstruction_bias",
            Figure::FractionAlive => "frac_alive",
            Figure::ConsistentActivation => "consistent_activation_heuristic",
            Figure::MeanMaxDecoderCosine => "average_max_decoder_cosine_sim",
            Figure::MeanConceptAuroc => "mean_concept_auroc",
            Figure::SparseProbingTop1 => "sae_top_1_test_accuracy",
            Figure::SparseProbingTop5 => "sae_top_5_test_accuracy",
            Figure::MeanAbsorptionFraction => "mean_absorption_fraction_score",
            Figure::FullAbsorptionRate => "mean_full_absorption_score",
        }
    }

    /// How a person reads it.
    pub fn label(self) -> &'static str {
        match self {
            Figure::L0 => "L0 (active latents per token)",
            Figure::ExplainedVariance => "explained variance",
            Figure::LossRecovered => "loss recovered",
            Figure::Kl => "KL divergence",
            Figure::Cossim => "cosine of reconstruction",
            Figure::L2Ratio => "L2 ratio",
            Figure::RelativeReconstructionBias => "relative reconstruction bias",
            Figure::FractionAlive => "fraction alive",
            Figure::ConsistentActivation => "consistent-activation heuristic",
            Figure::MeanMaxDecoderCosine => "mean max decoder cosine",
            Figure::MeanConceptAuroc => "mean concept AUROC",
            Figure::SparseProbingTop1 => "sparse probing, top 1",
            Figure::SparseProbingTop5 => "sparse probing, top 5",
            Figure::MeanAbsorptionFraction => "mean absorption fraction",
            Figure::FullAbsorptionRate => "full absorption rate",
        }
    }

    pub fn parse(name: &str) -> Option<Figure> {
        Figure::ALL.into_iter().find(|f| f.name() == name)
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl SaeMetrics {
    pub fn fraction_alive(&self) -> f64 {
        1.0 - self.dead_fraction
    }

    /// Mean sparse-probing test accuracy over concepts with the best `k`-th entry of
    /// [`PROBE_KS`].
    pub fn sparse_probing_mean(&self, k_index: usize) -> Option<f64> {
        mean(
            self.sparse_probing
                .iter()
                .filter_map(|p| p.accuracy.get(k_index).copied()),
        )
    }

    pub fn mean_absorption_fraction(&self) -> Option<f64> {
        mean(self.absorption.iter().map(|a| a.mean_absorption_fraction))
    }

    pub fn full_absorption_rate(&self) -> Option<f64> {
        mean(self.absorption.iter().map(|a| a.full_absorption_rate))
    }

    /// The value of `figure`, `None` when it was not computed (or is not a number).
    pub fn figure(&self, figure: Figure) -> Option<f64> {
        let value = match figure {
            Figure::L0 => self.l0,
            Figure::ExplainedVariance => self.explained_variance,
            Figure::LossRecovered => self.loss_recovered,
            Figure::Kl => self.kl,
            Figure::Cossim => self.cossim,
            Figure::L2Ratio => self.l2_ratio,
            Figure::RelativeReconstructionBias => self.shrinkage,
            Figure::FractionAlive => self.fraction_alive(),
            Figure::ConsistentActivation => self.consistent_activation_heuristic,
            Figure::MeanMaxDecoderCosine => self.mean_max_decoder_cosine,
            Figure::MeanConceptAuroc => self.mean_concept_auroc?,
            Figure::SparseProbingTop1 => self.sparse_probing_mean(0)?,
            Figure::SparseProbingTop5 => self.sparse_probing_mean(PROBE_KS.len() - 1)?,
            Figure::MeanAbsorptionFraction => self.mean_absorption_fraction()?,
            Figure::FullAbsorptionRate => self.full_absorption_rate()?,
        };
        value.is_finite().then_some(value)
    }
}

/// Most multiply-adds spent comparing every pair of latents (a 4,096-latent SAE on a 768-wide
/// model is 1.3e10; GPT-2's 24,576-latent SAEs, 4.6e11, are left out).
const MAX_COSINE_WORK: f64 = 2e10;

/// The mean over rows of `rows` `[m, d]` of the largest cosine with any other row, in blocks;
/// NaN when there are fewer than two rows or the work passes [`MAX_COSINE_WORK`].
pub async fn mean_max_cosine(rows: Tensor<2>) -> Result<f64> {
    let [m, d] = rows.dims();
    if m < 2 || (m as f64) * (m as f64) * (d as f64) > MAX_COSINE_WORK {
        return Ok(f64::NAN);
    }
    let norms = rows
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    let unit = rows / norms;
    let all_t = unit.clone().transpose();
    let block = ((16usize << 20) / m).clamp(1, m);
    let mut total = 0.0f64;
    let device = unit.device();
    for start in (0..m).step_by(block) {
        let end = (start + block).min(m);
        let sims = unit.clone().slice([start..end, 0..d]).matmul(all_t.clone()); // [b, m]
        // Each row's own cosine (1) is pushed out of the way.
        let own: Vec<f32> = (start..end)
            .flat_map(|r| (0..m).map(move |c| if c == r { 4.0 } else { 0.0 }))
            .collect();
        let own = float_tensor(own, [end - start, m], &device);
        let best = read_f32((sims - own).max_dim(1)).await?;
        total += best.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    Ok(total / m as f64)
}

/// A hook function that replaces the activation by `replace(activation)` at the masked
/// positions `[batch, pos, 1]` and keeps it elsewhere.
fn masked_patch(
    mask: Tensor<3>,
    replace: impl Fn(Tensor<3>) -> Tensor<3> + Send + Sync + 'static,
) -> PatchOp {
    let mask = Arc::new(mask);
    PatchOp::Map(Arc::new(move |activation: Tensor<3>, _: HookContext| {
        let replaced = replace(activation.clone());
        let mask = (*mask).clone();
        replaced * mask.clone() + activation * (mask.neg() + 1.0)
    }))
}

/// `[batch, pos, d]` through the SAE.
pub fn reconstruct_3d(sae: &Sae, activation: Tensor<3>) -> Tensor<3> {
    let [b, t, d] = activation.dims();
    sae.reconstruct(activation.reshape([b * t, d]))
        .reshape([b, t, d])
}

/// Per-token cross-entropy sum and KL sum against `clean_log_probs`, for next-token targets.
/// Log-probabilities over the vocabulary at every position, `[b * t, vocab]`, computed with the
/// maximum subtracted first so no entry is -inf on any backend (WebGPU's exp underflows where
/// the CPU's does not, and -inf times a zero mask is NaN).
fn next_token_log_probs(logits: Tensor<3>) -> Tensor<2> {
    let [b, t, v] = logits.dims();
    let flat = logits.reshape([b * t, v]);
    let shifted = flat.clone() - flat.max_dim(1);
    shifted.clone() - shifted.exp().sum_dim(1).log()
}

/// The most one set of evaluation logits may take: a 49,152-token vocabulary makes each
/// 128-token window's logits 25 MB, and the page's worker keeps its peak memory for good.
const EVAL_LOGITS_BYTES: usize = 32 << 20;

/// Cross-entropy and KL sums over windows' next-token predictions: clean, with the SAE spliced
/// in, and zero-ablated. Sums from several workers' windows add up ([`LossSums::add`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossSums {
    pub ce_clean: f64,
    pub ce_sae: f64,
    pub ce_zero: f64,
    pub kl: f64,
    /// Next-token targets the cross-entropy sums are over.
    pub ce_count: usize,
    /// Positions the KL sum is over.
    pub kl_count: usize,
}

impl LossSums {
    pub fn add(&mut self, other: &LossSums) {
        self.ce_clean += other.ce_clean;
        self.ce_sae += other.ce_sae;
        self.ce_zero += other.ce_zero;
        self.kl += other.kl;
        self.ce_count += other.ce_count;
        self.kl_count += other.kl_count;
    }
}

/// Positions the SAE is evaluated at: all but those holding `special_id`, `[b * t]` as 1 / 0.
fn kept_positions(ids: &[Vec<u32>], special_id: Option<u32>) -> Vec<f32> {
    ids.iter()
        .flatten()
        .map(|&id| if Some(id) == special_id { 0.0 } else { 1.0 })
        .collect()
}

/// One batch of equal-length windows through the model three times (clean; the SAE spliced in
/// and zero-ablated at the kept positions, these two started at the hook's block from the clean
/// residual): the clean activation at `hook` (`[b * t, d]`, row-major) and the loss sums.
pub async fn batch_losses(
    model: &Model,
    sae: &Sae,
    hook: HookPoint,
    ids: &[Vec<u32>],
    special_id: Option<u32>,
) -> Result<(Vec<f32>, LossSums)> {
    // A helper is handed the SAE and the hook apart: a mismatch is an error, not a broken splice.
    let d = hook.width(model.dims());
    sae.check_fits(&hook.to_string(), d)?;
    let device = model.device().clone();
    let (b, t) = (ids.len(), ids.first().map_or(0, Vec::len));
    let resume = hook.resume_point(model.dims().n_layers);
    let captures = std::iter::once(hook).chain(resume.map(|(_, at)| at));
    let clean = model.forward(ids, &Hooks::capture(captures), LogitsFor::AllPositions)?;
    let x = clean.activation(hook).expect("captured").clone();
    let mut sums = LossSums::default();
    // Cross-entropy over next-token targets (positions 0..t-1), and KL per position. One set of
    // logits at a time beside the clean log-probs (see EVAL_LOGITS_BYTES).
    if t > 1 {
        let mask = float_tensor(kept_positions(ids, special_id), [b, t, 1], &device);
        // The spliced and ablated runs equal the clean one up to the hook's block.
        let start =
            resume.map(|(layer, at)| (layer, clean.activation(at).expect("captured").clone()));
        let patched_run = |hooks: &Hooks| match &start {
            Some((layer, resid)) => {
                model.forward_from(*layer, resid.clone(), hooks, LogitsFor::AllPositions)
            }
            None => model.forward(ids, hooks, LogitsFor::AllPositions),
        };
        let targets: Vec<i64> = ids
            .iter()
            .flat_map(|r| r[1..].iter().map(|&id| i64::from(id)).chain([0]))
            .collect();
        let targets = int_tensor(targets, [b * t, 1], &device);
        let valid: Vec<f32> = (0..b)
            .flat_map(|_| (0..t).map(|p| if p + 1 < t { 1.0 } else { 0.0 }))
            .collect();
        let valid = float_tensor(valid, [b * t, 1], &device);
        let ce = |lp: &Tensor<2>| {
            (lp.clone().gather(1, targets.clone()) * valid.clone())
                .sum()
                .neg()
        };
        let clean_lp = next_token_log_probs(clean.logits);
        let ce_clean_sum = ce(&clean_lp);
        let spliced_sae = sae.clone();
        let with_sae = patched_run(&Hooks::none().with_patch(
            hook,
            masked_patch(mask.clone(), move |a| reconstruct_3d(&spliced_sae, a)),
        ))?;
        let sae_lp = next_token_log_probs(with_sae.logits);
        let ce_sae_sum = ce(&sae_lp);
        let kl_sum = (clean_lp.clone().exp() * (clean_lp - sae_lp))
            .sum_dim(1)
            .sum();
        let zeroed =
            patched_run(&Hooks::none().with_patch(hook, masked_patch(mask, |a| a.zeros_like())))?;
        let ce_zero_sum = ce(&next_token_log_probs(zeroed.logits));
        let values = read_f32(Tensor::cat(
            vec![ce_clean_sum, ce_sae_sum, ce_zero_sum, kl_sum],
            0,
        ))
        .await?;
        sums = LossSums {
            ce_clean: f64::from(values[0]),
            ce_sae: f64::from(values[1]),
            ce_zero: f64::from(values[2]),
            kl: f64::from(values[3]),
            ce_count: b * (t - 1),
            kl_count: b * t,
        };
    }
    Ok((read_f32(x.reshape([b * t, d])).await?, sums))
}

/// Evaluate `sae` at its hook over held-out `windows` (all the same length), `batch_windows` at
/// a time (fewer when their logits would pass [`EVAL_LOGITS_BYTES`]). `skip_special` leaves
/// positions holding `special_id` out, as in training.
pub async fn evaluate_sae(
    model: &Model,
    sae: &Sae,
    hook: HookPoint,
    windows: &[Window],
    batch_windows: usize,
    special_id: Option<u32>,
) -> Result<SaeMetrics> {
    evaluate_sae_shared(model, sae, hook, windows, batch_windows, special_id, None).await
}

/// [`evaluate_sae`] with the batches' forwards ([`batch_losses`]) shared with `helpers`: the
/// same figures, as each batch's answer is used in batch order.
pub async fn evaluate_sae_shared(
    model: &Model,
    sae: &Sae,
    hook: HookPoint,
    windows: &[Window],
    batch_windows: usize,
    special_id: Option<u32>,
    helpers: Option<&dyn ForwardHelpers>,
) -> Result<SaeMetrics> {
    sae.check_fits(&hook.to_string(), hook.width(model.dims()))?;
    let device = model.device().clone();
    let d = sae.config.d_in;
    let d_sae = sae.config.d_sae;
    let mut features = FeatureStatsAccumulator::new(d_sae);
    // Kept for concept recovery (TinyTales windows carry concepts per token).
    let (mut all_acts, mut kept_concepts) = (Vec::new(), Vec::new());
    // Model activations and splits, for the probes (TinyTales windows only).
    let labelled = windows
        .iter()
        .any(|w| w.concepts.iter().any(|c| !c.is_empty()));
    let (mut kept_x, mut kept_train) = (Vec::new(), Vec::new());
    let (mut cos_sum, mut firing_tokens, mut firing_windows) =
        (0.0f64, vec![0u64; d_sae], vec![0u64; d_sae]);
    let (mut sse, mut sum_sq, mut sum_x, mut n_tokens) = (0.0f64, 0.0f64, vec![0.0f64; d], 0usize);
    let (mut hat_sq, mut hat_dot, mut ratio_sum, mut l1_sum) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let window_logits_bytes = windows.first().map_or(1, |w| w.ids.len()) * model.dims().d_vocab * 4;
    let batch_windows = batch_windows
        .min(EVAL_LOGITS_BYTES / window_logits_bytes.max(1))
        .max(1);

    // The batches' forwards, here and on the helpers.
    let batches: Vec<Vec<Vec<u32>>> = windows
        .chunks(batch_windows)
        .map(|chunk| chunk.iter().map(|w| w.ids.clone()).collect())
        .collect();
    let for_helpers = match helpers.filter(|h| h.count() > 0 && batches.len() > 1) {
        Some(_) => Some(SaeForHelpers::new(sae).await?),
        None => None,
    };
    let mut spread = Spread::new(helpers.filter(|_| for_helpers.is_some()), batches.len(), 1);
    let mut answers: Vec<Option<(Vec<f32>, LossSums)>> = vec![None; batches.len()];
    while answers.iter().any(Option::is_none) {
        if let Some(sae) = &for_helpers {
            spread.pump(
                |i| HelperTask::Losses {
                    windows: &batches[i],
                    sae,
                    special_id,
                },
                |i, answer| match answer.losses {
                    Some(losses)
                        if answer.values.len() == batches[i].len() * batches[i][0].len() * d =>
                    {
                        answers[i] = Some((answer.values, losses));
                        true
                    }
                    _ => false,
                },
            );
        }
        match spread.next_here() {
            Some(i) => {
                answers[i] = Some(batch_losses(model, sae, hook, &batches[i], special_id).await?)
            }
            None if spread.waiting() => sleep_ms(1).await,
            None if answers.iter().all(Option::is_some) => break,
            None => return Err(spread.lost()),
        }
        yield_now().await;
    }

    let mut losses = LossSums::default();
    for (c, (chunk, answer)) in windows.chunks(batch_windows).zip(answers).enumerate() {
        let first_window = c * batch_windows;
        let (x_host, sums) = answer.expect("every batch answered");
        losses.add(&sums);
        let (b, t) = (chunk.len(), chunk[0].ids.len());
        let keep = kept_positions(&batches[c], special_id);

        // Reconstruction and feature figures on the kept positions.
        let flat = float_tensor(x_host.clone(), [b * t, d], &device);
        let (acts, x_hat) = sae.encode_and_reconstruct_async(flat).await?;
        let hat_host = read_f32(x_hat).await?;
        let acts_host = read_f32(acts).await?;
        let concepts: Vec<u64> = chunk
            .iter()
            .flat_map(|w| w.concepts.iter().map(|c| u64::from(c.bits())))
            .collect();
        let mut kept_acts = Vec::with_capacity(acts_host.len());
        let mut fired_in_window = vec![false; d_sae];
        for (row, &k) in keep.iter().enumerate() {
            if row % t == 0 {
                fired_in_window.fill(false);
            }
            if k == 0.0 {
                continue;
            }
            let xr = &x_host[row * d..(row + 1) * d];
            let hr = &hat_host[row * d..(row + 1) * d];
            let (mut x_norm, mut h_norm) = (0.0f64, 0.0f64);
            for j in 0..d {
                let (xv, hv) = (f64::from(xr[j]), f64::from(hr[j]));
                sse += (xv - hv).powi(2);
                sum_sq += xv * xv;
                sum_x[j] += xv;
                hat_dot += xv * hv;
                x_norm += xv * xv;
                h_norm += hv * hv;
            }
            hat_sq += h_norm;
            if x_norm > 0.0 {
                ratio_sum += (h_norm / x_norm).sqrt();
            }
            let dot: f64 = xr
                .iter()
                .zip(hr)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            if x_norm > 0.0 && h_norm > 0.0 {
                cos_sum += dot / (x_norm * h_norm).sqrt();
            }
            let ar = &acts_host[row * d_sae..(row + 1) * d_sae];
            for (f, &a) in ar.iter().enumerate() {
                if a != 0.0 {
                    firing_tokens[f] += 1;
                    if !fired_in_window[f] {
                        fired_in_window[f] = true;
                        firing_windows[f] += 1;
                    }
                }
            }
            if labelled {
                kept_x.extend_from_slice(xr);
                kept_train.push((first_window + row / t).is_multiple_of(2));
            }
            l1_sum += ar.iter().map(|&v| f64::from(v)).sum::<f64>();
            kept_acts.extend_from_slice(ar);
            kept_concepts.push(concepts[row]);
            n_tokens += 1;
        }
        features.add_batch(&kept_acts, kept_acts.len() / d_sae)?;
        all_acts.extend(kept_acts);
    }
    let (concept_recovery, mean_concept_auroc) =
        super::features::concept_recovery(&all_acts, n_tokens, d_sae, &kept_concepts)?;
    let (sparse_probing, absorption) = if labelled {
        let tokens = LabelledTokens {
            acts: &all_acts,
            d_sae,
            x: &kept_x,
            d_in: d,
            concepts: &kept_concepts,
            train: &kept_train,
        };
        let w_dec = read_f32(sae.param(W_DEC)).await?;
        let concepts = crate::tinytales::Concept::COUNT;
        (
            sparse_probing(&tokens, concepts, 0)?,
            absorption(&tokens, &w_dec, concepts, 0)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let consistent_activation_heuristic = mean(
        firing_tokens
            .iter()
            .zip(&firing_windows)
            .filter(|&(_, &w)| w > 0)
            .map(|(&t, &w)| t as f64 / w as f64),
    )
    .unwrap_or(f64::NAN);
    let mean_max_decoder_cosine = mean_max_cosine(sae.param(W_DEC)).await?;
    let mean_max_encoder_cosine = mean_max_cosine(sae.param(W_ENC).transpose()).await?;
    let n = n_tokens.max(1) as f64;
    // SST about the mean: sum ||x||^2 - n ||mean||^2.
    let sst = sum_sq - sum_x.iter().map(|s| s * s).sum::<f64>() / n;
    let summaries = features.finish();
    let feature_density: Vec<f64> = summaries.iter().map(|s| s.density).collect();
    let (density_histogram, dead_features) = log10_density_histogram(&feature_density, 40);
    let ce_n = losses.ce_count.max(1) as f64;
    let (ce_clean, ce_with_sae, ce_zero_ablation) = (
        losses.ce_clean / ce_n,
        losses.ce_sae / ce_n,
        losses.ce_zero / ce_n,
    );
    Ok(SaeMetrics {
        tokens: n_tokens,
        mse: sse / (n * d as f64),
        explained_variance: if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
        l0: features.l0(),
        l1: l1_sum / n,
        dead_fraction: features.dead_fraction(),
        dense_fraction: features.dense_fraction(DENSE_THRESHOLD),
        shrinkage: if hat_dot != 0.0 {
            hat_sq / hat_dot
        } else {
            0.0
        },
        l2_ratio: ratio_sum / n,
        ce_clean,
        ce_with_sae,
        ce_zero_ablation,
        loss_recovered: if ce_zero_ablation != ce_clean {
            (ce_zero_ablation - ce_with_sae) / (ce_zero_ablation - ce_clean)
        } else {
            0.0
        },
        kl: losses.kl / losses.kl_count.max(1) as f64,
        density_histogram,
        dead_features,
        feature_density,
        concept_recovery,
        mean_concept_auroc,
        cossim: cos_sum / n,
        consistent_activation_heuristic,
        mean_max_decoder_cosine,
        mean_max_encoder_cosine,
        sparse_probing,
        absorption,
    })
}
