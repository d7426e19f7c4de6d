//! Language models: GPT-2 and the Llama family (Llama, Qwen2, SmolLM2) behind one [`Model`], with
//! their configs, weights (safetensors and GGUF), TransformerLens weight processing, hook points,
//! forward passes and generation.

pub mod dims;
pub mod files;
pub mod fixtures;
pub mod forward;
pub mod generate;
pub mod gpt2;
pub mod hooks;
pub mod llama;
pub mod readout;
pub mod transformer;

pub use crate::kernels::QuantisedMatrix;
pub use dims::{Family, ModelDims};
pub use forward::{ForwardOutput, KvCache, LogitsFor};
pub use generate::{Generation, SamplingConfig, Step, StopReason, greedy_tokens};
pub use gpt2::Gpt2;
pub use gpt2::config::Gpt2Config;
pub use gpt2::processing::WeightProcessing;
pub use gpt2::weights::{Gpt2Params, Gpt2Weights, ParamTensor, upload_params};
pub use hooks::{HookContext, HookFn, HookPoint, Hooks, Patch, PatchOp};
pub use llama::Llama;
pub use llama::config::LlamaConfig;
pub use llama::weights::LlamaWeights;
pub use transformer::Model;
