//! A Llama-family forward on burn's ops that matches Hugging Face `LlamaForCausalLM` (and
//! `Qwen2ForCausalLM`): RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP; the GPU
//! path, every gradient, and a `burn_forward_only` model. Linear weights are transposed once at
//! upload, or kept packed on the host (see `super::packs_on`). Shapes are noted as `[batch, pos, d]`.

use std::sync::Arc;

use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use super::rotary::{angle_tensors, rotate_heads};
use crate::backend::{float_tensor, int_tensor, read_f32_now};
use crate::error::{Result, SaeplayError};
use crate::io::tensors::HostTensor;
use crate::kernels::{PACKED_ROWS, QuantisedMatrix, transpose};
use crate::model::dims::ModelDims;
use crate::model::forward::tensor_ops::{
    causal_attention, constant_on_autodiff, frozen_if, logit_positions, split_heads,
    times_transposed,
};
use crate::model::forward::{LogitsFor, Span, Stages, TensorKv};

// A dozen of these per block, so boxing the dense handle would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(super) enum LinearWeight {
    /// `[in, out]` on the device.
    Dense(Tensor<2>),
    /// torch's `[out, in]`, packed on the host and unpacked for each use (see [`super::packs_on`]).
    Packed(Arc<QuantisedMatrix>),
}

#[derive(Clone, Debug)]
pub(super) struct Linear {
    pub weight: LinearWeight,
    pub bias: Option<Tensor<1>>, // [out]
}

impl Linear {
    pub(super) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, pos, d_in] = x.dims();
        let x = x.reshape([batch * pos, d_in]);
        let (y, d_out) = match &self.weight {
            LinearWeight::Dense(weight) => (x.matmul(weight.clone()), weight.dims()[1]),
            LinearWeight::Packed(matrix) => (packed_matmul(x, matrix), matrix.rows),
        };
        let y = match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([batch, pos, d_out])
    }
}

/// Most bytes of packed matrices the page unpacks for an attribution graph.
const MAX_PAGE_UNPACKED_BYTES: usize = 256 << 20;

/// `x @ W^T` for `x` `[n, in]` and a packed `W` `[out, in]`.
pub(super) fn packed_matmul(x: Tensor<2>, matrix: &QuantisedMatrix) -> Tensor<2> {
    let n = x.dims()[0];
    let device = x.device();
    if n <= PACKED_ROWS
        && let Some(values) = read_f32_now(x.clone())
    {
        return float_tensor(
            matrix.matmul_transposed(&values, n),
            [n, matrix.rows],
            &device,
        );
    }
    let rows_per_piece = (UNPACKED_PIECE / matrix.cols.max(1)).max(1);
    let pieces: Vec<Tensor<2>> = (0..matrix.rows)
        .step_by(rows_per_piece)
        .map(|start| {
            let rows = start..(start + rows_per_piece).min(matrix.rows);
            let len = rows.len();
            let weight = float_tensor(matrix.unpack_rows(rows), [len, matrix.cols], &device);
            times_transposed(x.clone(), &weight)
        })
        .collect();
    Tensor::cat(pieces, 1)
}

/// A `[vocab, d]` matrix (the embedding, the unembedding) in its stored layout: on the device,
/// or packed on the host like the blocks' matrices.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(super) enum VocabMatrix {
    Dense(Tensor<2>),
    Packed(Arc<QuantisedMatrix>),
}

impl VocabMatrix {
    /// Rows `ids`, `[ids.len(), d]` (ids already checked against the vocabulary).
    pub(super) fn select(&self, ids: Vec<i64>, device: &Device) -> Result<Tensor<2>> {
        match self {
            Self::Dense(rows) => {
                let n = ids.len();
                Ok(rows.clone().select(0, int_tensor(ids, [n], device)))
            }
            Self::Packed(matrix) => {
                let rows: Option<Vec<usize>> =
                    ids.iter().map(|&id| usize::try_from(id).ok()).collect();
                let values = rows
                    .and_then(|rows| matrix.select_rows(&rows))
                    .ok_or_else(|| {
                        SaeplayError::InvalidSetting("a token id is outside the vocabulary".into())
                    })?;
                Ok(float_tensor(values, [ids.len(), matrix.cols], device))
            }
        }
    }

