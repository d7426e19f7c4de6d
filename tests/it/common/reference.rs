//! An independent GPT-2 forward pass in plain f64 loops over the checkpoint's tensors, written
//! from the Hugging Face `GPT2LMHeadModel` definition. It shares no code with the engine's burn
//! forward; tests compare the two.

use std::collections::BTreeMap;

use saeplay::backend::{block_on, read_f32};
use saeplay::io::tensors::HostTensor;
use saeplay::model::{Gpt2Weights, HookPoint, Hooks, LogitsFor, Model};

/// Each hook's activation `[T, d]` by TransformerLens name, plus `logits` `[T, vocab]`.
pub type Activations = BTreeMap<String, Vec<f64>>;

fn row(t: &HostTensor, i: usize) -> &[f32] {
    let width = t.shape[1];
    &t.values[i * width..(i + 1) * width]
}

/// `x [T, in] @ w [in, out] + b`, Conv1D layout.
fn linear(x: &[f64], t: usize, w: &HostTensor, b: &HostTensor) -> Vec<f64> {
    let (d_in, d_out) = (w.shape[0], w.shape[1]);
    let mut y = vec![0.0; t * d_out];
    for p in 0..t {
        for o in 0..d_out {
            let mut acc = f64::from(b.values[o]);
            for i in 0..d_in {
                acc += x[p * d_in + i] * f64::from(w.values[i * d_out + o]);
            }
            y[p * d_out + o] = acc;
        }
    }
    y
}

fn normalize(x: &[f64], t: usize, d: usize, eps: f64) -> Vec<f64> {
    let mut y = vec![0.0; t * d];
    for p in 0..t {
        let xs = &x[p * d..(p + 1) * d];
        let mean = xs.iter().sum::<f64>() / d as f64;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        for i in 0..d {
            y[p * d + i] = (xs[i] - mean) / (var + eps).sqrt();
        }
    }
    y
}

fn affine(x: &[f64], d: usize, w: &HostTensor, b: &HostTensor) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, v)| v * f64::from(w.values[i % d]) + f64::from(b.values[i % d]))
        .collect()
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

