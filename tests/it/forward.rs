//! The burn forward pass against the independent reference, capture and patch semantics, the
//! key/value cache, and the CPU and wgpu backends agreeing.
use crate::common;

use crate::common::reference::assert_matches_reference;
use saeplay::backend::{block_on, read_f32};
use saeplay::model::files::ModelFiles;
use saeplay::model::fixtures::{TinySpec, tiny_checkpoint};
use saeplay::model::{
    Gpt2, Gpt2Config, Gpt2Weights, HookPoint, Hooks, KvCache, LogitsFor, Model, PatchOp,
};

fn ids(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 37 + salt * 11 + 5) % 257)
        .collect()
}

fn read3(tensor: burn::tensor::Tensor<3>) -> Vec<f32> {
    block_on(read_f32(tensor)).unwrap()
}

#[test]
fn forward_matches_reference_with_and_without_key_prefix() {
    for with_prefix in [false, true] {
        let spec = TinySpec {
            with_prefix,
            seed: 3,
            ..TinySpec::default()
        };
        let (files, loaded) = common::cpu_model(&spec);
        let weights = files.parse().unwrap().weights.into_gpt2().unwrap();
        assert_matches_reference(&weights, &loaded.model, &ids(17, 1));
    }
}

#[test]
fn forward_matches_reference_for_other_shapes() {
    // Three layers, one head, an odd MLP width, another epsilon, a padded vocabulary.
    let mut config = Gpt2Config::new(300, 40, 24, 3, 1);
    config.n_inner = Some(40);
    config.layer_norm_epsilon = 1e-6;
    let weights = Gpt2Weights::random(&config, 9);
    let model = Model::from(Gpt2::new(&weights, &saeplay::backend::cpu_device()).unwrap());
    assert_matches_reference(&weights, &model, &ids(40, 2));
    assert_matches_reference(&weights, &model, &[299]);
}

#[test]
fn prefixed_and_plain_checkpoints_give_identical_logits() {
    let plain = common::cpu_model(&TinySpec::default()).1;
    let prefixed = common::cpu_model(&TinySpec {
        with_prefix: true,
        ..TinySpec::default()
    })
    .1;
    let input = [ids(9, 4)];
    let a = read3(
        plain
            .model
            .forward(&input, &Hooks::none(), LogitsFor::AllPositions)
            .unwrap()
            .logits,
    );
    let b = read3(
        prefixed
            .model
            .forward(&input, &Hooks::none(), LogitsFor::AllPositions)
            .unwrap()
            .logits,
    );
    assert_eq!(a, b);
}

#[test]
fn batched_rows_equal_single_rows() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let rows = vec![ids(12, 1), ids(12, 2), ids(12, 3)];
    let hook = HookPoint::ResidMid(1);
    let batched = loaded
        .model
        .forward(&rows, &Hooks::capture([hook]), LogitsFor::AllPositions)
        .unwrap();
    let batched_logits = read3(batched.logits);
    let batched_act = read3(batched.captured[0].1.clone());
    let vocab = loaded.model.dims().d_vocab;
    let d = loaded.model.dims().d_model;
    for (r, row) in rows.iter().enumerate() {
        let single = loaded
            .model
            .forward(
                std::slice::from_ref(row),
                &Hooks::capture([hook]),
                LogitsFor::AllPositions,
            )
            .unwrap();
        let logits = read3(single.logits);
        let act = read3(single.captured[0].1.clone());
        let slice = &batched_logits[r * 12 * vocab..(r + 1) * 12 * vocab];
        assert!(slice.iter().zip(&logits).all(|(a, b)| (a - b).abs() < 1e-5));
        let slice = &batched_act[r * 12 * d..(r + 1) * 12 * d];
        assert!(slice.iter().zip(&act).all(|(a, b)| (a - b).abs() < 1e-5));
    }
}

