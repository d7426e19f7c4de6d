//! The Llama family (Llama, Qwen2, Mistral, SmolLM2): its config, weights (safetensors or a
//! GGUF), and [`Llama`], the model on one device with two forwards: on burn's ops (`forward.rs`:
//! the GPU path, gradients, unpacked weights) and on host buffers (`host.rs`: every Llama on a CPU
//! device runs inference there). Same hook points as GPT-2 but `hook_pos_embed`.

pub mod config;
mod forward;
pub mod gguf;
mod host;
mod rotary;
pub mod weights;

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use self::config::LlamaConfig;
use self::forward::{
    Block, Linear, LinearWeight, LlamaTensors, TensorStages, VocabMatrix, host_f32_matrix,
    upload_linear_weight, upload_matrix, upload_vector,
};
use self::host::{HostLinear, HostLlama, HostLlamaBlock};
use self::weights::{EMBED, FINAL_NORM, LM_HEAD, LlamaWeights, layer_prefix};
use super::dims::ModelDims;
use super::forward::{FamilyForward, Span, Stages, TensorKv};
use crate::backend::is_host_device;
use crate::error::{Result, SaeplayError};
use crate::kernels::{HostKv, PackedWeight};

/// Whether packed matrices stay packed on `device`: on the CPU backends, where unpacking a
/// matrix costs about what one token's matmul with it does, and keeping SmolLM2's matrices
/// packed saves 440 MB per copy of the model (the page holds two: its own and its worker's).
/// GPUs get them unpacked once, at upload. Natively, `SAEPLAY_GGUF_WEIGHTS=unpacked` unpacks
/// them on the CPU too, so the two can be compared.
pub fn packs_on(device: &Device) -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var("SAEPLAY_GGUF_WEIGHTS").as_deref() == Ok("unpacked") {
        return false;
    }
    is_host_device(device)
}

/// A Llama-family model with weights on one device. Cloning is cheap (shared tensor handles).
#[derive(Clone, Debug)]
pub struct Llama {
    config: LlamaConfig,
    dims: ModelDims,
    device: Device,
    inv_freq: Vec<f64>,
    tensors: LlamaTensors,
    /// Attention patterns and RMS scales cut from the gradient (attribution); values unchanged.
    frozen: bool,
    /// Packed matrices on a CPU device: inference runs on host buffers (`host.rs`), sharing
    /// the packed matrices with the fields above.
    host: Option<Arc<HostLlama>>,
}

