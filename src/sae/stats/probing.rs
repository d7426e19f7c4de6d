//! SAEBench's sparse probing and feature absorption, on tokens whose concepts are known.
//!
//! Sparse probing: per concept, a balanced set of its tokens and others; the `k` latents with the
//! largest `|mean(positive) - mean(negative)|` on the training split are chosen, a logistic probe
//! (C = 1) is fitted on them, and its accuracy on the test split is the figure (k = 1, 2, 5).
//!
//! Absorption (Chanin et al., SAEBench's `feature_absorption_calculator`), where a general
//! concept's latent fails to fire and other latents take its direction:
//! 1. a ground-truth probe on the model's activations `x`; concepts whose probe has test F1
//!    below [`MIN_PROBE_F1`] are left out;
//! 2. the main latents: the top-k latents by mean difference for k = 1, 2, ..., keeping the last
//!    k whose probe's F1 rose by more than [`F1_JUMP`] (SAEBench ranks by an L1 probe's weights;
//!    here by mean difference, as its sparse probing does);
//! 3. over the test tokens of the concept that the probe finds, with `p` the unit probe
//!    direction, `cos_i = cos(p, W_dec[i])` and `proj = x . p`: the absorption fraction (how
//!    much of `proj` up to three non-main latents with `cos_i >= 0.1` carry instead of the main
//!    ones) and full absorption (no main latent fires and one other latent carries at least 40%
//!    of `proj`), averaged over those tokens.

use super::StatsError;
use super::logistic::{Logistic, fit_logistic};
use crate::rng::SplitMix64;

pub const PROBE_KS: [usize; 3] = [1, 2, 5];
pub const MIN_PROBE_F1: f64 = 0.6;
pub const F1_JUMP: f64 = 0.03;
const MAX_MAIN_LATENTS: usize = 10;
const ABSORBING_COSINE: f64 = 0.1;
const FULL_ABSORPTION_COSINE: f64 = 0.025;
const PROJECTION_SHARE: f64 = 0.4;
const MAX_ABSORBING: usize = 3;
/// Most positives per split (each split also gets as many negatives).
const MAX_POSITIVES: usize = 1000;
/// Fewest positives per split for a concept to be probed.
const MIN_POSITIVES: usize = 10;

