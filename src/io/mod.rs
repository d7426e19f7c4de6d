//! File formats shared by every layer: safetensors tensors, llama.cpp's GGUF and zip archives.

pub mod gguf;
pub mod tensors;
pub mod zip;