#[test]
fn capture_returns_exactly_the_hooks_asked_for() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let config = loaded.model.dims().clone();
    let none = loaded
        .model
        .forward(&[ids(5, 0)], &Hooks::none(), LogitsFor::AllPositions)
        .unwrap();
    assert!(none.captured.is_empty());
    let asked = [
        HookPoint::MlpPost(0),
        HookPoint::Embed,
        HookPoint::ResidPost(1),
    ];
    let output = loaded
        .model
        .forward(
            &[ids(5, 0)],
            &Hooks::capture(asked),
            LogitsFor::AllPositions,
        )
        .unwrap();
    // Captured in forward order, with the hook's width.
    let got: Vec<HookPoint> = output.captured.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        got,
        vec![
            HookPoint::Embed,
            HookPoint::MlpPost(0),
            HookPoint::ResidPost(1)
        ]
    );
    for (hook, tensor) in &output.captured {
        assert_eq!(tensor.dims(), [1, 5, hook.width(&config)]);
    }
    assert_eq!(
        output.activation(HookPoint::MlpPost(0)).unwrap().dims()[2],
        4 * config.d_model
    );
}

#[test]
fn replacing_the_residual_stream_transplants_the_rest_of_the_forward() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let (a, b) = (ids(10, 1), ids(10, 7));
    let hook = HookPoint::ResidPre(1);
    let from_b = model
        .forward(
            std::slice::from_ref(&b),
            &Hooks::capture([hook]),
            LogitsFor::AllPositions,
        )
        .unwrap();
    let b_logits = read3(from_b.logits);
    let b_resid = from_b.captured[0].1.clone();
    let patched = model
        .forward(
            std::slice::from_ref(&a),
            &Hooks::none().with_patch(hook, PatchOp::Replace(b_resid)),
            LogitsFor::AllPositions,
        )
        .unwrap();
    let patched_logits = read3(patched.logits);
    let a_logits = read3(
        model
            .forward(&[a], &Hooks::none(), LogitsFor::AllPositions)
            .unwrap()
            .logits,
    );
    let max = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max)
    };
    assert!(
        max(&patched_logits, &b_logits) < 1e-5,
        "patched forward is b's forward"
    );
    assert!(
        max(&patched_logits, &a_logits) > 1e-3,
        "and differs from a's"
    );
}

#[test]
fn adding_at_the_final_norm_shifts_logits_by_the_direct_computation() {
    let (files, loaded) = common::cpu_model(&TinySpec::default());
    let weights = files.parse().unwrap().weights.into_gpt2().unwrap();
    let model = &loaded.model;
    let d = model.dims().d_model;
    let vocab = model.dims().d_vocab;
    let delta: Vec<f32> = (0..d).map(|i| ((i as f32) * 0.37).sin()).collect();
    let delta_tensor = saeplay::backend::float_tensor(delta.clone(), [1, 1, d], model.device());
    let input = [ids(6, 2)];
    let clean = read3(
        model
            .forward(&input, &Hooks::none(), LogitsFor::AllPositions)
            .unwrap()
            .logits,
    );
    let hooks = Hooks::none().with_patch(HookPoint::LnFinalNormalized, PatchOp::Add(delta_tensor));
    let steered = read3(
        model
            .forward(&input, &hooks, LogitsFor::AllPositions)
            .unwrap()
            .logits,
    );
    // logits = (normalized * g + b) @ wte^T, so adding delta adds (delta * g) @ wte^T at every position.
    let gain = &weights.get("ln_f.weight").values;
    let wte = &weights.get("wte.weight").values;
    for v in 0..vocab {
        let expected: f64 = (0..d)
            .map(|i| f64::from(delta[i] * gain[i]) * f64::from(wte[v * d + i]))
            .sum();
        for p in 0..6 {
            let got = f64::from(steered[p * vocab + v] - clean[p * vocab + v]);
            assert!(
                (got - expected).abs() < 1e-4,
                "token {v} position {p}: {got} vs {expected}"
            );
        }
    }
}

