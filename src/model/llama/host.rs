//! A Llama-family forward on host buffers, for a model whose matrices are packed on a CPU device
//! (a GGUF's in its encoding, a safetensors checkpoint's as F32 [`QuantisedMatrix`]es): the
//! matrices are shared with the burn model, so this costs no second copy, and the rest of the
//! forward (RMSNorm, rotary, grouped-query attention, SwiGLU, the key/value cache) runs as loops
//! over plain `f32` buffers. The same computation as the burn forward (`forward.rs`), which stays
//! for the GPU, for gradients and for unpacked weights; both are checked against the f64
//! reference in `tests/it/llama.rs`. On burn's ops a generated token cost ~210 packed products,
//! each with a tensor round trip, and ~400 small ops besides (see docs/speed.md). Activations are
//! row-major `[batch * pos, width]`.

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use super::rotary::{angles, rotate_head};
use crate::backend::float_tensor;
use crate::error::{Result, SaeplayError};
use crate::kernels::{
    HostKv, PackedWeight, QkvLayout, QuantisedMatrix, add_into, causal_attention, fast_exp,
    logit_rows, sum_squares,
};
use crate::model::forward::{LogitsFor, Span, Stages};

/// `x @ W^T + bias` for a packed torch-layout `W` `[out, in]`.
#[derive(Debug)]
pub(crate) struct HostLinear {
    pub weight: PackedWeight,
    pub bias: Option<Vec<f32>>,
}

impl HostLinear {
    fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = self.weight.times_transposed(x, n);
        if let Some(bias) = &self.bias {
            for row in y.chunks_exact_mut(bias.len()) {
                add_into(row, bias);
            }
        }
        y
    }

    /// Outputs per input row.
    fn width(&self) -> usize {
        self.weight.matrix.rows
    }
}

#[derive(Debug)]
pub(crate) struct HostLlamaBlock {
    pub input_layernorm: Vec<f32>,
    pub q_proj: HostLinear,
    pub k_proj: HostLinear,
    pub v_proj: HostLinear,
    pub o_proj: HostLinear,
    pub post_attention_layernorm: Vec<f32>,
    pub gate_proj: HostLinear,
    pub up_proj: HostLinear,
    pub down_proj: HostLinear,
}

/// A packed Llama-family model's weights for the host forward.
#[derive(Debug)]
pub(crate) struct HostLlama {
    pub d: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub d_head: usize,
    pub vocab: usize,
    pub eps: f32,
    pub inv_freq: Vec<f64>,
    pub embed_tokens: Arc<QuantisedMatrix>, // [vocab, d]
    pub unembed_rows: PackedWeight,         // [vocab, d]: embed_tokens when tied
    pub blocks: Vec<HostLlamaBlock>,
    pub norm: Vec<f32>,
}

impl HostLlama {
    /// The forward's stages over one call's cache layers.
    pub(super) fn stages<'a>(
        &'a self,
        cache: &'a mut [HostKv],
        span: Span,
        device: &'a Device,
    ) -> HostStages<'a> {
        let (heads, kv_heads, dh) = (self.heads, self.kv_heads, self.d_head);
        HostStages {
            model: self,
            cache,
            span,
            device,
            rotary: angles(&self.inv_freq, span.offset, span.positions),
            // q, k and v side by side in one row per position, as `causal_attention` reads them.
            layout: QkvLayout {
                heads,
                kv_heads,
                d_head: dh,
                row: (heads + 2 * kv_heads) * dh,
                q: 0,
                k: heads * dh,
                v: (heads + kv_heads) * dh,
            },
        }
    }

    /// Each row as `x / sqrt(mean(x^2) + eps)`, times `weight` when given, in place.
    fn rms_norm(&self, x: &mut [f32], weight: Option<&[f32]>) {
        for row in x.chunks_exact_mut(self.d) {
            let mean_square = sum_squares(row) / self.d as f32;
            let inv = 1.0 / (mean_square + self.eps).sqrt();
            match weight {
                Some(w) => row.iter_mut().zip(w).for_each(|(v, w)| *v = *v * inv * w),
                None => row.iter_mut().for_each(|v| *v *= inv),
            }
        }
    }
}

