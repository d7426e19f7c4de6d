//! Per-feature data for feature cards, and concept recovery on TinyTales.
//!
//! A scan runs the model over held-out windows, encodes the SAE's hook, and keeps every token's
//! feature activations (tokens x d_sae on the host), from which it derives, per feature: density,
//! top-activating contexts, examples from bands of lower activation (intervals of the maximum,
//! as Neuronpedia and Anthropic show them), the activation histogram, the logit lens (the tokens
//! `W_dec[i] @ W_U` most promotes and suppresses) and the nearest features by decoder cosine.
//! When the windows carry TinyTales concepts, each concept's best single feature by AUROC, and
//! each feature's best concept.

use serde::{Deserialize, Serialize};

use super::Sae;
use super::arch::W_DEC;
use super::explain::{FeatureExplanation, LENS_TERMS, ScanText, Scorer};
use super::stats::{
    CosineNeighbours, ExampleCollector, ExampleConfig, FeatureStatsAccumulator, FeatureSummary,
    Histogram, best_concept_per_feature, best_feature_per_concept, concept_auroc_matrix, histogram,
    mean_best_auroc, top_and_bottom,
};
use super::store::Window;
use crate::backend::read_f32;
use crate::error::{Result, SaeplayError};
use crate::model::{HookPoint, Model};
use crate::tinytales::Concept;
use crate::tokenizer::TextTokenizer;

/// How much a scan keeps per feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanConfig {
    pub top_examples: usize,
    pub bands: usize,
    pub examples_per_band: usize,
    pub histogram_bins: usize,
    pub logit_lens_tokens: usize,
    pub nearest_features: usize,
    /// Tokens shown before and after the example's token.
    pub context_before: usize,
    pub context_after: usize,
    pub batch_windows: usize,
    pub seed: u64,
    /// Explain each card (see `explain`); the page's worker does it in the background instead.
    pub explain: bool,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            top_examples: 12,
            bands: 4,
            examples_per_band: 4,
            histogram_bins: 32,
            logit_lens_tokens: 10,
            nearest_features: 8,
            context_before: 12,
            context_after: 4,
            batch_windows: 16,
            seed: 0,
            explain: true,
        }
    }
}

