//! saeplay: a sparse-autoencoder playground for small GPT models.
//!
//! The engine (model, tokenizer, formats) is platform-neutral and tested natively; the browser
//! glue lives in [`web`] (wasm only) and the page's state in [`ui`]. See ARCHITECTURE.md.

pub mod analysis;
pub mod backend;
pub mod bundle;
pub mod error;
pub mod fixtures;
pub mod model;
pub mod rng;
pub mod sae;
pub mod tinytales;
pub mod tokenizer;
pub mod train_model;
pub mod zip;

pub use error::{Result, SaeplayError};
pub mod ui;
#[cfg(target_arch = "wasm32")]
pub mod web;
