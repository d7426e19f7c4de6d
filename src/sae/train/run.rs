//! The training loop: steps until finished, with progress that can pause or stop.

use serde::{Deserialize, Serialize};

use super::sources::BatchSource;
use super::trainer::{SaeTrainer, StepStats};
use crate::error::Result;

/// What a progress callback sees after each step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub stats: StepStats,
    pub total_steps: usize,
    /// Training vectors per second over the run so far (activation capture included).
    pub vectors_per_second: f64,
    pub elapsed_seconds: f64,
    pub seconds_left: f64,
}

/// What a progress callback asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Return now; calling [`run`] again resumes.
    Pause,
    /// Return now and train no further.
    Stop,
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Finished,
    Paused,
    Stopped,
}

/// Train until finished, or until `on_step` asks to pause or stop. `now` gives seconds from
/// any fixed origin (the page passes `performance.now() / 1000`).
pub async fn run(
    trainer: &mut SaeTrainer,
    source: &mut impl BatchSource,
    now: &dyn Fn() -> f64,
    on_step: &mut dyn FnMut(&Progress) -> Control,
) -> Result<RunOutcome> {
    let start = now();
    let start_tokens = trainer.tokens_seen;
    while !trainer.is_finished() {
        let batch = source.next_batch(trainer.config.batch_size).await?;
        let stats = trainer.train_step(&batch).await?;
        let elapsed = (now() - start).max(1e-9);
        let vectors_per_second = (trainer.tokens_seen - start_tokens) as f64 / elapsed;
        let steps_left = trainer.total_steps().saturating_sub(trainer.step);
        let progress = Progress {
            stats,
            total_steps: trainer.total_steps(),
            vectors_per_second,
            elapsed_seconds: elapsed,
            seconds_left: steps_left as f64 * trainer.config.batch_size as f64
                / vectors_per_second.max(1e-9),
        };
        match on_step(&progress) {
            Control::Continue => {}
            Control::Pause => return Ok(RunOutcome::Paused),
            Control::Stop => return Ok(RunOutcome::Stopped),
        }
    }
    Ok(RunOutcome::Finished)
}
