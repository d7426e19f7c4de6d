//! The prompt heatmap's numbers: an SAE's strongest features on each token, and the rows shown.

/// Features kept per token.
pub const HEAT_PER_TOKEN: usize = 3;
/// Feature rows the heatmap shows.
pub const HEAT_ROWS: usize = 12;

/// The prompt's SAE features per token.
#[derive(Debug, Clone, PartialEq)]
pub struct Heat {
    pub sae_id: String,
    pub tokens: Vec<String>,
    /// Per token, its top few `(feature, activation)`, strongest first.
    pub top: Vec<Vec<(usize, f32)>>,
}

impl Heat {
    /// The heat of `activations` `[tokens, d_sae]` (row-major): the `per_token` strongest active
    /// features of each token, ties to the lower feature.
    pub fn of(
        sae_id: String,
        tokens: Vec<String>,
        activations: &[f32],
        d_sae: usize,
        per_token: usize,
    ) -> Self {
        let top = activations
            .chunks(d_sae.max(1))
            .take(tokens.len())
            .map(|row| {
                let mut order: Vec<usize> = (0..row.len()).filter(|&f| row[f] > 0.0).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                order.truncate(per_token);
                order.into_iter().map(|f| (f, row[f])).collect()
            })
            .collect();
        Self {
            sae_id,
            tokens,
            top,
        }
    }

    /// The heatmap's rows: the features that fire most anywhere in the prompt, with their peak,
    /// strongest first, at most `n`.
    pub fn rows(&self, n: usize) -> Vec<(usize, f32)> {
        let mut best: std::collections::BTreeMap<usize, f32> = Default::default();
        for &(f, a) in self.top.iter().flatten() {
            let entry = best.entry(f).or_insert(0.0);
            *entry = entry.max(a);
        }
        let mut rows: Vec<(usize, f32)> = best.into_iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        rows.truncate(n);
        rows
    }

    /// Feature `feature`'s activation on token `token` (0 where it is not among the top).
    pub fn at(&self, token: usize, feature: usize) -> f32 {
        self.top[token]
            .iter()
            .find(|(f, _)| *f == feature)
            .map_or(0.0, |p| p.1)
    }
}
