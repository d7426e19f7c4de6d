//! TransformerLens's weight processing, checked against identities that hold by construction (on
//! the f64 reference forward of the unprocessed model), through the engine's forward, in
//! SAELens's cfg.json and on the command line.



use std::process::Command;

use crate::common::reference::{self, Activations, max_abs_diff};
use saeplay::backend::{block_on, cpu_device};
use saeplay::model::fixtures::{TinySpec, tiny_checkpoint};
use saeplay::model::{Gpt2, Gpt2Weights, WeightProcessing};

const TOLERANCE: f64 = 1e-4;

fn ids() -> Vec<u32> {
    (0..20u32).map(|i| (i * 53 + 7) % 257).collect()
}

fn weights(seed: u64) -> Gpt2Weights {
    let spec = TinySpec {
        seed,
        n_layer: 3,
        ..TinySpec::default()
    };
    tiny_checkpoint(&spec)
        .parse()
        .unwrap()
        .weights
        .into_gpt2()
        .unwrap()
}

fn processed(weights: &Gpt2Weights, processing: WeightProcessing) -> Gpt2Weights {
    let mut out = weights.clone();
    processing.apply(&mut out);
    out
}

fn only(step: &str) -> WeightProcessing {
    let mut p = WeightProcessing::default();
    match step {
        "fold_ln" => p.fold_ln = true,
        "center_writing_weights" => p.center_writing_weights = true,
        "center_unembed" => p.center_unembed = true,
        "fold_value_biases" => p.fold_value_biases = true,
        _ => unreachable!(),
    }
    p
}

/// Each row of `x` `[t, vocab]` minus its log-sum-exp.
fn log_softmax(x: &[f64], width: usize) -> Vec<f64> {
    x.chunks(width)
        .flat_map(|row| {
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            row.iter().map(move |v| v - lse).collect::<Vec<_>>()
        })
        .collect()
}

fn assert_close(name: &str, got: &[f64], expected: &[f64]) {
    let as32: Vec<f32> = got.iter().map(|&v| v as f32).collect();
    let (diff, at) = max_abs_diff(&as32, expected);
    assert!(diff < TOLERANCE, "{name} differs by {diff} at {at}");
}

fn hook(acts: &Activations, name: &str) -> Vec<f64> {
    acts[name].clone()
}

#[test]
fn every_step_keeps_the_predictions() {
    let original = weights(5);
    let vocab = original.config.vocab_size;
    let clean = reference::forward(&original, &ids());
    let steps = [
        "fold_ln",
        "center_writing_weights",
        "center_unembed",
        "fold_value_biases",
    ];
    let mut cases: Vec<(String, WeightProcessing)> =
        steps.iter().map(|s| (s.to_string(), only(s))).collect();
    cases.push((
        "TransformerLens defaults".into(),
        WeightProcessing::TRANSFORMER_LENS_DEFAULT,
    ));
    for (name, processing) in cases {
        let out = reference::forward(&processed(&original, processing), &ids());
        if processing.center_unembed {
            // A constant per position: the distribution is the same.
            assert_close(
                &format!("{name}: log-probabilities"),
                &log_softmax(&out["logits"], vocab),
                &log_softmax(&clean["logits"], vocab),
            );
        } else {
            assert_close(&format!("{name}: logits"), &out["logits"], &clean["logits"]);
        }
    }
}

#[test]
fn fold_ln_leaves_the_stream_and_turns_norms_into_layer_norm_pre() {
    let original = weights(6);
    let folded = processed(&original, only("fold_ln"));
    for (name, tensor) in &folded.tensors {
        if name.contains("ln_") && name.ends_with(".weight") {
            assert!(tensor.values.iter().all(|&v| v == 1.0), "{name} is not 1");
        }
        if name.contains("ln_") && name.ends_with(".bias") {
            assert!(tensor.values.iter().all(|&v| v == 0.0), "{name} is not 0");
        }
    }
    let before = reference::forward(&original, &ids());
    let after = reference::forward(&folded, &ids());
    for l in 0..original.config.n_layer {
        for site in [
            "hook_resid_pre",
            "hook_attn_out",
            "hook_mlp_out",
            "hook_resid_post",
        ] {
            let name = format!("blocks.{l}.{site}");
            assert_close(&name, &hook(&after, &name), &before[&name]);
        }
    }
    // Each column of a folded reader is centred over d_model.
    let d = original.config.n_embd;
    let w = folded.get("h.0.mlp.c_fc.weight");
    let cols = w.shape[1];
    for j in 0..cols {
        let mean: f64 = (0..d)
            .map(|i| f64::from(w.values[i * cols + j]))
            .sum::<f64>()
            / d as f64;
        assert!(mean.abs() < 1e-6, "column {j} of c_fc has mean {mean}");
    }
}

