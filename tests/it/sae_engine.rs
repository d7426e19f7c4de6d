//! The SAE engine against direct computations: each architecture's encode, decode and training
//! loss, JumpReLU's straight-through gradient, training on data with known sparse structure,
//! reproducibility, checkpoints, divergence, folding of the input scale, SAELens files (new and
//! old configs), metrics and interventions on a model, and feature data.
use crate::common;

use crate::common::sae_reference::*;

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use saeplay::SaeplayError;
use saeplay::backend::{block_on, cpu_device, float_tensor, read_f32};
use saeplay::io::tensors::HostTensor;
use saeplay::model::fixtures::TinySpec;
use saeplay::model::{HookPoint, Hooks, LogitsFor, PatchOp};
use saeplay::rng::SplitMix64;
use saeplay::sae::arch::{self, Params, TrainingContext};
use saeplay::sae::features::{ScanConfig, feature_report, scan};
use saeplay::sae::metrics::evaluate_sae;
use saeplay::sae::saelens::{Provenance, SaeFiles, write_sae};
use saeplay::sae::select::Selection;
use saeplay::sae::steer::{Intervention, InterventionMode, intervention_patch};
use saeplay::sae::store::{ActivationStore, Corpus, StoreConfig, TokenStream};
use saeplay::sae::train::{
    BatchSource, CapturedActivations, DecoderBiasInit, SaeTrainer, SaeTrainingConfig,
};
use saeplay::sae::{Architecture, Sae, SaeConfig};
use saeplay::tinytales::HELD_OUT_SEED;

#[test]
fn encode_and_decode_match_the_formulas_for_every_architecture() {
    let device = cpu_device();
    let (d, m, n) = (8, 24, 10);
    for (a, architecture) in ALL_ARCHITECTURES.into_iter().enumerate() {
        let c = config(architecture, d, m);
        let w = random_weights(&c, 10 + a as u64);
        let sae = Sae::from_host(c.clone(), &w, &device).unwrap();
        let x = random(n * d, 1.0, &mut SplitMix64::new(99));
        let f = read2(sae.encode(float_tensor(x.clone(), [n, d], &device)));
        let expected = reference_encode(&c, &w, &x);
        assert!(max_diff(&f, &expected) < 1e-5, "{architecture:?} encode");
        let f_async = block_on(sae.encode_async(float_tensor(x.clone(), [n, d], &device))).unwrap();
        assert_eq!(read2(f_async), f, "{architecture:?} encode_async");
        // The CPU path's scans encode on host buffers.
        let f_host =
            block_on(sae.encode_to_host(float_tensor(x.clone(), [n, d], &device))).unwrap();
        assert!(
            max_diff(&f_host, &expected) < 1e-5,
            "{architecture:?} encode_to_host"
        );
        if let Architecture::TopK { k } = architecture {
            for row in f.chunks(m) {
                assert!(row.iter().filter(|&&v| v > 0.0).count() <= k);
            }
        }
        let x_hat = read2(sae.reconstruct(float_tensor(x.clone(), [n, d], &device)));
        let expected_hat = reference_decode(&c, &w, &expected);
        assert!(
            max_diff(&x_hat, &expected_hat) < 1e-5,
            "{architecture:?} decode"
        );
        // Host round trip keeps every tensor.
        assert_eq!(block_on(sae.to_host()).unwrap(), w);
    }
}

fn upload(w: &BTreeMap<String, HostTensor>, device: &burn::tensor::Device) -> Params {
    let mut p = Params::new();
    for (name, t) in w {
        let name: &'static str = Box::leak(name.clone().into_boxed_str());
        let (rows, cols) = if t.shape.len() == 2 {
            (t.shape[0], t.shape[1])
        } else {
            (1, t.shape[0])
        };
        p.insert(name, float_tensor(t.values.clone(), [rows, cols], device));
    }
    p
}

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(block_on(read_f32(t)).unwrap()[0])
}

fn context(coefficient: f64) -> TrainingContext {
    TrainingContext {
        selection: Selection::Host,
        sparsity_coefficient: coefficient,
        aux_coefficient: 1.0 / 32.0,
        dead: None,
        bandwidth: 0.3,
    }
}

#[test]
fn training_losses_match_direct_computation() {
    let device = cpu_device();
    let (d, m, n) = (6, 18, 9);
    let x = random(n * d, 1.0, &mut SplitMix64::new(5));
    let xt = || float_tensor(x.clone(), [n, d], &device);
    let mse_of = |c: &SaeConfig, w: &BTreeMap<String, HostTensor>| {
        let hat = reference_decode(c, w, &reference_encode(c, w, &x));
        hat.iter()
            .zip(&x)
            .map(|(h, v)| (h - f64::from(*v)).powi(2))
            .sum::<f64>()
            / n as f64
    };
    let dec_norms = |w: &BTreeMap<String, HostTensor>| -> Vec<f64> {
        get(w, "W_dec")
            .chunks(d)
            .map(|r| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
            .collect()
    };

    // Standard: MSE + lambda * sum f_i ||W_dec[i]||.
    let c = config(Architecture::Standard, d, m);
    let w = random_weights(&c, 1);
    let f = reference_encode(&c, &w, &x);
    let norms = dec_norms(&w);
    let l1: f64 = f
        .chunks(m)
        .map(|r| r.iter().zip(&norms).map(|(a, b)| a * b).sum::<f64>())
        .sum::<f64>()
        / n as f64;
    let out = block_on(arch::standard::training_forward(
        &upload(&w, &device),
        xt(),
        &context(2.0),
    ))
    .unwrap();
    assert!((scalar(out.loss) - (mse_of(&c, &w) + 2.0 * l1)).abs() < 1e-4);

    // Gated: MSE + lambda * sum ReLU(pi_gate) ||W_dec|| + frozen-decoder reconstruction of ReLU(pi_gate).
    let c = config(Architecture::Gated, d, m);
    let w = random_weights(&c, 2);
    let (w_enc, b_dec, b_gate) = (get(&w, "W_enc"), get(&w, "b_dec"), get(&w, "b_gate"));
    let mut gate_relu = vec![0.0f64; n * m];
    for r in 0..n {
        for i in 0..m {
            let pre: f64 = (0..d)
                .map(|j| {
                    (f64::from(x[r * d + j]) - f64::from(b_dec[j])) * f64::from(w_enc[j * m + i])
                })
                .sum::<f64>()
                + f64::from(b_gate[i]);
            gate_relu[r * m + i] = pre.max(0.0);
        }
    }
    let norms = dec_norms(&w);
    let l1: f64 = gate_relu
        .chunks(m)
        .map(|r| r.iter().zip(&norms).map(|(a, b)| a * b).sum::<f64>())
        .sum::<f64>()
        / n as f64;
    let aux_hat = reference_decode(&c, &w, &gate_relu);
    let aux = aux_hat
        .iter()
        .zip(&x)
        .map(|(h, v)| (h - f64::from(*v)).powi(2))
        .sum::<f64>()
        / n as f64;
    let out = block_on(arch::gated::training_forward(
        &upload(&w, &device),
        xt(),
        &context(0.5),
    ))
    .unwrap();
    assert!((scalar(out.loss) - (mse_of(&c, &w) + 0.5 * l1 + aux)).abs() < 1e-4);

    // JumpReLU: MSE + lambda * L0, the threshold trained as its log.
    let c = config(Architecture::JumpRelu, d, m);
    let mut w = random_weights(&c, 3);
    let threshold = w.remove("threshold").unwrap();
    let f = reference_encode(
        &c,
        &{
            let mut w2 = w.clone();
            w2.insert("threshold".into(), threshold.clone());
            w2
        },
        &x,
    );
    let l0 = f.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
    let mut wt = w.clone();
    wt.insert("threshold".into(), threshold);
    let out = block_on(arch::jumprelu::training_forward(
        &upload(&wt, &device),
        xt(),
        &context(0.7),
    ))
    .unwrap();
    assert!((scalar(out.loss) - (mse_of(&c, &wt) + 0.7 * l0)).abs() < 1e-4);

    // TopK with dead latents: MSE + AuxK on the detached residual.
    let k = 2;
    let c = config(Architecture::TopK { k }, d, m);
    let w = random_weights(&c, 4);
    let f = reference_encode(&c, &w, &x);
    let hat = reference_decode(&c, &w, &f);
    let dead: Vec<usize> = (0..m).filter(|i| i % 3 == 0).collect(); // 6 dead latents
    let k_aux = (d / 2).min(dead.len());
    let scale = (dead.len() as f64 / (d / 2) as f64).min(1.0);
    let (w_enc, b_enc, b_dec, w_dec) = (
        get(&w, "W_enc"),
        get(&w, "b_enc"),
        get(&w, "b_dec"),
        get(&w, "W_dec"),
    );
    let mut auxk = 0.0;
    for r in 0..n {
        let pre = |i: usize| -> f64 {
            (0..d)
                .map(|j| {
                    (f64::from(x[r * d + j]) - f64::from(b_dec[j])) * f64::from(w_enc[j * m + i])
                })
                .sum::<f64>()
                + f64::from(b_enc[i])
        };
        let mut order = dead.clone();
        order.sort_by(|&a, &b| pre(b).total_cmp(&pre(a)));
        for j in 0..d {
            let recon: f64 = order[..k_aux]
                .iter()
                .map(|&i| pre(i).max(0.0) * f64::from(w_dec[i * d + j]))
                .sum();
            let residual = f64::from(x[r * d + j]) - hat[r * d + j];
            auxk += (recon - residual).powi(2);
        }
    }
    auxk = auxk / n as f64 * scale;
    let mut ctx = context(0.0);
    let dead_row: Vec<f32> = (0..m).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
    ctx.dead = Some((float_tensor(dead_row, [1, m], &device), dead.len()));
    let out = block_on(arch::topk::training_forward(
        &upload(&w, &device),
        xt(),
        k,
        &ctx,
    ))
    .unwrap();
    let expected = mse_of(&c, &w) + auxk / 32.0;
    let loss = scalar(out.loss);
    assert!((loss - expected).abs() < 1e-4, "{loss} vs {expected}");

    // Matryoshka BatchTopK: the k x n largest ReLU'd pre-activations of the batch are kept
    // once; the loss is the full MSE plus each inner prefix's MSE (widths 4 and 9 of 18).
    let k = 3;
    let c = config(Architecture::MatryoshkaBatchTopK { k }, d, m);
    let w = random_weights(&c, 6);
    let (w_enc, b_enc, b_dec, w_dec) = (
        get(&w, "W_enc"),
        get(&w, "b_enc"),
        get(&w, "b_dec"),
        get(&w, "W_dec"),
    );
    let mut relu = vec![0.0f64; n * m];
    for r in 0..n {
        for i in 0..m {
            let pre: f64 = (0..d)
                .map(|j| {
                    (f64::from(x[r * d + j]) - f64::from(b_dec[j])) * f64::from(w_enc[j * m + i])
                })
                .sum::<f64>()
                + f64::from(b_enc[i]);
            relu[r * m + i] = pre.max(0.0);
        }
    }
    let mut order: Vec<usize> = (0..n * m).collect();
    order.sort_by(|&a, &b| relu[b].total_cmp(&relu[a]));
    let mut f = vec![0.0f64; n * m];
    for &e in &order[..k * n] {
        f[e] = relu[e];
    }
    let prefix_mse = |width: usize| -> f64 {
        let mut total = 0.0;
        for r in 0..n {
            for j in 0..d {
                let hat = f64::from(b_dec[j])
                    + (0..width)
                        .map(|i| f[r * m + i] * f64::from(w_dec[i * d + j]))
                        .sum::<f64>();
                total += (hat - f64::from(x[r * d + j])).powi(2);
            }
        }
        total / n as f64
    };
    let expected = prefix_mse(m) + prefix_mse(4) + prefix_mse(9);
    let out = block_on(arch::matryoshka::training_forward(
        &upload(&w, &device),
        xt(),
        k,
        &[4, 9, m],
        &context(0.0),
    ))
    .unwrap();
    let loss = scalar(out.loss);
    assert!((loss - expected).abs() < 1e-4, "{loss} vs {expected}");
    let names: Vec<&str> = out.terms.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["mse_loss", "inner_mse_loss"]);
}

