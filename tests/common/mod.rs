#![allow(dead_code)]
pub mod reference;
pub mod sae_reference;

use saeplay::model::files::{LoadedModel, ModelFiles};
use saeplay::model::fixtures::{TinySpec, tiny_checkpoint};

pub fn cpu_model(spec: &TinySpec) -> (ModelFiles, LoadedModel) {
    let files = tiny_checkpoint(spec);
    let loaded = files
        .parse()
        .unwrap()
        .upload(&saeplay::backend::cpu_device())
        .unwrap();
    (files, loaded)
}