/// One example: a stretch of tokens with this feature's activation on each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The activation on the focus token.
    pub activation: f32,
    pub tokens: Vec<String>,
    pub token_ids: Vec<u32>,
    pub activations: Vec<f32>,
    /// Index of the focus token in `tokens`.
    pub focus: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandExamples {
    pub low: f32,
    pub high: f32,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensToken {
    pub token: String,
    pub id: u32,
    pub value: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptScore {
    pub concept: String,
    pub auroc: f64,
}

/// Everything a feature card shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureData {
    pub index: usize,
    pub density: f64,
    pub max_activation: f32,
    pub mean_active: f64,
    pub top_examples: Vec<Example>,
    pub bands: Vec<BandExamples>,
    /// Histogram of the feature's non-zero activations.
    pub histogram: Histogram,
    pub promoted: Vec<LensToken>,
    pub suppressed: Vec<LensToken>,
    /// `(feature, cosine similarity of decoder rows)`, most similar first.
    pub nearest: Vec<(usize, f32)>,
    pub best_concept: Option<ConceptScore>,
    /// The automatic explanation and its held-out score.
    #[serde(default)]
    pub explanation: Option<FeatureExplanation>,
}

/// Per concept, the single feature that best tells its tokens apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptRecovery {
    pub concept: String,
    pub feature: usize,
    pub auroc: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReport {
    pub tokens: usize,
    pub features: Vec<FeatureData>,
    /// Empty when the windows carry no concepts (text that is not TinyTales).
    pub concept_recovery: Vec<ConceptRecovery>,
    pub mean_concept_auroc: Option<f64>,
}

/// Everything a scan keeps before it summarises.
pub struct Scan {
    pub tokens: usize,
    pub d_sae: usize,
    /// `[tokens, d_sae]`.
    pub acts: Vec<f32>,
    pub ids: Vec<u32>,
    /// Index of each token's window and position in it.
    pub place: Vec<(usize, usize)>,
    pub concepts: Vec<u64>,
    pub window_len: usize,
}

/// Per concept, the best single feature by AUROC over tokens `[n_tokens, d_sae]` whose concept
/// bitmasks are `concepts`; empty (and `None`) when no token carries a concept.
pub fn concept_recovery(
    acts: &[f32],
    n_tokens: usize,
    d_sae: usize,
    concepts: &[u64],
) -> Result<(Vec<ConceptRecovery>, Option<f64>)> {
    Ok(match concept_scores(acts, n_tokens, d_sae, concepts)? {
        Some(scores) => (scores.recovery, scores.mean),
        None => (Vec::new(), None),
    })
}

/// The AUROC of every feature for every concept `[d_sae, concepts]`, each concept's best
/// feature, and their mean; `None` when no token carries a concept.
struct ConceptScores {
    matrix: Vec<f32>,
    recovery: Vec<ConceptRecovery>,
    mean: Option<f64>,
}

fn concept_scores(
    acts: &[f32],
    n_tokens: usize,
    d_sae: usize,
    concepts: &[u64],
) -> Result<Option<ConceptScores>> {
    if !concepts.iter().any(|&c| c != 0) {
        return Ok(None);
    }
    let matrix = concept_auroc_matrix(acts, n_tokens, d_sae, concepts, Concept::COUNT)?;
    let best = best_feature_per_concept(&matrix, d_sae, Concept::COUNT);
    let recovery = best
        .iter()
        .flatten()
        .map(|m| ConceptRecovery {
            concept: Concept::ALL[m.concept].name().to_string(),
            feature: m.feature,
            auroc: m.auroc,
        })
        .collect();
    Ok(Some(ConceptScores {
        mean: mean_best_auroc(&best),
        matrix,
        recovery,
    }))
}

/// Run the model over `windows` and keep the SAE's activations on every token.
pub async fn scan(
    model: &Model,
    sae: &Sae,
    hook: HookPoint,
    windows: &[Window],
    batch_windows: usize,
) -> Result<Scan> {
    sae.check_fits(&hook.to_string(), hook.width(model.dims()))?;
    let d = sae.config.d_in;
    let d_sae = sae.config.d_sae;
    let window_len = windows.first().map_or(0, |w| w.ids.len());
    let mut out = Scan {
        tokens: 0,
        d_sae,
        acts: Vec::new(),
        ids: Vec::new(),
        place: Vec::new(),
        concepts: Vec::new(),
        window_len,
    };
    for (c, chunk) in windows.chunks(batch_windows.max(1)).enumerate() {
        let ids: Vec<Vec<u32>> = chunk.iter().map(|w| w.ids.clone()).collect();
        let (b, t) = (ids.len(), ids[0].len());
        let Some((_, x)) = model.capture(&ids, &[hook])?.pop() else {
            return Err(SaeplayError::InvalidSetting(format!(
                "`{hook}` was not captured"
            )));
        };
        let acts = sae.encode_to_host(x.reshape([b * t, d])).await?;
        out.acts.extend(acts);
        for (w, window) in chunk.iter().enumerate() {
            out.ids.extend(&window.ids);
            out.concepts
                .extend(window.concepts.iter().map(|c| u64::from(c.bits())));
            out.place
                .extend((0..t).map(|p| (c * batch_windows.max(1) + w, p)));
        }
        out.tokens += b * t;
    }
    Ok(out)
}

impl Scan {
    /// Add a later scan's tokens (over the windows after this one's), so a long scan can run in
    /// pieces with the page answering between them.
    pub fn extend(&mut self, other: Scan) {
        let windows_before = self.tokens.checked_div(self.window_len).unwrap_or(0);
        if self.tokens == 0 {
            self.window_len = other.window_len;
            self.d_sae = other.d_sae;
        }
        self.tokens += other.tokens;
        self.acts.extend(other.acts);
        self.ids.extend(other.ids);
        self.concepts.extend(other.concepts);
        self.place.extend(
            other
                .place
                .into_iter()
                .map(|(w, p)| (w + windows_before, p)),
        );
    }
}

impl Scan {
    pub(crate) fn activation(&self, token: usize, feature: usize) -> f32 {
        self.acts[token * self.d_sae + feature]
    }

    fn example(
        &self,
        tokenizer: &TextTokenizer,
        config: &ScanConfig,
        token: usize,
        feature: usize,
    ) -> Example {
        let (window, position) = self.place[token];
        let start = position.saturating_sub(config.context_before);
        let end = (position + config.context_after + 1).min(self.window_len);
        let base = window * self.window_len;
        let range = base + start..base + end;
        Example {
            activation: self.activation(token, feature),
            tokens: range
                .clone()
                .map(|t| tokenizer.token_text(self.ids[t]))
                .collect(),
            token_ids: range.clone().map(|t| self.ids[t]).collect(),
            activations: range.map(|t| self.activation(t, feature)).collect(),
            focus: position - start,
        }
    }
}

/// Most logit-lens values computed at once: `W_dec @ W_U` of a 24,576-latent SAE on GPT-2's
/// 50,257 tokens is 4.9 GB as one matrix, so it is taken a block of rows at a time (64 MB).
const LENS_BLOCK_VALUES: usize = 16 << 20;

/// The logit lens of each feature in `features`: the `k` tokens `W_dec[i] @ W_U` promotes most and
/// suppresses most, computed in blocks of rows.
pub async fn logit_lens(
    model: &Model,
    sae: &Sae,
    features: &[usize],
    k: usize,
) -> Result<Vec<(Vec<(usize, f32)>, Vec<(usize, f32)>)>> {
    let vocab = model.dims().d_vocab;
    let rows_per_block = (LENS_BLOCK_VALUES / vocab.max(1)).max(1);
    let w_dec = sae.param(W_DEC);
    let mut out = Vec::with_capacity(features.len());
    for block in features.chunks(rows_per_block) {
        let index: Vec<i64> = block.iter().map(|&f| f as i64).collect();
        let index = crate::backend::int_tensor(index, [block.len()], sae.device());
        let rows = w_dec.clone().select(0, index); // [block, d_in]
        let lens = read_f32(model.unembed_directions(rows)).await?; // [block, vocab]
        out.extend(lens.chunks_exact(vocab).map(|row| top_and_bottom(row, k)));
    }
    Ok(out)
}

/// What every card of one scan shares, computed once: each feature's density, max and mean,
/// and (on TinyTales windows) its best concept and the concept recovery.
pub struct ScanSummary {
    pub summaries: Vec<FeatureSummary>,
    best_concepts: Vec<Option<ConceptScore>>,
    pub concept_recovery: Vec<ConceptRecovery>,
    pub mean_concept_auroc: Option<f64>,
}

pub fn summarise_scan(scan: &Scan) -> Result<ScanSummary> {
    let d_sae = scan.d_sae;
    let mut summary = FeatureStatsAccumulator::new(d_sae);
    summary.add_batch(&scan.acts, scan.tokens)?;
    let (concept_recovery, per_feature, mean_concept_auroc) =
        match concept_scores(&scan.acts, scan.tokens, d_sae, &scan.concepts)? {
            Some(scores) => (
                scores.recovery,
                best_concept_per_feature(&scores.matrix, d_sae, Concept::COUNT),
                scores.mean,
            ),
            None => (Vec::new(), vec![None; d_sae], None),
        };
    Ok(ScanSummary {
        summaries: summary.finish(),
        best_concepts: per_feature
            .into_iter()
            .map(|m| {
                m.map(|m| ConceptScore {
                    concept: Concept::ALL[m.concept].name().to_string(),
                    auroc: m.auroc,
                })
            })
            .collect(),
        concept_recovery,
        mean_concept_auroc,
    })
}

/// One feature's line in a list: cheap for every feature of even a 24,576-latent SAE, where
/// the full cards (examples, logit lens, neighbours) are made one at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureOverview {
    pub index: usize,
    pub density: f64,
    pub max_activation: f32,
    pub best_concept: Option<ConceptScore>,
    /// The tokens of its 5 highest activations.
    pub top_tokens: Vec<String>,
}

