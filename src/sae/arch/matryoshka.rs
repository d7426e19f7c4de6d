//! Matryoshka BatchTopK SAE (Bussmann et al. 2025; SAELens's `matryoshka_batchtopk`): a
//! BatchTopK SAE whose latents are ordered in nested prefixes (`matryoshka_widths`, the last
//! being `d_sae`), and every prefix must reconstruct the input on its own. The BatchTopK choice
//! is made once over all latents; the loss is the full reconstruction's (with AuxK) plus, per
//! inner prefix `w`, `|| x - (b_dec + f[:, :w] @ W_dec[:w]) ||^2` (summed over `d_in`, averaged
//! over the batch), added as SAELens adds them, unweighted. General concepts settle in the
//! early latents, which is what it was made for: less absorption. For inference it is a
//! BatchTopK SAE, saved as JumpReLU with the running threshold.

use burn::tensor::Tensor;

use super::{
    Activity, B_DEC, Params, TrainingContext, TrainingForward, W_DEC, param, squared_error,
};
use crate::error::Result;

pub async fn training_forward(
    params: &Params,
    x: Tensor<2>,
    k: usize,
    widths: &[usize],
    context: &TrainingContext,
) -> Result<TrainingForward> {
    let mut forward = super::batchtopk::training_forward(params, x.clone(), k, context).await?;
    let Activity::Dense(acts) = &forward.activity else {
        unreachable!("BatchTopK keeps its activations on the device")
    };
    let [rows, d_sae] = acts.dims();
    let w_dec = param(params, W_DEC);
    let d_in = w_dec.dims()[1];
    let mut partial = param(params, B_DEC).expand([rows, d_in]);
    let mut inner_total: Option<Tensor<1>> = None;
    let mut start = 0;
    for &width in widths.iter().filter(|&&w| w < d_sae) {
        let block = acts
            .clone()
            .slice([0..rows, start..width])
            .matmul(w_dec.clone().slice([start..width, 0..d_in]));
        partial = partial + block;
        let inner = squared_error(partial.clone(), x.clone());
        inner_total = Some(match inner_total {
            Some(total) => total + inner,
            None => inner,
        });
        start = width;
    }
    if let Some(inner) = inner_total {
        forward.loss = forward.loss + inner.clone();
        forward.terms.push(("inner_mse_loss", inner));
    }
    Ok(forward)
}
