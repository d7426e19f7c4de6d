//! A Llama-family model from a llama.cpp GGUF file: the metadata becomes a [`LlamaConfig`], the
//! tensors take their Hugging Face names and layout, and the `tokenizer.ggml.*` vocabulary
//! becomes a `tokenizer.json`.
//!
//! The blocks' matrices stay in the file's encoding ([`QuantisedMatrix`]); the device they are
//! uploaded to decides whether they are unpacked once or at each use (see [`super::packs_on`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::config::LlamaConfig;
use super::weights::{EMBED, FINAL_NORM, LM_HEAD, LlamaWeights, layer_prefix};
use crate::error::{Result, SaeplayError};
use crate::io::gguf::{GgmlType, GgufFile, GgufTensorInfo};
use crate::io::tensors::HostTensor;
use crate::kernels::QuantisedMatrix;
use crate::tokenizer::TextTokenizer;
use crate::tokenizer::gguf::{GgufVocab, tokenizer_json};

/// The architectures (`general.architecture`) read here.
const ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "mistral"];

fn refused(why: String) -> SaeplayError {
    SaeplayError::GgufModel(why)
}

/// Parse a GGUF file into checked host weights and its tokenizer. Packed matrices are views of
/// `bytes` (the file stays in memory as long as they do, and nothing is copied).
pub fn read_gguf(bytes: &Bytes) -> Result<(LlamaWeights, Option<TextTokenizer>)> {
    let file = GgufFile::parse(bytes)?;
    let arch = file
        .get_str("general.architecture")?
        .ok_or_else(|| refused("has no general.architecture".into()))?
        .to_string();
    if !ARCHITECTURES.contains(&arch.as_str()) {
        return Err(refused(format!(
            "holds a `{arch}` model; saeplay runs GGUFs of the Llama family ({})",
            ARCHITECTURES.join(", ")
        )));
    }
    let config = config_from_metadata(&file, &arch)?;
    let weights = weights_from_tensors(&file, bytes, &arch, config)?;
    let tokenizer = tokenizer_from_metadata(&file)?;
    Ok((weights, tokenizer))
}

fn config_from_metadata(file: &GgufFile<'_>, arch: &str) -> Result<LlamaConfig> {
    let key = |name: &str| format!("{arch}.{name}");
    let required = |name: &str| -> Result<usize> {
        let value = file
            .get_u64(&key(name))?
            .ok_or_else(|| refused(format!("lacks the metadata `{}`", key(name))))?;
        usize::try_from(value).map_err(|_| {
            refused(format!(
                "declares `{}` = {value}, which is too large",
                key(name)
            ))
        })
    };
    let optional = |name: &str| -> Result<Option<usize>> {
        match file.get_u64(&key(name))? {
            None => Ok(None),
            Some(value) => usize::try_from(value).map(Some).map_err(|_| {
                refused(format!(
                    "declares `{}` = {value}, which is too large",
                    key(name)
                ))
            }),
        }
    };
    let embed = file
        .tensor_info("token_embd.weight")
        .ok_or_else(|| refused("lacks the tensor `token_embd.weight`".into()))?;
    let vocab = match optional("vocab_size")? {
        Some(vocab) => vocab,
        None => *embed
            .dims
            .get(1)
            .ok_or_else(|| refused("has a token_embd.weight that is not a matrix".into()))?,
    };
    let heads = required("attention.head_count")?;
    let mut config = LlamaConfig::new(
        vocab,
        required("embedding_length")?,
        required("feed_forward_length")?,
        required("block_count")?,
        heads,
        optional("attention.head_count_kv")?.unwrap_or(heads),
    );
    config.model_type = arch.to_string();
    config.extra.insert(
        "architectures".into(),
        serde_json::json!([if arch == "qwen2" {
            "Qwen2ForCausalLM"
        } else {
            "LlamaForCausalLM"
        }]),
    );
    config.head_dim = optional("attention.key_length")?;
    config.max_position_embeddings = required("context_length")?;
    if let Some(eps) = file.get_f64(&key("attention.layer_norm_rms_epsilon"))? {
        config.rms_norm_eps = eps;
    }
    if let Some(theta) = file.get_f64(&key("rope.freq_base"))? {
        config.rope_theta = theta;
    }
    config.tie_word_embeddings = file.tensor_info("output.weight").is_none();
    config.attention_bias = arch != "qwen2" && file.tensor_info("blk.0.attn_q.bias").is_some();
    let special = |name: &str| -> Result<Option<serde_json::Value>> {
        Ok(file
            .get_u64(&format!("tokenizer.ggml.{name}"))?
            .map(serde_json::Value::from))
    };
    config.bos_token_id = special("bos_token_id")?;
    config.eos_token_id = special("eos_token_id")?;
    match file.get_str(&key("rope.scaling.type"))? {
        None | Some("none") => {}
        Some("linear") => {
            let factor = file.get_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0);
            config.rope_scaling =
                Some(serde_json::json!({"rope_type": "linear", "factor": factor}));
        }
        Some(other) => {
            return Err(refused(format!(
                "uses rope scaling `{other}`, which saeplay does not support (none and linear are)"
            )));
        }
    }
    if file.tensor_info("rope_freqs.weight").is_some() {
        config.rope_freq_factors = Some(file.dequantize("rope_freqs.weight")?);
    }
    config.validate()?;
    if let Some(rotary) = optional("rope.dimension_count")?
        && rotary != config.d_head()
    {
        return Err(refused(format!(
            "rotates {rotary} of each head's {} dimensions; saeplay supports full rotary embeddings only",
            config.d_head()
        )));
    }
    Ok(config)
}

