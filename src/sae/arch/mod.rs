//! The six SAE architectures over one shared base, one small file each (as in SAELens).
//!
//! Shapes: `x` `[batch, d_in]`; `W_enc` `[d_in, d_sae]`; `W_dec` `[d_sae, d_in]`; vectors are
//! kept on the device as `[1, n]` rows so that they broadcast over the batch. Parameter names are
//! SAELens's, so files map one to one.
//!
//! Each file holds everything about its architecture behind [`SaeArchitecture`]: the stored
//! vectors and their initial values, a synchronous `encode` (inference; safe inside a hook
//! function and on WebGPU: no read-back), the activation on host rows, an async
//! `training_forward` (the loss and its terms, with autodiff), the step on host buffers, and
//! how SAELens's cfg.json names it, read and written. Each file's [`Kind`] names the
//! architecture, builds it and says which SAELens cfg.json it reads; [`KINDS`] lists them (the
//! table [`Architecture::parse`] and the SAELens reader go through), and
//! [`Architecture::behaviour`] is the one place that picks the file for an [`Architecture`].
//! The shared host training code is in `sae::host_train`.

pub mod batchtopk;
pub mod gated;
pub mod jumprelu;
pub mod matryoshka;
pub mod standard;
pub mod topk;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use burn::tensor::Tensor;

use super::Architecture;
use super::host_train::{HostSae, HostStep, HostStepError, HostStepFigures};
use super::select::{Scope, Selection, topk_mask_by_bisection, topk_mask_on_host};
use super::train::SaeTrainingConfig;
use crate::error::{Result, SaeplayError};

pub const W_ENC: &str = "W_enc";
pub const B_ENC: &str = "b_enc";
pub const W_DEC: &str = "W_dec";
pub const B_DEC: &str = "b_dec";
pub const THRESHOLD: &str = "threshold";
pub const B_GATE: &str = "b_gate";
pub const R_MAG: &str = "r_mag";
pub const B_MAG: &str = "b_mag";

/// Parameters by SAELens name; vectors are `[1, n]`.
pub type Params = BTreeMap<&'static str, Tensor<2>>;

/// An SAE's `[d_sae]` vectors on the host, by SAELens name.
pub(crate) type HostVectors = BTreeMap<&'static str, Vec<f32>>;

/// A future that need not be `Send` (the page's are not).
pub(crate) type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Everything about one architecture. Every file of this folder implements it over the shared
/// base below; what an SAE does that differs by architecture goes through it.
pub(crate) trait SaeArchitecture {
    /// Its names, how it is built, and which SAELens cfg.json it reads.
    fn kind(&self) -> &'static Kind;

    /// The number of latents kept per token (the top-k family); none for the others.
    fn k(&self) -> Option<usize> {
        None
    }

