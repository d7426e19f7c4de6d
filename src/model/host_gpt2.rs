//! GPT-2's forward on host buffers: the CPU path's route for inference (capture, scans, metrics,
//! steering, generation). The same computation as [`super::gpt2::Gpt2`]'s burn forward, which
//! stays for the GPU and for gradients; both are checked against the f64 reference and each
//! other in `tests/it/forward.rs`. Activations are row-major `[batch * pos, width]`.

use burn::tensor::{Device, Tensor};

use super::config::{Activation, Gpt2Config};
use super::gpt2::{Gpt2Params, ParamTensor};
use super::hooks::{HookPoint, Hooks};
use super::host_ops::{
    HostKv, MatRef, QkvLayout, add_into, causal_attention, for_each_chunk, gelu_erf, gelu_tanh,
    linear, logit_rows, matmul, normalize_rows, relu, repeat_rows, scale_shift_rows,
};
use super::processing::{LM_HEAD_BIAS, LM_HEAD_WEIGHT};
use super::transformer::{Captured, HookRun, Input, LogitsFor, Start};
use super::weights::Gpt2Weights;
use crate::backend::{float_tensor, read_f32_now};
use crate::error::{Result, SaeplayError};

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
                .map(|l| attention_scale(&config, l) as f32)
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

    /// The forward over `ids` (`b` rows of `t`, checked by the caller) after the `offset`
    /// positions in `cache`; `None` for the logits when it stops after `stop_at_layer` blocks.
    /// Token plus position embeddings, through their hook sites.
    fn embed(
        &self,
        ids: &[i64],
        (b, t): (usize, usize),
        offset: usize,
        run: &mut HostHooks,
    ) -> Result<Vec<f32>> {
        let d = self.d;
        let mut embed: Vec<f32> = Vec::with_capacity(b * t * d);
        for &id in ids {
            let id = id as usize;
            embed.extend_from_slice(&self.wte[id * d..(id + 1) * d]);
        }
        run.site(HookPoint::Embed, &mut embed, [b, t, d])?;
        let positions = &self.wpe[offset * d..(offset + t) * d];
        if run.touches(HookPoint::PosEmbed) {
            let mut pos_embed = Vec::with_capacity(b * t * d);
            for _ in 0..b {
                pos_embed.extend_from_slice(positions);
            }
            run.site(HookPoint::PosEmbed, &mut pos_embed, [b, t, d])?;
            add_into(&mut embed, &pos_embed);
        } else {
            for row in embed.chunks_exact_mut(t * d) {
                add_into(row, positions);
            }
        }
        Ok(embed)
    }

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
        let d = self.d;
        let (b, t, first) = (input.batch, input.positions, input.first_layer());
        let n = b * t;
        let mut run = HostHooks {
            run: HookRun::new(hooks, offset),
            hooks,
            device,
        };
        let mut resid = match input.start {
            Start::Residual { resid, .. } => resid,
            Start::Tokens(ids) => self.embed(&ids, (b, t), offset, &mut run)?,
        };

        cache.resize_with(self.blocks.len(), HostKv::default);
        let layers = stop_at_layer.unwrap_or(self.blocks.len());
        for (l, block) in self.blocks.iter().enumerate().take(layers).skip(first) {
            run.site(HookPoint::ResidPre(l), &mut resid, [b, t, d])?;
            let mut normed = resid.clone();
            normalize_rows(&mut normed, d, self.eps);
            scale_shift_rows(&mut normed, &block.ln_1.0, &block.ln_1.1);
            let qkv = linear(&normed, n, &block.c_attn.0, &block.c_attn.1);
            let layout = QkvLayout {
                heads: self.heads,
                kv_heads: self.heads,
                d_head: self.d_head,
                row: 3 * d,
                q: 0,
                k: d,
                v: 2 * d,
            };
            let scale = self.attn_scales[l];
            let mut z = causal_attention(&qkv, layout, (b, t), offset, scale, &mut cache[l]);
            run.site(HookPoint::AttnZ(l), &mut z, [b, t, d])?;
            let mut attn_out = linear(&z, n, &block.attn_proj.0, &block.attn_proj.1);
            run.site(HookPoint::AttnOut(l), &mut attn_out, [b, t, d])?;
            add_into(&mut resid, &attn_out);
            run.site(HookPoint::ResidMid(l), &mut resid, [b, t, d])?;

            let mut normed = resid.clone();
            normalize_rows(&mut normed, d, self.eps);
            scale_shift_rows(&mut normed, &block.ln_2.0, &block.ln_2.1);
            let mut hidden = linear(&normed, n, &block.c_fc.0, &block.c_fc.1);
            let d_mlp = block.c_fc.1.len();
            let activation = self.activation;
            for_each_chunk(&mut hidden, ELEMENTWISE_CHUNK, |_, part| match activation {
                Activation::GeluTanh => gelu_tanh(part),
                Activation::GeluErf => gelu_erf(part),
                Activation::Relu => relu(part),
            });
            run.site(HookPoint::MlpPost(l), &mut hidden, [b, t, d_mlp])?;
            let mut mlp_out = linear(&hidden, n, &block.mlp_proj.0, &block.mlp_proj.1);
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
        normalize_rows(&mut last, d, self.eps);
        run.site(HookPoint::LnFinalNormalized, &mut last, [b, t_out, d])?;
        scale_shift_rows(&mut last, &self.ln_f.0, &self.ln_f.1);
        let rows = b * t_out;
        let mut logits = match &self.unembed_bias {
            Some(bias) => repeat_rows(bias, rows),
            None => vec![0.0; rows * self.vocab],
        };
        matmul(
            &mut logits,
            MatRef::rows(&last, rows, d),
            MatRef::transposed(self.unembed_rows(), d, self.vocab),
            1.0,
            self.unembed_bias.is_some(),
        );
        let logits = float_tensor(logits, [b, t_out, self.vocab], device);
        Ok((Some(logits), run.run.captured))
    }
}