#[test]
fn jumprelu_threshold_gets_the_straight_through_gradient() {
    let inner = cpu_device();
    let device = inner.clone().autodiff();
    let (d, m, n) = (4, 8, 32);
    let eps = 0.6;
    let lambda = 0.3;
    let c = config(Architecture::JumpRelu, d, m);
    let mut w = random_weights(&c, 8);
    let threshold = w.remove("threshold").unwrap();
    let theta: Vec<f64> = threshold
        .values
        .iter()
        .map(|&t| f64::from(t) + 0.2)
        .collect();
    w.insert(
        "threshold".into(),
        host(&[m], theta.iter().map(|&t| t as f32).collect()),
    );
    let x = random(n * d, 1.0, &mut SplitMix64::new(3));
    let mut params = upload(&w, &device);
    let log_t = params.remove("threshold").unwrap().require_grad();
    params.insert("threshold", log_t.clone());
    let mut ctx = context(lambda);
    ctx.bandwidth = eps;
    let out = block_on(arch::jumprelu::training_forward(
        &params,
        float_tensor(x.clone(), [n, d], &device),
        &ctx,
    ))
    .unwrap();
    let grads = out.loss.backward();
    let got = block_on(read_f32(log_t.grad(&grads).unwrap())).unwrap();

    // Reference: dL/dtheta_i = sum_r K_ri [ (2/n)(x_hat_r - x_r).W_dec[i] (-theta_i/eps) - lambda/(n eps) ].
    let (w_enc, b_enc, b_dec, w_dec) = (
        get(&w, "W_enc"),
        get(&w, "b_enc"),
        get(&w, "b_dec"),
        get(&w, "W_dec"),
    );
    let wt = w.clone();
    let hat = reference_decode(&c, &wt, &reference_encode(&c, &wt, &x));
    let mut kernel_hits = 0;
    for i in 0..m {
        let mut grad = 0.0;
        for r in 0..n {
            let pre: f64 = (0..d)
                .map(|j| {
                    (f64::from(x[r * d + j]) - f64::from(b_dec[j])) * f64::from(w_enc[j * m + i])
                })
                .sum::<f64>()
                + f64::from(b_enc[i]);
            if ((pre - theta[i]) / eps).abs() < 0.5 {
                kernel_hits += 1;
                let err_dot: f64 = (0..d)
                    .map(|j| {
                        (hat[r * d + j] - f64::from(x[r * d + j])) * f64::from(w_dec[i * d + j])
                    })
                    .sum();
                grad += 2.0 / n as f64 * err_dot * (-theta[i] / eps) - lambda / (n as f64 * eps);
            }
        }
        let expected = grad;
        assert!(
            (f64::from(got[i]) - expected).abs() < 1e-4 * (1.0 + expected.abs()),
            "latent {i}: {} vs {expected}",
            got[i]
        );
    }
    assert!(kernel_hits > 10, "the test must exercise the kernel");
}

/// Vectors that are sums of 2 of 48 hidden unit directions with magnitudes in [1, 3].
struct Synthetic {
    directions: Vec<f32>,
    d: usize,
    rng: SplitMix64,
}

impl Synthetic {
    fn new(d: usize, seed: u64) -> Self {
        Self::with_samples(d, seed, seed)
    }

    /// The directions of `seed`, with samples drawn from `sample_seed`.
    fn with_samples(d: usize, seed: u64, sample_seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut directions = random(48 * d, 1.0, &mut rng);
        for row in directions.chunks_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let rng = SplitMix64::new(sample_seed ^ 0xABCD);
        Self { directions, d, rng }
    }
}

impl BatchSource for Synthetic {
    async fn next_batch(&mut self, n: usize) -> saeplay::Result<Vec<f32>> {
        let d = self.d;
        let mut out = vec![0.0f32; n * d];
        for row in out.chunks_mut(d) {
            for _ in 0..2 {
                let which = (self.rng.next_u64() % 48) as usize;
                let magnitude = 1.0 + 2.0 * self.rng.uniform() as f32;
                for (v, dir) in row
                    .iter_mut()
                    .zip(&self.directions[which * d..(which + 1) * d])
                {
                    *v += magnitude * dir + 0.5; // an offset that b_dec must learn
                }
            }
        }
        Ok(out)
    }
}

fn small_recipe(architecture: Architecture, steps: usize) -> SaeTrainingConfig {
    SaeTrainingConfig {
        architecture,
        expansion_factor: 8,
        batch_size: 256,
        training_tokens: 256 * steps,
        learning_rate: 3e-3,
        lr_warmup_steps: 10,
        sparsity_warmup_steps: 20,
        dead_window_tokens: 256 * 40,
        b_dec_init: DecoderBiasInit::Mean,
        jumprelu_init_threshold: 0.05,
        jumprelu_bandwidth: 0.05,
        sparsity_coefficient: match architecture {
            Architecture::JumpRelu => 1.0,
            Architecture::Standard => 1.0,
            Architecture::Gated => 2.0,
            _ => 0.0,
        },
        ..SaeTrainingConfig::default()
    }
}

fn train(recipe: SaeTrainingConfig, d: usize, data_seed: u64) -> (SaeTrainer, Vec<f32>) {
    let device = cpu_device();
    let mut source = Synthetic::new(d, data_seed);
    let first = block_on(source.next_batch(recipe.batch_size)).unwrap();
    let mut trainer = SaeTrainer::new(recipe, d, "synthetic", &first, &device).unwrap();
    let mut losses = Vec::new();
    while !trainer.is_finished() {
        let batch = block_on(source.next_batch(trainer.config.batch_size)).unwrap();
        losses.push(
            block_on(trainer.train_step(&batch))
                .unwrap()
                .explained_variance,
        );
    }
    (trainer, losses)
}

