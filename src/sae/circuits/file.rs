//! The graph JSON circuit-tracer writes (`create_graph_files`) and Neuronpedia's graph viewer
//! reads: `metadata`, `qParams`, `nodes` and `links`, node ids as circuit-tracer forms them
//! (features `{layer}_{feature}_{ctx}`, errors `{layer}_-1_{ctx}`, embeddings `E_{token}_{ctx}`,
//! the logit `{n_layers + 1}_{token}_{ctx}`), and `schema_version` 1 (a feature's `feature` is
//! the Cantor pairing of layer and index). saeplay adds its own facts under
//! `metadata.saeplay`, which other readers ignore.

use serde::{Deserialize, Serialize};

use super::cross_layer::CrossLayerGraph;
use super::{AttributionGraph, GraphNode, NodeKind};
use crate::error::{Result, SaeplayError};
use crate::model::HookPoint;

/// The largest graph file read (Neuronpedia's graphs of a few hundred tokens are tens of MB).
pub const MAX_GRAPH_BYTES: usize = 128 << 20;
pub const MAX_GRAPH_NODES: usize = 200_000;
pub const MAX_GRAPH_LINKS: usize = 4_000_000;
/// Longest prompt a graph file may have (the Circuits view draws a column per token).
pub const MAX_GRAPH_POSITIONS: usize = 8_192;

pub const FEATURE_TYPE: &str = "cross layer transcoder";
pub const ERROR_TYPE: &str = "residual reconstruction error";
pub const EMBEDDING_TYPE: &str = "embedding";
pub const LOGIT_TYPE: &str = "logit";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphFile {
    pub metadata: GraphMetadata,
    #[serde(rename = "qParams", default = "default_q_params")]
    pub q_params: serde_json::Value,
    pub nodes: Vec<GraphFileNode>,
    pub links: Vec<GraphFileLink>,
}

