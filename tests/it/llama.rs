//! The Llama-family forward against the independent f64 reference on generated checkpoints
//! (several shapes, grouped-query ratios, tied and untied, Qwen2's biases, Llama 3's rotary
//! scaling), the key/value cache, sharded checkpoints, and plain refusals.
use crate::common;

use crate::common::llama_reference::assert_matches_reference;
use saeplay::backend::{block_on, cpu_device, read_f32};
use saeplay::model::files::{HfFiles, HostWeights, ModelFiles};
use saeplay::model::fixtures::{LlamaSpec, tiny_llama_checkpoint, tiny_llama_config};
use saeplay::model::{HookPoint, Hooks, KvCache, LlamaWeights, LogitsFor, Model};

fn ids(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 37 + salt * 11 + 5) % 257)
        .collect()
}

fn load(files: &HfFiles) -> (LlamaWeights, Model) {
    let host = files.parse().unwrap();
    let HostWeights::Llama(weights) = &host.weights else {
        panic!("a Llama checkpoint parses as Llama weights");
    };
    let weights = weights.clone();
    let loaded = host.upload(&cpu_device()).unwrap();
    (weights, loaded.model)
}

#[test]
fn forward_matches_reference_across_shapes() {
    let specs = [
        LlamaSpec::default(),
        // No grouping, tied embeddings.
        LlamaSpec {
            heads: 4,
            kv_heads: 4,
            d_model: 32,
            tied: true,
            seed: 2,
            ..LlamaSpec::default()
        },
        // One key/value head for all (multi-query), three layers, odd MLP width.
        LlamaSpec {
            layers: 3,
            heads: 4,
            kv_heads: 1,
            d_model: 32,
            d_mlp: 37,
            seed: 3,
            ..LlamaSpec::default()
        },
        // Qwen2: q/k/v biases, a padded vocabulary.
        LlamaSpec {
            qwen2: true,
            vocab_padding: 19,
            seed: 4,
            ..LlamaSpec::default()
        },
    ];
    for spec in specs {
        let (weights, model) = load(&tiny_llama_checkpoint(&spec));
        // Float matrices on the CPU run on the host forward; burn's ops are checked too.
        assert!(model.has_host_forward());
        assert_matches_reference(&weights, &model, &ids(19, spec.seed as u32), 1e-4);
        let burn = model.burn_forward_only();
        assert_matches_reference(&weights, &burn, &ids(19, spec.seed as u32), 1e-4);
    }
}

#[test]
fn rope_scaling_and_head_dim_follow_the_config() {
    let spec = LlamaSpec {
        seed: 5,
        ..LlamaSpec::default()
    };
    let mut config = tiny_llama_config(&spec);
    // Llama 3.2's scaling, with a context short enough that it bends the middle frequencies.
    config.rope_scaling = Some(serde_json::json!({
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16
    }));
    config.rope_theta = 500_000.0;
    config.head_dim = Some(12); // 6 heads x 12 = 72, wider than d_model 48
    let weights = LlamaWeights::random(&config, 5);
    let files = HfFiles {
        config_json: config.to_json().into_bytes(),
        shards: vec![weights.to_safetensors()],
        tokenizer_json: None,
    };
    let (weights, model) = load(&files);
    assert_eq!(HookPoint::AttnZ(0).width(model.dims()), 72);
    let inv_freq = config.inv_freq().unwrap();
    let plain: Vec<f64> = (0..6)
        .map(|i| 500_000f64.powf(-(2 * i) as f64 / 12.0))
        .collect();
    assert!(
        inv_freq.iter().zip(&plain).any(|(a, b)| a != b),
        "scaling changed something"
    );
    // transformers' llama3 rule: long wavelengths (over 16 / 1) divided by the factor, short ones
    // (under 16 / 4) kept, those between blended.
    assert!(
        (inv_freq[5] - plain[5] / 32.0).abs() < 1e-15,
        "the lowest frequency is divided"
    );
    let smooth = (16.0 / (2.0 * std::f64::consts::PI) - 1.0) / (4.0 - 1.0);
    let blended = (1.0 - smooth) / 32.0 + smooth;
    assert!(
        (inv_freq[0] - blended).abs() < 1e-12,
        "{} vs {blended}",
        inv_freq[0]
    );
    assert_matches_reference(&weights, &model, &ids(23, 9), 1e-4);

    config.rope_scaling = Some(serde_json::json!({"type": "yarn", "factor": 4.0}));
    let error = saeplay::model::LlamaConfig::from_json(config.to_json().as_bytes()).unwrap_err();
    assert!(error.to_string().contains("yarn"), "{error}");
}

