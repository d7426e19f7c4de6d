//! A model as a person supplies it: Hugging Face files or one GGUF file, as bytes. Loading checks
//! that they belong together before anything reaches a device.

use std::borrow::Cow;

use crate::error::{Result, SaeplayError};
use crate::model::{
    Family, Gpt2, Gpt2Config, Gpt2Weights, Llama, LlamaConfig, LlamaWeights, Model, ModelDims,
    WeightProcessing,
};
use crate::tokenizer::TextTokenizer;

/// A model as a person supplies it: Hugging Face files (`config.json`, the safetensors weights in
/// one file or in shards, and `tokenizer.json`, absent from what `save_pretrained` of a model
/// alone writes: such a model runs on token ids), or one llama.cpp GGUF file.
#[derive(Clone)]
pub enum ModelFiles {
    HuggingFace(HfFiles),
    /// Shared, because the packed matrices read from it stay views of these bytes.
    Gguf(bytes::Bytes),
}

#[derive(Clone)]
pub struct HfFiles {
    pub config_json: Vec<u8>,
    /// `model.safetensors`, or the shards `model-0000N-of-0000M.safetensors` in order.
    pub shards: Vec<Vec<u8>>,
    pub tokenizer_json: Option<Vec<u8>>,
}

/// The name a GGUF model is kept under among a model's files (page storage).
pub const GGUF_FILE: &str = "model.gguf";

/// The error for text work on a model that came without a tokenizer.
fn no_tokenizer() -> SaeplayError {
    SaeplayError::InvalidSetting(
        "this model came without a tokenizer.json, so it cannot read or write text; \
         give token ids instead (e.g. `forward --ids`) or add the tokenizer.json of its family"
            .into(),
    )
}

/// Host weights of either family.
pub enum HostWeights {
    Gpt2(Gpt2Weights),
    Llama(LlamaWeights),
}

impl HostWeights {
    pub fn into_gpt2(self) -> Option<Gpt2Weights> {
        match self {
            Self::Gpt2(weights) => Some(weights),
            Self::Llama(_) => None,
        }
    }

    pub fn into_llama(self) -> Option<LlamaWeights> {
        match self {
            Self::Llama(weights) => Some(weights),
            Self::Gpt2(_) => None,
        }
    }
}

/// A parsed, checked model on the host, not yet on a device.
pub struct HostModel {
    pub weights: HostWeights,
    tokenizer: Option<TextTokenizer>,
    /// The TransformerLens processing applied to `weights` (none as loaded).
    pub processing: WeightProcessing,
}

