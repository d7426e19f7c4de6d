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
