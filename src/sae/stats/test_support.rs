//! Helpers shared by the stats modules' unit tests: a seeded test-data generator and small
//! comparisons.

use crate::rng::mix64;

/// A seeded generator for test data: hashes a counter with [`mix64`] (counter-mode, stepping
/// the state by 1 rather than SplitMix64's constant, so not the [`crate::rng::SplitMix64`]
/// stream; kept as-is so the tests' random data stays exactly what it was).
pub(super) struct TestRng(pub(super) u64);

impl TestRng {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix64(self.0)
    }
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
    pub(super) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

pub(super) fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

/// Column `feature` of a row-major `[_, d_sae]` matrix.
pub(super) fn column(acts: &[f32], d_sae: usize, feature: usize) -> Vec<f32> {
    acts.iter().skip(feature).step_by(d_sae).copied().collect()
}