pub fn forward(weights: &Gpt2Weights, ids: &[u32]) -> Activations {
    let c = &weights.config;
    let (t, d, h) = (ids.len(), c.n_embd, c.n_head);
    let dh = d / h;
    let eps = c.layer_norm_epsilon;
    let w = |name: &str| weights.get(name);
    let mut out = Activations::new();

    let embed: Vec<f64> = ids
        .iter()
        .flat_map(|&id| {
            row(w("wte.weight"), id as usize)
                .iter()
                .map(|&v| f64::from(v))
        })
        .collect();
    let pos: Vec<f64> = (0..t)
        .flat_map(|p| row(w("wpe.weight"), p).iter().map(|&v| f64::from(v)))
        .collect();
    let mut resid: Vec<f64> = embed.iter().zip(&pos).map(|(a, b)| a + b).collect();
    out.insert("hook_embed".into(), embed);
    out.insert("hook_pos_embed".into(), pos);

    for l in 0..c.n_layer {
        let p = |s: &str| format!("h.{l}.{s}");
        out.insert(format!("blocks.{l}.hook_resid_pre"), resid.clone());
        let x = affine(
            &normalize(&resid, t, d, eps),
            d,
            w(&p("ln_1.weight")),
            w(&p("ln_1.bias")),
        );
        let qkv = linear(
            &x,
            t,
            w(&p("attn.c_attn.weight")),
            w(&p("attn.c_attn.bias")),
        );
        let mut z = vec![0.0; t * d];
        for head in 0..h {
            for i in 0..t {
                let q = |k: usize| qkv[i * 3 * d + head * dh + k];
                let mut scores = vec![f64::NEG_INFINITY; t];
                for (j, score) in scores.iter_mut().enumerate().take(i + 1) {
                    let mut s = 0.0;
                    for k in 0..dh {
                        s += q(k) * qkv[j * 3 * d + d + head * dh + k];
                    }
                    *score = s / (dh as f64).sqrt();
                }
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for k in 0..dh {
                    z[i * d + head * dh + k] = (0..=i)
                        .map(|j| exps[j] / total * qkv[j * 3 * d + 2 * d + head * dh + k])
                        .sum();
                }
            }
        }
        let attn_out = linear(
            &z,
            t,
            w(&p("attn.c_proj.weight")),
            w(&p("attn.c_proj.bias")),
        );
        out.insert(format!("blocks.{l}.attn.hook_z"), z);
        for (r, a) in resid.iter_mut().zip(&attn_out) {
            *r += a;
        }
        out.insert(format!("blocks.{l}.hook_attn_out"), attn_out);
        out.insert(format!("blocks.{l}.hook_resid_mid"), resid.clone());
        let x = affine(
            &normalize(&resid, t, d, eps),
            d,
            w(&p("ln_2.weight")),
            w(&p("ln_2.bias")),
        );
        let hidden: Vec<f64> = linear(&x, t, w(&p("mlp.c_fc.weight")), w(&p("mlp.c_fc.bias")))
            .into_iter()
            .map(gelu_tanh)
            .collect();
        let mlp_out = linear(
            &hidden,
            t,
            w(&p("mlp.c_proj.weight")),
            w(&p("mlp.c_proj.bias")),
        );
        out.insert(format!("blocks.{l}.mlp.hook_post"), hidden);
        for (r, m) in resid.iter_mut().zip(&mlp_out) {
            *r += m;
        }
        out.insert(format!("blocks.{l}.hook_mlp_out"), mlp_out);
        out.insert(format!("blocks.{l}.hook_resid_post"), resid.clone());
    }
    let normalized = normalize(&resid, t, d, eps);
    let final_hidden = affine(&normalized, d, w("ln_f.weight"), w("ln_f.bias"));
    out.insert("ln_final.hook_normalized".into(), normalized);
    // The unembedding: tied to wte, unless weight processing untied it (with a bias).
    let unembed = weights
        .tensors
        .get("lm_head.weight")
        .unwrap_or_else(|| w("wte.weight"));
    let unembed_bias = weights.tensors.get("lm_head.bias");
    let vocab = unembed.shape[0];
    let mut logits = vec![0.0; t * vocab];
    for p in 0..t {
        for v in 0..vocab {
            let bias = unembed_bias.map_or(0.0, |b| f64::from(b.values[v]));
            logits[p * vocab + v] = bias
                + (0..d)
                    .map(|i| final_hidden[p * d + i] * f64::from(unembed.values[v * d + i]))
                    .sum::<f64>();
        }
    }
    out.insert("logits".into(), logits);
    out
}

/// Largest absolute difference, with the index where it occurs.
pub fn max_abs_diff(a: &[f32], b: &[f64]) -> (f64, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (&x, &y))| ((f64::from(x) - y).abs(), i))
        .fold(
            (0.0, 0),
            |best, cur| if cur.0 > best.0 { cur } else { best },
        )
}

/// Every hook and the logits of the engine equal the reference on `ids`, within 1e-4.
pub fn assert_matches_reference(weights: &Gpt2Weights, model: &Model, ids: &[u32]) {
    const TOLERANCE: f64 = 1e-4;
    let read = |t| block_on(read_f32(t)).unwrap();
    let expected = forward(weights, ids);
    let all = HookPoint::all(&weights.config.dims());
    let output = model
        .forward(
            &[ids.to_vec()],
            &Hooks::capture(all.clone()),
            LogitsFor::AllPositions,
        )
        .unwrap();
    assert_eq!(
        output.captured.len(),
        all.len(),
        "every hook was captured once"
    );
    let (diff, at) = max_abs_diff(&read(output.logits), &expected["logits"]);
    assert!(diff < TOLERANCE, "logits differ by {diff} at {at}");
    for (hook, activation) in output.captured {
        let name = hook.to_string();
        let (diff, at) = max_abs_diff(&read(activation), &expected[&name]);
        assert!(diff < TOLERANCE, "{name} differs by {diff} at {at}");
    }
}
