//! Adam with decoupled weight decay (AdamW, as nanoGPT and PyTorch define it) and global-norm
//! clipping. Moments live on the plain (non-autodiff) device; every update builds new tensors,
//! so a caller can check them before keeping them.

use std::collections::BTreeMap;
use std::ops::{Add, Div};

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

    /// The constants of step `step` (0-based), bias corrections included.
    pub fn at(&self, step: usize) -> AdamStep {
        let t = (step + 1) as i32;
        AdamStep {
            beta1: self.beta1,
            beta2: self.beta2,
            first_correction: 1.0 - self.beta1.powi(t),
            second_correction: 1.0 - self.beta2.powi(t),
            epsilon: self.epsilon,
        }
    }

    /// One update of `param` (plain tensor) with `grad` and its `(first, second)` moments at
    /// step `step` (0-based): returns the new parameter and moments. `weight_decay` is
    /// decoupled: `p -= lr * (adam_step + decay * p)`.
    pub fn update<const D: usize>(
        &self,
        param: Tensor<D>,
        grad: Tensor<D>,
        (first, second): (Tensor<D>, Tensor<D>),
        step: usize,
        learning_rate: f64,
        weight_decay: f64,
    ) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
        let at = self.at(step);
        let (first, second) = at.moments(grad, first, second);
        let adam_step = at.direction(first.clone(), second.clone());
        // No decay term at all when there is none: SAE training would pay a full-size op for it.
        let param = if weight_decay == 0.0 {
            param - adam_step * learning_rate
        } else {
            param.clone() - (adam_step + param * weight_decay) * learning_rate
        };
        (param, first, second)
    }
}

/// Adam's constants at one step. Its arithmetic is written once, over [`AdamValue`], for
/// burn tensors (the GPU path, the model's trainer) and single `f32`s (the CPU path's loops
/// over host buffers, which compile to vector arithmetic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    beta1: f64,
    beta2: f64,
    first_correction: f64,
    second_correction: f64,
    epsilon: f64,
}

impl AdamStep {
    /// The `(first, second)` moments moved on by `grad`.
    #[inline]
    pub fn moments<T: AdamValue>(&self, grad: T, first: T, second: T) -> (T, T) {
        let first = first.times(self.beta1) + grad.clone().times(1.0 - self.beta1);
        let second = second.times(self.beta2) + grad.squared().times(1.0 - self.beta2);
        (first, second)
    }

    /// The step before the learning rate, from the moved moments: `m^ / (sqrt(v^) + eps)`.
    #[inline]
    pub fn direction<T: AdamValue>(&self, first: T, second: T) -> T {
        first.over(self.first_correction)
            / second
                .over(self.second_correction)
                .square_root()
                .plus(self.epsilon)
    }
}

/// What Adam's arithmetic asks of a value (a tensor, or one `f32`); scalars come as `f64`.
pub trait AdamValue: Clone + Add<Output = Self> + Div<Output = Self> {
    fn times(self, by: f64) -> Self;
    fn over(self, by: f64) -> Self;
    fn plus(self, by: f64) -> Self;
    fn squared(self) -> Self;
    fn square_root(self) -> Self;
}

impl<const D: usize> AdamValue for Tensor<D> {
    fn times(self, by: f64) -> Self {
        self * by
    }
    fn over(self, by: f64) -> Self {
        self / by
    }
    fn plus(self, by: f64) -> Self {
        self + by
    }
    fn squared(self) -> Self {
        self.powi_scalar(2)
    }
    fn square_root(self) -> Self {
        self.sqrt()
    }
}

impl AdamValue for f32 {
    #[inline]
    fn times(self, by: f64) -> Self {
        self * by as f32
    }
    #[inline]
    fn over(self, by: f64) -> Self {
        self / by as f32
    }
    #[inline]
    fn plus(self, by: f64) -> Self {
        self + by as f32
    }
    #[inline]
    fn squared(self) -> Self {
        self * self
    }
    #[inline]
    fn square_root(self) -> Self {
        self.sqrt()
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
