//! The step on host buffers that TopK, BatchTopK and Matryoshka BatchTopK (`arch::topk`,
//! `arch::batchtopk`, `arch::matryoshka`) share, as SAELens's BatchTopK and Matryoshka
//! trainers build on TopK's: each brings its [`SparseRule`] (which latents a batch keeps, nested
//! prefix widths, whether it keeps a running threshold), and the choice itself is in its file.
//!
//! The encoder product is computed a block of rows at a time and each block's candidates are
//! chosen while it is in cache ([`HostSae::encode_and_offer`]), so the `[batch, d_sae]` matrix
//! never exists. Everything after the choice (decode, AuxK, the nested prefixes' errors, the
//! gradients) touches only the chosen latents.

use super::{
    HostSae, HostStep, HostStepError, HostStepFigures, ROW_BLOCK, axpy, dot, for_each_latent_block,
    map_blocks, sum_of_squares, total_variance, vector_in, vector_in_mut,
};
use crate::kernels::{MatRef, for_each_chunk, matmul_one_thread, repeat_rows};
use crate::sae::arch::B_ENC;
use crate::sae::select::host_topk;

/// Pre-activations per block of rows in `encode_and_offer` (1 MB).
const ENCODE_BLOCK_VALUES: usize = 1 << 18;

/// Chosen latents, row by row (`starts[r]..starts[r + 1]`), with their pre-activations.
#[derive(Default)]
pub(crate) struct Chosen {
    pub latents: Vec<u32>,
    pub values: Vec<f32>,
    pub starts: Vec<usize>,
}

impl Chosen {
    fn rows(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let span = self.starts[r]..self.starts[r + 1];
        (&self.latents[span.clone()], &self.values[span])
    }

    /// The row of every chosen pair.
    fn row_of(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.latents.len());
        for r in 0..self.rows() {
            out.extend(std::iter::repeat_n(
                r as u32,
                self.starts[r + 1] - self.starts[r],
            ));
        }
        out
    }

    /// From `[rows, width]` lists.
    fn from_lists(latents: Vec<u32>, values: Vec<f32>, width: usize) -> Self {
        let rows = latents.len().checked_div(width).unwrap_or(0);
        Self {
            starts: (0..=rows).map(|r| r * width).collect(),
            latents,
            values,
        }
    }
}

/// A top-k architecture's choice of latents: from the centred inputs `[rows, d_in]`, the
/// latents each row keeps, and with `Some((dead, k_aux))` AuxK's top `k_aux` among the dead.
pub(crate) type Choice<'a> =
    &'a dyn Fn(&HostSae, &[f32], Option<(&[f32], usize)>) -> (Chosen, Chosen);

/// What a top-k architecture brings to the shared step.
pub(crate) struct SparseRule<'a> {
    /// Which latents a batch keeps (TopK's each row's k best, BatchTopK's the batch's).
    pub choose: Choice<'a>,
    /// The nested prefix widths whose reconstructions are losses too (Matryoshka); else empty.
    pub nested_widths: &'a [usize],
    /// Whether it keeps a running threshold: the figures then report the smallest value kept.
    pub running_threshold: bool,
}

impl HostSae {
    /// One step of a top-k architecture, by its rule.
    pub(crate) fn sparse_step(
        &mut self,
        x: &[f32],
        rule: &SparseRule,
        s: &HostStep,
    ) -> Result<HostStepFigures, HostStepError> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = x.len() / d_in;

        // Forward: centred inputs, then each row's chosen latents (and AuxK's among the dead).
        let centred = self.centred(x);
        let aux_setting = s.auxk.as_ref().filter(|a| a.dead_count > 0).map(|aux| {
            let k_aux_full = (d_in / 2).max(1);
            let k_aux = k_aux_full.min(aux.dead_count);
            let scale = (aux.dead_count as f64 / k_aux_full as f64).min(1.0);
            (aux, k_aux, scale)
        });
        let aux_request = aux_setting
            .as_ref()
            .map(|(aux, k_aux, _)| (aux.dead, *k_aux));
        let (chosen, aux_chosen) = (rule.choose)(self, &centred, aux_request);

