//! Each bad input gets a clear, typed error naming the problem, never a panic.
use crate::common;



use saeplay::SaeplayError;
use saeplay::io::tensors::write_safetensors;
use saeplay::model::files::{HfFiles, ModelFiles};
use saeplay::model::fixtures::{TinySpec, tiny_checkpoint};
use saeplay::model::{Gpt2Config, Gpt2Weights, HookPoint, Hooks, LogitsFor, PatchOp};
use saeplay::tokenizer::byte_level_bpe_json;

fn files() -> HfFiles {
    tiny_checkpoint(&TinySpec::default())
}

fn parse_error(files: &HfFiles) -> SaeplayError {
    files.parse().err().expect("the files were refused")
}

#[test]
fn truncated_and_malformed_safetensors() {
    let mut f = files();
    let half = f.shards[0].len() / 2;
    f.shards[0].truncate(half);
    assert!(matches!(parse_error(&f), SaeplayError::Safetensors(_)));
    let mut f = files();
    f.shards[0] = b"this is not a safetensors file".to_vec();
    assert!(matches!(parse_error(&f), SaeplayError::Safetensors(_)));
    let mut f = files();
    f.shards[0].clear();
    assert!(matches!(parse_error(&f), SaeplayError::Safetensors(_)));
}

/// Rewrite the checkpoint's tensors through `edit`.
fn edited(edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> HfFiles {
    let mut f = files();
    let weights = f.parse().unwrap().weights.into_gpt2().unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = weights
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.values.clone()))
        .collect();
    edit(&mut tensors);
    f.shards[0] = write_safetensors(tensors.iter().map(|(n, s, v)| (n.as_str(), &s[..], &v[..])));
    f
}

#[test]
fn missing_misshapen_and_non_finite_tensors() {
    let f = edited(|t| t.retain(|(n, _, _)| n != "h.1.mlp.c_fc.bias"));
    match parse_error(&f) {
        SaeplayError::MissingTensor(name) => assert_eq!(name, "h.1.mlp.c_fc.bias"),
        other => panic!("{other}"),
    }
    let f = edited(|t| {
        let entry = t
            .iter_mut()
            .find(|(n, _, _)| n == "h.0.attn.c_attn.weight")
            .unwrap();
        entry.1 = vec![96, 32]; // transposed: a Linear layout instead of Conv1D
    });
    let error = parse_error(&f);
    assert!(matches!(error, SaeplayError::TensorShape { .. }));
    assert!(
        error.to_string().contains("h.0.attn.c_attn.weight"),
        "{error}"
    );
    let f = edited(|t| t[3].2[0] = f32::NAN);
    assert!(matches!(parse_error(&f), SaeplayError::NonFinite { .. }));
}

#[test]
fn config_that_disagrees_with_the_weights_or_is_invalid() {
    let mut f = files();
    let mut config = Gpt2Config::from_json(&f.config_json).unwrap();
    config.n_layer = 3;
    f.config_json = config.to_json().into_bytes();
    assert!(matches!(parse_error(&f), SaeplayError::MissingTensor(ref n) if n.starts_with("h.2.")));
    let mut config = Gpt2Config::from_json(&files().config_json).unwrap();
    config.n_embd = 48;
    let mut f = files();
    f.config_json = config.to_json().into_bytes();
    assert!(matches!(parse_error(&f), SaeplayError::TensorShape { .. }));

    for bad in [
        &b"{not json"[..],
        br#"{"vocab_size": 10}"#,
        br#"{"vocab_size": 10, "n_positions": 8, "n_embd": 30, "n_layer": 1, "n_head": 4}"#,
        br#"{"vocab_size": 10, "n_positions": 8, "n_embd": 32, "n_layer": 0, "n_head": 4}"#,
        br#"{"vocab_size": 10, "n_positions": 8, "n_embd": 32, "n_layer": 1, "n_head": 4, "activation_function": "swish"}"#,
        br#"{"vocab_size": -1, "n_positions": 8, "n_embd": 32, "n_layer": 1, "n_head": 4}"#,
    ] {
        let error = Gpt2Config::from_json(bad).expect_err("refused");
        assert!(matches!(error, SaeplayError::Config(_)), "{error}");
    }
}

