//! A GPT-2 forward pass on burn that matches Hugging Face `GPT2LMHeadModel`, with
//! TransformerLens hook points and a key/value cache. Shapes are noted as `[batch, pos, d]`.

use burn::tensor::activation::{gelu, relu, softmax};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use burn::tensor::{Device, Tensor};

use super::config::{Activation, Gpt2Config};
use super::dims::ModelDims;
use super::hooks::{HookPoint, Hooks};
use super::host_gpt2::{HostGpt2, attention_scale};
use super::host_ops;
use super::processing::{LM_HEAD_BIAS, LM_HEAD_WEIGHT};
use super::transformer::{
    Captured, ForwardOutput, HookRun, Input, KvCache, LogitsFor, Start, causal_mask, check_patches,
    times_transposed,
};
use super::weights::Gpt2Weights;
use crate::backend::{float_tensor, int_tensor, is_host_device, read_f32_now};
use crate::error::{Result, SaeplayError};

#[derive(Clone, Debug)]
struct LayerNorm {
    weight: Tensor<1>, // [d]
    bias: Tensor<1>,   // [d]
}

#[derive(Clone, Debug)]
struct Linear {
    weight: Tensor<2>, // [in, out], Conv1D layout
    bias: Tensor<1>,   // [out]
}

impl Linear {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, pos, d_in] = x.dims();
        let d_out = self.weight.dims()[1];
        let y = x.reshape([batch * pos, d_in]).matmul(self.weight.clone())
            + self.bias.clone().unsqueeze::<2>();
        y.reshape([batch, pos, d_out])
    }
}