        // The reconstruction's error `x_hat - x`, and each inner prefix's (Matryoshka).
        let inner: Vec<usize> = rule
            .nested_widths
            .iter()
            .copied()
            .filter(|&w| w < d_sae)
            .collect();
        let (error, mut inner_errors) = self.decode_errors(x, &chosen, &inner);
        let mut fired = vec![0.0f32; d_sae];
        let mut l0_sum = 0.0f32;
        let mut smallest = 1e30f32;
        for (&i, &value) in chosen.latents.iter().zip(&chosen.values) {
            if value > 0.0 {
                fired[i as usize] += 1.0;
                l0_sum += 1.0;
                smallest = smallest.min(value);
            }
        }
        let sse = sum_of_squares(&error);
        let mse = sse / rows as f64;
        let sst = total_variance(x, rows, d_in);
        let mut loss = mse;
        let mut terms = vec![("mse_loss", mse as f32)];

        // AuxK: the dead latents' top `d_in / 2` reconstruct the (detached) residual `x - x_hat`.
        let two_over_rows = 2.0 / rows as f32;
        let mut aux_error = Vec::new();
        let mut aux_scale = 0.0f32;
        if let Some((aux, _, scale)) = &aux_setting {
            // recons - residual = recons + error.
            aux_error = error.clone();
            decode_rows_into(&mut aux_error, &aux_chosen, &self.w_dec.values, d_in);
            let value = sum_of_squares(&aux_error) / rows as f64 * scale;
            loss += aux.coefficient * value;
            terms.push(("auxk_loss", value as f32));
            aux_scale = (aux.coefficient * scale) as f32 * two_over_rows;
        }
        if !inner.is_empty() {
            let value: f64 = inner_errors.iter().map(|e| sum_of_squares(e)).sum::<f64>();
            loss += value / rows as f64;
            terms.push(("inner_mse_loss", (value / rows as f64) as f32));
        }
        if !loss.is_finite() {
            return Err(HostStepError::Loss);
        }

        // A latent below inner width `w_j` reaches prefix j's reconstruction and every wider
        // one: its output gradient is the full error plus the inner errors from j on.
        for j in (0..inner_errors.len()).rev() {
            let wider = if j + 1 < inner_errors.len() {
                inner_errors[j + 1].clone()
            } else {
                error.clone()
            };
            inner_errors[j]
                .iter_mut()
                .zip(&wider)
                .for_each(|(a, b)| *a += b);
        }
        let mut segments: Vec<(usize, &[f32])> = inner
            .iter()
            .zip(&inner_errors)
            .map(|(&w, e)| (w, e.as_slice()))
            .collect();
        segments.push((d_sae, &error));
        // `b_dec` is in every prefix's reconstruction.
        let b_dec_out: &[f32] = segments[0].1;

