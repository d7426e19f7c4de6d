//! SAE training on host buffers, the CPU path's training step for TopK and Standard: the loss
//! and gradients of `arch::topk` and `arch::standard` written out by hand (tests compare them
//! with burn's autodiff step for step). As burn ops a step paid autodiff's graph and a copy per
//! operation; here it is matrix products (`gemm`) and loops over rows.
//!
//! TopK: the only dense work is the encoder product `(x - b_dec) @ W_enc`, done a block of rows
//! at a time with each block's top k chosen while it is in cache; the decode, AuxK and every
//! gradient touch only the chosen latents (`batch x k x d_in`). Standard: the four
//! `batch x d_in x d_sae` products of a dense step. `W_enc` is kept transposed (`[d_sae, d_in]`,
//! one row per latent) so that a latent's encoder gradient is a contiguous row, as its decoder
//! row is.

use super::arch::{B_DEC, B_ENC, W_DEC, W_ENC};
use crate::model::host_ops::{
    MatRef, for_each_chunk, matmul, matmul_one_thread, relu, repeat_rows, transpose,
};
use crate::optim::Adam;
use crate::sae::select::host_topk;

/// One parameter on the host: values, Adam's moments, this step's gradient, and room for the
/// candidate update (kept until every value is known to be finite).
#[derive(Debug, Clone)]
pub(crate) struct HostParam {
    pub values: Vec<f32>,
    pub first: Vec<f32>,
    pub second: Vec<f32>,
    grad: Vec<f32>,
    next: Vec<f32>,
}

impl HostParam {
    pub fn new(values: Vec<f32>, first: Vec<f32>, second: Vec<f32>) -> Self {
        let n = values.len();
        assert!(first.len() == n && second.len() == n, "moments match");
        Self {
            values,
            first,
            second,
            grad: vec![0.0; n],
            next: vec![0.0; n],
        }
    }

    /// Adam's candidate values into `next`; whether all are finite.
    fn propose(&mut self, adam: &Adam, step: usize, lr: f64) -> bool {
        let t = (step + 1) as i32;
        let (b1, b2) = (adam.beta1 as f32, adam.beta2 as f32);
        let c1 = (1.0 - adam.beta1.powi(t)) as f32;
        let c2 = (1.0 - adam.beta2.powi(t)) as f32;
        let (lr, eps) = (lr as f32, adam.epsilon as f32);
        let mut finite = true;
        for i in 0..self.values.len() {
            let g = self.grad[i];
            let m = b1 * self.first[i] + (1.0 - b1) * g;
            let v = b2 * self.second[i] + (1.0 - b2) * g * g;
            let p = self.values[i] - lr * (m / c1) / ((v / c2).sqrt() + eps);
            finite &= p.is_finite();
            self.next[i] = p;
        }
        finite
    }

    /// Keep the proposed values and move the moments on.
    fn commit(&mut self, adam: &Adam) {
        let (b1, b2) = (adam.beta1 as f32, adam.beta2 as f32);
        for i in 0..self.values.len() {
            let g = self.grad[i];
            self.first[i] = b1 * self.first[i] + (1.0 - b1) * g;
            self.second[i] = b2 * self.second[i] + (1.0 - b2) * g * g;
        }
        std::mem::swap(&mut self.values, &mut self.next);
    }
}

/// What one host step measured (at the scaled inputs' scale).
pub(crate) struct HostStepFigures {
    pub loss: f32,
    pub mse: f32,
    pub auxk: Option<f32>,
    pub l1: Option<f32>,
    pub l0_sum: f32,
    pub fired: Vec<f32>,
    pub sse: f32,
    pub sst: f32,
}

/// How a host step can fail: the loss, or the update, is not finite (nothing changed).
pub(crate) enum HostStepError {
    Loss,
    Update,
}

/// A TopK or Standard SAE's parameters and moments on the host.
#[derive(Debug, Clone)]
pub(crate) struct HostSae {
    pub d_in: usize,
    pub d_sae: usize,
    /// `W_enc` transposed: `[d_sae, d_in]`.
    pub w_enc_t: HostParam,
    pub b_enc: HostParam,
    /// `[d_sae, d_in]`.
    pub w_dec: HostParam,
    pub b_dec: HostParam,
}