#[test]
fn center_writing_weights_centres_the_residual_stream() {
    let original = weights(7);
    let d = original.config.n_embd;
    let before = reference::forward(&original, &ids());
    let after = reference::forward(
        &processed(&original, only("center_writing_weights")),
        &ids(),
    );
    for l in 0..original.config.n_layer {
        for site in ["hook_resid_pre", "hook_resid_mid", "hook_resid_post"] {
            let name = format!("blocks.{l}.{site}");
            // The processed stream is the original one minus its mean at each position.
            let centred: Vec<f64> = before[&name]
                .chunks(d)
                .flat_map(|row| {
                    let mean = row.iter().sum::<f64>() / d as f64;
                    row.iter().map(move |v| v - mean).collect::<Vec<_>>()
                })
                .collect();
            let centred: Vec<f32> = centred.iter().map(|&v| v as f32).collect();
            let (diff, at) = max_abs_diff(&centred, &after[&name]);
            assert!(diff < TOLERANCE, "{name} differs by {diff} at {at}");
        }
    }
}

#[test]
fn fold_value_biases_moves_the_value_bias_out_of_z() {
    let original = weights(8);
    let d = original.config.n_embd;
    let before = reference::forward(&original, &ids());
    let after = reference::forward(&processed(&original, only("fold_value_biases")), &ids());
    for l in 0..original.config.n_layer {
        // Attention rows sum to one, so z loses exactly b_V, and the output is unchanged.
        let b_v = &original.get(&format!("h.{l}.attn.c_attn.bias")).values[2 * d..3 * d];
        let name = format!("blocks.{l}.attn.hook_z");
        let expected: Vec<f32> = before[&name]
            .chunks(d)
            .flat_map(|row| row.iter().zip(b_v).map(|(z, b)| (z - f64::from(*b)) as f32))
            .collect();
        let (diff, at) = max_abs_diff(&expected, &after[&name]);
        assert!(diff < TOLERANCE, "{name} differs by {diff} at {at}");
        let name = format!("blocks.{l}.hook_attn_out");
        assert_close(&name, &hook(&after, &name), &before[&name]);
    }
}

#[test]
fn center_unembed_centres_the_logits_over_the_vocabulary() {
    let original = weights(9);
    let vocab = original.config.vocab_size;
    let out = reference::forward(&processed(&original, only("center_unembed")), &ids());
    for (p, row) in out["logits"].chunks(vocab).enumerate() {
        let mean = row.iter().sum::<f64>() / vocab as f64;
        assert!(mean.abs() < 1e-5, "position {p}: mean logit {mean}");
    }
}

/// The engine's forward on processed weights equals the reference on the same weights, every
/// hook and the logits (the untied unembedding and its bias included).
#[test]
fn the_engine_runs_processed_weights_like_the_reference() {
    let original = weights(10);
    let all = WeightProcessing::TRANSFORMER_LENS_DEFAULT;
    let weights = processed(&original, all);
    let model = saeplay::model::Model::from(Gpt2::new(&weights, &cpu_device()).unwrap());
    reference::assert_matches_reference(&weights, &model, &ids());
}

#[test]
fn a_model_is_processed_once() {
    let files = tiny_checkpoint(&TinySpec::default());
    let host = files.parse().unwrap().process(only("fold_ln")).unwrap();
    assert_eq!(host.processing, only("fold_ln"));
    let again = host.process(only("fold_ln")).unwrap();
    let err = again
        .process(only("center_unembed"))
        .err()
        .expect("a second, different processing is refused")
        .to_string();
    assert!(err.contains("already processed with fold_ln"), "{err}");
    assert_eq!(
        WeightProcessing::TRANSFORMER_LENS_DEFAULT.describe(),
        "fold_ln, center_writing_weights, center_unembed, fold_value_biases"
    );
}

fn saeplay(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_saeplay"))
        .args(args)
        .output()
        .unwrap()
}