/// Explained variance of an SAE on fresh samples of the same synthetic data, and its L0.
fn held_out(sae: &Sae, d: usize, data_seed: u64) -> (f64, f64) {
    let device = cpu_device();
    let mut source = Synthetic::with_samples(d, data_seed, 1234);
    let n = 2048;
    let x = block_on(source.next_batch(n)).unwrap();
    let xt = float_tensor(x.clone(), [n, d], &device);
    let f = read2(sae.encode(xt.clone()));
    let hat = read2(sae.decode(float_tensor(f.clone(), [n, sae.config.d_sae], &device)));
    let mut mean = vec![0.0f64; d];
    for row in x.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v) / n as f64;
        }
    }
    let sse: f64 = x
        .iter()
        .zip(&hat)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    let sst: f64 = x
        .chunks(d)
        .flat_map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(v, m)| (f64::from(*v) - m).powi(2))
        })
        .sum();
    let l0 = f.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
    (1.0 - sse / sst, l0)
}

#[test]
fn every_architecture_learns_known_sparse_structure() {
    let d = 16;
    for architecture in [
        Architecture::TopK { k: 4 },
        Architecture::BatchTopK { k: 4 },
        Architecture::Standard,
        Architecture::Gated,
        Architecture::JumpRelu,
        Architecture::MatryoshkaBatchTopK { k: 4 },
    ] {
        let (trainer, ev) = train(small_recipe(architecture, 1000), d, 7);
        let sae = trainer.sae();
        let (held_out_ev, l0) = held_out(&sae, d, 7);
        eprintln!(
            "{architecture:?}: training EV {:.3} -> {:.3}; held-out EV {held_out_ev:.3}, L0 {l0:.2}",
            ev[0],
            ev[ev.len() - 1]
        );
        // The data has L0 2 in 48 directions; dense codes reach EV ~1 with L0 ~d = 16.
        assert!(
            held_out_ev > 0.75,
            "{architecture:?} explains {held_out_ev}"
        );
        assert!(l0 < 10.0, "{architecture:?} is not sparse: L0 {l0}");
        if let Some(k) = architecture.k() {
            // BatchTopK's inference threshold keeps about k per token on average.
            assert!(l0 <= k as f64 * 1.5 + 0.5, "{architecture:?} L0 {l0}");
        }
    }
}

#[test]
fn training_is_reproducible_from_a_seed_and_resumes_exactly() {
    let d = 8;
    let recipe = small_recipe(Architecture::TopK { k: 3 }, 12);
    let (a, _) = train(recipe.clone(), d, 3);
    let (b, _) = train(recipe.clone(), d, 3);
    let wa = block_on(a.sae().to_host()).unwrap();
    assert_eq!(wa, block_on(b.sae().to_host()).unwrap());
    let (c, _) = train(
        SaeTrainingConfig {
            seed: 2,
            ..recipe.clone()
        },
        d,
        3,
    );
    assert_ne!(wa, block_on(c.sae().to_host()).unwrap());

    // Checkpoint after 6 steps, then both continue on the same batches.
    let device = cpu_device();
    let mut source = Synthetic::new(d, 3);
    let first = block_on(source.next_batch(256)).unwrap();
    let mut trainer = SaeTrainer::new(recipe, d, "synthetic", &first, &device).unwrap();
    let batches: Vec<Vec<f32>> = (0..12)
        .map(|_| block_on(source.next_batch(256)).unwrap())
        .collect();
    for batch in &batches[..6] {
        block_on(trainer.train_step(batch)).unwrap();
    }
    let checkpoint = block_on(trainer.checkpoint()).unwrap();
    for batch in &batches[6..] {
        block_on(trainer.train_step(batch)).unwrap();
    }
    let mut resumed = SaeTrainer::restore(&checkpoint, &device).unwrap();
    assert_eq!(resumed.step, 6);
    for batch in &batches[6..] {
        block_on(resumed.train_step(batch)).unwrap();
    }
    assert_eq!(
        block_on(trainer.sae().to_host()).unwrap(),
        block_on(resumed.sae().to_host()).unwrap()
    );
    // A damaged checkpoint is an error, not a panic.
    let mut broken = checkpoint.clone();
    broken.state = "{".into();
    assert!(matches!(
        SaeTrainer::restore(&broken, &device),
        Err(SaeplayError::SaeFile(_))
    ));
    let mut broken = checkpoint;
    broken.tensors.truncate(40);
    assert!(SaeTrainer::restore(&broken, &device).is_err());
}

#[test]
fn divergence_is_reported_and_the_last_good_state_kept() {
    let d = 8;
    let device = cpu_device();
    let recipe = SaeTrainingConfig {
        learning_rate: 1e38,
        lr_warmup_steps: 0,
        ..small_recipe(Architecture::Standard, 10)
    };
    let mut source = Synthetic::new(d, 3);
    let first = block_on(source.next_batch(256)).unwrap();
    let mut trainer = SaeTrainer::new(recipe, d, "synthetic", &first, &device).unwrap();
    let before = block_on(trainer.sae().to_host()).unwrap();
    let mut diverged = None;
    for _ in 0..5 {
        let batch = block_on(source.next_batch(256)).unwrap();
        match block_on(trainer.train_step(&batch)) {
            Ok(_) => {}
            Err(e) => {
                diverged = Some(e);
                break;
            }
        }
    }
    let error = diverged.expect("a 1e38 learning rate must diverge");
    assert!(matches!(error, SaeplayError::Diverged { .. }), "{error}");
    assert!(error.to_string().contains("last good state"));
    let after = block_on(trainer.sae().to_host()).unwrap();
    assert!(
        after
            .values()
            .all(|t| t.values.iter().all(|v| v.is_finite()))
    );
    let _ = before;
    // Inputs with NaN are refused up front.
    let bad = vec![f32::NAN; 256 * d];
    let recipe = small_recipe(Architecture::Standard, 10);
    assert!(SaeTrainer::new(recipe, d, "x", &bad, &device).is_err());
}

#[test]
fn the_input_scale_is_folded_into_the_exported_weights() {
    let d = 8;
    let recipe = SaeTrainingConfig {
        normalize_activations: true,
        ..small_recipe(Architecture::TopK { k: 3 }, 5)
    };
    let (trainer, _) = train(recipe, d, 5);
    let s = trainer.input_scale;
    assert!(
        (s - 1.0).abs() > 0.05,
        "the synthetic data is not at norm sqrt(d)"
    );
    // The training-space SAE from the checkpoint, applied to s * x, equals the exported SAE on x.
    let checkpoint = block_on(trainer.checkpoint()).unwrap();
    let tensors = saeplay::io::tensors::read_f32_tensors(&checkpoint.tensors).unwrap();
    let mut raw = BTreeMap::new();
    for name in ["W_enc", "W_dec", "b_enc", "b_dec"] {
        let mut t = tensors[name].clone();
        if t.shape[0] == 1 {
            t.shape.remove(0);
        }
        raw.insert(name.to_string(), t);
    }
    let device = cpu_device();
    let scaled_sae = Sae::from_host(trainer.sae_config.clone(), &raw, &device).unwrap();
    let exported = trainer.sae();
    let x = block_on(Synthetic::new(d, 77).next_batch(64)).unwrap();
    let xs: Vec<f32> = x.iter().map(|v| v * s).collect();
    let f_scaled = read2(scaled_sae.encode(float_tensor(xs.clone(), [64, d], &device)));
    let f = read2(exported.encode(float_tensor(x.clone(), [64, d], &device)));
    let diff = f
        .iter()
        .zip(&f_scaled)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "features differ by {diff}");
    let hat_scaled = read2(scaled_sae.reconstruct(float_tensor(xs, [64, d], &device)));
    let hat = read2(exported.reconstruct(float_tensor(x, [64, d], &device)));
    let diff = hat
        .iter()
        .zip(&hat_scaled)
        .map(|(a, b)| (a - b / s).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "reconstructions differ by {diff}");
}

#[test]
fn saelens_files_round_trip_for_every_architecture() {
    let device = cpu_device();
    let (d, m, n) = (8, 24, 6);
    let x = random(n * d, 1.0, &mut SplitMix64::new(1));
    for (a, architecture) in ALL_ARCHITECTURES.into_iter().enumerate() {
        let c = config(architecture, d, m);
        let w = random_weights(&c, 40 + a as u64);
        let sae = Sae::from_host(c.clone(), &w, &device).unwrap();
        let density: Vec<f32> = (0..m).map(|i| -(i as f32) / 4.0).collect();
        let files = block_on(write_sae(
            &sae,
            Some(&density),
            &Provenance::default(),
            Some(64),
        ))
        .unwrap();
        let cfg: serde_json::Value = serde_json::from_slice(&files.cfg).unwrap();
        // SAELens saves both BatchTopK kinds for inference as JumpReLU; our provenance keeps
        // what it was trained as.
        let expected_arch = match architecture {
            Architecture::BatchTopK { .. } | Architecture::MatryoshkaBatchTopK { .. } => "jumprelu",
            other => other.name(),
        };
        assert_eq!(cfg["architecture"], expected_arch);
        if expected_arch != architecture.name() {
            let provenance: serde_json::Value =
                serde_json::from_slice(files.saeplay.as_deref().unwrap()).unwrap();
            assert_eq!(
                provenance["trained_as"],
                architecture.name(),
                "{provenance}"
            );
        }
        assert_eq!(cfg["metadata"]["hook_name"], "blocks.1.hook_resid_pre");
        let back = files.parse().unwrap();
        assert_eq!(back.log_density.as_deref(), Some(&density[..]));
        let loaded = back.upload(&device).unwrap();
        let f1 = read2(sae.encode(float_tensor(x.clone(), [n, d], &device)));
        let f2 = read2(loaded.encode(float_tensor(x.clone(), [n, d], &device)));
        assert_eq!(f1, f2, "{architecture:?}");
        if let Architecture::TopK { k } = architecture {
            assert_eq!(cfg["k"], k);
        }
    }
}