/// The dead latents a step revives with AuxK, and its coefficient.
pub(crate) struct AuxK<'a> {
    /// 1 for a dead latent, 0 otherwise, `[d_sae]`.
    pub dead: &'a [f32],
    pub dead_count: usize,
    pub coefficient: f64,
}

impl HostSae {
    /// Adam on every parameter from its gradient: all or nothing, refused when any new value is
    /// not finite.
    fn update(&mut self, adam: &Adam, step: usize, lr: f64) -> Result<(), HostStepError> {
        let mut finite = true;
        for p in [
            &mut self.w_enc_t,
            &mut self.b_enc,
            &mut self.w_dec,
            &mut self.b_dec,
        ] {
            finite &= p.propose(adam, step, lr);
        }
        if !finite {
            return Err(HostStepError::Update);
        }
        for p in [
            &mut self.w_enc_t,
            &mut self.b_enc,
            &mut self.w_dec,
            &mut self.b_dec,
        ] {
            p.commit(adam);
        }
        Ok(())
    }

    /// One Adam step of a Standard SAE on `x` (`[rows, d_in]`, already scaled): MSE plus
    /// `l1_coefficient` times the L1 penalty weighted by decoder-row norms, as `arch::standard`
    /// defines them.
    pub fn standard_step(
        &mut self,
        x: &[f32],
        l1_coefficient: f64,
        adam: &Adam,
        step: usize,
        lr: f64,
    ) -> Result<HostStepFigures, HostStepError> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = x.len() / d_in;
        let centred = self.centred(x);

        // f = ReLU(centred @ W_enc + b_enc), in place.
        let mut acts = repeat_rows(&self.b_enc.values, rows);
        matmul(
            &mut acts,
            MatRef::rows(&centred, rows, d_in),
            MatRef::transposed(&self.w_enc_t.values, d_in, d_sae),
            1.0,
            true,
        );
        for_each_chunk(&mut acts, ROW_BLOCK * d_sae, |_, part| relu(part));

        // error = f @ W_dec + b_dec - x.
        let mut error = Vec::with_capacity(rows * d_in);
        for row in x.chunks_exact(d_in) {
            error.extend(self.b_dec.values.iter().zip(row).map(|(b, v)| b - v));
        }
        matmul(
            &mut error,
            MatRef::rows(&acts, rows, d_sae),
            MatRef::rows(&self.w_dec.values, d_sae, d_in),
            1.0,
            true,
        );
        let sse = sum_of_squares(&error);
        let mse = sse / rows as f64;
        let sst = total_variance(x, rows, d_in);
        let norms: Vec<f32> = self
            .w_dec
            .values
            .chunks_exact(d_in)
            .map(|row| dot(row, row).sqrt())
            .collect();
        // Per latent: how many rows it fired in, and the sum of its activations.
        let (fired, act_sums) = column_counts_and_sums(&acts, d_sae);
        let l0_sum: f32 = fired.iter().sum();
        let l1 = act_sums
            .iter()
            .zip(&norms)
            .map(|(&s, &n)| f64::from(s) * f64::from(n))
            .sum::<f64>()
            / rows as f64;
        let loss = mse + l1_coefficient * l1;
        if !loss.is_finite() {
            return Err(HostStepError::Loss);
        }

        // d(loss)/d(x_hat) = 2 error / rows; the L1 term adds lambda ||W_dec[i]|| / rows to
        // each activation's gradient and lambda sum_r f_ri / rows * W_dec[i] / ||W_dec[i]|| to
        // each decoder row's.
        let two_over_rows = 2.0 / rows as f32;
        let l1_scale = (l1_coefficient / rows as f64) as f32;
        matmul(
            &mut self.w_dec.grad,
            MatRef::transposed(&acts, d_sae, rows),
            MatRef::rows(&error, rows, d_in),
            two_over_rows,
            false,
        );
        for (i, grad) in self.w_dec.grad.chunks_exact_mut(d_in).enumerate() {
            let row = &self.w_dec.values[i * d_in..(i + 1) * d_in];
            axpy(grad, l1_scale * act_sums[i] / norms[i], row);
        }
        let mut d_pre = Vec::with_capacity(rows * d_sae);
        for _ in 0..rows {
            d_pre.extend(norms.iter().map(|n| l1_scale * n));
        }
        matmul(
            &mut d_pre,
            MatRef::rows(&error, rows, d_in),
            MatRef::transposed(&self.w_dec.values, d_in, d_sae),
            two_over_rows,
            true,
        );
        // Through the ReLU: only where it was open.
        let acts_ref = &acts;
        for_each_chunk(&mut d_pre, ROW_BLOCK * d_sae, |block, part| {
            let first = block * ROW_BLOCK * d_sae;
            for (d, &f) in part.iter_mut().zip(&acts_ref[first..]) {
                if f <= 0.0 {
                    *d = 0.0;
                }
            }
        });
        matmul(
            &mut self.w_enc_t.grad,
            MatRef::transposed(&d_pre, d_sae, rows),
            MatRef::rows(&centred, rows, d_in),
            1.0,
            false,
        );
        let (_, d_pre_sums) = column_counts_and_sums(&d_pre, d_sae);
        self.b_enc.grad.copy_from_slice(&d_pre_sums);
        self.b_dec_grad(&error, two_over_rows);