#[test]
fn cached_generation_equals_the_full_forward() {
    let (_, model) = load(&tiny_llama_checkpoint(&LlamaSpec::default()));
    let tokens = ids(12, 3);
    let full = model
        .forward(
            std::slice::from_ref(&tokens),
            &Hooks::none(),
            LogitsFor::AllPositions,
        )
        .unwrap();
    let full = block_on(read_f32(full.logits)).unwrap();
    let vocab = model.dims().d_vocab;
    let mut cache = KvCache::new(model.dims().n_layers);
    let mut pieces = Vec::new();
    for chunk in [&tokens[..5], &tokens[5..6], &tokens[6..]] {
        let out = model
            .forward_cached(
                &[chunk.to_vec()],
                &mut cache,
                &Hooks::none(),
                LogitsFor::AllPositions,
            )
            .unwrap();
        pieces.extend(block_on(read_f32(out.logits)).unwrap());
    }
    assert_eq!(pieces.len(), 12 * vocab);
    let diff = full
        .iter()
        .zip(&pieces)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "cached logits differ by {diff}");
}

#[test]
fn sharded_checkpoints_load_like_one_file() {
    let spec = LlamaSpec {
        seed: 6,
        ..LlamaSpec::default()
    };
    let config = tiny_llama_config(&spec);
    let weights = LlamaWeights::random(&config, 6);
    let names: Vec<&String> = weights.tensors.keys().collect();
    let (first, second) = names.split_at(names.len() / 2);
    let shard = |names: &[&String]| {
        saeplay::io::tensors::write_safetensors(names.iter().map(|n| {
            let t = &weights.tensors[*n];
            (n.as_str(), &t.shape[..], &t.values[..])
        }))
    };
    let dir = tempdir("sharded");
    std::fs::write(dir.join("config.json"), config.to_json()).unwrap();
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), shard(first)).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), shard(second)).unwrap();
    let weight_map: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let file = if i < first.len() { 1 } else { 2 };
            (
                n.to_string(),
                format!("model-0000{file}-of-00002.safetensors").into(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    let files = ModelFiles::read_path(&dir).unwrap();
    let host = files.parse().unwrap();
    let model = host.upload(&cpu_device()).unwrap().model;
    assert_matches_reference(&weights, &model, &ids(9, 2), 1e-4);

    // Named files, as the page gets them, in any order.
    let picked = ModelFiles::from_named_files(vec![
        ("x/model-00002-of-00002.safetensors".into(), shard(second)),
        ("x/config.json".into(), config.to_json().into_bytes()),
        ("x/model-00001-of-00002.safetensors".into(), shard(first)),
    ])
    .unwrap();
    let model = picked.parse().unwrap().upload(&cpu_device()).unwrap().model;
    assert_matches_reference(&weights, &model, &ids(9, 2), 1e-4);

    // Written back out (as the page keeps picked files), the shards come with an index that
    // names every tensor's file, so the folder reads back.
    let named: Vec<String> = picked.named_files().into_iter().map(|(n, _)| n).collect();
    assert!(
        named.contains(&"model.safetensors.index.json".to_string()),
        "{named:?}"
    );
    let again = tempdir("sharded-again");
    picked.write_dir(&again).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(again.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(index["weight_map"].as_object().unwrap().len(), names.len());
    let model = ModelFiles::read_path(&again)
        .unwrap()
        .parse()
        .unwrap()
        .upload(&cpu_device())
        .unwrap()
        .model;
    assert_matches_reference(&weights, &model, &ids(9, 2), 1e-4);
}

#[test]
fn bad_llama_configs_and_weights_are_refused_in_words() {
    let spec = LlamaSpec::default();
    let good = tiny_llama_checkpoint(&spec);
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "kv heads",
            serde_json::json!({"num_key_value_heads": 4}),
            "multiple of num_key_value_heads",
        ),
        (
            "zero layers",
            serde_json::json!({"num_hidden_layers": 0}),
            "at least 1",
        ),
        (
            "huge vocab",
            serde_json::json!({"vocab_size": 1u64 << 40}),
            "more than",
        ),
        ("act", serde_json::json!({"hidden_act": "gelu"}), "silu"),
        (
            "eps",
            serde_json::json!({"rms_norm_eps": -1.0}),
            "rms_norm_eps",
        ),
        ("odd head", serde_json::json!({"head_dim": 7}), "even"),
        ("family", serde_json::json!({"model_type": "bert"}), "bert"),
    ];
    for (what, patch, expected) in cases {
        let mut config: serde_json::Value = serde_json::from_slice(&good.config_json).unwrap();
        for (k, v) in patch.as_object().unwrap() {
            config[k] = v.clone();
        }
        let files = HfFiles {
            config_json: config.to_string().into_bytes(),
            ..good.clone()
        };
        let error = files
            .parse()
            .err()
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(error.to_string().contains(expected), "{what}: {error}");
    }
    // Weights of another shape.
    let other = tiny_llama_checkpoint(&LlamaSpec { d_mlp: 81, ..spec });
    let files = HfFiles {
        shards: other.shards,
        ..good.clone()
    };
    let error = files.parse().err().unwrap();
    assert!(error.to_string().contains("mlp"), "{error}");
    // Processing is GPT-2's only.
    let processing = saeplay::model::WeightProcessing {
        fold_ln: true,
        ..Default::default()
    };
    let error = good.parse().unwrap().process(processing).err().unwrap();
    assert!(error.to_string().contains("GPT-2"), "{error}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("saeplay-llama-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `convert_hf_to_gguf.py`'s permutation of Llama's q/k rows (so llama.cpp can rotate adjacent
/// pairs): reshape `[heads, 2, dh/2, in]`, swap the middle axes.
fn permute_like_llama_cpp(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let dh = rows / heads;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..dh / 2 {
                let hf_row = h * dh + j * (dh / 2) + i;
                let gguf_row = h * dh + i * 2 + j;
                out[gguf_row * cols..(gguf_row + 1) * cols]
                    .copy_from_slice(&values[hf_row * cols..(hf_row + 1) * cols]);
            }
        }
    }
    out
}

/// ggml's `quantize_row_q8_0_ref`: per 32 values, `d = max|x| / 127` (stored as f16) and
/// `q = round(x / d)`.
fn q8_0_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(saeplay::io::gguf::f16_bytes(&[d]));
        out.extend(block.iter().map(|v| ((v * id).round() as i8) as u8));
    }
    out
}

