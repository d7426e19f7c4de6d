//! Encoding on host buffers for the CPU path's scans: the encoder product through `gemm` (wasm
//! SIMD128 in the page) and each architecture's activation (`arch::*`) in a loop, straight into the
//! `[n, d_sae]` activations a scan keeps. As burn ops the same encode paid a product on
//! ndarray's scalar kernel in wasm, a mask tensor and three copies of `[n, d_sae]`.

use burn::tensor::Tensor;

use super::Sae;
use super::arch::{B_DEC, HostVectors, W_ENC, param};
use crate::backend::{is_host_device, read_f32};
use crate::error::Result;
use crate::kernels::{MatRef, matmul, repeat_rows};

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
        let behaviour = self.config.architecture.behaviour();
        let mut vectors = HostVectors::new();
        for &name in behaviour.vectors() {
            vectors.insert(name, read(name).await?);
        }
        // `b_enc` joins the product when it is the encoder's only bias (not Gated's two paths).
        let bias = match behaviour.encoder_biases() {
            [(bias, None)] => Some(&vectors[bias]),
            _ => None,
        };
        let mut pre = match bias {
            Some(bias) => repeat_rows(bias, n),
            None => vec![0.0; n * d_sae],
        };
        matmul(
            &mut pre,
            MatRef::rows(&centred, n, d_in),
            MatRef::rows(&w_enc, d_in, d_sae),
            1.0,
            bias.is_some(),
        );
        behaviour.activate_host_rows(&mut pre, d_sae, &vectors);
        Ok(pre)
    }
}
