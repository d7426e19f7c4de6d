//! The integration tests, one binary (rust-analyzer's layout: one link of the engine, not one per
//! file). Each file is a module named by what it tests; `common` holds the shared references.
//!
//! Tiers (docs/testing.md): `cargo test` runs the fast tier; tests marked
//! `#[ignore = "slow: ..."]` (GPT-2-scale, SmolLM2, wgpu on lavapipe) run with
//! `cargo test -- --include-ignored`, as `scripts/test.sh` does.

mod common;

mod bad_input;
mod builtin_model;
mod circuits;
mod cli;
mod forward;
mod generate;
mod gpt2_small_scale;
mod llama;
mod lm_training;
mod mutated_inputs;
mod page_state;
mod sae_engine;
mod sae_files;
mod sae_normalization;
mod smollm2;
mod ui;
mod weight_processing;
mod worker;
