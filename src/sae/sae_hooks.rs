//! The hook points SAELens's `HookedSAETransformer` adds under an attached SAE, named
//! `{hook_name}.{point}`, e.g. `blocks.8.hook_resid_pre.hook_sae_acts_post`:
//!
//! - `hook_sae_input` `[n, d_in]`: the activation the SAE reads;
//! - `hook_sae_acts_pre` `[n, d_sae]`: pre-activations (after input normalisation);
//! - `hook_sae_acts_post` `[n, d_sae]`: feature activations;
//! - `hook_sae_recons` `[n, d_in]`: the decoder's output, before input normalisation is undone
//!   (as SAELens places it);
//! - `hook_sae_output` `[n, d_in]`: the reconstruction in the model's space;
//! - `hook_sae_error` `[n, d_in]`: input minus output.
//!
//! Read here as with SAELens's `use_error_term=True`: the model runs unchanged.

use burn::tensor::Tensor;

use super::Sae;
use crate::error::{Result, SaeplayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaeHookPoint {
    Input,
    ActsPre,
    ActsPost,
    Recons,
    Output,
    Error,
}

impl SaeHookPoint {
    pub const ALL: [SaeHookPoint; 6] = [
        Self::Input,
        Self::ActsPre,
        Self::ActsPost,
        Self::Recons,
        Self::Output,
        Self::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Input => "hook_sae_input",
            Self::ActsPre => "hook_sae_acts_pre",
            Self::ActsPost => "hook_sae_acts_post",
            Self::Recons => "hook_sae_recons",
            Self::Output => "hook_sae_output",
            Self::Error => "hook_sae_error",
        }
    }

    /// `Some(point)` when `full` names one of this SAE's points (`{hook_name}.{point}`), `None`
    /// when it is not an SAE hook at all, and an error for an SAE hook that is not this SAE's.
    pub fn parse(full: &str, sae_hook: Option<&str>) -> Result<Option<Self>> {
        let Some(point) = Self::ALL
            .into_iter()
            .find(|p| full.ends_with(&format!(".{}", p.name())))
        else {
            return Ok(None);
        };
        let base = &full[..full.len() - point.name().len() - 1];
        match sae_hook {
            Some(hook) if hook == base => Ok(Some(point)),
            Some(hook) => Err(SaeplayError::InvalidSetting(format!(
                "`{full}` is an SAE hook at `{base}`, but the SAE reads `{hook}`"
            ))),
            None => Err(SaeplayError::InvalidSetting(format!(
                "`{full}` is an SAE hook: give the SAE with --sae"
            ))),
        }
    }

    /// The value at this point for activations `x` `[n, d_in]`.
    pub fn compute(self, sae: &Sae, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Input => x,
            Self::ActsPre => sae.pre_activation(x),
            Self::ActsPost => sae.encode(x),
            Self::Recons => sae.decode(sae.encode(x)),
            Self::Output => sae.reconstruct(x),
            Self::Error => x.clone() - sae.reconstruct(x),
        }
    }
}