#[test]
fn map_patch_sees_the_activation_and_zero_ablation_equals_replacing_with_zeros() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let input = [ids(8, 3)];
    let hook = HookPoint::AttnOut(0);
    let zero_map = Hooks::none().with_patch(
        hook,
        PatchOp::Map(std::sync::Arc::new(
            |x: burn::tensor::Tensor<3>, _ctx: saeplay::model::HookContext| x.zeros_like(),
        )),
    );
    let zeros = saeplay::backend::float_tensor(vec![0.0; 8 * 32], [1, 8, 32], model.device());
    let zero_replace = Hooks::none().with_patch(hook, PatchOp::Replace(zeros));
    let a = read3(
        model
            .forward(&input, &zero_map, LogitsFor::AllPositions)
            .unwrap()
            .logits,
    );
    let b = read3(
        model
            .forward(&input, &zero_replace, LogitsFor::AllPositions)
            .unwrap()
            .logits,
    );
    assert_eq!(a, b);
    // Capture after a patch sees the patched value.
    let both = zero_map.clone();
    let both = Hooks {
        capture: vec![hook],
        ..both
    };
    let out = model
        .forward(&input, &both, LogitsFor::AllPositions)
        .unwrap();
    assert!(read3(out.captured[0].1.clone()).iter().all(|&v| v == 0.0));
}

#[test]
fn cached_forward_in_chunks_equals_full_forward() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let sequence = ids(20, 5);
    let vocab = model.dims().d_vocab;
    let full = read3(
        model
            .forward(
                std::slice::from_ref(&sequence),
                &Hooks::none(),
                LogitsFor::AllPositions,
            )
            .unwrap()
            .logits,
    );
    let mut cache = KvCache::new(model.dims().n_layers);
    let mut position = 0;
    for chunk in [7usize, 1, 1, 5, 6] {
        let piece = sequence[position..position + chunk].to_vec();
        let out = model
            .forward_cached(
                &[piece],
                &mut cache,
                &Hooks::none(),
                LogitsFor::AllPositions,
            )
            .unwrap();
        let logits = read3(out.logits);
        let expected = &full[position * vocab..(position + chunk) * vocab];
        let diff = logits
            .iter()
            .zip(expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "chunk at {position} differs by {diff}");
        position += chunk;
    }
    assert_eq!(cache.len(), 20);
}

#[test]
fn steering_add_applies_during_cached_forward() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let d = model.dims().d_model;
    let delta = saeplay::backend::float_tensor(vec![0.5; d], [1, 1, d], model.device());
    let hooks = Hooks::none().with_patch(HookPoint::ResidPost(0), PatchOp::Add(delta));
    let sequence = ids(9, 8);
    let full = read3(
        model
            .forward(
                std::slice::from_ref(&sequence),
                &hooks,
                LogitsFor::LastPosition,
            )
            .unwrap()
            .logits,
    );
    let mut cache = KvCache::new(model.dims().n_layers);
    model
        .forward_cached(
            &[sequence[..5].to_vec()],
            &mut cache,
            &hooks,
            LogitsFor::LastPosition,
        )
        .unwrap();
    let last = read3(
        model
            .forward_cached(
                &[sequence[5..].to_vec()],
                &mut cache,
                &hooks,
                LogitsFor::LastPosition,
            )
            .unwrap()
            .logits,
    );
    let diff = full
        .iter()
        .zip(&last)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-5);
}

/// The wgpu backend (Mesa lavapipe here) computes the same forward as the CPU backend.
#[test]
#[ignore = "slow: wgpu on a GPU device (lavapipe here)"]
fn wgpu_backend_agrees_with_cpu() {
    let Some(device) = common::wgpu_device_unless_skipped("the wgpu comparison") else {
        return;
    };
    let files = tiny_checkpoint(&TinySpec::default());
    let weights = files.parse().unwrap().weights.into_gpt2().unwrap();
    let model = Model::from(Gpt2::new(&weights, &device).unwrap());
    assert_matches_reference(&weights, &model, &ids(16, 6));
    let _ = ModelFiles::parse; // the same loader feeds both backends
}

