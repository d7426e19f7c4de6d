//! SAE training on host buffers, the CPU path's shared base: the parameters and their update
//! (Adam from `optim`, all or nothing), and the pieces each architecture's host step in
//! `arch::*` is built from (its loss and gradients written out by hand; tests compare them with
//! burn's autodiff step for step). As burn ops a step paid autodiff's graph and a copy per
//! operation; here it is matrix products (`gemm`) and loops over rows.
//!
//! - `sparse.rs`: the step of TopK, BatchTopK and Matryoshka BatchTopK. The only dense work is
//!   the encoder product, done a block of rows at a time with the block's choice made while it is
//!   in cache; the decode, AuxK and every gradient touch only the chosen latents.
//! - `dense.rs`: what the steps of Standard, JumpReLU and Gated share (every latent can be
//!   active): `gemm` products over `[batch, d_sae]` matrices.
//!
//! `W_enc` is kept transposed (`[d_sae, d_in]`, one row per latent) so that a latent's encoder
//! gradient is a contiguous row, as its decoder row is.

pub(crate) mod dense;
pub(crate) mod sparse;

use super::Architecture;
use super::arch::{B_DEC, VectorUpdate, W_DEC, W_ENC};
use crate::kernels::{for_each_chunk, transpose};
use crate::optim::{Adam, AdamStep};

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

    /// Adam's candidate values into `next` (raised to `floor` where given); whether all are
    /// finite.
    fn propose(&mut self, adam: &AdamStep, lr: f64, floor: Option<f32>) -> bool {
        let lr = lr as f32;
        // No floor is a floor of -inf: every number stays, NaN becomes -inf (not finite either).
        let floor = floor.unwrap_or(f32::NEG_INFINITY);
        // Without a branch per value, so the compiler makes it vector arithmetic.
        let inputs = self.grad.iter().zip(&self.first).zip(&self.second);
        for (((&g, &m), &v), (&p, next)) in inputs.zip(self.values.iter().zip(&mut self.next)) {
            let (m, v) = adam.moments(g, m, v);
            *next = (p - adam.direction(m, v) * lr).max(floor);
        }
        self.next
            .iter()
            .fold(true, |finite, p| finite & p.is_finite())
    }

    /// Keep the proposed values and move the moments on.
    fn commit(&mut self, adam: &AdamStep) {
        let moments = self.first.iter_mut().zip(&mut self.second);
        for ((m, v), &g) in moments.zip(&self.grad) {
            (*m, *v) = adam.moments(g, *m, *v);
        }
        std::mem::swap(&mut self.values, &mut self.next);
    }
}

/// What one host step measured (at the scaled inputs' scale).
pub(crate) struct HostStepFigures {
    pub loss: f32,
    /// The loss's named terms, as `arch::<name>::training_forward` names them.
    pub terms: Vec<(&'static str, f32)>,
    pub l0_sum: f32,
    pub fired: Vec<f32>,
    pub sse: f32,
    pub sst: f32,
    /// BatchTopK: the smallest activation kept (1e30 when none or another architecture).
    pub smallest: f32,
}

/// How a host step can fail: the loss, or the update, is not finite (nothing changed).
pub(crate) enum HostStepError {
    Loss,
    Update,
}

/// An SAE's parameters and moments on the host.
#[derive(Debug, Clone)]
pub(crate) struct HostSae {
    pub d_in: usize,
    pub d_sae: usize,
    /// `W_enc` transposed: `[d_sae, d_in]`.
    pub w_enc_t: HostParam,
    /// `[d_sae, d_in]`.
    pub w_dec: HostParam,
    pub b_dec: HostParam,
    /// The `[d_sae]` vectors by SAELens name: `b_enc`, JumpReLU's `threshold`, or Gated's
    /// `b_gate`, `r_mag` and `b_mag`.
    pub vectors: Vec<(&'static str, HostParam)>,
    /// Gated keeps unit-norm decoder rows (see `SaeTrainer::train_step`).
    pub unit_norm_decoder: bool,
}

/// The dead latents a step revives with AuxK, and its coefficient.
pub(crate) struct AuxK<'a> {
    /// 1 for a dead latent, 0 otherwise, `[d_sae]`.
    pub dead: &'a [f32],
    pub dead_count: usize,
    pub coefficient: f64,
}

/// What a step needs beyond the batch.
pub(crate) struct HostStep<'a> {
    pub architecture: Architecture,
    /// Matryoshka's nested widths, the last being `d_sae`.
    pub matryoshka_widths: &'a [usize],
    pub adam: Adam,
    pub step: usize,
    pub lr: f64,
    /// L1 (Standard, Gated) or L0 (JumpReLU) coefficient at this step.
    pub sparsity_coefficient: f64,
    /// JumpReLU: the straight-through bandwidth.
    pub bandwidth: f64,
    /// How each trained vector moves (`SaeArchitecture::vector_update`); a vector not listed
    /// moves at the learning rate.
    pub vector_updates: Vec<(&'static str, VectorUpdate)>,
    /// TopK, BatchTopK and Matryoshka.
    pub auxk: Option<AuxK<'a>>,
}

impl HostSae {
    /// One Adam step on `x` (`[rows, d_in]`, already scaled): the architecture's loss as
    /// `arch::<name>::training_forward` defines it, its gradients, and the update.
    pub fn step(&mut self, x: &[f32], s: &HostStep) -> Result<HostStepFigures, HostStepError> {
        let figures = s.architecture.behaviour().host_step(self, x, s)?;
        if !figures.loss.is_finite() {
            return Err(HostStepError::Loss);
        }
        self.update(s)?;
        Ok(figures)
    }

