//! An independent Llama forward pass in plain f64 loops over the checkpoint's tensors (Hugging
//! Face names and `[out, in]` layout), written from transformers' `LlamaForCausalLM` definition:
//! RMSNorm, rotary embeddings with `rotate_half`, grouped-query attention, SwiGLU. It shares no
//! code with the engine's burn forward; tests compare the two.

use std::collections::BTreeMap;

use saeplay::backend::{block_on, read_f32};
use saeplay::io::tensors::HostTensor;
use saeplay::model::{HookPoint, Hooks, LlamaWeights, LogitsFor, Model};

use super::reference::max_abs_diff;

/// Each hook's activation `[T, d]` by TransformerLens name, plus `logits` `[T, vocab]`.
pub type Activations = BTreeMap<String, Vec<f64>>;

fn get<'a>(w: &'a LlamaWeights, name: &str) -> &'a HostTensor {
    w.tensors.get(name).unwrap_or_else(|| panic!("no {name}"))
}

/// `x [T, in] @ w^T + b` with `w` `[out, in]`.
fn linear(x: &[f64], t: usize, w: &HostTensor, b: Option<&HostTensor>) -> Vec<f64> {
    let (d_out, d_in) = (w.shape[0], w.shape[1]);
    let mut y = vec![0.0; t * d_out];
    for p in 0..t {
        for o in 0..d_out {
            let mut acc = b.map_or(0.0, |b| f64::from(b.values[o]));
            let row = &w.values[o * d_in..(o + 1) * d_in];
            for i in 0..d_in {
                acc += x[p * d_in + i] * f64::from(row[i]);
            }
            y[p * d_out + o] = acc;
        }
    }
    y
}

/// `x / sqrt(mean(x^2) + eps)` per position.
fn rms_normalize(x: &[f64], t: usize, d: usize, eps: f64) -> Vec<f64> {
    let mut y = vec![0.0; t * d];
    for p in 0..t {
        let xs = &x[p * d..(p + 1) * d];
        let ms = xs.iter().map(|v| v * v).sum::<f64>() / d as f64;
        for i in 0..d {
            y[p * d + i] = xs[i] / (ms + eps).sqrt();
        }
    }
    y
}

fn scale(x: &[f64], d: usize, w: &HostTensor) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, v)| v * f64::from(w.values[i % d]))
        .collect()
}

/// Rotate heads `[T, heads * dh]` in place: pairs (i, i + dh/2) by angle pos * inv_freq[i].
fn rope(x: &mut [f64], t: usize, heads: usize, dh: usize, inv_freq: &[f64]) {
    let half = dh / 2;
    for p in 0..t {
        for h in 0..heads {
            let base = p * heads * dh + h * dh;
            for i in 0..half {
                let angle = p as f64 * inv_freq[i];
                let (s, c) = angle.sin_cos();
                let (a, b) = (x[base + i], x[base + i + half]);
                x[base + i] = a * c - b * s;
                x[base + i + half] = b * c + a * s;
            }
        }
    }
}