impl HostModel {
    pub fn dims(&self) -> ModelDims {
        match &self.weights {
            HostWeights::Gpt2(weights) => weights.config.dims(),
            HostWeights::Llama(weights) => weights.config.dims(),
        }
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
    pub model: Model,
    tokenizer: Option<TextTokenizer>,
    /// The TransformerLens processing its weights went through.
    pub processing: WeightProcessing,
}

/// Which family a `config.json` describes, by its `model_type` (or `architectures`).
fn family_of(config_json: &[u8]) -> Result<Family> {
    let value: serde_json::Value = serde_json::from_slice(config_json)
        .map_err(|error| SaeplayError::Config(error.to_string()))?;
    let model_type = value.get("model_type").and_then(|v| v.as_str());
    let architecture = value
        .get("architectures")
        .and_then(|v| v.as_array())
        .and_then(|a| a.first())
        .and_then(|v| v.as_str());
    match (model_type, architecture) {
        (Some("gpt2"), _) | (None, Some("GPT2LMHeadModel")) | (None, None) => Ok(Family::Gpt2),
        (Some("llama" | "qwen2" | "mistral"), _)
        | (None, Some("LlamaForCausalLM" | "Qwen2ForCausalLM" | "MistralForCausalLM")) => {
            Ok(Family::Llama)
        }
        (kind, architecture) => Err(SaeplayError::Config(format!(
            "this is a {} model; saeplay runs GPT-2 and the Llama family (Llama, Qwen2, SmolLM2, Mistral)",
            kind.or(architecture).unwrap_or("different")
        ))),
    }
}

/// Whether a file name is a shard of a sharded safetensors checkpoint
/// (`model-00001-of-00003.safetensors`).
fn is_shard(name: &str) -> bool {
    name.strip_prefix("model-")
        .and_then(|rest| rest.strip_suffix(".safetensors"))
        .and_then(|rest| rest.split_once("-of-"))
        .is_some_and(|(i, n)| {
            !i.is_empty()
                && !n.is_empty()
                && i.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// The base name of a picked file (folders in the name are ignored).
fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

impl ModelFiles {
    /// Read a model from disk: a `.gguf` file, or a Hugging Face directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_path(path: &std::path::Path) -> Result<Self> {
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|error| SaeplayError::file(crate::error::FileAction::Read, path, error))
        };
        if path.is_file() {
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            {
                return Ok(Self::Gguf(read(path)?.into()));
            }
            return Err(SaeplayError::InvalidSetting(format!(
                "{} is a file but not a .gguf: give a GGUF file or a model directory (config.json, model.safetensors, tokenizer.json)",
                path.display()
            )));
        }
        let dir = path;
        let config_json = read(&dir.join("config.json"))?;
        let single = dir.join("model.safetensors");
        let shards = if single.exists() || !dir.join(SHARD_INDEX).exists() {
            vec![read(&single)?]
        } else {
            let index = read(&dir.join(SHARD_INDEX))?;
            shard_names(&index)?
                .iter()
                .map(|name| read(&dir.join(name)))
                .collect::<Result<Vec<_>>>()?
        };
        Ok(Self::HuggingFace(HfFiles {
            config_json,
            shards,
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
        }))
    }

    /// Write the files into a directory (a GGUF as `model.gguf`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_dir(&self, dir: &std::path::Path) -> Result<()> {
        write_named(dir, self.named_files())
    }

    /// The files a person picked or dropped, by name (folders in the names are ignored): one
    /// `.gguf`, or `config.json` with `model.safetensors` (or its shards) and `tokenizer.json`.
    pub fn from_named_files(files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let mut config_json = None;
        let mut single = None;
        let mut tokenizer_json = None;
        let mut shards: Vec<(String, Vec<u8>)> = Vec::new();
        let mut gguf = None;
        for (name, bytes) in files {
            let base = base_name(&name).to_string();
            if base.to_ascii_lowercase().ends_with(".gguf") {
                if gguf.replace(bytes).is_some() {
                    return Err(SaeplayError::InvalidSetting(
                        "two .gguf files were given: choose one model".into(),
                    ));
                }
                continue;
            }
            if is_shard(&base) {
                if shards.iter().any(|(n, _)| *n == base) {
                    return Err(SaeplayError::InvalidSetting(format!(
                        "{base} was given twice: choose one model's files"
                    )));
                }
                shards.push((base, bytes));
                continue;
            }
            let slot = match base.as_str() {
                "config.json" => &mut config_json,
                "model.safetensors" => &mut single,
                "tokenizer.json" => &mut tokenizer_json,
                _ => continue, // generation_config.json, README.md, the index, ...: not needed
            };
            if slot.replace(bytes).is_some() {
                return Err(SaeplayError::InvalidSetting(format!(
                    "{base} was given twice: choose one model's files"
                )));
            }
        }
        if let Some(gguf) = gguf {
            if config_json.is_some() || single.is_some() || !shards.is_empty() {
                return Err(SaeplayError::InvalidSetting(
                    "a .gguf file was given together with safetensors model files: choose one model"
                        .into(),
                ));
            }
            return Ok(Self::Gguf(gguf.into()));
        }
        let missing = |file: &str| {
            SaeplayError::InvalidSetting(format!(
                "{file} is missing: a model needs config.json and model.safetensors \
                 (and tokenizer.json for text), as Hugging Face's save_pretrained writes them, or one .gguf file"
            ))
        };
        shards.sort_by(|a, b| a.0.cmp(&b.0));
        let shards = match (single, shards.is_empty()) {
            (Some(single), true) => vec![single],
            (None, false) => shards.into_iter().map(|(_, bytes)| bytes).collect(),
            (None, true) => return Err(missing("model.safetensors")),
            (Some(_), false) => {
                return Err(SaeplayError::InvalidSetting(
                    "both model.safetensors and sharded model-…-of-….safetensors files were given: choose one checkpoint"
                        .into(),
                ));
            }
        };
        Ok(Self::HuggingFace(HfFiles {
            config_json: config_json.ok_or_else(|| missing("config.json"))?,
            shards,
            tokenizer_json,
        }))
    }

