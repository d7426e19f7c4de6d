//! GPT-2's forward on host buffers: the CPU path's route for inference (capture, scans, metrics,
//! steering, generation). The same computation as the burn forward (`forward.rs`), which stays
//! for the GPU and for gradients; both are checked against the f64 reference and each other in
//! `tests/it/forward.rs`. Activations are row-major `[batch * pos, width]`.

use burn::tensor::{Device, Tensor};

use super::config::Activation;
use super::processing::{LM_HEAD_BIAS, LM_HEAD_WEIGHT};
use super::weights::{Gpt2Params, Gpt2Weights, ParamTensor};
use crate::backend::float_tensor;
use crate::error::{Result, SaeplayError};
use crate::kernels::{
    HostKv, MatRef, QkvLayout, add_into, causal_attention, for_each_chunk, gelu_erf, gelu_tanh,
    linear, logit_rows, matmul, normalize_rows, relu, repeat_rows, scale_shift_rows,
};
use crate::model::forward::{LogitsFor, Span, Stages};

/// Element-wise work per task natively (the GELU of 16k activations is ~20 us on one core).
const ELEMENTWISE_CHUNK: usize = 1 << 14;

struct HostBlock {
    ln_1: (Vec<f32>, Vec<f32>),
    c_attn: (Vec<f32>, Vec<f32>), // [d, 3d], [3d]
    attn_proj: (Vec<f32>, Vec<f32>),
    ln_2: (Vec<f32>, Vec<f32>),
    c_fc: (Vec<f32>, Vec<f32>), // [d, d_mlp], [d_mlp]
    mlp_proj: (Vec<f32>, Vec<f32>),
}

/// GPT-2's weights as host buffers, checkpoint layout.
pub(crate) struct HostGpt2 {
    d: usize,
    heads: usize,
    d_head: usize,
    vocab: usize,
    eps: f32,
    activation: Activation,
    attn_scales: Vec<f32>,
    wte: Vec<f32>,                  // [vocab, d]
    wpe: Vec<f32>,                  // [n_positions, d]
    unembed_rows: Option<Vec<f32>>, // [vocab, d]: None when tied to wte
    unembed_bias: Option<Vec<f32>>,
    blocks: Vec<HostBlock>,
    ln_f: (Vec<f32>, Vec<f32>),
}

impl std::fmt::Debug for HostGpt2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostGpt2({} blocks, d {})", self.blocks.len(), self.d)
    }
}

