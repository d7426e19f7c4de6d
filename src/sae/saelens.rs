//! SAELens directories in and out: `cfg.json`, `sae_weights.safetensors` and optionally
//! `sparsity.safetensors` (log10 feature density), plus our own `saeplay.json` beside them
//! (training recipe, metrics, model identity), which SAELens ignores.
//!
//! Reading accepts SAELens 6 configs (`architecture`, `metadata.hook_name`, `k`) and older ones
//! (`hook_point`, `activation_fn_str` / `activation_fn: topk` with `activation_fn_kwargs.k`).
//! `apply_b_dec_to_input: false` is folded into the encoder bias so that the SAE computes the same
//! features with our single formula. Writing gives what SAELens 6 loads unchanged; BatchTopK is
//! written as JumpReLU with its threshold, as SAELens saves it for inference. Which names each
//! architecture reads and writes is said in its `sae::arch` file; this one loops over them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::arch::{B_DEC, B_ENC, KINDS, SaelensNames, W_DEC, W_ENC};
use super::metrics::SaeMetrics;
use super::train::SaeTrainingConfig;
use super::{ActivationNormalization, Architecture, Sae, SaeConfig};
use crate::error::{Result, SaeplayError};
use crate::io::tensors::HostTensor;
use crate::io::tensors::{read_f32_tensors, write_safetensors};
use crate::model::WeightProcessing;

pub const CFG_FILE: &str = "cfg.json";
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
pub const SPARSITY_FILE: &str = "sparsity.safetensors";
pub const SAEPLAY_FILE: &str = "saeplay.json";

/// What we keep beside the SAELens files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Provenance {
    /// The architecture it was trained as (BatchTopK is saved as JumpReLU).
    #[serde(default)]
    pub trained_as: Option<String>,
    #[serde(default)]
    pub recipe: Option<SaeTrainingConfig>,
    #[serde(default)]
    pub metrics: Option<SaeMetrics>,
    /// The input scale used in training (already folded into the weights).
    #[serde(default)]
    pub input_scale: Option<f32>,
    /// A short identifier (content hash) of the model the SAE was trained on.
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The TransformerLens processing of the model it was trained on; written to cfg.json as
    /// `metadata.model_from_pretrained_kwargs`.
    #[serde(default, skip_serializing_if = "WeightProcessing::is_none")]
    pub model_processing: WeightProcessing,
}

/// The files of one SAE directory, as bytes (the page has no filesystem).
#[derive(Debug, Clone, Default)]
pub struct SaeFiles {
    pub cfg: Vec<u8>,
    pub weights: Vec<u8>,
    pub sparsity: Option<Vec<u8>>,
    pub saeplay: Option<Vec<u8>>,
}

/// An SAE read from files, on the host.
#[derive(Debug, Clone)]
pub struct HostSae {
    pub config: SaeConfig,
    pub weights: BTreeMap<String, HostTensor>,
    /// log10 feature density, when the directory has it.
    pub log_density: Option<Vec<f32>>,
    pub provenance: Provenance,
    /// The TransformerLens processing of the model it reads (`model_from_pretrained_kwargs`).
    pub model_processing: WeightProcessing,
    /// Where Neuronpedia shows its features (`neuronpedia_id`, e.g. `gpt2-small/8-res-jb`).
    pub neuronpedia_id: Option<String>,
}

impl HostSae {
    /// The SAE reads activations of a model processed as its cfg.json says; on a model processed
    /// otherwise its features would be read from the wrong activations.
    pub fn check_model_processing(&self, model: WeightProcessing) -> Result<()> {
        if self.model_processing == model {
            return Ok(());
        }
        Err(SaeplayError::SaeMismatch(format!(
            "it was trained on the model processed with {} (cfg.json's model_from_pretrained_kwargs), \
             but the model here is processed with {}",
            self.model_processing.describe(),
            model.describe()
        )))
    }

    pub fn upload(&self, device: &burn::tensor::Device) -> Result<Sae> {
        Sae::from_host(self.config.clone(), &self.weights, device)
    }
}

fn file_error(what: impl Into<String>) -> SaeplayError {
    SaeplayError::SaeFile(what.into())
}

