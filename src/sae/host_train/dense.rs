//! Standard, JumpReLU and Gated steps on host buffers (`arch::standard`, `arch::jumprelu`,
//! `arch::gated`): every latent can be active, so the activations are dense `[batch, d_sae]`
//! matrices and the work is `gemm` products over them.

use super::{
    HostSae, HostStep, HostStepError, HostStepFigures, ROW_BLOCK, axpy, column_counts_and_sums,
    dot, sum_of_squares, total_variance, vector_in_mut,
};
use crate::kernels::{MatRef, for_each_chunk, matmul, repeat_rows};
use crate::sae::arch::{B_ENC, B_GATE, B_MAG, R_MAG, THRESHOLD};

impl HostSae {
    /// Standard: `f = ReLU(pre)`; MSE plus the L1 penalty weighted by decoder-row norms.
    pub(super) fn standard_step(
        &mut self,
        x: &[f32],
        s: &HostStep,
    ) -> Result<HostStepFigures, HostStepError> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = x.len() / d_in;
        let lambda = s.sparsity_coefficient;
        let centred = self.centred(x);
        let mut acts = self.encode(&centred, Some(&self.vector(B_ENC).values));
        for_each_chunk(&mut acts, ROW_BLOCK * d_sae, |_, part| {
            part.iter_mut().for_each(|v| *v = v.max(0.0))
        });
        let error = self.decode_error(&acts, x);
        let sse = sum_of_squares(&error);
        let mse = sse / rows as f64;
        let (fired, l1) = self.norm_weighted_l1(&acts, lambda);
        let loss = mse + lambda * l1.value;
        if !loss.is_finite() {
            return Err(HostStepError::Loss);
        }

