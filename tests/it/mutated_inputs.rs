//! Every parser of outside input, fed valid inputs mutated from a fixed seed (byte flips,
//! truncations, insertions, copied spans, boundary numbers in JSON): none may panic, and every
//! refusal is a sentence. A panic in wasm kills the page, so this is the page's safety net too.

use std::panic::{AssertUnwindSafe, catch_unwind};

use saeplay::io::tensors::{read_f32_tensors, write_safetensors};
use saeplay::io::zip::{read_zip, write_zip};
use saeplay::model::Gpt2Config;
use saeplay::model::fixtures::{TinySpec, tiny_checkpoint};
use saeplay::rng::SplitMix64;
use saeplay::sae::saelens::SaeFiles;
use saeplay::tokenizer::TextTokenizer;
use saeplay::ui::link::parse_fragment;
use saeplay::ui::train_form::TrainForm;

/// Mutated cases per parser (about a second in all in release).
const CASES: usize = 3000;

/// Numbers a JSON mutation drops in place of another: zero, one, huge, negative, fractional.
const BOUNDARY: [&str; 8] = [
    "0",
    "1",
    "-1",
    "4294967296",
    "18446744073709551615",
    "1e308",
    "0.5",
    "null",
];

/// A whole number in `0..n` (0 when n is 0).
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

fn mutate(input: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + below(rng, 4);
    for _ in 0..rounds {
        let len = out.len().max(1);
        match below(rng, 6) {
            0 => {
                let at = below(rng, len).min(out.len().saturating_sub(1));
                if let Some(byte) = out.get_mut(at) {
                    *byte ^= 1 << below(rng, 8);
                }
            }
            1 => out.truncate(below(rng, len)),
            2 => {
                let at = below(rng, len + 1).min(out.len());
                out.insert(at, below(rng, 256) as u8);
            }
            3 => {
                // Copy a span over another place (duplicated names, repeated headers).
                let from = below(rng, len).min(out.len());
                let to = below(rng, len).min(out.len());
                let n = below(rng, 16).min(out.len() - from).min(out.len() - to);
                let span = out[from..from + n].to_vec();
                out[to..to + n].copy_from_slice(&span);
            }
            4 => {
                // Replace a run of digits with a boundary number.
                let text = String::from_utf8_lossy(&out).into_owned();
                let digits: Vec<usize> = text
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&start) = digits.get(below(rng, digits.len().max(1))) {
                    let end = text[start..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(text.len(), |n| start + n);
                    let number = BOUNDARY[below(rng, BOUNDARY.len())];
                    out = format!("{}{}{}", &text[..start], number, &text[end..]).into_bytes();
                }
            }
            _ => {
                let at = below(rng, len).min(out.len());
                let byte = [0u8, 0xff, b'"', b'{', b'[', b'\\', b','][below(rng, 7)];
                if at < out.len() {
                    out[at] = byte;
                }
            }
        }
    }
    out
}

/// Run `parse` on `CASES` mutations of each seed input; fail on any panic or empty refusal.
fn survive<E: std::fmt::Display>(
    what: &str,
    seeds: &[Vec<u8>],
    salt: u64,
    parse: impl Fn(&[u8]) -> Result<(), E>,
) {
    let mut rng = SplitMix64::new(0x5ae_0000 + salt);
    let (mut refused, mut accepted) = (0, 0);
    for case in 0..CASES {
        let seed = &seeds[case % seeds.len()];
        let input = mutate(seed, &mut rng);
        match catch_unwind(AssertUnwindSafe(|| parse(&input))) {
            Err(_) => panic!(
                "{what}: case {case} panicked on a {}-byte input: {:?}",
                input.len(),
                String::from_utf8_lossy(&input[..input.len().min(300)])
            ),
            Ok(Err(e)) => {
                let message = e.to_string();
                assert!(
                    message.trim().len() > 8,
                    "{what}: case {case} refused without a sentence: {message:?}"
                );
                refused += 1;
            }
            Ok(Ok(())) => accepted += 1,
        }
    }
    eprintln!("{what}: {CASES} mutated cases, {refused} refused in words, {accepted} accepted");
    assert!(
        refused > 0,
        "{what}: the mutations never produced a bad input"
    );
}

#[test]
fn safetensors_files() {
    let files = tiny_checkpoint(&TinySpec::default());
    let small =
        write_safetensors([("x", &[2usize, 3][..], &[1.0f32, 2., 3., 4., 5., 6.][..])].into_iter());
    survive(
        "safetensors",
        &[small, files.shards[0].clone()],
        1,
        |bytes| read_f32_tensors(bytes).map(|_| ()),
    );
}

#[test]
fn model_config_json() {
    let files = tiny_checkpoint(&TinySpec::default());
    survive(
        "config.json",
        std::slice::from_ref(&files.config_json),
        2,
        |bytes| Gpt2Config::from_json(bytes).map(|_| ()),
    );
}

