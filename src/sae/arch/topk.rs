//! TopK SAE (Gao et al. 2024): exactly the k largest pre-activations of each token are kept
//! (ReLU'd); AuxK revives dead latents. No sparsity penalty.

use burn::tensor::Tensor;

use super::{
    Params, TrainingContext, TrainingForward, auxk_loss, decode, pre_activation, select,
    squared_error,
};
use crate::error::Result;
use crate::sae::select::{Scope, topk_mask_by_bisection};

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
    let pre = pre_activation(params, x.clone());
    let mask = select(pre.clone(), k, Scope::PerRow, context.selection).await?;
    let feature_acts = pre.clone().clamp_min(0.0) * mask;
    let x_hat = decode(params, feature_acts.clone());
    let mse = squared_error(x_hat.clone(), x.clone());
    let mut loss = mse.clone();
    let mut terms = vec![("mse_loss", mse)];
    if let Some(aux) = auxk_loss(params, &pre, &x, &x_hat, context).await? {
        loss = loss + aux.clone() * context.aux_coefficient;
        terms.push(("auxk_loss", aux));
    }
    Ok(TrainingForward {
        feature_acts,
        x_hat,
        loss,
        terms,
        smallest_kept: None,
    })
}