/// ggml's `quantize_row_q4_1_ref`: per 32 values, `d = (max - min) / 15` and `m = min` (both
/// f16), `q = round((x - min) / d)` in 0..=15; value `j` in the low nibble of byte `j`, value
/// `j + 16` in its high nibble.
fn q4_1_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for block in values.chunks_exact(32) {
        let min = block.iter().copied().fold(f32::INFINITY, f32::min);
        let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(saeplay::io::gguf::f16_bytes(&[d, min]));
        let q = |v: f32| ((v - min) * id).round().clamp(0.0, 15.0) as u8;
        out.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
    }
    out
}

/// A Llama checkpoint as llama.cpp's converter writes it: GGUF names, permuted q/k, metadata.
fn to_gguf(weights: &LlamaWeights, arch: &str) -> Vec<u8> {
    to_gguf_as(weights, arch, saeplay::io::gguf::GgmlType::F32)
}

/// [`to_gguf`] with the blocks' matrices stored as `matrices` (F32, F16, Q8_0 or Q4_1).
fn to_gguf_as(
    weights: &LlamaWeights,
    arch: &str,
    matrices: saeplay::io::gguf::GgmlType,
) -> Vec<u8> {
    to_gguf_with_tokenizer(weights, arch, matrices, None)
}

/// A GGUF of `weights`, with `tokenizer` as its `tokenizer.ggml.*` metadata (a byte-level BPE
/// vocabulary of `<tN>` tokens when `None`).
fn to_gguf_with_tokenizer(
    weights: &LlamaWeights,
    arch: &str,
    matrices: saeplay::io::gguf::GgmlType,
    tokenizer: Option<Vec<(String, saeplay::io::gguf::GgufValue)>>,
) -> Vec<u8> {
    use saeplay::io::gguf::{GgmlType, GgufArray, GgufValue, f16_bytes, f32_bytes, write_gguf};
    let c = &weights.config;
    let gguf_name = |hf: &str| -> String {
        if hf == "model.embed_tokens.weight" {
            return "token_embd.weight".into();
        }
        if hf == "model.norm.weight" {
            return "output_norm.weight".into();
        }
        if hf == "lm_head.weight" {
            return "output.weight".into();
        }
        let rest = hf.strip_prefix("model.layers.").unwrap();
        let (layer, name) = rest.split_once('.').unwrap();
        let name = name
            .replace("input_layernorm", "attn_norm")
            .replace("self_attn.q_proj", "attn_q")
            .replace("self_attn.k_proj", "attn_k")
            .replace("self_attn.v_proj", "attn_v")
            .replace("self_attn.o_proj", "attn_output")
            .replace("post_attention_layernorm", "ffn_norm")
            .replace("mlp.gate_proj", "ffn_gate")
            .replace("mlp.up_proj", "ffn_up")
            .replace("mlp.down_proj", "ffn_down");
        format!("blk.{layer}.{name}")
    };
    let mut tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)> = Vec::new();
    for (name, t) in &weights.tensors {
        let mut values = t.values.clone();
        let rows = t.shape[0];
        let cols = t.shape.get(1).copied().unwrap_or(1);
        if arch == "llama" && name.contains("q_proj") {
            values = permute_like_llama_cpp(&values, rows, cols, c.num_attention_heads);
        }
        if arch == "llama" && name.contains("k_proj") {
            values = permute_like_llama_cpp(&values, rows, cols, c.n_kv_heads());
        }
        let ne: Vec<usize> = t.shape.iter().rev().copied().collect();
        let ty = if t.shape.len() == 2 {
            matrices
        } else {
            GgmlType::F32
        };
        let bytes = match ty {
            GgmlType::F16 => f16_bytes(&values),
            GgmlType::Q8_0 => q8_0_bytes(&values),
            GgmlType::Q4_1 => q4_1_bytes(&values),
            _ => f32_bytes(&values),
        };
        tensors.push((gguf_name(name), ne, ty, bytes));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let u32v = |v: usize| GgufValue::U32(v as u32);
    let tokens: Vec<String> = (0..c.vocab_size).map(|i| format!("<t{i}>")).collect();
    let metadata: Vec<(String, GgufValue)> = vec![
        (
            "general.architecture".into(),
            GgufValue::String(arch.into()),
        ),
        (key("block_count"), u32v(c.num_hidden_layers)),
        (key("context_length"), u32v(c.max_position_embeddings)),
        (key("embedding_length"), u32v(c.hidden_size)),
        (key("feed_forward_length"), u32v(c.intermediate_size)),
        (key("attention.head_count"), u32v(c.num_attention_heads)),
        (key("attention.head_count_kv"), u32v(c.n_kv_heads())),
        (
            key("attention.layer_norm_rms_epsilon"),
            GgufValue::F32(c.rms_norm_eps as f32),
        ),
        (key("rope.freq_base"), GgufValue::F32(c.rope_theta as f32)),
        (key("rope.dimension_count"), u32v(c.d_head())),
    ];
    let metadata: Vec<(String, GgufValue)> = metadata
        .into_iter()
        .chain(tokenizer.unwrap_or_else(|| {
            vec![
                (
                    "tokenizer.ggml.model".into(),
                    GgufValue::String("gpt2".into()),
                ),
                (
                    "tokenizer.ggml.pre".into(),
                    GgufValue::String("gpt-2".into()),
                ),
                (
                    "tokenizer.ggml.tokens".into(),
                    GgufValue::Array(GgufArray::String(tokens)),
                ),
                (
                    "tokenizer.ggml.merges".into(),
                    GgufValue::Array(GgufArray::String(vec![])),
                ),
                ("tokenizer.ggml.eos_token_id".into(), u32v(256)),
            ]
        }))
        .collect();
    let metadata: Vec<(&str, GgufValue)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let tensors: Vec<(&str, &[usize], GgmlType, &[u8])> = tensors
        .iter()
        .map(|(n, ne, ty, bytes)| (n.as_str(), &ne[..], *ty, &bytes[..]))
        .collect();
    write_gguf(&metadata, &tensors)
}

