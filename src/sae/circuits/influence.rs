//! Influence and pruning exactly as circuit-tracer's `graph.py` does it: the adjacency's
//! absolute values normalised by row, influence as the logit weights times `Â + Â² + ...`, nodes
//! kept up to a cumulative share of influence, links up to a cumulative share of their scores,
//! then nodes without links dropped until nothing changes.

use super::{AttributionGraph, GraphLink, GraphNode, NodeKind, SourceRow};

/// `|A|` with each row divided by its sum (rows are targets).
fn normalised(rows: &[SourceRow], keep: Option<&[bool]>) -> Vec<(usize, Vec<(usize, f64)>)> {
    rows.iter()
        .filter(|row| keep.is_none_or(|k| k[row.target]))
        .map(|row| {
            let entries: Vec<(usize, f64)> = row
                .sources
                .iter()
                .filter(|(s, _)| keep.is_none_or(|k| k[*s as usize]))
                .map(|(s, w)| (*s as usize, f64::from(w.abs())))
                .collect();
            let sum = entries.iter().map(|(_, w)| w).sum::<f64>().max(1e-10);
            (
                row.target,
                entries.into_iter().map(|(s, w)| (s, w / sum)).collect(),
            )
        })
        .collect()
}

/// `w Â + w Â² + ...` over `n` nodes. The graph is acyclic (sources precede their targets), so
/// the series ends after as many steps as the longest path.
fn influence(normalised: &[(usize, Vec<(usize, f64)>)], weights: &[f64]) -> Vec<f64> {
    let n = weights.len();
    let mut total = vec![0.0; n];
    let mut current = weights.to_vec();
    for _ in 0..n.max(1) {
        let mut next = vec![0.0; n];
        for (target, sources) in normalised {
            let c = current[*target];
            if c != 0.0 {
                for (s, w) in sources {
                    next[*s] += c * w;
                }
            }
        }
        if next.iter().all(|v| *v == 0.0) {
            break;
        }
        for (t, v) in total.iter_mut().zip(&next) {
            *t += v;
        }
        current = next;
    }
    total
}

/// The score at which the sorted scores' cumulative share first reaches `threshold`.
fn threshold_score(scores: impl Iterator<Item = f64>, threshold: f64) -> f64 {
    let mut sorted: Vec<f64> = scores.collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = sorted.iter().sum();
    if sorted.is_empty() || total <= 0.0 {
        return 0.0;
    }
    let mut running = 0.0;
    for v in &sorted {
        running += v;
        if running / total >= threshold {
            return *v;
        }
    }
    *sorted.last().expect("non-empty")
}

fn is_feature(node: &GraphNode) -> bool {
    matches!(node.kind, NodeKind::Feature { .. })
}

fn always_kept(node: &GraphNode) -> bool {
    matches!(
        node.kind,
        NodeKind::Embedding { .. } | NodeKind::Logit { .. }
    )
}

