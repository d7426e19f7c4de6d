#![allow(dead_code)]
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
