//! TransformerLens hook points: where a forward pass can be read (captured) or written (patched).
//!
//! Every activation at a hook is `[batch, pos, d]`; `d` depends on the hook (see [`HookPoint::width`]).
//! `blocks.{l}.attn.hook_z` is TransformerLens's `[batch, pos, head, d_head]` flattened to
//! `[batch, pos, head * d_head]` so that every hook has the same rank.

use std::fmt;
use std::sync::Arc;

use burn::tensor::Tensor;

use super::dims::ModelDims;
use crate::error::{Result, SaeplayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookPoint {
    /// Token embeddings `wte[ids]` (`embed_tokens[ids]` in Llama).
    Embed,
    /// Position embeddings `wpe[pos]` (GPT-2 only: rotary models have none).
    PosEmbed,
    /// Residual stream entering block l (= Hugging Face `hidden_states[l]`).
    ResidPre(usize),
    /// Attention output per head before `c_proj`, heads flattened.
    AttnZ(usize),
    /// Output of the attention sub-layer (after `c_proj`).
    AttnOut(usize),
    /// Residual stream between attention and MLP.
    ResidMid(usize),
    /// MLP neurons after the non-linearity (Llama: `act(gate) * up`), width d_mlp.
    MlpPost(usize),
    /// Output of the MLP sub-layer.
    MlpOut(usize),
    /// Residual stream leaving block l.
    ResidPost(usize),
    /// Final layer norm's normalised value, before its gain and bias (as in TransformerLens).
    LnFinalNormalized,
}

impl HookPoint {
    /// All hook points of a model, in the order a forward pass reaches them.
    pub fn all(dims: &ModelDims) -> Vec<HookPoint> {
        let mut hooks = vec![HookPoint::Embed];
        if dims.has_pos_embed() {
            hooks.push(HookPoint::PosEmbed);
        }
        for l in 0..dims.n_layers {
            hooks.extend([
                HookPoint::ResidPre(l),
                HookPoint::AttnZ(l),
                HookPoint::AttnOut(l),
                HookPoint::ResidMid(l),
                HookPoint::MlpPost(l),
                HookPoint::MlpOut(l),
                HookPoint::ResidPost(l),
            ]);
        }
        hooks.push(HookPoint::LnFinalNormalized);
        hooks
    }

    /// Parse a TransformerLens name, checking the layer exists in this model.
    pub fn parse(name: &str, dims: &ModelDims) -> Result<Self> {
        let unknown = || SaeplayError::UnknownHook {
            name: name.to_string(),
            examples: format!(
                "hook_embed, blocks.0.hook_resid_pre, blocks.{}.hook_resid_post, ln_final.hook_normalized (run `saeplay info` for all)",
                dims.n_layers.saturating_sub(1)
            ),
        };
        let trimmed = name.trim();
        let hook = match trimmed {
            "hook_embed" => HookPoint::Embed,
            "hook_pos_embed" if dims.has_pos_embed() => HookPoint::PosEmbed,
            "ln_final.hook_normalized" => HookPoint::LnFinalNormalized,
            _ => {
                let rest = trimmed.strip_prefix("blocks.").ok_or_else(unknown)?;
                let (layer, site) = rest.split_once('.').ok_or_else(unknown)?;
                if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || layer.len() > 6
                {
                    return Err(unknown());
                }
                let l: usize = layer.parse().map_err(|_| unknown())?;
                if l >= dims.n_layers {
                    return Err(unknown());
                }
                match site {
                    "hook_resid_pre" => HookPoint::ResidPre(l),
                    "attn.hook_z" => HookPoint::AttnZ(l),
                    "hook_attn_out" => HookPoint::AttnOut(l),
                    "hook_resid_mid" => HookPoint::ResidMid(l),
                    "mlp.hook_post" => HookPoint::MlpPost(l),
                    "hook_mlp_out" => HookPoint::MlpOut(l),
                    "hook_resid_post" => HookPoint::ResidPost(l),
                    _ => return Err(unknown()),
                }
            }
        };
        Ok(hook)
    }

    /// Parse a comma-separated list of names.
    pub fn parse_list(names: &str, dims: &ModelDims) -> Result<Vec<Self>> {
        names
            .split(',')
            .filter(|name| !name.trim().is_empty())
            .map(|name| Self::parse(name, dims))
            .collect()
    }

    /// The last dimension of the activation at this hook.
    pub fn width(self, dims: &ModelDims) -> usize {
        match self {
            HookPoint::MlpPost(_) => dims.d_mlp,
            HookPoint::AttnZ(_) => dims.n_heads * dims.d_head,
            _ => dims.d_model,
        }
    }

    /// Where a run patched at this hook can start from an unpatched run of the same tokens
    /// ([`super::Model::forward_from`], TransformerLens's `start_at_layer`): this hook's block and
    /// the hook holding the residual that enters it (the last block's output for the final norm).
    /// `None` for the embeddings, which only a full forward reaches.
    pub fn resume_point(self, n_layers: usize) -> Option<(usize, HookPoint)> {
        match self {
            HookPoint::Embed | HookPoint::PosEmbed => None,
            HookPoint::LnFinalNormalized => n_layers
                .checked_sub(1)
                .map(|last| (n_layers, HookPoint::ResidPost(last))),
            other => other.layer().map(|l| (l, HookPoint::ResidPre(l))),
        }
    }

    pub fn layer(self) -> Option<usize> {
        match self {
            HookPoint::ResidPre(l)
            | HookPoint::AttnZ(l)
            | HookPoint::AttnOut(l)
            | HookPoint::ResidMid(l)
            | HookPoint::MlpPost(l)
            | HookPoint::MlpOut(l)
            | HookPoint::ResidPost(l) => Some(l),
            _ => None,
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::Embed => write!(f, "hook_embed"),
            HookPoint::PosEmbed => write!(f, "hook_pos_embed"),
            HookPoint::ResidPre(l) => write!(f, "blocks.{l}.hook_resid_pre"),
            HookPoint::AttnZ(l) => write!(f, "blocks.{l}.attn.hook_z"),
            HookPoint::AttnOut(l) => write!(f, "blocks.{l}.hook_attn_out"),
            HookPoint::ResidMid(l) => write!(f, "blocks.{l}.hook_resid_mid"),
            HookPoint::MlpPost(l) => write!(f, "blocks.{l}.mlp.hook_post"),
            HookPoint::MlpOut(l) => write!(f, "blocks.{l}.hook_mlp_out"),
            HookPoint::ResidPost(l) => write!(f, "blocks.{l}.hook_resid_post"),
            HookPoint::LnFinalNormalized => write!(f, "ln_final.hook_normalized"),
        }
    }
}

/// Where in the sequence a hook function is being called: `position_offset` is the absolute
/// position of the first token in this call (non-zero during cached generation).
#[derive(Debug, Clone, Copy)]
pub struct HookContext {
    pub hook: HookPoint,
    pub position_offset: usize,
}

/// A user function at a hook: gets the activation `[batch, pos, d]`, returns its replacement of
/// the same shape. SAE splicing, clamping and ablation are built on this.
pub trait HookFn: Send + Sync {
    fn apply(&self, activation: Tensor<3>, context: HookContext) -> Tensor<3>;
}

impl<F> HookFn for F
where
    F: Fn(Tensor<3>, HookContext) -> Tensor<3> + Send + Sync,
{
    fn apply(&self, activation: Tensor<3>, context: HookContext) -> Tensor<3> {
        self(activation, context)
    }
}

/// What a patch does to the activation at its hook.
#[derive(Clone)]
pub enum PatchOp {
    /// Replace it. The tensor is `[batch, positions, d]` for absolute positions from 0; during
    /// cached generation the slice for the current positions is used.
    Replace(Tensor<3>),
    /// Add to it. `[1, 1, d]` broadcasts over batch and positions (steering); `[batch, positions,
    /// d]` adds per position like `Replace`.
    Add(Tensor<3>),
    /// Any function of the activation.
    Map(Arc<dyn HookFn>),
}

#[derive(Clone)]
pub struct Patch {
    pub hook: HookPoint,
    pub op: PatchOp,
}

/// What a forward pass should capture and patch. Empty by default: then the forward does no
/// hook work beyond one comparison per site.
#[derive(Clone, Default)]
pub struct Hooks {
    pub capture: Vec<HookPoint>,
    pub patches: Vec<Patch>,
}

impl Hooks {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn capture(hooks: impl IntoIterator<Item = HookPoint>) -> Self {
        Self {
            capture: hooks.into_iter().collect(),
            patches: Vec::new(),
        }
    }

    pub fn with_patch(mut self, hook: HookPoint, op: PatchOp) -> Self {
        self.patches.push(Patch { hook, op });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.capture.is_empty() && self.patches.is_empty()
    }
}