        let mut paths = vec![Path::new(&chosen, segments, two_over_rows)];
        if aux_setting.is_some() {
            paths.push(Path::new(&aux_chosen, vec![(d_sae, &aux_error)], aux_scale));
        }
        self.sparse_backward(&paths, &centred);
        let b_enc_grad = vector_in(&self.vectors, B_ENC).grad.clone();
        self.b_dec_grad(b_dec_out, two_over_rows, &b_enc_grad);
        Ok(HostStepFigures {
            loss: loss as f32,
            terms,
            l0_sum,
            fired,
            sse: sse as f32,
            sst: sst as f32,
            smallest: if rule.running_threshold {
                smallest
            } else {
                1e30
            },
        })
    }

    /// Backward through the chosen latents of every path: a latent's gradients gather the rows
    /// that chose it, so latents split across threads without shared writes.
    fn sparse_backward(&mut self, paths: &[Path], centred: &[f32]) {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let w_dec = &self.w_dec.values;
        let d_values: Vec<Vec<f32>> = paths.iter().map(|p| p.d_values(w_dec, d_in)).collect();
        // Each latent's (path, pair) list, positive pre-activations only (the rest carry no
        // gradient), in row order: a counting sort by latent.
        let mut starts = vec![0u32; d_sae + 1];
        for path in paths {
            for (pair, &i) in path.latents.iter().enumerate() {
                if path.values[pair] > 0.0 {
                    starts[i as usize + 1] += 1;
                }
            }
        }
        for i in 0..d_sae {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut entries = vec![(0u32, 0u32); starts[d_sae] as usize];
        for (p, path) in paths.iter().enumerate() {
            for (pair, &i) in path.latents.iter().enumerate() {
                if path.values[pair] > 0.0 {
                    entries[next[i as usize] as usize] = (p as u32, pair as u32);
                    next[i as usize] += 1;
                }
            }
        }
        let b_enc = vector_in_mut(&mut self.vectors, B_ENC);
        for_each_latent_block(
            &mut self.w_dec.grad,
            &mut self.w_enc_t.grad,
            &mut b_enc.grad,
            d_in,
            |i, dec_grad, enc_grad, b_grad| {
                dec_grad.fill(0.0);
                enc_grad.fill(0.0);
                *b_grad = 0.0;
                for &(p, pair) in &entries[starts[i] as usize..starts[i + 1] as usize] {
                    let (path, pair) = (&paths[p as usize], pair as usize);
                    let r = path.row_of[pair] as usize;
                    let d_value = d_values[p as usize][pair];
                    axpy(
                        dec_grad,
                        path.values[pair] * path.scale,
                        path.d_out(r, i, d_in),
                    );
                    axpy(enc_grad, d_value, &centred[r * d_in..(r + 1) * d_in]);
                    *b_grad += d_value;
                }
            },
        );
    }

    /// `x_hat - x` for the chosen latents, and with `inner` widths each prefix's
    /// `b_dec + f[:, :w] @ W_dec[:w] - x`.
    fn decode_errors(
        &self,
        x: &[f32],
        chosen: &Chosen,
        inner: &[usize],
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let d_in = self.d_in;
        let rows = x.len() / d_in;
        let (w_dec, b_dec) = (&self.w_dec.values, &self.b_dec.values);
        let mut error = vec![0.0f32; rows * d_in];
        for_each_chunk(&mut error, ROW_BLOCK * d_in, |block, part| {
            for (j, out) in part.chunks_exact_mut(d_in).enumerate() {
                let r = block * ROW_BLOCK + j;
                out.iter_mut()
                    .zip(b_dec)
                    .zip(&x[r * d_in..(r + 1) * d_in])
                    .for_each(|((e, b), v)| *e = b - v);
            }
        });
        let mut inner_errors = Vec::with_capacity(inner.len());
        let mut below = 0;
        for &width in inner {
            decode_rows_into_range(&mut error, chosen, w_dec, d_in, below..width);
            inner_errors.push(error.clone());
            below = width;
        }
        decode_rows_into_range(&mut error, chosen, w_dec, d_in, below..self.d_sae);
        (error, inner_errors)
    }

    /// `pre = centred @ W_enc + b_enc` a block of rows at a time, and each row's `width` best
    /// (and AuxK's top `k_aux` among `dead`) while the block is in cache.
    pub(crate) fn encode_and_offer(
        &self,
        centred: &[f32],
        width: usize,
        aux: Option<(&[f32], usize)>,
    ) -> (Chosen, Chosen) {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = centred.len() / d_in;
        let block = (ENCODE_BLOCK_VALUES / d_sae).max(8);
        let b_enc = &vector_in(&self.vectors, B_ENC).values;
        let blocks = map_blocks(rows.div_ceil(block), |b| {
            let block_rows = block.min(rows - b * block);
            let mut pre = repeat_rows(b_enc, block_rows);
            let first = b * block * d_in;
            matmul_one_thread(
                &mut pre,
                MatRef::rows(&centred[first..first + block_rows * d_in], block_rows, d_in),
                MatRef::transposed(&self.w_enc_t.values, d_in, d_sae),
                1.0,
                true,
            );
            let best = host_topk(&pre, block_rows, d_sae, width, None);
            let aux =
                aux.map(|(dead, k_aux)| host_topk(&pre, block_rows, d_sae, k_aux, Some(dead)));
            (best, aux)
        });
        let mut offer = (Vec::new(), Vec::new());
        let mut aux_offer = (Vec::new(), Vec::new());
        for ((latents, values), aux) in blocks {
            offer.0.extend(latents);
            offer.1.extend(values);
            if let Some((latents, values)) = aux {
                aux_offer.0.extend(latents);
                aux_offer.1.extend(values);
            }
        }
        let aux_width = aux_offer.0.len().checked_div(rows).unwrap_or(0);
        (
            Chosen::from_lists(offer.0, offer.1, width.min(d_sae)),
            if aux.is_some() {
                Chosen::from_lists(aux_offer.0, aux_offer.1, aux_width)
            } else {
                Chosen::default()
            },
        )
    }
}

