//! SAELens's `normalize_activations` against direct computation, for every architecture:
//! `layer_norm` (standardise each token, invert on the reconstruction, scale steering) and
//! `expected_average_only_in` (a constant folded into the weights at load).
use crate::common;



use std::collections::BTreeMap;

use crate::common::sae_reference::*;
use saeplay::backend::{block_on, cpu_device, float_tensor, read_f32};
use saeplay::io::tensors::HostTensor;
use saeplay::model::fixtures::TinySpec;
use saeplay::model::{HookPoint, Hooks, LogitsFor};
use saeplay::rng::SplitMix64;
use saeplay::sae::saelens::{Provenance, SaeFiles, write_sae};
use saeplay::sae::steer::{Intervention, InterventionMode, intervention_patch};
use saeplay::sae::{ActivationNormalization, Architecture, SaeConfig};

fn files(c: &SaeConfig, w: &BTreeMap<String, HostTensor>, extra: serde_json::Value) -> SaeFiles {
    let mut cfg = serde_json::json!({
        "architecture": if matches!(c.architecture, Architecture::BatchTopK { .. }) {
            "jumprelu"
        } else {
            c.architecture.name()
        },
        "d_in": c.d_in, "d_sae": c.d_sae, "dtype": "float32", "k": c.architecture.k(),
        "metadata": {"hook_name": c.hook_name, "model_name": "test", "sae_lens_version": "6.5.0"},
    });
    for (key, value) in extra.as_object().unwrap() {
        cfg[key] = value.clone();
    }
    SaeFiles {
        cfg: serde_json::to_vec(&cfg).unwrap(),
        weights: weights_file(w),
        ..SaeFiles::default()
    }
}

/// SAELens's layer_norm in f64: `(x - mean) / (std + 1e-5)` with Bessel's correction; returns
/// the normalised rows and each row's (mean, std).
fn standardise(x: &[f32], d: usize) -> (Vec<f32>, Vec<(f64, f64)>) {
    let mut out = Vec::with_capacity(x.len());
    let mut stats = Vec::new();
    for row in x.chunks(d) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / (d - 1) as f64;
        let std = var.sqrt();
        out.extend(
            row.iter()
                .map(|&v| ((f64::from(v) - mean) / (std + 1e-5)) as f32),
        );
        stats.push((mean, std));
    }
    (out, stats)
}

/// A batch whose rows have different offsets and scales, as residual streams do.
fn uneven_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let mut x = Vec::with_capacity(n * d);
    for r in 0..n {
        let (offset, scale) = (r as f32 - 2.0, 0.5 + r as f32);
        x.extend((0..d).map(|_| offset + scale * rng.normal()));
    }
    x
}

#[test]
fn layer_norm_sae_standardises_each_token_and_maps_its_reconstruction_back() {
    let device = cpu_device();
    let (d, m, n) = (8, 24, 6);
    let x = uneven_rows(n, d, 1);
    let (normalised, stats) = standardise(&x, d);
    for architecture in ALL_ARCHITECTURES {
        let mut c = config(architecture, d, m);
        let w = random_weights(&c, 7);
        let host = files(
            &c,
            &w,
            serde_json::json!({"normalize_activations": "layer_norm"}),
        )
        .parse()
        .unwrap();
        assert_eq!(
            host.config.normalize_activations,
            ActivationNormalization::LayerNorm
        );
        if let Architecture::BatchTopK { .. } = architecture {
            c.architecture = Architecture::JumpRelu; // read back as SAELens saves it
        }
        let sae = host.upload(&device).unwrap();
        let xt = float_tensor(x.clone(), [n, d], &device);
        let expected_f = reference_encode(&c, &w, &normalised);
        let f = read2(sae.encode(xt.clone()));
        assert!(max_diff(&f, &expected_f) < 1e-4, "{architecture:?} encode");
        let f_async = read2(block_on(sae.encode_async(xt.clone())).unwrap());
        assert!(max_diff(&f_async, &expected_f) < 1e-4, "{architecture:?}");
        // The reconstruction is decoded in normalised units, then `* std + mean`.
        let decoded = reference_decode(&c, &w, &expected_f);
        let expected_hat: Vec<f64> = decoded
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (mean, std) = stats[i / d];
                v * std + mean
            })
            .collect();
        let (acts, hat) = sae.encode_and_reconstruct(xt.clone());
        assert!(max_diff(&read2(acts), &expected_f) < 1e-4);
        assert!(
            max_diff(&read2(hat), &expected_hat) < 1e-4,
            "{architecture:?}"
        );
        assert!(max_diff(&read2(sae.reconstruct(xt)), &expected_hat) < 1e-4);
    }
}

