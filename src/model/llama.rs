//! A Llama-family forward pass on burn that matches Hugging Face `LlamaForCausalLM` (and
//! `Qwen2ForCausalLM`): RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP. Same hook
//! points as GPT-2 but `hook_pos_embed`. Shapes are noted as `[batch, pos, d]`.

use std::sync::Arc;

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Tensor};

use super::dims::ModelDims;
use super::hooks::{HookPoint, Hooks};
use super::host_llama::{
    HostLinear, HostLlama, HostLlamaBlock, PACKED_ROWS, PackedWeight, UNPACKED_PIECE,
};
use super::llama_config::LlamaConfig;
use super::llama_weights::{EMBED, FINAL_NORM, LM_HEAD, LlamaWeights, layer_prefix};
use super::quantised::QuantisedMatrix;
use super::transformer::{
    Captured, ForwardOutput, HookRun, Input, KvCache, LogitsFor, Start, causal_mask, check_patches,
    times_transposed,
};
use crate::backend::{float_tensor, int_tensor, is_host_device, read_f32_now};
use crate::error::{Result, SaeplayError};
use crate::io::tensors::HostTensor;

// A dozen of these per block, so boxing the dense handle would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum LinearWeight {
    /// `[in, out]` on the device.
    Dense(Tensor<2>),
    /// torch's `[out, in]`, packed on the host and unpacked for each use (see [`packs_on`]).
    Packed(Arc<QuantisedMatrix>),
}

#[derive(Clone, Debug)]
struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor<1>>, // [out]
}