#[test]
fn unsupported_dtype_is_named() {
    let mut f = files();
    let bytes: Vec<u8> = vec![0; 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1], &bytes).unwrap();
    f.shards[0] = safetensors::serialize(vec![("wte.weight", view)], None).unwrap();
    match parse_error(&f) {
        SaeplayError::TensorShape { .. } | SaeplayError::TensorDtype { .. } => {}
        other => panic!("{other}"),
    }
    // Right shape, wrong dtype.
    let config = Gpt2Config::from_json(&f.config_json).unwrap();
    let weights = Gpt2Weights::random(&config, 1);
    let wte = weights.get("wte.weight");
    let ints: Vec<u8> = vec![0; wte.values.len() * 8];
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    let f32_bytes: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .tensors
        .iter()
        .filter(|(n, _)| *n != "wte.weight")
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape.clone(),
                t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    for (n, s, b) in &f32_bytes {
        views.push((
            n.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
        ));
    }
    views.push((
        "wte.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, wte.shape.clone(), &ints)
            .unwrap(),
    ));
    f.shards[0] = safetensors::serialize(views, None).unwrap();
    let error = parse_error(&f);
    assert!(matches!(error, SaeplayError::TensorDtype { .. }), "{error}");
    assert!(error.to_string().contains("I64"), "{error}");
}

#[test]
fn half_precision_checkpoints_load() {
    let f = files();
    let weights = f.parse().unwrap().weights.into_gpt2().unwrap();
    let halves: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape.clone(),
                t.values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            )
        })
        .collect();
    let views: Vec<_> = halves
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let mut g = f.clone();
    g.shards[0] = safetensors::serialize(views, None).unwrap();
    let loaded = g.parse().unwrap().weights.into_gpt2().unwrap();
    let a = &loaded.get("wte.weight").values;
    let b = &weights.get("wte.weight").values;
    assert!(
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-3 * y.abs().max(1e-2))
    );
}

#[test]
fn tokenizer_that_disagrees_with_the_model() {
    let mut f = files();
    // 20 merges make a 277-token tokenizer for a 257-row model.
    let merges: Vec<(String, String)> = (0..20)
        .map(|i| ("a".to_string(), char::from(b'a' + i).to_string()))
        .collect();
    f.tokenizer_json = Some(byte_level_bpe_json(&merges).into_bytes());
    match parse_error(&f) {
        SaeplayError::VocabMismatch { tokenizer, model } => {
            assert_eq!((tokenizer, model), (277, 257))
        }
        other => panic!("{other}"),
    }
    let mut f = files();
    f.tokenizer_json = Some(b"{\"model\": 3}".to_vec());
    assert!(matches!(parse_error(&f), SaeplayError::Tokenizer(_)));
}

#[test]
fn token_ids_out_of_range_and_too_long_inputs() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let error = model
        .forward(&[vec![1, 257]], &Hooks::none(), LogitsFor::AllPositions)
        .err()
        .unwrap();
    assert!(matches!(
        error,
        SaeplayError::TokenOutOfRange {
            id: 257,
            vocab: 257
        }
    ));
    let error = model
        .forward(&[vec![1; 65]], &Hooks::none(), LogitsFor::AllPositions)
        .err()
        .unwrap();
    assert!(matches!(error, SaeplayError::TooLong { len: 65, max: 64 }));
    assert!(matches!(
        model
            .forward(&[vec![]], &Hooks::none(), LogitsFor::AllPositions)
            .err()
            .unwrap(),
        SaeplayError::EmptyInput
    ));
    assert!(
        model
            .forward(
                &[vec![1, 2], vec![3]],
                &Hooks::none(),
                LogitsFor::AllPositions
            )
            .is_err()
    );
    // A prompt that tokenises past the context is refused, not truncated.
    let long_text = "x".repeat(65);
    assert!(matches!(
        loaded.encode_prompt(&long_text).err().unwrap(),
        SaeplayError::TooLong { len: 65, max: 64 }
    ));
    assert!(matches!(
        loaded.encode_prompt("").err().unwrap(),
        SaeplayError::EmptyInput
    ));
}