impl HostGpt2 {
    /// `weights` as host buffers, taking their memory.
    pub(crate) fn from_weights(mut weights: Gpt2Weights) -> Result<Self> {
        let config = weights.config.clone();
        let mut take = |name: &str| -> Result<Vec<f32>> {
            weights
                .tensors
                .remove(name)
                .map(|t| t.values)
                .ok_or_else(|| SaeplayError::MissingTensor(name.to_string()))
        };
        let mut pair = |name: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                take(&format!("{name}.weight"))?,
                take(&format!("{name}.bias"))?,
            ))
        };
        let blocks = (0..config.n_layer)
            .map(|l| {
                Ok(HostBlock {
                    ln_1: pair(&format!("h.{l}.ln_1"))?,
                    c_attn: pair(&format!("h.{l}.attn.c_attn"))?,
                    attn_proj: pair(&format!("h.{l}.attn.c_proj"))?,
                    ln_2: pair(&format!("h.{l}.ln_2"))?,
                    c_fc: pair(&format!("h.{l}.mlp.c_fc"))?,
                    mlp_proj: pair(&format!("h.{l}.mlp.c_proj"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ln_f = pair("ln_f")?;
        let wte = take("wte.weight")?;
        let wpe = take("wpe.weight")?;
        let mut optional = |name: &str| weights.tensors.remove(name).map(|t| t.values);
        Ok(Self {
            d: config.n_embd,
            heads: config.n_head,
            d_head: config.d_head(),
            vocab: config.vocab_size,
            eps: config.layer_norm_epsilon as f32,
            activation: config.activation()?,
            attn_scales: (0..config.n_layer)
                .map(|l| config.attention_scale(l) as f32)
                .collect(),
            wte,
            wpe,
            unembed_rows: optional(LM_HEAD_WEIGHT),
            unembed_bias: optional(LM_HEAD_BIAS),
            blocks,
            ln_f,
        })
    }

    /// The weights by checkpoint name, uploaded to `device` (for the burn forward: gradients,
    /// and a GPU). The host copy stays.
    pub(crate) fn upload(&self, device: &Device) -> Gpt2Params {
        let d = self.d;
        let vector = |v: &[f32]| ParamTensor::Vector(float_tensor(v.to_vec(), [v.len()], device));
        let matrix = |v: &[f32], cols: usize| {
            ParamTensor::Matrix(float_tensor(v.to_vec(), [v.len() / cols, cols], device))
        };
        let mut params = Gpt2Params::new();
        let mut pair = |name: String, (w, b): &(Vec<f32>, Vec<f32>), linear: bool| {
            let weight = if linear {
                matrix(w, b.len())
            } else {
                vector(w)
            };
            params.insert(format!("{name}.weight"), weight);
            params.insert(format!("{name}.bias"), vector(b));
        };
        for (l, block) in self.blocks.iter().enumerate() {
            pair(format!("h.{l}.ln_1"), &block.ln_1, false);
            pair(format!("h.{l}.attn.c_attn"), &block.c_attn, true);
            pair(format!("h.{l}.attn.c_proj"), &block.attn_proj, true);
            pair(format!("h.{l}.ln_2"), &block.ln_2, false);
            pair(format!("h.{l}.mlp.c_fc"), &block.c_fc, true);
            pair(format!("h.{l}.mlp.c_proj"), &block.mlp_proj, true);
        }
        pair("ln_f".into(), &self.ln_f, false);
        params.insert("wte.weight".into(), matrix(&self.wte, d));
        params.insert("wpe.weight".into(), matrix(&self.wpe, d));
        if let Some(rows) = &self.unembed_rows {
            params.insert(LM_HEAD_WEIGHT.into(), matrix(rows, d));
        }
        if let Some(bias) = &self.unembed_bias {
            params.insert(LM_HEAD_BIAS.into(), vector(bias));
        }
        params
    }

    /// The unembedding as stored, `[vocab, d]`.
    pub(crate) fn unembed_rows(&self) -> &[f32] {
        self.unembed_rows.as_deref().unwrap_or(&self.wte)
    }

    /// `x @ W_U` for `x` `[n, d]`: `[n, vocab]` (no bias, as the burn model's).
    pub(crate) fn unembed_directions(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * self.vocab];
        matmul(
            &mut out,
            MatRef::rows(x, n, self.d),
            MatRef::transposed(self.unembed_rows(), self.d, self.vocab),
            1.0,
            false,
        );
        out
    }

    /// The forward's stages over one call's cache layers.
    pub(super) fn stages<'a>(
        &'a self,
        cache: &'a mut [HostKv],
        span: Span,
        device: &'a Device,
    ) -> HostStages<'a> {
        HostStages {
            model: self,
            cache,
            span,
            device,
        }
    }
}

/// GPT-2's forward on host buffers, over one call's cache layers.
pub(super) struct HostStages<'a> {
    model: &'a HostGpt2,
    cache: &'a mut [HostKv],
    span: Span,
    device: &'a Device,
}

impl HostStages<'_> {
    /// This call's rows of the position embedding, `[pos, d]`.
    fn positions(&self) -> &[f32] {
        let (
            d,
            Span {
                positions, offset, ..
            },
        ) = (self.model.d, self.span);
        &self.model.wpe[offset * d..(offset + positions) * d]
    }

    /// Layer norm of each row: `(x - mean) / sqrt(var + eps) * weight + bias`.
    fn layer_norm(&self, x: &[f32], (weight, bias): &(Vec<f32>, Vec<f32>)) -> Vec<f32> {
        let mut normed = x.to_vec();
        normalize_rows(&mut normed, self.model.d, self.model.eps);
        scale_shift_rows(&mut normed, weight, bias);
        normed
    }
}

