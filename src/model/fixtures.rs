//! Deterministic GPT-2 checkpoints made by the project itself, for tests and benchmarks: no
//! downloads anywhere.

use crate::model::files::ModelFiles;
use crate::model::{Gpt2Config, Gpt2Weights};
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
pub fn tiny_checkpoint(spec: &TinySpec) -> ModelFiles {
    let config = tiny_config(spec);
    let weights = Gpt2Weights::random(&config, spec.seed);
    ModelFiles {
        config_json: config.to_json().into_bytes(),
        safetensors: weights.to_safetensors(spec.with_prefix),
        tokenizer_json: Some(byte_level_bpe_json(&[]).into_bytes()),
    }
}
