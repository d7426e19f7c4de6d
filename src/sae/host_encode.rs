//! Encoding on host buffers for the CPU path's scans: the encoder product through `gemm` (wasm
//! SIMD128 in the page) and each architecture's activation in a loop, straight into the
//! `[n, d_sae]` activations a scan keeps. As burn ops the same encode paid a product on
//! ndarray's scalar kernel in wasm, a mask tensor and three copies of `[n, d_sae]`.

use burn::tensor::Tensor;

use super::arch::{B_DEC, B_ENC, B_GATE, B_MAG, R_MAG, THRESHOLD, W_ENC, param};
use super::{Architecture, Sae};
use crate::backend::{is_host_device, read_f32};
use crate::error::Result;
use crate::kernels::{MatRef, for_each_chunk, matmul, repeat_rows};
use crate::sae::select::host_topk;

impl Sae {
    /// The feature activations of `x` `[n, d_in]` (the model's activations) as a row-major
    /// host buffer `[n, d_sae]`: [`Sae::encode_async`]'s values, read back.
    pub async fn encode_to_host(&self, x: Tensor<2>) -> Result<Vec<f32>> {
        if !is_host_device(&self.device) {
            return read_f32(self.encode_async(x).await?).await;
        }
        let (x, _) = self.normalize(x);
        let [n, d_in] = x.dims();
        let d_sae = self.config.d_sae;
        let read = |name| read_f32(param(&self.params, name));
        let mut centred = read_f32(x).await?;
        let b_dec = read(B_DEC).await?;
        for row in centred.chunks_exact_mut(d_in) {
            row.iter_mut().zip(&b_dec).for_each(|(v, b)| *v -= b);
        }
        let w_enc = read(W_ENC).await?;
        let gated = matches!(self.config.architecture, Architecture::Gated);
        let mut pre = if gated {
            vec![0.0; n * d_sae]
        } else {
            repeat_rows(&read(B_ENC).await?, n)
        };
        matmul(
            &mut pre,
            MatRef::rows(&centred, n, d_in),
            MatRef::rows(&w_enc, d_in, d_sae),
            1.0,
            !gated,
        );
        let chunk = ROWS_PER_TASK * d_sae;
        match self.config.architecture {
            Architecture::Standard => {
                for_each_chunk(&mut pre, chunk, |_, part| {
                    part.iter_mut().for_each(|v| *v = v.max(0.0))
                });
                Ok(pre)
            }
            Architecture::TopK { k } => {
                let (chosen, values) = host_topk(&pre, n, d_sae, k, None);
                let k = chosen.len().checked_div(n).unwrap_or(0);
                pre.fill(0.0);
                for (r, row) in pre.chunks_exact_mut(d_sae).enumerate() {
                    for j in r * k..(r + 1) * k {
                        row[chosen[j] as usize] = values[j].max(0.0);
                    }
                }
                Ok(pre)
            }
            Architecture::JumpRelu
            | Architecture::BatchTopK { .. }
            | Architecture::MatryoshkaBatchTopK { .. } => {
                let threshold = read(THRESHOLD).await?;
                for_each_chunk(&mut pre, chunk, |_, part| {
                    for row in part.chunks_exact_mut(d_sae) {
                        for (v, &t) in row.iter_mut().zip(&threshold) {
                            *v = if *v > t { v.max(0.0) } else { 0.0 };
                        }
                    }
                });
                Ok(pre)
            }
            Architecture::Gated => {
                let (b_gate, b_mag) = (read(B_GATE).await?, read(B_MAG).await?);
                let scale: Vec<f32> = read(R_MAG).await?.iter().map(|r| r.exp()).collect();
                for_each_chunk(&mut pre, chunk, |_, part| {
                    for row in part.chunks_exact_mut(d_sae) {
                        for (((v, &g), &e), &m) in
                            row.iter_mut().zip(&b_gate).zip(&scale).zip(&b_mag)
                        {
                            *v = if *v + g > 0.0 {
                                (*v * e + m).max(0.0)
                            } else {
                                0.0
                            };
                        }
                    }
                });
                Ok(pre)
            }
        }
    }
}

/// Rows per task in the element-wise loops.
const ROWS_PER_TASK: usize = 64;
