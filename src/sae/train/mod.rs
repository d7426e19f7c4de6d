//! Training an SAE on batches of activations.
//!
//! The recipe ([`SaeTrainingConfig`]) is everything needed to train the same SAE again: it is
//! saved beside the SAE and carried by shared links. The trainer works one step at a time
//! ([`SaeTrainer::train_step`]), so the page can drive it between frames; [`run`] drives it with a
//! progress callback that can pause or stop.
//!
//! Inputs are scaled by a factor `s` so that their mean norm is `sqrt(d_in)` (SAELens's
//! `expected_average_only_in`); the SAE the trainer hands out has `s` folded into its weights
//! (`W_enc * s`, `W_dec / s`, `b_dec / s`), so it reads and writes the model's own scale.
//!
//! - `recipe.rs`: [`SaeTrainingConfig`], the recipe, and its schedules.
//! - `trainer.rs`: [`SaeTrainer`], a step on host buffers or burn's ops, and initialisation.
//! - `checkpoint.rs`: [`TrainerCheckpoint`], saving and resuming a trainer exactly.
//! - `sources.rs`: [`BatchSource`], a live store or [`CapturedActivations`].
//! - `run.rs`: [`run`], the loop with progress, pause and stop.

mod checkpoint;
mod recipe;
mod run;
mod sources;
mod trainer;

pub use crate::optim::LrSchedule;
pub use checkpoint::TrainerCheckpoint;
pub use recipe::{DecoderBiasInit, MAX_MATRYOSHKA_LEVELS, SaeTrainingConfig};
pub use run::{Control, Progress, RunOutcome, run};
pub use sources::{BatchSource, CapturedActivations};
pub use trainer::{SaeTrainer, StepStats};
