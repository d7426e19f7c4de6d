//! A Llama-family forward on host buffers, for a GGUF on a CPU device: its matrices stay packed
//! ([`QuantisedMatrix`], shared with the burn model, so this costs no second copy) and the rest
//! of the forward (RMSNorm, rotary, grouped-query attention, SwiGLU, the key/value cache) runs as
//! loops over plain `f32` buffers. The same computation as [`super::llama::Llama`]'s burn
//! forward, which stays for the GPU, for gradients and for unpacked (safetensors) weights; both
//! are checked against the f64 reference in `tests/it/llama.rs` and `tests/smollm2.rs`. On burn's
//! ops a generated token cost ~210 packed products, each with a tensor round trip, and ~400 small
//! ops besides (see docs/speed.md). Activations are row-major `[batch * pos, width]`.

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use super::hooks::{HookPoint, Hooks};
use super::host_gpt2::HostHooks;
use super::host_ops::{
    HostKv, MatRef, QkvLayout, add_into, causal_attention, fast_exp, logit_rows, matmul,
    sum_squares,
};
use super::quantised::QuantisedMatrix;
use super::transformer::{Captured, HookRun, Input, LogitsFor, Start};
use crate::backend::float_tensor;
use crate::error::{Result, SaeplayError};

/// Rows of input up to which a packed product reads each packed row once (generation); above
/// it each matrix is unpacked and multiplied by `gemm` (natively) or the page's panel kernel here,
/// by burn in `llama.rs`.
pub(crate) const PACKED_ROWS: usize = 8;

/// Values of a packed matrix unpacked at once for burn's product: a vocabulary-sized matrix
/// (SmolLM2's embedding: 113 MB as f32) goes through in pieces of at most this many.
pub(crate) const UNPACKED_PIECE: usize = 1 << 21;

/// A packed torch-layout matrix `[out, in]` as the host forward multiplies by it.
#[derive(Debug)]
pub(crate) struct PackedWeight {
    pub matrix: Arc<QuantisedMatrix>,
    /// Natively, the values unpacked the first time a product of more than [`PACKED_ROWS`] rows
    /// needs them, and kept: a CLI forward then costs what `gemm` does (PyTorch holds the same
    /// f32 values). A tab cannot spare the memory, and unpacks 8 rows at a time into each
    /// product's panels (`host_ops::matmul_unpacking`). An F32
    /// matrix (a safetensors checkpoint's) is multiplied where it lies.
    #[cfg(not(target_arch = "wasm32"))]
    unpacked: std::sync::OnceLock<Vec<f32>>,
}

impl PackedWeight {
    pub fn new(matrix: Arc<QuantisedMatrix>) -> Self {
        Self {
            matrix,
            #[cfg(not(target_arch = "wasm32"))]
            unpacked: std::sync::OnceLock::new(),
        }
    }