#[test]
fn gguf_checkpoints_equal_their_safetensors_originals() {
    for (arch, spec) in [
        (
            "llama",
            LlamaSpec {
                seed: 11,
                ..LlamaSpec::default()
            },
        ),
        (
            "llama",
            LlamaSpec {
                seed: 12,
                tied: true,
                kv_heads: 1,
                ..LlamaSpec::default()
            },
        ),
        (
            "qwen2",
            LlamaSpec {
                seed: 13,
                qwen2: true,
                ..LlamaSpec::default()
            },
        ),
    ] {
        let config = tiny_llama_config(&spec);
        let weights = LlamaWeights::random(&config, spec.seed);
        let bytes = to_gguf(&weights, arch);
        let host = ModelFiles::Gguf(bytes.into()).parse().unwrap();
        let dims = host.dims();
        assert_eq!(dims.n_key_value_heads, spec.kv_heads, "{arch}");
        assert_eq!(dims.eos_token_id, Some(256));
        let parsed = match &host.weights {
            HostWeights::Llama(w) => w.clone(),
            HostWeights::Gpt2(_) => panic!("a GGUF is a Llama-family model"),
        };
        // The same tensors, by Hugging Face name and layout, q/k unpermuted.
        assert_eq!(
            parsed.tensors, weights.tensors,
            "{arch}: weights round-trip"
        );
        let model = host.upload(&cpu_device()).unwrap().model;
        assert_matches_reference(&weights, &model, &ids(15, spec.seed as u32), 1e-4);
    }
}

