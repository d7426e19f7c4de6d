//! Graphs over several SAEs of one model: the cross-layer feature graph (decoder cosine or
//! ablation effect between adjacent SAEs) and attribution graphs for a prompt, both written as
//! the graph JSON circuit-tracer writes and Neuronpedia's graph viewer reads (`file.rs`).

pub mod attribution;
pub mod cross_layer;
pub mod file;
mod influence;
pub mod pipeline;

pub use attribution::{AttributionSettings, GraphSae, attribute};
pub use cross_layer::{CrossLayerMethod, CrossLayerSettings, cross_layer_graph};
pub use file::{GraphFile, GraphFileLink, GraphFileNode};
pub use pipeline::{NamedSae, PromptAttribution, attribute_prompt, cross_layer_file};

use crate::model::HookPoint;

/// What a node of an attribution graph stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeKind {
    /// The residual stream entering block 0 at a position (token and position embeddings).
    Embedding { token: u32 },
    /// The SAE error at `layer` (index into the graph's SAEs, in forward order).
    Error { layer: usize, hook: HookPoint },
    Feature {
        layer: usize,
        hook: HookPoint,
        feature: usize,
    },
    /// The explained output: the demeaned logit of `token` at the last position.
    Logit { token: u32, probability: f32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct GraphNode {
    pub kind: NodeKind,
    pub ctx_idx: usize,
    /// A feature's activation, an error's norm, the logit's value; 0 for embeddings.
    pub activation: f32,
    /// Influence on the logit through the normalised graph (circuit-tracer's node influence).
    pub influence: f32,
    /// The cumulative share of all influence up to this node, sorted (circuit-tracer's JSON
    /// `influence`): small for the nodes that matter most.
    pub cumulative_influence: f32,
}

impl GraphNode {
    pub(crate) fn new(kind: NodeKind, ctx_idx: usize, activation: f32) -> Self {
        Self {
            kind,
            ctx_idx,
            activation,
            influence: 0.0,
            cumulative_influence: 1.0,
        }
    }
}

/// One row of the adjacency matrix: the direct effect of each source node on `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    pub target: usize,
    /// `(source node, effect)`, nonzero effects only.
    pub sources: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphLink {
    pub source: usize,
    pub target: usize,
    pub weight: f32,
}

/// An attribution graph: every node, the full adjacency, and what pruning kept.
#[derive(Debug, Clone)]
pub struct AttributionGraph {
    pub nodes: Vec<GraphNode>,
    pub rows: Vec<SourceRow>,
    pub logit: usize,
    pub kept: Vec<bool>,
    /// The kept links, strongest first.
    pub links: Vec<GraphLink>,
    /// Share of the logit's influence that reaches it from the embeddings rather than errors.
    pub replacement_score: f64,
    /// Share of the kept nodes' inputs that come from features and embeddings, not errors.
    pub completeness_score: f64,
    pub node_threshold: f64,
}

impl AttributionGraph {
    pub(crate) fn build(
        nodes: Vec<GraphNode>,
        rows: Vec<SourceRow>,
        logit: usize,
        node_threshold: f64,
        edge_threshold: f64,
    ) -> Self {
        influence::prune(nodes, rows, logit, node_threshold, edge_threshold)
    }

    /// The kept nodes' indices.
    pub fn kept_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.kept[i])
    }

    /// The direct effect of `source` on `target`, from the full (unpruned) adjacency.
    pub fn direct_effect(&self, source: usize, target: usize) -> f32 {
        self.rows
            .iter()
            .find(|row| row.target == target)
            .and_then(|row| row.sources.iter().find(|(s, _)| *s as usize == source))
            .map_or(0.0, |(_, w)| *w)
    }

    /// What removing `node` changes the logit by, to first order through the whole graph:
    /// its direct effect plus, through every feature it drives, that share of the feature's
    /// own effect. Errors and embeddings have no inputs, so paths end there.
    pub fn attributed_logit_change(&self, node: usize) -> f64 {
        influence::total_effects(self)[node]
    }
}
