//! The checked input of one forward call: token ids, or the residual entering a block; and the
//! checks of ids and patches against the model before anything runs.

use burn::tensor::Tensor;

use crate::backend::read_f32_now;
use crate::error::{Result, SaeplayError};
use crate::model::dims::ModelDims;
use crate::model::hooks::{HookPoint, Hooks, PatchOp};

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