pub fn forward(w: &LlamaWeights, ids: &[u32]) -> Activations {
    let c = &w.config;
    let t = ids.len();
    let d = c.hidden_size;
    let heads = c.num_attention_heads;
    let kv_heads = c.n_kv_heads();
    let dh = c.d_head();
    let group = heads / kv_heads;
    let m = c.intermediate_size;
    let eps = c.rms_norm_eps;
    let inv_freq = c.inv_freq().unwrap();
    let biases = c.biases();
    let mut out = Activations::new();

    let embed = get(w, "model.embed_tokens.weight");
    let mut resid: Vec<f64> = ids
        .iter()
        .flat_map(|&id| {
            embed.values[id as usize * d..(id as usize + 1) * d]
                .iter()
                .map(|&v| f64::from(v))
        })
        .collect();
    out.insert("hook_embed".into(), resid.clone());

    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}.");
        let bias = |name: &str, on: bool| on.then(|| get(w, &format!("{p}{name}.bias")));
        out.insert(format!("blocks.{l}.hook_resid_pre"), resid.clone());
        let normed = scale(
            &rms_normalize(&resid, t, d, eps),
            d,
            get(w, &format!("{p}input_layernorm.weight")),
        );
        let mut q = linear(
            &normed,
            t,
            get(w, &format!("{p}self_attn.q_proj.weight")),
            bias("self_attn.q_proj", biases.qkv),
        );
        let mut k = linear(
            &normed,
            t,
            get(w, &format!("{p}self_attn.k_proj.weight")),
            bias("self_attn.k_proj", biases.qkv),
        );
        let v = linear(
            &normed,
            t,
            get(w, &format!("{p}self_attn.v_proj.weight")),
            bias("self_attn.v_proj", biases.qkv),
        );
        rope(&mut q, t, heads, dh, &inv_freq);
        rope(&mut k, t, kv_heads, dh, &inv_freq);
        let mut z = vec![0.0; t * heads * dh];
        for h in 0..heads {
            let kh = h / group;
            for i in 0..t {
                let qi = &q[i * heads * dh + h * dh..][..dh];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        let kj = &k[j * kv_heads * dh + kh * dh..][..dh];
                        qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() / (dh as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for (j, e) in exps.iter().enumerate() {
                    let vj = &v[j * kv_heads * dh + kh * dh..][..dh];
                    for e_i in 0..dh {
                        z[i * heads * dh + h * dh + e_i] += e / total * vj[e_i];
                    }
                }
            }
        }
        out.insert(format!("blocks.{l}.attn.hook_z"), z.clone());
        let attn_out = linear(
            &z,
            t,
            get(w, &format!("{p}self_attn.o_proj.weight")),
            bias("self_attn.o_proj", biases.output),
        );
        out.insert(format!("blocks.{l}.hook_attn_out"), attn_out.clone());
        for (r, a) in resid.iter_mut().zip(&attn_out) {
            *r += a;
        }
        out.insert(format!("blocks.{l}.hook_resid_mid"), resid.clone());
        let normed = scale(
            &rms_normalize(&resid, t, d, eps),
            d,
            get(w, &format!("{p}post_attention_layernorm.weight")),
        );
        let gate = linear(
            &normed,
            t,
            get(w, &format!("{p}mlp.gate_proj.weight")),
            None,
        );
        let up = linear(&normed, t, get(w, &format!("{p}mlp.up_proj.weight")), None);
        let hidden: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        assert_eq!(hidden.len(), t * m);
        out.insert(format!("blocks.{l}.mlp.hook_post"), hidden.clone());
        let mlp_out = linear(
            &hidden,
            t,
            get(w, &format!("{p}mlp.down_proj.weight")),
            None,
        );
        out.insert(format!("blocks.{l}.hook_mlp_out"), mlp_out.clone());
        for (r, a) in resid.iter_mut().zip(&mlp_out) {
            *r += a;
        }
        out.insert(format!("blocks.{l}.hook_resid_post"), resid.clone());
    }
    let normalized = rms_normalize(&resid, t, d, eps);
    out.insert("ln_final.hook_normalized".into(), normalized.clone());
    let final_hidden = scale(&normalized, d, get(w, "model.norm.weight"));
    let unembed = if c.tie_word_embeddings {
        get(w, "model.embed_tokens.weight")
    } else {
        get(w, "lm_head.weight")
    };
    out.insert("logits".into(), linear(&final_hidden, t, unembed, None));
    out
}

/// Every hook and the logits of the engine equal the reference on `ids`, within `tolerance`
/// times the activation's largest magnitude (at least 1): real models' residual streams reach
/// 1e4 at the first position, where f32 is exact to about 1e-3. Returns the largest relative
/// difference seen, for reports.
pub fn assert_matches_reference(
    weights: &LlamaWeights,
    model: &Model,
    ids: &[u32],
    tolerance: f64,
) -> f64 {
    let read = |t| block_on(read_f32(t)).unwrap();
    let expected = forward(weights, ids);
    let all = HookPoint::all(model.dims());
    assert!(
        !all.contains(&HookPoint::PosEmbed),
        "Llama has no position embeddings"
    );
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
    let mut worst: f64 = 0.0;
    let mut check = |name: &str, got: &[f32]| {
        let want = &expected[name];
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let (diff, at) = max_abs_diff(got, want);
        worst = worst.max(diff / scale);
        assert!(
            diff < tolerance * scale,
            "{name} differs by {diff} at {at} (largest magnitude {scale})"
        );
    };
    check("logits", &read(output.logits));
    for (hook, activation) in output.captured {
        check(&hook.to_string(), &read(activation));
    }
    worst
}
