//! `saeplay eval-model`: held-out loss and how often sampled stories keep TinyTales' rules.

use serde::Serialize;

use super::data::{sample_rows, tokenize_stories};
use super::trainer::language_model_loss;
use crate::backend::read_f32;
use crate::error::{Result, SaeplayError};
use crate::model::Hooks;
use crate::rng::SplitMix64;
use crate::tinytales::{self, HELD_OUT_SEED};
use crate::tokenizer::END_OF_TEXT;

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
    loaded: &crate::model::files::LoadedModel,
    samples: usize,
    temperature: f32,
    seed: u64,
    eval_bytes: usize,
) -> Result<ModelEvalReport> {
    use crate::model::{Generation, SamplingConfig};
    let model = &loaded.model;
    let config = model.dims();
    let eos = loaded
        .tokenizer()?
        .id_of(END_OF_TEXT)
        .or(config.eos_token_id)
        .ok_or_else(|| {
            SaeplayError::InvalidSetting(format!(
                "the tokenizer has no {END_OF_TEXT} token to start stories from"
            ))
        })?;
    let held_out = tinytales::stories(HELD_OUT_SEED, eval_bytes);
    let tokens = tokenize_stories(loaded.tokenizer()?, &held_out)?;
    let length = config.n_ctx.min(tokens.len().saturating_sub(2)).max(1);
    let mut rng = SplitMix64::new(0xE7A1);
    let windows = (tokens.len() / length).clamp(1, 64);
    let mut total = 0.0;
    for chunk in sample_rows(&tokens, windows, length, &mut rng)?.chunks(8) {
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
            max_new_tokens: config.n_ctx - 1,
        };
        let (produced, _) = Generation::new(model, &[eos], sampling, Hooks::none())?
            .run()
            .await?;
        token_total += produced.len();
        let story: Vec<u32> = produced.into_iter().take_while(|&t| t != eos).collect();
        let text = loaded.tokenizer()?.decode(&story)?;
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