        // d(loss)/d(x_hat) = 2 error / rows.
        let two_over_rows = 2.0 / rows as f32;
        self.decoder_grad(&acts, &error, two_over_rows, Some(&l1));
        let mut d_pre = self.back_through_decoder(&error, two_over_rows, Some(&l1.penalty()));
        // Through the ReLU: only where it was open.
        mask_where(&mut d_pre, &acts, d_sae, |f| f > 0.0);
        let d_pre_sums = self.encoder_grad(&d_pre, &centred);
        self.set_vector_grad(B_ENC, &d_pre_sums);
        self.b_dec_grad(&error, two_over_rows, &d_pre_sums);
        Ok(dense_figures(
            loss,
            vec![("mse_loss", mse as f32), ("l1_loss", l1.value as f32)],
            fired,
            sse,
            x,
            d_in,
        ))
    }

    /// JumpReLU: `f = ReLU(pre) * 1[pre > theta]`; MSE plus an L0 penalty. The threshold learns
    /// through the straight-through pseudo-derivatives of `arch::jumprelu` (a rectangle kernel
    /// `K` of width `bandwidth` around it): `d f / d theta = -(theta / eps) K` and
    /// `d L0 / d theta = -K / eps`.
    pub(super) fn jumprelu_step(
        &mut self,
        x: &[f32],
        s: &HostStep,
    ) -> Result<HostStepFigures, HostStepError> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = x.len() / d_in;
        let (lambda, eps) = (s.sparsity_coefficient, s.bandwidth as f32);
        let centred = self.centred(x);
        let pre = self.encode(&centred, Some(&self.vector(B_ENC).values));
        let theta = &self.vector(THRESHOLD).values.clone();
        let mut acts = pre.clone();
        for_each_chunk(&mut acts, ROW_BLOCK * d_sae, |_, part| {
            for row in part.chunks_exact_mut(d_sae) {
                for (v, &t) in row.iter_mut().zip(theta) {
                    *v = if *v > t { v.max(0.0) } else { 0.0 };
                }
            }
        });
        let error = self.decode_error(&acts, x);
        let sse = sum_of_squares(&error);
        let mse = sse / rows as f64;
        let above = per_latent(&pre, d_sae, |row, sums| {
            for ((s, &p), &t) in sums.iter_mut().zip(row).zip(theta) {
                *s += f32::from(u8::from(p > t));
            }
        });
        let l0 = above.iter().map(|&c| f64::from(c)).sum::<f64>() / rows as f64;
        let loss = mse + lambda * l0;
        if !loss.is_finite() {
            return Err(HostStepError::Loss);
        }

        let two_over_rows = 2.0 / rows as f32;
        self.decoder_grad(&acts, &error, two_over_rows, None);
        let mut d_acts = self.back_through_decoder(&error, two_over_rows, None);
        // The threshold: sum_r d_acts * -(theta / eps) K, plus lambda / rows * sum_r -K / eps.
        let in_window = |p: f32, t: f32| ((p - t) / eps).abs() < 0.5;
        let window_sums = per_latent(&pre, d_sae, |row, sums| {
            for ((s, &p), &t) in sums.iter_mut().zip(row).zip(theta) {
                *s += f32::from(u8::from(in_window(p, t)));
            }
        });
        let d_acts_ref = &d_acts;
        let weighted_window = per_latent_rows(&pre, d_sae, |r, row, sums| {
            let d_row = &d_acts_ref[r * d_sae..(r + 1) * d_sae];
            for (((s, &p), &t), &d) in sums.iter_mut().zip(row).zip(theta).zip(d_row) {
                *s += if in_window(p, t) { d } else { 0.0 };
            }
        });
        let l0_scale = (lambda / rows as f64) as f32;
        let theta_grad: Vec<f32> = (0..d_sae)
            .map(|i| -(theta[i] / eps) * weighted_window[i] - l0_scale * window_sums[i] / eps)
            .collect();
        // Into the pre-activation where the output was open.
        mask_where(&mut d_acts, &acts, d_sae, |f| f > 0.0);
        let d_pre_sums = self.encoder_grad(&d_acts, &centred);
        self.set_vector_grad(THRESHOLD, &theta_grad);
        self.set_vector_grad(B_ENC, &d_pre_sums);
        self.b_dec_grad(&error, two_over_rows, &d_pre_sums);
        let (fired, _) = column_counts_and_sums(&acts, d_sae);
        Ok(dense_figures(
            loss,
            vec![("mse_loss", mse as f32), ("l0_loss", l0 as f32)],
            fired,
            sse,
            x,
            d_in,
        ))
    }

    /// Gated: a gate path `pi_gate = c @ W_enc + b_gate` decides which latents are active, a
    /// magnitude path `pi_mag = (c @ W_enc) exp(r_mag) + b_mag` how strongly; MSE, the L1
    /// penalty on `ReLU(pi_gate)` weighted by decoder norms, and the gate's own reconstruction
    /// through the frozen decoder.
    pub(super) fn gated_step(
        &mut self,
        x: &[f32],
        s: &HostStep,
    ) -> Result<HostStepFigures, HostStepError> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = x.len() / d_in;
        let lambda = s.sparsity_coefficient;
        let centred = self.centred(x);
        // One encoder product serves both paths.
        let product = self.encode(&centred, None);
        let b_gate = &self.vector(B_GATE).values;
        let b_mag = &self.vector(B_MAG).values;
        let scale: Vec<f32> = self.vector(R_MAG).values.iter().map(|r| r.exp()).collect();
        let mut gate = product.clone();
        let mut acts = product.clone();
        for_each_chunk(&mut gate, ROW_BLOCK * d_sae, |_, part| {
            for row in part.chunks_exact_mut(d_sae) {
                row.iter_mut().zip(b_gate).for_each(|(v, b)| *v += b);
            }
        });
        let gate_ref = &gate;
        for_each_chunk(&mut acts, ROW_BLOCK * d_sae, |block, part| {
            let first = block * ROW_BLOCK * d_sae;
            for (j, row) in part.chunks_exact_mut(d_sae).enumerate() {
                let gate_row = &gate_ref[first + j * d_sae..first + (j + 1) * d_sae];
                for (((v, &g), &e), &b) in row.iter_mut().zip(gate_row).zip(&scale).zip(b_mag) {
                    *v = if g > 0.0 { (*v * e + b).max(0.0) } else { 0.0 };
                }
            }
        });
        let error = self.decode_error(&acts, x);
        let sse = sum_of_squares(&error);
        let mse = sse / rows as f64;
        // ReLU(pi_gate), in place.
        for_each_chunk(&mut gate, ROW_BLOCK * d_sae, |_, part| {
            part.iter_mut().for_each(|v| *v = v.max(0.0))
        });
        let gate_relu = gate;
        let aux_error = self.decode_error(&gate_relu, x);
        let aux = sum_of_squares(&aux_error) / rows as f64;
        let (_, l1) = self.norm_weighted_l1(&gate_relu, lambda);
        let loss = mse + lambda * l1.value + aux;
        if !loss.is_finite() {
            return Err(HostStepError::Loss);
        }

        let two_over_rows = 2.0 / rows as f32;
        // The auxiliary term reaches neither `W_dec` nor `b_dec` (both frozen there).
        self.decoder_grad(&acts, &error, two_over_rows, Some(&l1));
        let mut d_mag = self.back_through_decoder(&error, two_over_rows, None);
        let mut d_gate = self.back_through_decoder(&aux_error, two_over_rows, Some(&l1.penalty()));
        mask_where(&mut d_mag, &acts, d_sae, |f| f > 0.0);
        mask_where(&mut d_gate, &gate_relu, d_sae, |g| g > 0.0);
        let d_mag_ref = &d_mag;
        let r_mag_grad = per_latent_rows(&product, d_sae, |r, row, sums| {
            let d_row = &d_mag_ref[r * d_sae..(r + 1) * d_sae];
            for (((s, &p), &d), &e) in sums.iter_mut().zip(row).zip(d_row).zip(&scale) {
                *s += d * p * e;
            }
        });
        let (_, b_mag_grad) = column_counts_and_sums(&d_mag, d_sae);
        let (_, b_gate_grad) = column_counts_and_sums(&d_gate, d_sae);
        // d(product) = d_gate + d_mag * exp(r_mag), into `d_gate`.
        for_each_chunk(&mut d_gate, ROW_BLOCK * d_sae, |block, part| {
            let first = block * ROW_BLOCK * d_sae;
            for (j, row) in part.chunks_exact_mut(d_sae).enumerate() {
                let d_row = &d_mag_ref[first + j * d_sae..first + (j + 1) * d_sae];
                for ((v, &d), &e) in row.iter_mut().zip(d_row).zip(&scale) {
                    *v += d * e;
                }
            }
        });
        let d_product_sums = self.encoder_grad(&d_gate, &centred);
        for (name, grad) in [
            (B_GATE, b_gate_grad),
            (R_MAG, r_mag_grad),
            (B_MAG, b_mag_grad),
        ] {
            self.set_vector_grad(name, &grad);
        }
        self.b_dec_grad(&error, two_over_rows, &d_product_sums);
        let (fired, _) = column_counts_and_sums(&acts, d_sae);
        Ok(dense_figures(
            loss,
            vec![
                ("mse_loss", mse as f32),
                ("l1_loss", l1.value as f32),
                ("auxiliary_reconstruction_loss", aux as f32),
            ],
            fired,
            sse,
            x,
            d_in,
        ))
    }

    /// Set the gradient of the `[d_sae]` vector `name`.
    fn set_vector_grad(&mut self, name: &str, grad: &[f32]) {
        vector_in_mut(&mut self.vectors, name)
            .grad
            .copy_from_slice(grad);
    }

    /// `centred @ W_enc` (plus a per-latent bias), `[rows, d_sae]`.
    fn encode(&self, centred: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        per_latent_product(centred, &self.w_enc_t.values, self.d_in, 1.0, bias)
    }

    /// `acts @ W_dec + b_dec - x`.
    fn decode_error(&self, acts: &[f32], x: &[f32]) -> Vec<f32> {
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
    fn norm_weighted_l1(&self, acts: &[f32], lambda: f64) -> (Vec<f32>, NormWeightedL1) {
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
    fn decoder_grad(
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
    fn back_through_decoder(
        &self,
        error: &[f32],
        scale: f32,
        per_latent: Option<&[f32]>,
    ) -> Vec<f32> {
        per_latent_product(error, &self.w_dec.values, self.d_in, scale, per_latent)
    }

    /// `W_enc`'s gradient from the encoder product's, `d_product^T @ centred`; returns
    /// `d_product` summed over rows (a bias's gradient, and what `b_dec`'s needs).
    fn encoder_grad(&mut self, d_product: &[f32], centred: &[f32]) -> Vec<f32> {
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
struct NormWeightedL1 {
    norms: Vec<f32>,
    /// Each latent's activations summed over rows.
    sums: Vec<f32>,
    value: f64,
    /// `lambda / rows`.
    scale: f32,
}

impl NormWeightedL1 {
    /// Its gradient with respect to each activation, the same in every row:
    /// `lambda ||W_dec[i]|| / rows`.
    fn penalty(&self) -> Vec<f32> {
        self.norms.iter().map(|n| self.scale * n).collect()
    }
}

/// A dense step's figures: the loss and its terms, how often each latent fired, and the
/// reconstruction's and the batch's squared error.
fn dense_figures(
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
fn mask_where(
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
fn per_latent(values: &[f32], width: usize, add: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    per_latent_rows(values, width, |_, row, sums| add(row, sums))
}

/// [`per_latent`] with the row's index.
fn per_latent_rows(
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
