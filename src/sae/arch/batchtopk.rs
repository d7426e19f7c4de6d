//! BatchTopK SAE (Bussmann et al. 2024): training keeps the `k x batch` largest ReLU'd
//! pre-activations across the whole batch, so tokens may use more or fewer than k latents. For
//! inference a single threshold replaces the batch: `f = ReLU(pre) * (pre > threshold)`, the
//! threshold being a running average of the smallest activation kept in training. It is stored
//! per latent (all equal), which is how SAELens saves BatchTopK for inference (as JumpReLU).

use burn::tensor::Tensor;

use super::{
    Activity, B_ENC, HostVectors, Kind, LocalFuture, Params, SaeArchitecture, THRESHOLD,
    TrainingContext, TrainingForward, decode, mse_with_auxk, need_k, pre_activation, select,
    threshold_host_rows,
};
use crate::error::Result;
use crate::sae::Architecture;
use crate::sae::host_train::sparse::{Chosen, SparseRule};
use crate::sae::host_train::{HostSae, HostStep, HostStepError, HostStepFigures};
use crate::sae::select::Scope;

/// The host step's choice: what each row offers first, in multiples of k.
const FIRST_OFFER_PER_K: usize = 4;

pub struct BatchTopK {
    pub k: usize,
}

/// The BatchTopK family's inference and storage, shared with Matryoshka BatchTopK.
pub(crate) const VECTORS: &[&str] = &[B_ENC, THRESHOLD];
/// The threshold is a running average, not trained.
pub(crate) const TRAINED_VECTORS: &[&str] = &[B_ENC];

/// Its names, and the SAELens cfg.json it reads (`architecture: "batchtopk"`).
pub(crate) const KIND: Kind = Kind {
    name: "batchtopk",
    aliases: &[],
    written_as: "jumprelu",
    build: |k| {
        Ok(Architecture::BatchTopK {
            k: need_k(k, "batchtopk")?,
        })
    },
    reads_saelens: |names| KIND.named_by(names),
};

impl SaeArchitecture for BatchTopK {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn k(&self) -> Option<usize> {
        Some(self.k)
    }

    fn vectors(&self) -> &'static [&'static str] {
        VECTORS
    }

    fn trained_vectors(&self) -> &'static [&'static str] {
        TRAINED_VECTORS
    }

    fn uses_auxk(&self) -> bool {
        true
    }

    fn keeps_running_threshold(&self) -> bool {
        true
    }

    fn encode(&self, params: &Params, x: Tensor<2>) -> Tensor<2> {
        encode(params, x)
    }

    fn activate_host_rows(&self, product: &mut [f32], _d_sae: usize, vectors: &HostVectors) {
        threshold_host_rows(product, &vectors[THRESHOLD]);
    }

    fn training_forward<'a>(
        &'a self,
        params: &'a Params,
        x: Tensor<2>,
        _nested_widths: &'a [usize],
        context: &'a TrainingContext,
    ) -> LocalFuture<'a, Result<TrainingForward>> {
        Box::pin(training_forward(params, x, self.k, context))
    }

    fn host_step(
        &self,
        host: &mut HostSae,
        x: &[f32],
        step: &HostStep,
    ) -> std::result::Result<HostStepFigures, HostStepError> {
        host_step(host, x, step, self.k, &[])
    }
}

/// BatchTopK's host step, Matryoshka's too (with its nested widths): the batch-wide choice and
/// the running threshold.
pub(crate) fn host_step(
    host: &mut HostSae,
    x: &[f32],
    step: &HostStep,
    k: usize,
    nested_widths: &[usize],
) -> std::result::Result<HostStepFigures, HostStepError> {
    let rule = SparseRule {
        choose: &|host, centred, aux| choose_batch_wide(host, centred, k, aux),
        nested_widths,
        running_threshold: true,
    };
    host.sparse_step(x, &rule, step)
}

pub fn encode(params: &Params, x: Tensor<2>) -> Tensor<2> {
    super::jumprelu::encode(params, x)
}

pub async fn training_forward(
    params: &Params,
    x: Tensor<2>,
    k: usize,
    context: &TrainingContext,
) -> Result<TrainingForward> {
    let pre = pre_activation(params, x.clone());
    let relu = pre.clone().clamp_min(0.0);
    let mask = select(relu.clone(), k, Scope::WholeBatch, context.selection).await?;
    let feature_acts = relu * mask.clone();
    let x_hat = decode(params, feature_acts.clone());
    // Smallest positive kept activation: unkept or zero entries are lifted out of the way.
    let kept = feature_acts.clone().detach();
    let unkept = kept.clone().lower_equal_elem(0.0).float();
    let smallest_kept = (kept + unkept * 1e30).min().reshape([1]);
    let (loss, terms) = mse_with_auxk(params, &pre, &x, &x_hat, context).await?;
    Ok(TrainingForward {
        activity: Activity::Dense(Box::new(feature_acts)),
        x_hat,
        loss,
        terms,
        smallest_kept: Some(smallest_kept),
    })
}

