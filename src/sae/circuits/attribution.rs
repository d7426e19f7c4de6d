//! Attribution graphs for one prompt, by circuit-tracer's method on residual-stream SAEs.
//!
//! The replacement model: at every SAE's hook the residual stream is rebuilt as
//! `acts @ W_dec + b_dec + error`, where the feature activations `acts` `[T, n]` and the error
//! `[T, d]` are the clean run's values held as leaves of the gradient. Attention patterns and
//! layer-norm scales are frozen (`Model::frozen_for_attribution`), so what flows between two
//! SAEs is linear apart from the MLPs. A node's direct effect on a target is its value times the
//! target's gradient with respect to it (activation times gradient): the target is a feature's
//! pre-activation `x · W_enc[:, j]` at its own hook, or the chosen logit. One backward pass
//! serves a whole batch of targets: the prompt is repeated once per target along the batch.

use std::sync::{Arc, Mutex};

use burn::tensor::Tensor;

use super::{AttributionGraph, GraphNode, NodeKind, SourceRow};
use crate::backend::{float_tensor, int_tensor, read_f32};
use crate::error::{Result, SaeplayError};
use crate::model::{HookContext, HookPoint, Hooks, LogitsFor, Model, PatchOp};
use crate::sae::Sae;
use crate::sae::arch::{B_DEC, W_DEC, W_ENC};

/// Targets (rows of the adjacency matrix) per backward pass on the CPU; a GPU takes four times
/// as many, since there the number of passes costs more than their size.
pub const TARGETS_PER_BACKWARD: usize = 32;

/// What an attribution run computes.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionSettings {
    /// The output token whose logit is explained; `None` for the top prediction.
    pub target: Option<u32>,
    /// Most feature nodes kept as targets (the strongest activations); every active feature is
    /// a source either way.
    pub max_feature_nodes: usize,
    /// Cumulative influence kept when pruning nodes (circuit-tracer's `node_threshold`).
    pub node_threshold: f64,
    /// Cumulative influence kept when pruning links (circuit-tracer's `edge_threshold`).
    pub edge_threshold: f64,
}

impl Default for AttributionSettings {
    fn default() -> Self {
        Self {
            target: None,
            max_feature_nodes: 1024,
            node_threshold: 0.8,
            edge_threshold: 0.98,
        }
    }
}

impl AttributionSettings {
    pub fn check(&self) -> Result<()> {
        let fraction = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
        if !fraction(self.node_threshold) || !fraction(self.edge_threshold) {
            return Err(SaeplayError::InvalidSetting(
                "the node and link thresholds are fractions of the influence: use numbers above 0 and at most 1"
                    .into(),
            ));
        }
        if self.max_feature_nodes == 0 || self.max_feature_nodes > 16_384 {
            return Err(SaeplayError::InvalidSetting(format!(
                "{} feature nodes is out of range: use 1 to 16384",
                self.max_feature_nodes
            )));
        }
        Ok(())
    }
}

/// One SAE of a graph, with the hook it reads.
#[derive(Clone)]
pub struct GraphSae<'a> {
    pub sae: &'a Sae,
    pub hook: HookPoint,
}

/// Where a residual hook sits in the forward: `(block, 0 pre / 1 mid / 2 post)`. Other hooks
/// are refused: a graph's SAEs must each rebuild the whole residual stream.
pub fn residual_position(hook: HookPoint) -> Result<(usize, u8)> {
    match hook {
        HookPoint::ResidPre(l) => Ok((l, 0)),
        HookPoint::ResidMid(l) => Ok((l, 1)),
        HookPoint::ResidPost(l) => Ok((l, 2)),
        other => Err(SaeplayError::InvalidSetting(format!(
            "graphs read SAEs on the residual stream (hook_resid_pre, hook_resid_mid or hook_resid_post); this one reads `{other}`"
        ))),
    }
}