#[test]
fn whole_models() {
    let files = tiny_checkpoint(&TinySpec {
        n_layer: 1,
        n_embd: 8,
        n_head: 2,
        n_positions: 8,
        ..TinySpec::default()
    });
    // Mutate one file of the three at a time.
    survive(
        "model files",
        std::slice::from_ref(&files.config_json),
        3,
        |bytes| {
            let mut f = files.clone();
            f.config_json = bytes.to_vec();
            f.parse().map(|_| ())
        },
    );
    survive(
        "model weights",
        std::slice::from_ref(&files.shards[0]),
        4,
        |bytes| {
            let mut f = files.clone();
            f.shards[0] = bytes.to_vec();
            f.parse().map(|_| ())
        },
    );
}

#[test]
fn tokenizer_json_and_encoding() {
    let files = tiny_checkpoint(&TinySpec::default());
    survive(
        "tokenizer.json",
        std::slice::from_ref(files.tokenizer_json.as_ref().unwrap()),
        5,
        |bytes| {
            let tokenizer = TextTokenizer::from_bytes(bytes)?;
            tokenizer.encode("Once upon a time, a fox.")?;
            Ok::<_, saeplay::SaeplayError>(())
        },
    );
}

fn sae_seed_files() -> SaeFiles {
    let (d, m) = (4usize, 8usize);
    let cfg = serde_json::json!({
        "architecture": "topk", "k": 2, "d_in": d, "d_sae": m, "dtype": "float32",
        "apply_b_dec_to_input": true, "normalize_activations": "none",
        "metadata": {"model_name": "tiny", "hook_name": "blocks.0.hook_resid_pre",
                     "model_from_pretrained_kwargs": {"center_writing_weights": true}}
    });
    let values = |n: usize| (0..n).map(|i| i as f32 / n as f32).collect::<Vec<f32>>();
    let tensors = [
        ("W_enc", vec![d, m], values(d * m)),
        ("b_enc", vec![m], values(m)),
        ("W_dec", vec![m, d], values(m * d)),
        ("b_dec", vec![d], values(d)),
    ];
    SaeFiles {
        cfg: cfg.to_string().into_bytes(),
        weights: write_safetensors(
            tensors
                .iter()
                .map(|(n, s, v)| (*n, s.as_slice(), v.as_slice())),
        ),
        sparsity: None,
        saeplay: None,
    }
}

#[test]
fn saelens_cfg_and_weights() {
    let files = sae_seed_files();
    survive(
        "SAE cfg.json",
        std::slice::from_ref(&files.cfg),
        6,
        |bytes| {
            let mut f = files.clone();
            f.cfg = bytes.to_vec();
            f.parse().map(|_| ())
        },
    );
    survive(
        "SAE weights",
        std::slice::from_ref(&files.weights),
        7,
        |bytes| {
            let mut f = files.clone();
            f.weights = bytes.to_vec();
            f.parse().map(|_| ())
        },
    );
}

#[test]
fn zip_archives() {
    let files = sae_seed_files();
    let zip = write_zip(&[
        ("sae/cfg.json".into(), files.cfg.clone()),
        ("sae/sae_weights.safetensors".into(), files.weights.clone()),
    ]);
    let deflated = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/deflated.zip"
    ))
    .unwrap();
    survive("zip", &[zip.clone(), deflated], 8, |bytes| {
        read_zip(bytes).map(|_| ())
    });
    survive("SAE zip import", &[zip], 9, |bytes| {
        SaeFiles::from_named_files(vec![("sae.zip".into(), bytes.to_vec())]).map(|_| ())
    });
}

#[test]
fn links_and_recipes() {
    let link = "view=steer&sae=blocks.2.hook_resid_pre-topk16&feature=730&steer=730:add:8,12:clamp:3,5:ablate&prompt=Once%20upon&backend=cpu";
    survive("link fragment", &[link.as_bytes().to_vec()], 10, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let (_, problems) = parse_fragment(&text);
        match problems.first() {
            Some(problem) => Err(problem.clone()),
            None => Ok(()),
        }
    });
    let recipe = TrainForm::default().recipe();
    survive("recipe", &[recipe.into_bytes()], 11, |bytes| {
        TrainForm::from_recipe(&String::from_utf8_lossy(bytes)).map(|_| ())
    });
}

/// Found by the loop above: a truncated decoder made the tokenizers crate panic. And a file's
/// padding must not make one encode allocate gigabytes.
#[test]
fn tokenizer_regressions() {
    let files = tiny_checkpoint(&TinySpec::default());
    let text = String::from_utf8(files.tokenizer_json.clone().unwrap()).unwrap();
    let cut = text.find("\"decoder\"").unwrap() + 40;
    let err = TextTokenizer::from_bytes(&text.as_bytes()[..cut])
        .err()
        .expect("a truncated file is refused")
        .to_string();
    assert!(err.contains("not valid JSON"), "{err}");

    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["padding"] = serde_json::json!({
        "strategy": {"Fixed": 4_000_000_000u64}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 0, "pad_type_id": 0, "pad_token": "<|endoftext|>"
    });
    json["truncation"] = serde_json::json!({
        "direction": "Right", "max_length": 1, "strategy": "LongestFirst", "stride": 0
    });
    let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
    let plain = TextTokenizer::from_bytes(text.as_bytes()).unwrap();
    let ids = tokenizer.encode("abc").unwrap().ids;
    assert_eq!(ids.len(), 3, "neither padded nor truncated: {ids:?}");
    assert_eq!(ids, plain.encode("abc").unwrap().ids);

    json["normalizer"] = serde_json::json!({"type": "Precompiled", "precompiled_charsmap": "%%"});
    let err = TextTokenizer::from_bytes(json.to_string().as_bytes())
        .err()
        .expect("a Precompiled normalizer is refused")
        .to_string();
    assert!(err.contains("Precompiled"), "{err}");
}

