//! Training a GPT-2 from scratch on TinyTales with burn's autodiff: AdamW (decoupled weight decay
//! on matrices only, as nanoGPT), linear warm-up then cosine decay, global-norm gradient clipping,
//! periodic held-out evaluation, checkpoints and resume. On the CPU backend a seed reproduces the
//! run exactly (batches come from a seeded SplitMix64; initialisation from the same seed).

use std::collections::BTreeMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::data::sample_rows;
use crate::backend::{float_tensor, int_tensor, read_f32};
use crate::error::{Result, SaeplayError};
use crate::io::tensors::{HostTensor, read_f32_tensors, write_safetensors};
use crate::model::{
    Gpt2, Gpt2Config, Gpt2Params, Gpt2Weights, Hooks, LogitsFor, Model, ParamTensor, upload_params,
};
use crate::optim::checkpoint::{self, FIRST_MOMENT_PREFIX, SECOND_MOMENT_PREFIX, moment_key};
use crate::optim::{Adam, LrSchedule, Moments, Schedule, clip_scale};
use crate::rng::SplitMix64;

/// Most windows one step takes (far above what fits in memory for any model saeplay trains).
pub const MAX_BATCH_SIZE: usize = 1 << 16;

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelTrainingConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_positions: usize,
    pub batch_size: usize,
    pub steps: usize,
    pub learning_rate: f64,
    pub min_learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub grad_clip: f64,
    pub eval_every: usize,
    pub eval_batches: usize,
    pub checkpoint_every: usize,
    pub seed: u64,
    /// Bytes of TinyTales text to train on (the corpus is regenerated from the seed).
    pub train_bytes: usize,
    pub eval_bytes: usize,
    pub tokenizer_vocab: usize,
}

impl Default for ModelTrainingConfig {
    fn default() -> Self {
        Self {
            n_layer: 4,
            n_embd: 128,
            n_head: 4,
            n_positions: 256,
            batch_size: 16,
            steps: 2000,
            learning_rate: 3e-3,
            min_learning_rate: 3e-4,
            warmup_steps: 100,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
            eval_every: 100,
            eval_batches: 8,
            checkpoint_every: 200,
            seed: 1,
            train_bytes: 20_000_000,
            eval_bytes: 200_000,
            tokenizer_vocab: 4096,
        }
    }
}

impl ModelTrainingConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(SaeplayError::InvalidSetting(m.to_string()));
        if self.n_layer == 0
            || self.n_embd == 0
            || self.n_head == 0
            || !self.n_embd.is_multiple_of(self.n_head)
        {
            return bad("the model needs at least one layer and n_embd divisible by n_head");
        }
        if self.n_positions < 2 || self.batch_size == 0 || self.steps == 0 {
            return bad("context must be at least 2 tokens; batch size and steps at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite())
            || self.min_learning_rate < 0.0
        {
            return bad("the learning rate must be a positive number");
        }
        if self.eval_every == 0 || self.checkpoint_every == 0 || self.eval_batches == 0 {
            return bad("eval and checkpoint intervals must be at least 1");
        }
        if self.batch_size > MAX_BATCH_SIZE {
            return Err(SaeplayError::InvalidSetting(format!(
                "batch size {} is more than the {MAX_BATCH_SIZE} saeplay accepts",
                self.batch_size
            )));
        }
        // A resumed run's recipe comes from its state.json: the model's own bounds keep every
        // size derived from it (initialisation, windows) from overflowing.
        Gpt2Config::new(
            self.tokenizer_vocab.max(1),
            self.n_positions,
            self.n_embd,
            self.n_layer,
            self.n_head,
        )
        .validate()
    }

    /// Learning rate at `step` (0-based): linear warm-up, then cosine down to the minimum.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        Schedule {
            kind: LrSchedule::Cosine,
            peak: self.learning_rate,
            end: self.min_learning_rate,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
        }
        .at(step)
    }
}

/// Mean next-token cross-entropy of `batch` (each row `n + 1` tokens: inputs then shifted targets).
pub fn language_model_loss(model: &Model, rows: &[Vec<u32>]) -> Result<Tensor<1>> {
    let inputs: Vec<Vec<u32>> = rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect();
    let targets: Vec<i64> = rows
        .iter()
        .flat_map(|r| r[1..].iter().map(|&t| i64::from(t)))
        .collect();
    let (b, t) = (inputs.len(), inputs[0].len());
    let logits = model
        .forward(&inputs, &Hooks::none(), LogitsFor::AllPositions)?
        .logits;
    let vocab = logits.dims()[2];
    let log_probs = log_softmax(logits.reshape([b * t, vocab]), 1);
    let targets = int_tensor(targets, [b * t, 1], model.device());
    Ok(log_probs.gather(1, targets).mean().neg())
}

/// One step's report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub loss: f32,
    pub learning_rate: f64,
    pub grad_norm: f32,
}

