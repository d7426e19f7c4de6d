//! TopK SAE (Gao et al. 2024): exactly the k largest pre-activations of each token are kept
//! (ReLU'd); AuxK revives dead latents. No sparsity penalty.

use burn::tensor::{Int, Tensor};

use super::{
    Activity, HostVectors, Kind, LocalFuture, Params, SaeArchitecture, TrainingContext,
    TrainingForward, decode, mse_with_auxk, need_k, pre_activation, select, squared_error,
};
use super::{B_DEC, B_ENC, W_DEC, W_ENC, param};
use crate::backend::{int_tensor, read_f32};
use crate::error::Result;
use crate::sae::Architecture;
use crate::sae::host_train::sparse::SparseRule;
use crate::sae::host_train::{HostSae, HostStep, HostStepError, HostStepFigures};
use crate::sae::select::{
    Scope, Selection, host_topk, host_topk_indices, topk_mask_by_bisection, topk_mask_on_host,
};

pub struct TopK {
    pub k: usize,
}

/// Its names, and the SAELens cfg.json it reads (`architecture: "topk"`, or an older file's
/// activation function).
pub(crate) const KIND: Kind = Kind {
    name: "topk",
    aliases: &[],
    written_as: "topk",
    build: |k| {
        Ok(Architecture::TopK {
            k: need_k(k, "topk")?,
        })
    },
    reads_saelens: |names| {
        KIND.named_by(names)
            || names.standard_with_topk_activation()
            || (names.architecture.is_none() && names.activation == Some("topk"))
    },
};

impl SaeArchitecture for TopK {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn k(&self) -> Option<usize> {
        Some(self.k)
    }

    fn vectors(&self) -> &'static [&'static str] {
        &[B_ENC]
    }

    fn uses_auxk(&self) -> bool {
        true
    }

    fn write_cfg(&self, cfg: &mut serde_json::Value) {
        cfg["k"] = serde_json::json!(self.k);
    }

    fn encode(&self, params: &Params, x: Tensor<2>) -> Tensor<2> {
        encode(params, x, self.k)
    }

    /// On the CPU backends the top k are chosen on the host: far faster than bisection there
    /// (30 passes over `[n, d_sae]`), and the same result.
    fn encode_async<'a>(
        &'a self,
        params: &'a Params,
        x: Tensor<2>,
        selection: Selection,
    ) -> LocalFuture<'a, Result<Tensor<2>>> {
        Box::pin(async move {
            if selection != Selection::Host {
                return Ok(encode(params, x, self.k));
            }
            let pre = pre_activation(params, x);
            let mask = topk_mask_on_host(pre.clone(), self.k, Scope::PerRow).await?;
            Ok(pre.clamp_min(0.0) * mask)
        })
    }

    fn activate_host_rows(&self, product: &mut [f32], d_sae: usize, _vectors: &HostVectors) {
        let n = product.len() / d_sae;
        let (chosen, values) = host_topk(product, n, d_sae, self.k, None);
        let k = chosen.len().checked_div(n).unwrap_or(0);
        product.fill(0.0);
        for (r, row) in product.chunks_exact_mut(d_sae).enumerate() {
            for j in r * k..(r + 1) * k {
                row[chosen[j] as usize] = values[j].max(0.0);
            }
        }
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
        let k = self.k;
        let rule = SparseRule {
            // Each row's k best, chosen as the encoder product is made.
            choose: &|host, centred, aux| host.encode_and_offer(centred, k.min(host.d_sae), aux),
            nested_widths: &[],
            running_threshold: false,
        };
        host.sparse_step(x, &rule, step)
    }
}

/// Inference: bisection selection (no read-back), so it runs inside hooks and on WebGPU.
pub fn encode(params: &Params, x: Tensor<2>, k: usize) -> Tensor<2> {
    let pre = pre_activation(params, x);
    let mask = topk_mask_by_bisection(pre.clone(), k, Scope::PerRow);
    pre.clamp_min(0.0) * mask
}

pub async fn training_forward(
    params: &Params,
    x: Tensor<2>,
    k: usize,
    context: &TrainingContext,
) -> Result<TrainingForward> {
    if context.selection == Selection::Host {
        return sparse_training_forward(params, x, k, context).await;
    }
    let pre = pre_activation(params, x.clone());
    let mask = select(pre.clone(), k, Scope::PerRow, context.selection).await?;
    let feature_acts = pre.clone().clamp_min(0.0) * mask;
    let x_hat = decode(params, feature_acts.clone());
    let (loss, terms) = mse_with_auxk(params, &pre, &x, &x_hat, context).await?;
    Ok(TrainingForward {
        activity: Activity::Dense(Box::new(feature_acts)),
        x_hat,
        loss,
        terms,
        smallest_kept: None,
    })
}

