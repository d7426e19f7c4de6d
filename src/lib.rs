//! saeplay: a sparse-autoencoder playground for small GPT models.
//!
//! The engine (model, tokenizer, formats) is platform-neutral and tested natively; the browser
//! glue lives in [`web`] (wasm only) and the page's state in [`ui`]. See ARCHITECTURE.md.

pub mod backend;
pub mod clock;
pub mod error;
pub mod io;
pub mod kernels;
pub mod lm;
pub mod memory;
pub mod model;
pub mod optim;
pub mod rng;
pub mod sae;
pub mod tinytales;
pub mod tokenizer;

pub use error::{Result, SaeplayError};
pub mod ui;
#[cfg(target_arch = "wasm32")]
pub mod web;
