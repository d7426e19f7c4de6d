//! What a forward returns: logits for the positions asked for, and what was captured.

use burn::tensor::Tensor;

use crate::model::hooks::HookPoint;

/// Which positions get logits: all (analysis) or the last only (generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    AllPositions,
    LastPosition,
}

/// Activations captured by a forward, in the order it reached them.
pub type Captured = Vec<(HookPoint, Tensor<3>)>;

pub struct ForwardOutput {
    /// `[batch, pos, vocab]`, or `[batch, 1, vocab]` with [`LogitsFor::LastPosition`].
    pub logits: Tensor<3>,
    /// Captured activations in the order the forward reached them, each `[batch, pos, d]`.
    pub captured: Vec<(HookPoint, Tensor<3>)>,
}

impl ForwardOutput {
    pub fn activation(&self, hook: HookPoint) -> Option<&Tensor<3>> {
        self.captured
            .iter()
            .find(|(h, _)| *h == hook)
            .map(|(_, t)| t)
    }
}