pub(super) fn prune(
    mut nodes: Vec<GraphNode>,
    rows: Vec<SourceRow>,
    logit: usize,
    node_threshold: f64,
    edge_threshold: f64,
) -> AttributionGraph {
    let n = nodes.len();
    let mut weights = vec![0.0; n];
    if let NodeKind::Logit { probability, .. } = nodes[logit].kind {
        weights[logit] = f64::from(probability).max(1e-12);
    }
    let full = normalised(&rows, None);
    let node_influence = influence(&full, &weights);
    let cut = threshold_score(node_influence.iter().copied(), node_threshold);
    let mut kept: Vec<bool> = (0..n)
        .map(|i| node_influence[i] >= cut && node_influence[i] > 0.0 || always_kept(&nodes[i]))
        .collect();

    let pruned = normalised(&rows, Some(&kept));
    let mut pruned_influence = influence(&pruned, &weights);
    for (p, w) in pruned_influence.iter_mut().zip(&weights) {
        *p += w;
    }
    let mut scored: Vec<(usize, usize, f64)> = Vec::new(); // (source, target, score)
    for (target, sources) in &pruned {
        for (s, w) in sources {
            let score = w * pruned_influence[*target];
            if score > 0.0 {
                scored.push((*s, *target, score));
            }
        }
    }
    let edge_cut = threshold_score(scored.iter().map(|e| e.2), edge_threshold);
    let mut edges: Vec<(usize, usize, f64)> =
        scored.into_iter().filter(|e| e.2 >= edge_cut).collect();
    loop {
        let mut outgoing = vec![false; n];
        let mut incoming = vec![false; n];
        for (s, t, _) in &edges {
            outgoing[*s] = true;
            incoming[*t] = true;
        }
        let mut changed = false;
        for i in 0..n {
            if kept[i] && !always_kept(&nodes[i]) {
                let keep = outgoing[i] && (!is_feature(&nodes[i]) || incoming[i]);
                if !keep {
                    kept[i] = false;
                    changed = true;
                }
            }
        }
        edges.retain(|(s, t, _)| kept[*s] && kept[*t]);
        if !changed {
            break;
        }
    }

    // circuit-tracer's JSON influence: the cumulative share at each node's rank.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| node_influence[*b].total_cmp(&node_influence[*a]));
    let total: f64 = node_influence.iter().sum::<f64>().max(1e-30);
    let mut running = 0.0;
    for i in order {
        running += node_influence[i];
        nodes[i].influence = node_influence[i] as f32;
        nodes[i].cumulative_influence = (running / total) as f32;
    }

    let effect: std::collections::HashMap<(usize, usize), f32> = rows
        .iter()
        .flat_map(|row| {
            row.sources
                .iter()
                .map(move |(s, w)| ((*s as usize, row.target), *w))
        })
        .collect();
    edges.sort_by(|a, b| b.2.total_cmp(&a.2));
    let links = edges
        .iter()
        .map(|(s, t, _)| GraphLink {
            source: *s,
            target: *t,
            weight: effect[&(*s, *t)],
        })
        .collect();

    let (replacement_score, completeness_score) = scores(&nodes, &full, &node_influence, &weights);
    AttributionGraph {
        nodes,
        rows,
        logit,
        kept,
        links,
        replacement_score,
        completeness_score,
        node_threshold,
    }
}

/// Neuronpedia's replacement and completeness scores on the unpruned graph.
fn scores(
    nodes: &[GraphNode],
    full: &[(usize, Vec<(usize, f64)>)],
    node_influence: &[f64],
    weights: &[f64],
) -> (f64, f64) {
    let is_error = |i: usize| matches!(nodes[i].kind, NodeKind::Error { .. });
    let is_token = |i: usize| matches!(nodes[i].kind, NodeKind::Embedding { .. });
    let token: f64 = (0..nodes.len())
        .filter(|&i| is_token(i))
        .map(|i| node_influence[i])
        .sum();
    let error: f64 = (0..nodes.len())
        .filter(|&i| is_error(i))
        .map(|i| node_influence[i])
        .sum();
    let replacement = if token + error > 0.0 {
        token / (token + error)
    } else {
        0.0
    };
    let (mut numerator, mut denominator) = (0.0, 0.0);
    for (target, sources) in full {
        let from_errors: f64 = sources
            .iter()
            .filter(|(s, _)| is_error(*s))
            .map(|(_, w)| w)
            .sum();
        let weight = node_influence[*target] + weights[*target];
        numerator += (1.0 - from_errors) * weight;
        denominator += weight;
    }
    let completeness = if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    };
    (replacement, completeness)
}

