//! Language models: GPT-2 and the Llama family (Llama, Qwen2, SmolLM2) behind one [`Model`], with
//! their configs, weights (safetensors and GGUF), TransformerLens weight processing, hook points,
//! forward passes and generation.

pub mod config;
pub mod dims;
pub mod files;
pub mod fixtures;
pub mod generate;
pub mod gguf_model;
pub mod gpt2;
pub mod hooks;
mod host_gpt2;
mod host_llama;
pub(crate) mod host_ops;
pub mod llama;
pub mod llama_config;
pub mod llama_weights;
pub mod processing;
pub mod quantised;
pub mod readout;
pub mod transformer;
pub mod weights;

pub use config::Gpt2Config;
pub use dims::{Family, ModelDims};
pub use generate::{Generation, SamplingConfig, Step, StopReason, greedy_tokens};
pub use gpt2::{Gpt2, Gpt2Params, ParamTensor, upload_params};
pub use hooks::{HookContext, HookFn, HookPoint, Hooks, Patch, PatchOp};
pub use llama::Llama;
pub use llama_config::LlamaConfig;
pub use llama_weights::LlamaWeights;
pub use processing::WeightProcessing;
pub use quantised::QuantisedMatrix;
pub use transformer::{ForwardOutput, KvCache, LogitsFor, Model};
pub use weights::Gpt2Weights;
