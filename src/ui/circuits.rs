//! The Circuits view's state and decisions: which SAEs a graph reads, what is drawn where
//! (attribution graphs: positions across, layers up; cross-layer graphs: layers as columns),
//! the threshold and search, and a node's details. The browser glue only draws the result.

use std::collections::HashMap;
use std::rc::Rc;

use crate::sae::circuits::file::FileNodeKind;
use crate::sae::circuits::{AttributionGraph, GraphFile};

/// Which graph the view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphKind {
    #[default]
    Attribution,
    Cosine,
    Ablation,
}

impl GraphKind {
    pub const ALL: [GraphKind; 3] = [
        GraphKind::Attribution,
        GraphKind::Cosine,
        GraphKind::Ablation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GraphKind::Attribution => "attribution",
            GraphKind::Cosine => "cosine",
            GraphKind::Ablation => "ablation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == text)
    }

    pub fn is_cross_layer(self) -> bool {
        self != GraphKind::Attribution
    }
}

/// An attribution graph made in this tab: what verifying a node needs.
pub struct OwnAttribution {
    pub graph: AttributionGraph,
    pub ids: Vec<u32>,
    /// The SAE slots it read, in forward order.
    pub slots: Vec<String>,
    /// Node id (as in the file) to the graph's node.
    pub node_index: HashMap<String, usize>,
}

pub struct CircuitsState {
    pub kind: GraphKind,
    /// The output token explained (its text); empty for the top prediction.
    pub target: String,
    /// Attribution: the cumulative influence up to which nodes are drawn (Neuronpedia's
    /// pruning slider). Cross-layer: the share of the strongest link's weight a link needs.
    pub threshold: f64,
    pub search: String,
    pub graph: Option<Rc<GraphFile>>,
    pub own: Option<Rc<OwnAttribution>>,
    pub selected: Option<String>,
    pub status: String,
    pub check: String,
}

impl Default for CircuitsState {
    fn default() -> Self {
        Self {
            kind: GraphKind::Attribution,
            target: String::new(),
            threshold: 0.8,
            search: String::new(),
            graph: None,
            own: None,
            selected: None,
            status: String::new(),
            check: String::new(),
        }
    }
}

/// The block of a residual hook name (`blocks.3.hook_resid_pre` -> 3).
pub fn residual_block(hook_name: &str) -> Option<usize> {
    let rest = hook_name.strip_prefix("blocks.")?;
    let (block, site) = rest.split_once('.')?;
    matches!(
        site,
        "hook_resid_pre" | "hook_resid_mid" | "hook_resid_post"
    )
    .then(|| block.parse().ok())
    .flatten()
}

/// One SAE the page holds, as far as choosing a graph's SAEs goes.
pub struct SlotInfo<'a> {
    pub id: &'a str,
    pub hook_name: &'a str,
    pub architecture: &'a str,
}

