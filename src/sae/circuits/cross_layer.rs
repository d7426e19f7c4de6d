//! The cross-layer feature graph: how features of one SAE relate to the features of the next
//! SAE along the forward, by decoder cosine similarity (no data) or by ablation effect (each
//! source feature removed from the residual stream over held-out text, with the SAE error kept,
//! and the mean change of every downstream feature measured).

use burn::tensor::Tensor;

use super::GraphLink;
use super::attribution::{GraphSae, forward_order};
use crate::backend::{float_tensor, int_tensor, read_f32};
use crate::error::{Result, SaeplayError};
use crate::model::{HookPoint, Hooks, Model, PatchOp};
use crate::sae::arch::W_DEC;

/// Most multiply-adds a cosine graph may take between two SAEs (two 24,576-wide GPT-2-small
/// SAEs are 4.6e11).
pub const COSINE_BUDGET_MACS: f64 = 5e11;
/// Source-window pairs per ablation forward.
const ABLATIONS_PER_FORWARD: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrossLayerMethod {
    Cosine,
    Ablation,
}

impl CrossLayerMethod {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cosine" => Ok(Self::Cosine),
            "ablation" => Ok(Self::Ablation),
            other => Err(SaeplayError::InvalidSetting(format!(
                "unknown graph method `{other}`: use cosine or ablation"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::Ablation => "ablation",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CrossLayerSettings {
    pub method: CrossLayerMethod,
    /// Links kept per source feature, strongest first.
    pub top: usize,
    /// Ablation: the source features of each SAE, most activation mass first.
    pub sources: usize,
}

impl Default for CrossLayerSettings {
    fn default() -> Self {
        Self {
            method: CrossLayerMethod::Cosine,
            top: 3,
            sources: 32,
        }
    }
}

/// A node of the cross-layer graph: one feature of one SAE.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossLayerNode {
    /// Index into the graph's SAEs, in forward order.
    pub layer: usize,
    pub feature: usize,
    /// Fraction of held-out tokens (BOS left out) on which it fires.
    pub density: f64,
    /// Its mean activation where it fires.
    pub mean_activation: f64,
}

#[derive(Debug, Clone)]
pub struct CrossLayerGraph {
    pub method: CrossLayerMethod,
    /// The SAEs' hooks in forward order.
    pub hooks: Vec<HookPoint>,
    pub nodes: Vec<CrossLayerNode>,
    /// Source is a node at layer l, target a node at layer l + 1. Cosine: the decoder cosine.
    /// Ablation: the mean fall of the target's activation per token when the source is removed.
    pub links: Vec<GraphLink>,
    pub tokens: usize,
}

/// Each SAE's activations on `windows` (`[tokens, d_sae]`, BOS rows zeroed).
async fn clean_activations(
    model: &Model,
    saes: &[GraphSae<'_>],
    windows: &[Vec<u32>],
) -> Result<Vec<Vec<f32>>> {
    let d = model.dims().d_model;
    let mut out = vec![Vec::new(); saes.len()];
    for chunk in windows.chunks(8) {
        let (b, t) = (chunk.len(), chunk[0].len());
        let hooks: Vec<HookPoint> = saes.iter().map(|s| s.hook).collect();
        let captured = model.capture(chunk, &hooks)?;
        for (k, s) in saes.iter().enumerate() {
            let x = captured
                .iter()
                .find(|(h, _)| *h == s.hook)
                .map(|(_, x)| x.clone())
                .ok_or_else(|| {
                    SaeplayError::InvalidSetting(format!("`{}` was not captured", s.hook))
                })?;
            let mut acts = read_f32(s.sae.encode_async(x.reshape([b * t, d])).await?).await?;
            let d_sae = s.sae.config.d_sae;
            for w in 0..b {
                acts[w * t * d_sae..(w * t + 1) * d_sae].fill(0.0);
            }
            out[k].extend(acts);
        }
        crate::clock::yield_now().await;
    }
    Ok(out)
}

/// The `top` entries of `row` by magnitude, as `(index, value)`, skipping zeros.
fn strongest(row: &[f32], top: usize) -> Vec<(usize, f32)> {
    let mut entries: Vec<(usize, f32)> = row
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| *v != 0.0 && v.is_finite())
        .collect();
    entries.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    entries.truncate(top);
    entries
}

/// Rows of `W_dec` scaled to unit length, `[d_sae, d]`.
fn unit_decoder(sae: &crate::sae::Sae) -> Tensor<2> {
    let w = sae.param(W_DEC);
    let norms = w.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    w / norms
}

/// `(source, target, cosine)` for each feature of `a` and its `top` most similar of `b`.
async fn cosine_links(
    a: &GraphSae<'_>,
    b: &GraphSae<'_>,
    top: usize,
) -> Result<Vec<(usize, usize, f32)>> {
    let (n_a, n_b, d) = (a.sae.config.d_sae, b.sae.config.d_sae, a.sae.config.d_in);
    let macs = n_a as f64 * n_b as f64 * d as f64;
    if macs > COSINE_BUDGET_MACS {
        return Err(SaeplayError::InvalidSetting(format!(
            "comparing every decoder row of `{}` ({n_a}) with `{}` ({n_b}) takes {macs:.1e} multiply-adds, over the limit of {COSINE_BUDGET_MACS:.0e}",
            a.hook, b.hook
        )));
    }
    let rows_a = unit_decoder(a.sae);
    let rows_b = unit_decoder(b.sae).transpose();
    let mut links = Vec::new();
    let block = (4_000_000 / n_b.max(1)).clamp(1, n_a);
    let mut start = 0;
    while start < n_a {
        let len = block.min(n_a - start);
        let cos = read_f32(rows_a.clone().narrow(0, start, len).matmul(rows_b.clone())).await?;
        for (r, row) in cos.chunks(n_b).enumerate() {
            for (j, c) in strongest(row, top) {
                links.push((start + r, j, c));
            }
        }
        start += len;
        crate::clock::yield_now().await;
    }
    Ok(links)
}

/// `(source, target, mean fall)` from ablating each of `sources` features of `a`.
#[allow(clippy::too_many_arguments)]
async fn ablation_links(
    model: &Model,
    a: &GraphSae<'_>,
    b: &GraphSae<'_>,
    clean_a: &[f32],
    clean_b: &[f32],
    windows: &[Vec<u32>],
    sources: &[usize],
    top: usize,
    tokens: usize,
) -> Result<Vec<(usize, usize, f32)>> {
    let (d_a, d_b, d) = (a.sae.config.d_sae, b.sae.config.d_sae, model.dims().d_model);
    let t = windows[0].len();
    let device = model.device().clone();
    let index = int_tensor(
        sources.iter().map(|&i| i as i64).collect(),
        [sources.len()],
        a.sae.device(),
    );
    let rows = read_f32(a.sae.param(W_DEC).select(0, index)).await?; // [sources, d]
    // Every (source, window) where the source fires.
    let mut jobs = Vec::new();
    for (s, &i) in sources.iter().enumerate() {
        for w in 0..windows.len() {
            if (0..t).any(|p| clean_a[(w * t + p) * d_a + i] != 0.0) {
                jobs.push((s, w));
            }
        }
    }
    // The ablated runs equal the clean ones up to `a`'s block: they start there, from the clean
    // residual (one capture per window, stopped at that block).
    let start = a.hook.resume_point(model.dims().n_layers);
    let mut entering = Vec::new();
    if let Some((_, at)) = start {
        for chunk in windows.chunks(8) {
            let (_, x) = model
                .capture(chunk, &[at])?
                .pop()
                .ok_or_else(|| SaeplayError::InvalidSetting(format!("`{at}` was not captured")))?;
            entering.extend(read_f32(x).await?);
        }
    }
    let mut change = vec![0.0f64; sources.len() * d_b];
    for chunk in jobs.chunks(ABLATIONS_PER_FORWARD) {
        let n = chunk.len();
        let mut delta = vec![0.0f32; n * t * d];
        for (row, &(s, w)) in chunk.iter().enumerate() {
            let i = sources[s];
            for p in 0..t {
                let act = clean_a[(w * t + p) * d_a + i];
                if act != 0.0 {
                    let at = (row * t + p) * d;
                    for (x, r) in delta[at..at + d].iter_mut().zip(&rows[s * d..(s + 1) * d]) {
                        *x = -act * r;
                    }
                }
            }
        }
        let hooks = Hooks::capture([b.hook]).with_patch(
            a.hook,
            PatchOp::Add(float_tensor(delta, [n, t, d], &device)),
        );
        let mut captured = match start {
            Some((layer, _)) => {
                let mut resid = Vec::with_capacity(n * t * d);
                for &(_, w) in chunk {
                    resid.extend_from_slice(&entering[w * t * d..(w + 1) * t * d]);
                }
                let resid = float_tensor(resid, [n, t, d], &device);
                model.capture_patched_from(layer, resid, &hooks)?
            }
            None => {
                let batch: Vec<Vec<u32>> = chunk.iter().map(|&(_, w)| windows[w].clone()).collect();
                model.capture_patched(&batch, &hooks)?
            }
        };
        let (_, x) = captured.pop().ok_or_else(|| {
            SaeplayError::InvalidSetting(format!("`{}` was not captured", b.hook))
        })?;
        let ablated = read_f32(b.sae.encode_async(x.reshape([n * t, d])).await?).await?;
        for (row, &(s, w)) in chunk.iter().enumerate() {
            for p in 1..t {
                let after = &ablated[(row * t + p) * d_b..(row * t + p + 1) * d_b];
                let before = &clean_b[(w * t + p) * d_b..(w * t + p + 1) * d_b];
                let out = &mut change[s * d_b..(s + 1) * d_b];
                for j in 0..d_b {
                    out[j] += f64::from(before[j] - after[j]);
                }
            }
        }
        crate::clock::yield_now().await;
    }
    let mut links = Vec::new();
    for (s, &i) in sources.iter().enumerate() {
        let row: Vec<f32> = change[s * d_b..(s + 1) * d_b]
            .iter()
            .map(|c| (c / tokens as f64) as f32)
            .collect();
        for (j, weight) in strongest(&row, top) {
            if weight.abs() > 1e-7 {
                links.push((i, j, weight));
            }
        }
    }
    Ok(links)
}

/// The cross-layer graph of `saes` over held-out `windows` (each starting with BOS).
pub async fn cross_layer_graph(
    model: &Model,
    saes: &[GraphSae<'_>],
    windows: &[Vec<u32>],
    settings: &CrossLayerSettings,
    mut on_progress: impl FnMut(f64),
) -> Result<CrossLayerGraph> {
    let saes = forward_order(saes)?;
    if saes.len() < 2 {
        return Err(SaeplayError::InvalidSetting(
            "a cross-layer graph needs SAEs at two or more hooks of one model".into(),
        ));
    }
    if settings.top == 0 || settings.top > 64 || settings.sources == 0 {
        return Err(SaeplayError::InvalidSetting(
            "keep 1 to 64 links per feature, from at least one source feature".into(),
        ));
    }
    for s in &saes {
        s.sae
            .check_fits(&s.hook.to_string(), s.hook.width(model.dims()))?;
    }
    let t = windows.first().map_or(0, Vec::len);
    if t < 2 || windows.iter().any(|w| w.len() != t) {
        return Err(SaeplayError::InvalidSetting(
            "a cross-layer graph reads held-out windows of one length, at least 2 tokens".into(),
        ));
    }
    let tokens = windows.len() * (t - 1);
    let clean = clean_activations(model, &saes, windows).await?;
    let stats: Vec<Vec<(f64, f64)>> = saes
        .iter()
        .zip(&clean)
        .map(|(s, acts)| {
            let d_sae = s.sae.config.d_sae;
            let mut fired = vec![(0usize, 0.0f64); d_sae];
            for row in acts.chunks(d_sae) {
                for (j, v) in row.iter().enumerate() {
                    if *v != 0.0 {
                        fired[j].0 += 1;
                        fired[j].1 += f64::from(*v);
                    }
                }
            }
            fired
                .iter()
                .map(|(n, sum)| {
                    (
                        *n as f64 / tokens as f64,
                        if *n > 0 { sum / *n as f64 } else { 0.0 },
                    )
                })
                .collect()
        })
        .collect();
    on_progress(0.1);

    let mut nodes: Vec<CrossLayerNode> = Vec::new();
    let mut node_of = std::collections::HashMap::new();
    let mut node = |layer: usize, feature: usize, nodes: &mut Vec<CrossLayerNode>| -> usize {
        *node_of.entry((layer, feature)).or_insert_with(|| {
            let (density, mean_activation) = stats[layer][feature];
            nodes.push(CrossLayerNode {
                layer,
                feature,
                density,
                mean_activation,
            });
            nodes.len() - 1
        })
    };
    let mut links = Vec::new();
    let pairs = saes.len() - 1;
    for k in 0..pairs {
        let found = match settings.method {
            CrossLayerMethod::Cosine => cosine_links(&saes[k], &saes[k + 1], settings.top).await?,
            CrossLayerMethod::Ablation => {
                let mut by_mass: Vec<usize> = (0..saes[k].sae.config.d_sae)
                    .filter(|&i| stats[k][i].0 > 0.0)
                    .collect();
                let mass = |i: usize| stats[k][i].0 * stats[k][i].1;
                by_mass.sort_by(|a, b| mass(*b).total_cmp(&mass(*a)).then(a.cmp(b)));
                by_mass.truncate(settings.sources);
                by_mass.sort_unstable();
                ablation_links(
                    model,
                    &saes[k],
                    &saes[k + 1],
                    &clean[k],
                    &clean[k + 1],
                    windows,
                    &by_mass,
                    settings.top,
                    tokens,
                )
                .await?
            }
        };
        for (i, j, weight) in found {
            let source = node(k, i, &mut nodes);
            let target = node(k + 1, j, &mut nodes);
            links.push(GraphLink {
                source,
                target,
                weight,
            });
        }
        on_progress(0.1 + 0.9 * (k + 1) as f64 / pairs as f64);
    }
    Ok(CrossLayerGraph {
        method: settings.method,
        hooks: saes.iter().map(|s| s.hook).collect(),
        nodes,
        links,
        tokens,
    })
}