#[test]
fn unknown_hook_names() {
    let config = Gpt2Config::from_json(&files().config_json).unwrap().dims();
    for name in [
        "",
        "hook_embeds",
        "blocks.2.hook_resid_pre",
        "blocks.x.hook_resid_pre",
        "blocks.0.hook_nothing",
        "blocks..hook_resid_pre",
        "blocks.-1.hook_resid_pre",
        "blocks.99999999999999999999.hook_resid_pre",
        "<script>",
    ] {
        let error = HookPoint::parse(name, &config).expect_err(name);
        assert!(matches!(error, SaeplayError::UnknownHook { .. }), "{name}");
    }
    // Every listed hook round-trips through its name.
    for hook in HookPoint::all(&config) {
        assert_eq!(HookPoint::parse(&hook.to_string(), &config).unwrap(), hook);
    }
    assert_eq!(HookPoint::all(&config).len(), 2 + 7 * 2 + 1);
}

#[test]
fn patches_of_the_wrong_shape_are_refused() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let wrong = saeplay::backend::float_tensor(vec![0.0; 16], [1, 1, 16], model.device());
    let hooks = Hooks::none().with_patch(HookPoint::ResidPre(0), PatchOp::Add(wrong));
    let error = model
        .forward(&[vec![1, 2]], &hooks, LogitsFor::AllPositions)
        .err()
        .unwrap();
    assert!(matches!(error, SaeplayError::PatchShape { .. }), "{error}");
    let short = saeplay::backend::float_tensor(vec![0.0; 32], [1, 1, 32], model.device());
    let hooks = Hooks::none().with_patch(HookPoint::ResidPre(0), PatchOp::Replace(short));
    assert!(
        model
            .forward(&[vec![1, 2]], &hooks, LogitsFor::AllPositions)
            .is_err()
    );
    let bad_map = Hooks::none().with_patch(
        HookPoint::MlpOut(0),
        PatchOp::Map(std::sync::Arc::new(
            |x: burn::tensor::Tensor<3>, _c: saeplay::model::HookContext| {
                x.slice([0..1, 0..1, 0..4])
            },
        )),
    );
    assert!(matches!(
        model
            .forward(&[vec![1, 2]], &bad_map, LogitsFor::AllPositions)
            .err()
            .unwrap(),
        SaeplayError::PatchShape { .. }
    ));
}

/// A model's files as a person picks or drops them (folders in names, extra files) are sorted by
/// name; a missing or doubled file is named.
#[test]
fn picked_model_files_are_found_by_name() {
    let f = files();
    let named = |list: &[(&str, &[u8])]| -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect()
    };
    let picked = ModelFiles::from_named_files(named(&[
        ("gpt2/README.md", b"# hi"),
        ("gpt2/config.json", &f.config_json),
        ("gpt2/model.safetensors", &f.shards[0]),
        ("gpt2/tokenizer.json", f.tokenizer_json.as_ref().unwrap()),
    ]))
    .unwrap();
    let ModelFiles::HuggingFace(hf) = &picked else {
        panic!("safetensors files are a Hugging Face model");
    };
    assert_eq!(hf.config_json, f.config_json);
    assert_eq!(hf.shards, f.shards);
    assert!(picked.parse().is_ok());
    let without_tokenizer = ModelFiles::from_named_files(named(&[
        ("config.json", &f.config_json),
        ("model.safetensors", &f.shards[0]),
    ]))
    .unwrap();
    assert!(!without_tokenizer.parse().unwrap().has_tokenizer());
    // One GGUF file is a whole model; with other model files it is refused as ambiguous.
    let gguf = ModelFiles::from_named_files(named(&[("m/SmolLM2.Q4_1.GGUF", b"GGUF")])).unwrap();
    assert!(matches!(gguf, ModelFiles::Gguf(_)));
    let error = ModelFiles::from_named_files(named(&[
        ("model.gguf", b"GGUF"),
        ("config.json", &f.config_json),
    ]))
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("choose one model"), "{error}");
    assert!(ModelFiles::looks_like_model(&["x/model.gguf"]));
    let error = ModelFiles::from_named_files(named(&[("config.json", &f.config_json)]))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("model.safetensors is missing"), "{error}");
    let error = ModelFiles::from_named_files(named(&[
        ("a/config.json", &f.config_json),
        ("b/config.json", &f.config_json),
        ("model.safetensors", &f.shards[0]),
    ]))
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("config.json was given twice"), "{error}");
    assert!(ModelFiles::looks_like_model(&["x/config.json"]));
    assert!(!ModelFiles::looks_like_model(&[
        "cfg.json",
        "sae_weights.safetensors"
    ]));
}
