//! Training a GPT-2 from scratch on TinyTales with burn's autodiff: AdamW (decoupled weight decay
//! on matrices only, as nanoGPT), linear warm-up then cosine decay, global-norm gradient clipping,
//! periodic held-out evaluation, checkpoints and resume. On the CPU backend a seed reproduces the
//! run exactly (batches come from a seeded SplitMix64; initialisation from the same seed).

use std::collections::BTreeMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::{float_tensor, int_tensor, read_f32};
use crate::error::{Result, SaeplayError};
use crate::model::weights::write_safetensors;
use crate::model::{
    Gpt2, Gpt2Config, Gpt2Params, Gpt2Weights, Hooks, HostTensor, LogitsFor, ParamTensor,
    upload_params,
};
use crate::rng::SplitMix64;
use crate::tinytales;
use crate::tokenizer::TextTokenizer;

pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Held-out stories come from this corpus seed, never used for training.
pub const HELD_OUT_SEED: u64 = 0xE7A1_5EED;

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
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up, then cosine down to the minimum.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.steps - self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_learning_rate + (self.learning_rate - self.min_learning_rate) * cosine
    }
}

/// Train a byte-level BPE tokenizer on text, GPT-2 style, with `<|endoftext|>` as a special token.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<String> {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, Tokenizer};

    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(byte_level));
    tokenizer.with_post_processor(Some(byte_level));
    tokenizer.with_decoder(Some(byte_level));
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| SaeplayError::Tokenizer(format!("training failed: {e}")))?;
    tokenizer
        .to_string(false)
        .map_err(|e| SaeplayError::Tokenizer(format!("could not save: {e}")))
}

/// TinyTales stories as one token stream, each story followed by `<|endoftext|>`.
pub fn tokenize_stories(tokenizer: &TextTokenizer, stories: &[String]) -> Result<Vec<u32>> {
    let eos = tokenizer.id_of(END_OF_TEXT).ok_or_else(|| {
        SaeplayError::Tokenizer(format!("the tokenizer has no {END_OF_TEXT} token"))
    })?;
    let mut tokens = vec![eos];
    for story in stories {
        tokens.extend(tokenizer.encode(story)?.ids);
        tokens.push(eos);
    }
    Ok(tokens)
}

/// Stories from TinyTales totalling at least `bytes`, from `seed`.
pub fn tinytales_stories(seed: u64, bytes: usize) -> Vec<String> {
    let mut total = 0;
    let mut stories = Vec::new();
    for story in tinytales::StoryGenerator::new(seed) {
        if total >= bytes {
            break;
        }
        total += story.text.len() + 1;
        stories.push(story.text);
    }
    stories
}

/// GPT-2's initialisation: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2 n_layer),
/// layer norms at identity, biases at zero.
pub fn init_weights(config: &Gpt2Config, seed: u64) -> Gpt2Weights {
    let mut rng = SplitMix64::new(seed ^ 0x5EED_1417);
    let residual_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
    let tensors = crate::model::weights::expected_shapes(config)
        .into_iter()
        .map(|(name, shape)| {
            let count: usize = shape.iter().product();
            let values = if name.ends_with(".bias") {
                vec![0.0; count]
            } else if name.contains("ln_") {
                vec![1.0; count]
            } else {
                let std = if name.ends_with("c_proj.weight") {
                    residual_std
                } else {
                    0.02
                };
                (0..count).map(|_| std * rng.normal()).collect()
            };
            (name, HostTensor { shape, values })
        })
        .collect();
    Gpt2Weights {
        config: config.clone(),
        tensors,
    }
}

