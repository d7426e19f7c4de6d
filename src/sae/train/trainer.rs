//! [`SaeTrainer`]: one SAE's parameters, Adam's moments and the step, on host buffers on a CPU
//! device (`host_train`) or on burn's ops with autodiff elsewhere.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::recipe::{DecoderBiasInit, SaeTrainingConfig};
use crate::backend::{float_tensor, read_f32};
use crate::error::{Result, SaeplayError};
use crate::optim::{Adam, Moments};
use crate::rng::SplitMix64;
use crate::sae::arch::{
    self, Activity, B_DEC, Params, THRESHOLD, TrainingContext, TrainingForward, VectorUpdate,
    W_DEC, W_ENC,
};
use crate::sae::host_train::{AuxK, HostSae, HostStep, HostStepError, NamedHostParam};
use crate::sae::select::Selection;
use crate::sae::stats::geometric_median;
use crate::sae::{Sae, SaeConfig};

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
    pub(super) device: Device,
    pub(super) inner_device: Device,
    pub(super) params: Params,
    pub(super) moments: Moments<&'static str, Tensor<2>>,
    pub(super) selection: Selection,
    /// Inputs are multiplied by this before the SAE sees them.
    pub input_scale: f32,
    pub step: usize,
    pub tokens_seen: usize,
    /// Training vectors since each latent last fired.
    pub(super) since_fired: Vec<usize>,
    /// BatchTopK's running inference threshold (in the scaled space).
    pub(super) batchtopk_threshold: Option<f64>,
    /// On a CPU device every architecture trains on host buffers (`host_train`); `params` and
    /// `moments` are then empty.
    pub(super) host: Option<HostSae>,
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
pub(super) fn place(
    sae_config: &SaeConfig,
    named: Vec<NamedHostParam>,
    device: &Device,
    burn_ops: bool,
) -> (Params, Moments<&'static str, Tensor<2>>, Option<HostSae>) {
    if !burn_ops && crate::backend::is_host_device(device) {
        let unit_norm_decoder = sae_config.architecture.behaviour().unit_norm_decoder();
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
            d_sae: d_in.checked_mul(config.expansion_factor).ok_or_else(|| {
                SaeplayError::InvalidSetting(format!(
                    "d_in {d_in} times the expansion factor {} is more latents than this machine \
                     can address",
                    config.expansion_factor
                ))
            })?,
            hook_name: config.hook_name.clone(),
            model_name: model_name.to_string(),
            normalize_activations: Default::default(),
        };
        sae_config.validate()?;
        let behaviour = config.architecture.behaviour();
        behaviour.nested_widths(&config, sae_config.d_sae)?;
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
        let batchtopk_threshold = behaviour.keeps_running_threshold().then_some(0.0);
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
        let matryoshka_widths = self.nested_widths()?;
        let settings = HostStep {
            architecture: self.config.architecture,
            matryoshka_widths: &matryoshka_widths,
            adam: Adam::new(self.config.adam_beta1, self.config.adam_beta2),
            step: self.step,
            lr,
            sparsity_coefficient,
            bandwidth: self.config.jumprelu_bandwidth,
            vector_updates: self.vector_updates(),
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
        let needs_dead = self.config.architecture.behaviour().uses_auxk();
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
        let behaviour = self.config.architecture.behaviour();
        let mut updated = Vec::new();
        let mut check: Option<Tensor<1>> = None;
        for (&name, param) in &self.params {
            let Some(grad) = param.grad(&grads) else {
                continue;
            };
            let update = behaviour.vector_update(name, &self.config);
            let lr = lr * update.lr_multiplier;
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
            let new = match update.floor {
                Some(floor) => new.clamp_min(floor),
                None => new,
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
            if name == W_DEC && self.config.architecture.behaviour().unit_norm_decoder() {
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
        let widths = self.nested_widths()?;
        let behaviour = self.config.architecture.behaviour();
        behaviour
            .training_forward(&self.params, x, &widths, context)
            .await
    }

    /// How each trained vector moves, by its architecture (the host step's list).
    fn vector_updates(&self) -> Vec<(&'static str, VectorUpdate)> {
        let behaviour = self.config.architecture.behaviour();
        behaviour
            .trained_vectors()
            .iter()
            .map(|&name| (name, behaviour.vector_update(name, &self.config)))
            .collect()
    }

    /// Matryoshka's nested widths; none for the other architectures.
    fn nested_widths(&self) -> Result<Vec<usize>> {
        self.config
            .architecture
            .behaviour()
            .nested_widths(&self.config, self.sae_config.d_sae)
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
        let behaviour = self.config.architecture.behaviour();
        for &name in behaviour.trained_vectors() {
            params.insert(name, get(name));
        }
        if behaviour.keeps_running_threshold() {
            let threshold = self.batchtopk_threshold.unwrap_or(0.0) as f32;
            params.insert(
                THRESHOLD,
                Tensor::full([1, self.sae_config.d_sae], threshold, &self.inner_device),
            );
        }
        Sae::from_params(self.sae_config.clone(), params, &self.inner_device)
    }
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
    let behaviour = config.architecture.behaviour();
    let mut rng = SplitMix64::new(config.seed ^ 0x5AE0_1417);
    let mut w_dec = vec![0.0f32; d_sae * d_in];
    for row in w_dec.chunks_exact_mut(d_in) {
        for v in row.iter_mut() {
            *v = rng.normal();
        }
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        let target = if behaviour.unit_norm_decoder() {
            1.0
        } else {
            config.decoder_init_norm as f32
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
    let mut params = BTreeMap::new();
    params.insert(W_ENC, ([d_in, d_sae], w_enc));
    params.insert(W_DEC, ([d_sae, d_in], w_dec));
    params.insert(B_DEC, ([1, d_in], b_dec));
    for &name in behaviour.trained_vectors() {
        let value = behaviour.initial_value(name, config);
        params.insert(name, ([1, d_sae], vec![value; d_sae]));
    }
    Ok(params)
}