#[test]
fn constant_norm_rescale_scales_each_token_to_norm_sqrt_d_and_back() {
    let device = cpu_device();
    let (d, m, n) = (8, 24, 6);
    let x = uneven_rows(n, d, 4);
    let factors: Vec<f64> = x
        .chunks(d)
        .map(|row| {
            (d as f64).sqrt()
                / row
                    .iter()
                    .map(|&v| f64::from(v).powi(2))
                    .sum::<f64>()
                    .sqrt()
        })
        .collect();
    let rescaled: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| (f64::from(v) * factors[i / d]) as f32)
        .collect();
    for architecture in ALL_ARCHITECTURES {
        let mut c = config(architecture, d, m);
        let w = random_weights(&c, 9);
        let host = files(
            &c,
            &w,
            serde_json::json!({"normalize_activations": "constant_norm_rescale"}),
        )
        .parse()
        .unwrap();
        if let Architecture::BatchTopK { .. } = architecture {
            c.architecture = Architecture::JumpRelu;
        }
        let sae = host.upload(&device).unwrap();
        let xt = float_tensor(x.clone(), [n, d], &device);
        let expected_f = reference_encode(&c, &w, &rescaled);
        let expected_hat: Vec<f64> = reference_decode(&c, &w, &expected_f)
            .iter()
            .enumerate()
            .map(|(i, v)| v / factors[i / d])
            .collect();
        assert!(
            max_diff(&read2(sae.encode(xt.clone())), &expected_f) < 1e-4,
            "{architecture:?}"
        );
        assert!(
            max_diff(&read2(sae.reconstruct(xt)), &expected_hat) < 1e-4,
            "{architecture:?}"
        );
    }
}

#[test]
fn expected_average_only_in_is_folded_so_the_sae_reads_scaled_inputs() {
    let device = cpu_device();
    let (d, m, n) = (8, 24, 6);
    let x = uneven_rows(n, d, 2);
    let s = 3.25f32;
    let scaled: Vec<f32> = x.iter().map(|v| v * s).collect();
    for architecture in ALL_ARCHITECTURES {
        let mut c = config(architecture, d, m);
        let w = random_weights(&c, 8);
        let host = files(
            &c,
            &w,
            serde_json::json!({
                "normalize_activations": "expected_average_only_in",
                "norm_scaling_factor": s,
            }),
        )
        .parse()
        .unwrap();
        // Folded: nothing is left to do at run time.
        assert_eq!(
            host.config.normalize_activations,
            ActivationNormalization::None
        );
        if let Architecture::BatchTopK { .. } = architecture {
            c.architecture = Architecture::JumpRelu;
        }
        let sae = host.upload(&device).unwrap();
        let xt = float_tensor(x.clone(), [n, d], &device);
        // SAELens: f = encode(s * x), x_hat = decode(f) / s.
        let expected_f = reference_encode(&c, &w, &scaled);
        let expected_hat: Vec<f64> = reference_decode(&c, &w, &expected_f)
            .iter()
            .map(|v| v / f64::from(s))
            .collect();
        assert!(max_diff(&read2(sae.encode(xt.clone())), &expected_f) < 1e-4);
        assert!(max_diff(&read2(sae.reconstruct(xt)), &expected_hat) < 1e-4);
    }
    // Without its constant the SAE would silently read the wrong scale: refused in words.
    let c = config(Architecture::Standard, d, m);
    let error = files(
        &c,
        &random_weights(&c, 8),
        serde_json::json!({"normalize_activations": "expected_average_only_in"}),
    )
    .parse()
    .unwrap_err()
    .to_string();
    assert!(error.contains("norm_scaling_factor"), "{error}");
    let error = files(
        &c,
        &random_weights(&c, 8),
        serde_json::json!({"normalize_activations": "per_feature_zscore"}),
    )
    .parse()
    .unwrap_err()
    .to_string();
    assert!(error.contains("per_feature_zscore"), "{error}");
}

#[test]
fn a_layer_norm_sae_keeps_its_normalisation_through_its_files() {
    let device = cpu_device();
    let c = config(Architecture::TopK { k: 3 }, 8, 16);
    let w = random_weights(&c, 3);
    let host = files(
        &c,
        &w,
        serde_json::json!({"normalize_activations": "layer_norm"}),
    )
    .parse()
    .unwrap();
    let sae = host.upload(&device).unwrap();
    let written = block_on(write_sae(&sae, None, &Provenance::default(), None)).unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&written.cfg).unwrap();
    assert_eq!(cfg["normalize_activations"], "layer_norm");
    let again = written.parse().unwrap();
    assert_eq!(again.config, host.config);
}