    /// Whether named files are a model's (rather than an SAE's).
    pub fn looks_like_model(names: &[&str]) -> bool {
        names.iter().any(|name| {
            let base = base_name(name);
            base == "config.json"
                || base == "model.safetensors"
                || is_shard(base)
                || base.to_ascii_lowercase().ends_with(".gguf")
        })
    }

    /// The files with their names, as a directory holds them.
    pub fn named_files(&self) -> Vec<(String, Cow<'_, [u8]>)> {
        match self {
            Self::Gguf(bytes) => vec![(GGUF_FILE.to_string(), Cow::Borrowed(bytes.as_ref()))],
            Self::HuggingFace(files) => files.named_files(),
        }
    }

    /// Parse and check: config, every tensor's shape, and the tokenizer against the vocabulary.
    pub fn parse(&self) -> Result<HostModel> {
        let (weights, tokenizer) = match self {
            Self::Gguf(bytes) => {
                let (weights, tokenizer) = crate::model::llama::gguf::read_gguf(bytes)?;
                (HostWeights::Llama(weights), tokenizer)
            }
            Self::HuggingFace(files) => return files.parse(),
        };
        checked_host(weights, tokenizer)
    }
}

/// A parsed model, its tokenizer checked against its vocabulary.
fn checked_host(weights: HostWeights, tokenizer: Option<TextTokenizer>) -> Result<HostModel> {
    let host = HostModel {
        weights,
        tokenizer,
        processing: WeightProcessing::default(),
    };
    let vocab = host.dims().d_vocab;
    if let Some(tokenizer) = &host.tokenizer
        && tokenizer.vocab_size() > vocab
    {
        return Err(SaeplayError::VocabMismatch {
            tokenizer: tokenizer.vocab_size(),
            model: vocab,
        });
    }
    Ok(host)
}

