//! Where training batches come from.

use crate::error::{Result, SaeplayError};
use crate::rng::SplitMix64;
use crate::sae::store::ActivationStore;

/// Where training batches come from: a live store, or activations captured earlier.
pub trait BatchSource {
    /// The next `n` vectors, row-major `[n, d_in]`.
    fn next_batch(&mut self, n: usize) -> impl std::future::Future<Output = Result<Vec<f32>>>;
    /// Vectors handed out so far, where replaying that many gives the same next batch (`None`
    /// for a source that cannot be replayed, such as the model streaming text).
    fn rows_served(&self) -> Option<u64> {
        None
    }
}

impl BatchSource for ActivationStore {
    async fn next_batch(&mut self, n: usize) -> Result<Vec<f32>> {
        let mut batches = ActivationStore::next_batch(self, n).await?;
        Ok(batches.swap_remove(0))
    }
}

/// Captured activations in memory, served in a fresh random order each pass.
pub struct CapturedActivations {
    values: Vec<f32>,
    width: usize,
    order: Vec<usize>,
    cursor: usize,
    rng: SplitMix64,
    served: u64,
}

impl CapturedActivations {
    pub fn new(values: Vec<f32>, width: usize, seed: u64) -> Result<Self> {
        if width == 0 || values.is_empty() || !values.len().is_multiple_of(width) {
            return Err(SaeplayError::InvalidSetting(format!(
                "captured activations must be whole rows of {width} numbers"
            )));
        }
        let rows = values.len() / width;
        Ok(Self {
            values,
            width,
            order: (0..rows).collect(),
            cursor: rows,
            rng: SplitMix64::new(seed),
            served: 0,
        })
    }

    pub fn rows(&self) -> usize {
        self.order.len()
    }

    /// The next row's index, shuffling again at the start of each pass (Fisher-Yates).
    fn next_row(&mut self) -> usize {
        if self.cursor == self.order.len() {
            for i in (1..self.order.len()).rev() {
                let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
                self.order.swap(i, j);
            }
            self.cursor = 0;
        }
        self.cursor += 1;
        self.served += 1;
        self.order[self.cursor - 1]
    }

    /// Hand out `rows` rows without copying them: where a resumed run picks up.
    pub fn skip(&mut self, rows: u64) {
        for _ in 0..rows {
            self.next_row();
        }
    }
}

impl BatchSource for CapturedActivations {
    async fn next_batch(&mut self, n: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(n * self.width);
        for _ in 0..n {
            let row = self.next_row();
            out.extend_from_slice(&self.values[row * self.width..(row + 1) * self.width]);
        }
        Ok(out)
    }

    fn rows_served(&self) -> Option<u64> {
        Some(self.served)
    }
}
