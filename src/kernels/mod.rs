//! The CPU path's kernels on plain `f32` buffers, below both `model` and `sae` (as ggml sits below
//! llama.cpp's model code): matrix products through the `gemm` crate (AVX2/FMA or NEON natively,
//! over every core; wasm SIMD128 in the page), the small row-wise steps of a transformer (layer
//! norm, GELU, softmax) as loops the compiler vectorises, causal attention with its host
//! key/value cache, and matrices kept in a GGUF's encoding. At the built-in model's sizes a
//! forward is ~200 small operations: done as burn tensor ops, each paid dispatch, allocation and
//! copies that cost more than its arithmetic (see docs/speed.md).

mod attention;
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod lanes;
mod matmul;
mod packed;
#[cfg(any(target_arch = "wasm32", test))]
mod panel;
mod parallel;
pub mod quantised;
mod rows;

pub(crate) use attention::{HostKv, QkvLayout, causal_attention};
pub(crate) use matmul::{MatRef, linear, matmul, matmul_one_thread, repeat_rows, transpose};
pub(crate) use packed::{PACKED_ROWS, PackedWeight};
pub(crate) use parallel::for_each_chunk;
pub use quantised::QuantisedMatrix;
pub(crate) use rows::{
    add_into, fast_exp, gelu_erf, gelu_tanh, logit_rows, normalize_rows, relu, scale_shift_rows,
    sum_squares,
};