    /// A `[d_sae]` vector by name.
    pub(crate) fn vector(&self, name: &str) -> &HostParam {
        vector_in(&self.vectors, name)
    }

    /// Adam on every parameter from its gradient: all or nothing, refused when any new value is
    /// not finite. Each vector moves as `s.vector_updates` says (JumpReLU's threshold faster,
    /// and at or above 0); Gated's decoder rows are put back to unit norm.
    fn update(&mut self, s: &HostStep) -> Result<(), HostStepError> {
        let (adam, lr) = (&s.adam.at(s.step), s.lr);
        let mut finite = true;
        for p in [&mut self.w_enc_t, &mut self.w_dec, &mut self.b_dec] {
            finite &= p.propose(adam, lr, None);
        }
        for (name, p) in &mut self.vectors {
            let update = s
                .vector_updates
                .iter()
                .find(|(vector, _)| vector == name)
                .map(|(_, update)| *update)
                .unwrap_or_default();
            finite &= p.propose(adam, lr * update.lr_multiplier, update.floor);
        }
        if !finite {
            return Err(HostStepError::Update);
        }
        for p in [&mut self.w_enc_t, &mut self.w_dec, &mut self.b_dec] {
            p.commit(adam);
        }
        for (_, p) in &mut self.vectors {
            p.commit(adam);
        }
        if self.unit_norm_decoder {
            for row in self.w_dec.values.chunks_exact_mut(self.d_in) {
                let norm = dot(row, row).sqrt().max(1e-8);
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Ok(())
    }

    /// `x - b_dec`, row by row.
    pub(crate) fn centred(&self, x: &[f32]) -> Vec<f32> {
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

    /// `b_dec`'s gradient: through the reconstruction directly (`scale * d_out` summed over
    /// rows), and through `x - b_dec` into the encoder product, whose gradient summed over rows
    /// is `d_product_sums` (`[d_sae]`).
    pub(crate) fn b_dec_grad(&mut self, d_out: &[f32], scale: f32, d_product_sums: &[f32]) {
        let d_in = self.d_in;
        let grad = &mut self.b_dec.grad;
        grad.fill(0.0);
        for row in d_out.chunks_exact(d_in) {
            axpy(grad, scale, row);
        }
        for (i, &g) in d_product_sums.iter().enumerate() {
            if g != 0.0 {
                axpy(grad, -g, &self.w_enc_t.values[i * d_in..(i + 1) * d_in]);
            }
        }
    }
}

/// A `[d_sae]` vector by name among `vectors`.
fn vector_in<'a>(vectors: &'a [(&'static str, HostParam)], name: &str) -> &'a HostParam {
    vectors
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("`{name}` is among the architecture's trained parameters"))
}

/// [`vector_in`], to write its gradient.
fn vector_in_mut<'a>(
    vectors: &'a mut [(&'static str, HostParam)],
    name: &str,
) -> &'a mut HostParam {
    vectors
        .iter_mut()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("`{name}` is among the architecture's trained parameters"))
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

/// Rows per task in the row-parallel loops.
pub(crate) const ROW_BLOCK: usize = 64;

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
pub(crate) fn column_counts_and_sums(values: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
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

pub(crate) fn sum_of_squares(values: &[f32]) -> f64 {
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
    /// From parameters and moments in SAELens's layout (`W_enc` `[d_in, d_sae]`), by name:
    /// `W_enc`, `W_dec` and `b_dec`, and the rest as `[d_sae]` vectors in the order given.
    pub fn from_named(
        d_in: usize,
        d_sae: usize,
        named: Vec<NamedHostParam>,
        unit_norm_decoder: bool,
    ) -> Self {
        let (mut w_enc_t, mut w_dec, mut b_dec) = (None, None, None);
        let mut vectors = Vec::new();
        for p in named {
            let param = |transposed: bool| {
                let turn = |v: Vec<f32>| {
                    if transposed {
                        transpose(&v, d_in, d_sae)
                    } else {
                        v
                    }
                };
                HostParam::new(turn(p.values), turn(p.first), turn(p.second))
            };
            match p.name {
                W_ENC => w_enc_t = Some(param(true)),
                W_DEC => w_dec = Some(param(false)),
                B_DEC => b_dec = Some(param(false)),
                name => vectors.push((name, param(false))),
            }
        }
        let missing = |name: &str| format!("`{name}` is among the trained parameters");
        Self {
            d_in,
            d_sae,
            w_enc_t: w_enc_t.unwrap_or_else(|| panic!("{}", missing(W_ENC))),
            w_dec: w_dec.unwrap_or_else(|| panic!("{}", missing(W_DEC))),
            b_dec: b_dec.unwrap_or_else(|| panic!("{}", missing(B_DEC))),
            vectors,
            unit_norm_decoder,
        }
    }

    pub fn parameter_count(&self) -> usize {
        2 * self.d_in * self.d_sae + self.d_in + self.vectors.len() * self.d_sae
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
        let mut named = vec![
            NamedHostParam {
                name: W_ENC,
                shape: [d_in, d_sae],
                values: turn(&self.w_enc_t.values),
                first: turn(&self.w_enc_t.first),
                second: turn(&self.w_enc_t.second),
            },
            keep(W_DEC, [d_sae, d_in], &self.w_dec),
            keep(B_DEC, [1, d_in], &self.b_dec),
        ];
        for (name, p) in &self.vectors {
            named.push(keep(name, [1, d_sae], p));
        }
        named
    }
}