/// The Hugging Face name of a GGUF tensor (llama.cpp's `convert_hf_to_gguf.py` names, reversed).
fn hf_name(gguf: &str) -> Option<String> {
    Some(match gguf {
        "token_embd.weight" => EMBED.to_string(),
        "output_norm.weight" => FINAL_NORM.to_string(),
        "output.weight" => LM_HEAD.to_string(),
        _ => {
            let rest = gguf.strip_prefix("blk.")?;
            let (layer, name) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let (base, kind) = name.rsplit_once('.')?;
            let hf = match base {
                "attn_norm" => "input_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_norm" => "post_attention_layernorm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("{}{hf}.{kind}", layer_prefix(layer))
        }
    })
}

/// Undo `convert_hf_to_gguf.py`'s permutation of Llama's q and k rows (llama.cpp rotates
/// adjacent pairs, transformers rotates halves): GGUF row `h*dh + 2i + j` is row
/// `h*dh + j*dh/2 + i` of the Hugging Face weight.
/// llama.cpp's converter permutes q and k rows per head (interleaved rotary pairs); this maps
/// each row of the Hugging Face layout (halves) to the GGUF row it comes from.
fn unpermuted_source(rows: usize, heads: usize) -> Result<impl Fn(usize) -> usize> {
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return Err(refused(format!(
            "has a query or key tensor of {rows} rows that does not split into {heads} heads of even width"
        )));
    }
    let dh = rows / heads;
    let half = dh / 2;
    Ok(move |r: usize| {
        let (h, k) = (r / dh, r % dh);
        h * dh + 2 * (k % half) + k / half
    })
}

/// Matrices stay packed when the file packs them (the blocks', the embedding and the output
/// matrix); vectors are unpacked.
fn stays_packed(info: &GgufTensorInfo) -> bool {
    info.dims.len() == 2 && info.ggml_type != GgmlType::F32
}

fn weights_from_tensors(
    file: &GgufFile<'_>,
    bytes: &Bytes,
    arch: &str,
    config: LlamaConfig,
) -> Result<LlamaWeights> {
    let mut tensors = BTreeMap::new();
    let mut quantised = BTreeMap::new();
    let permuted = arch != "qwen2"; // Qwen2 is converted unpermuted (llama.cpp rotates it NeoX-style)
    for info in file.tensors() {
        let Some(name) = hf_name(&info.name) else {
            continue; // rope_freqs (read into the config) and anything the forward does not use
        };
        // GGUF lists dimensions fastest first: ne = [in, out] is torch's [out, in].
        let shape: Vec<usize> = info.dims.iter().rev().copied().collect();
        let heads = if !permuted || shape.len() > 2 {
            None
        } else if name.contains("q_proj") {
            Some(config.num_attention_heads)
        } else if name.contains("k_proj") {
            Some(config.n_kv_heads())
        } else {
            None
        };
        // A scalar (no dimensions, which GGUF allows) is one row; the shape check refuses it.
        let rows = shape.first().copied().unwrap_or(1);
        let cols = shape.get(1).copied().unwrap_or(1);
        if stays_packed(info) {
            let data = bytes.slice_ref(file.tensor_data(&info.name)?);
            let mut matrix = QuantisedMatrix::new(info.ggml_type, rows, cols, data)?;
            if let Some(heads) = heads {
                matrix = matrix.reorder_rows(unpermuted_source(rows, heads)?);
            }
            quantised.insert(name, matrix);
            continue;
        }
        let mut values = file.dequantize(&info.name)?;
        if let Some(heads) = heads {
            let source = unpermuted_source(rows, heads)?;
            let mut out = vec![0.0f32; values.len()];
            for (r, row) in out.chunks_exact_mut(cols).enumerate() {
                let s = source(r);
                row.copy_from_slice(&values[s * cols..(s + 1) * cols]);
            }
            values = out;
        }
        tensors.insert(name, HostTensor { shape, values });
    }
    LlamaWeights::checked(config, tensors, quantised)
}

fn tokenizer_from_metadata(file: &GgufFile<'_>) -> Result<Option<TextTokenizer>> {
    let Some(model) = file.get_str("tokenizer.ggml.model")? else {
        return Ok(None);
    };
    let id = |name: &str| -> Result<Option<u32>> {
        file.get_u64(&format!("tokenizer.ggml.{name}"))?
            .map(|v| {
                u32::try_from(v)
                    .map_err(|_| refused(format!("declares a {name} of {v}, out of range")))
            })
            .transpose()
    };
    let strings = |name: &str| -> Result<Vec<String>> {
        Ok(file
            .get_string_array(&format!("tokenizer.ggml.{name}"))?
            .map(|a| a.to_vec())
            .unwrap_or_default())
    };
    let vocab = GgufVocab {
        model: model.to_string(),
        pre: file.get_str("tokenizer.ggml.pre")?.map(str::to_string),
        tokens: strings("tokens")?,
        token_types: file.get_i64_array("tokenizer.ggml.token_type")?,
        merges: strings("merges")?,
        scores: file.get_f32_array("tokenizer.ggml.scores")?,
        add_space_prefix: file
            .get_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(true),
        bos: id("bos_token_id")?,
        eos: id("eos_token_id")?,
        unk: id("unknown_token_id")?,
        pad: id("padding_token_id")?,
        add_bos: file
            .get_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(false),
    };
    let json = tokenizer_json(&vocab).map_err(SaeplayError::GgufTokenizer)?;
    Ok(Some(TextTokenizer::from_bytes(json.as_bytes())?))
}
