//! Deterministic random SAEs made by the project itself, for tests and benchmarks at any size
//! (a GPT-2-small-sized 24,576-latent one included): no downloads anywhere.

use std::collections::BTreeMap;

use super::SaeConfig;
use super::arch::{W_DEC, W_ENC};
use crate::io::tensors::HostTensor;
use crate::rng::SplitMix64;

/// Random unit decoder rows with the encoder their transpose (SAELens's initialisation), zero
/// biases, thresholds and gates: each feature fires on the direction it writes.
pub fn random_sae_weights(config: &SaeConfig, seed: u64) -> BTreeMap<String, HostTensor> {
    let (d_in, d_sae) = (config.d_in, config.d_sae);
    let mut rng = SplitMix64::new(seed);
    let mut w_dec: Vec<f32> = (0..d_sae * d_in).map(|_| rng.normal()).collect();
    for row in w_dec.chunks_exact_mut(d_in) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let mut w_enc = vec![0.0f32; d_in * d_sae];
    for i in 0..d_sae {
        for j in 0..d_in {
            w_enc[j * d_sae + i] = w_dec[i * d_in + j];
        }
    }
    let mut out = BTreeMap::new();
    for (name, shape) in config.parameter_shapes() {
        let values = match name {
            W_DEC => std::mem::take(&mut w_dec),
            W_ENC => std::mem::take(&mut w_enc),
            _ => vec![0.0; shape.iter().product()],
        };
        out.insert(name.to_string(), HostTensor { shape, values });
    }
    out
}
