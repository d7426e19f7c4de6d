//! Llama-family weights on the host, by their Hugging Face names (`model.layers.0.self_attn.q_proj.weight`,
//! ...), in torch's `[out, in]` layout, checked against the config before anything reaches a device.
//! They come from safetensors (one file or shards) or from a GGUF file (see [`super::gguf`]),
//! whose quantised matrices can stay packed ([`QuantisedMatrix`]) until they reach a device.

use std::collections::BTreeMap;

use safetensors::SafeTensors;

use super::config::LlamaConfig;
use crate::error::{Result, SaeplayError};
use crate::io::tensors::{HostTensor, shaped_f32, write_safetensors};
use crate::io::tensors::{Spread, random_tensors};
use crate::kernels::QuantisedMatrix;

pub const EMBED: &str = "model.embed_tokens.weight";
pub const FINAL_NORM: &str = "model.norm.weight";
pub const LM_HEAD: &str = "lm_head.weight";

#[derive(Debug, Clone)]
pub struct LlamaWeights {
    pub config: LlamaConfig,
    pub tensors: BTreeMap<String, HostTensor>,
    /// Matrices still in their GGUF encoding, by the same names (never also in `tensors`).
    pub quantised: BTreeMap<String, QuantisedMatrix>,
}

/// The prefix of layer `l`'s tensors.
pub fn layer_prefix(l: usize) -> String {
    format!("model.layers.{l}.")
}

/// Every tensor the config needs, with its shape.
pub fn expected_shapes(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let q = config.num_attention_heads * config.d_head();
    let kv = config.n_kv_heads() * config.d_head();
    let m = config.intermediate_size;
    let biases = config.biases();
    let mut shapes = vec![(EMBED.to_string(), vec![config.vocab_size, d])];
    for l in 0..config.num_hidden_layers {
        let p = layer_prefix(l);
        shapes.extend([
            (format!("{p}input_layernorm.weight"), vec![d]),
            (format!("{p}self_attn.q_proj.weight"), vec![q, d]),
            (format!("{p}self_attn.k_proj.weight"), vec![kv, d]),
            (format!("{p}self_attn.v_proj.weight"), vec![kv, d]),
            (format!("{p}self_attn.o_proj.weight"), vec![d, q]),
            (format!("{p}post_attention_layernorm.weight"), vec![d]),
            (format!("{p}mlp.gate_proj.weight"), vec![m, d]),
            (format!("{p}mlp.up_proj.weight"), vec![m, d]),
            (format!("{p}mlp.down_proj.weight"), vec![d, m]),
        ]);
        if biases.qkv {
            shapes.extend([
                (format!("{p}self_attn.q_proj.bias"), vec![q]),
                (format!("{p}self_attn.k_proj.bias"), vec![kv]),
                (format!("{p}self_attn.v_proj.bias"), vec![kv]),
            ]);
        }
        if biases.output {
            shapes.push((format!("{p}self_attn.o_proj.bias"), vec![d]));
        }
    }
    shapes.push((FINAL_NORM.into(), vec![d]));
    if !config.tie_word_embeddings {
        shapes.push((LM_HEAD.into(), vec![config.vocab_size, d]));
    }
    shapes
}

impl LlamaWeights {
    /// Check that `tensors` and `quantised` hold exactly what the config needs between them
    /// (extra tensors are dropped), with finite values.
    pub fn checked(
        config: LlamaConfig,
        mut tensors: BTreeMap<String, HostTensor>,
        mut quantised: BTreeMap<String, QuantisedMatrix>,
    ) -> Result<Self> {
        config.validate()?;
        let mut kept = BTreeMap::new();
        let mut kept_quantised = BTreeMap::new();
        for (name, expected) in expected_shapes(&config) {
            let (shape, finite) = if let Some(tensor) = tensors.remove(&name) {
                let shape = tensor.shape.clone();
                let finite = tensor.values.iter().all(|v| v.is_finite());
                kept.insert(name.clone(), tensor);
                (shape, finite)
            } else if let Some(matrix) = quantised.remove(&name) {
                let shape = vec![matrix.rows, matrix.cols];
                // Unpacked here a row at a time, so a bad scale is caught at load.
                let finite = matrix.all_finite();
                kept_quantised.insert(name.clone(), matrix);
                (shape, finite)
            } else {
                return Err(SaeplayError::MissingTensor(name));
            };
            if shape != expected {
                return Err(SaeplayError::TensorShape {
                    name,
                    expected,
                    found: shape,
                });
            }
            if !finite {
                return Err(SaeplayError::NonFinite { name });
            }
        }
        Ok(Self {
            config,
            tensors: kept,
            quantised: kept_quantised,
        })
    }

    /// Every matrix unpacked to f32 (what a reference computation or a file export reads).
    pub fn dequantised(mut self) -> Self {
        for (name, matrix) in std::mem::take(&mut self.quantised) {
            self.tensors.insert(name, matrix.to_host());
        }
        self
    }

    /// Bytes the weights hold on the host.
    pub fn host_bytes(&self) -> usize {
        self.tensors
            .values()
            .map(|t| t.values.len() * 4)
            .sum::<usize>()
            + self
                .quantised
                .values()
                .map(QuantisedMatrix::byte_len)
                .sum::<usize>()
    }

    /// Read safetensors files (one, or the shards of a sharded checkpoint) and check them.
    pub fn from_safetensors(config: &LlamaConfig, shards: &[Vec<u8>]) -> Result<Self> {
        config.validate()?;
        let files = shards
            .iter()
            .map(|bytes| SafeTensors::deserialize(bytes))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut tensors = BTreeMap::new();
        for (name, expected) in expected_shapes(config) {
            let view = files
                .iter()
                .find_map(|file| file.tensor(&name).ok())
                .ok_or_else(|| SaeplayError::MissingTensor(name.clone()))?;
            let tensor = shaped_f32(&name, expected, &view)?;
            tensors.insert(name, tensor);
        }
        Self::checked(config.clone(), tensors, BTreeMap::new())
    }

    /// Serialise as one safetensors file (F32, quantised matrices unpacked), as
    /// `save_pretrained` names the tensors.
    pub fn to_safetensors(&self) -> Vec<u8> {
        let unpacked: BTreeMap<&String, HostTensor> = self
            .quantised
            .iter()
            .map(|(k, m)| (k, m.to_host()))
            .collect();
        write_safetensors(
            self.tensors
                .iter()
                .chain(unpacked.iter().map(|(k, t)| (*k, t)))
                .map(|(k, t)| (k.as_str(), &t.shape[..], &t.values[..])),
        )
    }

    /// An unpacked tensor (quantised ones are not: see [`LlamaWeights::dequantised`]).
    pub fn get(&self, name: &str) -> Result<&HostTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| SaeplayError::MissingTensor(name.to_string()))
    }

    /// Deterministic random weights for tests. Norm gains and biases are randomised too, so a
    /// forward that forgot one is caught.
    pub fn random(config: &LlamaConfig, seed: u64) -> Self {
        let tensors = random_tensors(expected_shapes(config), seed, |name| {
            if name.ends_with("norm.weight") {
                Spread::AroundOne(0.1)
            } else if name.ends_with(".bias") {
                Spread::AroundZero(0.05)
            } else if name == EMBED || name == LM_HEAD {
                Spread::AroundZero(0.5)
            } else {
                Spread::AroundZero(0.08)
            }
        });
        Self {
            config: config.clone(),
            tensors,
            quantised: BTreeMap::new(),
        }
    }
}