/// Mean next-token cross-entropy of `batch` (each row `n + 1` tokens: inputs then shifted targets).
pub fn language_model_loss(model: &Gpt2, rows: &[Vec<u32>]) -> Result<Tensor<1>> {
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

/// Random windows of `length + 1` tokens from a stream.
pub fn sample_rows(
    tokens: &[u32],
    rows: usize,
    length: usize,
    rng: &mut SplitMix64,
) -> Vec<Vec<u32>> {
    let span = tokens.len() - length - 1;
    (0..rows)
        .map(|_| {
            let start = (rng.next_u64() % span as u64) as usize;
            tokens[start..start + length + 1].to_vec()
        })
        .collect()
}

/// Adam moments per parameter, on the plain (non-autodiff) device.
struct Moments {
    first: Gpt2Params,
    second: Gpt2Params,
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
    moments: Moments,
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
        );
        let loss = language_model_loss(&self.model()?, &rows)?;
        let grads = loss.backward();
        let loss_value = read_f32(loss.inner()).await?[0];
        if !loss_value.is_finite() {
            return Err(SaeplayError::InvalidSetting(format!(
                "training diverged at step {} (loss is {loss_value}); lower the learning rate",
                self.step
            )));
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
        let clip = if f64::from(grad_norm) > self.config.grad_clip {
            self.config.grad_clip / f64::from(grad_norm)
        } else {
            1.0
        };
        let lr = self.config.learning_rate_at(self.step);
        let t = (self.step + 1) as i32;
        let (b1, b2) = (self.config.beta1, self.config.beta2);
        let correction1 = 1.0 - b1.powi(t);
        let correction2 = 1.0 - b2.powi(t);
        for (name, grad) in grads_by_name {
            let decay = if matches!(grad, ParamTensor::Matrix(_)) {
                self.config.weight_decay
            } else {
                0.0
            };
            let param = self.params.remove(&name).expect("grad of a known param");
            let m = self.moments.first.remove(&name).expect("moment");
            let v = self.moments.second.remove(&name).expect("moment");
            macro_rules! adamw {
                ($p:expr, $g:expr, $m:expr, $v:expr, $variant:ident) => {{
                    let g = $g * clip;
                    let m = $m * b1 + g.clone() * (1.0 - b1);
                    let v = $v * b2 + g.powf_scalar(2.0) * (1.0 - b2);
                    let update =
                        (m.clone() / correction1) / ((v.clone() / correction2).sqrt() + 1e-8);
                    let p = $p.inner();
                    let p = p.clone() - (update + p * decay) * lr;
                    self.params.insert(
                        name.clone(),
                        ParamTensor::$variant(Tensor::from_inner(p).require_grad()),
                    );
                    self.moments
                        .first
                        .insert(name.clone(), ParamTensor::$variant(m));
                    self.moments.second.insert(name, ParamTensor::$variant(v));
                }};
            }
            match (param, grad, m, v) {
                (
                    ParamTensor::Vector(p),
                    ParamTensor::Vector(g),
                    ParamTensor::Vector(m),
                    ParamTensor::Vector(v),
                ) => adamw!(p, g, m, v, Vector),
                (
                    ParamTensor::Matrix(p),
                    ParamTensor::Matrix(g),
                    ParamTensor::Matrix(m),
                    ParamTensor::Matrix(v),
                ) => adamw!(p, g, m, v, Matrix),
                _ => unreachable!("parameters, gradients and moments share shapes"),
            }
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
            );
            total += read_f32(language_model_loss(&model, &rows)?).await?[0];
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

    /// Optimiser moments as safetensors (`m.NAME`, `v.NAME`) and the resumable state.
    pub async fn optimizer_state(
        &self,
        history: Vec<(usize, f32, Option<f32>)>,
    ) -> Result<(Vec<u8>, TrainerState)> {
        let first = Self::read_params(&self.moments.first).await?;
        let second = Self::read_params(&self.moments.second).await?;
        let named: Vec<(String, &HostTensor)> = first
            .iter()
            .map(|(n, t)| (format!("m.{n}"), t))
            .chain(second.iter().map(|(n, t)| (format!("v.{n}"), t)))
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
        let file = safetensors::SafeTensors::deserialize(moments_safetensors)
            .map_err(|e| SaeplayError::Safetensors(e.to_string()))?;
        let inner = self.inner_device.clone();
        for (prefix, target) in [
            ("m.", &mut self.moments.first),
            ("v.", &mut self.moments.second),
        ] {
            for (name, slot) in target.iter_mut() {
                let view = file
                    .tensor(&format!("{prefix}{name}"))
                    .map_err(|_| SaeplayError::MissingTensor(format!("{prefix}{name}")))?;
                let values: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                *slot = match view.shape() {
                    [n] => ParamTensor::Vector(float_tensor(values, [*n], &inner)),
                    [r, c] => ParamTensor::Matrix(float_tensor(values, [*r, *c], &inner)),
                    _ => {
                        return Err(SaeplayError::Safetensors(format!(
                            "{prefix}{name} has an unexpected rank"
                        )));
                    }
                };
            }
        }
        self.step = state.step;
        self.rng = SplitMix64::from_state(state.rng_state);
        Ok(())
    }
}

/// What `saeplay eval-model` reports: held-out loss and how often sampled stories keep the
/// world's rules.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEvalReport {
    pub samples: usize,
    pub temperature: f32,
    pub held_out_loss: f32,
    pub balanced_quotes: f64,
    pub balanced_parens: f64,
    pub balanced_brackets: f64,
    pub pronouns_agree: f64,
    pub proper_ending: f64,
    pub passes_all: f64,
    pub mean_tokens: f64,
    pub example: String,
    /// Up to five stories that broke a rule, each with the rules it broke.
    pub failures: Vec<(String, Vec<&'static str>)>,
}

/// Sample `samples` stories from `<|endoftext|>` and score them; held-out loss on fresh stories.
pub async fn evaluate_model(
    loaded: &crate::bundle::LoadedModel,
    samples: usize,
    temperature: f32,
    seed: u64,
    eval_bytes: usize,
) -> Result<ModelEvalReport> {
    use crate::model::{Generation, SamplingConfig};
    let model = &loaded.model;
    let config = model.config();
    let eos = loaded
        .tokenizer
        .id_of(END_OF_TEXT)
        .or(config.eos_token_id)
        .ok_or_else(|| {
            SaeplayError::InvalidSetting(format!(
                "the tokenizer has no {END_OF_TEXT} token to start stories from"
            ))
        })?;
    let held_out = tinytales_stories(HELD_OUT_SEED, eval_bytes);
    let tokens = tokenize_stories(&loaded.tokenizer, &held_out)?;
    let length = config
        .n_positions
        .min(tokens.len().saturating_sub(2))
        .max(1);
    let mut rng = SplitMix64::new(0xE7A1);
    let windows = (tokens.len() / length).clamp(1, 64);
    let mut total = 0.0;
    for chunk in sample_rows(&tokens, windows, length, &mut rng).chunks(8) {
        total += read_f32(language_model_loss(model, chunk)?).await?[0] * chunk.len() as f32;
    }
    let mut tally = tinytales::CheckTally::default();
    let mut token_total = 0;
    let mut example = String::new();
    let mut failures = Vec::new();
    for i in 0..samples {
        let sampling = SamplingConfig {
            temperature,
            top_k: None,
            top_p: None,
            seed: seed.wrapping_add(i as u64),
            max_new_tokens: config.n_positions - 1,
        };
        let (produced, _) = Generation::new(model, &[eos], sampling, Hooks::none())?
            .run()
            .await?;
        token_total += produced.len();
        let story: Vec<u32> = produced.into_iter().take_while(|&t| t != eos).collect();
        let text = loaded.tokenizer.decode(&story)?;
        let check = tinytales::check_story(&text);
        tally.add(&check);
        if !check.passes_all() && failures.len() < 5 {
            failures.push((text.clone(), check.broken_rules()));
        }
        if i == 0 {
            example = text;
        }
    }
    let rates = tally.rates();
    Ok(ModelEvalReport {
        samples,
        temperature,
        held_out_loss: total / windows as f32,
        balanced_quotes: rates.balanced_quotes,
        balanced_parens: rates.balanced_parens,
        balanced_brackets: rates.balanced_brackets,
        pronouns_agree: rates.pronouns_agree,
        proper_ending: rates.proper_ending,
        passes_all: rates.passes_all,
        mean_tokens: token_total as f64 / samples.max(1) as f64,
        example,
        failures,
    })
}