/// BatchTopK's choice (Matryoshka's too): the `k x rows` largest positive pre-activations of
/// the whole batch (ties to the lower row, then the lower latent, as `select::host_topk_mask`).
/// Each row offers its best few, the batch's cut is made among the offers, and a row whose every
/// offer made the cut (it may hold more above it) offers more until none does, which gives
/// exactly the whole batch's choice.
fn choose_batch_wide(
    host: &HostSae,
    centred: &[f32],
    k: usize,
    aux: Option<(&[f32], usize)>,
) -> (Chosen, Chosen) {
    let (d_in, d_sae) = (host.d_in, host.d_sae);
    let k = k.min(d_sae);
    let rows = centred.len() / d_in;
    let keep = k * rows;
    let mut width = (FIRST_OFFER_PER_K * k).clamp(1, d_sae);
    let (offer, aux_chosen) = host.encode_and_offer(centred, width, aux);
    // Each row's positive offers, best first.
    let mut lists: Vec<Vec<(u32, f32)>> = (0..rows)
        .map(|r| {
            let (latents, values) = offer.row(r);
            latents
                .iter()
                .zip(values)
                .filter(|(_, v)| **v > 0.0)
                .map(|(&i, &v)| (i, v))
                .collect()
        })
        .collect();
    loop {
        // The batch's cut among the offers: the `keep`-th best (value, then flat index).
        let mut all: Vec<(f32, u32, u32)> = lists
            .iter()
            .enumerate()
            .flat_map(|(r, list)| list.iter().map(move |&(i, v)| (v, r as u32, i)))
            .collect();
        let rank = |a: &(f32, u32, u32), b: &(f32, u32, u32)| {
            b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2)))
        };
        let cut =
            (all.len() > keep && keep > 0).then(|| *all.select_nth_unstable_by(keep - 1, rank).1);
        let made_cut = |entry: &(f32, u32, u32)| match (keep, &cut) {
            (0, _) => false,
            (_, None) => true,
            (_, Some(cut)) => rank(entry, cut) != std::cmp::Ordering::Greater,
        };
        // A full offer whose last (smallest) entry made the cut may hide more that would.
        let short: Vec<usize> = if width == d_sae {
            Vec::new()
        } else {
            (0..rows)
                .filter(|&r| {
                    let list = &lists[r];
                    list.len() == width
                        && made_cut(&(list[width - 1].1, r as u32, list[width - 1].0))
                })
                .collect()
        };
        if short.is_empty() {
            let mut chosen = Chosen {
                starts: vec![0],
                ..Chosen::default()
            };
            for (r, list) in lists.iter().enumerate() {
                for &(i, v) in list {
                    if made_cut(&(v, r as u32, i)) {
                        chosen.latents.push(i);
                        chosen.values.push(v);
                    }
                }
                chosen.starts.push(chosen.latents.len());
            }
            return (chosen, aux_chosen);
        }
        // Those rows offer more (their encoder product again, a few rows only).
        width = (width * FIRST_OFFER_PER_K).min(d_sae);
        let mut again = Vec::with_capacity(short.len() * d_in);
        for &r in &short {
            again.extend_from_slice(&centred[r * d_in..(r + 1) * d_in]);
        }
        let (more, _) = host.encode_and_offer(&again, width, None);
        for (j, &r) in short.iter().enumerate() {
            let (latents, values) = more.row(j);
            lists[r] = latents
                .iter()
                .zip(values)
                .filter(|(_, v)| **v > 0.0)
                .map(|(&i, &v)| (i, v))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::choose_batch_wide;
    use crate::sae::arch::B_ENC;
    use crate::sae::host_train::{HostParam, HostSae};
    use crate::sae::select::{Scope, host_topk_mask};

    fn param(values: Vec<f32>) -> HostParam {
        let n = values.len();
        HostParam::new(values, vec![0.0; n], vec![0.0; n])
    }

    /// BatchTopK's choice equals the whole batch's top `k x rows` of the ReLU'd pre-activations
    /// (`select::host_topk_mask`), also when a few rows (large inputs, as a first token's) take
    /// far more than their share and must offer more than once.
    #[test]
    fn batch_wide_choice_is_the_whole_batch_top() {
        let (d_in, d_sae, rows, k) = (8, 256, 40, 2);
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let w_enc_t: Vec<f32> = (0..d_sae * d_in).map(|_| next()).collect();
        let b_enc: Vec<f32> = (0..d_sae).map(|_| 0.1 * next()).collect();
        let sae = HostSae {
            d_in,
            d_sae,
            w_enc_t: param(w_enc_t.clone()),
            w_dec: param(vec![0.0; d_sae * d_in]),
            b_dec: param(vec![0.0; d_in]),
            vectors: vec![(B_ENC, param(b_enc.clone()))],
            unit_norm_decoder: false,
        };
        let mut x: Vec<f32> = (0..rows * d_in).map(|_| next()).collect();
        // Rows 3 and 17 are 40 times larger: they hold most of the batch's top values.
        for r in [3, 17] {
            x[r * d_in..(r + 1) * d_in]
                .iter_mut()
                .for_each(|v| *v *= 40.0);
        }
        let (chosen, _) = choose_batch_wide(&sae, &x, k, None);
        let mut relu = vec![0.0f32; rows * d_sae];
        for r in 0..rows {
            for i in 0..d_sae {
                let pre: f32 = (0..d_in)
                    .map(|j| x[r * d_in + j] * w_enc_t[i * d_in + j])
                    .sum::<f32>()
                    + b_enc[i];
                relu[r * d_sae + i] = pre.max(0.0);
            }
        }
        let mask = host_topk_mask(&relu, rows, d_sae, k, Scope::WholeBatch);
        let mut expected: Vec<(usize, u32)> = (0..rows * d_sae)
            .filter(|&f| mask[f] > 0.0 && relu[f] > 0.0)
            .map(|f| (f / d_sae, (f % d_sae) as u32))
            .collect();
        let mut got: Vec<(usize, u32)> = (0..rows)
            .flat_map(|r| chosen.row(r).0.iter().map(move |&i| (r, i)))
            .collect();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got.len(), k * rows);
        assert_eq!(got, expected);
        // The large rows took more than the first offer (4k), so they offered again.
        assert!(chosen.row(3).0.len() > 4 * k && chosen.row(17).0.len() > 4 * k);
    }
}