/// The CPU path: the full pre-activation is computed once without gradients to select the top k
/// on the host; then only the selected latents are recomputed with gradients, by gathering their
/// encoder columns and decoder rows. Dense work per step is one `[batch, d_in] x [d_in, d_sae]`
/// product instead of six; the rest is `batch x k x d_in`. Same loss and gradients as the dense
/// path (tests compare them).
async fn sparse_training_forward(
    params: &Params,
    x: Tensor<2>,
    k: usize,
    context: &TrainingContext,
) -> Result<TrainingForward> {
    let [rows, d_in] = x.dims();
    let d_sae = param(params, W_ENC).dims()[1];
    let k = k.min(d_sae);
    let centred = x.clone() - param(params, B_DEC);
    let pre_host = read_f32(
        (centred
            .clone()
            .detach()
            .matmul(param(params, W_ENC).detach())
            + param(params, B_ENC).detach())
        .detach(),
    )
    .await?;
    let chosen = host_topk_indices(&pre_host, rows, d_sae, k, None);
    let mut fired = vec![0.0f32; d_sae];
    let mut l0_sum = 0.0f32;
    for (row, latents) in chosen.chunks(k).enumerate() {
        for &i in latents {
            if pre_host[row * d_sae + i as usize] > 0.0 {
                fired[i as usize] += 1.0;
                l0_sum += 1.0;
            }
        }
    }
    let device = x.device();
    let index = index_tensor(&chosen, &device);
    let values = gathered_pre(params, &centred, &index, rows, k).clamp_min(0.0);
    let x_hat = gathered_decode(params, values, &index, rows, k) + param(params, B_DEC);
    let mse = squared_error(x_hat.clone(), x.clone());
    let mut loss = mse.clone();
    let mut terms = vec![("mse_loss", mse)];
    if let Some((dead_row, dead_count)) = &context.dead
        && *dead_count > 0
    {
        // AuxK on the host-selected top dead latents (see `auxk_loss`).
        let dead_mask = read_f32(dead_row.clone().detach()).await?;
        let k_aux_full = (d_in / 2).max(1);
        let k_aux = k_aux_full.min(*dead_count);
        let scale = (*dead_count as f64 / k_aux_full as f64).min(1.0);
        let aux_chosen = host_topk_indices(&pre_host, rows, d_sae, k_aux, Some(&dead_mask));
        let residual = (x - x_hat.clone()).detach();
        let aux_index = index_tensor(&aux_chosen, &device);
        let aux_values = gathered_pre(params, &centred, &aux_index, rows, k_aux).clamp_min(0.0);
        let recons = gathered_decode(params, aux_values, &aux_index, rows, k_aux);
        let aux = squared_error(recons, residual) * scale;
        loss = loss + aux.clone() * context.aux_coefficient;
        terms.push(("auxk_loss", aux));
    }
    Ok(TrainingForward {
        activity: Activity::Host { l0_sum, fired },
        x_hat,
        loss,
        terms,
        smallest_kept: None,
    })
}

/// Host-chosen latents `[rows * k]` as an index tensor.
fn index_tensor(chosen: &[u32], device: &burn::tensor::Device) -> Tensor<1, Int> {
    int_tensor(
        chosen.iter().map(|&i| i64::from(i)).collect(),
        [chosen.len()],
        device,
    )
}

/// `pre[r, chosen[r, j]]` `[rows, k]`, with gradients to `W_enc`, `b_enc` and (through
/// `centred`) `b_dec`.
fn gathered_pre(
    params: &Params,
    centred: &Tensor<2>,
    index: &Tensor<1, Int>,
    rows: usize,
    k: usize,
) -> Tensor<2> {
    let w_enc = param(params, W_ENC); // [d_in, d_sae]
    let [d_in, d_sae] = w_enc.dims();
    let columns = w_enc
        .transpose()
        .select(0, index.clone())
        .reshape([rows, k, d_in]);
    let dots = (columns * centred.clone().reshape([rows, 1, d_in]))
        .sum_dim(2)
        .reshape([rows, k]);
    let bias = param(params, B_ENC)
        .reshape([d_sae])
        .select(0, index.clone())
        .reshape([rows, k]);
    dots + bias
}

/// `sum_j values[r, j] * W_dec[chosen[r, j]]` `[rows, d_in]` (no `b_dec`).
fn gathered_decode(
    params: &Params,
    values: Tensor<2>,
    index: &Tensor<1, Int>,
    rows: usize,
    k: usize,
) -> Tensor<2> {
    let w_dec = param(params, W_DEC); // [d_sae, d_in]
    let d_in = w_dec.dims()[1];
    let directions = w_dec.select(0, index.clone()).reshape([rows, k, d_in]);
    (directions * values.reshape([rows, k, 1]))
        .sum_dim(1)
        .reshape([rows, d_in])
}