    /// The `[d_sae]` vectors stored beside `W_enc`, `W_dec` and `b_dec`, by SAELens name.
    fn vectors(&self) -> &'static [&'static str];

    /// The vectors training learns: all of them but BatchTopK's running threshold.
    fn trained_vectors(&self) -> &'static [&'static str] {
        self.vectors()
    }

    /// A trained vector's initial value (JumpReLU's threshold starts at the recipe's).
    fn initial_value(&self, _vector: &str, _recipe: &SaeTrainingConfig) -> f32 {
        0.0
    }

    /// How training moves one of its trained vectors beyond Adam's step (JumpReLU's threshold:
    /// the recipe's learning-rate multiplier, kept at or above 0).
    fn vector_update(&self, _vector: &str, _recipe: &SaeTrainingConfig) -> VectorUpdate {
        VectorUpdate::default()
    }

    /// Whether the decoder rows keep unit norm (from initialisation on, after every update).
    fn unit_norm_decoder(&self) -> bool {
        false
    }

    /// The default sparsity coefficient for inputs normalised to mean norm sqrt(d_in).
    fn default_sparsity_coefficient(&self) -> f64 {
        0.0
    }

    /// Whether AuxK revives dead latents in training.
    fn uses_auxk(&self) -> bool {
        false
    }

    /// Whether inference reads a threshold kept as a running average of training's smallest
    /// kept activation (the BatchTopK family).
    fn keeps_running_threshold(&self) -> bool {
        false
    }

    /// Matryoshka's nested widths from the recipe; none for the others.
    fn nested_widths(&self, _recipe: &SaeTrainingConfig, _d_sae: usize) -> Result<Vec<usize>> {
        Ok(Vec::new())
    }

    /// Keys it adds to a cfg.json it is written to (TopK's `k`).
    fn write_cfg(&self, _cfg: &mut serde_json::Value) {}

    /// What a training recipe must hold for it, beyond what every recipe must (JumpReLU's
    /// bandwidth and initial threshold); the refusal's sentence otherwise.
    fn check_recipe(&self, _recipe: &SaeTrainingConfig) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Whether its active latents' values are the plain pre-activation
    /// `(x - b_dec) @ W_enc + b_enc`, as attribution graphs read them (not Gated's magnitude
    /// path).
    fn plain_encoder(&self) -> bool {
        true
    }

    /// The encoder's biases, each with the log-scale vector its path multiplies `W_enc` by
    /// (Gated's magnitude path reads `W_enc * exp(r_mag)`): where `apply_b_dec_to_input: false`
    /// folds `b_dec @ W_enc`.
    fn encoder_biases(&self) -> &'static [(&'static str, Option<&'static str>)] {
        &[(B_ENC, None)]
    }

    /// The pre-activations SAELens's `hook_sae_acts_pre` shows.
    fn pre_activation(&self, params: &Params, x: Tensor<2>) -> Tensor<2> {
        pre_activation(params, x)
    }

    /// Inference: synchronous and free of read-backs, for hook functions and WebGPU.
    fn encode(&self, params: &Params, x: Tensor<2>) -> Tensor<2>;

    /// Inference outside hooks, where selecting on the host may be faster.
    fn encode_async<'a>(
        &'a self,
        params: &'a Params,
        x: Tensor<2>,
        _selection: Selection,
    ) -> LocalFuture<'a, Result<Tensor<2>>> {
        Box::pin(async move { Ok(self.encode(params, x)) })
    }

    /// Inference on host rows: `product` `[n, d_sae]` is `(x - b_dec) @ W_enc`, plus `b_enc`
    /// where [`SaeArchitecture::encoder_biases`] names it alone; it becomes the activations.
    fn activate_host_rows(&self, product: &mut [f32], d_sae: usize, vectors: &HostVectors);

    /// The training forward on burn's ops, for autodiff: the loss and its named terms.
    /// `nested_widths` are [`SaeArchitecture::nested_widths`].
    fn training_forward<'a>(
        &'a self,
        params: &'a Params,
        x: Tensor<2>,
        nested_widths: &'a [usize],
        context: &'a TrainingContext,
    ) -> LocalFuture<'a, Result<TrainingForward>>;

    /// The training step's loss and gradients on host buffers (`training_forward` written out
    /// by hand; the update is shared).
    fn host_step(
        &self,
        host: &mut HostSae,
        x: &[f32],
        step: &HostStep,
    ) -> std::result::Result<HostStepFigures, HostStepError>;
}

/// How training moves a trained vector: Adam's step at `lr * lr_multiplier`, then kept at or
/// above `floor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VectorUpdate {
    pub lr_multiplier: f64,
    pub floor: Option<f32>,
}

impl Default for VectorUpdate {
    fn default() -> Self {
        Self {
            lr_multiplier: 1.0,
            floor: None,
        }
    }
}

/// One architecture's names, how it is built from a name's `k`, and which SAELens cfg.json it
/// reads. Each file of this folder has one; [`KINDS`] lists them.
pub(crate) struct Kind {
    /// SAELens's name for it, and ours.
    pub name: &'static str,
    /// Other names it is accepted by (`relu` for Standard).
    pub aliases: &'static [&'static str],
    /// The architecture a cfg.json it is written to names (SAELens saves the BatchTopK family
    /// for inference as JumpReLU).
    pub written_as: &'static str,
    /// The architecture, with `k` where it needs one.
    pub build: fn(k: Option<usize>) -> Result<Architecture>,
    /// Whether a SAELens cfg.json that names these is this architecture.
    pub reads_saelens: fn(&SaelensNames) -> bool,
}