/// The SAEs sorted into forward order, checked: residual hooks, one SAE per hook, the
/// architectures whose pre-activation is `x · W_enc + b`, and no activation normalisation.
pub fn forward_order<'a>(saes: &[GraphSae<'a>]) -> Result<Vec<GraphSae<'a>>> {
    if saes.is_empty() {
        return Err(SaeplayError::InvalidSetting(
            "a graph needs at least one SAE".into(),
        ));
    }
    let mut keyed = Vec::with_capacity(saes.len());
    for s in saes {
        keyed.push((residual_position(s.hook)?, s.clone()));
    }
    keyed.sort_by_key(|(key, _)| *key);
    for pair in keyed.windows(2) {
        if pair[0].0.0 == pair[1].0.0 {
            return Err(SaeplayError::InvalidSetting(format!(
                "two SAEs read block {} (`{}` and `{}`): a graph takes one SAE per block",
                pair[0].0.0, pair[0].1.hook, pair[1].1.hook
            )));
        }
    }
    for (_, s) in &keyed {
        if !s.sae.config.architecture.behaviour().plain_encoder() {
            return Err(SaeplayError::InvalidSetting(
                "graphs cannot yet read gated SAEs (their magnitude path is not a plain encoder)"
                    .into(),
            ));
        }
        if !s.sae.config.normalize_activations.is_none() {
            return Err(SaeplayError::InvalidSetting(format!(
                "graphs cannot yet read SAEs that normalise their input ({})",
                s.sae.config.normalize_activations.name()
            )));
        }
    }
    Ok(keyed.into_iter().map(|(_, s)| s).collect())
}

/// What the clean run found at one SAE.
struct CleanLayer {
    /// The active latents at this SAE (distinct, ascending), `n` of them.
    latents: Vec<usize>,
    /// `[T, n]`: their activations per position (0 where inactive or at position 0).
    acts: Vec<f32>,
    /// `[T, d]`: the SAE's error, `x - x_hat`.
    error: Vec<f32>,
    /// `[n, d]` decoder rows and `[d, n]` encoder columns of the active latents.
    w_dec: Vec<f32>,
    w_enc: Vec<f32>,
    b_dec: Vec<f32>,
}

/// The clean forward: the target's logit and probability, `ResidPre(0)` and each SAE's layer.
struct CleanRun {
    embedding: Vec<f32>,
    layers: Vec<CleanLayer>,
    target: u32,
    target_logit: f32,
    target_probability: f32,
}

async fn clean_run(
    model: &Model,
    saes: &[GraphSae<'_>],
    ids: &[u32],
    target: Option<u32>,
) -> Result<CleanRun> {
    let dims = model.dims().clone();
    let t = ids.len();
    let d = dims.d_model;
    let mut hooks = vec![HookPoint::ResidPre(0)];
    hooks.extend(saes.iter().map(|s| s.hook));
    let out = model.forward(
        &[ids.to_vec()],
        &Hooks::capture(hooks),
        LogitsFor::LastPosition,
    )?;
    let logits = read_f32(out.logits.clone().reshape([dims.d_vocab])).await?;
    let target = match target {
        Some(token) if (token as usize) < dims.d_vocab => token,
        Some(token) => {
            return Err(SaeplayError::InvalidSetting(format!(
                "token {token} is not in the vocabulary (0 to {})",
                dims.d_vocab - 1
            )));
        }
        None => top_token(&logits),
    };
    let probabilities = softmax(&logits);
    let embedding = read_f32(
        out.activation(HookPoint::ResidPre(0))
            .expect("captured")
            .clone()
            .reshape([t, d]),
    )
    .await?;
    let mut layers = Vec::with_capacity(saes.len());
    for s in saes {
        let x = out
            .activation(s.hook)
            .expect("captured")
            .clone()
            .reshape([t, d]);
        let acts = s.sae.encode_async(x.clone()).await?;
        let x_hat = s.sae.decode(acts.clone());
        let x_host = read_f32(x.clone()).await?;
        let mut error = read_f32(x - x_hat).await?;
        let b_dec = read_f32(s.sae.param(B_DEC)).await?;
        // Position 0 is the BOS token: its features say nothing about the prompt and are left
        // out, as circuit-tracer does; its whole residual, less b_dec, becomes its error, so the
        // replacement model's values stay the clean run's.
        for i in 0..d {
            error[i] = x_host[i] - b_dec[i];
        }
        let acts = read_f32(acts).await?;
        let d_sae = s.sae.config.d_sae;
        let mut active = vec![false; d_sae];
        for row in acts.chunks(d_sae).skip(1) {
            for (j, v) in row.iter().enumerate() {
                active[j] |= *v != 0.0;
            }
        }
        let latents: Vec<usize> = (0..d_sae).filter(|&j| active[j]).collect();
        let n = latents.len();
        let mut layer_acts = vec![0.0f32; t * n];
        for p in 1..t {
            for (m, &j) in latents.iter().enumerate() {
                layer_acts[p * n + m] = acts[p * d_sae + j];
            }
        }
        let (w_dec, w_enc) = if n == 0 {
            (Vec::new(), Vec::new())
        } else {
            let index = int_tensor(
                latents.iter().map(|&j| j as i64).collect(),
                [n],
                s.sae.device(),
            );
            (
                read_f32(s.sae.param(W_DEC).select(0, index.clone())).await?,
                read_f32(s.sae.param(W_ENC).select(1, index)).await?,
            )
        };
        layers.push(CleanLayer {
            latents,
            acts: layer_acts,
            error,
            w_dec,
            w_enc,
            b_dec,
        });
    }
    Ok(CleanRun {
        embedding,
        layers,
        target,
        target_logit: logits[target as usize] - logits.iter().sum::<f32>() / logits.len() as f32,
        target_probability: probabilities[target as usize],
    })
}

fn top_token(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|v| f64::from(v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|v| (v / sum) as f32).collect()
}

/// What a row of the adjacency matrix explains.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// Feature `latent` (index into its layer's active latents) at `layer`, position `pos`.
    Feature {
        layer: usize,
        latent: usize,
        pos: usize,
    },
    Logit,
}