impl Stages for HostStages<'_> {
    type Act = Vec<f32>;

    fn token_embed(&mut self, ids: Vec<i64>) -> Result<Vec<f32>> {
        let d = self.model.d;
        let mut embed: Vec<f32> = Vec::with_capacity(ids.len() * d);
        for &id in &ids {
            let id = id as usize;
            embed.extend_from_slice(&self.model.wte[id * d..(id + 1) * d]);
        }
        Ok(embed)
    }

    fn position_embed(&mut self) -> Option<Vec<f32>> {
        Some(repeat_rows(self.positions(), self.span.batch))
    }

    fn add_position_embed(&mut self, mut embed: Vec<f32>) -> Vec<f32> {
        let positions = self.positions();
        for row in embed.chunks_exact_mut(positions.len()) {
            add_into(row, positions);
        }
        embed
    }

    fn attention(&mut self, layer: usize, resid: &Vec<f32>) -> Vec<f32> {
        let model = self.model;
        let block = &model.blocks[layer];
        let d = model.d;
        let normed = self.layer_norm(resid, &block.ln_1);
        let qkv = linear(&normed, self.span.rows(), &block.c_attn.0, &block.c_attn.1);
        let layout = QkvLayout {
            heads: model.heads,
            kv_heads: model.heads,
            d_head: model.d_head,
            row: 3 * d,
            q: 0,
            k: d,
            v: 2 * d,
        };
        let Span {
            batch, positions, ..
        } = self.span;
        let scale = model.attn_scales[layer];
        causal_attention(
            &qkv,
            layout,
            (batch, positions),
            self.span.offset,
            scale,
            &mut self.cache[layer],
        )
    }

    fn attn_out(&mut self, layer: usize, z: Vec<f32>) -> Vec<f32> {
        let (weight, bias) = &self.model.blocks[layer].attn_proj;
        linear(&z, self.span.rows(), weight, bias)
    }

    fn mlp_post(&mut self, layer: usize, resid: &Vec<f32>) -> Vec<f32> {
        let block = &self.model.blocks[layer];
        let normed = self.layer_norm(resid, &block.ln_2);
        let mut hidden = linear(&normed, self.span.rows(), &block.c_fc.0, &block.c_fc.1);
        let activation = self.model.activation;
        for_each_chunk(&mut hidden, ELEMENTWISE_CHUNK, |_, part| match activation {
            Activation::GeluTanh => gelu_tanh(part),
            Activation::GeluErf => gelu_erf(part),
            Activation::Relu => relu(part),
        });
        hidden
    }

    fn mlp_out(&mut self, layer: usize, hidden: Vec<f32>) -> Vec<f32> {
        let (weight, bias) = &self.model.blocks[layer].mlp_proj;
        linear(&hidden, self.span.rows(), weight, bias)
    }

    fn final_normalized(&mut self, resid: Vec<f32>, logits_for: LogitsFor) -> Vec<f32> {
        let Span {
            batch, positions, ..
        } = self.span;
        let all_positions = logits_for == LogitsFor::AllPositions;
        let (mut last, _) = logit_rows(resid, (batch, positions, self.model.d), all_positions);
        normalize_rows(&mut last, self.model.d, self.model.eps);
        last
    }

    fn logits(&mut self, mut normalized: Vec<f32>) -> Result<Tensor<3>> {
        let model = self.model;
        let (d, vocab) = (model.d, model.vocab);
        scale_shift_rows(&mut normalized, &model.ln_f.0, &model.ln_f.1);
        let rows = normalized.len() / d;
        let mut logits = match &model.unembed_bias {
            Some(bias) => repeat_rows(bias, rows),
            None => vec![0.0; rows * vocab],
        };
        matmul(
            &mut logits,
            MatRef::rows(&normalized, rows, d),
            MatRef::transposed(model.unembed_rows(), d, vocab),
            1.0,
            model.unembed_bias.is_some(),
        );
        let batch = self.span.batch;
        Ok(float_tensor(
            logits,
            [batch, rows / batch, vocab],
            self.device,
        ))
    }
}
