//! Adam with decoupled weight decay (AdamW, as nanoGPT and PyTorch define it) and global-norm
//! clipping. Moments live on the plain (non-autodiff) device; every update builds new tensors,
//! so a caller can check them before keeping them.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

/// Adam's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

impl Adam {
    pub fn new(beta1: f64, beta2: f64) -> Self {
        Self {
            beta1,
            beta2,
            epsilon: 1e-8,
        }
    }

    /// One update of `param` (plain tensor) with `grad` and its `(first, second)` moments at
    /// step `step` (0-based): returns the new parameter and moments. `weight_decay` is decoupled: `p -= lr * (adam_step + decay * p)`.
    pub fn update<const D: usize>(
        &self,
        param: Tensor<D>,
        grad: Tensor<D>,
        (first, second): (Tensor<D>, Tensor<D>),
        step: usize,
        learning_rate: f64,
        weight_decay: f64,
    ) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
        let t = (step + 1) as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let first = first * b1 + grad.clone() * (1.0 - b1);
        let second = second * b2 + grad.powi_scalar(2) * (1.0 - b2);
        let adam_step = (first.clone() / c1) / ((second.clone() / c2).sqrt() + self.epsilon);
        // No decay term at all when there is none: SAE training would pay a full-size op for it.
        let param = if weight_decay == 0.0 {
            param - adam_step * learning_rate
        } else {
            param.clone() - (adam_step + param * weight_decay) * learning_rate
        };
        (param, first, second)
    }
}

/// First and second moments by parameter name.
#[derive(Debug, Clone)]
pub struct Moments<K: Ord, T> {
    pub first: BTreeMap<K, T>,
    pub second: BTreeMap<K, T>,
}

impl<K: Ord, T> Default for Moments<K, T> {
    fn default() -> Self {
        Self {
            first: BTreeMap::new(),
            second: BTreeMap::new(),
        }
    }
}

/// The factor that scales gradients of global norm `grad_norm` down to at most `max_norm`.
pub fn clip_scale(grad_norm: f32, max_norm: f64) -> f64 {
    if f64::from(grad_norm) > max_norm {
        max_norm / f64::from(grad_norm)
    } else {
        1.0
    }
}