#[cfg(not(target_arch = "wasm32"))]
fn write_named(dir: &std::path::Path, files: Vec<(String, Cow<'_, [u8]>)>) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|error| SaeplayError::file(crate::error::FileAction::Create, dir, error))?;
    for (name, bytes) in files {
        let path = dir.join(&name);
        std::fs::write(&path, &bytes)
            .map_err(|error| SaeplayError::file(crate::error::FileAction::Write, &path, error))?;
    }
    Ok(())
}

impl HfFiles {
    /// Parse and check: config, every tensor's shape, and the tokenizer against the vocabulary.
    pub fn parse(&self) -> Result<HostModel> {
        let weights = match family_of(&self.config_json)? {
            Family::Gpt2 => {
                let config = Gpt2Config::from_json(&self.config_json)?;
                let [single] = self.shards.as_slice() else {
                    return Err(SaeplayError::InvalidSetting(
                        "a GPT-2 model comes as one model.safetensors".into(),
                    ));
                };
                HostWeights::Gpt2(Gpt2Weights::from_safetensors(&config, single)?)
            }
            Family::Llama => {
                let config = LlamaConfig::from_json(&self.config_json)?;
                HostWeights::Llama(LlamaWeights::from_safetensors(&config, &self.shards)?)
            }
        };
        let tokenizer = match &self.tokenizer_json {
            Some(bytes) => Some(TextTokenizer::from_bytes(bytes)?),
            None => None,
        };
        checked_host(weights, tokenizer)
    }

    /// The files with their names, as a directory holds them.
    /// The files by their Hugging Face names; shards come with the `model.safetensors.index.json`
    /// that names them (what a folder needs to be read back, by the CLI or by the page).
    pub fn named_files(&self) -> Vec<(String, Cow<'_, [u8]>)> {
        let mut out = vec![(
            "config.json".to_string(),
            Cow::Borrowed(self.config_json.as_slice()),
        )];
        let n = self.shards.len();
        let mut weight_map = serde_json::Map::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let name = if n == 1 {
                "model.safetensors".to_string()
            } else {
                format!("model-{:05}-of-{n:05}.safetensors", i + 1)
            };
            if n > 1
                && let Ok((_, metadata)) = safetensors::SafeTensors::read_metadata(shard)
            {
                for tensor in metadata.tensors().keys() {
                    weight_map.insert(tensor.clone(), name.clone().into());
                }
            }
            out.push((name, Cow::Borrowed(shard.as_slice())));
        }
        if n > 1 {
            let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
            out.push((
                SHARD_INDEX.to_string(),
                Cow::Owned(index.to_string().into_bytes()),
            ));
        }
        if let Some(tokenizer) = &self.tokenizer_json {
            out.push((
                "tokenizer.json".to_string(),
                Cow::Borrowed(tokenizer.as_slice()),
            ));
        }
        out
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_dir(&self, dir: &std::path::Path) -> Result<()> {
        write_named(dir, self.named_files())
    }
}

/// The index of a sharded checkpoint.
pub const SHARD_INDEX: &str = "model.safetensors.index.json";

/// The shard files a `model.safetensors.index.json` names, in order.
pub fn shard_names(index_json: &[u8]) -> Result<Vec<String>> {
    let bad = |why: &str| SaeplayError::Config(format!("model.safetensors.index.json {why}"));
    let value: serde_json::Value =
        serde_json::from_slice(index_json).map_err(|_| bad("is not valid JSON"))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("has no weight_map"))?;
    let mut names: Vec<String> = Vec::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| bad("maps a tensor to something not a file name"))?;
        if !is_shard(file) {
            return Err(bad(&format!(
                "names `{file}`, which is not a shard name like model-00001-of-00002.safetensors"
            )));
        }
        if !names.iter().any(|n| n == file) {
            names.push(file.to_string());
        }
    }
    if names.is_empty() {
        return Err(bad("names no shards"));
    }
    names.sort();
    Ok(names)
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
        if self.processing.is_none() && !processing.is_none() {
            match &mut self.weights {
                HostWeights::Gpt2(weights) => processing.apply(weights),
                HostWeights::Llama(_) => {
                    return Err(SaeplayError::InvalidSetting(format!(
                        "weight processing ({}) is implemented for GPT-2 models only; \
                         run this Llama-family model as loaded",
                        processing.describe()
                    )));
                }
            }
            self.processing = processing;
        }
        Ok(self)
    }

    pub fn upload(self, device: &burn::tensor::Device) -> Result<LoadedModel> {
        let model = match self.weights {
            HostWeights::Gpt2(weights) => Model::Gpt2(Gpt2::from_weights(weights, device)?),
            HostWeights::Llama(weights) => Model::Llama(Llama::from_weights(weights, device)?),
        };
        Ok(LoadedModel {
            model,
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
        let max = self.model.dims().n_ctx;
        if encoded.ids.len() > max {
            return Err(SaeplayError::TooLong {
                len: encoded.ids.len(),
                max,
            });
        }
        Ok(encoded)
    }
}