#[test]
fn old_saelens_configs_load_with_the_same_features() {
    let device = cpu_device();
    let (d, m, n) = (8, 24, 6);
    let x = random(n * d, 1.0, &mut SplitMix64::new(2));
    // Pre-6.0 TopK: hook_point, activation_fn_str + activation_fn_kwargs.k.
    let c = config(Architecture::TopK { k: 5 }, d, m);
    let w = random_weights(&c, 3);
    let files = SaeFiles {
        cfg: serde_json::to_vec(&serde_json::json!({
            "model_name": "gpt2", "hook_point": "blocks.1.hook_resid_pre", "d_in": d, "d_sae": m,
            "dtype": "float32", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 5},
            "apply_b_dec_to_input": true, "normalize_activations": false,
        }))
        .unwrap(),
        weights: weights_file(&w),
        ..SaeFiles::default()
    };
    let parsed = files.parse().unwrap();
    assert_eq!(parsed.config.architecture, Architecture::TopK { k: 5 });
    assert_eq!(parsed.config.hook_name, "blocks.1.hook_resid_pre");
    assert_eq!(parsed.config.model_name, "gpt2");
    let f = read2(
        parsed
            .upload(&device)
            .unwrap()
            .encode(float_tensor(x.clone(), [n, d], &device)),
    );
    assert!(max_diff(&f, &reference_encode(&c, &w, &x)) < 1e-5);

    // SAELens TopK with rescale_acts_by_decoder_norm: features are top-k of pre * ||W_dec[i]||.
    let files = SaeFiles {
        cfg: serde_json::to_vec(&serde_json::json!({
            "architecture": "topk", "k": 5, "d_in": d, "d_sae": m, "dtype": "float32",
            "rescale_acts_by_decoder_norm": true,
            "metadata": {"hook_name": "blocks.1.hook_resid_pre", "sae_lens_version": "6.5.0"},
        }))
        .unwrap(),
        weights: weights_file(&w),
        ..SaeFiles::default()
    };
    let sae = files.parse().unwrap().upload(&device).unwrap();
    let f = read2(sae.encode(float_tensor(x.clone(), [n, d], &device)));
    let (w_enc, b_enc, b_dec, w_dec) = (
        get(&w, "W_enc"),
        get(&w, "b_enc"),
        get(&w, "b_dec"),
        get(&w, "W_dec"),
    );
    let norms: Vec<f64> = w_dec
        .chunks(d)
        .map(|r| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut expected = vec![0.0f64; n * m];
    for r in 0..n {
        let scaled: Vec<f64> = (0..m)
            .map(|i| {
                let pre: f64 = (0..d)
                    .map(|j| {
                        (f64::from(x[r * d + j]) - f64::from(b_dec[j]))
                            * f64::from(w_enc[j * m + i])
                    })
                    .sum::<f64>()
                    + f64::from(b_enc[i]);
                pre * norms[i]
            })
            .collect();
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]));
        for &i in &order[..5] {
            expected[r * m + i] = scaled[i].max(0.0);
        }
    }
    assert!(max_diff(&f, &expected) < 1e-4);
    // ... and decoding divides each feature by its norm again.
    let unscaled: Vec<f64> = expected
        .iter()
        .enumerate()
        .map(|(i, v)| v / norms[i % m])
        .collect();
    let hat = read2(sae.reconstruct(float_tensor(x.clone(), [n, d], &device)));
    assert!(max_diff(&hat, &reference_decode(&c, &w, &unscaled)) < 1e-4);

    // apply_b_dec_to_input: false, for standard and gated: the encoder reads x itself.
    for architecture in [Architecture::Standard, Architecture::Gated] {
        let c = config(architecture, d, m);
        let w = random_weights(&c, 4);
        let files = SaeFiles {
            cfg: serde_json::to_vec(&serde_json::json!({
                "architecture": architecture.name(), "d_in": d, "d_sae": m, "dtype": "float32",
                "apply_b_dec_to_input": false, "hook_name": "blocks.0.hook_resid_post",
            }))
            .unwrap(),
            weights: weights_file(&w),
            ..SaeFiles::default()
        };
        let sae = files.parse().unwrap().upload(&device).unwrap();
        let f = read2(sae.encode(float_tensor(x.clone(), [n, d], &device)));
        // Reference with b_dec not subtracted = reference on x + b_dec.
        let b_dec = get(&w, "b_dec");
        let shifted: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v + b_dec[i % d])
            .collect();
        assert!(
            max_diff(&f, &reference_encode(&c, &w, &shifted)) < 1e-4,
            "{architecture:?}"
        );
    }
}

#[test]
fn malformed_sae_files_are_plain_errors() {
    let c = config(Architecture::Standard, 8, 16);
    let w = random_weights(&c, 1);
    let good_cfg = serde_json::json!({"architecture": "standard", "d_in": 8, "d_sae": 16,
        "dtype": "float32", "metadata": {"hook_name": "blocks.0.hook_resid_pre"}});
    let parse = |cfg: serde_json::Value, w: &BTreeMap<String, HostTensor>| {
        SaeFiles {
            cfg: serde_json::to_vec(&cfg).unwrap(),
            weights: weights_file(w),
            ..SaeFiles::default()
        }
        .parse()
    };
    assert!(parse(good_cfg.clone(), &w).is_ok());
    let mut cases: Vec<(serde_json::Value, BTreeMap<String, HostTensor>, &str)> = Vec::new();
    let mut no_d_in = good_cfg.clone();
    no_d_in.as_object_mut().unwrap().remove("d_in");
    cases.push((no_d_in, w.clone(), "d_in"));
    let mut unknown = good_cfg.clone();
    unknown["architecture"] = "matryoshka".into();
    cases.push((unknown, w.clone(), "matryoshka"));
    let mut topk_without_k = good_cfg.clone();
    topk_without_k["architecture"] = "topk".into();
    cases.push((topk_without_k, w.clone(), "k"));
    let mut no_hook = good_cfg.clone();
    no_hook.as_object_mut().unwrap().remove("metadata");
    cases.push((no_hook, w.clone(), "hook"));
    let mut head = good_cfg.clone();
    head["metadata"]["hook_head_index"] = 3.into();
    cases.push((head, w.clone(), "head"));
    let mut layer_norm = good_cfg.clone();
    layer_norm["normalize_activations"] = "per_feature_zscore".into();
    cases.push((layer_norm, w.clone(), "per_feature_zscore"));
    let mut missing = w.clone();
    missing.remove("b_enc");
    cases.push((good_cfg.clone(), missing, "b_enc"));
    let mut transposed = w.clone();
    transposed.get_mut("W_enc").unwrap().shape = vec![16, 8];
    cases.push((good_cfg.clone(), transposed, "W_enc"));
    let mut nan = w.clone();
    nan.get_mut("W_dec").unwrap().values[3] = f32::NAN;
    cases.push((good_cfg.clone(), nan, "W_dec"));
    for (cfg, weights, needle) in cases {
        let error = parse(cfg, &weights).expect_err(needle).to_string();
        assert!(error.contains(needle), "`{error}` should mention {needle}");
    }
    let garbage = SaeFiles {
        cfg: b"{not json".to_vec(),
        weights: weights_file(&w),
        ..SaeFiles::default()
    };
    assert!(
        garbage
            .parse()
            .unwrap_err()
            .to_string()
            .contains("cfg.json")
    );
    let truncated = SaeFiles {
        cfg: serde_json::to_vec(&good_cfg).unwrap(),
        weights: weights_file(&w)[..50].to_vec(),
        ..SaeFiles::default()
    };
    assert!(truncated.parse().is_err());
}

