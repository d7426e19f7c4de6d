//! The command line end to end: exit codes, one-line errors, and files other tools can read.
use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};

use saeplay::model::fixtures::{TinySpec, tiny_checkpoint};
use safetensors::SafeTensors;

fn saeplay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saeplay"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saeplay-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn model_dir(name: &str, spec: &TinySpec) -> PathBuf {
    let dir = temp_dir(name);
    tiny_checkpoint(spec).write_dir(&dir).unwrap();
    dir
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failure is one line starting with `error:` and a nonzero exit.
fn assert_clean_failure(output: &Output, needle: &str) {
    assert!(!output.status.success(), "expected failure");
    let text = stderr(output);
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    assert!(text.starts_with("error: "), "{text}");
    assert!(text.contains(needle), "`{needle}` in {text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn info_lists_shapes_and_hooks() {
    let dir = model_dir("info", &TinySpec::default());
    let output = saeplay(&["info", "--model", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("GPT-2: 2 layers, d_model 32, 4 heads of 8, d_mlp 128, context 64"),
        "{text}"
    );
    for hook in [
        "hook_embed",
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_post",
        "blocks.1.mlp.hook_post  [pos, 128]",
        "ln_final.hook_normalized",
    ] {
        assert!(text.contains(hook), "{hook} in {text}");
    }
}

#[test]
fn forward_writes_logits_and_hooks_equal_to_the_reference() {
    let spec = TinySpec {
        with_prefix: true,
        ..TinySpec::default()
    };
    let dir = model_dir("forward", &spec);
    let out = dir.join("acts.safetensors");
    let output = saeplay(&[
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--ids",
        "5,17,200,3",
        "--hooks",
        "blocks.0.hook_resid_pre,blocks.1.hook_mlp_out",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(&out).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(
        names,
        ["blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out", "logits"]
    );
    let weights = tiny_checkpoint(&spec)
        .parse()
        .unwrap()
        .weights
        .into_gpt2()
        .unwrap();
    let expected = common::reference::forward(&weights, &[5, 17, 200, 3]);
    for name in names {
        let view = file.tensor(name).unwrap();
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(view.shape()[0], 4);
        let (diff, _) = common::reference::max_abs_diff(&values, &expected[name]);
        assert!(diff < 1e-4, "{name}: {diff}");
    }
}

#[test]
fn forward_from_text_uses_the_tokenizer() {
    let dir = model_dir("text", &TinySpec::default());
    let out = dir.join("t.safetensors");
    let output = saeplay(&[
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--text",
        "Hi é",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(&out).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    // Byte-level tokens: H, i, " " and the two bytes of é.
    assert_eq!(file.tensor("logits").unwrap().shape(), [5, 257]);
}

#[test]
fn a_model_without_tokenizer_runs_on_ids_and_says_where_text_needs_one() {
    let dir = model_dir("no-tokenizer", &TinySpec::default());
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let dir = dir.to_str().unwrap();
    let out = temp_dir("no-tokenizer-out").join("f.safetensors");
    let output = saeplay(&[
        "forward",
        "--model",
        dir,
        "--ids",
        "1,2,3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(&out).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(tensors.tensor("logits").unwrap().shape(), &[3, 257]);
    let info = saeplay(&["info", "--model", dir]);
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(String::from_utf8_lossy(&info.stdout).contains("no tokenizer.json"));
    let text = saeplay(&[
        "forward",
        "--model",
        dir,
        "--text",
        "hi",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&text, "without a tokenizer.json");
}

#[test]
fn the_builtin_model_is_found_at_run_time_and_a_miss_names_where_it_looked() {
    // A copied binary finds the model named by SAEPLAY_MODEL ...
    let dir = model_dir("env-model", &TinySpec::default());
    let output = Command::new(env!("CARGO_BIN_EXE_saeplay"))
        .arg("info")
        .env("SAEPLAY_MODEL", &dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains(dir.to_str().unwrap()));
    // ... and says where it looked when nothing is there.
    let missing = temp_dir("env-missing").join("nothing-here");
    let output = Command::new(env!("CARGO_BIN_EXE_saeplay"))
        .arg("info")
        .env("SAEPLAY_MODEL", &missing)
        .output()
        .unwrap();
    assert_clean_failure(&output, "nothing-here");
    assert!(stderr(&output).contains("SAEPLAY_MODEL"));
}

#[test]
fn generate_is_reproducible_from_a_seed() {
    let dir = model_dir("generate", &TinySpec::default());
    let run = |seed: &str| {
        let output = saeplay(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "Once",
            "--max-tokens",
            "16",
            "--temperature",
            "1.0",
            "--top-k",
            "50",
            "--top-p",
            "0.95",
            "--seed",
            seed,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = run("3");
    assert!(first.starts_with("Once"));
    assert_eq!(first, run("3"));
    assert_ne!(first, run("4"));
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let dir = model_dir("bad", &TinySpec::default());
    let model = dir.to_str().unwrap();
    let out = dir.join("o.safetensors");
    let out = out.to_str().unwrap();
    assert_clean_failure(
        &saeplay(&["forward", "--model", model, "--ids", "1,999", "--out", out]),
        "token id 999 is out of range",
    );
    assert_clean_failure(
        &saeplay(&["forward", "--model", model, "--ids", "1,x", "--out", out]),
        "`x` is not a token id",
    );
    assert_clean_failure(
        &saeplay(&[
            "forward",
            "--model",
            model,
            "--ids",
            "1",
            "--hooks",
            "blocks.7.hook_resid_pre",
            "--out",
            out,
        ]),
        "unknown hook point `blocks.7.hook_resid_pre`",
    );
    let long = "a".repeat(100);
    assert_clean_failure(
        &saeplay(&["forward", "--model", model, "--text", &long, "--out", out]),
        "at most 64",
    );
    assert_clean_failure(
        &saeplay(&[
            "generate",
            "--model",
            model,
            "--prompt",
            "a",
            "--temperature=-2",
        ]),
        "temperature",
    );
    assert_clean_failure(
        &saeplay(&[
            "generate",
            "--model",
            model,
            "--prompt",
            "a",
            "--backend",
            "tpu",
        ]),
        "unknown backend `tpu`",
    );
    let sharded = temp_dir("zero-shards");
    let sharded = sharded.to_str().unwrap();
    for (shards, needle) in [
        ("0", "--shards 0 writes no file"),
        ("999", "more than the model's"),
    ] {
        assert_clean_failure(
            &saeplay(&[
                "make-test-model",
                "--family",
                "llama",
                "--shards",
                shards,
                "--out",
                sharded,
            ]),
            needle,
        );
    }
    assert_clean_failure(
        &saeplay(&["info", "--model", "/nonexistent/model"]),
        "cannot read /nonexistent/model/config.json",
    );

    // A truncated weights file.
    let broken = temp_dir("broken");
    tiny_checkpoint(&TinySpec::default())
        .write_dir(&broken)
        .unwrap();
    let weights = broken.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 100]).unwrap();
    assert_clean_failure(
        &saeplay(&["info", "--model", broken.to_str().unwrap()]),
        "not a valid safetensors file",
    );
}

/// capture -> train-sae (from captured and from live activations) -> eval-sae -> features ->
/// encode -> generate with steering, on a tiny model; and the SAE commands' bad inputs.
#[test]
fn sae_commands_end_to_end() {
    let model = model_dir("sae-model", &TinySpec::default());
    let work = temp_dir("sae-work");
    let m = model.to_str().unwrap();
    let path = |name: &str| work.join(name).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let output = saeplay(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        output
    };
    let hook = "blocks.1.hook_resid_pre";
    run(&[
        "capture",
        "--model",
        m,
        "--hooks",
        hook,
        "--tokens",
        "3000",
        "--context",
        "32",
        "--out",
        &path("acts.safetensors"),
    ]);
    let bytes = std::fs::read(path("acts.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor(hook).unwrap().shape(), &[3000, 32]);

    let out = run(&[
        "train-sae",
        "--model",
        m,
        "--hook",
        hook,
        "--architecture",
        "topk",
        "--k",
        "4",
        "--expansion",
        "4",
        "--tokens",
        "8192",
        "--batch-size",
        "256",
        "--context",
        "32",
        "--activations",
        &path("acts.safetensors"),
        "--eval-windows",
        "4",
        "--out",
        &path("sae"),
        "--json",
    ]);
    let metrics: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(metrics["l0"], 4.0);
    // Plumbing, not quality (tests/it/sae_engine.rs holds training to known structure): 32 steps on
    // a random model must still explain some variance.
    assert!(
        metrics["explained_variance"].as_f64().unwrap() > 0.02,
        "{metrics}"
    );
    for file in [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
        "saeplay.json",
    ] {
        assert!(work.join("sae").join(file).exists(), "{file}");
    }
    // Live activations (no --activations): the model runs as the SAE trains.
    run(&[
        "train-sae",
        "--model",
        m,
        "--hook",
        hook,
        "--architecture",
        "jumprelu",
        "--expansion",
        "2",
        "--tokens",
        "2048",
        "--batch-size",
        "256",
        "--context",
        "32",
        "--eval-windows",
        "2",
        "--out",
        &path("live"),
    ]);

    let out = run(&[
        "eval-sae",
        "--model",
        m,
        "--sae",
        &path("sae"),
        "--windows",
        "4",
        "--context",
        "32",
        "--json",
    ]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["l0"], 4.0);
    // Every figure the page can plot, under SAEBench's names, beside the metrics.
    assert_eq!(again["figures"]["l0"], 4.0);
    assert_eq!(again["figures"]["cossim"], again["cossim"]);
    assert_eq!(
        again["figures"]["relative_reconstruction_bias"],
        again["shrinkage"]
    );

    let out = run(&[
        "features",
        "--model",
        m,
        "--sae",
        &path("sae"),
        "--features",
        "0,5",
        "--windows",
        "4",
        "--context",
        "32",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["features"].as_array().unwrap().len(), 2);
    assert_eq!(report["features"][1]["index"], 5);

    // Automatic explanations, then a person's explanation scored the same way: the explainer
    // keeps its best candidate, so its own explanation scored again gives the same figures.
    let out = run(&[
        "explain",
        "--model",
        m,
        "--sae",
        &path("sae"),
        "--features",
        "0,5",
        "--windows",
        "8",
        "--context",
        "32",
    ]);
    let explained: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let explained = explained.as_array().unwrap();
    assert_eq!(explained.len(), 2);
    assert_eq!(explained[1]["feature"], 5);
    for e in explained.iter().filter(|e| !e["score"].is_null()) {
        let text = e["explanation"].as_str().unwrap();
        let feature = e["feature"].to_string();
        let out = run(&[
            "score",
            "--model",
            m,
            "--sae",
            &path("sae"),
            "--feature",
            &feature,
            "--explanation",
            text,
            "--windows",
            "8",
            "--context",
            "32",
            "--json",
        ]);
        let scored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(scored["score"], e["score"], "{text}");
        assert_eq!(scored["source"], "person");
    }
    assert_clean_failure(
        &saeplay(&[
            "score",
            "--model",
            m,
            "--sae",
            &path("sae"),
            "--feature",
            "0",
            "--explanation",
            "concept:dragons",
        ]),
        "unknown concept `dragons`",
    );

    run(&[
        "encode",
        "--sae",
        &path("sae"),
        "--activations",
        &path("acts.safetensors"),
        "--rows",
        "10",
        "--out",
        &path("check.safetensors"),
    ]);
    let bytes = std::fs::read(path("check.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("feature_acts").unwrap().shape(), &[10, 128]);

    // Steering changes a greedy continuation; the same seed without steering does not change.
    let sae_dir = path("sae");
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            m,
            "--prompt",
            "Once",
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            "--print-ids",
            "--sae",
            &sae_dir,
        ];
        args.extend_from_slice(extra);
        let text = stderr(&run(&args));
        text.lines()
            .find(|l| l.starts_with("ids: "))
            .unwrap()
            .to_string()
    };
    let plain = generate(&[]);
    assert_eq!(plain, generate(&[]));
    let steered = generate(&["--steer", "3:40", "--steer", "7:40"]);
    assert_ne!(
        plain, steered,
        "steering by 40 x two decoder directions changes greedy text"
    );
    let clamped = generate(&["--clamp", "3:50", "--ablate", "7"]);
    assert_ne!(plain, clamped);
    let capped = generate(&["--orthogonal", "3:-20", "--projection-cap", "7:-5"]);
    assert_ne!(plain, capped);
    // Coefficient 1 and an unreachable cap change nothing.
    assert_eq!(
        plain,
        generate(&["--orthogonal", "3:1", "--projection-cap", "7:1000000"])
    );

    // Bad inputs are one-line errors.
    assert_clean_failure(
        &saeplay(&["generate", "--model", m, "--prompt", "x", "--steer", "3:1"]),
        "--sae",
    );
    assert_clean_failure(
        &saeplay(&[
            "generate",
            "--model",
            m,
            "--prompt",
            "x",
            "--sae",
            &path("sae"),
            "--steer",
            "999:1",
        ]),
        "feature 999",
    );
    assert_clean_failure(
        &saeplay(&[
            "generate",
            "--model",
            m,
            "--prompt",
            "x",
            "--sae",
            &path("sae"),
            "--steer",
            "3",
        ]),
        "FEATURE:STRENGTH",
    );
    assert_clean_failure(
        &saeplay(&["eval-sae", "--model", m, "--sae", &path("missing")]),
        "could not read",
    );
    assert_clean_failure(
        &saeplay(&[
            "train-sae",
            "--model",
            m,
            "--hook",
            "blocks.9.hook_resid_pre",
            "--out",
            &path("x"),
        ]),
        "blocks.9",
    );
    assert_clean_failure(
        &saeplay(&[
            "train-sae",
            "--model",
            m,
            "--architecture",
            "topk",
            "--k",
            "0",
            "--out",
            &path("x"),
        ]),
        "k",
    );
    assert_clean_failure(
        &saeplay(&[
            "train-sae",
            "--model",
            m,
            "--hook",
            hook,
            "--tokens",
            "10",
            "--out",
            &path("x"),
        ]),
        "no step",
    );
    // An SAE for another model's width is refused with its reason.
    let wide = model_dir(
        "sae-wide",
        &TinySpec {
            n_embd: 64,
            ..TinySpec::default()
        },
    );
    assert_clean_failure(
        &saeplay(&[
            "eval-sae",
            "--model",
            wide.to_str().unwrap(),
            "--sae",
            &path("sae"),
            "--windows",
            "2",
        ]),
        "does not fit",
    );
    std::fs::write(work.join("sae").join("cfg.json"), b"{").unwrap();
    assert_clean_failure(
        &saeplay(&["eval-sae", "--model", m, "--sae", &path("sae")]),
        "cfg.json",
    );
}
