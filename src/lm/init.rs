//! GPT-2's initialisation for training from scratch.

use crate::io::tensors::HostTensor;
use crate::model::{Gpt2Config, Gpt2Weights};
use crate::rng::SplitMix64;

/// GPT-2's initialisation: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2 n_layer),
/// layer norms at identity, biases at zero.
pub fn init_weights(config: &Gpt2Config, seed: u64) -> Gpt2Weights {
    let mut rng = SplitMix64::new(seed ^ 0x5EED_1417);
    let residual_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
    let tensors = crate::model::gpt2::weights::expected_shapes(config)
        .into_iter()
        .map(|(name, shape)| {
            let count: usize = shape.iter().product();
            let values = if name.ends_with(".bias") {
                vec![0.0; count]
            } else if name.contains("ln_") {
                vec![1.0; count]
            } else {
                let std = if name.ends_with("c_proj.weight") {
                    residual_std
                } else {
                    0.02
                };
                (0..count).map(|_| std * rng.normal()).collect()
            };
            (name, HostTensor { shape, values })
        })
        .collect();
    Gpt2Weights {
        config: config.clone(),
        tensors,
    }
}
