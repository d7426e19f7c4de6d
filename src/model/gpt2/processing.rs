//! TransformerLens's weight processing (`HookedTransformer.from_pretrained`'s `fold_ln`,
//! `center_writing_weights`, `center_unembed`, `fold_value_biases`), done on the host weights
//! in the Hugging Face GPT-2 layout, with TransformerLens's formulas and order.
//!
//! None of them changes what the model predicts (`center_unembed` shifts each position's logits
//! by a constant, which the softmax ignores), but they change the activations at hook points:
//! an SAE trained on a processed model (SAELens records it in `cfg.json` as
//! `metadata.model_from_pretrained_kwargs`) reads the processed activations.
//!
//! The layout: `c_attn.weight` is `[d, 3d]` (Q | K | V, head `h` in columns `h*d_head..`), Conv1D
//! `[in, out]` like every linear weight here. The unembedding TransformerLens calls `W_U`
//! `[d, vocab]` and `b_U` are kept as `lm_head.weight` `[vocab, d]` and `lm_head.bias` `[vocab]`
//! once processing makes them differ from the tied embedding (GPT-2 has no unembedding bias).

use serde::{Deserialize, Serialize};

use super::weights::Gpt2Weights;
use crate::io::tensors::HostTensor;

/// Untied unembedding, `[vocab, d]` (TransformerLens's `W_U` transposed).
pub const LM_HEAD_WEIGHT: &str = "lm_head.weight";
/// Unembedding bias, `[vocab]` (TransformerLens's `b_U`).
pub const LM_HEAD_BIAS: &str = "lm_head.bias";

/// Which of TransformerLens's processing steps to apply. Field names are TransformerLens's keyword
/// arguments, so SAELens's `model_from_pretrained_kwargs` deserialises into it directly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WeightProcessing {
    pub fold_ln: bool,
    pub center_writing_weights: bool,
    pub center_unembed: bool,
    pub fold_value_biases: bool,
}

impl WeightProcessing {
    /// What `HookedTransformer.from_pretrained` does when not told otherwise.
    pub const TRANSFORMER_LENS_DEFAULT: Self = Self {
        fold_ln: true,
        center_writing_weights: true,
        center_unembed: true,
        fold_value_biases: true,
    };

    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }

    /// The steps in force, by their TransformerLens names (`none` when there are none).
    pub fn describe(self) -> String {
        let names: Vec<&str> = [
            (self.fold_ln, "fold_ln"),
            (self.center_writing_weights, "center_writing_weights"),
            (self.center_unembed, "center_unembed"),
            (self.fold_value_biases, "fold_value_biases"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Process `weights` in place, in TransformerLens's order: fold_ln, center_writing_weights,
    /// center_unembed, fold_value_biases.
    pub fn apply(self, weights: &mut Gpt2Weights) {
        if self.is_none() {
            return;
        }
        untie_unembedding(weights);
        if self.fold_ln {
            fold_layer_norms(weights);
        }
        if self.center_writing_weights {
            center_writing_weights(weights);
        }
        if self.center_unembed {
            let w_u = tensor(weights, LM_HEAD_WEIGHT); // [vocab, d]: centre each column over vocab
            center_columns(w_u);
            let b_u = tensor(weights, LM_HEAD_BIAS);
            let mean = mean(&b_u.values);
            b_u.values.iter_mut().for_each(|v| *v -= mean);
        }
        if self.fold_value_biases {
            fold_value_biases(weights);
        }
    }
}

fn tensor<'a>(weights: &'a mut Gpt2Weights, name: &str) -> &'a mut HostTensor {
    weights
        .tensors
        .get_mut(name)
        .unwrap_or_else(|| panic!("weights were validated to hold `{name}`"))
}

fn mean(values: &[f32]) -> f32 {
    (values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64) as f32
}

/// `W_U = wte^T` and `b_U = 0`, stored apart so that later steps can change them alone.
fn untie_unembedding(weights: &mut Gpt2Weights) {
    if !weights.tensors.contains_key(LM_HEAD_WEIGHT) {
        let wte = weights.get("wte.weight").clone();
        weights.tensors.insert(LM_HEAD_WEIGHT.into(), wte);
    }
    if !weights.tensors.contains_key(LM_HEAD_BIAS) {
        let vocab = weights.config.vocab_size;
        weights.tensors.insert(
            LM_HEAD_BIAS.into(),
            HostTensor {
                shape: vec![vocab],
                values: vec![0.0; vocab],
            },
        );
    }
}

/// A layer norm `(w, b)` folded into the `[d, out]` weight and `[out]` bias that read its output:
/// `b += b_ln @ W`, `W = diag(w_ln) W`, then each output column centred over `d` (the normalised
/// input has mean zero, so a column's mean never mattered). The norm keeps `w = 1`, `b = 0`:
/// TransformerLens's `LayerNormPre`.
fn fold_norm_into(weights: &mut Gpt2Weights, norm: &str, reader_weight: &str, reader_bias: &str) {
    let gain = weights.get(&format!("{norm}.weight")).values.clone();
    let shift = weights.get(&format!("{norm}.bias")).values.clone();
    let matrix = weights.get(reader_weight).clone();
    let [rows, cols] = matrix.shape[..] else {
        unreachable!("reader weights are matrices")
    };
    let bias = tensor(weights, reader_bias);
    for (j, b) in bias.values.iter_mut().enumerate() {
        let extra: f64 = (0..rows)
            .map(|i| f64::from(matrix.values[i * cols + j]) * f64::from(shift[i]))
            .sum();
        *b = (f64::from(*b) + extra) as f32;
    }
    let folded = tensor(weights, reader_weight);
    for (row, g) in folded.values.chunks_exact_mut(cols).zip(&gain) {
        row.iter_mut().for_each(|v| *v *= g);
    }
    center_columns(folded);
    tensor(weights, &format!("{norm}.weight")).values.fill(1.0);
    tensor(weights, &format!("{norm}.bias")).values.fill(0.0);
}