impl Kind {
    /// Whether `name` (any case, spaces around it ignored) is this architecture's.
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        self.name == name || self.aliases.contains(&name.as_str())
    }

    /// Whether SAELens saves it under another architecture's name (the BatchTopK family, as
    /// JumpReLU): a cfg.json it is written to then records it as `training_architecture`.
    pub fn written_as_another(&self) -> bool {
        self.written_as != self.name
    }

    /// The reading of a cfg.json that names this architecture in its `architecture` key.
    pub fn named_by(&self, names: &SaelensNames) -> bool {
        names.architecture.is_some_and(|name| self.is_named(name))
    }
}

/// What a SAELens cfg.json names: its `architecture` and its activation function
/// (`activation_fn_str`, or the older `activation_fn`), either possibly absent.
pub(crate) struct SaelensNames<'a> {
    pub architecture: Option<&'a str>,
    pub activation: Option<&'a str>,
}

impl SaelensNames<'_> {
    /// SAELens's older TopK files: `architecture: "standard"` with a `topk` activation.
    pub fn standard_with_topk_activation(&self) -> bool {
        self.architecture == Some("standard") && self.activation == Some("topk")
    }
}

/// Every architecture, in the order their names are listed to a person.
pub(crate) const KINDS: [&Kind; 6] = [
    &standard::KIND,
    &topk::KIND,
    &batchtopk::KIND,
    &gated::KIND,
    &jumprelu::KIND,
    &matryoshka::KIND,
];

/// `k` for an architecture that needs one (at least 1).
pub(crate) fn need_k(k: Option<usize>, name: &str) -> Result<usize> {
    k.filter(|&k| k > 0).ok_or_else(|| {
        SaeplayError::InvalidSetting(format!("the {name} architecture needs k >= 1"))
    })
}

impl Architecture {
    /// The file that implements this architecture.
    pub(crate) fn behaviour(self) -> Box<dyn SaeArchitecture> {
        match self {
            Self::Standard => Box::new(standard::Standard),
            Self::TopK { k } => Box::new(topk::TopK { k }),
            Self::BatchTopK { k } => Box::new(batchtopk::BatchTopK { k }),
            Self::Gated => Box::new(gated::Gated),
            Self::JumpRelu => Box::new(jumprelu::JumpRelu),
            Self::MatryoshkaBatchTopK { k } => Box::new(matryoshka::MatryoshkaBatchTopK { k }),
        }
    }

    /// SAELens's name for it.
    pub fn name(self) -> &'static str {
        self.behaviour().kind().name
    }

    /// Parse `standard`, `relu`, `topk`, `batchtopk`, `gated`, `jumprelu` or
    /// `matryoshka_batchtopk`; `k` is needed by the top-k architectures.
    pub fn parse(name: &str, k: Option<usize>) -> Result<Self> {
        match KINDS.iter().find(|kind| kind.is_named(name)) {
            Some(kind) => (kind.build)(k),
            None => Err(Self::unknown(name)),
        }
    }

    /// The refusal of a name no architecture has.
    pub(crate) fn unknown(name: &str) -> SaeplayError {
        let names: Vec<&str> = KINDS.iter().map(|kind| kind.name).collect();
        let (last, rest) = names.split_last().expect("there are architectures");
        SaeplayError::InvalidSetting(format!(
            "unknown SAE architecture `{}`: use {} or {last}",
            name.trim().to_ascii_lowercase(),
            rest.join(", ")
        ))
    }

    /// The architecture a SAELens cfg.json describes, with `k` from it; `None` where no
    /// architecture reads these names.
    pub(crate) fn from_saelens(names: &SaelensNames, k: Option<usize>) -> Option<Result<Self>> {
        KINDS
            .iter()
            .find(|kind| (kind.reads_saelens)(names))
            .map(|kind| (kind.build)(k))
    }

    /// The `k` of the top-k architectures.
    pub fn k(self) -> Option<usize> {
        self.behaviour().k()
    }
}