/// Random weights written as a GGUF with its matrices in `matrices` and parsed back: the spec,
/// the original f32 weights and the parsed model. Rows are whole 32-value blocks: every matrix's
/// input width is a multiple of 32.
fn packed_gguf(
    seed: u64,
    tied: bool,
    matrices: saeplay::io::gguf::GgmlType,
) -> (LlamaSpec, LlamaWeights, saeplay::model::files::HostModel) {
    let spec = LlamaSpec {
        seed,
        d_model: 64,
        heads: 4,
        kv_heads: 2,
        d_mlp: 96,
        tied,
        ..LlamaSpec::default()
    };
    let weights = LlamaWeights::random(&tiny_llama_config(&spec), spec.seed);
    let host = ModelFiles::Gguf(to_gguf_as(&weights, "llama", matrices).into())
        .parse()
        .unwrap();
    (spec, weights, host)
}

/// F16 and Q8_0 matrices (the blocks', the embedding, an untied output matrix) stay packed on
/// the CPU (unpacked at each use) and the forward equals the f64 reference on their unpacked
/// values; each unpacked value is the original within the encoding's rounding; the host holds
/// less than the f32 weights.
#[test]
fn packed_gguf_matrices_run_like_their_unpacked_values() {
    use saeplay::io::gguf::GgmlType;
    for (matrices, tied, rounding, bytes_ratio) in [
        (GgmlType::F16, false, 1e-3, 0.6),
        (GgmlType::Q8_0, true, 1e-2, 0.4),
    ] {
        let (spec, weights, host) = packed_gguf(31, tied, matrices);
        let HostWeights::Llama(parsed) = &host.weights else {
            panic!("a GGUF is a Llama-family model");
        };
        let packed = parsed.quantised.len();
        assert_eq!(
            packed,
            7 * spec.layers + if tied { 1 } else { 2 },
            "{matrices}: every matrix stays packed"
        );
        assert!(parsed.quantised.values().all(|m| m.ggml_type == matrices));
        // Only the matrices shrink; the vectors stay f32.
        let matrix_bytes = |w: &LlamaWeights| {
            w.host_bytes()
                - w.tensors
                    .values()
                    .map(|t| 4 * t.values.len())
                    .sum::<usize>()
        };
        let f32_matrix_bytes: usize = weights
            .tensors
            .iter()
            .filter(|(_, t)| t.shape.len() == 2)
            .map(|(_, t)| 4 * t.values.len())
            .sum();
        assert!(
            (matrix_bytes(parsed) as f64) < bytes_ratio * f32_matrix_bytes as f64,
            "{matrices}: {} bytes packed against {f32_matrix_bytes} as f32",
            matrix_bytes(parsed)
        );
        let unpacked = parsed.clone().dequantised();
        for (name, original) in &weights.tensors {
            let got = &unpacked.tensors[name];
            let scale = original.values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = got
                .values
                .iter()
                .zip(&original.values)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= rounding * scale,
                "{matrices} {name}: off by {worst} (scale {scale})"
            );
        }
        let model = host.upload(&cpu_device()).unwrap().model;
        // 15 positions unpack each matrix whole; 5 take the host path that unpacks row by row.
        assert_matches_reference(&unpacked, &model, &ids(15, 31), 1e-4);
        assert_matches_reference(&unpacked, &model, &ids(5, 32), 1e-4);
    }
}

