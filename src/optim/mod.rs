//! The optimiser both trainers use (the language model in [`crate::lm`] and SAEs in
//! [`crate::sae::train`]): one Adam/AdamW, one learning-rate schedule, one checkpoint layout for
//! the moments.

pub mod adam;
pub mod checkpoint;
pub mod schedule;

pub use adam::{Adam, AdamStep, AdamValue, Moments, clip_scale};
pub use schedule::{LrSchedule, Schedule};
