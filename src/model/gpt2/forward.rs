//! GPT-2's forward on burn's ops (the GPU path and every gradient), matching Hugging Face
//! `GPT2LMHeadModel`. Shapes are noted as `[batch, pos, d]`.

use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Device, Tensor};

use super::config::{Activation, Gpt2Config};
use super::processing::{LM_HEAD_BIAS, LM_HEAD_WEIGHT};
use super::weights::{Gpt2Params, ParamTensor};
use crate::backend::int_tensor;
use crate::error::{Result, SaeplayError};
use crate::model::forward::tensor_ops::{
    causal_attention, constant_on_autodiff, frozen_if, logit_positions, split_heads,
    times_transposed,
};
use crate::model::forward::{LogitsFor, Span, Stages, TensorKv};

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
pub(super) struct Gpt2Tensors {
    wte: Tensor<2>,                  // [vocab, d]
    wpe: Tensor<2>,                  // [n_positions, d]
    unembed_rows: Tensor<2>,         // [vocab, d]: wte, or lm_head.weight once processing unties it
    unembed_bias: Option<Tensor<1>>, // [vocab]: lm_head.bias, from weight processing
    blocks: Vec<Block>,
    ln_f: LayerNorm,
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
    pub(super) fn from_params(config: &Gpt2Config, params: &Gpt2Params) -> Result<Self> {
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

impl Gpt2Tensors {
    /// The same tensors as constants on the autodiff twin of their device.
    pub(super) fn on_autodiff(&self) -> Self {
        let ln = |n: &LayerNorm| LayerNorm {
            weight: constant_on_autodiff(&n.weight),
            bias: constant_on_autodiff(&n.bias),
        };
        let linear = |n: &Linear| Linear {
            weight: constant_on_autodiff(&n.weight),
            bias: constant_on_autodiff(&n.bias),
        };
        Self {
            wte: constant_on_autodiff(&self.wte),
            wpe: constant_on_autodiff(&self.wpe),
            unembed_rows: constant_on_autodiff(&self.unembed_rows),
            unembed_bias: self.unembed_bias.as_ref().map(constant_on_autodiff),
            blocks: self
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
            ln_f: ln(&self.ln_f),
        }
    }

    /// The unembedding as stored, `[vocab, d]`.
    pub(super) fn unembed_rows(&self) -> &Tensor<2> {
        &self.unembed_rows
    }
}

/// GPT-2's forward on burn tensors, over one call's cache layers.
pub(super) struct TensorStages<'a> {
    pub config: &'a Gpt2Config,
    pub activation: Activation,
    pub tensors: &'a Gpt2Tensors,
    /// Attention patterns and layer-norm scales cut from the gradient (attribution).
    pub frozen: bool,
    pub device: &'a Device,
    pub cache: &'a mut [TensorKv],
    pub span: Span,
}

impl TensorStages<'_> {
    /// `(x - mean) / sqrt(var + eps)` over the last dim (biased variance, as torch's LayerNorm).
    fn normalize(&self, x: Tensor<3>) -> Tensor<3> {
        let centred = x.clone() - x.mean_dim(2);
        let variance = centred.clone().powf_scalar(2.0).mean_dim(2);
        let scale = (variance + self.config.layer_norm_epsilon).sqrt();
        centred / frozen_if(scale, self.frozen)
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
}

impl Stages for TensorStages<'_> {
    type Act = Tensor<3>;

    fn token_embed(&mut self, ids: Vec<i64>) -> Result<Tensor<3>> {
        let (b, t, d) = (self.span.batch, self.span.positions, self.config.n_embd);
        let ids = int_tensor(ids, [b * t], self.device);
        Ok(self.tensors.wte.clone().select(0, ids).reshape([b, t, d]))
    }

    fn position_embed(&mut self) -> Option<Tensor<3>> {
        let Span {
            batch: b,
            positions: t,
            offset,
        } = self.span;
        let d = self.config.n_embd;
        let positions = int_tensor(
            (offset as i64..(offset + t) as i64).collect(),
            [t],
            self.device,
        );
        let pos_embed = self
            .tensors
            .wpe
            .clone()
            .select(0, positions)
            .reshape([1, t, d]);
        Some(pos_embed.expand([b, t, d]))
    }

    fn attention(&mut self, layer: usize, resid: &Tensor<3>) -> Tensor<3> {
        let block = &self.tensors.blocks[layer];
        let x = self.layer_norm(resid.clone(), &block.ln_1);
        let [b, t, d] = x.dims();
        let (heads, dh) = (self.config.n_head, self.config.d_head());
        let qkv = block.c_attn.forward(x); // [b, t, 3d]
        let split = |i: usize| {
            let part = qkv.clone().slice([0..b, 0..t, i * d..(i + 1) * d]);
            split_heads(part, heads, dh)
        };
        let (z, keys, values) = causal_attention(
            split(0),
            (split(1), split(2)),
            self.cache[layer].take(),
            self.config.attention_scale(layer),
            self.frozen,
        );
        self.cache[layer] = Some((keys, values));
        z
    }

    fn attn_out(&mut self, layer: usize, z: Tensor<3>) -> Tensor<3> {
        self.tensors.blocks[layer].attn_proj.forward(z)
    }

    fn mlp_post(&mut self, layer: usize, resid: &Tensor<3>) -> Tensor<3> {
        let block = &self.tensors.blocks[layer];
        let normed = self.layer_norm(resid.clone(), &block.ln_2);
        self.mlp_activation(block.c_fc.forward(normed))
    }

    fn mlp_out(&mut self, layer: usize, hidden: Tensor<3>) -> Tensor<3> {
        self.tensors.blocks[layer].mlp_proj.forward(hidden)
    }

    fn final_normalized(&mut self, resid: Tensor<3>, logits_for: LogitsFor) -> Tensor<3> {
        self.normalize(logit_positions(resid, logits_for))
    }

    fn logits(&mut self, normalized: Tensor<3>) -> Result<Tensor<3>> {
        let [b, t_out, d] = normalized.dims();
        let w = self.tensors;
        let final_hidden = normalized * w.ln_f.weight.clone().unsqueeze::<3>()
            + w.ln_f.bias.clone().unsqueeze::<3>();
        let logits = times_transposed(final_hidden.reshape([b * t_out, d]), &w.unembed_rows);
        let logits = match &w.unembed_bias {
            Some(bias) => logits + bias.clone().unsqueeze::<2>(),
            None => logits,
        };
        Ok(logits.reshape([b, t_out, self.config.vocab_size]))
    }
}