    /// `x @ M^T`: `x` `[n, d]` to `[n, vocab]`.
    pub(super) fn times_transposed(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Dense(rows) => times_transposed(x, rows),
            Self::Packed(matrix) => packed_matmul(x, matrix),
        }
    }

    /// The values on the device, `[vocab, d]` (unpacked when packed).
    pub(super) fn dense(&self, device: &Device) -> Tensor<2> {
        match self {
            Self::Dense(rows) => rows.clone(),
            Self::Packed(matrix) => upload_matrix(matrix.to_host(), device),
        }
    }
}

/// Upload a host matrix as it is laid out.
/// A float matrix (safetensors) on a CPU device, as a ggml F32 matrix: then every matrix of the
/// model is a [`QuantisedMatrix`] and the host forward runs it, as a GGUF's (burn's ops unpack
/// it where they need it). The same bytes as the f32 values, held once.
pub(super) fn host_f32_matrix(tensor: HostTensor) -> Result<QuantisedMatrix> {
    let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
    QuantisedMatrix::from_f32(rows, cols, tensor.values)
}

pub(super) fn upload_matrix(tensor: HostTensor, device: &Device) -> Tensor<2> {
    let shape = [tensor.shape[0], tensor.shape[1]];
    float_tensor(tensor.values, shape, device)
}

/// Values of a packed matrix unpacked at once for burn's product: a vocabulary-sized matrix
/// (SmolLM2's embedding: 113 MB as f32) goes through in pieces of at most this many.
const UNPACKED_PIECE: usize = 1 << 21;

#[derive(Clone, Debug)]
pub(super) struct Block {
    pub input_layernorm: Tensor<1>, // [d]
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub post_attention_layernorm: Tensor<1>, // [d]
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Block {
    /// The seven matrices, in checkpoint order.
    pub(super) fn linears(&self) -> [&Linear; 7] {
        [
            &self.q_proj,
            &self.k_proj,
            &self.v_proj,
            &self.o_proj,
            &self.gate_proj,
            &self.up_proj,
            &self.down_proj,
        ]
    }
}

/// Upload a vector, taking its memory.
pub(super) fn upload_vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    float_tensor(values, [n], device)
}

/// Upload a torch `[out, in]` weight as `[in, out]`, transposed on the host so the matmul reads
/// it contiguously.
pub(super) fn upload_linear_weight(tensor: HostTensor, device: &Device) -> Tensor<2> {
    let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
    let transposed = transpose(&tensor.values, rows, cols);
    drop(tensor);
    float_tensor(transposed, [cols, rows], device)
}

/// A Llama-family model's weights on its device (packed matrices on the host, shared).
#[derive(Clone, Debug)]
pub(super) struct LlamaTensors {
    pub embed_tokens: VocabMatrix, // [vocab, d]
    pub unembed_rows: VocabMatrix, // [vocab, d]: embed_tokens when tied, else lm_head
    pub blocks: Vec<Block>,
    pub norm: Tensor<1>, // [d]
}

