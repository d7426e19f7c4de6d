//! The Hugging Face GPT-2 `config.json`, with the defaults `transformers.GPT2Config` uses.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SaeplayError};
use crate::model::dims::{
    Family, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH, ModelDims, config_from_json, config_to_json,
};

/// The MLP non-linearity named by `activation_function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast`: the tanh approximation GPT-2 uses.
    GeluTanh,
    /// `gelu`: the exact erf form.
    GeluErf,
    Relu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// MLP width; `None` means 4 x n_embd, as in transformers.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Everything else in the file is kept so that a saved config round-trips.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_activation() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        config_from_json(bytes, Self::validate)
    }

    pub fn to_json(&self) -> String {
        config_to_json(self)
    }

    /// A config for a model of the given shape, with the fields transformers expects.
    pub fn new(
        vocab_size: usize,
        n_positions: usize,
        n_embd: usize,
        n_layer: usize,
        n_head: usize,
    ) -> Self {
        let mut extra = serde_json::Map::new();
        extra.insert("model_type".into(), "gpt2".into());
        extra.insert(
            "architectures".into(),
            serde_json::json!(["GPT2LMHeadModel"]),
        );
        extra.insert("n_ctx".into(), n_positions.into());
        Self {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner: None,
            activation_function: default_activation(),
            layer_norm_epsilon: default_eps(),
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            bos_token_id: None,
            eos_token_id: None,
            extra,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(SaeplayError::Config(format!("{name} must be at least 1")));
            }
        }
        // Bounds far above any GPT-2 but low enough that no size derived from them overflows,
        // also where usize is 32 bits (wasm32), and that no loop over layers runs for ever.
        let bounded = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("n_positions", self.n_positions, MAX_WIDTH),
            ("n_embd", self.n_embd, MAX_WIDTH),
            ("n_inner", self.n_inner.unwrap_or(1), MAX_WIDTH),
            ("n_layer", self.n_layer, MAX_LAYERS),
        ];
        for (name, value, limit) in bounded {
            if value > limit {
                return Err(SaeplayError::Config(format!(
                    "{name} is {value}, more than the {limit} saeplay accepts"
                )));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(SaeplayError::Config(format!(
                "n_embd ({}) is not divisible by n_head ({})",
                self.n_embd, self.n_head
            )));
        }
        if self.n_inner == Some(0) {
            return Err(SaeplayError::Config("n_inner must be at least 1".into()));
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0) {
            return Err(SaeplayError::Config(
                "layer_norm_epsilon must be a positive number".into(),
            ));
        }
        self.activation()?;
        Ok(())
    }

    pub fn activation(&self) -> Result<Activation> {
        match self.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::GeluErf),
            "relu" => Ok(Activation::Relu),
            other => Err(SaeplayError::Config(format!(
                "activation_function `{other}` is not supported (use gelu_new, gelu or relu)"
            ))),
        }
    }

    pub fn d_mlp(&self) -> usize {
        // validate() bounds n_embd, so 4 x n_embd fits even in a 32-bit usize.
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    pub fn d_head(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Block `layer`'s attention score scale: `1/sqrt(d_head)` and `1/(layer+1)` as the config
    /// asks (Hugging Face's `_attn`).
    pub fn attention_scale(&self, layer: usize) -> f64 {
        let mut scale = 1.0;
        if self.scale_attn_weights {
            scale /= (self.d_head() as f64).sqrt();
        }
        if self.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f64;
        }
        scale
    }

    /// The shape everything above the forward sees.
    pub fn dims(&self) -> ModelDims {
        ModelDims {
            family: Family::Gpt2,
            d_model: self.n_embd,
            n_layers: self.n_layer,
            n_ctx: self.n_positions,
            d_vocab: self.vocab_size,
            n_heads: self.n_head,
            n_key_value_heads: self.n_head,
            d_head: self.d_head(),
            d_mlp: self.d_mlp(),
            eos_token_id: self.eos_token_id,
            parameter_count: self.parameter_count(),
        }
    }

    /// Number of parameters (tied unembedding counted once).
    pub fn parameter_count(&self) -> usize {
        let d = self.n_embd;
        let m = self.d_mlp();
        let block = 2 * 2 * d + d * 3 * d + 3 * d + d * d + d + d * m + m + m * d + d;
        self.vocab_size * d + self.n_positions * d + self.n_layer * block + 2 * d
    }
}
