//! The language model's own training: TinyTales data, GPT-2 initialisation, the trainer (AdamW
//! from [`crate::optim`]), a resumable run in a directory, and evaluation by the world's rules.

pub mod data;
pub mod eval;
pub mod init;
#[cfg(not(target_arch = "wasm32"))]
pub mod run;
pub mod trainer;

pub use data::{sample_rows, tokenize_stories};
pub use eval::{ModelEvalReport, evaluate_model};
pub use init::init_weights;
pub use trainer::{
    ModelTrainer, ModelTrainingConfig, StepReport, TrainerState, language_model_loss,
};