/// An SAE that reconstructs exactly: features are the positive and negative parts of each
/// coordinate (`W_enc = [I, -I]`, `W_dec = [I; -I]`).
fn identity_sae(d: usize, device: &burn::tensor::Device, hook: &str) -> Sae {
    let m = 2 * d;
    let mut w_enc = vec![0.0; d * m];
    let mut w_dec = vec![0.0; m * d];
    for j in 0..d {
        w_enc[j * m + j] = 1.0;
        w_enc[j * m + d + j] = -1.0;
        w_dec[j * d + j] = 1.0;
        w_dec[(d + j) * d + j] = -1.0;
    }
    let mut w = BTreeMap::new();
    w.insert("W_enc".to_string(), host(&[d, m], w_enc));
    w.insert("W_dec".to_string(), host(&[m, d], w_dec));
    w.insert("b_enc".to_string(), host(&[m], vec![0.0; m]));
    w.insert("b_dec".to_string(), host(&[d], vec![0.0; d]));
    let mut c = config(Architecture::Standard, d, m);
    c.hook_name = hook.into();
    Sae::from_host(c, &w, device).unwrap()
}

fn zero_sae(d: usize, device: &burn::tensor::Device, hook: &str) -> Sae {
    let mut c = config(Architecture::Standard, d, 4);
    c.hook_name = hook.into();
    let w = c
        .parameter_shapes()
        .into_iter()
        .map(|(n, s)| (n.to_string(), host(&s, vec![0.0; s.iter().product()])))
        .collect();
    Sae::from_host(c, &w, device).unwrap()
}

/// `n` held-out TinyTales windows of 24 tokens.
fn held_out_windows(
    loaded: &saeplay::model::files::LoadedModel,
    n: usize,
) -> Vec<saeplay::sae::store::Window> {
    TokenStream::new(
        loaded.tokenizer().unwrap(),
        Corpus::TinyTales {
            seed: HELD_OUT_SEED,
        },
        24,
    )
    .unwrap()
    .windows(n)
    .unwrap()
}

/// Mean next-token cross-entropy computed on the host from the model's logits.
fn host_cross_entropy(logits: &[f32], ids: &[Vec<u32>], vocab: usize) -> f64 {
    let t = ids[0].len();
    let (mut total, mut count) = (0.0, 0);
    for (b, row) in ids.iter().enumerate() {
        for p in 0..t - 1 {
            let l = &logits[(b * t + p) * vocab..(b * t + p + 1) * vocab];
            let max = l.iter().fold(f32::MIN, |a, &v| a.max(v)) as f64;
            let lse = max
                + l.iter()
                    .map(|&v| (f64::from(v) - max).exp())
                    .sum::<f64>()
                    .ln();
            total += lse - f64::from(l[row[p + 1] as usize]);
            count += 1;
        }
    }
    total / count as f64
}

#[test]
fn metrics_equal_hand_computed_values() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let hook = HookPoint::ResidPre(1);
    let d = model.dims().d_model;
    let device = model.device().clone();
    let windows = held_out_windows(&loaded, 6);
    let ids: Vec<Vec<u32>> = windows.iter().map(|w| w.ids.clone()).collect();
    let clean = model
        .forward(&ids, &Hooks::capture([hook]), LogitsFor::AllPositions)
        .unwrap();
    let x = block_on(read_f32(clean.activation(hook).unwrap().clone())).unwrap();
    let ce_clean = host_cross_entropy(
        &block_on(read_f32(clean.logits)).unwrap(),
        &ids,
        model.dims().d_vocab,
    );

    // A perfect SAE: nothing lost.
    let perfect = identity_sae(d, &device, &hook.to_string());
    let m = block_on(evaluate_sae(model, &perfect, hook, &windows, 4, None)).unwrap();
    assert_eq!(m.tokens, 6 * 24);
    assert!(m.explained_variance > 1.0 - 1e-5 && m.mse < 1e-9, "{m:?}");
    assert!(
        (m.ce_clean - ce_clean).abs() < 1e-4,
        "{} vs {ce_clean}",
        m.ce_clean
    );
    assert!((m.ce_with_sae - m.ce_clean).abs() < 1e-4 && m.kl.abs() < 1e-5);
    assert!((m.loss_recovered - 1.0).abs() < 1e-3);
    let nonzero = x.iter().filter(|&&v| v != 0.0).count() as f64 / (6 * 24) as f64;
    assert!((m.l0 - nonzero).abs() < 1e-9, "L0 {} vs {nonzero}", m.l0);
    let l1 = x.iter().map(|v| f64::from(v.abs())).sum::<f64>() / (6 * 24) as f64;
    assert!((m.l1 - l1).abs() < 1e-3 * l1);
    assert!((m.shrinkage - 1.0).abs() < 1e-5 && (m.l2_ratio - 1.0).abs() < 1e-5);
    // SAEBench's core figures, directly: the identity SAE reconstructs exactly; its latents
    // i and d + i read x_i > 0 and x_i < 0, so each fires on the tokens of that sign; decoder
    // rows e_i and -e_i have no positive cosine with any other row.
    assert!((m.cossim - 1.0).abs() < 1e-5, "{}", m.cossim);
    let mut per_latent = Vec::new();
    for latent in 0..2 * d {
        let fires = |v: f32| if latent < d { v > 0.0 } else { v < 0.0 };
        let (mut tokens, mut windows_fired) = (0usize, 0usize);
        for window in x.chunks(24 * d) {
            let n = window
                .chunks(d)
                .filter(|row| fires(row[latent % d]))
                .count();
            tokens += n;
            windows_fired += usize::from(n > 0);
        }
        if windows_fired > 0 {
            per_latent.push(tokens as f64 / windows_fired as f64);
        }
    }
    let heuristic = per_latent.iter().sum::<f64>() / per_latent.len() as f64;
    assert!(
        (m.consistent_activation_heuristic - heuristic).abs() < 1e-9,
        "{} vs {heuristic}",
        m.consistent_activation_heuristic
    );
    assert!(
        m.mean_max_decoder_cosine.abs() < 1e-6,
        "{}",
        m.mean_max_decoder_cosine
    );
    assert!(m.mean_max_encoder_cosine.abs() < 1e-6);
    assert_eq!(m.fraction_alive(), 1.0 - m.dead_fraction);
    // TinyTales windows: concept recovery is scored, each AUROC a probability.
    let mean = m
        .mean_concept_auroc
        .expect("TinyTales windows carry concepts");
    assert!((0.5..=1.0).contains(&mean), "{mean}");
    assert!(!m.concept_recovery.is_empty());

    // An SAE that outputs zero: the splice is the zero ablation; EV is -E||x||^2/SST + 1.
    let zero = zero_sae(d, &device, &hook.to_string());
    let z = block_on(evaluate_sae(model, &zero, hook, &windows, 4, None)).unwrap();
    assert!((z.ce_with_sae - z.ce_zero_ablation).abs() < 1e-6 && z.loss_recovered.abs() < 1e-6);
    assert_eq!(z.dead_fraction, 1.0);
    assert_eq!(z.l0, 0.0);
    let n = (6 * 24) as f64;
    let mut mean = vec![0.0f64; d];
    for row in x.chunks(d) {
        for (mu, v) in mean.iter_mut().zip(row) {
            *mu += f64::from(*v) / n;
        }
    }
    let sst: f64 = x
        .chunks(d)
        .flat_map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(v, mu)| (f64::from(*v) - mu).powi(2))
        })
        .sum();
    let sse: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
    assert!((z.explained_variance - (1.0 - sse / sst)).abs() < 1e-6);

    // The ablated (and here spliced) runs start at the hook's block from the clean residual:
    // their cross-entropy equals a full forward with the hook zeroed, wherever the hook is.
    for hook in [
        HookPoint::ResidPre(1),
        HookPoint::MlpOut(0),
        HookPoint::LnFinalNormalized,
        HookPoint::Embed,
    ] {
        let zero = zero_sae(d, &device, &hook.to_string());
        let z = block_on(evaluate_sae(model, &zero, hook, &windows, 4, None)).unwrap();
        let zeros = float_tensor(vec![0.0; 6 * 24 * d], [6, 24, d], &device);
        let zeroed = model
            .forward(
                &ids,
                &Hooks::none().with_patch(hook, PatchOp::Replace(zeros)),
                LogitsFor::AllPositions,
            )
            .unwrap();
        let want = host_cross_entropy(
            &block_on(read_f32(zeroed.logits)).unwrap(),
            &ids,
            model.dims().d_vocab,
        );
        assert!(
            (z.ce_zero_ablation - want).abs() < 1e-4 && (z.ce_with_sae - want).abs() < 1e-4,
            "{hook}: {} / {} vs {want}",
            z.ce_zero_ablation,
            z.ce_with_sae
        );
        assert!((z.ce_clean - ce_clean).abs() < 1e-4, "{hook}");
        assert!(
            (want - ce_clean).abs() > 1e-3,
            "{hook}: zeroing changed nothing"
        );
    }

    // Skipping the BOS positions counts the other tokens only.
    let bos = windows[0].ids[0];
    let skipped = block_on(evaluate_sae(model, &perfect, hook, &windows, 4, Some(bos))).unwrap();
    assert_eq!(skipped.tokens, 6 * 23);

    // An SAE for another width is refused.
    let narrow = identity_sae(d / 2, &device, &hook.to_string());
    let error = block_on(evaluate_sae(model, &narrow, hook, &windows, 4, None)).unwrap_err();
    assert!(matches!(error, SaeplayError::SaeMismatch(_)), "{error}");
}

