
pub mod llama_reference;
pub mod reference;
pub mod sae_reference;
pub mod smollm2;

use saeplay::model::files::{HfFiles, LoadedModel};
use saeplay::model::fixtures::{TinySpec, tiny_checkpoint};

pub fn cpu_model(spec: &TinySpec) -> (HfFiles, LoadedModel) {
    let files = tiny_checkpoint(spec);
    let loaded = files
        .parse()
        .unwrap()
        .upload(&saeplay::backend::cpu_device())
        .unwrap();
    (files, loaded)
}

/// The native wgpu device (Mesa lavapipe on machines without a GPU), or `None` when
/// `SAEPLAY_SKIP_WGPU` is set, after saying that `what` is skipped.
pub fn wgpu_device_unless_skipped(what: &str) -> Option<burn::tensor::Device> {
    if std::env::var_os("SAEPLAY_SKIP_WGPU").is_some() {
        eprintln!("SAEPLAY_SKIP_WGPU is set: skipping {what}");
        return None;
    }
    Some(
        saeplay::backend::native_device(saeplay::backend::BackendKind::Wgpu)
            .expect("a wgpu device (install Mesa's Vulkan driver: scripts/setup.sh)"),
    )
}

/// `Model::forward_from` (TransformerLens's `start_at_layer`) against the full forward on the
/// same tokens: started from the captured residual entering each block (and the final norm's
/// input), with patches and captures in the blocks it runs, it gives the same logits and
/// activations; hooks it never reaches, a wrong width and a block past the end are refused.
pub fn assert_forward_from_equals_the_full_forward(model: &saeplay::model::Model, what: &str) {
    use saeplay::backend::{block_on, float_tensor, read_f32};
    use saeplay::error::SaeplayError;
    use saeplay::model::{HookContext, HookPoint, Hooks, LogitsFor, PatchOp};
    let dims = model.dims().clone();
    let n = dims.n_layers;
    let vocab = dims.d_vocab as u32;
    let batch: Vec<Vec<u32>> = (0..2u32)
        .map(|row| (0..9u32).map(|i| (i * 31 + row * 7 + 3) % vocab).collect())
        .collect();
    let read = |t: burn::tensor::Tensor<3>| block_on(read_f32(t)).unwrap();
    let max_diff = largest_difference;
    // The residual entering each block, and the final norm's input.
    let entries: Vec<HookPoint> = (0..n)
        .map(HookPoint::ResidPre)
        .chain([HookPoint::ResidPost(n - 1)])
        .collect();
    let clean = model
        .forward(
            &batch,
            &Hooks::capture(entries.clone()),
            LogitsFor::AllPositions,
        )
        .unwrap();
    let clean_logits = read(clean.logits.clone());
    for (layer, entry) in entries.iter().enumerate() {
        let resid = clean.activation(*entry).unwrap().clone();
        // Patches in the block it starts at and after; the same on the full forward.
        let mut hooks = Hooks::capture([HookPoint::LnFinalNormalized]);
        if layer < n {
            hooks = hooks
                .with_patch(
                    HookPoint::ResidPre(layer),
                    PatchOp::Map(std::sync::Arc::new(
                        |x: burn::tensor::Tensor<3>, _: HookContext| x * 0.75,
                    )),
                )
                .with_patch(
                    HookPoint::MlpPost(layer),
                    PatchOp::Map(std::sync::Arc::new(
                        |x: burn::tensor::Tensor<3>, _: HookContext| x.zeros_like(),
                    )),
                );
            hooks.capture.push(HookPoint::ResidPost(layer));
        }
        let full = model
            .forward(&batch, &hooks, LogitsFor::AllPositions)
            .unwrap();
        let started = model
            .forward_from(layer, resid, &hooks, LogitsFor::AllPositions)
            .unwrap();
        let full_logits = read(full.logits);
        if layer < n {
            assert!(
                max_diff(&full_logits, &clean_logits) > 1e-3,
                "{what}: the patches at block {layer} changed nothing"
            );
        }
        if layer < n {
            // A capture from the block stops after the captured hook's block, with the same value.
            let mut stopping = hooks.clone();
            stopping.capture = vec![HookPoint::ResidPost(layer)];
            let want = model.capture_patched(&batch, &stopping).unwrap();
            let got = model
                .capture_patched_from(layer, clean.activation(*entry).unwrap().clone(), &stopping)
                .unwrap();
            assert_eq!(got.len(), 1);
            let diff = max_diff(&read(want[0].1.clone()), &read(got[0].1.clone()));
            assert!(
                diff < 1e-4,
                "{what}: capture from block {layer} differs by {diff}"
            );
        }
        let diff = max_diff(&full_logits, &read(started.logits));
        assert!(
            diff < 1e-4,
            "{what}: from block {layer}, logits differ by {diff}"
        );
        assert_eq!(full.captured.len(), started.captured.len());
        for ((hook_a, x), (hook_b, y)) in full.captured.into_iter().zip(started.captured) {
            assert_eq!(hook_a, hook_b);
            let diff = max_diff(&read(x), &read(y));
            assert!(
                diff < 1e-4,
                "{what}: from block {layer}, {hook_a} differs by {diff}"
            );
        }
    }

    let resid = clean
        .activation(HookPoint::ResidPre(n - 1))
        .unwrap()
        .clone();
    for hooks in [
        Hooks::capture([HookPoint::Embed]),
        Hooks::capture([HookPoint::ResidPost(n - 2)]),
        Hooks::none().with_patch(
            HookPoint::AttnOut(0),
            PatchOp::Map(std::sync::Arc::new(
                |x: burn::tensor::Tensor<3>, _: HookContext| x,
            )),
        ),
    ] {
        let error = model
            .forward_from(n - 1, resid.clone(), &hooks, LogitsFor::AllPositions)
            .err()
            .expect("a hook before the start is refused");
        assert!(
            error.to_string().contains("comes before block"),
            "{what}: {error}"
        );
    }
    let device = model.device();
    let narrow = float_tensor(vec![0.0; 2 * 9 * 3], [2, 9, 3], device);
    assert!(matches!(
        model.forward_from(0, narrow, &Hooks::none(), LogitsFor::AllPositions),
        Err(SaeplayError::PatchShape { .. })
    ));
    let error = model
        .forward_from(n + 1, resid, &Hooks::none(), LogitsFor::AllPositions)
        .err()
        .expect("a block past the end is refused");
    assert!(
        error.to_string().contains("cannot start at block"),
        "{what}: {error}"
    );
}

/// The largest absolute difference between two equally long lists of values.
pub fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}
