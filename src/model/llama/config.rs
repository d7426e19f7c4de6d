//! The Hugging Face `config.json` of a Llama-family model (`LlamaForCausalLM`,
//! `Qwen2ForCausalLM`), with the defaults transformers uses, and its rotary frequencies.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SaeplayError};
use crate::model::dims::{
    Family, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH, ModelDims, config_from_json, config_to_json,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// `None` means one key/value head per query head (no grouping).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// `None` means hidden_size / num_attention_heads.
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q, k, v and o (Llama's `attention_bias`); Qwen2 always has q/k/v biases.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// Everything else in the file, kept so that a saved config round-trips.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Per-frequency divisors from a GGUF's `rope_freqs.weight` (Llama 3's scaling as llama.cpp
    /// stores it); not part of config.json.
    #[serde(skip)]
    pub rope_freq_factors: Option<Vec<f32>>,
}

fn default_model_type() -> String {
    "llama".into()
}
fn default_positions() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10000.0
}
fn default_act() -> String {
    "silu".into()
}

/// Which biases the attention projections carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionBiases {
    pub qkv: bool,
    pub output: bool,
}

impl LlamaConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        config_from_json(bytes, Self::validate)
    }

    pub fn to_json(&self) -> String {
        config_to_json(self)
    }

    /// A Llama config of the given shape, with the fields transformers expects.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
    ) -> Self {
        let mut extra = serde_json::Map::new();
        extra.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
        Self {
            model_type: default_model_type(),
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: Some(num_key_value_heads),
            head_dim: None,
            max_position_embeddings: 256,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: default_act(),
            bos_token_id: None,
            eos_token_id: None,
            extra,
            rope_freq_factors: None,
        }
    }

    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn d_head(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    pub fn biases(&self) -> AttentionBiases {
        match self.model_type.as_str() {
            "qwen2" => AttentionBiases {
                qkv: true,
                output: false,
            },
            _ => AttentionBiases {
                qkv: self.attention_bias,
                output: self.attention_bias,
            },
        }
    }

    /// The end-of-text token: `eos_token_id` may be one id or a list (Llama 3); the first counts.
    pub fn eos(&self) -> Option<u32> {
        let value = self.eos_token_id.as_ref()?;
        let first = match value {
            serde_json::Value::Array(ids) => ids.first()?,
            other => other,
        };
        first.as_u64().and_then(|id| u32::try_from(id).ok())
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |text: String| Err(SaeplayError::Config(text));
        if !matches!(self.model_type.as_str(), "llama" | "qwen2" | "mistral") {
            return bad(format!(
                "model_type `{}` is not a Llama-family model saeplay runs (llama, qwen2, mistral)",
                self.model_type
            ));
        }
        let bounded = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_WIDTH),
            ("num_key_value_heads", self.n_kv_heads(), MAX_WIDTH),
            ("head_dim", self.head_dim.unwrap_or(1), MAX_WIDTH),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_WIDTH,
            ),
        ];
        for (name, value, limit) in bounded {
            if value == 0 {
                return bad(format!("{name} must be at least 1"));
            }
            if value > limit {
                return bad(format!(
                    "{name} is {value}, more than the {limit} saeplay accepts"
                ));
            }
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size ({}) is not divisible by num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.n_kv_heads()) {
            return bad(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.n_kv_heads()
            ));
        }
        if self.num_attention_heads.saturating_mul(self.d_head()) > MAX_WIDTH {
            return bad("num_attention_heads x head_dim is too large".into());
        }
        if !self.d_head().is_multiple_of(2) {
            return bad(format!(
                "head_dim ({}) must be even for rotary embeddings",
                self.d_head()
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps must be a positive number".into());
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad("rope_theta must be a positive number".into());
        }
        if self.hidden_act != "silu" {
            return bad(format!(
                "hidden_act `{}` is not supported (Llama-family models use silu)",
                self.hidden_act
            ));
        }
        if self.mlp_bias {
            return bad("mlp_bias is not supported yet".into());
        }
        if let Some(factors) = &self.rope_freq_factors
            && (factors.len() != self.d_head() / 2
                || factors.iter().any(|f| !(f.is_finite() && *f > 0.0)))
        {
            return bad(format!(
                "rope_freqs holds {} factors; {} positive ones are needed",
                factors.len(),
                self.d_head() / 2
            ));
        }
        self.inv_freq()?;
        Ok(())
    }

    /// The rotary frequencies, one per pair of dimensions, with `rope_scaling` applied as
    /// transformers' `ROPE_INIT_FUNCTIONS` do (default, linear and llama3).
    pub fn inv_freq(&self) -> Result<Vec<f64>> {
        let dim = self.d_head();
        let mut inv_freq: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / dim as f64))
            .collect();
        if let Some(factors) = &self.rope_freq_factors {
            for (f, factor) in inv_freq.iter_mut().zip(factors) {
                *f /= f64::from(*factor);
            }
        }
        let Some(scaling) = self.rope_scaling.as_ref().filter(|v| !v.is_null()) else {
            return Ok(inv_freq);
        };
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let number = |key: &str| -> Result<f64> {
            scaling
                .get(key)
                .and_then(|v| v.as_f64())
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    SaeplayError::Config(format!(
                        "rope_scaling of type {kind} needs a positive number `{key}`"
                    ))
                })
        };
        match kind {
            "default" => {}
            "linear" => {
                let factor = number("factor")?;
                inv_freq.iter_mut().for_each(|f| *f /= factor);
            }
            "llama3" => {
                let factor = number("factor")?;
                let low = number("low_freq_factor")?;
                let high = number("high_freq_factor")?;
                let old_context = number("original_max_position_embeddings")?;
                if high <= low {
                    return Err(SaeplayError::Config(
                        "rope_scaling: high_freq_factor must be above low_freq_factor".into(),
                    ));
                }
                let low_wavelen = old_context / low;
                let high_wavelen = old_context / high;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old_context / wavelen - low) / (high - low);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
            other => {
                return Err(SaeplayError::Config(format!(
                    "rope_scaling of type `{other}` is not supported (default, linear and llama3 are)"
                )));
            }
        }
        Ok(inv_freq)
    }

    /// Number of parameters (a tied unembedding counted once).
    pub fn parameter_count(&self) -> usize {
        let d = self.hidden_size;
        let q = self.num_attention_heads * self.d_head();
        let kv = self.n_kv_heads() * self.d_head();
        let m = self.intermediate_size;
        let biases = self.biases();
        let mut block = 2 * d + d * q + 2 * d * kv + q * d + 3 * d * m;
        if biases.qkv {
            block += q + 2 * kv;
        }
        if biases.output {
            block += d;
        }
        let unembed = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + self.num_hidden_layers * block + d + unembed
    }

    pub fn dims(&self) -> ModelDims {
        ModelDims {
            family: Family::Llama,
            d_model: self.hidden_size,
            n_layers: self.num_hidden_layers,
            n_ctx: self.max_position_embeddings,
            d_vocab: self.vocab_size,
            n_heads: self.num_attention_heads,
            n_key_value_heads: self.n_kv_heads(),
            d_head: self.d_head(),
            d_mlp: self.intermediate_size,
            eos_token_id: self.eos(),
            parameter_count: self.parameter_count(),
        }
    }
}
