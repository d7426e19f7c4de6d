//! Text generation with a key/value cache: greedy, temperature, top-k and top-p sampling from a
//! seeded generator, so the same seed gives the same text on the same backend.

use super::forward::{KvCache, LogitsFor};
use super::hooks::Hooks;
use super::transformer::Model;
use crate::backend::read_f32;
use crate::error::{Result, SaeplayError};
use crate::rng::SplitMix64;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches p.
    pub top_p: Option<f32>,
    pub seed: u64,
    pub max_new_tokens: usize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: None,
            top_p: None,
            seed: 0,
            max_new_tokens: 64,
        }
    }
}

impl SamplingConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |message: &str| Err(SaeplayError::InvalidSetting(message.into()));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature must be a number of at least 0 (0 is greedy)");
        }
        if self.top_k == Some(0) {
            return bad("top-k must be at least 1");
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad("top-p must be above 0 and at most 1");
        }
        Ok(())
    }
}

/// Pick the next token from one position's logits.
pub fn sample(logits: &[f32], config: &SamplingConfig, rng: &mut SplitMix64) -> u32 {
    let argmax = || {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        best as u32
    };
    if config.temperature == 0.0 || config.top_k == Some(1) {
        return argmax();
    }
    let inverse_t = 1.0 / f64::from(config.temperature);
    // Candidates by descending logit; ties keep the lower id first, so the order is total.
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    if let Some(k) = config.top_k {
        order.truncate(k.min(order.len()));
    }
    let max = f64::from(logits[order[0] as usize]);
    let mut weights: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i as usize]) - max) * inverse_t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    if let Some(p) = config.top_p {
        let mut cumulative = 0.0;
        let mut keep = weights.len();
        for (n, w) in weights.iter().enumerate() {
            cumulative += w / total;
            if cumulative >= f64::from(p) {
                keep = n + 1;
                break;
            }
        }
        weights.truncate(keep);
        order.truncate(keep);
    }
    let total: f64 = weights.iter().sum();
    let mut target = rng.uniform() * total;
    for (w, &id) in weights.iter().zip(&order) {
        if target < *w {
            return id;
        }
        target -= w;
    }
    *order.last().expect("at least one candidate")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxTokens,
    EndOfText,
    ContextFull,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::MaxTokens => "reached the token limit",
            StopReason::EndOfText => "the model ended the text",
            StopReason::ContextFull => "the model's context (n_positions) is full",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Token(u32),
    Done(StopReason),
}

/// A generation in progress, one token per [`Generation::step`], so a page can stream it.
pub struct Generation {
    model: Model,
    hooks: Hooks,
    config: SamplingConfig,
    rng: SplitMix64,
    cache: KvCache,
    pending: Vec<u32>,
    produced: Vec<u32>,
}

impl Generation {
    pub fn new(
        model: &Model,
        prompt: &[u32],
        config: SamplingConfig,
        hooks: Hooks,
    ) -> Result<Self> {
        config.validate()?;
        if prompt.is_empty() {
            return Err(SaeplayError::EmptyInput);
        }
        let max = model.dims().n_ctx;
        if prompt.len() > max {
            return Err(SaeplayError::TooLong {
                len: prompt.len(),
                max,
            });
        }
        Ok(Self {
            rng: SplitMix64::new(config.seed),
            cache: KvCache::new(model.dims().n_layers),
            model: model.clone(),
            hooks,
            config,
            pending: prompt.to_vec(),
            produced: Vec::new(),
        })
    }

    /// The tokens generated so far (prompt excluded).
    pub fn produced(&self) -> &[u32] {
        &self.produced
    }

    pub async fn step(&mut self) -> Result<Step> {
        if self.produced.len() >= self.config.max_new_tokens {
            return Ok(Step::Done(StopReason::MaxTokens));
        }
        if self.pending.is_empty() {
            return Ok(Step::Done(StopReason::EndOfText));
        }
        if self.cache.len() + self.pending.len() > self.model.dims().n_ctx {
            return Ok(Step::Done(StopReason::ContextFull));
        }
        let input = vec![std::mem::take(&mut self.pending)];
        let output = self.model.forward_cached(
            &input,
            &mut self.cache,
            &self.hooks,
            LogitsFor::LastPosition,
        )?;
        let logits = read_f32(output.logits).await?;
        let token = sample(&logits, &self.config, &mut self.rng);
        self.produced.push(token);
        if Some(token) != self.model.dims().eos_token_id {
            self.pending.push(token);
        }
        Ok(Step::Token(token))
    }

    /// Run to the end; returns the generated tokens and why it stopped.
    pub async fn run(mut self) -> Result<(Vec<u32>, StopReason)> {
        loop {
            if let Step::Done(reason) = self.step().await? {
                return Ok((self.produced, reason));
            }
        }
    }
}

/// Greedy decoding of `steps` tokens after `prompt` with the key/value cache, ignoring stop
/// tokens: the work a benchmark of generation times (the CLI's `bench --generate`, the page's
/// `saeplay.benchGenerate`). Returns the tokens chosen.
pub async fn greedy_tokens(model: &Model, prompt: &[u32], steps: usize) -> Result<Vec<u32>> {
    let argmax = |row: Vec<f32>| {
        row.iter()
            .enumerate()
            .fold((0u32, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i as u32, v) } else { best }
            })
            .0
    };
    let mut cache = KvCache::new(model.dims().n_layers);
    let mut input = prompt.to_vec();
    let mut chosen = Vec::with_capacity(steps);
    while chosen.len() < steps {
        let output = model.forward_cached(
            &[input],
            &mut cache,
            &Hooks::none(),
            LogitsFor::LastPosition,
        )?;
        let token = argmax(read_f32(output.logits).await?);
        chosen.push(token);
        input = vec![token];
    }
    Ok(chosen)
}