/// `values` `[n, d_sae]` row by row, over every core natively.
pub(crate) fn for_each_host_row(
    values: &mut [f32],
    d_sae: usize,
    work: impl Fn(&mut [f32]) + Send + Sync,
) {
    crate::kernels::for_each_chunk(values, HOST_ROWS_PER_TASK * d_sae, |_, part| {
        part.chunks_exact_mut(d_sae).for_each(&work)
    });
}

/// Rows per task in the element-wise host loops.
const HOST_ROWS_PER_TASK: usize = 64;

/// JumpReLU's activation on host rows (also the BatchTopK family's inference form).
pub(crate) fn threshold_host_rows(product: &mut [f32], threshold: &[f32]) {
    for_each_host_row(product, threshold.len(), |row| {
        for (v, &t) in row.iter_mut().zip(threshold) {
            *v = if *v > t { v.max(0.0) } else { 0.0 };
        }
    });
}

/// A parameter that validation guarantees is present.
pub(crate) fn param(params: &Params, name: &'static str) -> Tensor<2> {
    params
        .get(name)
        .unwrap_or_else(|| panic!("SAE parameter `{name}` is validated on load"))
        .clone()
}

/// `(x - b_dec) @ W_enc + b_enc`: the pre-activation of every architecture but Gated.
pub fn pre_activation(params: &Params, x: Tensor<2>) -> Tensor<2> {
    (x - param(params, B_DEC)).matmul(param(params, W_ENC)) + param(params, B_ENC)
}

/// `f @ W_dec + b_dec`.
pub fn decode(params: &Params, feature_acts: Tensor<2>) -> Tensor<2> {
    feature_acts.matmul(param(params, W_DEC)) + param(params, B_DEC)
}

/// `||W_dec[i]||` as a `[1, d_sae]` row.
pub fn decoder_norms(params: &Params) -> Tensor<2> {
    let w_dec = param(params, W_DEC);
    let d_sae = w_dec.dims()[0];
    w_dec.powi_scalar(2).sum_dim(1).sqrt().reshape([1, d_sae])
}

/// `sum_j (a - b)^2` per row, averaged over rows: SAELens's MSE loss.
pub fn squared_error(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    (a - b).powi_scalar(2).sum_dim(1).mean()
}

/// What a training step needs to know beyond the batch.
#[derive(Debug, Clone)]
pub struct TrainingContext {
    pub selection: Selection,
    /// The sparsity penalty's coefficient at this step (after its warm-up): L1 for Standard and
    /// Gated, L0 for JumpReLU.
    pub sparsity_coefficient: f64,
    /// AuxK's coefficient (TopK, BatchTopK).
    pub aux_coefficient: f64,
    /// Dead latents as a `[1, d_sae]` 0/1 row, and how many there are (for AuxK).
    pub dead: Option<(Tensor<2>, usize)>,
    /// JumpReLU's straight-through bandwidth.
    pub bandwidth: f64,
}

/// Which latents were active in a training batch.
pub enum Activity {
    /// The feature activations `[batch, d_sae]` on the device.
    Dense(Box<Tensor<2>>),
    /// Already known on the host (sparse TopK): the sum of active counts over rows, and how
    /// many rows each latent was active in.
    Host { l0_sum: f32, fired: Vec<f32> },
}