#[test]
fn steering_a_layer_norm_sae_moves_the_activation_as_decoding_would() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let hook = HookPoint::ResidMid(0);
    let d = model.dims().d_model;
    let m = 12;
    let mut c = config(Architecture::Standard, d, m);
    c.hook_name = hook.to_string();
    let w = random_weights(&c, 5);
    let sae = files(
        &c,
        &w,
        serde_json::json!({"normalize_activations": "layer_norm"}),
    )
    .parse()
    .unwrap()
    .upload(model.device())
    .unwrap();
    let ids = vec![(0..10).map(|i| (i * 37 + 5) % 257).collect::<Vec<u32>>()];
    let capture = |hooks: Hooks| -> Vec<f32> {
        let out = model
            .forward(&ids, &hooks, LogitsFor::LastPosition)
            .unwrap();
        block_on(read_f32(out.activation(hook).unwrap().clone())).unwrap()
    };
    let x = capture(Hooks::capture([hook]));
    let (normalised, stats) = standardise(&x, d);
    let f = reference_encode(&c, &w, &normalised);
    let (clamped, added, value, strength) = (4, 7, 2.0, 1.5);
    let patch = intervention_patch(
        &sae,
        &[
            Intervention {
                feature: clamped,
                mode: InterventionMode::Clamp { value },
            },
            Intervention {
                feature: added,
                mode: InterventionMode::Add { strength },
            },
        ],
    )
    .unwrap();
    let patched = capture(Hooks::capture([hook]).with_patch(hook, patch));
    let w_dec = &w["W_dec"].values;
    for (r, (p, row)) in patched.chunks(d).zip(x.chunks(d)).enumerate() {
        let (_, std) = stats[r];
        let change = f64::from(value) - f[r * m + clamped];
        for j in 0..d {
            let expected = f64::from(row[j])
                + std
                    * (change * f64::from(w_dec[clamped * d + j])
                        + f64::from(strength) * f64::from(w_dec[added * d + j]));
            assert!(
                (f64::from(p[j]) - expected).abs() < 1e-3,
                "token {r}, coordinate {j}: {} vs {expected}",
                p[j]
            );
        }
    }
}

/// `forward --sae` writes SAELens's SAE hooks for a layer_norm TopK SAE whose cfg asks for
/// `center_writing_weights`: the model is processed (the residual stream has zero mean per
/// token), the features equal a direct computation on that activation, and output + error is
/// the input.
#[test]
fn forward_writes_the_sae_hooks_on_the_processed_model() {
    use safetensors::SafeTensors;
    let root = std::env::temp_dir().join(format!("saeplay-sae-hooks-{}", std::process::id()));
    let model = root.join("model");
    saeplay::model::fixtures::tiny_checkpoint(&TinySpec::default())
        .write_dir(&model)
        .unwrap();
    let hook = "blocks.1.hook_resid_pre";
    let (d, m) = (32, 48);
    let mut c = config(Architecture::TopK { k: 4 }, d, m);
    c.hook_name = hook.into();
    let w = random_weights(&c, 11);
    let sae_dir = root.join("sae");
    files(
        &c,
        &w,
        serde_json::json!({
            "normalize_activations": "layer_norm",
            "model_from_pretrained_kwargs": {"center_writing_weights": true},
        }),
    )
    .write_dir(&sae_dir)
    .unwrap();
    let out = root.join("out.safetensors");
    let points = [
        "hook_sae_input",
        "hook_sae_acts_pre",
        "hook_sae_acts_post",
        "hook_sae_output",
        "hook_sae_error",
    ];
    let hooks: Vec<String> = std::iter::once(hook.to_string())
        .chain(points.iter().map(|p| format!("{hook}.{p}")))
        .collect();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_saeplay"))
        .args(["forward", "--model", model.to_str().unwrap(), "--sae"])
        .arg(&sae_dir)
        .args([
            "--ids",
            "5,17,33,2,250,9",
            "--hooks",
            &hooks.join(","),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let read = |name: &str| -> Vec<f32> {
        file.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let x = read(hook);
    assert_eq!(file.tensor(hook).unwrap().shape(), &[6, d]);
    for row in x.chunks(d) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        assert!(
            mean.abs() < 1e-4,
            "center_writing_weights applied: mean {mean}"
        );
    }
    assert_eq!(read(&format!("{hook}.hook_sae_input")), x);
    let (normalised, _) = standardise(&x, d);
    let acts = read(&format!("{hook}.hook_sae_acts_post"));
    assert_eq!(
        file.tensor(&format!("{hook}.hook_sae_acts_post"))
            .unwrap()
            .shape(),
        &[6, m]
    );
    assert!(max_diff(&acts, &reference_encode(&c, &w, &normalised)) < 1e-4);
    let pre = read(&format!("{hook}.hook_sae_acts_pre"));
    for (p, a) in pre.iter().zip(&acts) {
        assert!(
            *a == 0.0 || (p - a).abs() < 1e-5,
            "active features equal their pre-activation"
        );
    }
    let (output, error) = (
        read(&format!("{hook}.hook_sae_output")),
        read(&format!("{hook}.hook_sae_error")),
    );
    for ((o, e), v) in output.iter().zip(&error).zip(&x) {
        assert!((o + e - v).abs() < 1e-4);
    }
    // An SAE hook without --sae, or at another hook, is refused in words.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_saeplay"))
        .args([
            "forward",
            "--model",
            model.to_str().unwrap(),
            "--ids",
            "1,2",
        ])
        .args([
            "--hooks",
            "blocks.0.hook_resid_pre.hook_sae_acts_post",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("give the SAE with --sae"));
    std::fs::remove_dir_all(&root).ok();
}
