//! File formats shared by every layer: safetensors tensors and zip archives.

pub mod tensors;
pub mod zip;