    /// `x @ M^T` for `x` `[n, in]`: `[n, out]`.
    pub fn times_transposed(&self, x: &[f32], n: usize) -> Vec<f32> {
        let matrix = &self.matrix;
        if n <= PACKED_ROWS {
            return matrix.matmul_transposed(x, n);
        }
        let (rows, cols) = (matrix.rows, matrix.cols);
        let mut y = vec![0.0f32; n * rows];
        if let Some(values) = matrix.as_f32() {
            let w = MatRef::transposed(values, cols, rows);
            matmul(&mut y, MatRef::rows(x, n, cols), w, 1.0, false);
            return y;
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let values = self.unpacked.get_or_init(|| matrix.dequantize());
            let w = MatRef::transposed(values, cols, rows);
            matmul(&mut y, MatRef::rows(x, n, cols), w, 1.0, false);
        }
        // The page unpacks the matrix 8 rows at a time straight into the product's panels.
        #[cfg(target_arch = "wasm32")]
        crate::model::host_ops::matmul_unpacking(
            &mut y,
            MatRef::rows(x, n, cols),
            rows,
            |r, out| matrix.unpack_row(r, out),
        );
        y
    }
}

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
    /// The forward over `ids` (`b` rows of `t`, checked by the caller) after the `offset`
    /// positions in `cache`; `None` for the logits when it stops after `stop_at_layer` blocks.
    #[allow(clippy::too_many_arguments)] // the burn forward's arguments, unpacked
    pub(crate) fn forward(
        &self,
        input: Input<Vec<f32>>,
        cache: &mut Vec<HostKv>,
        offset: usize,
        hooks: &Hooks,
        logits_for: LogitsFor,
        stop_at_layer: Option<usize>,
        device: &Device,
    ) -> Result<(Option<Tensor<3>>, Captured)> {
        let (b, t, first) = (input.batch, input.positions, input.first_layer());
        let (d, n) = (self.d, b * t);
        let mut run = HostHooks {
            run: HookRun::new(hooks, offset),
            hooks,
            device,
        };
        let mut resid = match input.start {
            Start::Residual { resid, .. } => resid,
            Start::Tokens(ids) => {
                let rows: Option<Vec<usize>> =
                    ids.iter().map(|&id| usize::try_from(id).ok()).collect();
                let mut embed = rows
                    .and_then(|rows| self.embed_tokens.select_rows(&rows))
                    .ok_or_else(|| {
                        SaeplayError::InvalidSetting("a token id is outside the vocabulary".into())
                    })?;
                run.site(HookPoint::Embed, &mut embed, [b, t, d])?;
                embed
            }
        };
        let (cos, sin) = self.rotary(offset, t);
        let (heads, kv_heads, dh) = (self.heads, self.kv_heads, self.d_head);
        // q, k and v side by side in one row per position, as `causal_attention` reads them.
        let layout = QkvLayout {
            heads,
            kv_heads,
            d_head: dh,
            row: (heads + 2 * kv_heads) * dh,
            q: 0,
            k: heads * dh,
            v: (heads + kv_heads) * dh,
        };
        let scale = 1.0 / (dh as f32).sqrt();

        cache.resize_with(self.blocks.len(), HostKv::default);
        let layers = stop_at_layer.unwrap_or(self.blocks.len());
        for (l, block) in self.blocks.iter().enumerate().take(layers).skip(first) {
            run.site(HookPoint::ResidPre(l), &mut resid, [b, t, d])?;
            let mut normed = resid.clone();
            self.rms_norm(&mut normed, Some(&block.input_layernorm));
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
            for (i, row) in qkv.chunks_exact_mut(layout.row).enumerate() {
                let position = i % t;
                let (cos, sin) = (
                    &cos[position * dh / 2..][..dh / 2],
                    &sin[position * dh / 2..][..dh / 2],
                );
                for head in row[..layout.v].chunks_exact_mut(dh) {
                    rotate(head, cos, sin);
                }
            }
            let mut z = causal_attention(&qkv, layout, (b, t), offset, scale, &mut cache[l]);
            run.site(HookPoint::AttnZ(l), &mut z, [b, t, heads * dh])?;
            let mut attn_out = block.o_proj.forward(&z, n);
            run.site(HookPoint::AttnOut(l), &mut attn_out, [b, t, d])?;
            add_into(&mut resid, &attn_out);
            run.site(HookPoint::ResidMid(l), &mut resid, [b, t, d])?;

            let mut normed = resid.clone();
            self.rms_norm(&mut normed, Some(&block.post_attention_layernorm));
            let mut hidden = block.gate_proj.forward(&normed, n);
            let up = block.up_proj.forward(&normed, n);
            for (g, u) in hidden.iter_mut().zip(&up) {
                *g = *g / (1.0 + fast_exp(-*g)) * u;
            }
            let d_mlp = block.up_proj.width();
            run.site(HookPoint::MlpPost(l), &mut hidden, [b, t, d_mlp])?;
            let mut mlp_out = block.down_proj.forward(&hidden, n);
            run.site(HookPoint::MlpOut(l), &mut mlp_out, [b, t, d])?;
            add_into(&mut resid, &mlp_out);
            run.site(HookPoint::ResidPost(l), &mut resid, [b, t, d])?;
        }
        if layers < self.blocks.len() {
            // The next block's input is all that is left to see.
            run.site(HookPoint::ResidPre(layers), &mut resid, [b, t, d])?;
            return Ok((None, run.run.captured));
        }

        let all_positions = logits_for == LogitsFor::AllPositions;
        let (mut last, t_out) = logit_rows(resid, (b, t, d), all_positions);
        self.rms_norm(&mut last, None);
        run.site(HookPoint::LnFinalNormalized, &mut last, [b, t_out, d])?;
        for row in last.chunks_exact_mut(d) {
            row.iter_mut().zip(&self.norm).for_each(|(v, w)| *v *= w);
        }
        let logits = self.unembed_rows.times_transposed(&last, b * t_out);
        let logits = float_tensor(logits, [b, t_out, self.vocab], device);
        Ok((Some(logits), run.run.captured))
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

    /// `cos` and `sin` of the rotary angles for positions `offset..offset + t`, `[t, d_head / 2]`
    /// (angles in f64, as the burn forward's).
    fn rotary(&self, offset: usize, t: usize) -> (Vec<f32>, Vec<f32>) {
        let mut cos = Vec::with_capacity(t * self.inv_freq.len());
        let mut sin = Vec::with_capacity(t * self.inv_freq.len());
        for pos in offset..offset + t {
            for &f in &self.inv_freq {
                let angle = pos as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }
}

/// One head rotated in place: `x * cos + rotate_half(x) * sin` with `rotate_half(x) =
/// cat(-x2, x1)` and each frequency used for both halves (transformers' layout).
fn rotate(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let (x1, x2) = head.split_at_mut(cos.len());
    for (((a, b), c), s) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
        let (u, v) = (*a, *b);
        *a = u * c - v * s;
        *b = v * c + u * s;
    }
}
