//! What every model family shares: the checked input, the key/value cache, the hook bookkeeping
//! of one forward call, and [`Model`], the one type everything above the forward runs.

use burn::tensor::{Device, Tensor};

use super::dims::ModelDims;
use super::gpt2::Gpt2;
use super::hooks::{HookContext, HookPoint, Hooks, PatchOp};
use super::host_ops::HostKv;
use super::llama::Llama;
use crate::backend::{float_tensor, read_f32_now};
use crate::error::{Result, SaeplayError};

/// Additive mask for future positions; exp() of it is exactly 0 in f32.
const MASKED: f32 = -1.0e9;

/// Keys and values of the positions seen so far, per layer: `[batch, kv_head, pos, d_head]`.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    pub(crate) layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// The same on host buffers, for a model whose forward runs on them (`host_gpt2`).
    pub(crate) host: Vec<HostKv>,
    pub(crate) len: usize,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            host: Vec::new(),
            len: 0,
        }
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Make the cache fit a model of `n_layers` (a fresh one if it was made for another).
    pub(crate) fn fit(&mut self, n_layers: usize) {
        if self.layers.len() != n_layers {
            *self = Self::new(n_layers);
        }
    }
}

/// Which positions get logits: all (analysis) or the last only (generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    AllPositions,
    LastPosition,
}

/// Activations captured by a forward, in the order it reached them.
pub type Captured = Vec<(HookPoint, Tensor<3>)>;

pub struct ForwardOutput {
    /// `[batch, pos, vocab]`, or `[batch, 1, vocab]` with [`LogitsFor::LastPosition`].
    pub logits: Tensor<3>,
    /// Captured activations in the order the forward reached them, each `[batch, pos, d]`.
    pub captured: Vec<(HookPoint, Tensor<3>)>,
}

impl ForwardOutput {
    pub fn activation(&self, hook: HookPoint) -> Option<&Tensor<3>> {
        self.captured
            .iter()
            .find(|(h, _)| *h == hook)
            .map(|(_, t)| t)
    }
}

/// A model of any supported family, on one device. Cloning is cheap (tensors are shared handles).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a handful exist at once; boxing would buy nothing
pub enum Model {
    Gpt2(Gpt2),
    Llama(Llama),
}

impl From<Gpt2> for Model {
    fn from(model: Gpt2) -> Self {
        Self::Gpt2(model)
    }
}

impl From<Llama> for Model {
    fn from(model: Llama) -> Self {
        Self::Llama(model)
    }
}

impl Model {
    /// Bytes the weights take in memory as this model holds them (packed matrices as packed).
    pub fn weight_bytes(&self) -> u64 {
        match self {
            Self::Gpt2(model) => 4 * model.dims().parameter_count as u64,
            Self::Llama(model) => model.weight_bytes(),
        }
    }

    pub fn dims(&self) -> &ModelDims {
        match self {
            Self::Gpt2(model) => model.dims(),
            Self::Llama(model) => model.dims(),
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            Self::Gpt2(model) => model.device(),
            Self::Llama(model) => model.device(),
        }
    }

    /// The unembedding `[d_model, vocab]` (what the final norm's output multiplies): a view,
    /// or unpacked when the model keeps it packed.
    pub fn unembed(&self) -> Tensor<2> {
        match self {
            Self::Gpt2(model) => model.unembed(),
            Self::Llama(model) => model.unembed(),
        }
    }