/// A GGUF's packed matrices on the CPU run on host buffers (`model/llama/host.rs`): its logits
/// and every hook equal the burn forward's on the same packed weights, for many rows (each matrix
/// unpacked for `gemm`) and for one token at a time with the key/value cache (the packed rows
/// dotted as they are), with patches (an add, a replace, a function) and a forward that stops
/// early.
#[test]
fn host_forward_on_packed_weights_equals_the_burn_forward() {
    use saeplay::io::gguf::GgmlType;
    use saeplay::model::{HookContext, PatchOp};
    for (matrices, tied, seed) in [(GgmlType::Q4_1, true, 41), (GgmlType::Q8_0, false, 42)] {
        let (_, _, host) = packed_gguf(seed, tied, matrices);
        let HostWeights::Llama(parsed) = &host.weights else {
            panic!("a GGUF is a Llama-family model");
        };
        let held = parsed.host_bytes() as u64;
        let model = host.upload(&cpu_device()).unwrap().model;
        assert!(model.has_host_forward(), "{matrices}: packed on the CPU");
        // What the page's capture helpers are sized by: the packed bytes, as parsed.
        assert_eq!(model.weight_bytes(), held, "{matrices}");
        let burn = model.clone().burn_forward_only();
        assert!(!burn.has_host_forward());
        let dims = model.dims().clone();
        let read = |t: burn::tensor::Tensor<3>| block_on(read_f32(t)).unwrap();
        let max_diff = common::largest_difference;
        let batch = [ids(11, seed as u32), ids(11, seed as u32 + 1)];
        let every_hook = Hooks::capture(HookPoint::all(&dims));
        for logits_for in [LogitsFor::AllPositions, LogitsFor::LastPosition] {
            let a = model.forward(&batch, &every_hook, logits_for).unwrap();
            let b = burn.forward(&batch, &every_hook, logits_for).unwrap();
            let diff = max_diff(&read(a.logits), &read(b.logits));
            assert!(diff < 1e-4, "{matrices}: logits differ by {diff}");
            assert_eq!(a.captured.len(), b.captured.len());
            for ((hook_a, x), (hook_b, y)) in a.captured.into_iter().zip(b.captured) {
                assert_eq!(hook_a, hook_b);
                assert_eq!(x.dims(), y.dims(), "{hook_a}");
                let diff = max_diff(&read(x), &read(y));
                assert!(diff < 1e-4, "{matrices}: {hook_a} differs by {diff}");
            }
        }
        // A capture that stops after the first block.
        let stop = [HookPoint::ResidPre(1)];
        let (a, b) = (
            model.capture(&batch, &stop).unwrap(),
            burn.capture(&batch, &stop).unwrap(),
        );
        assert!(max_diff(&read(a[0].1.clone()), &read(b[0].1.clone())) < 1e-4);

        let device = cpu_device();
        let d = dims.d_model;
        let steer: Vec<f32> = (0..d).map(|i| (i as f32 - 10.0) / 7.0).collect();
        let d_mlp = HookPoint::MlpPost(1).width(&dims);
        let replace: Vec<f32> = (0..2 * 11 * d_mlp)
            .map(|i| ((i % 13) as f32 - 6.0) / 9.0)
            .collect();
        let patched = Hooks::capture([HookPoint::ResidPost(1)])
            .with_patch(
                HookPoint::ResidMid(0),
                PatchOp::Add(saeplay::backend::float_tensor(steer, [1, 1, d], &device)),
            )
            .with_patch(
                HookPoint::MlpPost(1),
                PatchOp::Replace(saeplay::backend::float_tensor(
                    replace,
                    [2, 11, d_mlp],
                    &device,
                )),
            )
            .with_patch(
                HookPoint::AttnZ(0),
                PatchOp::Map(std::sync::Arc::new(
                    |x: burn::tensor::Tensor<3>, _: HookContext| x * 0.5,
                )),
            );
        let a = model
            .forward(&batch, &patched, LogitsFor::AllPositions)
            .unwrap();
        let b = burn
            .forward(&batch, &patched, LogitsFor::AllPositions)
            .unwrap();
        let plain = model
            .forward(&batch, &Hooks::none(), LogitsFor::AllPositions)
            .unwrap();
        let a_logits = read(a.logits);
        assert!(
            max_diff(&a_logits, &read(plain.logits)) > 1e-2,
            "the patches changed nothing"
        );
        assert!(max_diff(&a_logits, &read(b.logits)) < 1e-4);
        assert!(
            max_diff(
                &read(a.captured[0].1.clone()),
                &read(b.captured[0].1.clone())
            ) < 1e-4
        );

        // One token at a time after a prompt, against the burn forward of the whole sequence.
        let tokens = ids(14, seed as u32 + 2);
        let full = read(
            burn.forward(
                std::slice::from_ref(&tokens),
                &Hooks::none(),
                LogitsFor::AllPositions,
            )
            .unwrap()
            .logits,
        );
        let mut cache = KvCache::new(dims.n_layers);
        let mut pieces = Vec::new();
        for chunk in std::iter::once(&tokens[..9]).chain(tokens[9..].chunks(1)) {
            let out = model
                .forward_cached(
                    &[chunk.to_vec()],
                    &mut cache,
                    &Hooks::none(),
                    LogitsFor::AllPositions,
                )
                .unwrap();
            pieces.extend(read(out.logits));
        }
        let diff = max_diff(&full, &pieces);
        assert!(diff < 1e-4, "{matrices}: cached logits differ by {diff}");
    }
}

