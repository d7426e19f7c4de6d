//! GPT-2 weights on the host: read from (and written to) Hugging Face safetensors bytes, checked
//! against the config before anything reaches a device.
//!
//! Names are the checkpoint's own (`h.0.attn.c_attn.weight`, ...), without the optional
//! `transformer.` prefix. Linear weights are Conv1D, `[in, out]`, used as stored.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use safetensors::SafeTensors;

use super::config::Gpt2Config;
use crate::backend::float_tensor;
use crate::error::{Result, SaeplayError};
use crate::io::tensors::{HostTensor, shaped_f32, write_safetensors};
use crate::io::tensors::{Spread, random_tensors};

#[derive(Debug, Clone)]
pub struct Gpt2Weights {
    pub config: Gpt2Config,
    pub tensors: BTreeMap<String, HostTensor>,
}

/// Every tensor a GPT-2 checkpoint must hold, with its shape under `config`.
pub fn expected_shapes(config: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let d = config.n_embd;
    let m = config.d_mlp();
    let mut shapes = vec![
        ("wte.weight".to_string(), vec![config.vocab_size, d]),
        ("wpe.weight".to_string(), vec![config.n_positions, d]),
    ];
    for layer in 0..config.n_layer {
        let p = format!("h.{layer}.");
        shapes.extend([
            (format!("{p}ln_1.weight"), vec![d]),
            (format!("{p}ln_1.bias"), vec![d]),
            (format!("{p}attn.c_attn.weight"), vec![d, 3 * d]),
            (format!("{p}attn.c_attn.bias"), vec![3 * d]),
            (format!("{p}attn.c_proj.weight"), vec![d, d]),
            (format!("{p}attn.c_proj.bias"), vec![d]),
            (format!("{p}ln_2.weight"), vec![d]),
            (format!("{p}ln_2.bias"), vec![d]),
            (format!("{p}mlp.c_fc.weight"), vec![d, m]),
            (format!("{p}mlp.c_fc.bias"), vec![m]),
            (format!("{p}mlp.c_proj.weight"), vec![m, d]),
            (format!("{p}mlp.c_proj.bias"), vec![d]),
        ]);
    }
    shapes.push(("ln_f.weight".into(), vec![d]));
    shapes.push(("ln_f.bias".into(), vec![d]));
    shapes
}

const PREFIX: &str = "transformer.";

impl Gpt2Weights {
    /// Parse safetensors bytes and check every tensor against the config.
    pub fn from_safetensors(config: &Gpt2Config, bytes: &[u8]) -> Result<Self> {
        config.validate()?;
        let file = SafeTensors::deserialize(bytes)?;
        let has_prefix = file.names().iter().any(|name| name.starts_with(PREFIX));
        let mut tensors = BTreeMap::new();
        for (name, expected) in expected_shapes(config) {
            let stored_name = if has_prefix {
                format!("{PREFIX}{name}")
            } else {
                name.clone()
            };
            let view = file
                .tensor(&stored_name)
                .or_else(|_| file.tensor(&name))
                .map_err(|_| SaeplayError::MissingTensor(name.clone()))?;
            let tensor = shaped_f32(&name, expected, &view)?;
            if tensor.values.iter().any(|v| !v.is_finite()) {
                return Err(SaeplayError::NonFinite { name });
            }
            tensors.insert(name, tensor);
        }
        Ok(Self {
            config: config.clone(),
            tensors,
        })
    }

    /// Serialise as safetensors (F32), optionally with the `transformer.` key prefix.
    pub fn to_safetensors(&self, with_prefix: bool) -> Vec<u8> {
        let named: Vec<(String, &HostTensor)> = self
            .tensors
            .iter()
            .map(|(name, tensor)| {
                let key = if with_prefix {
                    format!("{PREFIX}{name}")
                } else {
                    name.clone()
                };
                (key, tensor)
            })
            .collect();
        write_safetensors(
            named
                .iter()
                .map(|(k, t)| (k.as_str(), &t.shape[..], &t.values[..])),
        )
    }

    pub fn get(&self, name: &str) -> &HostTensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("weights were validated to hold `{name}`"))
    }

    /// Deterministic random weights for tests and the placeholder page model. Layer-norm gains
    /// and every bias are randomised too, so a forward that forgot one of them is caught.
    pub fn random(config: &Gpt2Config, seed: u64) -> Self {
        let tensors = random_tensors(expected_shapes(config), seed, |name| {
            if name.contains("ln_") && name.ends_with(".weight") {
                Spread::AroundOne(0.1)
            } else if name.ends_with(".bias") {
                Spread::AroundZero(0.02)
            } else if name.starts_with("wte") || name.starts_with("wpe") {
                Spread::AroundZero(0.1)
            } else {
                Spread::AroundZero(0.06)
            }
        });
        Self {
            config: config.clone(),
            tensors,
        }
    }
}

/// One parameter tensor by its checkpoint name (`h.0.ln_1.weight`, ...).
#[derive(Clone, Debug)]
pub enum ParamTensor {
    Vector(Tensor<1>),
    Matrix(Tensor<2>),
}

/// A model's parameters by checkpoint name: what training updates and `Gpt2` is built from.
pub type Gpt2Params = BTreeMap<String, ParamTensor>;

/// One host tensor as a device parameter.
fn upload_tensor(shape: &[usize], values: Vec<f32>, device: &Device) -> ParamTensor {
    match *shape {
        [n] => ParamTensor::Vector(float_tensor(values, [n], device)),
        [rows, cols] => ParamTensor::Matrix(float_tensor(values, [rows, cols], device)),
        _ => unreachable!("GPT-2 tensors have rank 1 or 2"),
    }
}

/// Upload host weights to a device as parameters (the host copy stays).
pub fn upload_params(weights: &Gpt2Weights, device: &Device) -> Gpt2Params {
    weights
        .tensors
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                upload_tensor(&t.shape, t.values.clone(), device),
            )
        })
        .collect()
}

/// Upload host weights, handing each tensor's memory over as it goes: a 124M-parameter model
/// would otherwise be held twice at once (too much for a tab).
pub fn upload_params_owned(weights: Gpt2Weights, device: &Device) -> Gpt2Params {
    weights
        .tensors
        .into_iter()
        .map(|(name, t)| (name, upload_tensor(&t.shape, t.values, device)))
        .collect()
}