/// Repeat a `[T, w]` host matrix `copies` times along a new batch axis.
fn repeated(values: &[f32], copies: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len() * copies);
    for _ in 0..copies {
        out.extend_from_slice(values);
    }
    out
}

/// Sources of one batch of targets: per target, the direct effect of every embedding, error
/// and active feature node, in the graph's source order.
async fn direct_effects(
    frozen: &Model,
    saes: &[GraphSae<'_>],
    ids: &[u32],
    clean: &CleanRun,
    targets: &[Target],
) -> Result<Vec<Vec<f32>>> {
    let device = frozen.device().clone();
    let dims = frozen.dims();
    let (t, d, vocab) = (ids.len(), dims.d_model, dims.d_vocab);
    let b = targets.len();
    let leaf = |values: &[f32], width: usize| -> Tensor<3> {
        float_tensor(repeated(values, b), [b, t, width], &device).require_grad()
    };
    let embedding = leaf(&clean.embedding, d);
    let mut hooks =
        Hooks::none().with_patch(HookPoint::ResidPre(0), PatchOp::Replace(embedding.clone()));
    let mut acts_leaves = Vec::new();
    let mut error_leaves = Vec::new();
    let mut inputs: Vec<Arc<Mutex<Option<Tensor<3>>>>> = Vec::new();
    for (s, layer) in saes.iter().zip(&clean.layers) {
        let n = layer.latents.len();
        let acts = (n > 0).then(|| leaf(&layer.acts, n));
        let error = leaf(&layer.error, d);
        let w_dec = (n > 0).then(|| float_tensor(layer.w_dec.clone(), [n, d], &device));
        let b_dec = float_tensor(layer.b_dec.clone(), [1, 1, d], &device);
        let input = Arc::new(Mutex::new(None));
        let slot = input.clone();
        let (acts_in, error_in) = (acts.clone(), error.clone());
        let rebuild = move |x: Tensor<3>, _: HookContext| {
            *slot.lock().expect("one forward at a time") = Some(x);
            let mut y = error_in.clone() + b_dec.clone();
            if let (Some(acts), Some(w_dec)) = (&acts_in, &w_dec) {
                y = y + acts
                    .clone()
                    .reshape([b * t, n])
                    .matmul(w_dec.clone())
                    .reshape([b, t, d]);
            }
            y
        };
        hooks = hooks.with_patch(s.hook, PatchOp::Map(Arc::new(rebuild)));
        acts_leaves.push(acts);
        error_leaves.push(error);
        inputs.push(input);
    }
    // Rows that all explain features of one SAE need the forward only up to that SAE's block.
    let batch = vec![ids.to_vec(); b];
    let logits = match targets {
        [Target::Feature { layer, .. }, ..]
            if targets
                .iter()
                .all(|t| matches!(t, Target::Feature { layer: l, .. } if l == layer)) =>
        {
            let hooks = Hooks {
                capture: vec![saes[*layer].hook],
                ..hooks
            };
            frozen.capture_patched(&batch, &hooks)?;
            None
        }
        _ => Some(
            frozen
                .forward(&batch, &hooks, LogitsFor::LastPosition)?
                .logits,
        ),
    };

    // The objective: the sum over rows of each row's target, so each row's gradient is its own.
    let mut logit_seed = vec![0.0f32; if logits.is_some() { b * vocab } else { 0 }];
    let mut feature_seeds: Vec<Option<Vec<f32>>> = vec![None; saes.len()];
    for (row, target) in targets.iter().enumerate() {
        match *target {
            // circuit-tracer's target: the demeaned logit, `logit_t - mean(logits)`.
            Target::Logit => {
                let seed = &mut logit_seed[row * vocab..(row + 1) * vocab];
                seed.fill(-1.0 / vocab as f32);
                seed[clean.target as usize] += 1.0;
            }
            Target::Feature { layer, latent, pos } => {
                let l = &clean.layers[layer];
                let n = l.latents.len();
                let seed = feature_seeds[layer].get_or_insert_with(|| vec![0.0; b * t * d]);
                let at = (row * t + pos) * d;
                for i in 0..d {
                    seed[at + i] = l.w_enc[i * n + latent];
                }
            }
        }
    }
    let mut objective =
        logits.map(|logits| (logits * float_tensor(logit_seed, [b, 1, vocab], &device)).sum());
    for (seed, input) in feature_seeds.into_iter().zip(&inputs) {
        if let Some(seed) = seed {
            let x = input
                .lock()
                .expect("one forward at a time")
                .take()
                .ok_or_else(|| {
                    SaeplayError::InvalidSetting("an SAE hook was not reached".into())
                })?;
            let term = (x * float_tensor(seed, [b, t, d], &device)).sum();
            objective = Some(match objective {
                Some(sum) => sum + term,
                None => term,
            });
        }
    }
    let grads = objective
        .ok_or_else(|| SaeplayError::InvalidSetting("no target to attribute".into()))?
        .backward();

    // Value times gradient, summed over the width for embedding and error nodes.
    let dot_rows = |value: &Tensor<3>| -> Option<Tensor<2>> {
        value.grad(&grads).map(|g| {
            (Tensor::from_inner(g) * value.clone().detach())
                .sum_dim(2)
                .reshape([b, t])
        })
    };
    let mut per_source: Vec<(Vec<f32>, usize)> = Vec::new(); // ([b, width] values, width)
    let read_or_zero = |tensor: Option<Tensor<2>>, width: usize| async move {
        match tensor {
            Some(tensor) => read_f32(tensor).await,
            None => Ok(vec![0.0; b * width]),
        }
    };
    per_source.push((read_or_zero(dot_rows(&embedding), t).await?, t));
    for (layer, (acts, error)) in clean
        .layers
        .iter()
        .zip(acts_leaves.iter().zip(&error_leaves))
    {
        per_source.push((read_or_zero(dot_rows(error), t).await?, t));
        let n = layer.latents.len();
        let feature_effects = match acts {
            Some(acts) => acts
                .grad(&grads)
                .map(|g| (Tensor::from_inner(g) * acts.clone().detach()).reshape([b, t * n])),
            None => None,
        };
        per_source.push((read_or_zero(feature_effects, t * n).await?, t * n));
    }
    let mut rows = vec![Vec::new(); b];
    for (values, width) in per_source {
        for (row, out) in rows.iter_mut().enumerate() {
            out.extend_from_slice(&values[row * width..(row + 1) * width]);
        }
    }
    Ok(rows)
}

/// The attribution graph of `ids` (BOS first) through `saes`: every node and its direct
/// effects, then pruned by influence on the target logit.
pub async fn attribute(
    model: &Model,
    saes: &[GraphSae<'_>],
    ids: &[u32],
    settings: &AttributionSettings,
    mut on_progress: impl FnMut(f64),
) -> Result<AttributionGraph> {
    settings.check()?;
    let saes = forward_order(saes)?;
    for s in &saes {
        s.sae
            .check_fits(&s.hook.to_string(), s.hook.width(model.dims()))?;
    }
    if ids.len() < 2 {
        return Err(SaeplayError::InvalidSetting(
            "the prompt is empty: write at least one token after the start token".into(),
        ));
    }
    let frozen = model.frozen_for_attribution()?;
    let clean = clean_run(model, &saes, ids, settings.target).await?;
    let t = ids.len();

    // Nodes, in source order: embeddings, then per SAE its errors and its active features.
    // `direct_effects` reports sources densely (every position of every active latent);
    // `node_of` maps that layout onto the nodes, which hold active (position, latent) pairs only.
    let d = model.dims().d_model;
    let mut nodes = Vec::new();
    let mut node_of: Vec<Option<u32>> = Vec::new();
    for (pos, &token) in ids.iter().enumerate() {
        node_of.push(Some(nodes.len() as u32));
        nodes.push(GraphNode::new(NodeKind::Embedding { token }, pos, 0.0));
    }
    let mut feature_nodes = Vec::new(); // (node index, activation, target)
    for (layer, (s, l)) in saes.iter().zip(&clean.layers).enumerate() {
        for pos in 0..t {
            let error = &l.error[pos * d..(pos + 1) * d];
            let norm = error.iter().map(|v| v * v).sum::<f32>().sqrt();
            node_of.push(Some(nodes.len() as u32));
            nodes.push(GraphNode::new(
                NodeKind::Error {
                    layer,
                    hook: s.hook,
                },
                pos,
                norm,
            ));
        }
        let n = l.latents.len();
        for pos in 0..t {
            for (m, &latent) in l.latents.iter().enumerate() {
                let a = l.acts[pos * n + m];
                if a == 0.0 {
                    node_of.push(None);
                    continue;
                }
                let index = nodes.len();
                node_of.push(Some(index as u32));
                nodes.push(GraphNode::new(
                    NodeKind::Feature {
                        layer,
                        hook: s.hook,
                        feature: latent,
                    },
                    pos,
                    a,
                ));
                feature_nodes.push((
                    index,
                    a,
                    Target::Feature {
                        layer,
                        latent: m,
                        pos,
                    },
                ));
            }
        }
    }
    // The strongest activations become targets; the rest stay sources only.
    feature_nodes.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    feature_nodes.truncate(settings.max_feature_nodes);
    feature_nodes.sort_by_key(|f| f.0);
    let logit_index = nodes.len();
    nodes.push(GraphNode::new(
        NodeKind::Logit {
            token: clean.target,
            probability: clean.target_probability,
        },
        t - 1,
        clean.target_logit,
    ));

    let mut targets: Vec<(usize, Target)> = feature_nodes
        .iter()
        .map(|(i, _, target)| (*i, *target))
        .collect();
    targets.push((logit_index, Target::Logit));
    let mut rows = Vec::with_capacity(targets.len());
    let per_backward = if crate::backend::is_host_device(model.device()) {
        TARGETS_PER_BACKWARD
    } else {
        4 * TARGETS_PER_BACKWARD
    };
    // Batches never mix SAEs (or the logit), so each runs the forward only as far as it needs.
    let layer_of = |t: &Target| match t {
        Target::Feature { layer, .. } => *layer,
        Target::Logit => usize::MAX,
    };
    let batches: Vec<&[(usize, Target)]> = targets
        .chunk_by(|a, b| layer_of(&a.1) == layer_of(&b.1))
        .flat_map(|group| group.chunks(per_backward))
        .collect();
    let chunks = batches.len();
    for (done, chunk) in batches.into_iter().enumerate() {
        let kinds: Vec<Target> = chunk.iter().map(|(_, target)| *target).collect();
        let effects = direct_effects(&frozen, &saes, ids, &clean, &kinds).await?;
        for ((node, _), effects) in chunk.iter().zip(effects) {
            let sources = effects
                .iter()
                .zip(&node_of)
                .filter_map(|(w, node)| {
                    node.filter(|_| *w != 0.0 && w.is_finite()).map(|n| (n, *w))
                })
                .collect();
            rows.push(SourceRow {
                target: *node,
                sources,
            });
        }
        on_progress((done + 1) as f64 / chunks as f64);
        crate::clock::yield_now().await;
    }
    Ok(AttributionGraph::build(
        nodes,
        rows,
        logit_index,
        settings.node_threshold,
        settings.edge_threshold,
    ))
}

/// A node's attributed logit change beside the change a real ablation makes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NodeCheck {
    /// To first order through the graph: minus the node's total effect on the logit.
    pub attributed: f64,
    /// The demeaned logit after removing the node from the real model, less before. Nothing is
    /// frozen and no SAE is spliced: the errors downstream move as they will.
    pub ablated: f64,
}

/// Remove `node` from the real model's forward (a feature's `a_i W_dec[i]`, an error's vector, an
/// embedding's row, at the node's hook and position) and compare the logit's change with the
/// graph's linear prediction.
pub async fn verify_node(
    model: &Model,
    saes: &[GraphSae<'_>],
    ids: &[u32],
    graph: &AttributionGraph,
    node: usize,
) -> Result<NodeCheck> {
    let saes = forward_order(saes)?;
    let Some(n) = graph.nodes.get(node) else {
        return Err(SaeplayError::InvalidSetting(format!(
            "the graph has no node {node}"
        )));
    };
    let NodeKind::Logit { token, .. } = graph.nodes[graph.logit].kind else {
        return Err(SaeplayError::InvalidSetting(
            "the graph has no logit node".into(),
        ));
    };
    let (t, d) = (ids.len(), model.dims().d_model);
    let (hook, vector) = match n.kind {
        NodeKind::Logit { .. } => {
            return Err(SaeplayError::InvalidSetting(
                "the logit is what ablations are measured on; choose a feature, error or embedding"
                    .into(),
            ));
        }
        NodeKind::Feature { layer, feature, .. } => {
            let sae = saes[layer].sae;
            let index = int_tensor(vec![feature as i64], [1], sae.device());
            let row = read_f32(sae.param(W_DEC).select(0, index)).await?;
            (
                saes[layer].hook,
                row.iter().map(|v| v * n.activation).collect::<Vec<f32>>(),
            )
        }
        NodeKind::Error { layer, .. } => {
            let s = &saes[layer];
            let x = model
                .capture(&[ids.to_vec()], &[s.hook])?
                .pop()
                .map(|(_, x)| x.reshape([t, d]))
                .ok_or_else(|| {
                    SaeplayError::InvalidSetting(format!("`{}` was not captured", s.hook))
                })?;
            let row = x.narrow(0, n.ctx_idx, 1);
            let vector = if n.ctx_idx == 0 {
                row - s.sae.param(B_DEC)
            } else {
                let acts = s.sae.encode_async(row.clone()).await?;
                row - s.sae.decode(acts)
            };
            (s.hook, read_f32(vector).await?)
        }
        NodeKind::Embedding { .. } => {
            let x = model
                .capture(&[ids.to_vec()], &[HookPoint::ResidPre(0)])?
                .pop()
                .map(|(_, x)| x.reshape([t, d]))
                .ok_or_else(|| {
                    SaeplayError::InvalidSetting("the embedding was not captured".into())
                })?;
            (
                HookPoint::ResidPre(0),
                read_f32(x.narrow(0, n.ctx_idx, 1)).await?,
            )
        }
    };
    let mut delta = vec![0.0f32; t * d];
    for (out, v) in delta[n.ctx_idx * d..(n.ctx_idx + 1) * d]
        .iter_mut()
        .zip(&vector)
    {
        *out = -v;
    }
    let device = model.device().clone();
    let demeaned = |logits: Vec<f32>| {
        let mean = logits.iter().map(|v| f64::from(*v)).sum::<f64>() / logits.len() as f64;
        f64::from(logits[token as usize]) - mean
    };
    let vocab = model.dims().d_vocab;
    let clean = model.forward(&[ids.to_vec()], &Hooks::none(), LogitsFor::LastPosition)?;
    let hooks =
        Hooks::none().with_patch(hook, PatchOp::Add(float_tensor(delta, [1, t, d], &device)));
    let ablated = model.forward(&[ids.to_vec()], &hooks, LogitsFor::LastPosition)?;
    let before = demeaned(read_f32(clean.logits.reshape([vocab])).await?);
    let after = demeaned(read_f32(ablated.logits.reshape([vocab])).await?);
    Ok(NodeCheck {
        attributed: -graph.attributed_logit_change(node),
        ablated: after - before,
    })
}