/// Fold `ln_1` into Q, K and V, `ln_2` into the MLP's input, and `ln_f` into the unembedding.
fn fold_layer_norms(weights: &mut Gpt2Weights) {
    for l in 0..weights.config.n_layer {
        let p = format!("h.{l}.");
        fold_norm_into(
            weights,
            &format!("{p}ln_1"),
            &format!("{p}attn.c_attn.weight"),
            &format!("{p}attn.c_attn.bias"),
        );
        fold_norm_into(
            weights,
            &format!("{p}ln_2"),
            &format!("{p}mlp.c_fc.weight"),
            &format!("{p}mlp.c_fc.bias"),
        );
    }
    // The unembedding reads `ln_f` through `lm_head.weight` `[vocab, d]`, i.e. W_U^T: fold on
    // W_U `[d, vocab]` and store it back transposed.
    let mut w_u = transpose(weights.get(LM_HEAD_WEIGHT));
    std::mem::swap(tensor(weights, LM_HEAD_WEIGHT), &mut w_u);
    fold_norm_into(weights, "ln_f", LM_HEAD_WEIGHT, LM_HEAD_BIAS);
    let folded = transpose(weights.get(LM_HEAD_WEIGHT));
    *tensor(weights, LM_HEAD_WEIGHT) = folded;
}

/// Every matrix that writes to the residual stream (W_E, W_pos, W_O, W_out) loses its mean over
/// d_model, and so do their biases (b_O, b_out): the stream then has mean zero at every position.
fn center_writing_weights(weights: &mut Gpt2Weights) {
    let mut names = vec!["wte.weight".to_string(), "wpe.weight".to_string()];
    for l in 0..weights.config.n_layer {
        names.push(format!("h.{l}.attn.c_proj.weight"));
        names.push(format!("h.{l}.mlp.c_proj.weight"));
    }
    for name in &names {
        center_rows(tensor(weights, name));
    }
    for l in 0..weights.config.n_layer {
        for name in [
            format!("h.{l}.attn.c_proj.bias"),
            format!("h.{l}.mlp.c_proj.bias"),
        ] {
            let bias = tensor(weights, &name);
            let mean = mean(&bias.values);
            bias.values.iter_mut().for_each(|v| *v -= mean);
        }
    }
}

/// `b_O += b_V W_O` (summed over heads), then `b_V = 0`: each head's output is a convex mix of
/// value vectors, so a constant value bias passes straight through to the output.
fn fold_value_biases(weights: &mut Gpt2Weights) {
    let d = weights.config.n_embd;
    for l in 0..weights.config.n_layer {
        let qkv_bias = format!("h.{l}.attn.c_attn.bias");
        let value_bias: Vec<f32> = weights.get(&qkv_bias).values[2 * d..3 * d].to_vec();
        let w_o = weights.get(&format!("h.{l}.attn.c_proj.weight")).clone(); // [d, d]
        let b_o = tensor(weights, &format!("h.{l}.attn.c_proj.bias"));
        for (j, b) in b_o.values.iter_mut().enumerate() {
            let extra: f64 = (0..d)
                .map(|i| f64::from(value_bias[i]) * f64::from(w_o.values[i * d + j]))
                .sum();
            *b = (f64::from(*b) + extra) as f32;
        }
        tensor(weights, &qkv_bias).values[2 * d..3 * d].fill(0.0);
    }
}

/// Subtract each column's mean (over the rows).
fn center_columns(t: &mut HostTensor) {
    let [rows, cols] = t.shape[..] else {
        unreachable!("centred tensors are matrices")
    };
    for j in 0..cols {
        let mean = (0..rows)
            .map(|i| f64::from(t.values[i * cols + j]))
            .sum::<f64>()
            / rows as f64;
        for i in 0..rows {
            t.values[i * cols + j] = (f64::from(t.values[i * cols + j]) - mean) as f32;
        }
    }
}

/// Subtract each row's mean (over the columns).
fn center_rows(t: &mut HostTensor) {
    let [_, cols] = t.shape[..] else {
        unreachable!("centred tensors are matrices")
    };
    for row in t.values.chunks_exact_mut(cols) {
        let mean = mean(row);
        row.iter_mut().for_each(|v| *v -= mean);
    }
}

fn transpose(t: &HostTensor) -> HostTensor {
    let [rows, cols] = t.shape[..] else {
        unreachable!("transposed tensors are matrices")
    };
    HostTensor {
        shape: vec![cols, rows],
        values: crate::kernels::transpose(&t.values, rows, cols),
    }
}