        self.update(adam, step, lr)?;
        Ok(HostStepFigures {
            loss: loss as f32,
            mse: mse as f32,
            auxk: None,
            l1: Some(l1 as f32),
            l0_sum,
            fired,
            sse: sse as f32,
            sst: sst as f32,
        })
    }

    /// `x - b_dec`, row by row.
    fn centred(&self, x: &[f32]) -> Vec<f32> {
        let d_in = self.d_in;
        let b_dec = &self.b_dec.values;
        let mut centred = x.to_vec();
        for_each_chunk(&mut centred, ROW_BLOCK * d_in, |_, part| {
            for row in part.chunks_exact_mut(d_in) {
                row.iter_mut().zip(b_dec).for_each(|(v, b)| *v -= b);
            }
        });
        centred
    }

    /// `b_dec`'s gradient once `b_enc`'s is known: through `x_hat` directly (`scale * error`
    /// summed over rows), and through `x - b_dec` into every pre-activation.
    fn b_dec_grad(&mut self, error: &[f32], scale: f32) {
        let d_in = self.d_in;
        let grad = &mut self.b_dec.grad;
        grad.fill(0.0);
        for row in error.chunks_exact(d_in) {
            axpy(grad, scale, row);
        }
        for (i, &g) in self.b_enc.grad.iter().enumerate() {
            if g != 0.0 {
                axpy(grad, -g, &self.w_enc_t.values[i * d_in..(i + 1) * d_in]);
            }
        }
    }

    /// One Adam step of a TopK SAE on `x` (`[rows, d_in]`, already scaled): MSE, plus AuxK when
    /// latents are dead, as `arch::topk` defines them.
    pub fn topk_step(
        &mut self,
        x: &[f32],
        k: usize,
        auxk: Option<AuxK>,
        adam: &Adam,
        step: usize,
        lr: f64,
    ) -> Result<HostStepFigures, HostStepError> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = x.len() / d_in;
        let k = k.min(d_sae);

        // Forward: centred inputs, every pre-activation, the top k of each row.
        let b_dec = &self.b_dec.values;
        let centred = self.centred(x);
        let aux_setting = auxk.filter(|a| a.dead_count > 0).map(|aux| {
            let k_aux_full = (d_in / 2).max(1);
            let k_aux = k_aux_full.min(aux.dead_count);
            let scale = (aux.dead_count as f64 / k_aux_full as f64).min(1.0);
            (aux, k_aux, scale)
        });
        let selected = self.encode_and_select(
            &centred,
            k,
            aux_setting
                .as_ref()
                .map(|(aux, k_aux, _)| (aux.dead, *k_aux)),
        );
        let (chosen, chosen_pre) = (&selected.chosen, &selected.chosen_pre);
        // The reconstruction's error `x_hat - x`, row by row.
        let w_dec = &self.w_dec.values;
        let mut error = vec![0.0f32; rows * d_in];
        for_each_chunk(&mut error, ROW_BLOCK * d_in, |block, part| {
            for (i, out) in part.chunks_exact_mut(d_in).enumerate() {
                let r = block * ROW_BLOCK + i;
                out.copy_from_slice(b_dec);
                let pairs = r * k..(r + 1) * k;
                decode_into(out, &chosen[pairs.clone()], &chosen_pre[pairs], w_dec, d_in);
                for (e, v) in out.iter_mut().zip(&x[r * d_in..(r + 1) * d_in]) {
                    *e -= v;
                }
            }
        });
        let mut fired = vec![0.0f32; d_sae];
        let mut l0_sum = 0.0f32;
        for (&i, &value) in chosen.iter().zip(chosen_pre) {
            if value > 0.0 {
                fired[i as usize] += 1.0;
                l0_sum += 1.0;
            }
        }
        let sse = sum_of_squares(&error);
        let mse = sse / rows as f64;
        let sst = total_variance(x, rows, d_in);

        // d(mse)/d(x_hat) = 2 (x_hat - x) / rows.
        let two_over_rows = 2.0 / rows as f32;
        let mut paths = vec![Path {
            latents: chosen,
            values: chosen_pre,
            k,
            d_out: &error,
            scale: two_over_rows,
        }];

        // AuxK: the dead latents' top `d_in / 2` reconstruct the (detached) residual `x - x_hat`.
        let mut auxk_loss = None;
        let mut loss = mse;
        let mut aux_error;
        if let Some((aux, _, scale)) = aux_setting {
            let (aux_chosen, aux_pre) = (&selected.aux_chosen, &selected.aux_pre);
            let k_aux = aux_chosen.len() / rows.max(1);
            // recons - residual = recons + error.
            aux_error = error.clone();
            for_each_chunk(&mut aux_error, ROW_BLOCK * d_in, |block, part| {
                for (i, out) in part.chunks_exact_mut(d_in).enumerate() {
                    let r = block * ROW_BLOCK + i;
                    let pairs = r * k_aux..(r + 1) * k_aux;
                    decode_into(
                        out,
                        &aux_chosen[pairs.clone()],
                        &aux_pre[pairs],
                        w_dec,
                        d_in,
                    );
                }
            });
            let value = sum_of_squares(&aux_error) / rows as f64 * scale;
            loss += aux.coefficient * value;
            auxk_loss = Some(value as f32);
            paths.push(Path {
                latents: aux_chosen,
                values: aux_pre,
                k: k_aux,
                d_out: &aux_error,
                scale: (aux.coefficient * scale) as f32 * two_over_rows,
            });
        }
        if !loss.is_finite() {
            return Err(HostStepError::Loss);
        }

        // Backward through the chosen latents of every path: a latent's gradients gather the
        // rows that chose it, so latents split across threads without shared writes.
        let d_values: Vec<Vec<f32>> = paths
            .iter()
            .map(|path| path.d_values(w_dec, rows, d_in))
            .collect();
        // Each latent's (path, pair) list, positive pre-activations only (the rest carry no
        // gradient), in row order: a counting sort by latent.
        let mut starts = vec![0u32; d_sae + 1];
        for path in &paths {
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
        let centred_ref = &centred;
        for_each_latent_block(
            &mut self.w_dec.grad,
            &mut self.w_enc_t.grad,
            &mut self.b_enc.grad,
            d_in,
            |i, dec_grad, enc_grad, b_grad| {
                dec_grad.fill(0.0);
                enc_grad.fill(0.0);
                *b_grad = 0.0;
                for &(p, pair) in &entries[starts[i] as usize..starts[i + 1] as usize] {
                    let (path, pair) = (&paths[p as usize], pair as usize);
                    let r = pair / path.k;
                    let value = path.values[pair];
                    let d_value = d_values[p as usize][pair];
                    axpy(
                        dec_grad,
                        value * path.scale,
                        &path.d_out[r * d_in..(r + 1) * d_in],
                    );
                    axpy(enc_grad, d_value, &centred_ref[r * d_in..(r + 1) * d_in]);
                    *b_grad += d_value;
                }
            },
        );
        self.b_dec_grad(&error, two_over_rows);

        self.update(adam, step, lr)?;
        Ok(HostStepFigures {
            loss: loss as f32,
            mse: mse as f32,
            auxk: auxk_loss,
            l1: None,
            l0_sum,
            fired,
            sse: sse as f32,
            sst: sst as f32,
        })
    }
}