/// A training run in progress.
pub struct ModelTrainer {
    pub config: ModelTrainingConfig,
    pub model_config: Gpt2Config,
    /// The autodiff device parameters live on, and the plain device under it.
    device: Device,
    inner_device: Device,
    params: Gpt2Params,
    /// Adam moments per parameter, on the plain (non-autodiff) device.
    moments: Moments<String, ParamTensor>,
    pub step: usize,
    rng: SplitMix64,
}

/// What is saved to resume a run exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub config: ModelTrainingConfig,
    pub step: usize,
    pub rng_state: u64,
    pub history: Vec<(usize, f32, Option<f32>)>,
}

fn map_params(params: &Gpt2Params, f: impl Fn(&ParamTensor) -> ParamTensor) -> Gpt2Params {
    params.iter().map(|(n, p)| (n.clone(), f(p))).collect()
}

impl ModelTrainer {
    pub fn new(
        config: ModelTrainingConfig,
        model_config: Gpt2Config,
        weights: &Gpt2Weights,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let inner = device.clone();
        let device = device.clone().autodiff();
        let params = map_params(&upload_params(weights, &inner), |p| match p {
            ParamTensor::Vector(t) => {
                ParamTensor::Vector(Tensor::from_inner(t.clone()).require_grad())
            }
            ParamTensor::Matrix(t) => {
                ParamTensor::Matrix(Tensor::from_inner(t.clone()).require_grad())
            }
        });
        let zeros = |p: &ParamTensor| match p {
            ParamTensor::Vector(t) => ParamTensor::Vector(t.clone().inner().zeros_like()),
            ParamTensor::Matrix(t) => ParamTensor::Matrix(t.clone().inner().zeros_like()),
        };
        let moments = Moments {
            first: map_params(&params, zeros),
            second: map_params(&params, zeros),
        };
        let rng = SplitMix64::new(config.seed);
        Ok(Self {
            config,
            model_config,
            device,
            inner_device: inner,
            params,
            moments,
            step: 0,
            rng,
        })
    }

    fn model(&self) -> Result<Gpt2> {
        Gpt2::from_params(&self.model_config, &self.params, &self.device)
    }

    /// One optimiser step on a batch drawn from `tokens`.
    pub async fn train_step(&mut self, tokens: &[u32]) -> Result<StepReport> {
        let rows = sample_rows(
            tokens,
            self.config.batch_size,
            self.config.n_positions,
            &mut self.rng,
        )?;
        let loss = language_model_loss(&Model::Gpt2(self.model()?), &rows)?;
        let grads = loss.backward();
        let loss_value = read_f32(loss.inner()).await?[0];
        if !loss_value.is_finite() {
            return Err(SaeplayError::Diverged {
                step: self.step,
                what: format!("the loss ({loss_value})"),
            });
        }
        // Global gradient norm for clipping: one read per step.
        let mut grads_by_name = BTreeMap::new();
        let mut squares: Option<Tensor<1>> = None;
        for (name, param) in &self.params {
            let grad = match param {
                ParamTensor::Vector(t) => t.grad(&grads).map(ParamTensor::Vector),
                ParamTensor::Matrix(t) => t.grad(&grads).map(ParamTensor::Matrix),
            };
            let Some(grad) = grad else { continue };
            let sq = match &grad {
                ParamTensor::Vector(g) => g.clone().powf_scalar(2.0).sum(),
                ParamTensor::Matrix(g) => g.clone().powf_scalar(2.0).sum().reshape([1]),
            };
            squares = Some(match squares {
                Some(acc) => acc + sq,
                None => sq,
            });
            grads_by_name.insert(name.clone(), grad);
        }
        let grad_norm = match squares {
            Some(s) => read_f32(s).await?[0].sqrt(),
            None => 0.0,
        };
        let clip = clip_scale(grad_norm, self.config.grad_clip);
        let lr = self.config.learning_rate_at(self.step);
        let adam = Adam::new(self.config.beta1, self.config.beta2);
        for (name, grad) in grads_by_name {
            let param = self.params.remove(&name).expect("grad of a known param");
            let m = self.moments.first.remove(&name).expect("moment");
            let v = self.moments.second.remove(&name).expect("moment");
            // Decoupled weight decay on matrices only, as nanoGPT.
            let (param, m, v) = match (param, grad, m, v) {
                (
                    ParamTensor::Vector(p),
                    ParamTensor::Vector(g),
                    ParamTensor::Vector(m),
                    ParamTensor::Vector(v),
                ) => {
                    let (p, m, v) = adam.update(p.inner(), g * clip, (m, v), self.step, lr, 0.0);
                    let p = Tensor::from_inner(p).require_grad();
                    (
                        ParamTensor::Vector(p),
                        ParamTensor::Vector(m),
                        ParamTensor::Vector(v),
                    )
                }
                (
                    ParamTensor::Matrix(p),
                    ParamTensor::Matrix(g),
                    ParamTensor::Matrix(m),
                    ParamTensor::Matrix(v),
                ) => {
                    let decay = self.config.weight_decay;
                    let (p, m, v) = adam.update(p.inner(), g * clip, (m, v), self.step, lr, decay);
                    let p = Tensor::from_inner(p).require_grad();
                    (
                        ParamTensor::Matrix(p),
                        ParamTensor::Matrix(m),
                        ParamTensor::Matrix(v),
                    )
                }
                _ => unreachable!("parameters, gradients and moments share shapes"),
            };
            self.params.insert(name.clone(), param);
            self.moments.first.insert(name.clone(), m);
            self.moments.second.insert(name, v);
        }
        let report = StepReport {
            step: self.step,
            loss: loss_value,
            learning_rate: lr,
            grad_norm,
        };
        self.step += 1;
        Ok(report)
    }