/// `out[r] += sum ReLU(value) * W_dec[latent]` over row r's chosen latents.
fn decode_rows_into(out: &mut [f32], chosen: &Chosen, w_dec: &[f32], d_in: usize) {
    decode_rows_into_range(out, chosen, w_dec, d_in, 0..usize::MAX);
}

/// [`decode_rows_into`] for the latents in `latents` only.
fn decode_rows_into_range(
    out: &mut [f32],
    chosen: &Chosen,
    w_dec: &[f32],
    d_in: usize,
    latents: std::ops::Range<usize>,
) {
    for_each_chunk(out, ROW_BLOCK * d_in, |block, part| {
        for (j, out) in part.chunks_exact_mut(d_in).enumerate() {
            let (row_latents, values) = chosen.row(block * ROW_BLOCK + j);
            for (&i, &value) in row_latents.iter().zip(values) {
                let i = i as usize;
                if value > 0.0 && latents.contains(&i) {
                    axpy(out, value, &w_dec[i * d_in..(i + 1) * d_in]);
                }
            }
        }
    });
}

/// One way gradients reach chosen latents: the pairs, and the gradient of the loss with respect
/// to each row's decoded output, `scale * d_out`, where `d_out` depends on the latent's range
/// (Matryoshka's prefixes): latent i reads the first segment whose end is above i.
struct Path<'a> {
    latents: &'a [u32],
    /// The chosen latents' pre-activations.
    values: &'a [f32],
    row_of: Vec<u32>,
    segments: Vec<(usize, &'a [f32])>,
    scale: f32,
}

impl<'a> Path<'a> {
    fn new(chosen: &'a Chosen, segments: Vec<(usize, &'a [f32])>, scale: f32) -> Self {
        Self {
            latents: &chosen.latents,
            values: &chosen.values,
            row_of: chosen.row_of(),
            segments,
            scale,
        }
    }

    fn d_out(&self, r: usize, latent: usize, d_in: usize) -> &[f32] {
        let (_, d_out) = self
            .segments
            .iter()
            .find(|(end, _)| latent < *end)
            .expect("the last segment ends at d_sae");
        &d_out[r * d_in..(r + 1) * d_in]
    }

    /// The gradient reaching each chosen pre-activation: `scale * d_out . W_dec[i]` where it is
    /// positive (ReLU), else 0.
    fn d_values(&self, w_dec: &[f32], d_in: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; self.latents.len()];
        for_each_chunk(&mut out, ROW_BLOCK * 16, |block, part| {
            for (j, d) in part.iter_mut().enumerate() {
                let pair = block * ROW_BLOCK * 16 + j;
                let (r, i) = (self.row_of[pair] as usize, self.latents[pair] as usize);
                if self.values[pair] > 0.0 {
                    let d_out = self.d_out(r, i, d_in);
                    *d = self.scale * dot(d_out, &w_dec[i * d_in..(i + 1) * d_in]);
                }
            }
        });
        out
    }
}