/// The chosen latents of every row, and their pre-activations.
struct Selected {
    chosen: Vec<u32>,
    chosen_pre: Vec<f32>,
    /// AuxK's, among the dead latents (empty without AuxK).
    aux_chosen: Vec<u32>,
    aux_pre: Vec<f32>,
}

impl HostSae {
    /// `pre = centred @ W_enc + b_enc` and the top k of each row (and AuxK's top `k_aux` among
    /// `dead`), a block of rows at a time so that a block's pre-activations stay in cache; the
    /// whole `[batch, d_sae]` matrix never exists.
    fn encode_and_select(
        &self,
        centred: &[f32],
        k: usize,
        aux: Option<(&[f32], usize)>,
    ) -> Selected {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let rows = centred.len() / d_in;
        let block = (ENCODE_BLOCK_VALUES / d_sae).max(8);
        let blocks: Vec<Selected> = map_blocks(rows.div_ceil(block), |b| {
            let block_rows = block.min(rows - b * block);
            let mut pre = repeat_rows(&self.b_enc.values, block_rows);
            let first = b * block * d_in;
            matmul_one_thread(
                &mut pre,
                MatRef::rows(&centred[first..first + block_rows * d_in], block_rows, d_in),
                MatRef::transposed(&self.w_enc_t.values, d_in, d_sae),
                1.0,
                true,
            );
            let (chosen, chosen_pre) = host_topk(&pre, block_rows, d_sae, k, None);
            let (aux_chosen, aux_pre) = match aux {
                Some((dead, k_aux)) => host_topk(&pre, block_rows, d_sae, k_aux, Some(dead)),
                None => (Vec::new(), Vec::new()),
            };
            Selected {
                chosen,
                chosen_pre,
                aux_chosen,
                aux_pre,
            }
        });
        let mut all = Selected {
            chosen: Vec::with_capacity(rows * k),
            chosen_pre: Vec::with_capacity(rows * k),
            aux_chosen: Vec::new(),
            aux_pre: Vec::new(),
        };
        for block in blocks {
            all.chosen.extend(block.chosen);
            all.chosen_pre.extend(block.chosen_pre);
            all.aux_chosen.extend(block.aux_chosen);
            all.aux_pre.extend(block.aux_pre);
        }
        all
    }
}