impl Linear {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
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
fn packed_matmul(x: Tensor<2>, matrix: &QuantisedMatrix) -> Tensor<2> {
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
enum VocabMatrix {
    Dense(Tensor<2>),
    Packed(Arc<QuantisedMatrix>),
}

impl VocabMatrix {
    /// Rows `ids`, `[ids.len(), d]` (ids already checked against the vocabulary).
    fn select(&self, ids: Vec<i64>, device: &Device) -> Result<Tensor<2>> {
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
    fn times_transposed(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Dense(rows) => times_transposed(x, rows),
            Self::Packed(matrix) => packed_matmul(x, matrix),
        }
    }

    /// The values on the device, `[vocab, d]` (unpacked when packed).
    fn dense(&self, device: &Device) -> Tensor<2> {
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
fn host_f32_matrix(tensor: HostTensor) -> Result<QuantisedMatrix> {
    let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
    QuantisedMatrix::from_f32(rows, cols, tensor.values)
}

fn upload_matrix(tensor: HostTensor, device: &Device) -> Tensor<2> {
    let shape = [tensor.shape[0], tensor.shape[1]];
    float_tensor(tensor.values, shape, device)
}

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

#[derive(Clone, Debug)]
struct Block {
    input_layernorm: Tensor<1>, // [d]
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    post_attention_layernorm: Tensor<1>, // [d]
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Block {
    /// The seven matrices, in checkpoint order.
    fn linears(&self) -> [&Linear; 7] {
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

/// A Llama-family model with weights on one device. Cloning is cheap (shared tensor handles).
#[derive(Clone, Debug)]
pub struct Llama {
    config: LlamaConfig,
    dims: ModelDims,
    device: Device,
    inv_freq: Vec<f64>,
    embed_tokens: VocabMatrix, // [vocab, d]
    unembed_rows: VocabMatrix, // [vocab, d]: embed_tokens when tied, else lm_head
    blocks: Vec<Block>,
    norm: Tensor<1>, // [d]
    /// Attention patterns and RMS scales cut from the gradient (attribution); values unchanged.
    frozen: bool,
    /// Packed matrices on a CPU device: inference runs on host buffers (`host_llama`), sharing
    /// the packed matrices with the fields above.
    host: Option<Arc<HostLlama>>,
}

/// Upload a vector, taking its memory.
fn upload_vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    float_tensor(values, [n], device)
}

/// Upload a torch `[out, in]` weight as `[in, out]`, transposed on the host so the matmul reads
/// it contiguously.
fn upload_linear_weight(tensor: HostTensor, device: &Device) -> Tensor<2> {
    let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
    let mut transposed = vec![0.0f32; rows * cols];
    for (r, row) in tensor.values.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            transposed[c * rows + r] = v;
        }
    }
    drop(tensor);
    float_tensor(transposed, [cols, rows], device)
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
            embed_tokens,
            unembed_rows,
            blocks,
            norm: upload_vector(norm, device),
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
            vocab(&self.unembed_rows)
        };
        blocks + vocab(&self.embed_tokens) + unembed + 4 * self.norm.dims()[0] as u64
    }

    /// Whether inference runs on host buffers (packed matrices on a CPU device).
    pub fn has_host_forward(&self) -> bool {
        self.host.is_some()
    }

    /// This model on the autodiff twin of its device, every matrix unpacked, with attention
    /// patterns and RMS scales frozen (as `Gpt2::frozen_for_attribution`). The weights are
    /// constants.
    pub fn frozen_for_attribution(&self) -> Result<Self> {
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
        let lift1 = |t: &Tensor<1>| Tensor::from_inner(t.clone());
        let lift2 = |t: &Tensor<2>| Tensor::from_inner(t.clone());
        let inner = &self.device;
        let linear = |l: &Linear| Linear {
            weight: LinearWeight::Dense(match &l.weight {
                LinearWeight::Dense(w) => lift2(w),
                LinearWeight::Packed(m) => lift2(&upload_linear_weight(m.to_host(), inner)),
            }),
            bias: l.bias.as_ref().map(lift1),
        };
        let vocab = |v: &VocabMatrix| VocabMatrix::Dense(lift2(&v.dense(inner)));
        Ok(Self {
            config: self.config.clone(),
            dims: self.dims.clone(),
            device: self.device.clone().autodiff(),
            inv_freq: self.inv_freq.clone(),
            embed_tokens: vocab(&self.embed_tokens),
            unembed_rows: vocab(&self.unembed_rows),
            blocks: self
                .blocks
                .iter()
                .map(|b| Block {
                    input_layernorm: lift1(&b.input_layernorm),
                    q_proj: linear(&b.q_proj),
                    k_proj: linear(&b.k_proj),
                    v_proj: linear(&b.v_proj),
                    o_proj: linear(&b.o_proj),
                    post_attention_layernorm: lift1(&b.post_attention_layernorm),
                    gate_proj: linear(&b.gate_proj),
                    up_proj: linear(&b.up_proj),
                    down_proj: linear(&b.down_proj),
                })
                .collect(),
            norm: lift1(&self.norm),
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
        self.unembed_rows.times_transposed(x)
    }

    /// The unembedding `[d, vocab]`, unpacked on the device when it is packed (tests, exports).
    pub fn unembed(&self) -> Tensor<2> {
        self.unembed_rows.dense(&self.device).transpose()
    }

    /// A forward pass over new positions that continue the sequence already in `cache`.
    pub fn forward_cached(
        &self,
        batch: &[Vec<u32>],
        cache: &mut KvCache,
        hooks: &Hooks,
        logits_for: LogitsFor,
    ) -> Result<ForwardOutput> {
        cache.fit(self.dims.n_layers);
        let input = Input::tokens(&self.dims, batch, cache.len)?;
        let (logits, captured) = self.forward_until(input, cache, hooks, logits_for, None)?;
        let logits = logits.ok_or_else(|| {
            SaeplayError::InvalidSetting("a forward that stops early has no logits".into())
        })?;
        Ok(ForwardOutput { logits, captured })
    }

    /// The forward, stopped after `stop_at_layer` blocks when given (TransformerLens's
    /// `stop_at_layer`: no logits, only what was captured on the way).
    pub(crate) fn forward_until(
        &self,
        input: Input<Tensor<3>>,
        cache: &mut KvCache,
        hooks: &Hooks,
        logits_for: LogitsFor,
        stop_at_layer: Option<usize>,
    ) -> Result<(Option<Tensor<3>>, Captured)> {
        cache.fit(self.dims.n_layers);
        let offset = cache.len;
        let (b, t, first) = (input.batch, input.positions, input.first_layer());
        check_patches(&self.dims, hooks, b, offset + t)?;
        if let Some(host) = &self.host
            && (offset == 0 || cache.host.len() == self.blocks.len())
        {
            let (logits, captured) = host.forward(
                input.into_host()?,
                &mut cache.host,
                offset,
                hooks,
                logits_for,
                stop_at_layer,
                &self.device,
            )?;
            if logits.is_some() {
                cache.len = offset + t;
            }
            return Ok((logits, captured));
        }
        let d = self.dims.d_model;
        let mut run = HookRun::new(hooks, offset);

        let mut resid = match input.start {
            Start::Residual { resid, .. } => resid,
            Start::Tokens(flat) => {
                let embed = self
                    .embed_tokens
                    .select(flat, &self.device)?
                    .reshape([b, t, d]);
                run.site(HookPoint::Embed, embed)?
            }
        };
        let (cos, sin) = self.rotary(offset, t);

        let layers = stop_at_layer.unwrap_or(self.blocks.len());
        for (l, block) in self.blocks.iter().enumerate().take(layers).skip(first) {
            resid = run.site(HookPoint::ResidPre(l), resid)?;
            let normed = self.rms_norm(resid.clone(), &block.input_layernorm);
            let (z, keys, values) =
                self.attention(block, normed, &cos, &sin, cache.layers[l].take());
            cache.layers[l] = Some((keys, values));
            let z = run.site(HookPoint::AttnZ(l), z)?;
            let attn_out = run.site(HookPoint::AttnOut(l), block.o_proj.forward(z))?;
            resid = run.site(HookPoint::ResidMid(l), resid + attn_out)?;
            let normed = self.rms_norm(resid.clone(), &block.post_attention_layernorm);
            let hidden =
                silu(block.gate_proj.forward(normed.clone())) * block.up_proj.forward(normed);
            let hidden = run.site(HookPoint::MlpPost(l), hidden)?;
            let mlp_out = run.site(HookPoint::MlpOut(l), block.down_proj.forward(hidden))?;
            resid = run.site(HookPoint::ResidPost(l), resid + mlp_out)?;
        }
        if layers < self.blocks.len() {
            // The next block's input is all that is left to see; the cache is incomplete: only
            // capture stops early.
            run.site(HookPoint::ResidPre(layers), resid)?;
            return Ok((None, run.captured));
        }
        cache.len = offset + t;

        let resid = match logits_for {
            LogitsFor::AllPositions => resid,
            LogitsFor::LastPosition => resid.slice([0..b, t - 1..t, 0..d]),
        };
        let t_out = resid.dims()[1];
        let normalized = run.site(HookPoint::LnFinalNormalized, self.normalize(resid))?;
        let final_hidden = normalized * self.norm.clone().unsqueeze::<3>();
        let logits = self
            .unembed_directions(final_hidden.reshape([b * t_out, d]))
            .reshape([b, t_out, self.dims.d_vocab]);
        Ok((Some(logits), run.captured))
    }

    /// `x / sqrt(mean(x^2) + eps)` over the last dim.
    fn normalize(&self, x: Tensor<3>) -> Tensor<3> {
        let mean_square = x.clone().powf_scalar(2.0).mean_dim(2);
        let scale = (mean_square + self.config.rms_norm_eps).sqrt();
        x / if self.frozen { scale.detach() } else { scale }
    }

    fn rms_norm(&self, x: Tensor<3>, weight: &Tensor<1>) -> Tensor<3> {
        self.normalize(x) * weight.clone().unsqueeze::<3>()
    }

    /// `cos` and `sin` of the rotary angles for positions `offset..offset + t`, `[1, 1, t, d_head]`
    /// with each frequency twice (`cat(freqs, freqs)`, transformers' layout).
    fn rotary(&self, offset: usize, t: usize) -> (Tensor<4>, Tensor<4>) {
        let dh = self.dims.d_head;
        let mut cos = Vec::with_capacity(t * dh);
        let mut sin = Vec::with_capacity(t * dh);
        for pos in offset..offset + t {
            for _half in 0..2 {
                for &f in &self.inv_freq {
                    let angle = pos as f64 * f;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        (
            float_tensor(cos, [1, 1, t, dh], &self.device),
            float_tensor(sin, [1, 1, t, dh], &self.device),
        )
    }

    /// Split `[b, t, heads * dh]` into heads, `[b, heads, t, dh]`.
    fn heads(x: Tensor<3>, heads: usize, dh: usize) -> Tensor<4> {
        let [b, t, _] = x.dims();
        x.reshape([b, t, heads, dh]).swap_dims(1, 2)
    }

    /// `x * cos + rotate_half(x) * sin`, with `rotate_half(x) = cat(-x2, x1)`.
    fn rotate(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [b, h, t, dh] = x.dims();
        let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..dh / 2]);
        let x2 = x.clone().slice([0..b, 0..h, 0..t, dh / 2..dh]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos.clone() + rotated * sin.clone()
    }

    /// Repeat each key/value head for the query heads that share it: `[b, kv, t, dh]` to
    /// `[b, kv * group, t, dh]` (head h reads kv head h / group, as transformers' `repeat_kv`).
    fn repeat_kv(x: Tensor<4>, group: usize) -> Tensor<4> {
        if group == 1 {
            return x;
        }
        let [b, kv, t, dh] = x.dims();
        x.unsqueeze_dim::<5>(2)
            .expand([b, kv, group, t, dh])
            .reshape([b, kv * group, t, dh])
    }

    /// Causal grouped-query attention over the new positions; returns `z` `[b, t, heads * dh]`
    /// and the (rotated) keys and values of all positions so far.
    fn attention(
        &self,
        block: &Block,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        past: Option<(Tensor<4>, Tensor<4>)>,
    ) -> (Tensor<3>, Tensor<4>, Tensor<4>) {
        let [b, t, _] = x.dims();
        let heads = self.dims.n_heads;
        let kv_heads = self.dims.n_key_value_heads;
        let dh = self.dims.d_head;
        let q = Self::heads(block.q_proj.forward(x.clone()), heads, dh);
        let k_new = Self::heads(block.k_proj.forward(x.clone()), kv_heads, dh);
        let v_new = Self::heads(block.v_proj.forward(x), kv_heads, dh);
        let q = Self::rotate(q, cos, sin);
        let k_new = Self::rotate(k_new, cos, sin);
        let (keys, values) = match past {
            Some((k, v)) => (
                Tensor::cat(vec![k, k_new], 2),
                Tensor::cat(vec![v, v_new], 2),
            ),
            None => (k_new, v_new),
        };
        let total = keys.dims()[2];
        let group = heads / kv_heads;
        let k_all = Self::repeat_kv(keys.clone(), group);
        let v_all = Self::repeat_kv(values.clone(), group);
        let scale = 1.0 / (dh as f64).sqrt();
        let mut scores = q.matmul(k_all.swap_dims(2, 3)) * scale; // [b, head, t, total]
        if let Some(mask) = causal_mask(t, total, &self.device) {
            scores = scores + mask;
        }
        let pattern = softmax(scores, 3);
        let pattern = if self.frozen {
            pattern.detach()
        } else {
            pattern
        };
        let z = pattern
            .matmul(v_all) // [b, head, t, dh]
            .swap_dims(1, 2)
            .reshape([b, t, heads * dh]);
        (z, keys, values)
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
