//! A model-training run kept in a directory: checkpoints in the Hugging Face layout (loadable as
//! is) beside the optimiser state, so running again on the same directory resumes exactly where
//! the last run stopped. Native only (files and a blocking executor).

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::data::tokenize_stories;
use super::init::init_weights;
use super::trainer::{ModelTrainer, ModelTrainingConfig, StepReport, TrainerState};
use crate::backend::block_on;
use crate::error::{FileAction, Result, SaeplayError};
use crate::model::{Gpt2Config, Gpt2Weights};
use crate::tinytales::{self, HELD_OUT_SEED};
use crate::tokenizer::{END_OF_TEXT, TextTokenizer, train_tokenizer};

pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";

/// What a run tells its caller as it goes.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Corpus {
        stories: usize,
        train_bytes: usize,
        held_out: usize,
    },
    Tokenizer {
        vocab: usize,
        train_tokens: usize,
    },
    Resumed {
        step: usize,
    },
    Model {
        parameters: usize,
    },
    /// One step done; `held_out` is the held-out loss when this step evaluated.
    Step {
        report: StepReport,
        done: usize,
        held_out: Option<f32>,
    },
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| SaeplayError::file(FileAction::Read, path, e))
}

/// Write then rename, so an interrupted checkpoint never leaves a half file behind.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .map_err(|e| SaeplayError::file(FileAction::Write, &partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| SaeplayError::file(FileAction::Write, path, e))
}

/// A run directory.
pub struct RunDir {
    pub dir: PathBuf,
}

impl RunDir {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| SaeplayError::file(FileAction::Create, &dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The saved state of an earlier run, if there is one.
    pub fn saved_state(&self) -> Result<Option<TrainerState>> {
        let path = self.path(STATE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = read(&path)?;
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| SaeplayError::Checkpoint(format!("{} is not valid: {e}", path.display())))
    }

    /// Train to `config.steps`, resuming a saved run (whose recipe wins, but for the step count)
    /// or starting afresh from `config`.
    pub fn train(
        &self,
        config: ModelTrainingConfig,
        device: &Device,
        mut on_event: impl FnMut(RunEvent),
    ) -> Result<()> {
        let resumed = self.saved_state()?;
        let config = match &resumed {
            Some(state) => ModelTrainingConfig {
                steps: config.steps,
                ..state.config.clone()
            },
            None => config,
        };
        config.validate()?;
        let stories = tinytales::stories(config.seed, config.train_bytes);
        let held_out = tinytales::stories(HELD_OUT_SEED, config.eval_bytes);
        on_event(RunEvent::Corpus {
            stories: stories.len(),
            train_bytes: config.train_bytes,
            held_out: held_out.len(),
        });

        let tokenizer_path = self.path(TOKENIZER_FILE);
        if !tokenizer_path.exists() {
            // A few megabytes hold every word of the closed world many times over.
            let sample: Vec<String> = stories.iter().take(20_000).cloned().collect();
            let json = train_tokenizer(&sample, config.tokenizer_vocab)?;
            write(&tokenizer_path, json.as_bytes())?;
        }
        let tokenizer = TextTokenizer::from_bytes(&read(&tokenizer_path)?)?;
        let eos = tokenizer.id_of(END_OF_TEXT).ok_or_else(|| {
            SaeplayError::Tokenizer(format!(
                "{} has no {END_OF_TEXT} token",
                tokenizer_path.display()
            ))
        })?;
        let train_tokens = tokenize_stories(&tokenizer, &stories)?;
        let eval_tokens = tokenize_stories(&tokenizer, &held_out)?;
        drop(stories);
        on_event(RunEvent::Tokenizer {
            vocab: tokenizer.vocab_size(),
            train_tokens: train_tokens.len(),
        });

        let mut model_config = Gpt2Config::new(
            tokenizer.vocab_size(),
            config.n_positions,
            config.n_embd,
            config.n_layer,
            config.n_head,
        );
        model_config.bos_token_id = Some(eos);
        model_config.eos_token_id = Some(eos);
        // The vocabulary comes from the run's tokenizer file: checked before any size uses it.
        model_config.validate()?;
        let weights = match &resumed {
            Some(_) => {
                Gpt2Weights::from_safetensors(&model_config, &read(&self.path(MODEL_FILE))?)?
            }
            None => init_weights(&model_config, config.seed),
        };
        let mut trainer =
            ModelTrainer::new(config.clone(), model_config.clone(), &weights, device)?;
        let mut history = Vec::new();
        if let Some(state) = &resumed {
            trainer.restore(&read(&self.path(OPTIMIZER_FILE))?, state)?;
            history = state.history.clone();
            on_event(RunEvent::Resumed { step: trainer.step });
        }
        on_event(RunEvent::Model {
            parameters: model_config.parameter_count(),
        });

        while trainer.step < config.steps {
            let report = block_on(trainer.train_step(&train_tokens))?;
            let done = trainer.step;
            let mut held_out = None;
            if done % config.eval_every == 0 || done == config.steps {
                held_out = Some(block_on(trainer.evaluate(&eval_tokens))?);
            }
            history.push((report.step, report.loss, held_out));
            on_event(RunEvent::Step {
                report,
                done,
                held_out,
            });
            if done % config.checkpoint_every == 0 || done == config.steps {
                self.save(&trainer, &model_config, &history)?;
            }
        }
        Ok(())
    }

    fn save(
        &self,
        trainer: &ModelTrainer,
        model_config: &Gpt2Config,
        history: &[(usize, f32, Option<f32>)],
    ) -> Result<()> {
        let weights = block_on(trainer.weights())?;
        let (moments, state) = block_on(trainer.optimizer_state(history.to_vec()))?;
        write(&self.path(MODEL_FILE), &weights.to_safetensors(false))?;
        write(&self.path(CONFIG_FILE), model_config.to_json().as_bytes())?;
        write(&self.path(OPTIMIZER_FILE), &moments)?;
        let state = serde_json::to_string_pretty(&state).expect("the state serialises");
        write(&self.path(STATE_FILE), state.as_bytes())
    }
}