impl Llama {
    /// Upload host weights, handing each tensor's memory over as it goes.
    pub fn from_weights(weights: LlamaWeights, device: &Device) -> Result<Self> {
        let LlamaWeights {
            config,
            mut tensors,
            mut quantised,
        } = weights;
        let packed = packs_on(device);
        config.validate()?;
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| SaeplayError::MissingTensor(name.to_string()))
        };
        let biases = config.biases();
        let mut blocks = Vec::with_capacity(config.num_hidden_layers);
        // The host forward's view of the same weights: packed matrices are shared, vectors
        // copied (they are small). `None` as soon as one matrix is not packed.
        let mut host_blocks = Some(Vec::with_capacity(config.num_hidden_layers));
        for l in 0..config.num_hidden_layers {
            let p = layer_prefix(l);
            let mut linear = |name: &str, bias: bool| -> Result<(Linear, Option<HostLinear>)> {
                let weight_name = format!("{p}{name}.weight");
                let weight = match quantised.remove(&weight_name) {
                    Some(matrix) if packed => LinearWeight::Packed(Arc::new(matrix)),
                    Some(matrix) => {
                        LinearWeight::Dense(upload_linear_weight(matrix.to_host(), device))
                    }
                    None if packed => {
                        LinearWeight::Packed(Arc::new(host_f32_matrix(take(&weight_name)?)?))
                    }
                    None => LinearWeight::Dense(upload_linear_weight(take(&weight_name)?, device)),
                };
                let bias = if bias {
                    Some(take(&format!("{p}{name}.bias"))?.values)
                } else {
                    None
                };
                let host = match &weight {
                    LinearWeight::Packed(matrix) => Some(HostLinear {
                        weight: PackedWeight::new(Arc::clone(matrix)),
                        bias: bias.clone(),
                    }),
                    LinearWeight::Dense(_) => None,
                };
                let bias = bias.map(|values| upload_vector(values, device));
                Ok((Linear { weight, bias }, host))
            };
            let (q_proj, host_q) = linear("self_attn.q_proj", biases.qkv)?;
            let (k_proj, host_k) = linear("self_attn.k_proj", biases.qkv)?;
            let (v_proj, host_v) = linear("self_attn.v_proj", biases.qkv)?;
            let (o_proj, host_o) = linear("self_attn.o_proj", biases.output)?;
            let (gate_proj, host_gate) = linear("mlp.gate_proj", false)?;
            let (up_proj, host_up) = linear("mlp.up_proj", false)?;
            let (down_proj, host_down) = linear("mlp.down_proj", false)?;
            let input_layernorm = take(&format!("{p}input_layernorm.weight"))?.values;
            let post_attention_layernorm =
                take(&format!("{p}post_attention_layernorm.weight"))?.values;
            host_blocks = match (
                host_blocks,
                host_q,
                host_k,
                host_v,
                host_o,
                host_gate,
                host_up,
                host_down,
            ) {
                (
                    Some(mut list),
                    Some(q_proj),
                    Some(k_proj),
                    Some(v_proj),
                    Some(o_proj),
                    Some(gate_proj),
                    Some(up_proj),
                    Some(down_proj),
                ) => {
                    list.push(HostLlamaBlock {
                        input_layernorm: input_layernorm.clone(),
                        q_proj,
                        k_proj,
                        v_proj,
                        o_proj,
                        post_attention_layernorm: post_attention_layernorm.clone(),
                        gate_proj,
                        up_proj,
                        down_proj,
                    });
                    Some(list)
                }
                _ => None,
            };
            blocks.push(Block {
                input_layernorm: upload_vector(input_layernorm, device),
                post_attention_layernorm: upload_vector(post_attention_layernorm, device),
                q_proj,
                k_proj,
                v_proj,
                o_proj,
                gate_proj,
                up_proj,
                down_proj,
            });
        }
        let mut vocab_matrix = |name: &str| -> Result<VocabMatrix> {
            Ok(match quantised.remove(name) {
                Some(matrix) if packed => VocabMatrix::Packed(Arc::new(matrix)),
                Some(matrix) => VocabMatrix::Dense(upload_matrix(matrix.to_host(), device)),
                None if packed => VocabMatrix::Packed(Arc::new(host_f32_matrix(take(name)?)?)),
                None => VocabMatrix::Dense(upload_matrix(take(name)?, device)),
            })
        };
        let embed_tokens = vocab_matrix(EMBED)?;
        let unembed_rows = if config.tie_word_embeddings {
            embed_tokens.clone()
        } else {
            vocab_matrix(LM_HEAD)?
        };
        let norm = take(FINAL_NORM)?.values;
        let inv_freq = config.inv_freq()?;
        let dims = config.dims();
        let host = match (host_blocks, &embed_tokens, &unembed_rows) {
            (Some(blocks), VocabMatrix::Packed(embed), VocabMatrix::Packed(unembed)) => {
                Some(Arc::new(HostLlama {
                    d: dims.d_model,
                    heads: dims.n_heads,
                    kv_heads: dims.n_key_value_heads,
                    d_head: dims.d_head,
                    vocab: dims.d_vocab,
                    eps: config.rms_norm_eps as f32,
                    inv_freq: inv_freq.clone(),
                    embed_tokens: Arc::clone(embed),
                    unembed_rows: PackedWeight::new(Arc::clone(unembed)),
                    blocks,
                    norm: norm.clone(),
                }))
            }
            _ => None,
        };
        Ok(Self {
            inv_freq,
            dims,
            config,
            device: device.clone(),
            tensors: LlamaTensors {
                embed_tokens,
                unembed_rows,
                blocks,
                norm: upload_vector(norm, device),
            },
            frozen: false,
            host,
        })
    }

    /// This model with inference on burn's tensor ops even when its matrices are packed on the
    /// CPU (tests and benchmarks compare the two forwards).
    pub fn burn_forward_only(self) -> Self {
        Self { host: None, ..self }
    }

    /// Bytes the weights take in memory: packed matrices as packed, the rest as f32.
    pub fn weight_bytes(&self) -> u64 {
        let dense = |t: &Tensor<2>| 4 * t.shape().num_elements() as u64;
        let linear = |l: &Linear| {
            let bias = l.bias.as_ref().map_or(0, |b| 4 * b.dims()[0] as u64);
            bias + match &l.weight {
                LinearWeight::Dense(t) => dense(t),
                LinearWeight::Packed(m) => m.byte_len() as u64,
            }
        };
        let vocab = |v: &VocabMatrix| match v {
            VocabMatrix::Dense(t) => dense(t),
            VocabMatrix::Packed(m) => m.byte_len() as u64,
        };
        let blocks: u64 = self
            .tensors
            .blocks
            .iter()
            .map(|b| {
                let norms =
                    4 * (b.input_layernorm.dims()[0] + b.post_attention_layernorm.dims()[0]);
                norms as u64 + b.linears().into_iter().map(linear).sum::<u64>()
            })
            .sum();
        let unembed = if self.config.tie_word_embeddings {
            0
        } else {
            vocab(&self.tensors.unembed_rows)
        };
        blocks
            + vocab(&self.tensors.embed_tokens)
            + unembed
            + 4 * self.tensors.norm.dims()[0] as u64
    }

    /// Whether inference runs on host buffers (packed matrices on a CPU device).
    pub fn has_host_forward(&self) -> bool {
        self.host.is_some()
    }

    /// This model's weights as constants on the autodiff twin of its device, every matrix
    /// unpacked, frozen for attribution (see [`crate::model::Model::frozen_for_attribution`]).
    pub(crate) fn frozen_on_autodiff(&self) -> Result<Self> {
        Ok(Self {
            config: self.config.clone(),
            dims: self.dims.clone(),
            device: self.device.clone().autodiff(),
            inv_freq: self.inv_freq.clone(),
            tensors: self.tensors.on_autodiff(&self.device)?,
            frozen: true,
            host: None,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn dims(&self) -> &ModelDims {
        &self.dims
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `x @ W_U`: `x` `[n, d]` to `[n, vocab]`.
    pub fn unembed_directions(&self, x: Tensor<2>) -> Tensor<2> {
        self.tensors.unembed_rows.times_transposed(x)
    }

    /// The unembedding `[d, vocab]`, unpacked on the device when it is packed (tests, exports).
    pub fn unembed(&self) -> Tensor<2> {
        self.tensors.unembed_rows.dense(&self.device).transpose()
    }
}

impl FamilyForward for Llama {
    fn dims(&self) -> &ModelDims {
        &self.dims
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn has_host_forward(&self) -> bool {
        self.host.is_some()
    }

    fn tensor_stages<'a>(
        &'a self,
        cache: &'a mut [TensorKv],
        span: Span,
    ) -> impl Stages<Act = Tensor<3>> + 'a {
        TensorStages::new(
            &self.tensors,
            &self.dims,
            self.config.rms_norm_eps,
            &self.inv_freq,
            self.frozen,
            &self.device,
            cache,
            span,
        )
    }

    fn host_stages<'a>(
        &'a self,
        cache: &'a mut [HostKv],
        span: Span,
    ) -> Option<impl Stages<Act = Vec<f32>> + 'a> {
        let host = self.host.as_deref()?;
        Some(host.stages(cache, span, &self.device))
    }
}
