//! The learning-rate schedule of both trainers: linear warm-up from `peak / warmup`, then constant
//! or cosine decay to `end` at the last step.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The peak learning rate after warm-up.
    Constant,
    /// Cosine decay to the floor.
    #[default]
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub kind: LrSchedule,
    pub peak: f64,
    /// The cosine's floor (ignored by `Constant`).
    pub end: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    /// The learning rate at `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            LrSchedule::Constant => self.peak,
            LrSchedule::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let done = (step - self.warmup_steps).min(span) as f64 / span as f64;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
                self.end + (self.peak - self.end) * cosine
            }
        }
    }
}
