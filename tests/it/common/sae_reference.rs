//! SAE references shared by the tests: random SAELens-shaped weights and direct f64
//! computations of every architecture's encode and decode.

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use saeplay::backend::{block_on, read_f32};
use saeplay::io::tensors::HostTensor;
use saeplay::rng::SplitMix64;
use saeplay::sae::{Architecture, SaeConfig};

pub fn random(n: usize, scale: f32, rng: &mut SplitMix64) -> Vec<f32> {
    (0..n).map(|_| rng.normal() * scale).collect()
}

pub fn host(shape: &[usize], values: Vec<f32>) -> HostTensor {
    HostTensor {
        shape: shape.to_vec(),
        values,
    }
}

pub fn config(architecture: Architecture, d_in: usize, d_sae: usize) -> SaeConfig {
    SaeConfig {
        architecture,
        d_in,
        d_sae,
        hook_name: "blocks.1.hook_resid_pre".into(),
        model_name: "test".into(),
        normalize_activations: Default::default(),
    }
}

/// Random weights for an architecture, with SAELens names and shapes.
pub fn random_weights(c: &SaeConfig, seed: u64) -> BTreeMap<String, HostTensor> {
    let mut rng = SplitMix64::new(seed);
    let mut w = BTreeMap::new();
    for (name, shape) in c.parameter_shapes() {
        let n: usize = shape.iter().product();
        let values = match name {
            "threshold" => (0..n).map(|_| rng.uniform() as f32 * 0.5).collect(),
            "r_mag" => random(n, 0.3, &mut rng),
            _ => random(n, 0.5, &mut rng),
        };
        w.insert(name.to_string(), host(&shape, values));
    }
    w
}

pub fn get<'a>(w: &'a BTreeMap<String, HostTensor>, name: &str) -> &'a [f32] {
    &w[name].values
}

/// Direct encode: f64 loops over the formulas in docs/product.md / the papers.
pub fn reference_encode(c: &SaeConfig, w: &BTreeMap<String, HostTensor>, x: &[f32]) -> Vec<f64> {
    let (d, m) = (c.d_in, c.d_sae);
    let n = x.len() / d;
    let w_enc = get(w, "W_enc");
    let b_dec = get(w, "b_dec");
    let mut out = vec![0.0; n * m];
    for r in 0..n {
        let centred: Vec<f64> = (0..d)
            .map(|j| f64::from(x[r * d + j]) - f64::from(b_dec[j]))
            .collect();
        let dot = |i: usize, scale: f64| -> f64 {
            (0..d)
                .map(|j| centred[j] * f64::from(w_enc[j * m + i]) * scale)
                .sum()
        };
        let row = &mut out[r * m..(r + 1) * m];
        match c.architecture {
            Architecture::Gated => {
                for (i, v) in row.iter_mut().enumerate() {
                    let gate = dot(i, 1.0) + f64::from(get(w, "b_gate")[i]);
                    let mag =
                        dot(i, f64::from(get(w, "r_mag")[i]).exp()) + f64::from(get(w, "b_mag")[i]);
                    *v = if gate > 0.0 { mag.max(0.0) } else { 0.0 };
                }
            }
            _ => {
                let pre: Vec<f64> = (0..m)
                    .map(|i| dot(i, 1.0) + f64::from(get(w, "b_enc")[i]))
                    .collect();
                match c.architecture {
                    Architecture::Standard => {
                        for i in 0..m {
                            row[i] = pre[i].max(0.0);
                        }
                    }
                    Architecture::TopK { k } => {
                        let mut order: Vec<usize> = (0..m).collect();
                        order.sort_by(|&a, &b| pre[b].total_cmp(&pre[a]));
                        for &i in &order[..k] {
                            row[i] = pre[i].max(0.0);
                        }
                    }
                    Architecture::JumpRelu
                    | Architecture::BatchTopK { .. }
                    | Architecture::MatryoshkaBatchTopK { .. } => {
                        let threshold = get(w, "threshold");
                        for i in 0..m {
                            if pre[i] > f64::from(threshold[i]) {
                                row[i] = pre[i].max(0.0);
                            }
                        }
                    }
                    Architecture::Gated => unreachable!(),
                }
            }
        }
    }
    out
}

pub fn reference_decode(c: &SaeConfig, w: &BTreeMap<String, HostTensor>, f: &[f64]) -> Vec<f64> {
    let (d, m) = (c.d_in, c.d_sae);
    let n = f.len() / m;
    let (w_dec, b_dec) = (get(w, "W_dec"), get(w, "b_dec"));
    let mut out = vec![0.0; n * d];
    for r in 0..n {
        for j in 0..d {
            out[r * d + j] = f64::from(b_dec[j])
                + (0..m)
                    .map(|i| f[r * m + i] * f64::from(w_dec[i * d + j]))
                    .sum::<f64>();
        }
    }
    out
}

pub fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0.0, f64::max)
}

pub fn read2(t: Tensor<2>) -> Vec<f32> {
    block_on(read_f32(t)).unwrap()
}

pub const ALL_ARCHITECTURES: [Architecture; 6] = [
    Architecture::Standard,
    Architecture::TopK { k: 3 },
    Architecture::BatchTopK { k: 3 },
    Architecture::Gated,
    Architecture::JumpRelu,
    Architecture::MatryoshkaBatchTopK { k: 3 },
];

pub fn weights_file(w: &BTreeMap<String, HostTensor>) -> Vec<u8> {
    saeplay::io::tensors::write_safetensors(
        w.iter()
            .map(|(n, t)| (n.as_str(), t.shape.as_slice(), t.values.as_slice())),
    )
}