/// `work(block)` for blocks `0..count`, in order: natively over every core.
fn map_blocks<T: Send>(count: usize, work: impl Fn(usize) -> T + Send + Sync) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().map(work).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..count).map(work).collect()
}

/// Pre-activations per block of rows in `encode_and_select` (1 MB).
const ENCODE_BLOCK_VALUES: usize = 1 << 18;

/// Rows per task in the row-parallel loops.
const ROW_BLOCK: usize = 64;

/// One way gradients reach the chosen latents: each row's `k` latents, and the gradient of the
/// loss with respect to that row's decoded output, `scale * d_out[r]`.
struct Path<'a> {
    latents: &'a [u32],
    /// The chosen latents' pre-activations.
    values: &'a [f32],
    k: usize,
    d_out: &'a [f32],
    scale: f32,
}

impl Path<'_> {
    /// The gradient reaching each chosen pre-activation: `scale * d_out[r] . W_dec[i]` where it
    /// is positive (ReLU), else 0.
    fn d_values(&self, w_dec: &[f32], rows: usize, d_in: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; rows * self.k];
        if self.k == 0 {
            return out;
        }
        for_each_chunk(&mut out, ROW_BLOCK * self.k, |block, part| {
            for (j, d) in part.iter_mut().enumerate() {
                let pair = block * ROW_BLOCK * self.k + j;
                let (r, i) = (pair / self.k, self.latents[pair] as usize);
                if self.values[pair] > 0.0 {
                    let d_out = &self.d_out[r * d_in..(r + 1) * d_in];
                    *d = self.scale * dot(d_out, &w_dec[i * d_in..(i + 1) * d_in]);
                }
            }
        });
        out
    }
}

/// `out += sum_j ReLU(values[j]) * W_dec[latents[j]]`.
fn decode_into(out: &mut [f32], latents: &[u32], values: &[f32], w_dec: &[f32], d_in: usize) {
    for (&i, &value) in latents.iter().zip(values) {
        if value > 0.0 {
            let i = i as usize;
            axpy(out, value, &w_dec[i * d_in..(i + 1) * d_in]);
        }
    }
}

/// `work(latent, its W_dec gradient row, its W_enc gradient row, its b_enc gradient)` for
/// every latent: natively over every core.
fn for_each_latent_block(
    dec_grad: &mut [f32],
    enc_grad: &mut [f32],
    b_grad: &mut [f32],
    d_in: usize,
    work: impl Fn(usize, &mut [f32], &mut [f32], &mut f32) + Send + Sync,
) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        dec_grad
            .par_chunks_mut(d_in)
            .zip(enc_grad.par_chunks_mut(d_in))
            .zip(b_grad.par_iter_mut())
            .enumerate()
            .with_min_len(64)
            .for_each(|(i, ((dec, enc), b))| work(i, dec, enc, b));
    }
    #[cfg(target_arch = "wasm32")]
    dec_grad
        .chunks_mut(d_in)
        .zip(enc_grad.chunks_mut(d_in))
        .zip(b_grad.iter_mut())
        .enumerate()
        .for_each(|(i, ((dec, enc), b))| work(i, dec, enc, b));
}