fn default_q_params() -> serde_json::Value {
    serde_json::json!({
        "pinnedIds": [],
        "supernodes": [],
        "linkType": "both",
        "clickedId": "",
        "sg_pos": ""
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphMetadata {
    pub slug: String,
    /// The model (Neuronpedia's model id).
    pub scan: String,
    /// The SAEs, one per layer in order.
    #[serde(default)]
    pub transcoder_list: Vec<String>,
    pub prompt_tokens: Vec<String>,
    pub prompt: String,
    #[serde(default)]
    pub node_threshold: Option<f64>,
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saeplay: Option<SaeplayGraphFacts>,
}

/// What saeplay knows about a graph it made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeplayGraphFacts {
    /// `attribution`, `cosine` or `ablation`.
    pub kind: String,
    /// Per SAE in forward order: its JSON `layer` and the hook it reads.
    pub layers: Vec<(String, String)>,
    #[serde(default)]
    pub replacement_score: Option<f64>,
    #[serde(default)]
    pub completeness_score: Option<f64>,
    /// Held-out tokens a cross-layer graph read.
    #[serde(default)]
    pub tokens: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphFileNode {
    pub node_id: String,
    pub feature: i64,
    pub layer: String,
    pub ctx_idx: usize,
    pub feature_type: String,
    #[serde(default)]
    pub token_prob: f64,
    #[serde(default)]
    pub is_target_logit: bool,
    #[serde(default)]
    pub run_idx: u32,
    #[serde(default)]
    pub reverse_ctx_idx: u32,
    #[serde(rename = "jsNodeId", default)]
    pub js_node_id: String,
    #[serde(default)]
    pub clerp: String,
    #[serde(default)]
    pub influence: Option<f64>,
    #[serde(default)]
    pub activation: Option<f64>,
    /// Cross-layer graphs: the feature's density on held-out text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphFileLink {
    pub source: String,
    pub target: String,
    pub weight: f64,
}

/// What a node is, read from its type and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileNodeKind {
    Feature { feature: usize },
    Error,
    Embedding,
    Logit,
}

impl GraphFileNode {
    pub fn kind(&self) -> FileNodeKind {
        match self.feature_type.as_str() {
            LOGIT_TYPE => FileNodeKind::Logit,
            EMBEDDING_TYPE => FileNodeKind::Embedding,
            t if t.contains("error") => FileNodeKind::Error,
            _ => {
                // `{layer}_{feature}_{ctx}`: the middle part is the index in its SAE.
                let feature = self
                    .node_id
                    .split('_')
                    .nth(1)
                    .and_then(|f| f.parse().ok())
                    .unwrap_or(0);
                FileNodeKind::Feature { feature }
            }
        }
    }
}

/// circuit-tracer's `cantor(layer, index)`.
pub fn cantor(x: u64, y: u64) -> i64 {
    ((x + y) * (x + y + 1) / 2 + y) as i64
}

/// The block a residual hook belongs to: the `layer` in a graph's node ids.
pub fn block_of(hook: HookPoint) -> usize {
    hook.layer().unwrap_or(0)
}

/// An attribution node's id as circuit-tracer forms it.
pub fn node_id(n: &GraphNode, n_layers: usize) -> String {
    match n.kind {
        NodeKind::Embedding { token } => format!("E_{token}_{}", n.ctx_idx),
        NodeKind::Error { hook, .. } => format!("{}_-1_{}", block_of(hook), n.ctx_idx),
        NodeKind::Feature { hook, feature, .. } => {
            format!("{}_{feature}_{}", block_of(hook), n.ctx_idx)
        }
        NodeKind::Logit { token, .. } => format!("{}_{token}_{}", n_layers + 1, n.ctx_idx),
    }
}

/// What the file needs beyond the graph itself.
pub struct GraphContext<'a> {
    /// Neuronpedia's model id or the model's name.
    pub model: &'a str,
    pub prompt: &'a str,
    pub prompt_tokens: &'a [String],
    /// Per SAE in forward order: an id (a release's SAE id or the page's name).
    pub sae_ids: &'a [String],
    pub n_layers: usize,
    /// Text for the logit's token.
    pub target_text: &'a str,
    /// An explanation per feature node, when known.
    pub explanation: &'a dyn Fn(usize, usize) -> Option<String>,
}

impl GraphFile {
    /// Read a graph file, checking its size, counts and that every link joins two nodes.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let invalid = |why: String| SaeplayError::InvalidSetting(format!("this graph file {why}"));
        if bytes.len() > MAX_GRAPH_BYTES {
            return Err(invalid(format!(
                "is {} MB, over the {} MB a graph may have",
                bytes.len() >> 20,
                MAX_GRAPH_BYTES >> 20
            )));
        }
        let file: GraphFile = serde_json::from_slice(bytes).map_err(|error| {
            invalid(format!(
                "is not circuit-tracer's graph JSON (metadata, nodes, links): {error}"
            ))
        })?;
        if file.nodes.len() > MAX_GRAPH_NODES || file.links.len() > MAX_GRAPH_LINKS {
            return Err(invalid(format!(
                "has {} nodes and {} links; at most {MAX_GRAPH_NODES} and {MAX_GRAPH_LINKS} are read",
                file.nodes.len(),
                file.links.len()
            )));
        }
        if file.metadata.prompt_tokens.len() > MAX_GRAPH_POSITIONS {
            return Err(invalid(format!(
                "has a prompt of {} tokens; at most {MAX_GRAPH_POSITIONS} are read",
                file.metadata.prompt_tokens.len()
            )));
        }
        // Cross-layer graphs have no prompt: their nodes all sit at position 0.
        let positions = file.metadata.prompt_tokens.len().max(1);
        if let Some(node) = file.nodes.iter().find(|n| n.ctx_idx >= positions) {
            return Err(invalid(format!(
                "places node `{}` at position {}, but its prompt has {} tokens",
                node.node_id,
                node.ctx_idx,
                file.metadata.prompt_tokens.len()
            )));
        }
        let ids: std::collections::HashSet<&str> =
            file.nodes.iter().map(|n| n.node_id.as_str()).collect();
        if ids.len() != file.nodes.len() {
            return Err(invalid("names two nodes with the same node_id".into()));
        }
        if let Some(link) = file
            .links
            .iter()
            .find(|l| !ids.contains(l.source.as_str()) || !ids.contains(l.target.as_str()))
        {
            return Err(invalid(format!(
                "has a link from `{}` to `{}`, but no node has that id",
                link.source, link.target
            )));
        }
        if file.links.iter().any(|l| !l.weight.is_finite()) {
            return Err(invalid("has a link whose weight is not a number".into()));
        }
        Ok(file)
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| SaeplayError::Json {
            what: "graph",
            source,
        })
    }

    /// Whether this is a cross-layer graph (saeplay says so, or it has no prompt).
    pub fn is_cross_layer(&self) -> bool {
        self.metadata
            .saeplay
            .as_ref()
            .map_or(self.metadata.prompt_tokens.is_empty(), |f| {
                f.kind != "attribution"
            })
    }

    /// The index of each node by id.
    pub fn node_index(&self) -> std::collections::HashMap<&str, usize> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node_id.as_str(), i))
            .collect()
    }

    /// An attribution graph's kept nodes and links.
    pub fn from_attribution(
        graph: &AttributionGraph,
        hooks: &[HookPoint],
        context: &GraphContext<'_>,
    ) -> Self {
        let token_text = |pos: usize| context.prompt_tokens.get(pos).cloned().unwrap_or_default();
        let node_id = |i: usize| node_id(&graph.nodes[i], context.n_layers);
        let nodes = graph
            .kept_nodes()
            .map(|i| {
                let n = &graph.nodes[i];
                let influence = Some(f64::from(n.cumulative_influence));
                let base = GraphFileNode {
                    node_id: node_id(i),
                    feature: 0,
                    layer: String::new(),
                    ctx_idx: n.ctx_idx,
                    feature_type: String::new(),
                    token_prob: 0.0,
                    is_target_logit: false,
                    run_idx: 0,
                    reverse_ctx_idx: 0,
                    js_node_id: String::new(),
                    clerp: String::new(),
                    influence,
                    activation: None,
                    density: None,
                };
                match n.kind {
                    NodeKind::Embedding { token } => GraphFileNode {
                        feature: n.ctx_idx as i64,
                        layer: "E".into(),
                        feature_type: EMBEDDING_TYPE.into(),
                        js_node_id: format!("E_{token}-{}", n.ctx_idx),
                        clerp: format!("Emb: \"{}\"", token_text(n.ctx_idx)),
                        ..base
                    },
                    NodeKind::Error { hook, .. } => GraphFileNode {
                        feature: -1,
                        layer: block_of(hook).to_string(),
                        feature_type: ERROR_TYPE.into(),
                        js_node_id: format!("{}_-1-{}", block_of(hook), n.ctx_idx),
                        clerp: format!("Err: {hook} \"{}\"", token_text(n.ctx_idx)),
                        ..base
                    },
                    NodeKind::Feature {
                        layer,
                        hook,
                        feature,
                    } => GraphFileNode {
                        feature: cantor(block_of(hook) as u64, feature as u64),
                        layer: block_of(hook).to_string(),
                        feature_type: FEATURE_TYPE.into(),
                        js_node_id: format!("{}_{feature}-0", block_of(hook)),
                        clerp: (context.explanation)(layer, feature).unwrap_or_default(),
                        activation: Some(f64::from(n.activation)),
                        ..base
                    },
                    NodeKind::Logit { token, probability } => GraphFileNode {
                        feature: i64::from(token),
                        layer: (context.n_layers + 1).to_string(),
                        feature_type: LOGIT_TYPE.into(),
                        token_prob: f64::from(probability),
                        is_target_logit: true,
                        js_node_id: format!("L_{token}-{}", n.ctx_idx),
                        clerp: format!("Output \"{}\" (p={:.3})", context.target_text, probability),
                        influence: None,
                        ..base
                    },
                }
            })
            .collect();
        let links = graph
            .links
            .iter()
            .map(|l| GraphFileLink {
                source: node_id(l.source),
                target: node_id(l.target),
                weight: f64::from(l.weight),
            })
            .collect();
        GraphFile {
            metadata: GraphMetadata {
                slug: slug(context.prompt),
                scan: context.model.to_string(),
                transcoder_list: context.sae_ids.to_vec(),
                prompt_tokens: context.prompt_tokens.to_vec(),
                prompt: context.prompt.to_string(),
                node_threshold: Some(graph.node_threshold),
                schema_version: Some(1),
                saeplay: Some(SaeplayGraphFacts {
                    kind: "attribution".into(),
                    layers: layer_names(hooks),
                    replacement_score: Some(graph.replacement_score),
                    completeness_score: Some(graph.completeness_score),
                    tokens: None,
                }),
            },
            q_params: default_q_params(),
            nodes,
            links,
        }
    }

    /// A cross-layer graph in the same shape: feature nodes at position 0.
    pub fn from_cross_layer(
        graph: &CrossLayerGraph,
        model: &str,
        sae_ids: &[String],
        explanation: &dyn Fn(usize, usize) -> Option<String>,
    ) -> Self {
        let node_id = |i: usize| {
            let n = &graph.nodes[i];
            format!("{}_{}_0", block_of(graph.hooks[n.layer]), n.feature)
        };
        let nodes = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let block = block_of(graph.hooks[n.layer]);
                GraphFileNode {
                    node_id: node_id(i),
                    feature: cantor(block as u64, n.feature as u64),
                    layer: block.to_string(),
                    ctx_idx: 0,
                    feature_type: FEATURE_TYPE.into(),
                    token_prob: 0.0,
                    is_target_logit: false,
                    run_idx: 0,
                    reverse_ctx_idx: 0,
                    js_node_id: format!("{block}_{}-0", n.feature),
                    clerp: explanation(n.layer, n.feature).unwrap_or_default(),
                    influence: None,
                    activation: Some(n.mean_activation),
                    density: Some(n.density),
                }
            })
            .collect();
        let links = graph
            .links
            .iter()
            .map(|l| GraphFileLink {
                source: node_id(l.source),
                target: node_id(l.target),
                weight: f64::from(l.weight),
            })
            .collect();
        GraphFile {
            metadata: GraphMetadata {
                slug: format!("cross-layer-{}", graph.method.name()),
                scan: model.to_string(),
                transcoder_list: sae_ids.to_vec(),
                prompt_tokens: Vec::new(),
                prompt: String::new(),
                node_threshold: None,
                schema_version: Some(1),
                saeplay: Some(SaeplayGraphFacts {
                    kind: graph.method.name().into(),
                    layers: layer_names(&graph.hooks),
                    replacement_score: None,
                    completeness_score: None,
                    tokens: Some(graph.tokens),
                }),
            },
            q_params: default_q_params(),
            nodes,
            links,
        }
    }
}

fn layer_names(hooks: &[HookPoint]) -> Vec<(String, String)> {
    hooks
        .iter()
        .map(|h| (block_of(*h).to_string(), h.to_string()))
        .collect()
}

/// A file-name-safe slug of a prompt (circuit-tracer names the file after it).
fn slug(prompt: &str) -> String {
    let mut out = String::new();
    for c in prompt.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 48 {
            break;
        }
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "graph".into() } else { out }
}