/// Per node, how much the logit falls when the node is removed, to first order: the logit's
/// row directly, and through each feature target the effect share `A[j, s] / a_j` of that
/// feature's own total. Sources always precede their targets, so one pass from the end works.
pub(super) fn total_effects(graph: &AttributionGraph) -> Vec<f64> {
    let n = graph.nodes.len();
    let mut effect = vec![0.0f64; n];
    effect[graph.logit] = 1.0;
    let mut rows: Vec<&SourceRow> = graph.rows.iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.target));
    for row in rows {
        let target = &graph.nodes[row.target];
        let factor = match target.kind {
            NodeKind::Logit { .. } => 1.0,
            NodeKind::Feature { .. } if target.activation != 0.0 => {
                effect[row.target] / f64::from(target.activation)
            }
            _ => 0.0,
        };
        if factor == 0.0 {
            continue;
        }
        for (s, w) in &row.sources {
            effect[*s as usize] += f64::from(*w) * factor;
        }
    }
    effect[graph.logit] = 0.0;
    effect
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HookPoint;

    fn feature(feature: usize, activation: f32) -> GraphNode {
        GraphNode::new(
            NodeKind::Feature {
                layer: 0,
                hook: HookPoint::ResidPre(0),
                feature,
            },
            1,
            activation,
        )
    }

    #[test]
    fn influence_sums_paths_and_total_effects_chain_through_features() {
        // embedding 0 -> feature 1 (a = 2) -> logit 3; embedding 0 -> feature 2 (a = 1) -> logit.
        let nodes = vec![
            GraphNode::new(NodeKind::Embedding { token: 5 }, 1, 0.0),
            feature(7, 2.0),
            feature(8, 1.0),
            GraphNode::new(
                NodeKind::Logit {
                    token: 3,
                    probability: 1.0,
                },
                1,
                4.0,
            ),
        ];
        let rows = vec![
            SourceRow {
                target: 1,
                sources: vec![(0, 2.0)],
            },
            SourceRow {
                target: 2,
                sources: vec![(0, 1.0)],
            },
            SourceRow {
                target: 3,
                sources: vec![(1, 3.0), (2, -1.0)],
            },
        ];
        let graph = prune(nodes, rows, 3, 1.0, 1.0);
        // Â: logit row [3, 1]/4; feature rows all on the embedding.
        assert!((graph.nodes[1].influence - 0.75).abs() < 1e-6);
        assert!((graph.nodes[2].influence - 0.25).abs() < 1e-6);
        assert!((graph.nodes[0].influence - 1.0).abs() < 1e-6);
        // Linear removal: feature 1 carries 3, feature 2 carries -1; the embedding all of
        // feature 1's input (3 * 2/2) and all of feature 2's (-1 * 1/1).
        let effects = total_effects(&graph);
        assert_eq!(effects[1], 3.0);
        assert_eq!(effects[2], -1.0);
        assert_eq!(effects[0], 2.0);
        assert_eq!(graph.replacement_score, 1.0);
        assert!(graph.kept.iter().all(|k| *k));
        // Links keep their signed direct effects.
        let link = |s: usize, t: usize| graph.links.iter().find(|l| l.source == s && l.target == t);
        assert_eq!(link(1, 3).unwrap().weight, 3.0);
        assert_eq!(link(2, 3).unwrap().weight, -1.0);
        assert_eq!(graph.links.len(), 4);
    }

    #[test]
    fn weak_nodes_are_pruned_and_features_without_links_dropped() {
        let nodes = vec![
            GraphNode::new(NodeKind::Embedding { token: 5 }, 1, 0.0),
            feature(1, 1.0),
            feature(2, 1.0),
            GraphNode::new(
                NodeKind::Logit {
                    token: 3,
                    probability: 0.5,
                },
                1,
                4.0,
            ),
        ];
        let rows = vec![
            SourceRow {
                target: 1,
                sources: vec![(0, 1.0)],
            },
            SourceRow {
                target: 2,
                sources: vec![(0, 1.0)],
            },
            SourceRow {
                target: 3,
                sources: vec![(1, 99.0), (2, 1.0)],
            },
        ];
        let graph = prune(nodes, rows, 3, 0.8, 0.98);
        assert!(graph.kept[1]);
        assert!(!graph.kept[2], "a 1% feature falls below the 80% node cut");
        assert!(graph.kept[0] && graph.kept[3]);
        assert!(graph.links.iter().all(|l| l.source != 2 && l.target != 2));
    }
}