    /// `x @ W_U`: `x` `[n, d_model]` to `[n, vocab]`, without the unembedding's bias (the
    /// logit lens of directions in the residual stream).
    pub fn unembed_directions(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Gpt2(model) => model.unembed_directions(x),
            Self::Llama(model) => model.unembed_directions(x),
        }
    }

    /// This model with inference on burn's tensor ops even on the CPU (see
    /// [`Gpt2::burn_forward_only`] and [`Llama::burn_forward_only`]).
    pub fn burn_forward_only(self) -> Self {
        match self {
            Self::Gpt2(model) => Self::Gpt2(model.burn_forward_only()),
            Self::Llama(model) => Self::Llama(model.burn_forward_only()),
        }
    }

    /// Whether inference runs on host buffers (see `host_gpt2` and `host_llama`).
    pub fn has_host_forward(&self) -> bool {
        match self {
            Self::Gpt2(model) => model.has_host_forward(),
            Self::Llama(model) => model.has_host_forward(),
        }
    }

    /// This model for attribution: on its device's autodiff twin, with attention patterns and
    /// normalisation scales frozen (see `Gpt2::frozen_for_attribution`).
    /// A model kept packed (a GGUF's on the CPU) is unpacked: attribution is for small models
    /// or a machine with room.
    pub fn frozen_for_attribution(&self) -> Result<Self> {
        match self {
            Self::Gpt2(model) => Ok(Self::Gpt2(model.frozen_for_attribution())),
            Self::Llama(model) => Ok(Self::Llama(model.frozen_for_attribution()?)),
        }
    }

    /// A full forward pass with no cache.
    pub fn forward(
        &self,
        batch: &[Vec<u32>],
        hooks: &Hooks,
        logits_for: LogitsFor,
    ) -> Result<ForwardOutput> {
        let mut cache = KvCache::new(self.dims().n_layers);
        self.forward_cached(batch, &mut cache, hooks, logits_for)
    }

    /// A forward pass over new positions that continue the sequence already in `cache`.
    pub fn forward_cached(
        &self,
        batch: &[Vec<u32>],
        cache: &mut KvCache,
        hooks: &Hooks,
        logits_for: LogitsFor,
    ) -> Result<ForwardOutput> {
        match self {
            Self::Gpt2(model) => model.forward_cached(batch, cache, hooks, logits_for),
            Self::Llama(model) => model.forward_cached(batch, cache, hooks, logits_for),
        }
    }
}

impl Model {
    /// Capture `hooks` on `batch`, running only the blocks they need (TransformerLens's
    /// `stop_at_layer`): an SAE at block 3 of 30 costs a tenth of a full forward.
    pub fn capture(&self, batch: &[Vec<u32>], hooks: &[HookPoint]) -> Result<Captured> {
        self.capture_patched(batch, &Hooks::capture(hooks.iter().copied()))
    }

    /// [`Model::capture`] with patches: the forward stops after the last captured hook's block.
    pub fn capture_patched(&self, batch: &[Vec<u32>], hooks: &Hooks) -> Result<Captured> {
        self.capture_input(Input::tokens(self.dims(), batch, 0)?, hooks)
    }

    /// [`Model::capture_patched`] from `resid`, the residual entering block `layer` (see
    /// [`Model::forward_from`]): only the blocks from `layer` to the last captured hook run.
    pub fn capture_patched_from(
        &self,
        layer: usize,
        resid: Tensor<3>,
        hooks: &Hooks,
    ) -> Result<Captured> {
        self.capture_input(Input::residual(self.dims(), hooks, layer, resid)?, hooks)
    }

    fn capture_input(&self, input: Input<Tensor<3>>, hooks: &Hooks) -> Result<Captured> {
        let needed = hooks
            .capture
            .iter()
            .map(|hook| match hook {
                HookPoint::Embed | HookPoint::PosEmbed => Some(0),
                HookPoint::LnFinalNormalized => None,
                // A block's input is seen once the blocks before it have run.
                HookPoint::ResidPre(l) => Some(*l),
                other => other.layer().map(|l| l + 1),
            })
            .try_fold(input.first_layer(), |most, layers| {
                layers.map(|l| most.max(l))
            });
        let mut cache = KvCache::new(self.dims().n_layers);
        let (_, captured) = match self {
            Self::Gpt2(model) => {
                model.forward_until(input, &mut cache, hooks, LogitsFor::LastPosition, needed)?
            }
            Self::Llama(model) => {
                model.forward_until(input, &mut cache, hooks, LogitsFor::LastPosition, needed)?
            }
        };
        Ok(captured)
    }

    /// A forward from `resid`, the residual stream entering block `layer` (`[batch, pos,
    /// d_model]`, positions from 0; `layer` may be `n_layers`, the final norm's input), as
    /// TransformerLens's `start_at_layer`: the blocks before it are not run. Runs that differ
    /// from a clean one only from some block on (an SAE spliced in, an ablation) start there
    /// from the clean run's residual. Hooks before `layer` are an error, not ignored.
    pub fn forward_from(
        &self,
        layer: usize,
        resid: Tensor<3>,
        hooks: &Hooks,
        logits_for: LogitsFor,
    ) -> Result<ForwardOutput> {
        let input = Input::residual(self.dims(), hooks, layer, resid)?;
        let mut cache = KvCache::new(self.dims().n_layers);
        let (logits, captured) = match self {
            Self::Gpt2(model) => model.forward_until(input, &mut cache, hooks, logits_for, None)?,
            Self::Llama(model) => {
                model.forward_until(input, &mut cache, hooks, logits_for, None)?
            }
        };
        let logits = logits.ok_or_else(|| {
            SaeplayError::InvalidSetting("a forward that stops early has no logits".into())
        })?;
        Ok(ForwardOutput { logits, captured })
    }
}