/// The evaluation's forwards shared with helper workers (the page on several cores) give
/// exactly the figures of one worker: each batch's answer is used in batch order. The SAE
/// reaches each helper once, as its config and a safetensors file; a helper that fails has its
/// batches run here.
#[test]
fn an_evaluation_shared_with_helpers_gives_the_same_metrics() {
    use saeplay::sae::metrics::{batch_losses, evaluate_sae_shared};
    use saeplay::sae::spread::{ForwardHelpers, HelperAnswer, HelperTask, SaeForHelpers};
    use std::cell::RefCell;

    struct FakeHelpers<'a> {
        model: &'a saeplay::model::Model,
        hook: HookPoint,
        /// Per helper: the SAE it holds (key and SAE), answers not yet polled, requests seen.
        held: RefCell<Vec<Option<(u32, Sae)>>>,
        pending: RefCell<Vec<std::collections::VecDeque<Result<HelperAnswer, String>>>>,
        asked: RefCell<Vec<usize>>,
    }
    impl ForwardHelpers for FakeHelpers<'_> {
        fn count(&self) -> usize {
            2
        }
        fn send(&self, helper: usize, task: HelperTask<'_>) {
            let HelperTask::Losses {
                windows,
                sae,
                special_id,
            } = task
            else {
                panic!("an evaluation asks for losses");
            };
            self.asked.borrow_mut()[helper] += 1;
            let mut held = self.held.borrow_mut();
            if held[helper].as_ref().is_none_or(|(key, _)| *key != sae.key) {
                let config = sae.config.clone();
                let uploaded =
                    SaeForHelpers::upload(config, &sae.weights, self.model.device()).unwrap();
                held[helper] = Some((sae.key, uploaded));
            }
            let answer = if helper == 1 {
                Err("the helper crashed".to_string())
            } else {
                let sae = &held[helper].as_ref().unwrap().1;
                let (values, losses) = block_on(batch_losses(
                    self.model, sae, self.hook, windows, special_id,
                ))
                .unwrap();
                Ok(HelperAnswer {
                    values,
                    losses: Some(losses),
                })
            };
            self.pending.borrow_mut()[helper].push_back(answer);
        }
        fn poll(&self, helper: usize) -> Option<Result<HelperAnswer, String>> {
            self.pending.borrow_mut()[helper].pop_front()
        }
    }

    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let hook = HookPoint::MlpOut(0);
    let d = model.dims().d_model;
    let mut c = config(Architecture::TopK { k: 4 }, d, 3 * d);
    c.hook_name = hook.to_string();
    let sae = Sae::from_host(c.clone(), &random_weights(&c, 5), model.device()).unwrap();
    let windows = held_out_windows(&loaded, 8);
    let bos = Some(windows[0].ids[0]);
    let alone = block_on(evaluate_sae(model, &sae, hook, &windows, 1, bos)).unwrap();
    let helpers = FakeHelpers {
        model,
        hook,
        held: RefCell::new(vec![None, None]),
        pending: RefCell::new(vec![Default::default(), Default::default()]),
        asked: RefCell::new(vec![0, 0]),
    };
    let shared = block_on(evaluate_sae_shared(
        model,
        &sae,
        hook,
        &windows,
        1,
        bos,
        Some(&helpers),
    ))
    .unwrap();
    // Figures not computed (NaN) compare equal as JSON's null.
    assert_eq!(
        serde_json::to_string(&shared).unwrap(),
        serde_json::to_string(&alone).unwrap()
    );
    assert!(alone.ce_with_sae > alone.ce_clean && alone.tokens == 8 * 23);
    let asked = helpers.asked.borrow();
    assert!(asked[0] >= 2, "helper 0 ran {} batches", asked[0]);
    assert_eq!(
        asked[1], 1,
        "helper 1 is left out after its first answer fails"
    );
    // An SAE handed to a helper with a hook of another width is refused in words.
    let ids = vec![windows[0].ids.clone()];
    let error = block_on(batch_losses(model, &sae, HookPoint::MlpPost(0), &ids, bos)).unwrap_err();
    assert!(matches!(error, SaeplayError::SaeMismatch(_)), "{error}");
}

#[test]
fn mean_max_cosine_equals_a_direct_computation() {
    let device = cpu_device();
    let (m, d) = (37, 6);
    let rows = random(m * d, 1.0, &mut SplitMix64::new(12));
    let got = block_on(saeplay::sae::metrics::mean_max_cosine(float_tensor(
        rows.clone(),
        [m, d],
        &device,
    )))
    .unwrap();
    let row = |i: usize| &rows[i * d..(i + 1) * d];
    let norm = |r: &[f32]| r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    let cosine = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum::<f64>()
            / (norm(a) * norm(b))
    };
    let expected = (0..m)
        .map(|i| {
            (0..m)
                .filter(|&j| j != i)
                .map(|j| cosine(row(i), row(j)))
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum::<f64>()
        / m as f64;
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    // One row has nothing to compare with.
    let one = block_on(saeplay::sae::metrics::mean_max_cosine(float_tensor(
        rows[..d].to_vec(),
        [1, d],
        &device,
    )))
    .unwrap();
    assert!(one.is_nan());
}

#[test]
fn interventions_change_the_activation_as_defined() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let hook = HookPoint::ResidMid(0);
    let d = model.dims().d_model;
    let sae = identity_sae(d, model.device(), &hook.to_string());
    let ids = vec![(0..12).map(|i| (i * 29 + 3) % 257).collect::<Vec<u32>>()];
    let capture = |hooks: Hooks| -> Vec<f32> {
        let out = model
            .forward(&ids, &hooks.clone(), LogitsFor::LastPosition)
            .unwrap();
        block_on(read_f32(out.activation(hook).unwrap().clone())).unwrap()
    };
    let x = capture(Hooks::capture([hook]));
    let with = |interventions: &[Intervention]| {
        let patch = intervention_patch(&sae, interventions).unwrap();
        capture(Hooks::capture([hook]).with_patch(hook, patch))
    };
    let (j, k) = (3, 5);
    let patched = with(&[
        Intervention {
            feature: j,
            mode: InterventionMode::Ablate,
        },
        Intervention {
            feature: k,
            mode: InterventionMode::Clamp { value: 2.5 },
        },
        Intervention {
            feature: d + 1,
            mode: InterventionMode::Add { strength: 0.75 },
        },
    ]);
    for (p, row) in patched.chunks(d).zip(x.chunks(d)) {
        for c in 0..d {
            let expected = if c == j {
                row[c].min(0.0) // its positive part removed
            } else if c == k {
                row[c] + (2.5 - row[c].max(0.0))
            } else if c == 1 {
                row[c] - 0.75 // feature d+1 is -e_1
            } else {
                row[c]
            };
            assert!(
                (p[c] - expected).abs() < 1e-5,
                "coordinate {c}: {} vs {expected}",
                p[c]
            );
        }
    }
    // Neuronpedia's direction modes: orthogonal scales the component along the decoder row,
    // the projection cap bounds it (feature d + i reads -e_i).
    let directional = with(&[
        Intervention {
            feature: j,
            mode: InterventionMode::Orthogonal { coefficient: 0.5 },
        },
        Intervention {
            feature: d + 1,
            mode: InterventionMode::Orthogonal { coefficient: -1.0 },
        },
        Intervention {
            feature: k,
            mode: InterventionMode::ProjectionCap { cap: 0.2 },
        },
        Intervention {
            feature: d + 6,
            mode: InterventionMode::ProjectionCap { cap: 0.1 },
        },
    ]);
    for (p, row) in directional.chunks(d).zip(x.chunks(d)) {
        for c in 0..d {
            let expected = match c {
                _ if c == j => 0.5 * row[c],
                1 => -row[c],
                _ if c == k => row[c].min(0.2),
                6 => row[c].max(-0.1),
                _ => row[c],
            };
            assert!(
                (p[c] - expected).abs() < 1e-5,
                "coordinate {c}: {} vs {expected}",
                p[c]
            );
        }
    }
    // Out-of-range features and non-finite values are refused.
    assert!(
        intervention_patch(
            &sae,
            &[Intervention {
                feature: 2 * d,
                mode: InterventionMode::Ablate
            }]
        )
        .is_err()
    );
    assert!(
        intervention_patch(
            &sae,
            &[Intervention {
                feature: 0,
                mode: InterventionMode::Add { strength: f32::NAN }
            }]
        )
        .is_err()
    );
    assert!(Intervention::parse("12", "add").is_err());
    assert!(Intervention::parse("x:1", "add").is_err());
    assert_eq!(
        Intervention::parse("12:-3.5", "add").unwrap(),
        Intervention {
            feature: 12,
            mode: InterventionMode::Add { strength: -3.5 }
        }
    );
    // Steering by PatchOp::Add is the same as the add intervention.
    let direction = read2(sae.param("W_dec"))
        .chunks(d)
        .nth(2)
        .unwrap()
        .iter()
        .map(|v| v * 1.5)
        .collect::<Vec<f32>>();
    let by_add = capture(Hooks::capture([hook]).with_patch(
        hook,
        PatchOp::Add(float_tensor(direction, [1, 1, d], model.device())),
    ));
    let by_intervention = with(&[Intervention {
        feature: 2,
        mode: InterventionMode::Add { strength: 1.5 },
    }]);
    assert_eq!(by_add, by_intervention);
}