#[test]
fn llama_config_and_checkpoints() {
    use saeplay::model::LlamaConfig;
    use saeplay::model::fixtures::{LlamaSpec, tiny_llama_checkpoint};
    let files = tiny_llama_checkpoint(&LlamaSpec::default());
    survive(
        "Llama config.json",
        std::slice::from_ref(&files.config_json),
        12,
        |bytes| LlamaConfig::from_json(bytes).map(|_| ()),
    );
    survive(
        "Llama model files",
        std::slice::from_ref(&files.config_json),
        13,
        |bytes| {
            let mut f = files.clone();
            f.config_json = bytes.to_vec();
            f.parse().map(|_| ())
        },
    );
}

/// A circuit-tracer graph as Neuronpedia serves it: parsed, then drawn both ways and each node
/// described, as the Circuits view does with a file a person opens.
#[test]
fn circuit_graph_json() {
    use saeplay::sae::circuits::file::GraphFile;
    use saeplay::ui::circuits::{
        CircuitsState, attribution_picture, cross_layer_picture, node_details, node_title,
    };
    let graph = serde_json::json!({
        "metadata": {"slug": "once", "scan": "builtin", "transcoder_list": [],
                     "prompt_tokens": ["Once", " upon"], "prompt": "Once upon",
                     "node_threshold": 0.8, "schema_version": 1},
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sortBy": ""},
        "nodes": [
            {"node_id": "E_7_0", "feature": 7, "layer": "E", "ctx_idx": 0, "feature_type": "embedding",
             "jsNodeId": "E_7-0", "clerp": "", "influence": 0.5, "activation": 1.0},
            {"node_id": "1_12_1", "feature": 90, "layer": "1", "ctx_idx": 1,
             "feature_type": "cross layer transcoder", "jsNodeId": "1_12-1", "influence": 0.4, "activation": 2.5},
            {"node_id": "1_-1_1", "feature": -1, "layer": "1", "ctx_idx": 1,
             "feature_type": "residual reconstruction error", "jsNodeId": "1_-1-1", "influence": 0.2},
            {"node_id": "5_9_1", "feature": 9, "layer": "5", "ctx_idx": 1, "feature_type": "logit",
             "token_prob": 0.6, "is_target_logit": true, "jsNodeId": "L_9-1", "clerp": "Output \" a\" (p=0.600)"}
        ],
        "links": [
            {"source": "E_7_0", "target": "1_12_1", "weight": 1.5},
            {"source": "1_12_1", "target": "5_9_1", "weight": -0.75},
            {"source": "1_-1_1", "target": "5_9_1", "weight": 0.25}
        ]
    });
    survive(
        "circuit graph JSON",
        &[graph.to_string().into_bytes()],
        14,
        |bytes| {
            let file = GraphFile::parse(bytes)?;
            let state = CircuitsState::default();
            attribution_picture(&file, &state);
            cross_layer_picture(&file, &state);
            for (i, node) in file.nodes.iter().enumerate() {
                node_title(&file, i);
                node_details(&file, &node.node_id);
            }
            Ok::<_, saeplay::SaeplayError>(())
        },
    );
}

/// The shipped SAEs' list and an SAE's `saeplay.json` (metrics, recipe, training text).
#[test]
fn shipped_index_and_saeplay_json() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/builtin/saes");
    let index = std::fs::read(format!("{dir}/index.json")).unwrap();
    survive("shipped index.json", &[index], 15, |bytes| {
        saeplay::ui::lab::shipped_slots(bytes, "models/builtin/").map(|_| ())
    });
    survive(
        "stored SAE index entry",
        &[br#"{"id": "tab-1a2b", "label": "blocks.2.hook_resid_pre topk16 x8", "hook_name": "blocks.2.hook_resid_pre", "architecture": "topk", "d_sae": 1024, "l0": 16.0, "cossim": 0.98}"#.to_vec()],
        17,
        |bytes| saeplay::ui::lab::stored_slot(bytes).map(|_| ()),
    );
    let files = sae_seed_files();
    let saeplay_json =
        std::fs::read(format!("{dir}/blocks.2.hook_resid_pre-topk16/saeplay.json")).unwrap();
    survive("SAE saeplay.json", &[saeplay_json], 16, |bytes| {
        let mut f = files.clone();
        f.saeplay = Some(bytes.to_vec());
        f.parse().map(|_| ())
    });
}