/// What a forward starts from.
pub(crate) enum Start<R> {
    /// Token ids, `[batch * pos]`, checked against the vocabulary.
    Tokens(Vec<i64>),
    /// The residual stream entering block `layer`, `[batch, pos, d_model]` (TransformerLens's
    /// `start_at_layer`): the embeddings and the blocks before it are not run.
    Residual { layer: usize, resid: R },
}

/// The checked input of one forward call: its shape and where it starts. `R` is the residual's
/// storage: a tensor, or a host buffer for the host forwards.
pub(crate) struct Input<R> {
    pub batch: usize,
    pub positions: usize,
    pub start: Start<R>,
}

impl<R> Input<R> {
    /// The first block the forward runs.
    pub(crate) fn first_layer(&self) -> usize {
        match self.start {
            Start::Tokens(_) => 0,
            Start::Residual { layer, .. } => layer,
        }
    }
}

impl Input<Tensor<3>> {
    pub(crate) fn tokens(dims: &ModelDims, batch: &[Vec<u32>], offset: usize) -> Result<Self> {
        let (batch, positions, ids) = check_ids(dims, batch, offset)?;
        Ok(Self {
            batch,
            positions,
            start: Start::Tokens(ids),
        })
    }

    /// The residual entering block `layer` (`n_layers` for the final norm), checked against the
    /// model and against hooks the forward would never reach.
    pub(crate) fn residual(
        dims: &ModelDims,
        hooks: &Hooks,
        layer: usize,
        resid: Tensor<3>,
    ) -> Result<Self> {
        if layer > dims.n_layers {
            return Err(SaeplayError::InvalidSetting(format!(
                "a forward cannot start at block {layer}: the model has {} blocks",
                dims.n_layers
            )));
        }
        let [batch, positions, width] = resid.dims();
        if batch == 0 || positions == 0 {
            return Err(SaeplayError::EmptyInput);
        }
        if width != dims.d_model {
            return Err(SaeplayError::PatchShape {
                hook: HookPoint::ResidPre(layer).to_string(),
                expected: vec![batch, positions, dims.d_model],
                found: vec![batch, positions, width],
            });
        }
        if positions > dims.n_ctx {
            return Err(SaeplayError::TooLong {
                len: positions,
                max: dims.n_ctx,
            });
        }
        let before = |hook: HookPoint| match hook {
            HookPoint::Embed | HookPoint::PosEmbed => true,
            HookPoint::ResidPre(l) => l < layer,
            HookPoint::LnFinalNormalized => false,
            other => other.layer().is_some_and(|l| l < layer),
        };
        let hook_points = hooks
            .capture
            .iter()
            .chain(hooks.patches.iter().map(|p| &p.hook));
        if let Some(hook) = hook_points.copied().find(|&hook| before(hook)) {
            return Err(SaeplayError::InvalidSetting(format!(
                "{hook} comes before block {layer}, where this forward starts"
            )));
        }
        Ok(Self {
            batch,
            positions,
            start: Start::Residual { layer, resid },
        })
    }

    /// The same input with the residual on host buffers (read at once: host forwards run on a
    /// CPU device).
    pub(crate) fn into_host(self) -> Result<Input<Vec<f32>>> {
        let start = match self.start {
            Start::Tokens(ids) => Start::Tokens(ids),
            Start::Residual { layer, resid } => Start::Residual {
                layer,
                resid: read_f32_now(resid).ok_or_else(|| {
                    SaeplayError::Device(
                        "the residual a CPU model starts from must be on the CPU".into(),
                    )
                })?,
            },
        };
        Ok(Input {
            batch: self.batch,
            positions: self.positions,
            start,
        })
    }
}