/// On wgpu (Mesa lavapipe here) a GGUF's packed matrices, the embedding and an untied output
/// matrix among them, are unpacked at upload, and the forward equals the f64 reference on the
/// unpacked values, as on the CPU.
#[test]
#[ignore = "slow: wgpu on a GPU device (lavapipe here)"]
fn wgpu_unpacks_gguf_matrices_at_upload_and_runs_like_the_reference() {
    use saeplay::io::gguf::GgmlType;
    let Some(device) = common::wgpu_device_unless_skipped("the wgpu half") else {
        return;
    };
    for (matrices, tied) in [(GgmlType::Q8_0, false), (GgmlType::F16, true)] {
        let (_, _, host) = packed_gguf(37, tied, matrices);
        let HostWeights::Llama(parsed) = &host.weights else {
            panic!("a GGUF is a Llama-family model");
        };
        let unpacked = parsed.clone().dequantised();
        let model = host.upload(&device).unwrap().model;
        assert_matches_reference(&unpacked, &model, &ids(12, 33), 1e-4);
    }
}

/// A GGUF with a SentencePiece vocabulary (`tokenizer.ggml.model` "llama", scores, byte tokens,
/// as Llama 2 and TinyLlama ship) loads with its tokenizer: a space prefix, `▁` for spaces, the
/// best-scored merges, byte fallback; and text reads back.
#[test]
fn sentencepiece_gguf_vocabularies_load_with_their_tokenizer() {
    use saeplay::io::gguf::{GgmlType, GgufArray, GgufValue};
    let spec = LlamaSpec {
        seed: 41,
        vocab_padding: 7, // 264 tokens: <unk>, <s>, </s>, 256 bytes and 5 pieces
        ..LlamaSpec::default()
    };
    let weights = LlamaWeights::random(&tiny_llama_config(&spec), spec.seed);
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types: Vec<i32> = vec![2, 3, 3];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.extend([6; 256]);
    // Ids 259..264: ▁, h, i, ▁h, ▁hi.
    let pieces = ["▁", "h", "i", "▁h", "▁hi"];
    tokens.extend(pieces.iter().map(|p| p.to_string()));
    types.extend([1; 5]);
    assert_eq!(tokens.len(), weights.config.vocab_size);
    let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
    let metadata = vec![
        (
            "tokenizer.ggml.model".to_string(),
            GgufValue::String("llama".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            GgufValue::Array(GgufArray::String(tokens)),
        ),
        (
            "tokenizer.ggml.scores".to_string(),
            GgufValue::Array(GgufArray::F32(scores)),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            GgufValue::Array(GgufArray::I32(types)),
        ),
        ("tokenizer.ggml.bos_token_id".to_string(), GgufValue::U32(1)),
        ("tokenizer.ggml.eos_token_id".to_string(), GgufValue::U32(2)),
        (
            "tokenizer.ggml.unknown_token_id".to_string(),
            GgufValue::U32(0),
        ),
        (
            "tokenizer.ggml.add_bos_token".to_string(),
            GgufValue::Bool(true),
        ),
    ];
    let bytes = to_gguf_with_tokenizer(&weights, "llama", GgmlType::F32, Some(metadata));
    let loaded = ModelFiles::Gguf(bytes.into())
        .parse()
        .unwrap()
        .upload(&cpu_device())
        .unwrap();
    let tokenizer = loaded.tokenizer().unwrap();
    // "▁hi▁hi!": ▁ h -> ▁h, ▁h i -> ▁hi, twice; "!" is no token, so its byte <0x21> (id 3 + 0x21).
    let encoded = tokenizer.encode("hi hi!").unwrap();
    assert_eq!(encoded.ids, [263, 263, 3 + 0x21]);
    assert_eq!(tokenizer.decode(&encoded.ids).unwrap(), "hi hi!");
    assert_eq!(tokenizer.token_text(263), "hi");
}

/// Mutated and truncated GGUF models (from a fixed seed) are refused in words or load; none
/// panics, whatever the bytes say (counts, shapes, types, metadata, the tokenizer).
#[test]
fn mutated_gguf_models_never_panic() {
    let spec = LlamaSpec {
        seed: 21,
        layers: 1,
        ..LlamaSpec::default()
    };
    let weights = LlamaWeights::random(&tiny_llama_config(&spec), 21);
    let good = to_gguf(&weights, "llama");
    // The header, metadata and tensor table come first; most mutations land there.
    let table_end = good.len()
        - weights
            .tensors
            .values()
            .map(|t| 4 * t.values.len())
            .sum::<usize>();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut refused, mut loaded) = (0, 0);
    for round in 0..600 {
        let mut bytes = good.clone();
        if round % 6 == 5 {
            bytes.truncate((next() % good.len() as u64) as usize);
        } else {
            for _ in 0..1 + next() % 4 {
                let at = (next() % table_end as u64) as usize;
                bytes[at] = match next() % 3 {
                    0 => next() as u8,
                    1 => 0xFF,
                    _ => bytes[at] ^ (1 << (next() % 8)),
                };
            }
        }
        match ModelFiles::Gguf(bytes.into()).parse() {
            Ok(_) => loaded += 1,
            Err(error) => {
                assert!(!error.to_string().trim().is_empty());
                refused += 1;
            }
        }
    }
    println!("mutated GGUF models: {refused} refused, {loaded} still loaded");
    assert!(
        refused > 300,
        "most mutations break something: {refused} refused"
    );
}

