//! What every forward shares, whatever the family and storage: the checked input, the key/value
//! cache, the hook sites, and [`run_blocks`], the one block skeleton that places them. A family
//! supplies its computation between the sites as [`Stages`]: on burn tensors (the GPU path and
//! every gradient) and on host buffers (the CPU path's inference), and says which runs through
//! [`FamilyForward`]; [`forward_until`] is the forward for every family.

mod cache;
mod input;
mod output;
mod sites;
pub(crate) mod tensor_ops;

use burn::tensor::{Device, Tensor};

pub use cache::KvCache;
pub(crate) use cache::TensorKv;
pub(crate) use input::Input;
pub use output::{Captured, ForwardOutput, LogitsFor};
pub(crate) use sites::Sites;

use super::dims::ModelDims;
use super::hooks::{HookPoint, Hooks};
use crate::error::Result;
use crate::kernels::{HostKv, add_into};
use cache::CacheLayers;
use input::{Start, check_patches};
use sites::{HookRun, HostSites};

/// The shape of one forward call: `batch` sequences of `positions` new positions after `offset`
/// cached ones.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub batch: usize,
    pub positions: usize,
    pub offset: usize,
}

impl Span {
    /// Rows of a host activation in this call: sequences times new positions.
    pub(crate) fn rows(self) -> usize {
        self.batch * self.positions
    }
}

/// One family's forward on one storage: the computation between the hook sites. Activations
/// are `[batch, pos, width]`: a tensor, or a row-major host buffer.
/// An activation of either storage, and the one residual addition on it.
pub(crate) trait Activation {
    /// `self + x`, element by element.
    fn plus(self, x: Self) -> Self;
}

impl Activation for Tensor<3> {
    fn plus(self, x: Self) -> Self {
        self + x
    }
}

impl Activation for Vec<f32> {
    fn plus(mut self, x: Self) -> Self {
        add_into(&mut self, &x);
        self
    }
}

pub(crate) trait Stages {
    type Act: Activation;
    /// The token embeddings of ids already checked against the vocabulary.
    fn token_embed(&mut self, ids: Vec<i64>) -> Result<Self::Act>;
    /// The learned position embeddings of this call's positions, `[batch, pos, d]` (GPT-2);
    /// `None` where positions are rotary (they enter in the attention).
    fn position_embed(&mut self) -> Option<Self::Act>;
    /// `embed` plus the position embeddings when no hook sees them (a storage may add them
    /// without making the `[batch, pos, d]` activation).
    fn add_position_embed(&mut self, embed: Self::Act) -> Self::Act {
        match self.position_embed() {
            Some(positions) => self.add(embed, positions),
            None => embed,
        }
    }
    /// Block `layer`'s attention on its normalised input, over the cached and new positions
    /// (the cache extended): `z`, heads flattened.
    fn attention(&mut self, layer: usize, resid: &Self::Act) -> Self::Act;
    /// The attention's output projection.
    fn attn_out(&mut self, layer: usize, z: Self::Act) -> Self::Act;
    /// The MLP's hidden activation, on the block's normalised residual.
    fn mlp_post(&mut self, layer: usize, resid: &Self::Act) -> Self::Act;
    /// The MLP's output projection.
    fn mlp_out(&mut self, layer: usize, hidden: Self::Act) -> Self::Act;
    /// `resid + x`.
    fn add(&mut self, resid: Self::Act, x: Self::Act) -> Self::Act {
        resid.plus(x)
    }
    /// The final norm before its gain, of the positions whose logits are asked for.
    fn final_normalized(&mut self, resid: Self::Act, logits_for: LogitsFor) -> Self::Act;
    /// The final norm's gain (and bias), then the unembedding: `[batch, pos, vocab]`.
    fn logits(&mut self, normalized: Self::Act) -> Result<Tensor<3>>;
}

