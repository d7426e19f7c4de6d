//! The GPT-2 model: config, weights, TransformerLens weight processing, hook points, forward pass
//! and generation.

pub mod config;
pub mod files;
pub mod fixtures;
pub mod generate;
pub mod gpt2;
pub mod hooks;
pub mod processing;
pub mod readout;
pub mod weights;

pub use config::Gpt2Config;
pub use generate::{Generation, SamplingConfig, Step, StopReason};
pub use gpt2::{ForwardOutput, Gpt2, Gpt2Params, KvCache, LogitsFor, ParamTensor, upload_params};
pub use hooks::{HookContext, HookFn, HookPoint, Hooks, Patch, PatchOp};
pub use processing::WeightProcessing;
pub use weights::Gpt2Weights;