/// One training forward: the activations, reconstruction, total loss and its named terms.
pub struct TrainingForward {
    pub activity: Activity,
    pub x_hat: Tensor<2>,
    pub loss: Tensor<1>,
    pub terms: Vec<(&'static str, Tensor<1>)>,
    /// BatchTopK: the smallest activation kept in this batch (for its inference threshold).
    pub smallest_kept: Option<Tensor<1>>,
}

/// A top-k mask of `values` (detached), by the context's selection.
pub(crate) async fn select(
    values: Tensor<2>,
    k: usize,
    scope: Scope,
    selection: Selection,
) -> Result<Tensor<2>> {
    let values = values.detach();
    match selection {
        Selection::Host => topk_mask_on_host(values, k, scope).await,
        Selection::Bisection => Ok(topk_mask_by_bisection(values, k, scope)),
    }
}

/// The top-k architectures' loss: MSE plus, when latents are dead, AuxK; with named terms.
pub(crate) async fn mse_with_auxk(
    params: &Params,
    pre: &Tensor<2>,
    x: &Tensor<2>,
    x_hat: &Tensor<2>,
    context: &TrainingContext,
) -> Result<(Tensor<1>, Vec<(&'static str, Tensor<1>)>)> {
    let mse = squared_error(x_hat.clone(), x.clone());
    let mut loss = mse.clone();
    let mut terms = vec![("mse_loss", mse)];
    if let Some(aux) = auxk_loss(params, pre, x, x_hat, context).await? {
        loss = loss + aux.clone() * context.aux_coefficient;
        terms.push(("auxk_loss", aux));
    }
    Ok((loss, terms))
}

/// AuxK (Gao et al. 2024, as in SAELens): the dead latents' top `d_in / 2` activations must
/// reconstruct the detached residual `x - x_hat`; scaled down while few latents are dead.
pub(crate) async fn auxk_loss(
    params: &Params,
    pre: &Tensor<2>,
    x: &Tensor<2>,
    x_hat: &Tensor<2>,
    context: &TrainingContext,
) -> Result<Option<Tensor<1>>> {
    let Some((dead, dead_count)) = &context.dead else {
        return Ok(None);
    };
    if *dead_count == 0 {
        return Ok(None);
    }
    let d_in = x.dims()[1];
    let k_aux_full = (d_in / 2).max(1);
    let k_aux = k_aux_full.min(*dead_count);
    let scale = (*dead_count as f64 / k_aux_full as f64).min(1.0);
    let residual = (x.clone() - x_hat.clone()).detach();
    // Live latents are pushed just below the row's smallest value before selecting (not to
    // -inf: bisection needs a finite, natural range to resolve the dead latents' values).
    let [rows, d_sae] = pre.dims();
    let values = pre.clone().detach();
    let floor = (values.clone().min_dim(1) - 1.0).expand([rows, d_sae]);
    let live = dead.clone().lower_elem(0.5).expand([rows, d_sae]);
    let candidates = values.mask_where(live, floor);
    let mask = select(candidates, k_aux, Scope::PerRow, context.selection).await? * dead.clone();
    let aux_acts = pre.clone().clamp_min(0.0) * mask;
    let recons = aux_acts.matmul(param(params, W_DEC));
    Ok(Some(squared_error(recons, residual) * scale))
}

#[cfg(test)]
mod tests {
    use super::{KINDS, SaelensNames};
    use crate::sae::Architecture;

    /// Every architecture's names parse to it, and no SAELens cfg.json is read by two.
    #[test]
    fn each_name_and_saelens_cfg_is_one_architecture() {
        for kind in KINDS {
            for name in std::iter::once(kind.name).chain(kind.aliases.iter().copied()) {
                let architecture = Architecture::parse(name, Some(3)).unwrap();
                assert_eq!(architecture.name(), kind.name);
            }
        }
        let architectures = [None, Some("standard"), Some("relu"), Some("matryoshka")]
            .into_iter()
            .chain(KINDS.iter().map(|kind| Some(kind.name)))
            .chain([Some("other")]);
        for architecture in architectures {
            for activation in [None, Some("relu"), Some("topk"), Some("other")] {
                let names = SaelensNames {
                    architecture,
                    activation,
                };
                let readers = KINDS.iter().filter(|kind| (kind.reads_saelens)(&names));
                assert!(readers.count() <= 1, "{architecture:?} {activation:?}");
            }
        }
        // What each writes reads back as the architecture it names.
        for kind in KINDS {
            let names = SaelensNames {
                architecture: Some(kind.written_as),
                activation: None,
            };
            let read = Architecture::from_saelens(&names, Some(3))
                .unwrap()
                .unwrap();
            assert_eq!(read.name(), kind.written_as);
        }
    }
}