pub fn feature_overview(
    tokenizer: &TextTokenizer,
    scan: &Scan,
    summary: &ScanSummary,
    config: &ScanConfig,
) -> Result<Vec<FeatureOverview>> {
    let mut collector = ExampleCollector::new(
        scan.d_sae,
        None,
        ExampleConfig {
            n_top: 5,
            n_bands: 0,
            per_band: 0,
            seed: config.seed,
        },
    )?;
    collector.add_batch(&scan.acts, scan.tokens)?;
    Ok(collector
        .finish()
        .into_iter()
        .enumerate()
        .map(|(f, ex)| FeatureOverview {
            index: f,
            density: summary.summaries[f].density,
            max_activation: summary.summaries[f].max_activation,
            best_concept: summary.best_concepts[f].clone(),
            top_tokens: ex
                .top
                .iter()
                .map(|&(_, token)| tokenizer.token_text(scan.ids[token]))
                .collect(),
        })
        .collect())
}

/// Full cards for `features`: examples, histogram, logit lens and nearest features, and (when
/// the config says so) each one's automatic explanation and score.
pub async fn feature_cards(
    model: &Model,
    tokenizer: &TextTokenizer,
    sae: &Sae,
    scan: &Scan,
    summary: &ScanSummary,
    features: &[usize],
    config: &ScanConfig,
) -> Result<Vec<FeatureData>> {
    let d_sae = scan.d_sae;
    if let Some(&bad) = features.iter().find(|&&f| f >= d_sae) {
        return Err(SaeplayError::InvalidSetting(format!(
            "feature {bad} does not exist: this SAE has features 0 to {}",
            d_sae - 1
        )));
    }
    let mut collector = ExampleCollector::new(
        d_sae,
        Some(features.to_vec()),
        ExampleConfig {
            n_top: config.top_examples,
            n_bands: config.bands,
            per_band: config.examples_per_band,
            seed: config.seed,
        },
    )?;
    collector.add_batch(&scan.acts, scan.tokens)?;
    let examples = collector.finish();
    let lens = logit_lens(model, sae, features, config.logit_lens_tokens).await?;
    // Explaining every card at once is seconds in the page: its worker explains in the
    // background instead.
    let text = config.explain.then(|| ScanText::new(tokenizer, scan));
    let scorer = text.as_ref().map(|t| Scorer::new(scan, t, config.seed));
    let w_dec = read_f32(sae.param(W_DEC)).await?;
    let d_in = sae.config.d_in;
    let neighbours = CosineNeighbours::new(&w_dec, d_sae, d_in)?;
    // Each chosen feature's positive activations, in one pass over the scan (a column at a
    // time read the whole [tokens, d_sae] matrix once per feature).
    let mut slot = vec![usize::MAX; d_sae];
    features.iter().enumerate().for_each(|(s, &f)| slot[f] = s);
    let mut active: Vec<Vec<f64>> = vec![Vec::new(); features.len()];
    for row in scan.acts.chunks_exact(d_sae) {
        for (&s, &v) in slot.iter().zip(row) {
            if v > 0.0 && s != usize::MAX {
                active[s].push(f64::from(v));
            }
        }
    }
    let lens_tokens = |pairs: Vec<(usize, f32)>| -> Vec<LensToken> {
        pairs
            .into_iter()
            .map(|(id, value)| LensToken {
                token: tokenizer.token_text(id as u32),
                id: id as u32,
                value,
            })
            .collect()
    };
    let mut out = Vec::with_capacity(features.len());
    for (((&f, ex), (top, bottom)), values) in features.iter().zip(&examples).zip(lens).zip(active)
    {
        let promoted_text: Vec<String> = top
            .iter()
            .take(LENS_TERMS)
            .map(|&(id, _)| tokenizer.token_text(id as u32))
            .collect();
        let s = &summary.summaries[f];
        out.push(FeatureData {
            index: f,
            density: s.density,
            max_activation: s.max_activation,
            mean_active: s.mean_active,
            top_examples: ex
                .top
                .iter()
                .map(|&(_, token)| scan.example(tokenizer, config, token, f))
                .collect(),
            bands: ex
                .quantiles
                .iter()
                .map(|band| BandExamples {
                    low: band.low,
                    high: band.high,
                    examples: band
                        .examples
                        .iter()
                        .map(|&(_, token)| scan.example(tokenizer, config, token, f))
                        .collect(),
                })
                .collect(),
            histogram: histogram(values, config.histogram_bins, None),
            promoted: lens_tokens(top),
            suppressed: lens_tokens(bottom),
            nearest: neighbours.nearest(f, config.nearest_features)?,
            best_concept: summary.best_concepts[f].clone(),
            explanation: scorer.as_ref().map(|s| s.explain(f, Some(&promoted_text))),
        });
    }
    Ok(out)
}

/// Summarise a scan into feature data for `features` (all when `None`).
pub async fn feature_report(
    model: &Model,
    tokenizer: &TextTokenizer,
    sae: &Sae,
    scan: &Scan,
    features: Option<&[usize]>,
    config: &ScanConfig,
) -> Result<FeatureReport> {
    let chosen: Vec<usize> = match features {
        Some(list) => list.to_vec(),
        None => (0..scan.d_sae).collect(),
    };
    let summary = summarise_scan(scan)?;
    let cards = feature_cards(model, tokenizer, sae, scan, &summary, &chosen, config).await?;
    Ok(FeatureReport {
        tokens: scan.tokens,
        features: cards,
        concept_recovery: summary.concept_recovery,
        mean_concept_auroc: summary.mean_concept_auroc,
    })
}