/// `1/sqrt(d_head)` and `1/(layer+1)` as the config asks (Hugging Face's `_attn`).
pub(crate) fn attention_scale(config: &Gpt2Config, layer: usize) -> f64 {
    let mut scale = 1.0;
    if config.scale_attn_weights {
        scale /= (config.d_head() as f64).sqrt();
    }
    if config.scale_attn_by_inverse_layer_idx {
        scale /= (layer + 1) as f64;
    }
    scale
}

/// Hook sites on host buffers: a site no hook touches costs two comparisons; a captured one is
/// copied into a tensor; a patched one goes through the patch as a tensor and is read back.
pub(crate) struct HostHooks<'a> {
    pub run: HookRun<'a>,
    pub hooks: &'a Hooks,
    pub device: &'a Device,
}

impl HostHooks<'_> {
    /// Whether a hook captures or patches at `hook`.
    pub fn touches(&self, hook: HookPoint) -> bool {
        self.hooks.patches.iter().any(|p| p.hook == hook) || self.hooks.capture.contains(&hook)
    }

    pub fn site(&mut self, hook: HookPoint, x: &mut Vec<f32>, shape: [usize; 3]) -> Result<()> {
        if !self.touches(hook) {
            return Ok(());
        }
        let patched = self.hooks.patches.iter().any(|p| p.hook == hook);
        let values = if patched {
            std::mem::take(x)
        } else {
            x.clone()
        };
        let y = self
            .run
            .site(hook, float_tensor(values, shape, self.device))?;
        if patched {
            *x = read_f32_now(y).ok_or_else(|| {
                SaeplayError::Device(format!(
                    "a patch at {hook} left the CPU; patches of a CPU model must stay on the CPU"
                ))
            })?;
        }
        Ok(())
    }
}