/// Per block, the SAE a graph reads: the chosen SAE at its own block; elsewhere the first SAE
/// of the chosen one's architecture, or else the first at that block. Ascending by block.
pub fn pick_graph_saes(slots: &[SlotInfo<'_>], chosen: Option<&str>) -> Vec<String> {
    let chosen_slot = chosen.and_then(|id| slots.iter().find(|s| s.id == id));
    let mut by_block: std::collections::BTreeMap<usize, (u8, &str)> = Default::default();
    for (order, slot) in slots.iter().enumerate() {
        let Some(block) = residual_block(slot.hook_name) else {
            continue;
        };
        let rank = if Some(slot.id) == chosen {
            0
        } else if chosen_slot.is_some_and(|c| c.architecture == slot.architecture) {
            1
        } else {
            2
        };
        let _ = order;
        let entry = by_block.entry(block).or_insert((rank, slot.id));
        if rank < entry.0 {
            *entry = (rank, slot.id);
        }
    }
    by_block
        .into_values()
        .map(|(_, id)| id.to_string())
        .collect()
}

/// A node placed in the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedNode {
    /// Index into the file's nodes.
    pub index: usize,
    pub x: f64,
    pub y: f64,
    pub radius: f64,
    pub kind: FileNodeKind,
    pub title: String,
    pub highlighted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlacedEdge {
    pub from: (f64, f64),
    pub to: (f64, f64),
    pub width: f64,
    pub positive: bool,
    pub touches_selected: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphPicture {
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<PlacedNode>,
    pub edges: Vec<PlacedEdge>,
    /// `(y, text)` at the left edge, and `(x, text)` along the bottom.
    pub row_labels: Vec<(f64, String)>,
    pub column_labels: Vec<(f64, String)>,
    /// Visible links left out to keep the picture readable.
    pub edges_left_out: usize,
}

/// Most links drawn at once.
pub const MAX_DRAWN_EDGES: usize = 600;
/// Most nodes drawn in one column of a cross-layer graph.
pub const MAX_COLUMN_NODES: usize = 80;

/// A node's short description, as its tooltip and detail title.
pub fn node_title(file: &GraphFile, index: usize) -> String {
    let n = &file.nodes[index];
    let token = file
        .metadata
        .prompt_tokens
        .get(n.ctx_idx)
        .map(|t| format!(" at \"{t}\""))
        .unwrap_or_default();
    let what = match n.kind() {
        FileNodeKind::Feature { feature } => format!("layer {} feature {feature}", n.layer),
        FileNodeKind::Error => format!("layer {} error", n.layer),
        FileNodeKind::Embedding => "embedding".into(),
        FileNodeKind::Logit => n.clerp.clone(),
    };
    let clerp = match n.kind() {
        FileNodeKind::Feature { .. } if !n.clerp.is_empty() => format!(": {}", n.clerp),
        _ => String::new(),
    };
    if file.metadata.prompt_tokens.is_empty() {
        format!("{what}{clerp}")
    } else {
        format!("{what}{token}{clerp}")
    }
}

fn matches_search(file: &GraphFile, index: usize, search: &str) -> bool {
    let query = search.trim().to_lowercase();
    if query.is_empty() {
        return false;
    }
    let n = &file.nodes[index];
    match n.kind() {
        FileNodeKind::Feature { feature } => {
            feature.to_string() == query
                || n.node_id.to_lowercase() == query
                || n.clerp.to_lowercase().contains(&query)
        }
        _ => false,
    }
}

/// Numeric layers in order (embeddings "E" and logits left out).
fn layer_order(file: &GraphFile) -> Vec<String> {
    let mut layers: Vec<(i64, String)> = file
        .nodes
        .iter()
        .filter(|n| matches!(n.kind(), FileNodeKind::Feature { .. } | FileNodeKind::Error))
        .filter_map(|n| n.layer.parse::<i64>().ok().map(|l| (l, n.layer.clone())))
        .collect();
    layers.sort();
    layers.dedup();
    layers.into_iter().map(|(_, s)| s).collect()
}

/// Edges among `visible` nodes at `positions`, strongest first, at most [`MAX_DRAWN_EDGES`].
fn place_edges(
    file: &GraphFile,
    positions: &HashMap<usize, (f64, f64)>,
    selected: Option<usize>,
    keep: impl Fn(&crate::sae::circuits::GraphFileLink) -> bool,
) -> (Vec<PlacedEdge>, usize) {
    let index = file.node_index();
    let mut links: Vec<(usize, usize, f64)> = file
        .links
        .iter()
        .filter(|l| keep(l))
        .filter_map(|l| {
            let (s, t) = (
                *index.get(l.source.as_str())?,
                *index.get(l.target.as_str())?,
            );
            (positions.contains_key(&s) && positions.contains_key(&t)).then_some((s, t, l.weight))
        })
        .collect();
    links.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    let left_out = links.len().saturating_sub(MAX_DRAWN_EDGES);
    links.truncate(MAX_DRAWN_EDGES);
    let strongest = links.first().map_or(1.0, |l| l.2.abs().max(1e-12));
    let edges = links
        .iter()
        .map(|&(s, t, w)| PlacedEdge {
            from: positions[&s],
            to: positions[&t],
            width: 0.5 + 3.5 * (w.abs() / strongest),
            positive: w >= 0.0,
            touches_selected: selected.is_some_and(|n| n == s || n == t),
        })
        .collect();
    (edges, left_out)
}

/// An attribution graph: positions across, embeddings at the bottom, layers up, the logit on
/// top. Nodes whose cumulative influence is above `threshold` are hidden (embeddings and
/// logits never are).
pub fn attribution_picture(file: &GraphFile, state: &CircuitsState) -> GraphPicture {
    let positions_n = file
        .metadata
        .prompt_tokens
        .len()
        .max(file.nodes.iter().map(|n| n.ctx_idx + 1).max().unwrap_or(1));
    let layers = layer_order(file);
    let rows = layers.len() + 2; // embeddings, layers, logits
    let (column, row_height, left, top) = (96.0, 70.0, 70.0, 20.0);
    let width = left + column * positions_n as f64 + 10.0;
    let height = top + row_height * rows as f64 + 30.0;
    let row_of = |n: &crate::sae::circuits::GraphFileNode| -> usize {
        match n.kind() {
            FileNodeKind::Embedding => 0,
            FileNodeKind::Logit => rows - 1,
            _ => 1 + layers.iter().position(|l| *l == n.layer).unwrap_or(0),
        }
    };
    let y_of = |row: usize| top + row_height * (rows - 1 - row) as f64 + row_height / 2.0;
    let visible = |n: &crate::sae::circuits::GraphFileNode| match n.kind() {
        FileNodeKind::Embedding | FileNodeKind::Logit => true,
        _ => n.influence.is_none_or(|v| v <= state.threshold),
    };
    let selected = state
        .selected
        .as_ref()
        .and_then(|id| file.nodes.iter().position(|n| &n.node_id == id));
    // Group visible nodes by cell, most influential first.
    let mut cells: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (i, n) in file.nodes.iter().enumerate() {
        if visible(n) {
            cells.entry((row_of(n), n.ctx_idx)).or_default().push(i);
        }
    }
    let mut nodes = Vec::new();
    let mut positions = HashMap::new();
    for ((row, ctx), mut members) in cells {
        members.sort_by(|a, b| {
            let key = |i: &usize| file.nodes[*i].influence.unwrap_or(0.0);
            key(a).total_cmp(&key(b)).then(a.cmp(b))
        });
        let step = (column - 12.0) / members.len() as f64;
        for (k, &i) in members.iter().enumerate() {
            let x = left + column * ctx as f64 + 6.0 + step * (k as f64 + 0.5);
            let y = y_of(row);
            positions.insert(i, (x, y));
            nodes.push(PlacedNode {
                index: i,
                x,
                y,
                radius: if matches!(file.nodes[i].kind(), FileNodeKind::Feature { .. }) {
                    5.0
                } else {
                    6.0
                },
                kind: file.nodes[i].kind(),
                title: node_title(file, i),
                highlighted: Some(i) == selected || matches_search(file, i, &state.search),
            });
        }
    }
    nodes.sort_by_key(|n| n.index);
    let (edges, edges_left_out) = place_edges(file, &positions, selected, |_| true);
    let mut row_labels = vec![(y_of(0), "tokens".to_string())];
    for (r, layer) in layers.iter().enumerate() {
        row_labels.push((y_of(r + 1), format!("layer {layer}")));
    }
    row_labels.push((y_of(rows - 1), "output".into()));
    let column_labels = (0..positions_n)
        .map(|p| {
            (
                left + column * p as f64 + column / 2.0,
                file.metadata
                    .prompt_tokens
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| p.to_string()),
            )
        })
        .collect();
    GraphPicture {
        width,
        height,
        nodes,
        edges,
        row_labels,
        column_labels,
        edges_left_out,
    }
}

/// A cross-layer graph: layers as columns, features sized by density, the links at least
/// `threshold` times the strongest; with a search, only links touching a match.
pub fn cross_layer_picture(file: &GraphFile, state: &CircuitsState) -> GraphPicture {
    let layers = layer_order(file);
    let index = file.node_index();
    let strongest = file
        .links
        .iter()
        .map(|l| l.weight.abs())
        .fold(0.0, f64::max)
        .max(1e-12);
    let searching = !state.search.trim().is_empty();
    let keep = |l: &crate::sae::circuits::GraphFileLink| {
        l.weight.abs() >= state.threshold * strongest
            && (!searching
                || [&l.source, &l.target].iter().any(|id| {
                    index
                        .get(id.as_str())
                        .is_some_and(|&i| matches_search(file, i, &state.search))
                }))
    };
    let mut shown: Vec<bool> = vec![false; file.nodes.len()];
    let mut strongest_links: Vec<&crate::sae::circuits::GraphFileLink> =
        file.links.iter().filter(|l| keep(l)).collect();
    strongest_links.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    for l in strongest_links.iter().take(MAX_DRAWN_EDGES) {
        for id in [&l.source, &l.target] {
            if let Some(&i) = index.get(id.as_str()) {
                shown[i] = true;
            }
        }
    }
    let selected = state
        .selected
        .as_ref()
        .and_then(|id| index.get(id.as_str()).copied());
    if let Some(s) = selected {
        shown[s] = true;
    }
    let (column, left, top, spacing) = (190.0, 20.0, 20.0, 16.0);
    let max_density = file
        .nodes
        .iter()
        .filter_map(|n| n.density)
        .fold(0.0, f64::max)
        .max(1e-12);
    let mut nodes = Vec::new();
    let mut positions = HashMap::new();
    let mut tallest = 0;
    for (c, layer) in layers.iter().enumerate() {
        let mut members: Vec<usize> = (0..file.nodes.len())
            .filter(|&i| shown[i] && file.nodes[i].layer == *layer)
            .collect();
        members.sort_by(|a, b| {
            let d = |i: &usize| file.nodes[*i].density.unwrap_or(0.0);
            d(b).total_cmp(&d(a)).then(a.cmp(b))
        });
        members.truncate(MAX_COLUMN_NODES);
        tallest = tallest.max(members.len());
        for (k, &i) in members.iter().enumerate() {
            let (x, y) = (
                left + column * c as f64 + column / 2.0,
                top + spacing * (k as f64 + 0.5),
            );
            positions.insert(i, (x, y));
            let density = file.nodes[i].density.unwrap_or(0.0);
            nodes.push(PlacedNode {
                index: i,
                x,
                y,
                radius: 2.5 + 5.0 * (density / max_density).sqrt(),
                kind: file.nodes[i].kind(),
                title: node_title(file, i),
                highlighted: Some(i) == selected || matches_search(file, i, &state.search),
            });
        }
    }
    let (edges, edges_left_out) = place_edges(file, &positions, selected, keep);
    GraphPicture {
        width: left * 2.0 + column * layers.len().max(1) as f64,
        height: top + spacing * tallest.max(1) as f64 + 30.0,
        column_labels: layers
            .iter()
            .enumerate()
            .map(|(c, l)| {
                (
                    left + column * c as f64 + column / 2.0,
                    format!("layer {l}"),
                )
            })
            .collect(),
        row_labels: Vec::new(),
        nodes,
        edges,
        edges_left_out,
    }
}

/// The selected node's details: its title, then its strongest inputs and outputs.
pub fn node_details(file: &GraphFile, node_id: &str) -> Option<Vec<String>> {
    let index = file.node_index();
    let &i = index.get(node_id)?;
    let n = &file.nodes[i];
    let mut lines = vec![node_title(file, i)];
    let mut facts = Vec::new();
    if let Some(a) = n.activation {
        facts.push(format!("activation {a:.3}"));
    }
    if let Some(d) = n.density {
        facts.push(format!("density {d:.4}"));
    }
    if let Some(v) = n.influence {
        facts.push(format!("cumulative influence {v:.3}"));
    }
    if !facts.is_empty() {
        lines.push(facts.join(", "));
    }
    let describe = |id: &str| {
        index
            .get(id)
            .map_or_else(|| id.to_string(), |&j| node_title(file, j))
    };
    let mut inputs: Vec<_> = file.links.iter().filter(|l| l.target == node_id).collect();
    inputs.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    for l in inputs.iter().take(5) {
        lines.push(format!("from {} ({:+.3})", describe(&l.source), l.weight));
    }
    let mut outputs: Vec<_> = file.links.iter().filter(|l| l.source == node_id).collect();
    outputs.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    for l in outputs.iter().take(5) {
        lines.push(format!("to {} ({:+.3})", describe(&l.target), l.weight));
    }
    Some(lines)
}

/// The SAE slot and feature a feature node opens, when this page holds the graph's SAEs.
pub fn feature_of_node(file: &GraphFile, node_id: &str, held: &[&str]) -> Option<(String, usize)> {
    let n = file.nodes.iter().find(|n| n.node_id == node_id)?;
    let FileNodeKind::Feature { feature } = n.kind() else {
        return None;
    };
    let facts = file.metadata.saeplay.as_ref()?;
    let position = facts
        .layers
        .iter()
        .position(|(layer, _)| *layer == n.layer)?;
    let slot = file.metadata.transcoder_list.get(position)?;
    held.contains(&slot.as_str())
        .then(|| (slot.clone(), feature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_read_one_sae_per_block_preferring_the_chosen_one_and_its_kind() {
        let slots = [
            SlotInfo {
                id: "b0-topk",
                hook_name: "blocks.0.hook_resid_pre",
                architecture: "topk",
            },
            SlotInfo {
                id: "b2-standard",
                hook_name: "blocks.2.hook_resid_pre",
                architecture: "standard",
            },
            SlotInfo {
                id: "b2-topk",
                hook_name: "blocks.2.hook_resid_pre",
                architecture: "topk",
            },
            SlotInfo {
                id: "b1-mlp",
                hook_name: "blocks.1.hook_mlp_out",
                architecture: "topk",
            },
            SlotInfo {
                id: "b3-topk",
                hook_name: "blocks.3.hook_resid_post",
                architecture: "topk",
            },
        ];
        assert_eq!(
            pick_graph_saes(&slots, Some("b0-topk")),
            ["b0-topk", "b2-topk", "b3-topk"]
        );
        assert_eq!(
            pick_graph_saes(&slots, Some("b2-standard")),
            ["b0-topk", "b2-standard", "b3-topk"]
        );
        assert_eq!(
            pick_graph_saes(&slots, None),
            ["b0-topk", "b2-standard", "b3-topk"]
        );
        assert_eq!(residual_block("blocks.11.hook_resid_post"), Some(11));
        assert_eq!(residual_block("blocks.x.hook_resid_pre"), None);
        assert_eq!(residual_block("blocks.1.attn.hook_z"), None);
    }
}
