//! The features view's list: rows, a search box and sortable columns.

use serde::{Deserialize, Serialize};

use crate::sae::explain::FeatureExplanation;
use crate::sae::features::{FeatureData, FeatureOverview, FeatureReport};

/// One feature's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    pub index: usize,
    pub density: f64,
    pub max_activation: f32,
    /// The TinyTales concept it matches best, and that match's AUROC.
    pub concept: Option<(String, f64)>,
    /// The tokens it fires on most (from its top examples), for search.
    pub top_tokens: Vec<String>,
    /// The automatic explanation and its simulation score on held-out text.
    #[serde(default)]
    pub explanation: Option<String>,
    #[serde(default)]
    pub score: Option<f64>,
}

/// The explanation's text and simulation score, when there is one.
fn explained(e: Option<&FeatureExplanation>) -> (Option<String>, Option<f64>) {
    match e {
        Some(e) if !e.explanation.is_empty() => (
            Some(e.explanation.clone()),
            e.score.as_ref().map(|s| s.simulation),
        ),
        _ => (None, None),
    }
}

impl FeatureRow {
    /// Show `explanation` (its text and simulation score) in this row.
    pub fn set_explanation(&mut self, explanation: Option<&FeatureExplanation>) {
        (self.explanation, self.score) = explained(explanation);
    }

    /// The row of one feature of a report: its top tokens are those of its top 5 examples.
    pub fn of(feature: &FeatureData) -> Self {
        let (explanation, score) = explained(feature.explanation.as_ref());
        Self {
            index: feature.index,
            density: feature.density,
            max_activation: feature.max_activation,
            concept: feature
                .best_concept
                .as_ref()
                .map(|c| (c.concept.clone(), c.auroc)),
            top_tokens: feature
                .top_examples
                .iter()
                .take(5)
                .filter_map(|e| e.tokens.get(e.focus).cloned())
                .collect(),
            explanation,
            score,
        }
    }
}

impl From<&FeatureOverview> for FeatureRow {
    fn from(overview: &FeatureOverview) -> Self {
        Self {
            index: overview.index,
            density: overview.density,
            max_activation: overview.max_activation,
            concept: overview
                .best_concept
                .as_ref()
                .map(|c| (c.concept.clone(), c.auroc)),
            top_tokens: overview.top_tokens.clone(),
            explanation: None,
            score: None,
        }
    }
}

/// What the list needs of a report (about 100 KB for 1,024 features, where the whole report with
/// every card's examples is about 10 MB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureList {
    /// Held-out tokens the report read.
    pub tokens: usize,
    pub rows: Vec<FeatureRow>,
}

impl FeatureList {
    pub fn of(report: &FeatureReport) -> Self {
        Self {
            tokens: report.tokens,
            rows: report.features.iter().map(FeatureRow::of).collect(),
        }
    }

    /// The list of a scan whose cards are made one at a time.
    pub fn of_overview(tokens: usize, overview: &[FeatureOverview]) -> Self {
        Self {
            tokens,
            rows: overview.iter().map(FeatureRow::from).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Index,
    Density,
    MaxActivation,
    ConceptMatch,
    /// The explanation's simulation score.
    Score,
}

impl SortKey {
    pub const ALL: [SortKey; 5] = [
        SortKey::Index,
        SortKey::Density,
        SortKey::MaxActivation,
        SortKey::ConceptMatch,
        SortKey::Score,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Index => "index",
            SortKey::Density => "density",
            SortKey::MaxActivation => "max",
            SortKey::ConceptMatch => "concept",
            SortKey::Score => "score",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The rows to show, in order: those matching `query` (a feature number, or words found in its
/// concept or top tokens), sorted by `key` (ties by index), at most `limit`.
pub fn select(
    rows: &[FeatureRow],
    query: &str,
    key: SortKey,
    descending: bool,
    limit: usize,
) -> Vec<usize> {
    let query = query.trim().to_lowercase();
    let matches = |row: &FeatureRow| {
        if query.is_empty() {
            return true;
        }
        if let Ok(n) = query.trim_start_matches('#').parse::<usize>() {
            return row.index == n;
        }
        query.split_whitespace().all(|word| {
            row.concept
                .as_ref()
                .is_some_and(|(c, _)| c.to_lowercase().contains(word))
                || row
                    .top_tokens
                    .iter()
                    .any(|t| t.trim().to_lowercase().contains(word))
                || row
                    .explanation
                    .as_ref()
                    .is_some_and(|e| e.to_lowercase().contains(word))
        })
    };
    let mut chosen: Vec<usize> = (0..rows.len()).filter(|&i| matches(&rows[i])).collect();
    let value = |row: &FeatureRow| -> f64 {
        match key {
            SortKey::Index => row.index as f64,
            SortKey::Density => row.density,
            SortKey::MaxActivation => f64::from(row.max_activation),
            SortKey::ConceptMatch => row.concept.as_ref().map_or(f64::NEG_INFINITY, |c| c.1),
            SortKey::Score => row.score.unwrap_or(f64::NEG_INFINITY),
        }
    };
    chosen.sort_by(|&a, &b| {
        let (va, vb) = (value(&rows[a]), value(&rows[b]));
        let order = if descending {
            vb.total_cmp(&va)
        } else {
            va.total_cmp(&vb)
        };
        order.then(rows[a].index.cmp(&rows[b].index))
    });
    chosen.truncate(limit);
    chosen
}