/// Tokens with their SAE activations, model activations and concepts.
pub struct LabelledTokens<'a> {
    /// `[n, d_sae]`.
    pub acts: &'a [f32],
    pub d_sae: usize,
    /// `[n, d_in]` (absorption only; may be empty for sparse probing).
    pub x: &'a [f32],
    pub d_in: usize,
    /// Concept bitmask per token.
    pub concepts: &'a [u64],
    /// Whether each token is in the training split.
    pub train: &'a [bool],
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SparseProbe {
    pub concept: usize,
    /// Test accuracy for each of [`PROBE_KS`].
    pub accuracy: Vec<f64>,
    /// The latents chosen for the largest k, best first.
    pub latents: Vec<usize>,
    pub test_tokens: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConceptAbsorption {
    pub concept: usize,
    pub main_latents: Vec<usize>,
    pub probe_f1: f64,
    /// Test tokens of the concept that the ground-truth probe finds.
    pub true_positives: usize,
    pub mean_absorption_fraction: f64,
    pub full_absorption_rate: f64,
}

/// A balanced split: the concept's tokens (at most [`MAX_POSITIVES`]) and as many others, drawn
/// without replacement; `(tokens, labels)`.
fn balanced(
    tokens: &LabelledTokens,
    concept: usize,
    train: bool,
    seed: u64,
) -> (Vec<usize>, Vec<bool>) {
    let bit = 1u64 << concept;
    let n = tokens.concepts.len();
    let in_split = |t: usize| tokens.train[t] == train;
    let mut positives: Vec<usize> = (0..n)
        .filter(|&t| in_split(t) && tokens.concepts[t] & bit != 0)
        .collect();
    let mut negatives: Vec<usize> = (0..n)
        .filter(|&t| in_split(t) && tokens.concepts[t] & bit == 0)
        .collect();
    let mut rng = SplitMix64::new(seed ^ (concept as u64) << 8 ^ u64::from(train));
    let mut shuffle = |v: &mut Vec<usize>| {
        for i in (1..v.len()).rev() {
            v.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
    };
    shuffle(&mut positives);
    shuffle(&mut negatives);
    let m = positives.len().min(negatives.len()).min(MAX_POSITIVES);
    positives.truncate(m);
    negatives.truncate(m);
    let labels = (0..2 * m).map(|i| i < m).collect();
    positives.extend(negatives);
    (positives, labels)
}

/// Columns `columns` of the chosen rows of `[n, width]` values.
fn gather(values: &[f32], width: usize, rows: &[usize], columns: Option<&[usize]>) -> Vec<f32> {
    let mut out = Vec::new();
    for &r in rows {
        let row = &values[r * width..(r + 1) * width];
        match columns {
            Some(columns) => out.extend(columns.iter().map(|&c| row[c])),
            None => out.extend_from_slice(row),
        }
    }
    out
}

/// Latents by `|mean(positive) - mean(negative)|`, largest first.
fn by_mean_difference(tokens: &LabelledTokens, rows: &[usize], labels: &[bool]) -> Vec<usize> {
    let d = tokens.d_sae;
    let mut sums = vec![[0.0f64; 2]; d];
    let positives = labels.iter().filter(|&&l| l).count().max(1) as f64;
    let negatives = (labels.len() as f64 - positives).max(1.0);
    for (&r, &label) in rows.iter().zip(labels) {
        for (s, &a) in sums.iter_mut().zip(&tokens.acts[r * d..(r + 1) * d]) {
            s[usize::from(label)] += f64::from(a);
        }
    }
    let mut order: Vec<(usize, f64)> = sums
        .iter()
        .enumerate()
        .map(|(i, s)| (i, (s[1] / positives - s[0] / negatives).abs()))
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    order.into_iter().map(|(i, _)| i).collect()
}

struct Confusion {
    accuracy: f64,
    f1: f64,
}

fn confusion(model: &Logistic, inputs: &[f32], width: usize, labels: &[bool]) -> Confusion {
    let (mut tp, mut fp, mut fneg, mut right) = (0usize, 0usize, 0usize, 0usize);
    for (i, &label) in labels.iter().enumerate() {
        let called = model.predicts(&inputs[i * width..(i + 1) * width]);
        right += usize::from(called == label);
        match (called, label) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            _ => {}
        }
    }
    let f1 = if tp == 0 {
        0.0
    } else {
        2.0 * tp as f64 / (2 * tp + fp + fneg) as f64
    };
    Confusion {
        accuracy: right as f64 / labels.len().max(1) as f64,
        f1,
    }
}

/// A probe on `columns` of the SAE activations: fitted on `train`, scored on `test`.
fn latent_probe(
    tokens: &LabelledTokens,
    columns: &[usize],
    train: &(Vec<usize>, Vec<bool>),
    test: &(Vec<usize>, Vec<bool>),
) -> Result<Confusion, StatsError> {
    let k = columns.len();
    let model = fit_logistic(
        &gather(tokens.acts, tokens.d_sae, &train.0, Some(columns)),
        k,
        &train.1,
        1.0,
    )?;
    Ok(confusion(
        &model,
        &gather(tokens.acts, tokens.d_sae, &test.0, Some(columns)),
        k,
        &test.1,
    ))
}

fn check(tokens: &LabelledTokens) -> Result<usize, StatsError> {
    let n = tokens.concepts.len();
    if tokens.train.len() != n || tokens.acts.len() != n.saturating_mul(tokens.d_sae) {
        return Err(StatsError::Invalid(format!(
            "probing needs as many labels, splits and activation rows as tokens ({n})"
        )));
    }
    Ok(n)
}

/// Sparse probing for every concept in `0..concepts` with enough tokens in both splits.
pub fn sparse_probing(
    tokens: &LabelledTokens,
    concepts: usize,
    seed: u64,
) -> Result<Vec<SparseProbe>, StatsError> {
    check(tokens)?;
    let mut out = Vec::new();
    for concept in 0..concepts.min(64) {
        let train = balanced(tokens, concept, true, seed);
        let test = balanced(tokens, concept, false, seed);
        if train.0.len() < 2 * MIN_POSITIVES || test.0.len() < 2 * MIN_POSITIVES {
            continue;
        }
        let ranked = by_mean_difference(tokens, &train.0, &train.1);
        let mut accuracy = Vec::new();
        for &k in &PROBE_KS {
            let k = k.min(ranked.len());
            accuracy.push(latent_probe(tokens, &ranked[..k], &train, &test)?.accuracy);
        }
        out.push(SparseProbe {
            concept,
            accuracy,
            latents: ranked[..PROBE_KS[PROBE_KS.len() - 1].min(ranked.len())].to_vec(),
            test_tokens: test.0.len(),
        });
    }
    Ok(out)
}

/// Absorption for every concept in `0..concepts` whose ground-truth probe reaches
/// [`MIN_PROBE_F1`]; `w_dec` is `[d_sae, d_in]`.
pub fn absorption(
    tokens: &LabelledTokens,
    w_dec: &[f32],
    concepts: usize,
    seed: u64,
) -> Result<Vec<ConceptAbsorption>, StatsError> {
    let n = check(tokens)?;
    let (d_sae, d_in) = (tokens.d_sae, tokens.d_in);
    if tokens.x.len() != n.saturating_mul(d_in) || w_dec.len() != d_sae.saturating_mul(d_in) {
        return Err(StatsError::Invalid(
            "absorption needs the model's activations and the decoder".into(),
        ));
    }
    let decoder_norms: Vec<f64> = w_dec
        .chunks_exact(d_in)
        .map(|r| r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut out = Vec::new();
    for concept in 0..concepts.min(64) {
        let train = balanced(tokens, concept, true, seed);
        let test = balanced(tokens, concept, false, seed);
        if train.0.len() < 2 * MIN_POSITIVES || test.0.len() < 2 * MIN_POSITIVES {
            continue;
        }
        let probe = fit_logistic(&gather(tokens.x, d_in, &train.0, None), d_in, &train.1, 1.0)?;
        let test_x = gather(tokens.x, d_in, &test.0, None);
        let probe_f1 = confusion(&probe, &test_x, d_in, &test.1).f1;
        if probe_f1 < MIN_PROBE_F1 {
            continue;
        }
        // Main latents: the last k whose F1 jumped.
        let ranked = by_mean_difference(tokens, &train.0, &train.1);
        let mut main: Vec<usize> = Vec::new();
        let mut best = -100.0;
        for k in 1..=MAX_MAIN_LATENTS.min(ranked.len()) {
            let f1 = latent_probe(tokens, &ranked[..k], &train, &test)?.f1;
            if f1 > best + F1_JUMP {
                best = f1;
                main = ranked[..k].to_vec();
            } else {
                break;
            }
        }
        let probe_norm = probe.weights.iter().map(|w| w * w).sum::<f64>().sqrt();
        if probe_norm == 0.0 {
            continue;
        }
        let direction: Vec<f64> = probe.weights.iter().map(|w| w / probe_norm).collect();
        let cosines: Vec<f64> = w_dec
            .chunks_exact(d_in)
            .zip(&decoder_norms)
            .map(|(row, &norm)| {
                if norm == 0.0 {
                    0.0
                } else {
                    row.iter()
                        .zip(&direction)
                        .map(|(&v, p)| f64::from(v) * p)
                        .sum::<f64>()
                        / norm
                }
            })
            .collect();
        let (mut true_positives, mut fraction_sum, mut full) = (0usize, 0.0f64, 0usize);
        for (i, (&t, &label)) in test.0.iter().zip(&test.1).enumerate() {
            if !label || !probe.predicts(&test_x[i * d_in..(i + 1) * d_in]) {
                continue;
            }
            true_positives += 1;
            let acts = &tokens.acts[t * d_sae..(t + 1) * d_sae];
            let x = &tokens.x[t * d_in..(t + 1) * d_in];
            let projection: f64 = x
                .iter()
                .zip(&direction)
                .map(|(&v, p)| f64::from(v) * p)
                .sum();
            let main_projection: f64 = main.iter().map(|&j| f64::from(acts[j]) * cosines[j]).sum();
            let mut others: Vec<(f64, f64)> = acts
                .iter()
                .enumerate()
                .filter(|&(j, &a)| a != 0.0 && !main.contains(&j))
                .map(|(j, &a)| (f64::from(a) * cosines[j], cosines[j]))
                .collect();
            others.sort_by(|a, b| b.0.total_cmp(&a.0));
            fraction_sum += absorption_fraction(projection, main_projection, &others);
            let main_silent = main.iter().all(|&j| acts[j].abs() < 1e-8);
            full += usize::from(
                main_silent
                    && projection >= 0.0
                    && others.first().is_some_and(|&(share, cos)| {
                        cos >= FULL_ABSORPTION_COSINE && share / projection >= PROJECTION_SHARE
                    }),
            );
        }
        if true_positives == 0 {
            continue;
        }
        out.push(ConceptAbsorption {
            concept,
            main_latents: main,
            probe_f1,
            true_positives,
            mean_absorption_fraction: fraction_sum / true_positives as f64,
            full_absorption_rate: full as f64 / true_positives as f64,
        });
    }
    Ok(out)
}

/// SAEBench's absorption fraction of one token: `projection` onto the probe, the main latents'
/// share of it, and the other active latents' `(activation x cosine, cosine)`, largest first.
pub fn absorption_fraction(projection: f64, main_projection: f64, others: &[(f64, f64)]) -> f64 {
    let absorbing: f64 = others
        .iter()
        .filter(|&&(share, cos)| cos >= ABSORBING_COSINE && share > 0.0)
        .take(MAX_ABSORBING)
        .map(|&(share, _)| share)
        .sum();
    if main_projection >= projection
        || projection <= 0.0
        || absorbing / projection < PROJECTION_SHARE
    {
        0.0
    } else if main_projection <= 0.0 {
        1.0
    } else {
        let a = absorbing.min(projection - main_projection);
        (a / (a + main_projection)).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens in 4-dimensional activations. A concept of two words: `x = e0 + e1` for the common
    /// word, `e0 + e2` for the rare one (one concept token in 40); other tokens `e3` (half of
    /// them) or about zero. Latent 0 (decoder `e0 + e1`) fires on the common word only, latent 1
    /// (decoder `e0 + e2`) absorbs the rare word, latent 2 fires on half the other tokens.
    /// Windows of 80 tokens alternate between the training and test splits.
    struct World {
        acts: Vec<f32>,
        x: Vec<f32>,
        concepts: Vec<u64>,
        train: Vec<bool>,
        w_dec: Vec<f32>,
        rare: Vec<bool>,
    }

    impl World {
        fn tokens(&self) -> LabelledTokens<'_> {
            LabelledTokens {
                acts: &self.acts,
                d_sae: 3,
                x: &self.x,
                d_in: 4,
                concepts: &self.concepts,
                train: &self.train,
            }
        }
    }

    fn world(n: usize) -> World {
        let (mut acts, mut x, mut concepts, mut train, mut rare) =
            (vec![], vec![], vec![], vec![], vec![]);
        for t in 0..n {
            let noise = ((t * 37 % 11) as f32 - 5.0) * 0.01;
            let i = t % 80;
            if i == 0 {
                x.extend([1.0, noise, 1.0, 0.0]);
                acts.extend([0.0, 1.5, 0.0]);
            } else if i < 40 {
                x.extend([1.0, 1.0, noise, 0.0]);
                acts.extend([2.0, 0.0, 0.0]);
            } else if i % 2 == 0 {
                x.extend([noise, 0.0, 0.0, 1.0]);
                acts.extend([0.0, 0.0, 1.0]);
            } else {
                x.extend([noise, noise, 0.0, 0.0]);
                acts.extend([0.0, 0.0, 0.0]);
            }
            concepts.push(u64::from(i < 40));
            rare.push(i == 0);
            train.push((t / 80) % 2 == 0);
        }
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let w_dec = vec![s, s, 0.0, 0.0, s, 0.0, s, 0.0, 0.0, 0.0, 0.0, 1.0];
        World {
            acts,
            x,
            concepts,
            train,
            w_dec,
            rare,
        }
    }

    #[test]
    fn sparse_probes_pick_the_latents_that_separate_a_concept() {
        let w = world(1600);
        let tokens = w.tokens();
        let probes = sparse_probing(&tokens, 1, 1).unwrap();
        assert_eq!(probes.len(), 1);
        let p = &probes[0];
        // Mean differences: latent 0 2 x 39/40, latent 2 1/2, latent 1 1.5 / 40.
        assert_eq!(p.latents, vec![0, 2, 1]);
        // Latent 0 alone (and with latent 2) misses the rare word's 10 test tokens in 800.
        assert_eq!(p.accuracy[0], 790.0 / 800.0);
        assert_eq!(p.accuracy[1], 790.0 / 800.0);
        assert!(p.accuracy[2] >= p.accuracy[1], "{p:?}");
        assert_eq!(p.test_tokens, 800);
    }

    #[test]
    fn an_absorbed_word_counts_as_absorbed() {
        let w = world(1600);
        let tokens = w.tokens();
        let (concepts, train, rare) = (&w.concepts, &w.train, &w.rare);
        let result = absorption(&tokens, &w.w_dec, 1, 1).unwrap();
        assert_eq!(result.len(), 1, "{result:?}");
        let r = &result[0];
        assert!(r.probe_f1 > 0.99, "{r:?}");
        // Latent 1 adds too little F1 (the rare word) to count as a main latent.
        assert_eq!(r.main_latents, vec![0], "{r:?}");
        // Direct: every rare-word test token is fully absorbed by latent 1, nothing else is.
        let positives = (0..1600).filter(|&t| !train[t] && concepts[t] != 0).count();
        let rare_tokens = (0..1600).filter(|&t| !train[t] && rare[t]).count();
        assert_eq!(r.true_positives, positives);
        let expected = rare_tokens as f64 / positives as f64;
        assert!((r.full_absorption_rate - expected).abs() < 1e-12, "{r:?}");
        assert!(
            (r.mean_absorption_fraction - expected).abs() < 1e-12,
            "{r:?}"
        );
    }

    #[test]
    fn the_absorption_fraction_follows_saebench() {
        // Main carries all: nothing absorbed.
        assert_eq!(absorption_fraction(1.0, 1.0, &[(0.5, 0.5)]), 0.0);
        // Absorbers below 40% of the projection: not counted.
        assert_eq!(absorption_fraction(1.0, 0.2, &[(0.3, 0.5)]), 0.0);
        // Absorbers with too small a cosine are ignored.
        assert_eq!(absorption_fraction(1.0, 0.0, &[(0.9, 0.05)]), 0.0);
        // Partial: a = min(0.6, 1 - 0.3) = 0.6; 0.6 / (0.6 + 0.3).
        let f = absorption_fraction(1.0, 0.3, &[(0.4, 0.5), (0.2, 0.3)]);
        assert!((f - 0.6 / 0.9).abs() < 1e-12);
        // At most three absorbers count.
        let f = absorption_fraction(2.0, 0.5, &[(0.3, 0.5); 5]);
        assert!((f - 0.9 / 1.4).abs() < 1e-12);
    }
}