/// The largest |a - b| over two equally long lists.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn host_forward_and_burn_ops_agree_on_every_hook_patch_and_cache() {
    // Each config exercises one of the host forward's branches: GPT-2's tanh GELU, the exact
    // GELU, ReLU with attention scaled by the inverse layer index, and untied lm_head with a bias
    // (TransformerLens's processing unties and centres it).
    let mut erf = Gpt2Config::new(300, 40, 24, 3, 2);
    erf.activation_function = "gelu".into();
    let mut relu = Gpt2Config::new(260, 40, 32, 2, 4);
    relu.activation_function = "relu".into();
    relu.scale_attn_by_inverse_layer_idx = true;
    let tanh = Gpt2Config::new(257, 64, 32, 2, 4);
    for (config, processing) in [
        (tanh, saeplay::model::WeightProcessing::default()),
        (erf, saeplay::model::WeightProcessing::default()),
        (
            relu,
            saeplay::model::WeightProcessing::TRANSFORMER_LENS_DEFAULT,
        ),
    ] {
        let mut weights = Gpt2Weights::random(&config, 4);
        processing.apply(&mut weights);
        let host = Model::from(Gpt2::new(&weights, &saeplay::backend::cpu_device()).unwrap());
        let Model::Gpt2(gpt2) = &host else {
            unreachable!()
        };
        assert!(gpt2.has_host_forward());
        let burn = host.clone().burn_forward_only();
        let dims = host.dims().clone();
        let batch = [ids(11, 1), ids(11, 2)];
        let every_hook = Hooks::capture(HookPoint::all(&dims));
        for logits_for in [LogitsFor::AllPositions, LogitsFor::LastPosition] {
            let a = host.forward(&batch, &every_hook, logits_for).unwrap();
            let b = burn.forward(&batch, &every_hook, logits_for).unwrap();
            assert!(max_diff(&read3(a.logits), &read3(b.logits)) < 1e-4);
            assert_eq!(a.captured.len(), b.captured.len());
            for ((hook_a, x), (hook_b, y)) in a.captured.into_iter().zip(b.captured) {
                assert_eq!(hook_a, hook_b);
                assert_eq!(x.dims(), y.dims(), "{hook_a}");
                let diff = max_diff(&read3(x), &read3(y));
                assert!(diff < 1e-4, "{hook_a} differs by {diff}");
            }
        }
        // Patches: a broadcast add, a per-position replace and a function, with a capture after.
        let d = dims.d_model;
        let device = host.device().clone();
        // The unembedding read from the host buffers is the burn tensors' (untied by the
        // processing in the third case), and so is the logit lens of directions.
        let unembed = |m: &Model| block_on(read_f32(m.unembed())).unwrap();
        assert_eq!(host.unembed().dims(), [d, dims.d_vocab]);
        assert_eq!(unembed(&host), unembed(&burn));
        let directions: Vec<f32> = (0..3 * d).map(|i| ((i % 7) as f32 - 3.0) / 5.0).collect();
        let lens = |m: &Model| {
            let x = saeplay::backend::float_tensor(directions.clone(), [3, d], &device);
            block_on(read_f32(m.unembed_directions(x))).unwrap()
        };
        assert!(max_diff(&lens(&host), &lens(&burn)) < 1e-4);
        let steer: Vec<f32> = (0..d).map(|i| (i as f32 - 10.0) / 7.0).collect();
        let replace: Vec<f32> = (0..2 * 11 * 4 * d)
            .map(|i| ((i % 13) as f32 - 6.0) / 9.0)
            .collect();
        let patched = Hooks::capture([HookPoint::ResidPost(1), HookPoint::LnFinalNormalized])
            .with_patch(
                HookPoint::ResidMid(0),
                PatchOp::Add(saeplay::backend::float_tensor(steer, [1, 1, d], &device)),
            )
            .with_patch(
                HookPoint::MlpPost(1),
                PatchOp::Replace(saeplay::backend::float_tensor(
                    replace,
                    [2, 11, 4 * d],
                    &device,
                )),
            )
            .with_patch(
                HookPoint::AttnZ(0),
                PatchOp::Map(std::sync::Arc::new(
                    |x: burn::tensor::Tensor<3>, _: saeplay::model::HookContext| x * 0.5,
                )),
            );
        let a = host
            .forward(&batch, &patched, LogitsFor::AllPositions)
            .unwrap();
        let b = burn
            .forward(&batch, &patched, LogitsFor::AllPositions)
            .unwrap();
        let unpatched = read3(
            host.forward(&batch, &Hooks::none(), LogitsFor::AllPositions)
                .unwrap()
                .logits,
        );
        let a_logits = read3(a.logits);
        assert!(
            max_diff(&a_logits, &unpatched) > 1e-2,
            "the patches changed nothing"
        );
        assert!(max_diff(&a_logits, &read3(b.logits)) < 1e-4);
        for ((_, x), (_, y)) in a.captured.into_iter().zip(b.captured) {
            assert!(max_diff(&read3(x), &read3(y)) < 1e-4);
        }
        // Cached generation, one token at a time after a prompt, with the steering add.
        let steer_only = Hooks {
            capture: vec![],
            patches: patched.patches[..1].to_vec(),
        };
        let mut caches = [KvCache::new(dims.n_layers), KvCache::new(dims.n_layers)];
        let mut input = vec![ids(6, 3)];
        for _ in 0..4 {
            let [ca, cb] = &mut caches;
            let a = read3(
                host.forward_cached(&input, ca, &steer_only, LogitsFor::LastPosition)
                    .unwrap()
                    .logits,
            );
            let b = read3(
                burn.forward_cached(&input, cb, &steer_only, LogitsFor::LastPosition)
                    .unwrap()
                    .logits,
            );
            assert!(max_diff(&a, &b) < 1e-4);
            let next = a
                .iter()
                .enumerate()
                .fold(0, |best, (i, v)| if *v > a[best] { i } else { best });
            input = vec![vec![next as u32]];
        }
        assert_eq!(caches[0].len(), 9); // the prompt and three single tokens
        // Capture that stops early (stop_at_layer: a block's input needs only the blocks
        // before it) sees what a full forward sees.
        let a = host.capture(&batch, &[HookPoint::ResidPre(1)]).unwrap();
        let b = burn.capture(&batch, &[HookPoint::ResidPre(1)]).unwrap();
        assert!(max_diff(&read3(a[0].1.clone()), &read3(b[0].1.clone())) < 1e-4);
        let full = host
            .forward(
                &batch,
                &Hooks::capture([HookPoint::ResidPre(1)]),
                LogitsFor::LastPosition,
            )
            .unwrap();
        let want = read3(full.activation(HookPoint::ResidPre(1)).unwrap().clone());
        assert_eq!(read3(a[0].1.clone()), want);
    }
}

#[test]
fn burn_ops_forward_on_the_cpu_matches_reference() {
    let weights = Gpt2Weights::random(&Gpt2Config::new(300, 40, 24, 3, 1), 9);
    let model = Model::from(Gpt2::new(&weights, &saeplay::backend::cpu_device()).unwrap());
    assert_matches_reference(&weights, &model.burn_forward_only(), &ids(40, 2));
}

/// TransformerLens's `start_at_layer`, on the host forward and on burn's ops.
#[test]
fn forward_from_a_block_equals_the_full_forward() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    assert!(loaded.model.has_host_forward());
    common::assert_forward_from_equals_the_full_forward(&loaded.model, "GPT-2, host forward");
    let burn = loaded.model.burn_forward_only();
    common::assert_forward_from_equals_the_full_forward(&burn, "GPT-2, burn's ops");
}
