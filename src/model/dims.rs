//! The shape of a model as everything above the forward sees it, whatever its family: the names
//! are TransformerLens's `HookedTransformerConfig` fields.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, SaeplayError};

/// The largest vocabulary accepted (the largest in use are about 256k tokens).
pub const MAX_VOCAB: usize = 1 << 22;
/// The largest width or context accepted (n_embd, n_inner, n_positions).
pub const MAX_WIDTH: usize = 1 << 20;
/// The most layers accepted.
pub const MAX_LAYERS: usize = 1024;

/// Which forward a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// GPT-2: learned positions, LayerNorm, GELU MLP.
    Gpt2,
    /// Llama, Qwen2, SmolLM2 and kin: rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention.
    Llama,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gpt2 => "GPT-2",
            Self::Llama => "Llama",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelDims {
    pub family: Family,
    pub d_model: usize,
    pub n_layers: usize,
    /// Longest sequence the model takes.
    pub n_ctx: usize,
    pub d_vocab: usize,
    pub n_heads: usize,
    /// Heads of keys and values (fewer than `n_heads` with grouped-query attention).
    pub n_key_value_heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub eos_token_id: Option<u32>,
    pub parameter_count: usize,
}

impl ModelDims {
    /// Whether the model has learned position embeddings (`hook_pos_embed`).
    pub fn has_pos_embed(&self) -> bool {
        self.family == Family::Gpt2
    }

    /// One line for `saeplay info` and the page.
    pub fn describe(&self) -> String {
        let kv = if self.n_key_value_heads == self.n_heads {
            String::new()
        } else {
            format!(" ({} key/value)", self.n_key_value_heads)
        };
        format!(
            "{}: {} layers, d_model {}, {} heads{kv} of {}, d_mlp {}, context {}, vocabulary {}",
            self.family.name(),
            self.n_layers,
            self.d_model,
            self.n_heads,
            self.d_head,
            self.d_mlp,
            self.n_ctx,
            self.d_vocab
        )
    }
}

/// A family's `config.json` read, then checked by the family's `validate`.
pub(crate) fn config_from_json<C: DeserializeOwned>(
    bytes: &[u8],
    validate: impl FnOnce(&C) -> Result<()>,
) -> Result<C> {
    let config: C =
        serde_json::from_slice(bytes).map_err(|error| SaeplayError::Config(error.to_string()))?;
    validate(&config)?;
    Ok(config)
}

/// A family's config as `config.json` text.
pub(crate) fn config_to_json(config: &impl Serialize) -> String {
    serde_json::to_string_pretty(config).expect("a config always serialises")
}
