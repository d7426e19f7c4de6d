//! Deterministic GPT-2 and Llama checkpoints made by the project itself, for tests and
//! benchmarks: no downloads anywhere.

use crate::model::files::HfFiles;
use crate::model::{Gpt2Config, Gpt2Weights, LlamaConfig, LlamaWeights};
use crate::tokenizer::byte_level_bpe_json;

/// The shape of a generated checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct TinySpec {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_positions: usize,
    /// Extra vocabulary rows beyond the tokenizer's 257 tokens (models often pad the vocabulary).
    pub vocab_padding: usize,
    pub seed: u64,
    pub with_prefix: bool,
}

impl TinySpec {
    /// GPT-2 small's shapes (openai-community/gpt2: 12 layers, 768 wide, 12 heads, 1,024
    /// positions, 50,257 tokens, keys stored with the `transformer.` prefix), random weights.
    pub const GPT2_SMALL: TinySpec = TinySpec {
        n_layer: 12,
        n_embd: 768,
        n_head: 12,
        n_positions: 1024,
        vocab_padding: 50_257 - 257,
        seed: 7,
        with_prefix: true,
    };
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            n_layer: 2,
            n_embd: 32,
            n_head: 4,
            n_positions: 64,
            vocab_padding: 0,
            seed: 1,
            with_prefix: false,
        }
    }
}

/// Tokens in the generated tokenizer: 256 bytes plus `<|endoftext|>`.
pub const TINY_TOKENIZER_VOCAB: usize = 257;

pub fn tiny_config(spec: &TinySpec) -> Gpt2Config {
    let mut config = Gpt2Config::new(
        TINY_TOKENIZER_VOCAB + spec.vocab_padding,
        spec.n_positions,
        spec.n_embd,
        spec.n_layer,
        spec.n_head,
    );
    config.eos_token_id = Some(256);
    config.bos_token_id = Some(256);
    config
}

/// A random-weight GPT-2 with a byte-level tokenizer, as the three Hugging Face files.
pub fn tiny_checkpoint(spec: &TinySpec) -> HfFiles {
    let config = tiny_config(spec);
    let weights = Gpt2Weights::random(&config, spec.seed);
    HfFiles {
        config_json: config.to_json().into_bytes(),
        shards: vec![weights.to_safetensors(spec.with_prefix)],
        tokenizer_json: Some(byte_level_bpe_json(&[]).into_bytes()),
    }
}

/// The shape of a generated Llama-family checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct LlamaSpec {
    pub layers: usize,
    pub d_model: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub d_mlp: usize,
    pub n_ctx: usize,
    pub vocab_padding: usize,
    pub tied: bool,
    /// Qwen2: biases on q, k and v.
    pub qwen2: bool,
    pub seed: u64,
}

impl Default for LlamaSpec {
    fn default() -> Self {
        Self {
            layers: 2,
            d_model: 48,
            heads: 6,
            kv_heads: 2,
            d_mlp: 80,
            n_ctx: 64,
            vocab_padding: 0,
            tied: false,
            qwen2: false,
            seed: 1,
        }
    }
}

impl LlamaSpec {
    /// SmolLM2-135M's shapes (30 layers, 576 wide, 9 heads over 3 key/value heads, MLP 1,536,
    /// vocabulary 49,152, tied), random weights.
    pub const SMOLLM2_135M: LlamaSpec = LlamaSpec {
        layers: 30,
        d_model: 576,
        heads: 9,
        kv_heads: 3,
        d_mlp: 1536,
        n_ctx: 2048,
        vocab_padding: 49_152 - TINY_TOKENIZER_VOCAB,
        tied: true,
        qwen2: false,
        seed: 7,
    };
}

pub fn tiny_llama_config(spec: &LlamaSpec) -> LlamaConfig {
    let mut config = LlamaConfig::new(
        TINY_TOKENIZER_VOCAB + spec.vocab_padding,
        spec.d_model,
        spec.d_mlp,
        spec.layers,
        spec.heads,
        spec.kv_heads,
    );
    config.max_position_embeddings = spec.n_ctx;
    config.tie_word_embeddings = spec.tied;
    config.eos_token_id = Some(256.into());
    config.bos_token_id = Some(256.into());
    if spec.qwen2 {
        config.model_type = "qwen2".into();
        config.extra.insert(
            "architectures".into(),
            serde_json::json!(["Qwen2ForCausalLM"]),
        );
    }
    config
}

/// A random-weight Llama-family model with a byte-level tokenizer, as Hugging Face files.
pub fn tiny_llama_checkpoint(spec: &LlamaSpec) -> HfFiles {
    let config = tiny_llama_config(spec);
    let weights = LlamaWeights::random(&config, spec.seed);
    HfFiles {
        config_json: config.to_json().into_bytes(),
        shards: vec![weights.to_safetensors()],
        tokenizer_json: Some(byte_level_bpe_json(&[]).into_bytes()),
    }
}
