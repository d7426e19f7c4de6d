//! The shared base of the dense host steps (Standard, JumpReLU and Gated, in their
//! `arch::*` files): every latent can be active, so the activations are dense `[batch, d_sae]`
//! matrices and the work is `gemm` products over them.

use super::{
    HostSae, HostStepFigures, ROW_BLOCK, axpy, column_counts_and_sums, dot, total_variance,
    vector_in_mut,
};
use crate::kernels::{MatRef, for_each_chunk, matmul, repeat_rows};

impl HostSae {
    /// Set the gradient of the `[d_sae]` vector `name`.
    pub(crate) fn set_vector_grad(&mut self, name: &str, grad: &[f32]) {
        vector_in_mut(&mut self.vectors, name)
            .grad
            .copy_from_slice(grad);
    }

    /// `centred @ W_enc` (plus a per-latent bias), `[rows, d_sae]`.
    pub(crate) fn encode(&self, centred: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        per_latent_product(centred, &self.w_enc_t.values, self.d_in, 1.0, bias)
    }

    /// `acts @ W_dec + b_dec - x`.
    pub(crate) fn decode_error(&self, acts: &[f32], x: &[f32]) -> Vec<f32> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = x.len() / d_in;
        let mut error = Vec::with_capacity(rows * d_in);
        for row in x.chunks_exact(d_in) {
            error.extend(self.b_dec.values.iter().zip(row).map(|(b, v)| b - v));
        }
        matmul(
            &mut error,
            MatRef::rows(acts, rows, d_sae),
            MatRef::rows(&self.w_dec.values, d_sae, d_in),
            1.0,
            true,
        );
        error
    }

    fn decoder_norms(&self) -> Vec<f32> {
        self.w_dec
            .values
            .chunks_exact(self.d_in)
            .map(|row| dot(row, row).sqrt())
            .collect()
    }

    /// The L1 penalty weighted by decoder-row norms, `sum_i a_i ||W_dec[i]||` averaged over
    /// rows, on `acts` (Standard's features, Gated's `ReLU(pi_gate)`); and how many rows each
    /// latent is active in.
    pub(crate) fn norm_weighted_l1(&self, acts: &[f32], lambda: f64) -> (Vec<f32>, NormWeightedL1) {
        let rows = acts.len() / self.d_sae;
        let norms = self.decoder_norms();
        let (fired, sums) = column_counts_and_sums(acts, self.d_sae);
        let value = weighted_sum(&sums, &norms) / rows as f64;
        let scale = (lambda / rows as f64) as f32;
        (
            fired,
            NormWeightedL1 {
                norms,
                sums,
                value,
                scale,
            },
        )
    }

    /// `W_dec`'s gradient: `scale * acts^T @ error`, plus an L1 penalty's
    /// `lambda / rows * sum_r a_ri * W_dec[i] / ||W_dec[i]||`.
    pub(crate) fn decoder_grad(
        &mut self,
        acts: &[f32],
        error: &[f32],
        scale: f32,
        l1: Option<&NormWeightedL1>,
    ) {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = error.len() / d_in;
        matmul(
            &mut self.w_dec.grad,
            MatRef::transposed(acts, d_sae, rows),
            MatRef::rows(error, rows, d_in),
            scale,
            false,
        );
        if let Some(l1) = l1 {
            for (i, grad) in self.w_dec.grad.chunks_exact_mut(d_in).enumerate() {
                let row = &self.w_dec.values[i * d_in..(i + 1) * d_in];
                axpy(grad, l1.scale * l1.sums[i] / l1.norms[i], row);
            }
        }
    }

    /// `scale * error @ W_dec^T` `[rows, d_sae]`, plus `per_latent` in every row.
    pub(crate) fn back_through_decoder(
        &self,
        error: &[f32],
        scale: f32,
        per_latent: Option<&[f32]>,
    ) -> Vec<f32> {
        per_latent_product(error, &self.w_dec.values, self.d_in, scale, per_latent)
    }

    /// `W_enc`'s gradient from the encoder product's, `d_product^T @ centred`; returns
    /// `d_product` summed over rows (a bias's gradient, and what `b_dec`'s needs).
    pub(crate) fn encoder_grad(&mut self, d_product: &[f32], centred: &[f32]) -> Vec<f32> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = centred.len() / d_in;
        matmul(
            &mut self.w_enc_t.grad,
            MatRef::transposed(d_product, d_sae, rows),
            MatRef::rows(centred, rows, d_in),
            1.0,
            false,
        );
        column_counts_and_sums(d_product, d_sae).1
    }
}