/// Check a batch of token ids against the model: `(batch, pos, ids flattened)`.
pub(crate) fn check_ids(
    dims: &ModelDims,
    batch: &[Vec<u32>],
    offset: usize,
) -> Result<(usize, usize, Vec<i64>)> {
    let seq = batch.first().map(Vec::len).unwrap_or(0);
    if seq == 0 {
        return Err(SaeplayError::EmptyInput);
    }
    if batch.iter().any(|row| row.len() != seq) {
        return Err(SaeplayError::InvalidSetting(
            "every sequence in a batch must have the same length".into(),
        ));
    }
    if offset + seq > dims.n_ctx {
        return Err(SaeplayError::TooLong {
            len: offset + seq,
            max: dims.n_ctx,
        });
    }
    let mut flat = Vec::with_capacity(batch.len() * seq);
    for &id in batch.iter().flatten() {
        if id as usize >= dims.d_vocab {
            return Err(SaeplayError::TokenOutOfRange {
                id,
                vocab: dims.d_vocab,
            });
        }
        flat.push(i64::from(id));
    }
    Ok((batch.len(), seq, flat))
}

/// Check every patch's tensor against the activation it patches, before the forward starts.
pub(crate) fn check_patches(
    dims: &ModelDims,
    hooks: &Hooks,
    batch: usize,
    end: usize,
) -> Result<()> {
    for patch in &hooks.patches {
        let width = patch.hook.width(dims);
        let (tensor, broadcast_ok) = match &patch.op {
            PatchOp::Replace(t) => (t, false),
            PatchOp::Add(t) => (t, true),
            PatchOp::Map(_) => continue,
        };
        let [pb, pt, pd] = tensor.dims();
        let broadcast = broadcast_ok && pb == 1 && pt == 1 && pd == width;
        if !(broadcast || (pb == batch && pt >= end && pd == width)) {
            return Err(SaeplayError::PatchShape {
                hook: patch.hook.to_string(),
                expected: vec![batch, end, width],
                found: vec![pb, pt, pd],
            });
        }
    }
    Ok(())
}

/// The causal mask `[1, 1, new, total]` for `new` positions after `total - new` cached ones, or
/// `None` when one new position may see everything.
pub(crate) fn causal_mask(new: usize, total: usize, device: &Device) -> Option<Tensor<4>> {
    if new <= 1 {
        return None;
    }
    let offset = total - new;
    let mask: Vec<f32> = (0..new)
        .flat_map(|i| (0..total).map(move |j| if j > offset + i { MASKED } else { 0.0 }))
        .collect();
    Some(float_tensor(mask, [1, 1, new, total], device))
}

/// The hook bookkeeping of one forward call.
pub(crate) struct HookRun<'a> {
    hooks: &'a Hooks,
    offset: usize,
    pub(crate) captured: Vec<(HookPoint, Tensor<3>)>,
}

impl<'a> HookRun<'a> {
    pub(crate) fn new(hooks: &'a Hooks, offset: usize) -> Self {
        Self {
            hooks,
            offset,
            captured: Vec::new(),
        }
    }

    /// Apply the patches at `hook` in order, then capture the value that flows on.
    pub(crate) fn site(&mut self, hook: HookPoint, mut x: Tensor<3>) -> Result<Tensor<3>> {
        if self.hooks.is_empty() {
            return Ok(x);
        }
        for patch in self.hooks.patches.iter().filter(|p| p.hook == hook) {
            let [b, t, d] = x.dims();
            let window = |tensor: &Tensor<3>| {
                tensor
                    .clone()
                    .slice([0..b, self.offset..self.offset + t, 0..d])
            };
            x = match &patch.op {
                PatchOp::Replace(values) => window(values),
                PatchOp::Add(delta) if delta.dims()[..2] == [1, 1] => x + delta.clone(),
                PatchOp::Add(delta) => x + window(delta),
                PatchOp::Map(function) => {
                    let context = HookContext {
                        hook,
                        position_offset: self.offset,
                    };
                    let y = function.apply(x, context);
                    if y.dims() != [b, t, d] {
                        return Err(SaeplayError::PatchShape {
                            hook: hook.to_string(),
                            expected: vec![b, t, d],
                            found: y.dims().to_vec(),
                        });
                    }
                    y
                }
            };
        }
        if self.hooks.capture.contains(&hook) {
            self.captured.push((hook, x.clone()));
        }
        Ok(x)
    }
}

/// `x @ rows^T` for `x` `[n, k]` and `rows` `[m, k]`, computed as `(rows @ x^T)^T` so the large
/// `rows` is read in its stored layout: burn's CPU backends first copy a transposed operand into
/// standard layout, which for an unembedding would be 113-154 MB per forward. The transposed
/// operand and result here are `n` rows.
pub(crate) fn times_transposed(x: Tensor<2>, rows: &Tensor<2>) -> Tensor<2> {
    rows.clone().matmul(x.transpose()).transpose()
}