impl LlamaTensors {
    /// The same weights as constants on the autodiff twin of `device`, every matrix unpacked.
    pub(super) fn on_autodiff(&self, device: &Device) -> Result<Self> {
        // Unpacking copies: in a tab, where memory is tight and running out aborts the page,
        // a large packed model is refused in words instead.
        let packed_bytes: usize = self
            .blocks
            .iter()
            .flat_map(Block::linears)
            .filter_map(|l| match &l.weight {
                LinearWeight::Packed(m) => Some(m.rows * m.cols * 4),
                LinearWeight::Dense(_) => None,
            })
            .chain(
                [&self.embed_tokens, &self.unembed_rows]
                    .iter()
                    .filter_map(|v| match v {
                        VocabMatrix::Packed(m) => Some(m.rows * m.cols * 4),
                        VocabMatrix::Dense(_) => None,
                    }),
            )
            .sum();
        if cfg!(target_arch = "wasm32") && packed_bytes > MAX_PAGE_UNPACKED_BYTES {
            return Err(SaeplayError::InvalidSetting(format!(
                "attribution needs this model's matrices unpacked ({} MB), more than the page allows ({} MB); `saeplay attribute` makes the same graph natively",
                packed_bytes >> 20,
                MAX_PAGE_UNPACKED_BYTES >> 20
            )));
        }
        let linear = |l: &Linear| Linear {
            weight: LinearWeight::Dense(match &l.weight {
                LinearWeight::Dense(w) => constant_on_autodiff(w),
                LinearWeight::Packed(m) => {
                    constant_on_autodiff(&upload_linear_weight(m.to_host(), device))
                }
            }),
            bias: l.bias.as_ref().map(constant_on_autodiff),
        };
        let vocab = |v: &VocabMatrix| VocabMatrix::Dense(constant_on_autodiff(&v.dense(device)));
        Ok(Self {
            embed_tokens: vocab(&self.embed_tokens),
            unembed_rows: vocab(&self.unembed_rows),
            blocks: self
                .blocks
                .iter()
                .map(|b| Block {
                    input_layernorm: constant_on_autodiff(&b.input_layernorm),
                    q_proj: linear(&b.q_proj),
                    k_proj: linear(&b.k_proj),
                    v_proj: linear(&b.v_proj),
                    o_proj: linear(&b.o_proj),
                    post_attention_layernorm: constant_on_autodiff(&b.post_attention_layernorm),
                    gate_proj: linear(&b.gate_proj),
                    up_proj: linear(&b.up_proj),
                    down_proj: linear(&b.down_proj),
                })
                .collect(),
            norm: constant_on_autodiff(&self.norm),
        })
    }
}

/// A Llama-family forward on burn tensors, over one call's cache layers.
pub(super) struct TensorStages<'a> {
    tensors: &'a LlamaTensors,
    dims: &'a ModelDims,
    eps: f64,
    /// Attention patterns and RMS scales cut from the gradient (attribution).
    frozen: bool,
    device: &'a Device,
    cache: &'a mut [TensorKv],
    span: Span,
    /// The rotary angles' cos and sin for this call's positions, `[1, 1, t, d_head]`.
    rotary: (Tensor<4>, Tensor<4>),
}

impl<'a> TensorStages<'a> {
    #[allow(clippy::too_many_arguments)] // one call's model, settings and cache
    pub(super) fn new(
        tensors: &'a LlamaTensors,
        dims: &'a ModelDims,
        eps: f64,
        inv_freq: &[f64],
        frozen: bool,
        device: &'a Device,
        cache: &'a mut [TensorKv],
        span: Span,
    ) -> Self {
        let rotary = angle_tensors(inv_freq, span.offset, span.positions, device);
        Self {
            tensors,
            dims,
            eps,
            frozen,
            device,
            cache,
            span,
            rotary,
        }
    }

    /// `x / sqrt(mean(x^2) + eps)` over the last dim.
    fn normalize(&self, x: Tensor<3>) -> Tensor<3> {
        let mean_square = x.clone().powf_scalar(2.0).mean_dim(2);
        let scale = (mean_square + self.eps).sqrt();
        x / frozen_if(scale, self.frozen)
    }

    fn rms_norm(&self, x: Tensor<3>, weight: &Tensor<1>) -> Tensor<3> {
        self.normalize(x) * weight.clone().unsqueeze::<3>()
    }
}