impl SaeFiles {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|source| SaeplayError::SaeFileRead {
                path: dir.join(name),
                source,
            })
        };
        let optional = |name: &str| std::fs::read(dir.join(name)).ok();
        Ok(Self {
            cfg: read(CFG_FILE)?,
            weights: read(WEIGHTS_FILE)?,
            sparsity: optional(SPARSITY_FILE),
            saeplay: optional(SAEPLAY_FILE),
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_dir(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SaeplayError::file(crate::error::FileAction::Create, dir, e))?;
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.join(name), bytes)
                .map_err(|e| SaeplayError::file(crate::error::FileAction::Write, dir.join(name), e))
        };
        write(CFG_FILE, &self.cfg)?;
        write(WEIGHTS_FILE, &self.weights)?;
        if let Some(s) = &self.sparsity {
            write(SPARSITY_FILE, s)?;
        }
        if let Some(s) = &self.saeplay {
            write(SAEPLAY_FILE, s)?;
        }
        Ok(())
    }

    /// One zip of the directory, its files inside `folder/`, as SAELens users unpack it.
    pub fn to_zip(&self, folder: &str) -> Vec<u8> {
        let mut entries = vec![
            (format!("{folder}/{CFG_FILE}"), self.cfg.clone()),
            (format!("{folder}/{WEIGHTS_FILE}"), self.weights.clone()),
        ];
        if let Some(s) = &self.sparsity {
            entries.push((format!("{folder}/{SPARSITY_FILE}"), s.clone()));
        }
        if let Some(s) = &self.saeplay {
            entries.push((format!("{folder}/{SAEPLAY_FILE}"), s.clone()));
        }
        crate::io::zip::write_zip(&entries)
    }

    /// Gather one SAE from files a person picked or dropped: a zip of a SAELens directory, or
    /// the directory's files themselves (`cfg.json` and `sae_weights.safetensors` at least).
    pub fn from_named_files(files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let mut unpacked = Vec::new();
        for (name, bytes) in files {
            if crate::io::zip::looks_like_zip(&bytes) {
                unpacked.extend(crate::io::zip::read_zip(&bytes)?);
            } else {
                unpacked.push((name, bytes));
            }
        }
        let base = |name: &str| name.rsplit(['/', '\\']).next().unwrap_or(name).to_string();
        let folders: std::collections::BTreeSet<String> = unpacked
            .iter()
            .filter(|(name, _)| base(name) == CFG_FILE)
            .map(|(name, _)| name[..name.len() - CFG_FILE.len()].to_string())
            .collect();
        let folder = match folders.len() {
            0 => {
                return Err(file_error(
                    "there is no cfg.json among them: choose a SAELens directory's files (cfg.json and sae_weights.safetensors) or a zip of it",
                ));
            }
            1 => folders.into_iter().next().unwrap_or_default(),
            n => {
                return Err(file_error(format!(
                    "they hold {n} SAEs (cfg.json files); import one at a time"
                )));
            }
        };
        let mut take = |file: &str| {
            unpacked
                .iter()
                .position(|(name, _)| {
                    base(name) == file && name[..name.len() - file.len()] == folder
                })
                .map(|i| unpacked.swap_remove(i).1)
        };
        let cfg = take(CFG_FILE).unwrap_or_default();
        let weights = take(WEIGHTS_FILE)
            .ok_or_else(|| file_error("sae_weights.safetensors is missing beside cfg.json"))?;
        Ok(Self {
            cfg,
            weights,
            sparsity: take(SPARSITY_FILE),
            saeplay: take(SAEPLAY_FILE),
        })
    }

    /// How many bytes of pasted or uploaded text the recipe in `saeplay.json` carries (the text
    /// the SAE was trained on), if any.
    pub fn training_text_len(&self) -> Option<usize> {
        let provenance: Provenance = serde_json::from_slice(self.saeplay.as_deref()?).ok()?;
        match provenance.recipe?.corpus {
            crate::sae::store::Corpus::Text { text } if !text.is_empty() => Some(text.len()),
            _ => None,
        }
    }

    /// The same files with the training text left out of `saeplay.json`'s recipe (the recipe
    /// still says it was a text): what an export holds unless the person chooses to share it.
    pub fn without_training_text(&self) -> Result<SaeFiles> {
        let Some(bytes) = &self.saeplay else {
            return Ok(self.clone());
        };
        let mut provenance: Provenance = serde_json::from_slice(bytes)
            .map_err(|e| file_error(format!("saeplay.json is not valid: {e}")))?;
        if let Some(recipe) = &mut provenance.recipe
            && let crate::sae::store::Corpus::Text { text } = &mut recipe.corpus
        {
            text.clear();
        }
        Ok(SaeFiles {
            saeplay: Some(json_bytes(&provenance)?),
            ..self.clone()
        })
    }

    /// Parse and check the files.
    pub fn parse(&self) -> Result<HostSae> {
        let cfg: Value = serde_json::from_slice(&self.cfg)
            .map_err(|e| file_error(format!("cfg.json is not valid JSON: {e}")))?;
        let parsed = parse_cfg(&cfg)?;
        let mut weights = read_f32_tensors(&self.weights)
            .map_err(|e| file_error(format!("sae_weights.safetensors: {e}")))?;
        let config = parsed.config;
        if !parsed.apply_b_dec_to_input {
            fold_b_dec_into_encoder(&config, &mut weights)?;
        }
        if parsed.rescale_acts_by_decoder_norm {
            fold_decoder_norms(&config, &mut weights)?;
        }
        if let Some(factor) = parsed.norm_scaling_factor {
            fold_norm_scaling_factor(factor, &mut weights);
        }
        // Vectors may be stored as [1, n] by some writers.
        for tensor in weights.values_mut() {
            if tensor.shape.len() == 2 && tensor.shape[0] == 1 {
                tensor.shape.remove(0);
            }
        }
        for (name, shape) in config.parameter_shapes() {
            match weights.get(name) {
                None => {
                    return Err(SaeplayError::MissingSaeTensor {
                        name: name.to_string(),
                        architecture: config.architecture.name(),
                    });
                }
                Some(t) if t.shape != shape => {
                    return Err(SaeplayError::TensorShape {
                        name: name.to_string(),
                        expected: shape,
                        found: t.shape.clone(),
                    });
                }
                Some(t) if t.values.iter().any(|v| !v.is_finite()) => {
                    return Err(SaeplayError::NonFinite {
                        name: name.to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        let log_density = match &self.sparsity {
            None => None,
            Some(bytes) => {
                let tensors = read_f32_tensors(bytes)
                    .map_err(|e| file_error(format!("sparsity.safetensors: {e}")))?;
                let t = tensors.get("sparsity").ok_or_else(|| {
                    file_error("sparsity.safetensors lacks the tensor `sparsity`")
                })?;
                if t.values.len() != config.d_sae {
                    return Err(file_error(format!(
                        "sparsity.safetensors has {} values but the SAE has {} features",
                        t.values.len(),
                        config.d_sae
                    )));
                }
                Some(t.values.clone())
            }
        };
        let provenance = match &self.saeplay {
            None => Provenance::default(),
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|e| file_error(format!("saeplay.json is not valid: {e}")))?,
        };
        Ok(HostSae {
            config,
            weights,
            log_density,
            provenance,
            model_processing: parsed.model_processing,
            neuronpedia_id: parsed.neuronpedia_id,
        })
    }
}

struct ParsedCfg {
    config: SaeConfig,
    apply_b_dec_to_input: bool,
    rescale_acts_by_decoder_norm: bool,
    /// `expected_average_only_in`'s constant `s`: the SAE reads `s * x`.
    norm_scaling_factor: Option<f32>,
    model_processing: WeightProcessing,
    neuronpedia_id: Option<String>,
}

fn parse_cfg(cfg: &Value) -> Result<ParsedCfg> {
    let obj = cfg
        .as_object()
        .ok_or_else(|| file_error("cfg.json must be a JSON object"))?;
    let metadata = obj.get("metadata").and_then(Value::as_object);
    // A key from metadata (SAELens 6) or the top level (older configs).
    let get = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .filter(|v| !v.is_null())
            .or_else(|| obj.get(key).filter(|v| !v.is_null()))
    };
    let size = |key: &str| -> Result<usize> {
        let value = obj
            .get(key)
            .and_then(Value::as_u64)
            .filter(|&v| v > 0)
            .ok_or_else(|| {
                file_error(format!("cfg.json needs `{key}` as a whole number above 0"))
            })?;
        usize::try_from(value).map_err(|_| {
            file_error(format!(
                "cfg.json's `{key}` ({value}) is larger than this machine can address"
            ))
        })
    };
    let d_in = size("d_in")?;
    let d_sae = size("d_sae")?;
    let hook_name = get("hook_name")
        .or_else(|| get("hook_point"))
        .and_then(Value::as_str)
        .ok_or_else(|| file_error("cfg.json names no hook (`hook_name` or `hook_point`)"))?
        .to_string();
    if let Some(head) = get("hook_head_index")
        && !head.is_null()
    {
        return Err(file_error(format!(
            "SAEs on a single attention head (hook_head_index {head}) are not supported"
        )));
    }
    let model_name = get("model_name")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    // A k beyond usize is kept as usize::MAX, which `validate` refuses as above d_sae.
    let k_from = |v: Option<&Value>| {
        v.and_then(Value::as_u64)
            .map(|k| usize::try_from(k).unwrap_or(usize::MAX))
    };
    let kwargs_k = k_from(obj.get("activation_fn_kwargs").and_then(|kw| kw.get("k")));
    let k = k_from(obj.get("k")).or(kwargs_k);
    let activation = obj
        .get("activation_fn_str")
        .or_else(|| obj.get("activation_fn"))
        .and_then(Value::as_str);
    let names = SaelensNames {
        architecture: obj.get("architecture").and_then(Value::as_str),
        activation,
    };
    // Each architecture says which names it reads (`arch::Kind::reads_saelens`).
    let architecture = match Architecture::from_saelens(&names, k) {
        Some(read) => read.map_err(|e| file_error(e.to_string()))?,
        None => {
            return Err(file_error(match names.architecture {
                Some(name) => Architecture::unknown(name).to_string(),
                None => format!(
                    "unknown activation function `{}`",
                    activation.unwrap_or_default()
                ),
            }));
        }
    };
    // SAELens keeps `expected_average_only_in`'s constant in its release table, not in cfg.json;
    // a release-table load (and our own writer) puts it in as `norm_scaling_factor`.
    let mut norm_scaling_factor = None;
    let normalize_activations = match obj.get("normalize_activations").and_then(Value::as_str) {
        None | Some("none") => ActivationNormalization::None,
        Some("layer_norm") => ActivationNormalization::LayerNorm,
        Some("constant_norm_rescale") => ActivationNormalization::ConstantNormRescale,
        Some("expected_average_only_in") => {
            let factor = obj
                .get("norm_scaling_factor")
                .and_then(Value::as_f64)
                .filter(|f| f.is_finite() && *f > 0.0)
                .ok_or_else(|| {
                    file_error(
                        "cfg.json asks for `expected_average_only_in` input normalisation but \
                         gives no `norm_scaling_factor`; SAELens keeps that number in its release \
                         table (pretrained_saes.yaml): open the SAE by its release name, or add \
                         \"norm_scaling_factor\": S to cfg.json",
                    )
                })?;
            norm_scaling_factor = Some(factor as f32);
            ActivationNormalization::None
        }
        Some(other) => {
            return Err(file_error(format!(
                "input normalisation `{other}` is not supported \
                 (use none, layer_norm, constant_norm_rescale or expected_average_only_in)"
            )));
        }
    };
    let apply_b_dec_to_input = obj
        .get("apply_b_dec_to_input")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let config = SaeConfig {
        architecture,
        d_in,
        d_sae,
        hook_name,
        model_name,
        normalize_activations,
    };
    config.validate()?;
    let rescale_acts_by_decoder_norm = obj
        .get("rescale_acts_by_decoder_norm")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // SAELens loads the model with `HookedTransformer.from_pretrained_no_processing(**kwargs)`:
    // a step it does not name is off.
    let model_processing = match get("model_from_pretrained_kwargs") {
        None => WeightProcessing::default(),
        Some(kwargs) => serde_json::from_value(kwargs.clone()).map_err(|e| {
            file_error(format!(
                "cfg.json's model_from_pretrained_kwargs is not valid: {e}"
            ))
        })?,
    };
    Ok(ParsedCfg {
        config,
        apply_b_dec_to_input,
        rescale_acts_by_decoder_norm,
        norm_scaling_factor,
        model_processing,
        neuronpedia_id: get("neuronpedia_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// With `apply_b_dec_to_input: false` the encoder reads `x` rather than `x - b_dec`; adding
/// `b_dec @ W_enc` (rescaled for the magnitude path) to the encoder biases gives the same
/// pre-activations from `x - b_dec`.
fn fold_b_dec_into_encoder(
    config: &SaeConfig,
    weights: &mut BTreeMap<String, HostTensor>,
) -> Result<()> {
    let (d_in, d_sae) = (config.d_in, config.d_sae);
    let get = |weights: &BTreeMap<String, HostTensor>, name: &str| {
        weights
            .get(name)
            .cloned()
            .ok_or_else(|| SaeplayError::MissingSaeTensor {
                name: name.to_string(),
                architecture: config.architecture.name(),
            })
    };
    let w_enc = get(weights, W_ENC)?;
    let b_dec = get(weights, B_DEC)?;
    if w_enc.values.len() != d_in * d_sae || b_dec.values.len() != d_in {
        return Err(file_error(
            "W_enc or b_dec has the wrong size for d_in and d_sae",
        ));
    }
    let project = |scale: &dyn Fn(usize) -> f32| -> Vec<f32> {
        (0..d_sae)
            .map(|i| {
                (0..d_in)
                    .map(|j| b_dec.values[j] * w_enc.values[j * d_sae + i])
                    .sum::<f32>()
                    * scale(i)
            })
            .collect()
    };
    let add_to =
        |weights: &mut BTreeMap<String, HostTensor>, name: &str, delta: &[f32]| -> Result<()> {
            let t = weights
                .get_mut(name)
                .ok_or_else(|| SaeplayError::MissingSaeTensor {
                    name: name.to_string(),
                    architecture: config.architecture.name(),
                })?;
            if t.values.len() != delta.len() {
                return Err(file_error(format!("`{name}` has the wrong size")));
            }
            t.values.iter_mut().zip(delta).for_each(|(v, d)| *v += d);
            Ok(())
        };
    for &(bias, log_scale) in config.architecture.behaviour().encoder_biases() {
        let delta = match log_scale {
            None => project(&|_| 1.0),
            Some(log_scale) => {
                let log_scale = get(weights, log_scale)?;
                project(&|i| log_scale.values.get(i).copied().unwrap_or(0.0).exp())
            }
        };
        add_to(weights, bias, &delta)?;
    }
    Ok(())
}

/// SAELens's TopK `rescale_acts_by_decoder_norm` multiplies pre-activations by `||W_dec[i]||`
/// and divides features by it before decoding; folding `n_i` into `W_enc`'s columns and `b_enc`
/// and dividing `W_dec`'s rows by it computes the same features with the plain formula.
fn fold_decoder_norms(
    config: &SaeConfig,
    weights: &mut BTreeMap<String, HostTensor>,
) -> Result<()> {
    let (d_in, d_sae) = (config.d_in, config.d_sae);
    let sizes_ok = weights
        .get(W_DEC)
        .is_some_and(|t| t.values.len() == d_sae * d_in)
        && weights
            .get(W_ENC)
            .is_some_and(|t| t.values.len() == d_in * d_sae)
        && weights.get(B_ENC).is_some_and(|t| t.values.len() == d_sae);
    if !sizes_ok {
        return Err(file_error(
            "W_enc, b_enc or W_dec has the wrong size for d_in and d_sae",
        ));
    }
    let norms: Vec<f32> = weights[W_DEC]
        .values
        .chunks_exact(d_in)
        .map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12))
        .collect();
    if let Some(w) = weights.get_mut(W_ENC) {
        for row in w.values.chunks_exact_mut(d_sae) {
            row.iter_mut().zip(&norms).for_each(|(v, n)| *v *= n);
        }
    }
    if let Some(b) = weights.get_mut(B_ENC) {
        b.values.iter_mut().zip(&norms).for_each(|(v, n)| *v *= n);
    }
    if let Some(w) = weights.get_mut(W_DEC) {
        for (row, n) in w.values.chunks_exact_mut(d_in).zip(&norms) {
            row.iter_mut().for_each(|v| *v /= n);
        }
    }
    Ok(())
}

/// SAELens's `fold_activation_norm_scaling_factor`: an SAE that reads `s * x` and writes
/// `x_hat / s` is the plain SAE with `W_enc * s`, `W_dec / s` and `b_dec / s` (the
/// pre-activations, and so thresholds and gates, are unchanged).
fn fold_norm_scaling_factor(factor: f32, weights: &mut BTreeMap<String, HostTensor>) {
    let mut scale = |name: &str, by: f32| {
        if let Some(t) = weights.get_mut(name) {
            t.values.iter_mut().for_each(|v| *v *= by);
        }
    };
    scale(W_ENC, factor);
    scale(W_DEC, 1.0 / factor);
    scale(B_DEC, 1.0 / factor);
}

/// Write an SAE as a SAELens 6 directory, with log10 densities and our provenance.
pub async fn write_sae(
    sae: &Sae,
    log_density: Option<&[f32]>,
    provenance: &Provenance,
    context_size: Option<usize>,
) -> Result<SaeFiles> {
    let config = &sae.config;
    let host = sae.to_host().await?;
    // SAELens loads BatchTopK for inference as JumpReLU with the threshold.
    let behaviour = config.architecture.behaviour();
    let architecture = behaviour.kind().written_as;
    let trained_as = if architecture == config.architecture.name() {
        provenance.trained_as.clone()
    } else {
        Some(config.architecture.name().to_string())
    };
    let mut cfg = json!({
        "architecture": architecture,
        "d_in": config.d_in,
        "d_sae": config.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": true,
        "normalize_activations": config.normalize_activations.name(),
        "reshape_activations": "none",
        "metadata": {
            "model_name": config.model_name,
            "hook_name": config.hook_name,
            "hook_head_index": null,
            "prepend_bos": true,
            "context_size": context_size,
            "dataset_path": "saeplay/tinytales",
            "model_class_name": "HookedTransformer",
            // The format version we write (SAELens 6); without it SAELens runs its pre-6.0 migration.
            "sae_lens_version": "6.0.0",
            "sae_lens_training_version": null,
        },
    });
    if let Some(trained) = trained_as.as_deref().filter(|t| {
        KINDS
            .iter()
            .any(|kind| kind.name == *t && kind.written_as_another())
    }) {
        cfg["metadata"]["training_architecture"] = json!(trained);
    }
    if !provenance.model_processing.is_none() {
        cfg["metadata"]["model_from_pretrained_kwargs"] = json!(provenance.model_processing);
    }
    behaviour.write_cfg(&mut cfg);
    let named: Vec<(&str, &[usize], &[f32])> = host
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape.as_slice(), t.values.as_slice()))
        .collect();
    let weights = write_safetensors(named.into_iter());
    let sparsity = log_density.map(|values| {
        let shape = [values.len()];
        write_safetensors([("sparsity", &shape[..], values)].into_iter())
    });
    let mut provenance = provenance.clone();
    provenance.trained_as = trained_as.or(Some(config.architecture.name().to_string()));
    if let Some(metrics) = &mut provenance.metrics {
        metrics.feature_density.clear(); // kept in sparsity.safetensors
    }
    Ok(SaeFiles {
        cfg: json_bytes(&cfg)?,
        weights,
        sparsity,
        saeplay: Some(json_bytes(&provenance)?),
    })
}

fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|source| SaeplayError::Json {
        what: "saeplay.json",
        source,
    })
}

/// log10 of feature densities, with SAELens's floor for dead features.
pub fn log10_densities(density: &[f64]) -> Vec<f32> {
    density
        .iter()
        .map(|&d| (d + 1e-10).log10() as f32)
        .collect()
}