/// `scale * a @ M^T` for `a` `[rows, d_in]` and a per-latent matrix `M` `[d_sae, d_in]`
/// (`W_enc` transposed, `W_dec`), plus `row` added to every row of the `[rows, d_sae]` result.
fn per_latent_product(
    a: &[f32],
    matrix: &[f32],
    d_in: usize,
    scale: f32,
    row: Option<&[f32]>,
) -> Vec<f32> {
    let (rows, d_sae) = (a.len() / d_in, matrix.len() / d_in);
    let mut out = match row {
        Some(row) => repeat_rows(row, rows),
        None => vec![0.0; rows * d_sae],
    };
    matmul(
        &mut out,
        MatRef::rows(a, rows, d_in),
        MatRef::transposed(matrix, d_in, d_sae),
        scale,
        row.is_some(),
    );
    out
}

/// The decoder-norm-weighted L1 penalty of one step (see `HostSae::norm_weighted_l1`).
pub(crate) struct NormWeightedL1 {
    norms: Vec<f32>,
    /// Each latent's activations summed over rows.
    sums: Vec<f32>,
    pub(crate) value: f64,
    /// `lambda / rows`.
    scale: f32,
}

impl NormWeightedL1 {
    /// Its gradient with respect to each activation, the same in every row:
    /// `lambda ||W_dec[i]|| / rows`.
    pub(crate) fn penalty(&self) -> Vec<f32> {
        self.norms.iter().map(|n| self.scale * n).collect()
    }
}

/// A dense step's figures: the loss and its terms, how often each latent fired, and the
/// reconstruction's and the batch's squared error.
pub(crate) fn dense_figures(
    loss: f64,
    terms: Vec<(&'static str, f32)>,
    fired: Vec<f32>,
    sse: f64,
    x: &[f32],
    d_in: usize,
) -> HostStepFigures {
    HostStepFigures {
        loss: loss as f32,
        terms,
        l0_sum: fired.iter().sum(),
        fired,
        sse: sse as f32,
        sst: total_variance(x, x.len() / d_in, d_in) as f32,
        smallest: 1e30,
    }
}

/// Zero `values` wherever `keep(reference)` is false (same `[rows, width]` shape).
pub(crate) fn mask_where(
    values: &mut [f32],
    reference: &[f32],
    width: usize,
    keep: impl Fn(f32) -> bool + Sync,
) {
    for_each_chunk(values, ROW_BLOCK * width, |block, part| {
        let first = block * ROW_BLOCK * width;
        // A select rather than a branch, so the compiler makes it vector code.
        for (v, &r) in part.iter_mut().zip(&reference[first..]) {
            *v = if keep(r) { *v } else { 0.0 };
        }
    });
}

/// `sum_i a_i b_i` in f64.
fn weighted_sum(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

/// Per-latent sums over the rows of `[rows, width]` `values`: `add(row, sums)` per row.
pub(crate) fn per_latent(
    values: &[f32],
    width: usize,
    add: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    per_latent_rows(values, width, |_, row, sums| add(row, sums))
}

/// [`per_latent`] with the row's index.
pub(crate) fn per_latent_rows(
    values: &[f32],
    width: usize,
    add: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut sums = vec![0.0f32; width];
    for (r, row) in values.chunks_exact(width).enumerate() {
        add(r, row, &mut sums);
    }
    sums
}