    /// Mean loss on held-out windows (a fixed set: the same for every evaluation).
    pub async fn evaluate(&self, tokens: &[u32]) -> Result<f32> {
        let mut rng = SplitMix64::new(0xE7A1);
        let inner_params = map_params(&self.params, |p| match p {
            ParamTensor::Vector(t) => ParamTensor::Vector(t.clone().inner()),
            ParamTensor::Matrix(t) => ParamTensor::Matrix(t.clone().inner()),
        });
        let model = Gpt2::from_params(&self.model_config, &inner_params, &self.inner_device)?;
        let mut total = 0.0;
        for _ in 0..self.config.eval_batches {
            let rows = sample_rows(
                tokens,
                self.config.batch_size,
                self.config.n_positions,
                &mut rng,
            )?;
            total += read_f32(language_model_loss(&Model::Gpt2(model.clone()), &rows)?).await?[0];
        }
        Ok(total / self.config.eval_batches as f32)
    }

    async fn read_params(params: &Gpt2Params) -> Result<BTreeMap<String, HostTensor>> {
        let mut out = BTreeMap::new();
        for (name, param) in params {
            let (shape, values) = match param {
                ParamTensor::Vector(t) => (t.dims().to_vec(), read_f32(t.clone().inner()).await?),
                ParamTensor::Matrix(t) => (t.dims().to_vec(), read_f32(t.clone().inner()).await?),
            };
            out.insert(name.clone(), HostTensor { shape, values });
        }
        Ok(out)
    }

    /// The current weights in the Hugging Face layout.
    pub async fn weights(&self) -> Result<Gpt2Weights> {
        Ok(Gpt2Weights {
            config: self.model_config.clone(),
            tensors: Self::read_params(&self.params).await?,
        })
    }

    /// Optimiser moments as safetensors (`adam_m.NAME`, `adam_v.NAME`) and the resumable state.
    pub async fn optimizer_state(
        &self,
        history: Vec<(usize, f32, Option<f32>)>,
    ) -> Result<(Vec<u8>, TrainerState)> {
        let first = Self::read_params(&self.moments.first).await?;
        let second = Self::read_params(&self.moments.second).await?;
        let named: Vec<(String, &HostTensor)> = first
            .iter()
            .map(|(n, t)| (moment_key(FIRST_MOMENT_PREFIX, n), t))
            .chain(
                second
                    .iter()
                    .map(|(n, t)| (moment_key(SECOND_MOMENT_PREFIX, n), t)),
            )
            .collect();
        let bytes = write_safetensors(
            named
                .iter()
                .map(|(n, t)| (n.as_str(), &t.shape[..], &t.values[..])),
        );
        let state = TrainerState {
            config: self.config.clone(),
            step: self.step,
            rng_state: self.rng.state(),
            history,
        };
        Ok((bytes, state))
    }

    /// Continue from saved moments and state (weights were passed to [`ModelTrainer::new`]).
    pub fn restore(&mut self, moments_safetensors: &[u8], state: &TrainerState) -> Result<()> {
        let tensors = read_f32_tensors(moments_safetensors)?;
        let inner = self.inner_device.clone();
        for (prefix, target) in [
            (FIRST_MOMENT_PREFIX, &mut self.moments.first),
            (SECOND_MOMENT_PREFIX, &mut self.moments.second),
        ] {
            for (name, slot) in target.iter_mut() {
                let shape = match slot {
                    ParamTensor::Vector(t) => t.dims().to_vec(),
                    ParamTensor::Matrix(t) => t.dims().to_vec(),
                };
                let stored = checkpoint::take(&tensors, &moment_key(prefix, name), &shape)?;
                let values = stored.values.clone();
                *slot = match shape[..] {
                    [n] => ParamTensor::Vector(float_tensor(values, [n], &inner)),
                    [r, c] => ParamTensor::Matrix(float_tensor(values, [r, c], &inner)),
                    _ => unreachable!("parameters are vectors or matrices"),
                };
            }
        }
        self.step = state.step;
        self.rng = SplitMix64::from_state(state.rng_state);
        Ok(())
    }
}