#[test]
fn feature_report_finds_examples_lens_neighbours_and_concepts() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let hook = HookPoint::ResidPre(1);
    let d = model.dims().d_model;
    let sae = identity_sae(d, model.device(), &hook.to_string());
    let windows = TokenStream::new(
        loaded.tokenizer().unwrap(),
        Corpus::TinyTales { seed: 4 },
        32,
    )
    .unwrap()
    .windows(8)
    .unwrap();
    let scanned = block_on(scan(model, &sae, hook, &windows, 3)).unwrap();
    assert_eq!(scanned.tokens, 8 * 32);
    let config = ScanConfig::default();
    let report = block_on(feature_report(
        model,
        loaded.tokenizer().unwrap(),
        &sae,
        &scanned,
        Some(&[2, d + 2]),
        &config,
    ))
    .unwrap();
    assert_eq!(report.features.len(), 2);
    let f = &report.features[0];
    assert_eq!(f.index, 2);
    // The top example's activation is the largest positive part of coordinate 2.
    let ids: Vec<Vec<u32>> = windows.iter().map(|w| w.ids.clone()).collect();
    let out = model
        .forward(&ids, &Hooks::capture([hook]), LogitsFor::LastPosition)
        .unwrap();
    let x = block_on(read_f32(out.activation(hook).unwrap().clone())).unwrap();
    let max = x.chunks(d).map(|r| r[2]).fold(0.0f32, f32::max);
    assert!((f.top_examples[0].activation - max).abs() < 1e-6);
    assert!((f.max_activation - max).abs() < 1e-6);
    let e = &f.top_examples[0];
    assert_eq!(e.activations[e.focus], e.activation);
    assert_eq!(e.tokens.len(), e.token_ids.len());
    // Logit lens: row 2 of the unembedding.
    let unembed = read2(model.unembed().clone());
    let vocab = model.dims().d_vocab;
    let row = &unembed[2 * vocab..3 * vocab];
    let best = (0..vocab)
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap();
    assert_eq!(f.promoted[0].id as usize, best);
    let worst = (0..vocab)
        .min_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap();
    assert_eq!(f.suppressed[0].id as usize, worst);
    // Nearest by decoder cosine: e_2's only non-orthogonal row is -e_2, at -1: last, so absent.
    assert!(f.nearest.iter().all(|&(i, c)| i != d + 2 && c.abs() < 1e-6));
    assert!(f.histogram.counts.iter().sum::<u64>() > 0);
    // TinyTales windows carry concepts, so recovery is scored.
    assert!(!report.concept_recovery.is_empty());
    let mean = report.mean_concept_auroc.unwrap();
    assert!((0.5..=1.0).contains(&mean), "{mean}");
    assert!(
        report
            .concept_recovery
            .iter()
            .all(|c| (0.0..=1.0).contains(&c.auroc))
    );
    // A feature that does not exist is an error.
    assert!(
        block_on(feature_report(
            model,
            loaded.tokenizer().unwrap(),
            &sae,
            &scanned,
            Some(&[2 * d]),
            &config
        ))
        .is_err()
    );
}

#[test]
fn the_store_serves_shuffled_real_tokens_without_special_ones() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let mut store = ActivationStore::new(
        model,
        loaded.tokenizer().unwrap(),
        Corpus::TinyTales { seed: 2 },
        &[HookPoint::Embed, HookPoint::ResidPost(1)],
        StoreConfig {
            context: 32,
            windows_per_forward: 4,
            buffer_vectors: 300,
            skip_special_tokens: true,
            seed: 1,
        },
    )
    .unwrap();
    let batches = block_on(store.next_batch(200)).unwrap();
    let d = model.dims().d_model;
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].len(), 200 * d);
    // hook_embed rows are rows of wte: find which token each is, and never the BOS token.
    let wte = read2(model.unembed().clone().transpose());
    let bos = loaded.tokenizer().unwrap().id_of("<|endoftext|>").unwrap() as usize;
    let mut tokens = Vec::new();
    for row in batches[0].chunks(d) {
        let id = (0..model.dims().d_vocab)
            .find(|&t| wte[t * d..(t + 1) * d] == *row)
            .expect("every embed row is a token's embedding");
        assert_ne!(id, bos);
        tokens.push(id);
    }
    // Shuffled: not the stream's order (consecutive rows rarely repeat the story's order).
    let first_window = TokenStream::new(
        loaded.tokenizer().unwrap(),
        Corpus::TinyTales { seed: 2 },
        32,
    )
    .unwrap()
    .next_window()
    .unwrap();
    let in_order: Vec<usize> = first_window.ids[1..].iter().map(|&t| t as usize).collect();
    assert_ne!(tokens[..in_order.len()].to_vec(), in_order);
    // Captured activations serve every row once per pass.
    let mut captured = CapturedActivations::new((0..40).map(|v| v as f32).collect(), 4, 3).unwrap();
    let pass = block_on(captured.next_batch(10)).unwrap();
    let mut firsts: Vec<f32> = pass.chunks(4).map(|r| r[0]).collect();
    firsts.sort_by(f32::total_cmp);
    assert_eq!(firsts, (0..10).map(|i| (i * 4) as f32).collect::<Vec<_>>());
    // Bad settings are errors.
    assert!(
        ActivationStore::new(
            model,
            loaded.tokenizer().unwrap(),
            Corpus::TinyTales { seed: 2 },
            &[],
            StoreConfig::default()
        )
        .is_err()
    );
    let too_long = StoreConfig {
        context: 10_000,
        ..StoreConfig::default()
    };
    assert!(
        ActivationStore::new(
            model,
            loaded.tokenizer().unwrap(),
            Corpus::TinyTales { seed: 2 },
            &[HookPoint::Embed],
            too_long
        )
        .is_err()
    );
}

/// TopK and BatchTopK train on wgpu with bisection top-k (the WebGPU path: no read-back for
/// selection), reach the same quality as on the CPU, and their encode agrees with the CPU's.
#[test]
#[ignore = "slow: wgpu on a GPU device (lavapipe here)"]
fn topk_and_batchtopk_train_on_wgpu() {
    let Some(device) = common::wgpu_device_unless_skipped("the wgpu SAE training") else {
        return;
    };
    assert_eq!(Selection::for_device(&device), Selection::Bisection);
    let d = 16;
    for architecture in [
        Architecture::TopK { k: 4 },
        Architecture::BatchTopK { k: 4 },
    ] {
        let recipe = small_recipe(architecture, 150);
        let mut source = Synthetic::new(d, 7);
        let first = block_on(source.next_batch(recipe.batch_size)).unwrap();
        let mut trainer = SaeTrainer::new(recipe, d, "synthetic", &first, &device).unwrap();
        let mut last = None;
        while !trainer.is_finished() {
            let batch = block_on(source.next_batch(256)).unwrap();
            last = Some(block_on(trainer.train_step(&batch)).unwrap());
        }
        let stats = last.unwrap();
        assert!(
            stats.explained_variance > 0.7,
            "{architecture:?} on wgpu: {stats:?}"
        );
        if matches!(architecture, Architecture::TopK { .. }) {
            assert!(
                (stats.l0 - 4.0).abs() < 1e-6,
                "exactly k per token: {}",
                stats.l0
            );
        }
        // The same weights on the CPU encode the same features.
        let sae = trainer.sae();
        let host = block_on(sae.to_host()).unwrap();
        let cpu = Sae::from_host(sae.config.clone(), &host, &cpu_device()).unwrap();
        let x = block_on(Synthetic::with_samples(d, 7, 99).next_batch(64)).unwrap();
        let on_gpu = read2(sae.encode(float_tensor(x.clone(), [64, d], &device)));
        let on_cpu = read2(cpu.encode(float_tensor(x, [64, d], &cpu_device())));
        let diff = on_gpu
            .iter()
            .zip(&on_cpu)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff < 1e-4,
            "{architecture:?}: wgpu and CPU encodes differ by {diff}"
        );
    }
}

