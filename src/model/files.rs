//! A model as a person supplies it: the three Hugging Face files, as bytes. Loading checks that
//! they belong together before anything reaches a device.

use crate::error::{Result, SaeplayError};
use crate::model::{Gpt2, Gpt2Config, Gpt2Weights, WeightProcessing};
use crate::tokenizer::TextTokenizer;

/// The bytes of `config.json`, `model.safetensors` and `tokenizer.json` (absent from what
/// `save_pretrained` of a model alone writes: such a model runs on token ids).
#[derive(Clone)]
pub struct ModelFiles {
    pub config_json: Vec<u8>,
    pub safetensors: Vec<u8>,
    pub tokenizer_json: Option<Vec<u8>>,
}

/// The error for text work on a model that came without a tokenizer.
fn no_tokenizer() -> SaeplayError {
    SaeplayError::InvalidSetting(
        "this model came without a tokenizer.json, so it cannot read or write text; \
         give token ids instead (e.g. `forward --ids`) or add the tokenizer.json of its family"
            .into(),
    )
}

/// A parsed, checked model on the host, not yet on a device.
pub struct HostModel {
    pub weights: Gpt2Weights,
    tokenizer: Option<TextTokenizer>,
    /// The TransformerLens processing applied to `weights` (none as loaded).
    pub processing: WeightProcessing,
}

impl HostModel {
    pub fn config(&self) -> &Gpt2Config {
        &self.weights.config
    }

    /// The tokenizer, or a plain error when the model came without one.
    pub fn tokenizer(&self) -> Result<&TextTokenizer> {
        self.tokenizer.as_ref().ok_or_else(no_tokenizer)
    }

    pub fn has_tokenizer(&self) -> bool {
        self.tokenizer.is_some()
    }
}

/// A model ready to run.
pub struct LoadedModel {
    pub model: Gpt2,
    tokenizer: Option<TextTokenizer>,
    /// The TransformerLens processing its weights went through.
    pub processing: WeightProcessing,
}

impl ModelFiles {
    /// Read the three files from a directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .map_err(|error| SaeplayError::file(crate::error::FileAction::Read, &path, error))
        };
        Ok(Self {
            config_json: read("config.json")?,
            safetensors: read("model.safetensors")?,
            tokenizer_json: match std::fs::read(dir.join("tokenizer.json")) {
                Ok(bytes) => Some(bytes),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    let path = dir.join("tokenizer.json");
                    return Err(SaeplayError::file(
                        crate::error::FileAction::Read,
                        &path,
                        error,
                    ));
                }
            },
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_dir(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|error| SaeplayError::file(crate::error::FileAction::Create, dir, error))?;
        for (name, bytes) in self.named_files() {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|error| {
                SaeplayError::file(crate::error::FileAction::Write, &path, error)
            })?;
        }
        Ok(())
    }

    /// The files a person picked or dropped, by name (folders in the names are ignored):
    /// `config.json` and `model.safetensors`, and `tokenizer.json` when given.
    pub fn from_named_files(files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let mut config_json = None;
        let mut safetensors = None;
        let mut tokenizer_json = None;
        for (name, bytes) in files {
            let base = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_string();
            let slot = match base.as_str() {
                "config.json" => &mut config_json,
                "model.safetensors" => &mut safetensors,
                "tokenizer.json" => &mut tokenizer_json,
                _ => continue, // generation_config.json, README.md, ...: not needed
            };
            if slot.replace(bytes).is_some() {
                return Err(SaeplayError::InvalidSetting(format!(
                    "{base} was given twice: choose one model's files"
                )));
            }
        }
        let missing = |file: &str| {
            SaeplayError::InvalidSetting(format!(
                "{file} is missing: a model needs config.json and model.safetensors \
                 (and tokenizer.json for text), as Hugging Face's save_pretrained writes them"
            ))
        };
        Ok(Self {
            config_json: config_json.ok_or_else(|| missing("config.json"))?,
            safetensors: safetensors.ok_or_else(|| missing("model.safetensors"))?,
            tokenizer_json,
        })
    }

    /// Whether named files are a model's (rather than an SAE's).
    pub fn looks_like_model(names: &[&str]) -> bool {
        names.iter().any(|name| {
            let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
            base == "config.json" || base == "model.safetensors"
        })
    }

    /// The files with their names, as a directory holds them.
    pub fn named_files(&self) -> Vec<(&'static str, &[u8])> {
        let mut out = vec![
            ("config.json", self.config_json.as_slice()),
            ("model.safetensors", self.safetensors.as_slice()),
        ];
        if let Some(tokenizer) = &self.tokenizer_json {
            out.push(("tokenizer.json", tokenizer.as_slice()));
        }
        out
    }

    /// Parse and check: config, every tensor's shape, and the tokenizer against the vocabulary.
    pub fn parse(&self) -> Result<HostModel> {
        let config = Gpt2Config::from_json(&self.config_json)?;
        let weights = Gpt2Weights::from_safetensors(&config, &self.safetensors)?;
        let tokenizer = match &self.tokenizer_json {
            Some(bytes) => Some(TextTokenizer::from_bytes(bytes)?),
            None => None,
        };
        if let Some(tokenizer) = &tokenizer
            && tokenizer.vocab_size() > config.vocab_size
        {
            return Err(SaeplayError::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                model: config.vocab_size,
            });
        }
        Ok(HostModel {
            weights,
            tokenizer,
            processing: WeightProcessing::default(),
        })
    }
}

impl HostModel {
    /// Apply TransformerLens's weight processing to the unprocessed weights.
    pub fn process(mut self, processing: WeightProcessing) -> Result<Self> {
        if !self.processing.is_none() && self.processing != processing {
            return Err(SaeplayError::InvalidSetting(format!(
                "the model was already processed with {}; load it again to process it with {}",
                self.processing.describe(),
                processing.describe()
            )));
        }
        if self.processing.is_none() {
            processing.apply(&mut self.weights);
            self.processing = processing;
        }
        Ok(self)
    }

    pub fn upload(self, device: &burn::tensor::Device) -> Result<LoadedModel> {
        Ok(LoadedModel {
            model: Gpt2::from_weights(self.weights, device)?,
            tokenizer: self.tokenizer,
            processing: self.processing,
        })
    }
}

impl LoadedModel {
    /// The tokenizer, or a plain error when the model came without one.
    pub fn tokenizer(&self) -> Result<&TextTokenizer> {
        self.tokenizer.as_ref().ok_or_else(no_tokenizer)
    }

    /// Encode a prompt, checking it fits the context.
    pub fn encode_prompt(&self, text: &str) -> Result<crate::tokenizer::Encoded> {
        let encoded = self.tokenizer()?.encode(text)?;
        if encoded.ids.is_empty() {
            return Err(SaeplayError::EmptyInput);
        }
        let max = self.model.config().n_positions;
        if encoded.ids.len() > max {
            return Err(SaeplayError::TooLong {
                len: encoded.ids.len(),
                max,
            });
        }
        Ok(encoded)
    }
}