/// SAELens's `model_from_pretrained_kwargs` decides the processing; flags that disagree are
/// refused in words, and `info` says what is in force.
#[test]
fn an_sae_brings_its_model_processing_on_the_command_line() {
    let root = std::env::temp_dir().join(format!("saeplay-processing-{}", std::process::id()));
    let model = root.join("model");
    tiny_checkpoint(&TinySpec::default())
        .write_dir(&model)
        .unwrap();
    let model = model.to_str().unwrap();

    let info = saeplay(&["info", "--model", model, "--fold-ln", "--center-unembed"]);
    assert!(info.status.success());
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("weight processing: fold_ln, center_unembed"),
        "{text}"
    );

    // An SAE on blocks.1.hook_resid_pre whose cfg asks for center_writing_weights, as
    // gpt2-small-res-jb's does.
    let sae = root.join("sae");
    std::fs::create_dir_all(&sae).unwrap();
    let (d, m) = (32usize, 64usize);
    let cfg = serde_json::json!({
        "architecture": "standard", "d_in": d, "d_sae": m, "dtype": "float32",
        "apply_b_dec_to_input": true, "normalize_activations": "none",
        "metadata": {
            "model_name": "tiny", "hook_name": "blocks.1.hook_resid_pre",
            "model_from_pretrained_kwargs": {"center_writing_weights": true}
        }
    });
    std::fs::write(sae.join("cfg.json"), cfg.to_string()).unwrap();
    let values = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|i| scale * (((i * 7919) % 97) as f32 / 97.0 - 0.5))
            .collect()
    };
    let tensors: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        ("W_enc", vec![d, m], values(d * m, 0.3)),
        ("b_enc", vec![m], values(m, 0.1)),
        ("W_dec", vec![m, d], values(m * d, 0.3)),
        ("b_dec", vec![d], values(d, 0.1)),
    ];
    let bytes = saeplay::io::tensors::write_safetensors(
        tensors
            .iter()
            .map(|(n, s, v)| (*n, s.as_slice(), v.as_slice())),
    );
    std::fs::write(sae.join("sae_weights.safetensors"), bytes).unwrap();
    let host = saeplay::sae::saelens::SaeFiles::read_dir(&sae)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(host.model_processing, only("center_writing_weights"));
    let sae = sae.to_str().unwrap();

    let steer = [
        "generate",
        "--model",
        model,
        "--prompt",
        "ab",
        "--max-tokens",
        "3",
    ];
    let steered = saeplay(&[&steer[..], &["--sae", sae, "--steer", "3:4"]].concat());
    assert!(
        steered.status.success(),
        "{}",
        String::from_utf8_lossy(&steered.stderr)
    );
    let refused = saeplay(&[&steer[..], &["--sae", sae, "--steer", "3:4", "--fold-ln"]].concat());
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(
            "the SAE was trained on the model processed with center_writing_weights, but the flags ask for fold_ln"
        ),
        "{message}"
    );
    std::fs::remove_dir_all(&root).ok();
}

/// An SAE trained on a processed model records it where SAELens looks.
#[test]
fn written_cfg_records_the_processing() {
    use saeplay::sae::saelens::{Provenance, write_sae};
    use saeplay::sae::{Architecture, Sae, SaeConfig};
    let config = SaeConfig {
        architecture: Architecture::Standard,
        d_in: 4,
        d_sae: 8,
        hook_name: "blocks.0.hook_resid_pre".into(),
        model_name: "tiny".into(),
        normalize_activations: Default::default(),
    };
    let mut host = std::collections::BTreeMap::new();
    for (name, shape) in config.parameter_shapes() {
        let n = shape.iter().product();
        host.insert(
            name.to_string(),
            saeplay::io::tensors::HostTensor {
                shape,
                values: (0..n).map(|i| i as f32 / n as f32).collect(),
            },
        );
    }
    let sae = Sae::from_host(config, &host, &cpu_device()).unwrap();
    let provenance = Provenance {
        model_processing: only("center_writing_weights"),
        ..Provenance::default()
    };
    let files = block_on(write_sae(&sae, None, &provenance, Some(16))).unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&files.cfg).unwrap();
    assert_eq!(
        cfg["metadata"]["model_from_pretrained_kwargs"]["center_writing_weights"],
        true
    );
    assert_eq!(
        files.parse().unwrap().model_processing,
        provenance.model_processing
    );
    let plain = block_on(write_sae(&sae, None, &Provenance::default(), Some(16))).unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&plain.cfg).unwrap();
    assert!(
        cfg["metadata"]
            .get("model_from_pretrained_kwargs")
            .is_none()
    );
}