impl Stages for TensorStages<'_> {
    type Act = Tensor<3>;

    fn token_embed(&mut self, ids: Vec<i64>) -> Result<Tensor<3>> {
        let (b, t, d) = (self.span.batch, self.span.positions, self.dims.d_model);
        let embed = self.tensors.embed_tokens.select(ids, self.device)?;
        Ok(embed.reshape([b, t, d]))
    }

    fn position_embed(&mut self) -> Option<Tensor<3>> {
        None
    }

    fn attention(&mut self, layer: usize, resid: &Tensor<3>) -> Tensor<3> {
        let block = &self.tensors.blocks[layer];
        let x = self.rms_norm(resid.clone(), &block.input_layernorm);
        let (heads, kv_heads, dh) = (
            self.dims.n_heads,
            self.dims.n_key_value_heads,
            self.dims.d_head,
        );
        let (cos, sin) = &self.rotary;
        let q = split_heads(block.q_proj.forward(x.clone()), heads, dh);
        let k_new = split_heads(block.k_proj.forward(x.clone()), kv_heads, dh);
        let v_new = split_heads(block.v_proj.forward(x), kv_heads, dh);
        let q = rotate_heads(q, cos, sin);
        let k_new = rotate_heads(k_new, cos, sin);
        let (z, keys, values) = causal_attention(
            q,
            (k_new, v_new),
            self.cache[layer].take(),
            1.0 / (dh as f64).sqrt(),
            self.frozen,
        );
        self.cache[layer] = Some((keys, values));
        z
    }

    fn attn_out(&mut self, layer: usize, z: Tensor<3>) -> Tensor<3> {
        self.tensors.blocks[layer].o_proj.forward(z)
    }

    fn mlp_post(&mut self, layer: usize, resid: &Tensor<3>) -> Tensor<3> {
        let block = &self.tensors.blocks[layer];
        let normed = self.rms_norm(resid.clone(), &block.post_attention_layernorm);
        silu(block.gate_proj.forward(normed.clone())) * block.up_proj.forward(normed)
    }

    fn mlp_out(&mut self, layer: usize, hidden: Tensor<3>) -> Tensor<3> {
        self.tensors.blocks[layer].down_proj.forward(hidden)
    }

    fn final_normalized(&mut self, resid: Tensor<3>, logits_for: LogitsFor) -> Tensor<3> {
        self.normalize(logit_positions(resid, logits_for))
    }

    fn logits(&mut self, normalized: Tensor<3>) -> Result<Tensor<3>> {
        let [b, t_out, d] = normalized.dims();
        let final_hidden = normalized * self.tensors.norm.clone().unsqueeze::<3>();
        let logits = self
            .tensors
            .unembed_rows
            .times_transposed(final_hidden.reshape([b * t_out, d]));
        Ok(logits.reshape([b, t_out, self.dims.d_vocab]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{block_on, cpu_device, read_f32};
    use crate::io::gguf::{GgmlType, f16_bytes};

    /// A vocabulary-sized packed matrix goes through the matmul in pieces (and a few rows on the
    /// host); both equal the product with its unpacked values, computed directly in f64. Rows
    /// chosen by id unpack to the same values.
    #[test]
    fn packed_vocabulary_matrix_multiplies_and_selects_like_its_values() {
        let (rows, cols) = (UNPACKED_PIECE / 576 + 459, 576); // two pieces, the second partial
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let matrix = QuantisedMatrix::new(GgmlType::F16, rows, cols, f16_bytes(&values)).unwrap();
        let unpacked = matrix.dequantize();
        let device = cpu_device();
        for n in [3, 12] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| (i % 13) as f32 / 13.0 - 0.5)
                .collect();
            let got = block_on(read_f32(packed_matmul(
                float_tensor(x.clone(), [n, cols], &device),
                &matrix,
            )))
            .unwrap();
            assert_eq!(got.len(), n * rows);
            for i in 0..n {
                for r in (0..rows).step_by(97).chain([rows - 1]) {
                    let want: f64 = (0..cols)
                        .map(|c| x[i * cols + c] as f64 * unpacked[r * cols + c] as f64)
                        .sum();
                    let have = got[i * rows + r] as f64;
                    assert!(
                        (have - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "n {n}, row {i}, column {r}: {have} vs {want}"
                    );
                }
            }
        }
        let embedding = VocabMatrix::Packed(Arc::new(matrix));
        let ids = [0i64, 5, rows as i64 - 1, 5];
        let selected =
            block_on(read_f32(embedding.select(ids.to_vec(), &device).unwrap())).unwrap();
        for (k, &id) in ids.iter().enumerate() {
            let id = id as usize;
            assert_eq!(
                selected[k * cols..(k + 1) * cols],
                unpacked[id * cols..(id + 1) * cols]
            );
        }
        assert!(embedding.select(vec![rows as i64], &device).is_err());
    }
}