/// Per column of a row-major `[_, width]` matrix: how many entries are above 0, and the sum.
fn column_counts_and_sums(values: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = values.len() / width;
    let per_block = rows.div_ceil(8).max(1);
    let parts = map_blocks(rows.div_ceil(per_block), |b| {
        let (mut counts, mut sums) = (vec![0.0f32; width], vec![0.0f32; width]);
        let end = rows.min((b + 1) * per_block);
        for row in values[b * per_block * width..end * width].chunks_exact(width) {
            for ((c, s), &v) in counts.iter_mut().zip(sums.iter_mut()).zip(row) {
                *c += f32::from(u8::from(v > 0.0));
                *s += v;
            }
        }
        (counts, sums)
    });
    let (mut counts, mut sums) = (vec![0.0f32; width], vec![0.0f32; width]);
    for (c, s) in parts {
        counts.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
        sums.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
    }
    (counts, sums)
}

fn sum_of_squares(values: &[f32]) -> f64 {
    values.iter().map(|&e| f64::from(e) * f64::from(e)).sum()
}

fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, so the compiler can keep them in vector lanes.
    let mut lanes = [0.0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (ca, cb) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] += ca[l] * cb[l];
        }
    }
    lanes.iter().sum::<f32>() + a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum::<f32>()
}

/// `sum (x - column mean)^2` over `[rows, d]`.
fn total_variance(x: &[f32], rows: usize, d: usize) -> f64 {
    let mut mean = vec![0.0f64; d];
    for row in x.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    x.chunks_exact(d)
        .flat_map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&v, m)| (f64::from(v) - m).powi(2))
        })
        .sum()
}

/// A parameter's values and moments in SAELens's layout (vectors as `[1, n]`).
pub(crate) struct NamedHostParam {
    pub name: &'static str,
    pub shape: [usize; 2],
    pub values: Vec<f32>,
    pub first: Vec<f32>,
    pub second: Vec<f32>,
}

impl HostSae {
    /// From parameters and moments in SAELens's layout (`W_enc` `[d_in, d_sae]`), by name.
    pub fn from_named(d_in: usize, d_sae: usize, mut named: Vec<NamedHostParam>) -> Self {
        let mut take = |name: &str, transposed: bool| {
            let at = named
                .iter()
                .position(|p| p.name == name)
                .unwrap_or_else(|| panic!("TopK's `{name}` is among its trained parameters"));
            let p = named.swap_remove(at);
            let turn = |v: Vec<f32>| {
                if transposed {
                    transpose(&v, d_in, d_sae)
                } else {
                    v
                }
            };
            HostParam::new(turn(p.values), turn(p.first), turn(p.second))
        };
        Self {
            d_in,
            d_sae,
            w_enc_t: take(W_ENC, true),
            b_enc: take(B_ENC, false),
            w_dec: take(W_DEC, false),
            b_dec: take(B_DEC, false),
        }
    }

    pub fn parameter_count(&self) -> usize {
        2 * self.d_in * self.d_sae + self.d_sae + self.d_in
    }

    /// Parameters and moments in SAELens's layout, by name.
    pub fn named(&self) -> Vec<NamedHostParam> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let turn = |v: &[f32]| transpose(v, d_sae, d_in);
        let keep = |name, shape, p: &HostParam| NamedHostParam {
            name,
            shape,
            values: p.values.clone(),
            first: p.first.clone(),
            second: p.second.clone(),
        };
        vec![
            NamedHostParam {
                name: W_ENC,
                shape: [d_in, d_sae],
                values: turn(&self.w_enc_t.values),
                first: turn(&self.w_enc_t.first),
                second: turn(&self.w_enc_t.second),
            },
            keep(B_ENC, [1, d_sae], &self.b_enc),
            keep(W_DEC, [d_sae, d_in], &self.w_dec),
            keep(B_DEC, [1, d_in], &self.b_dec),
        ]
    }
}
