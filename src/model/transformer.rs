//! [`Model`], the one type everything above the forward runs: GPT-2 or a Llama-family model,
//! with the forward calls (full, cached, from a block's residual, capture that stops early).

use burn::tensor::{Device, Tensor};

use super::dims::ModelDims;
use super::forward::{self, Captured, ForwardOutput, Input, KvCache, LogitsFor};
use super::gpt2::Gpt2;
use super::hooks::{HookPoint, Hooks};
use super::llama::Llama;
use crate::error::{Result, SaeplayError};

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

    /// This model with inference on burn's tensor ops even on the CPU (benchmarks and tests
    /// compare the two forwards).
    pub fn burn_forward_only(self) -> Self {
        match self {
            Self::Gpt2(model) => Self::Gpt2(model.burn_forward_only()),
            Self::Llama(model) => Self::Llama(model.burn_forward_only()),
        }
    }

    /// Whether inference runs on host buffers (a CPU device; not after `burn_forward_only`).
    pub fn has_host_forward(&self) -> bool {
        match self {
            Self::Gpt2(model) => model.has_host_forward(),
            Self::Llama(model) => model.has_host_forward(),
        }
    }

    /// This model for attribution: its weights as constants (no gradient is kept for them) on
    /// its device's autodiff twin, with attention patterns and normalisation scales cut from the
    /// gradient (`forward::tensor_ops::frozen_if`): a gradient through it is circuit-tracer's,
    /// linear in the residual stream apart from the MLPs. A model kept packed (a GGUF's on the
    /// CPU) is unpacked: attribution is for small models or a machine with room.
    pub fn frozen_for_attribution(&self) -> Result<Self> {
        Ok(match self {
            Self::Gpt2(model) => Self::Gpt2(model.frozen_on_autodiff()),
            Self::Llama(model) => Self::Llama(model.frozen_on_autodiff()?),
        })
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
        let input = Input::tokens(self.dims(), batch, cache.offset_for(self.dims().n_layers))?;
        with_logits(self.forward_until(input, cache, hooks, logits_for, None)?)
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
        let (_, captured) =
            self.forward_until(input, &mut cache, hooks, LogitsFor::LastPosition, needed)?;
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
        with_logits(self.forward_until(input, &mut cache, hooks, logits_for, None)?)
    }

    /// The one forward, on this model's family: see [`forward::forward_until`].
    fn forward_until(
        &self,
        input: Input<Tensor<3>>,
        cache: &mut KvCache,
        hooks: &Hooks,
        logits_for: LogitsFor,
        stop_at_layer: Option<usize>,
    ) -> Result<(Option<Tensor<3>>, Captured)> {
        match self {
            Self::Gpt2(model) => {
                forward::forward_until(model, input, cache, hooks, logits_for, stop_at_layer)
            }
            Self::Llama(model) => {
                forward::forward_until(model, input, cache, hooks, logits_for, stop_at_layer)
            }
        }
    }
}

/// The output of a forward that ran every block (one that stops early has no logits).
fn with_logits((logits, captured): (Option<Tensor<3>>, Captured)) -> Result<ForwardOutput> {
    let logits = logits.ok_or_else(|| {
        SaeplayError::InvalidSetting("a forward that stops early has no logits".into())
    })?;
    Ok(ForwardOutput { logits, captured })
}