#[derive(Clone, Debug)]
struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// GPT-2's weights as burn tensors.
#[derive(Clone, Debug)]
struct Gpt2Tensors {
    wte: Tensor<2>,                  // [vocab, d]
    wpe: Tensor<2>,                  // [n_positions, d]
    unembed_rows: Tensor<2>,         // [vocab, d]: wte, or lm_head.weight once processing unties it
    unembed_bias: Option<Tensor<1>>, // [vocab]: lm_head.bias, from weight processing
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

/// GPT-2 with weights on one device. Cloning is cheap (tensors and host buffers are shared).
#[derive(Clone, Debug)]
pub struct Gpt2 {
    config: Gpt2Config,
    dims: ModelDims,
    activation: Activation,
    device: Device,
    /// On a CPU device the weights are host buffers, and inference runs on them (`host_gpt2`).
    host: Option<Arc<HostGpt2>>,
    /// The weights as burn tensors: on a GPU, and for training. On a CPU device they are made
    /// from the host buffers the first time a gradient (attribution) or the burn forward needs
    /// them, so that a model is held once (GPT-2 small: 500 MB, in a page and again in its worker).
    tensors: Arc<OnceLock<Gpt2Tensors>>,
    /// Attention patterns and layer-norm scales cut from the gradient (circuit-tracer's frozen
    /// replacement model); values are unchanged.
    frozen: bool,
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

fn vector(params: &Gpt2Params, name: &str) -> Result<Tensor<1>> {
    match params.get(name) {
        Some(ParamTensor::Vector(t)) => Ok(t.clone()),
        _ => Err(SaeplayError::MissingTensor(name.to_string())),
    }
}

fn matrix(params: &Gpt2Params, name: &str) -> Result<Tensor<2>> {
    match params.get(name) {
        Some(ParamTensor::Matrix(t)) => Ok(t.clone()),
        _ => Err(SaeplayError::MissingTensor(name.to_string())),
    }
}

impl Gpt2Tensors {
    fn from_params(config: &Gpt2Config, params: &Gpt2Params) -> Result<Self> {
        let ln = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: vector(params, &format!("{name}.weight"))?,
                bias: vector(params, &format!("{name}.bias"))?,
            })
        };
        let linear = |name: &str| -> Result<Linear> {
            Ok(Linear {
                weight: matrix(params, &format!("{name}.weight"))?,
                bias: vector(params, &format!("{name}.bias"))?,
            })
        };
        let blocks = (0..config.n_layer)
            .map(|l| {
                Ok(Block {
                    ln_1: ln(&format!("h.{l}.ln_1"))?,
                    c_attn: linear(&format!("h.{l}.attn.c_attn"))?,
                    attn_proj: linear(&format!("h.{l}.attn.c_proj"))?,
                    ln_2: ln(&format!("h.{l}.ln_2"))?,
                    c_fc: linear(&format!("h.{l}.mlp.c_fc"))?,
                    mlp_proj: linear(&format!("h.{l}.mlp.c_proj"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wte = matrix(params, "wte.weight")?;
        let unembed_rows = match params.get(LM_HEAD_WEIGHT) {
            Some(_) => matrix(params, LM_HEAD_WEIGHT)?,
            None => wte.clone(),
        };
        let unembed_bias = match params.get(LM_HEAD_BIAS) {
            Some(_) => Some(vector(params, LM_HEAD_BIAS)?),
            None => None,
        };
        Ok(Self {
            wpe: matrix(params, "wpe.weight")?,
            wte,
            unembed_rows,
            unembed_bias,
            blocks,
            ln_f: ln("ln_f")?,
        })
    }
}

impl Gpt2 {
    pub fn new(weights: &Gpt2Weights, device: &Device) -> Result<Self> {
        Self::from_weights(weights.clone(), device)
    }

    /// [`Gpt2::new`], consuming the host weights: on a CPU device they become the host buffers
    /// as they are; elsewhere each tensor's memory is handed over as it is uploaded.
    pub fn from_weights(weights: Gpt2Weights, device: &Device) -> Result<Self> {
        let config = weights.config.clone();
        if !is_host_device(device) {
            return Self::from_params(&config, &upload_params_owned(weights, device), device);
        }
        Ok(Self {
            activation: config.activation()?,
            device: device.clone(),
            dims: config.dims(),
            config,
            host: Some(Arc::new(HostGpt2::from_weights(weights)?)),
            tensors: Arc::default(),
            frozen: false,
        })
    }

    /// The weights as burn tensors, made from the host buffers the first time (see `tensors`).
    fn tensors(&self) -> &Gpt2Tensors {
        self.tensors.get_or_init(|| {
            let host = self
                .host
                .as_ref()
                .expect("a model without burn tensors has host buffers");
            Gpt2Tensors::from_params(&self.config, &host.upload(&self.device))
                .expect("the host buffers hold every tensor of the config")
        })
    }

    /// This model with inference on burn's tensor ops even on the CPU (benchmarks and tests
    /// compare the two forwards).
    pub fn burn_forward_only(self) -> Self {
        self.tensors();
        Self { host: None, ..self }
    }

    /// Whether inference runs on host buffers (a CPU device; not after `burn_forward_only`).
    pub fn has_host_forward(&self) -> bool {
        self.host.is_some()
    }

    /// Build from parameters already on `device` (autodiff tensors during training).
    pub fn from_params(config: &Gpt2Config, params: &Gpt2Params, device: &Device) -> Result<Self> {
        Ok(Self {
            activation: config.activation()?,
            device: device.clone(),
            dims: config.dims(),
            config: config.clone(),
            host: None,
            tensors: Arc::new(OnceLock::from(Gpt2Tensors::from_params(config, params)?)),
            frozen: false,
        })
    }

    /// This model on the autodiff twin of its device, with attention patterns and layer-norm
    /// scales frozen: a gradient through it is circuit-tracer's, linear in the residual stream
    /// apart from the MLPs. The weights are constants (no gradient is kept for them).
    pub fn frozen_for_attribution(&self) -> Self {
        let lift1 = |t: &Tensor<1>| Tensor::from_inner(t.clone());
        let lift2 = |t: &Tensor<2>| Tensor::from_inner(t.clone());
        let ln = |n: &LayerNorm| LayerNorm {
            weight: lift1(&n.weight),
            bias: lift1(&n.bias),
        };
        let linear = |n: &Linear| Linear {
            weight: lift2(&n.weight),
            bias: lift1(&n.bias),
        };
        let w = self.tensors();
        let tensors = Gpt2Tensors {
            wte: lift2(&w.wte),
            wpe: lift2(&w.wpe),
            unembed_rows: lift2(&w.unembed_rows),
            unembed_bias: w.unembed_bias.as_ref().map(lift1),
            blocks: w
                .blocks
                .iter()
                .map(|b| Block {
                    ln_1: ln(&b.ln_1),
                    c_attn: linear(&b.c_attn),
                    attn_proj: linear(&b.attn_proj),
                    ln_2: ln(&b.ln_2),
                    c_fc: linear(&b.c_fc),
                    mlp_proj: linear(&b.mlp_proj),
                })
                .collect(),
            ln_f: ln(&w.ln_f),
        };
        Self {
            config: self.config.clone(),
            dims: self.dims.clone(),
            activation: self.activation,
            device: self.device.clone().autodiff(),
            host: None,
            tensors: Arc::new(OnceLock::from(tensors)),
            frozen: true,
        }
    }

    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    pub fn dims(&self) -> &ModelDims {
        &self.dims
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The unembedding `[d, vocab]` (`wte` transposed unless weight processing untied it).
    pub fn unembed(&self) -> Tensor<2> {
        match &self.host {
            Some(host) => float_tensor(
                host_ops::transpose(
                    host.unembed_rows(),
                    self.config.vocab_size,
                    self.config.n_embd,
                ),
                [self.config.n_embd, self.config.vocab_size],
                &self.device,
            ),
            None => self.tensors().unembed_rows.clone().transpose(),
        }
    }

    /// `x @ W_U`: `x` `[n, d]` to `[n, vocab]`, on the host buffers when the model has them.
    pub fn unembed_directions(&self, x: Tensor<2>) -> Tensor<2> {
        if let Some(host) = &self.host
            && let Some(values) = read_f32_now(x.clone())
        {
            let n = x.dims()[0];
            let out = host.unembed_directions(&values, n);
            return float_tensor(out, [n, self.config.vocab_size], &self.device);
        }
        times_transposed(x, &self.tensors().unembed_rows)
    }

    /// A full forward pass with no cache.
    pub fn forward(
        &self,
        batch: &[Vec<u32>],
        hooks: &Hooks,
        logits_for: LogitsFor,
    ) -> Result<ForwardOutput> {
        let mut cache = KvCache::new(self.config.n_layer);
        self.forward_cached(batch, &mut cache, hooks, logits_for)
    }

    /// A forward pass over new positions that continue the sequence already in `cache`.
    pub fn forward_cached(
        &self,
        batch: &[Vec<u32>],
        cache: &mut KvCache,
        hooks: &Hooks,
        logits_for: LogitsFor,
    ) -> Result<ForwardOutput> {
        cache.fit(self.config.n_layer);
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
        cache.fit(self.config.n_layer);
        let offset = cache.len;
        let (b, t, first) = (input.batch, input.positions, input.first_layer());
        check_patches(&self.dims, hooks, b, offset + t)?;
        if let Some(host) = &self.host
            && (offset == 0 || cache.host.len() == self.config.n_layer)
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
        let d = self.config.n_embd;
        let mut run = HookRun::new(hooks, offset);
        let w = self.tensors();

        let mut resid = match input.start {
            Start::Residual { resid, .. } => resid,
            Start::Tokens(flat) => {
                let ids = int_tensor(flat, [b * t], &self.device);
                let embed = w.wte.clone().select(0, ids).reshape([b, t, d]);
                let embed = run.site(HookPoint::Embed, embed)?;
                let positions = int_tensor(
                    (offset as i64..(offset + t) as i64).collect(),
                    [t],
                    &self.device,
                );
                let pos_embed = w.wpe.clone().select(0, positions).reshape([1, t, d]);
                let pos_embed = run.site(HookPoint::PosEmbed, pos_embed.expand([b, t, d]))?;
                embed + pos_embed
            }
        };

        let layers = stop_at_layer.unwrap_or(w.blocks.len());
        for (l, block) in w.blocks.iter().enumerate().take(layers).skip(first) {
            resid = run.site(HookPoint::ResidPre(l), resid)?;
            let normed = self.layer_norm(resid.clone(), &block.ln_1);
            let (z, keys, values) = self.attention(l, block, normed, cache.layers[l].take());
            cache.layers[l] = Some((keys, values));
            let z = run.site(HookPoint::AttnZ(l), z)?;
            let attn_out = run.site(HookPoint::AttnOut(l), block.attn_proj.forward(z))?;
            resid = run.site(HookPoint::ResidMid(l), resid + attn_out)?;
            let normed = self.layer_norm(resid.clone(), &block.ln_2);
            let hidden = self.mlp_activation(block.c_fc.forward(normed));
            let hidden = run.site(HookPoint::MlpPost(l), hidden)?;
            let mlp_out = run.site(HookPoint::MlpOut(l), block.mlp_proj.forward(hidden))?;
            resid = run.site(HookPoint::ResidPost(l), resid + mlp_out)?;
        }
        if layers < w.blocks.len() {
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
        let final_hidden = normalized * w.ln_f.weight.clone().unsqueeze::<3>()
            + w.ln_f.bias.clone().unsqueeze::<3>();
        let logits = times_transposed(final_hidden.reshape([b * t_out, d]), &w.unembed_rows);
        let logits = match &w.unembed_bias {
            Some(bias) => logits + bias.clone().unsqueeze::<2>(),
            None => logits,
        }
        .reshape([b, t_out, self.config.vocab_size]);
        Ok((Some(logits), run.captured))
    }

    /// `(x - mean) / sqrt(var + eps)` over the last dim (biased variance, as torch's LayerNorm).
    fn normalize(&self, x: Tensor<3>) -> Tensor<3> {
        let centred = x.clone() - x.mean_dim(2);
        let variance = centred.clone().powf_scalar(2.0).mean_dim(2);
        let scale = (variance + self.config.layer_norm_epsilon).sqrt();
        centred / if self.frozen { scale.detach() } else { scale }
    }

    fn layer_norm(&self, x: Tensor<3>, ln: &LayerNorm) -> Tensor<3> {
        self.normalize(x) * ln.weight.clone().unsqueeze::<3>() + ln.bias.clone().unsqueeze::<3>()
    }

    fn mlp_activation(&self, x: Tensor<3>) -> Tensor<3> {
        match self.activation {
            Activation::GeluTanh => {
                let inner = (x.clone() + x.clone().powf_scalar(3.0) * 0.044715)
                    * (2.0 / std::f64::consts::PI).sqrt();
                x * (inner.tanh() + 1.0) * 0.5
            }
            Activation::GeluErf => gelu(x),
            Activation::Relu => relu(x),
        }
    }

    /// Causal self-attention over the new positions; returns `z` `[batch, pos, head * d_head]`
    /// and the keys and values of all positions so far.
    fn attention(
        &self,
        layer: usize,
        block: &Block,
        x: Tensor<3>,
        past: Option<(Tensor<4>, Tensor<4>)>,
    ) -> (Tensor<3>, Tensor<4>, Tensor<4>) {
        let [b, t, d] = x.dims();
        let heads = self.config.n_head;
        let dh = self.config.d_head();
        let qkv = block.c_attn.forward(x); // [b, t, 3d]
        let split = |i: usize| {
            qkv.clone()
                .slice([0..b, 0..t, i * d..(i + 1) * d])
                .reshape([b, t, heads, dh])
                .swap_dims(1, 2) // [b, head, t, dh]
        };
        let (q, k_new, v_new) = (split(0), split(1), split(2));
        let (keys, values) = match past {
            Some((k, v)) => (
                Tensor::cat(vec![k, k_new], 2),
                Tensor::cat(vec![v, v_new], 2),
            ),
            None => (k_new, v_new),
        };
        let total = keys.dims()[2];

        let scale = attention_scale(&self.config, layer);
        let mut scores = q.matmul(keys.clone().swap_dims(2, 3)) * scale; // [b, head, t, total]
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
            .matmul(values.clone()) // [b, head, t, dh]
            .swap_dims(1, 2)
            .reshape([b, t, d]);
        (z, keys, values)
    }
}