/// A block's tensor declared with no dimensions (a scalar, which GGUF allows) is refused in
/// words: the loader read its first dimension and panicked.
#[test]
fn gguf_tensor_without_dimensions_is_refused() {
    use saeplay::io::gguf::{GgmlType, GgufFile, GgufValue, f32_bytes, write_gguf};
    let spec = LlamaSpec {
        seed: 22,
        layers: 1,
        ..LlamaSpec::default()
    };
    let weights = LlamaWeights::random(&tiny_llama_config(&spec), 22);
    let good = to_gguf(&weights, "llama");
    let file = GgufFile::parse(&good).unwrap();
    let metadata: Vec<(&str, GgufValue)> = file.metadata().map(|(k, v)| (k, v.clone())).collect();
    let scalar = f32_bytes(&[1.0]);
    let tensors: Vec<(&str, &[usize], GgmlType, &[u8])> = file
        .tensors()
        .iter()
        .map(|info| {
            if info.name == "blk.0.attn_norm.weight" {
                (info.name.as_str(), &[][..], GgmlType::F32, &scalar[..])
            } else {
                let data = file.tensor_data(&info.name).unwrap();
                (info.name.as_str(), &info.dims[..], info.ggml_type, data)
            }
        })
        .collect();
    let bytes = write_gguf(&metadata, &tensors);
    let Err(error) = ModelFiles::Gguf(bytes.into()).parse() else {
        panic!("a scalar norm weight was accepted");
    };
    assert!(
        error.to_string().contains("attn_norm") || error.to_string().contains("input_layernorm"),
        "{error}"
    );
}

/// Capture stops after the last block its hooks need, with the same values as a full forward.
#[test]
fn capture_stops_early_with_the_same_values() {
    let (_, model) = load(&tiny_llama_checkpoint(&LlamaSpec {
        layers: 3,
        ..LlamaSpec::default()
    }));
    let batch = vec![ids(10, 1), ids(10, 2)];
    for hooks in [
        vec![HookPoint::ResidPre(1)],
        vec![HookPoint::Embed],
        vec![HookPoint::MlpPost(0), HookPoint::ResidPost(2)],
        vec![HookPoint::LnFinalNormalized],
    ] {
        let full = model
            .forward(
                &batch,
                &Hooks::capture(hooks.clone()),
                LogitsFor::LastPosition,
            )
            .unwrap();
        let captured = model.capture(&batch, &hooks).unwrap();
        assert_eq!(captured.len(), hooks.len());
        for (hook, tensor) in captured {
            let want = block_on(read_f32(full.activation(hook).unwrap().clone())).unwrap();
            assert_eq!(block_on(read_f32(tensor)).unwrap(), want, "{hook}");
        }
    }
}

/// TransformerLens's `start_at_layer` on the Llama forwards: f32 (safetensors) and packed
/// (GGUF) weights, each on the host forward and on burn's ops.
#[test]
fn forward_from_a_block_equals_the_full_forward() {
    let (_, f32_model) = load(&tiny_llama_checkpoint(&LlamaSpec {
        layers: 3,
        ..LlamaSpec::default()
    }));
    assert!(f32_model.has_host_forward(), "safetensors on the CPU");
    common::assert_forward_from_equals_the_full_forward(&f32_model, "Llama f32, host forward");
    let burn = f32_model.burn_forward_only();
    common::assert_forward_from_equals_the_full_forward(&burn, "Llama f32, burn's ops");
    let (_, _, host) = packed_gguf(43, false, saeplay::io::gguf::GgmlType::Q8_0);
    let packed = host.upload(&cpu_device()).unwrap().model;
    assert!(packed.has_host_forward());
    common::assert_forward_from_equals_the_full_forward(&packed, "Llama Q8_0, host forward");
    let burn = packed.burn_forward_only();
    common::assert_forward_from_equals_the_full_forward(&burn, "Llama Q8_0, burn's ops");
}