/// A Llama-family forward on host buffers, over one call's cache layers.
pub(super) struct HostStages<'a> {
    model: &'a HostLlama,
    cache: &'a mut [HostKv],
    span: Span,
    device: &'a Device,
    /// The rotary angles' cos and sin for this call's positions, `[t, d_head / 2]`.
    rotary: (Vec<f32>, Vec<f32>),
    layout: QkvLayout,
}

impl Stages for HostStages<'_> {
    type Act = Vec<f32>;

    fn token_embed(&mut self, ids: Vec<i64>) -> Result<Vec<f32>> {
        let rows: Option<Vec<usize>> = ids.iter().map(|&id| usize::try_from(id).ok()).collect();
        rows.and_then(|rows| self.model.embed_tokens.select_rows(&rows))
            .ok_or_else(|| {
                SaeplayError::InvalidSetting("a token id is outside the vocabulary".into())
            })
    }

    fn position_embed(&mut self) -> Option<Vec<f32>> {
        None
    }

    fn attention(&mut self, layer: usize, resid: &Vec<f32>) -> Vec<f32> {
        let model = self.model;
        let block = &model.blocks[layer];
        let (layout, n, dh) = (self.layout, self.span.rows(), model.d_head);
        let mut normed = resid.clone();
        model.rms_norm(&mut normed, Some(&block.input_layernorm));
        let mut qkv = vec![0.0f32; n * layout.row];
        for (projection, at) in [
            (&block.q_proj, layout.q),
            (&block.k_proj, layout.k),
            (&block.v_proj, layout.v),
        ] {
            let part = projection.forward(&normed, n);
            let width = projection.width();
            for (row, values) in qkv
                .chunks_exact_mut(layout.row)
                .zip(part.chunks_exact(width))
            {
                row[at..at + width].copy_from_slice(values);
            }
        }
        let (cos, sin) = &self.rotary;
        let t = self.span.positions;
        for (i, row) in qkv.chunks_exact_mut(layout.row).enumerate() {
            let position = i % t;
            let (cos, sin) = (
                &cos[position * dh / 2..][..dh / 2],
                &sin[position * dh / 2..][..dh / 2],
            );
            for head in row[..layout.v].chunks_exact_mut(dh) {
                rotate_head(head, cos, sin);
            }
        }
        let scale = 1.0 / (dh as f32).sqrt();
        causal_attention(
            &qkv,
            layout,
            (self.span.batch, t),
            self.span.offset,
            scale,
            &mut self.cache[layer],
        )
    }

    fn attn_out(&mut self, layer: usize, z: Vec<f32>) -> Vec<f32> {
        self.model.blocks[layer]
            .o_proj
            .forward(&z, self.span.rows())
    }

    fn mlp_post(&mut self, layer: usize, resid: &Vec<f32>) -> Vec<f32> {
        let block = &self.model.blocks[layer];
        let n = self.span.rows();
        let mut normed = resid.clone();
        self.model
            .rms_norm(&mut normed, Some(&block.post_attention_layernorm));
        let mut hidden = block.gate_proj.forward(&normed, n);
        let up = block.up_proj.forward(&normed, n);
        for (g, u) in hidden.iter_mut().zip(&up) {
            *g = *g / (1.0 + fast_exp(-*g)) * u;
        }
        hidden
    }

    fn mlp_out(&mut self, layer: usize, hidden: Vec<f32>) -> Vec<f32> {
        self.model.blocks[layer]
            .down_proj
            .forward(&hidden, self.span.rows())
    }

    fn final_normalized(&mut self, resid: Vec<f32>, logits_for: LogitsFor) -> Vec<f32> {
        let (b, t, d) = (self.span.batch, self.span.positions, self.model.d);
        let all_positions = logits_for == LogitsFor::AllPositions;
        let (mut last, _) = logit_rows(resid, (b, t, d), all_positions);
        self.model.rms_norm(&mut last, None);
        last
    }

    fn logits(&mut self, mut normalized: Vec<f32>) -> Result<Tensor<3>> {
        let model = self.model;
        for row in normalized.chunks_exact_mut(model.d) {
            row.iter_mut().zip(&model.norm).for_each(|(v, w)| *v *= w);
        }
        let rows = normalized.len() / model.d;
        let logits = model.unembed_rows.times_transposed(&normalized, rows);
        let batch = self.span.batch;
        Ok(float_tensor(
            logits,
            [batch, rows / batch, model.vocab],
            self.device,
        ))
    }
}
