//! Small read-outs of a forward pass shared by the CLI and the page.

use crate::backend::read_f32;
use crate::error::Result;
use crate::model::{HookPoint, Hooks, LogitsFor, Model};

/// One candidate next token.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub id: u32,
    pub probability: f32,
}

/// Softmax over one position's logits, in f64 (the one softmax the read-outs share).
pub fn probabilities(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f64 = logits.iter().map(|&v| f64::from(v - max).exp()).sum();
    logits
        .iter()
        .map(|&v| f64::from(v - max).exp() / total)
        .collect()
}

/// Softmax over one position's logits, the k most likely tokens first.
pub fn top_predictions(logits: &[f32], k: usize) -> Vec<Prediction> {
    let probabilities = probabilities(logits);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| Prediction {
            id: i as u32,
            probability: probabilities[i] as f32,
        })
        .collect()
}

/// Named f32 tensors: what `saeplay forward` writes.
pub struct NamedTensors(pub Vec<(String, Vec<usize>, Vec<f32>)>);

impl NamedTensors {
    pub fn to_safetensors(&self) -> Vec<u8> {
        crate::io::tensors::write_safetensors(
            self.0
                .iter()
                .map(|(name, shape, values)| (name.as_str(), &shape[..], &values[..])),
        )
    }
}

/// Run one sequence and read back `logits` `[T, vocab]` and each hook `[T, d]`, named as the hook.
pub async fn forward_tensors(
    model: &Model,
    ids: &[u32],
    hooks: &[HookPoint],
) -> Result<NamedTensors> {
    let output = model.forward(
        &[ids.to_vec()],
        &Hooks::capture(hooks.iter().copied()),
        LogitsFor::AllPositions,
    )?;
    let t = ids.len();
    let mut tensors = vec![(
        "logits".to_string(),
        vec![t, model.dims().d_vocab],
        read_f32(output.logits).await?,
    )];
    for (hook, activation) in output.captured {
        let width = activation.dims()[2];
        tensors.push((
            hook.to_string(),
            vec![t, width],
            read_f32(activation).await?,
        ));
    }
    Ok(NamedTensors(tensors))
}