/// The CPU's sparse TopK step (gathered columns and rows) has the dense step's loss and gradients,
/// with and without dead latents (AuxK).
#[test]
fn sparse_topk_step_equals_the_dense_step() {
    let device = cpu_device().autodiff();
    let (d, m, n, k) = (8, 40, 12, 4);
    let c = config(Architecture::TopK { k }, d, m);
    let w = random_weights(&c, 21);
    let x = random(n * d, 1.0, &mut SplitMix64::new(8));
    let dead_row: Vec<f32> = (0..m).map(|i| if i % 4 == 1 { 1.0 } else { 0.0 }).collect();
    for with_dead in [false, true] {
        let mut results = Vec::new();
        for selection in [Selection::Host, Selection::Bisection] {
            let mut params = Params::new();
            for (name, t) in upload(&w, &device) {
                params.insert(name, t.require_grad());
            }
            let mut ctx = context(0.0);
            ctx.selection = selection;
            if with_dead {
                ctx.dead = Some((float_tensor(dead_row.clone(), [1, m], &device), 10));
            }
            let out = block_on(arch::topk::training_forward(
                &params,
                float_tensor(x.clone(), [n, d], &device),
                k,
                &ctx,
            ))
            .unwrap();
            let loss = scalar(out.loss.clone().inner());
            let terms: Vec<f64> = out
                .terms
                .iter()
                .map(|(_, t)| scalar(t.clone().inner()))
                .collect();
            let grads = out.loss.backward();
            let g: Vec<Vec<f32>> = ["W_enc", "b_enc", "W_dec", "b_dec"]
                .iter()
                .map(|name| read2(params[name].grad(&grads).unwrap()))
                .collect();
            results.push((loss, terms, g));
        }
        let (host, dense) = (&results[0], &results[1]);
        assert!(
            (host.0 - dense.0).abs() < 1e-4,
            "loss {} vs {}",
            host.0,
            dense.0
        );
        assert_eq!(host.1.len(), if with_dead { 2 } else { 1 });
        assert_eq!(host.1.len(), dense.1.len());
        for (a, b) in host.2.iter().zip(&dense.2) {
            let diff = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff < 1e-4,
                "gradients differ by {diff} (dead latents: {with_dead})"
            );
        }
    }
}

/// On the CPU every architecture trains on host buffers (`sae::host_train`, gradients written
/// by hand); the same steps on burn's ops (autodiff) give the same figures and the same weights:
/// AuxK reviving the top-k family's dead latents, Matryoshka's inner prefixes, JumpReLU's
/// straight-through threshold, Gated's two paths and unit-norm decoder, the L1 and L0 penalties
/// warming up, and a checkpoint taken on the host path resumes exactly.
#[test]
fn host_training_equals_burn_autodiff() {
    let d = 16;
    let device = cpu_device();
    for architecture in [
        Architecture::TopK { k: 3 },
        Architecture::Standard,
        Architecture::BatchTopK { k: 3 },
        Architecture::MatryoshkaBatchTopK { k: 3 },
        Architecture::JumpRelu,
        Architecture::Gated,
    ] {
        let recipe = SaeTrainingConfig {
            // Latents die after 2 batches without firing, so AuxK runs in most top-k steps.
            dead_window_tokens: 2 * 64,
            batch_size: 64,
            training_tokens: 64 * 12,
            sparsity_warmup_steps: 6,
            ..small_recipe(architecture, 12)
        };
        let mut source = Synthetic::new(d, 5);
        let first = block_on(source.next_batch(64)).unwrap();
        let batches: Vec<Vec<f32>> = (0..12)
            .map(|_| block_on(source.next_batch(64)).unwrap())
            .collect();
        let mut host = SaeTrainer::new(recipe.clone(), d, "synthetic", &first, &device).unwrap();
        let mut burn = SaeTrainer::new(recipe, d, "synthetic", &first, &device)
            .unwrap()
            .with_burn_ops();
        assert!(host.trains_on_host() && !burn.trains_on_host());
        let initial = block_on(host.sae().to_host()).unwrap();
        let mut auxk_steps = 0;
        for (step, batch) in batches.iter().enumerate() {
            if step == 6 {
                // Resume the host trainer from its own checkpoint halfway.
                let saved = block_on(host.checkpoint()).unwrap();
                host = SaeTrainer::restore(&saved, &device).unwrap();
                assert!(host.trains_on_host());
            }
            let a = block_on(host.train_step(batch)).unwrap();
            let b = block_on(burn.train_step(batch)).unwrap();
            let close = |x: f32, y: f32| (x - y).abs() <= 1e-4 * (1.0 + y.abs());
            let at = format!("{architecture:?} step {step}: {a:?} vs {b:?}");
            assert!(close(a.loss, b.loss), "{at}");
            assert_eq!(a.terms.len(), b.terms.len(), "{at}");
            for ((na, va), (nb, vb)) in a.terms.iter().zip(&b.terms) {
                assert!(na == nb && close(*va, *vb), "{at}");
            }
            // Every penalty and auxiliary term is at work (after Standard's and Gated's L1
            // warm-up begins).
            assert!(
                a.terms
                    .iter()
                    .skip(1)
                    .all(|(name, v)| *v > 0.0 || name == "l1_loss" && step == 0),
                "{at}"
            );
            auxk_steps += usize::from(a.terms.iter().any(|(name, _)| name == "auxk_loss"));
            assert_eq!(a.l0, b.l0, "{at}");
            assert_eq!(a.dead_fraction, b.dead_fraction, "{at}");
            assert!(close(a.explained_variance, b.explained_variance), "{at}");
        }
        if architecture.k().is_some() {
            assert!(
                auxk_steps >= 4,
                "{architecture:?}: {auxk_steps} steps with AuxK"
            );
        }
        let host_sae = block_on(host.sae().to_host()).unwrap();
        let burn_sae = block_on(burn.sae().to_host()).unwrap();
        assert_eq!(host_sae.len(), burn_sae.len());
        for (name, tensor) in &burn_sae {
            let burn_values: Vec<f64> = tensor.values.iter().map(|&v| f64::from(v)).collect();
            assert_eq!(host_sae[name].shape, tensor.shape, "{name}");
            let diff = max_diff(&host_sae[name].values, &burn_values);
            assert!(
                diff < 1e-4,
                "{architecture:?}: {name} differs by {diff} after 12 steps"
            );
            // Every parameter learned (BatchTopK's threshold is a running average).
            let moved = max_diff(&initial[name].values, &burn_values);
            assert!(
                moved > 1e-4,
                "{architecture:?}: {name} did not move ({moved})"
            );
        }
    }
}

/// `run` reports progress each step and can pause (resumable) and stop.
#[test]
fn run_pauses_resumes_and_stops() {
    use saeplay::sae::train::{Control, RunOutcome, run};
    let d = 8;
    let device = cpu_device();
    let recipe = small_recipe(Architecture::TopK { k: 3 }, 10);
    let mut source = Synthetic::new(d, 3);
    let first = block_on(source.next_batch(256)).unwrap();
    let mut trainer = SaeTrainer::new(recipe, d, "synthetic", &first, &device).unwrap();
    let clock = std::cell::Cell::new(0.0);
    let now = || {
        clock.set(clock.get() + 0.5);
        clock.get()
    };
    let mut seen = Vec::new();
    let outcome = block_on(run(&mut trainer, &mut source, &now, &mut |p| {
        seen.push((
            p.stats.step,
            p.total_steps,
            p.seconds_left,
            p.vectors_per_second,
        ));
        if p.stats.step == 2 {
            Control::Pause
        } else {
            Control::Continue
        }
    }))
    .unwrap();
    assert_eq!(outcome, RunOutcome::Paused);
    assert_eq!(trainer.step, 3);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(seen.iter().all(|s| s.1 == 10 && s.2 > 0.0 && s.3 > 0.0));
    let outcome = block_on(run(&mut trainer, &mut source, &now, &mut |p| {
        if p.stats.step == 6 {
            Control::Stop
        } else {
            Control::Continue
        }
    }))
    .unwrap();
    assert_eq!(outcome, RunOutcome::Stopped);
    assert_eq!(trainer.step, 7);
    let outcome = block_on(run(&mut trainer, &mut source, &now, &mut |_| {
        Control::Continue
    }))
    .unwrap();
    assert_eq!(outcome, RunOutcome::Finished);
    assert_eq!(trainer.step, 10);
    assert!(trainer.is_finished());
}

/// Splicing a perfect SAE changes nothing; splicing a zero SAE is the zero ablation.
#[test]
fn splicing_an_sae_replaces_the_activation_by_its_reconstruction() {
    use saeplay::sae::steer::splice_patch;
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let hook = HookPoint::ResidPost(0);
    let d = model.dims().d_model;
    let ids = vec![(0..10).map(|i| (i * 13 + 1) % 257).collect::<Vec<u32>>()];
    let logits = |hooks: Hooks| {
        read3(
            model
                .forward(&ids, &hooks, LogitsFor::AllPositions)
                .unwrap()
                .logits,
        )
    };
    let clean = logits(Hooks::none());
    let perfect = logits(Hooks::none().with_patch(
        hook,
        splice_patch(&identity_sae(d, model.device(), &hook.to_string())),
    ));
    let diff = clean
        .iter()
        .zip(&perfect)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "{diff}");
    let zero = logits(Hooks::none().with_patch(
        hook,
        splice_patch(&zero_sae(d, model.device(), &hook.to_string())),
    ));
    let ablated = logits(Hooks::none().with_patch(
        hook,
        PatchOp::Replace(Tensor::zeros([1, 10, d], model.device())),
    ));
    assert_eq!(zero, ablated);
}

fn read3(t: Tensor<3>) -> Vec<f32> {
    block_on(read_f32(t)).unwrap()
}