/// The forward's skeleton over every family and storage, with each hook site in its place: from
/// `start` through blocks up to `stop_at_layer` (TransformerLens's `stop_at_layer`: no logits,
/// only what was captured on the way) or all `n_layers` and the unembedding.
pub(crate) fn run_blocks<S: Stages>(
    stages: &mut S,
    sites: &mut impl Sites<S::Act>,
    start: Start<S::Act>,
    n_layers: usize,
    logits_for: LogitsFor,
    stop_at_layer: Option<usize>,
) -> Result<Option<Tensor<3>>> {
    let (first, mut resid) = match start {
        Start::Tokens(ids) => {
            let embed = sites.site(HookPoint::Embed, stages.token_embed(ids)?)?;
            let resid = if !sites.touches(HookPoint::PosEmbed) {
                stages.add_position_embed(embed)
            } else if let Some(positions) = stages.position_embed() {
                let positions = sites.site(HookPoint::PosEmbed, positions)?;
                stages.add(embed, positions)
            } else {
                embed
            };
            (0, resid)
        }
        Start::Residual { layer, resid } => (layer, resid),
    };
    let layers = stop_at_layer.unwrap_or(n_layers).min(n_layers);
    for l in first..layers {
        resid = sites.site(HookPoint::ResidPre(l), resid)?;
        let z = stages.attention(l, &resid);
        let z = sites.site(HookPoint::AttnZ(l), z)?;
        let attn_out = sites.site(HookPoint::AttnOut(l), stages.attn_out(l, z))?;
        resid = sites.site(HookPoint::ResidMid(l), stages.add(resid, attn_out))?;
        let hidden = stages.mlp_post(l, &resid);
        let hidden = sites.site(HookPoint::MlpPost(l), hidden)?;
        let mlp_out = sites.site(HookPoint::MlpOut(l), stages.mlp_out(l, hidden))?;
        resid = sites.site(HookPoint::ResidPost(l), stages.add(resid, mlp_out))?;
    }
    if layers < n_layers {
        // The next block's input is all that is left to see; the cache is incomplete: only
        // capture stops early.
        sites.site(HookPoint::ResidPre(layers), resid)?;
        return Ok(None);
    }
    let normalized = stages.final_normalized(resid, logits_for);
    let normalized = sites.site(HookPoint::LnFinalNormalized, normalized)?;
    stages.logits(normalized).map(Some)
}

/// A model family's two forwards: on burn tensors, and (on a CPU device) on host buffers.
pub(crate) trait FamilyForward {
    fn dims(&self) -> &ModelDims;
    fn device(&self) -> &Device;
    /// Whether inference runs on host buffers.
    fn has_host_forward(&self) -> bool;
    /// The burn forward over `cache`'s layers.
    fn tensor_stages<'a>(
        &'a self,
        cache: &'a mut [TensorKv],
        span: Span,
    ) -> impl Stages<Act = Tensor<3>> + 'a;
    /// The host forward over `cache`'s layers; `None` without [`FamilyForward::has_host_forward`].
    fn host_stages<'a>(
        &'a self,
        cache: &'a mut [HostKv],
        span: Span,
    ) -> Option<impl Stages<Act = Vec<f32>> + 'a>;
}

/// The forward of any family: after the positions in `cache`, on host buffers where the model
/// runs them and the cache is theirs, else on burn's ops; stopped after `stop_at_layer` blocks
/// when given (then without logits, and the cache is left as it was).
pub(crate) fn forward_until(
    model: &impl FamilyForward,
    input: Input<Tensor<3>>,
    cache: &mut KvCache,
    hooks: &Hooks,
    logits_for: LogitsFor,
    stop_at_layer: Option<usize>,
) -> Result<(Option<Tensor<3>>, Captured)> {
    let dims = model.dims();
    let n_layers = dims.n_layers;
    let (offset, layers) = cache.layers_for(n_layers, model.has_host_forward())?;
    let span = Span {
        batch: input.batch,
        positions: input.positions,
        offset,
    };
    check_patches(dims, hooks, span.batch, offset + span.positions)?;
    let (logits, captured) = match layers {
        CacheLayers::Host(layers) => {
            let mut stages = model
                .host_stages(layers, span)
                .expect("a host cache is made only for a model with a host forward");
            let mut sites = HostSites::new(hooks, offset, dims, span.batch, model.device());
            let start = input.into_host()?.start;
            let logits = run_blocks(
                &mut stages,
                &mut sites,
                start,
                n_layers,
                logits_for,
                stop_at_layer,
            )?;
            (logits, sites.into_captured())
        }
        CacheLayers::Tensors(layers) => {
            let mut stages = model.tensor_stages(layers, span);
            let mut sites = HookRun::new(hooks, offset);
            let logits = run_blocks(
                &mut stages,
                &mut sites,
                input.start,
                n_layers,
                logits_for,
                stop_at_layer,
            )?;
            (logits, sites.into_captured())
        }
    };
    if logits.is_some() {
        cache.advance(span.positions);
    }
    Ok((logits, captured))
}
