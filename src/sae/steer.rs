//! Interventions at an SAE's hook, as patches for a forward pass or a generation.
//!
//! - add: `x + strength * W_dec[i]` (steering; no encoding needed);
//! - clamp: set feature i to a value while keeping the SAE's reconstruction error. Since
//!   `x = x_hat + error` and `x_hat` is linear in the features, this is
//!   `x + (value - f_i(x)) * W_dec[i]` (the "Golden Gate" method);
//! - ablate: clamp to zero;
//! - orthogonal (Neuronpedia's `ORTHOGONAL_DECOMP`): with `P` the projection onto the decoder
//!   row's direction, `(I - P) x + coefficient * P x` (0 removes the direction, 1 changes
//!   nothing, -1 flips it);
//! - projection cap (Neuronpedia's `PROJECTION_CAP`): with `u` the unit decoder direction,
//!   `x - max(0, x . u - cap) u`, so the component along `u` is at most `cap`;
//! - splice: replace `x` by the SAE's reconstruction (the error is dropped).
//!
//! Several interventions combine in one patch; clamps and ablations all read the features of the
//! unpatched activation. For an SAE with `layer_norm` input normalisation a decoder row is in
//! normalised units, so every change is multiplied by the token's `std`: exactly what decoding
//! with one more (or less) of the feature changes in the model's activation.

use std::sync::Arc;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::Sae;
use super::arch::W_DEC;
use crate::backend::{float_tensor, int_tensor};
use crate::error::{Result, SaeplayError};
use crate::model::{HookContext, PatchOp};

/// What to do to one feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum InterventionMode {
    Add {
        strength: f32,
    },
    Clamp {
        value: f32,
    },
    Ablate,
    Orthogonal {
        coefficient: f32,
    },
    #[serde(rename = "projection_cap")]
    ProjectionCap {
        cap: f32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    pub feature: usize,
    #[serde(flatten)]
    pub mode: InterventionMode,
}

/// Why one intervention's parts were refused; each message is a sentence fragment the edges
/// (CLI, link, steering rows) put in their own sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterventionError {
    #[error("feature `{0}` is not a whole number")]
    Feature(String),
    #[error("this SAE has features 0 to {last}, not {feature}", last = .d_sae - 1)]
    FeatureOutOfRange { feature: usize, d_sae: usize },
    #[error("`{0}` is not a finite number")]
    Value(String),
    #[error("unknown intervention `{0}`: use add, clamp, ablate, orthogonal or projection_cap")]
    Mode(String),
}

impl InterventionMode {
    pub const NAMES: [&'static str; 5] = ["add", "clamp", "ablate", "orthogonal", "projection_cap"];

    pub fn name(&self) -> &'static str {
        match self {
            InterventionMode::Add { .. } => "add",
            InterventionMode::Clamp { .. } => "clamp",
            InterventionMode::Ablate => "ablate",
            InterventionMode::Orthogonal { .. } => "orthogonal",
            InterventionMode::ProjectionCap { .. } => "projection_cap",
        }
    }

    /// The strength (add), value (clamp), coefficient (orthogonal) or cap; ablation has none.
    pub fn amount(&self) -> Option<f32> {
        match *self {
            InterventionMode::Add { strength } => Some(strength),
            InterventionMode::Clamp { value } => Some(value),
            InterventionMode::Ablate => None,
            InterventionMode::Orthogonal { coefficient } => Some(coefficient),
            InterventionMode::ProjectionCap { cap } => Some(cap),
        }
    }

    /// The mode called `name` with `amount` (read only by the modes that take one).
    pub fn from_parts(name: &str, amount: &str) -> std::result::Result<Self, InterventionError> {
        Ok(match name {
            "add" => InterventionMode::Add {
                strength: parse_amount(amount)?,
            },
            "clamp" => InterventionMode::Clamp {
                value: parse_amount(amount)?,
            },
            "ablate" => InterventionMode::Ablate,
            "orthogonal" => InterventionMode::Orthogonal {
                coefficient: parse_amount(amount)?,
            },
            "projection_cap" => InterventionMode::ProjectionCap {
                cap: parse_amount(amount)?,
            },
            other => return Err(InterventionError::Mode(other.to_string())),
        })
    }
}

/// A feature number as typed: a whole number, below `d_sae`.
pub fn parse_feature(text: &str, d_sae: usize) -> std::result::Result<usize, InterventionError> {
    let feature: usize = text
        .trim()
        .parse()
        .map_err(|_| InterventionError::Feature(text.to_string()))?;
    if feature >= d_sae {
        return Err(InterventionError::FeatureOutOfRange { feature, d_sae });
    }
    Ok(feature)
}

/// A strength or value as typed: a finite number.
pub fn parse_amount(text: &str) -> std::result::Result<f32, InterventionError> {
    text.trim()
        .parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| InterventionError::Value(text.to_string()))
}

impl Intervention {
    /// One intervention from its parts: the feature (below `d_sae`), the mode's name, and the
    /// amount (read only for add and clamp). Every reader of interventions goes through here.
    pub fn from_parts(
        feature: &str,
        mode: &str,
        amount: &str,
        d_sae: usize,
    ) -> std::result::Result<Self, InterventionError> {
        let feature = parse_feature(feature, d_sae)?;
        let mode = InterventionMode::from_parts(mode, amount)?;
        Ok(Self { feature, mode })
    }

    /// Parse the CLI's `FEATURE:STRENGTH` (add), `FEATURE:VALUE` or `FEATURE=VALUE` (clamp),
    /// `FEATURE:COEFFICIENT` (orthogonal), `FEATURE:CAP` (projection cap) or `FEATURE` (ablate).
    pub fn parse(text: &str, mode: &str) -> Result<Self> {
        let bad = |why: String| {
            SaeplayError::InvalidSetting(format!("`{text}` is not a valid intervention: {why}"))
        };
        let (feature, amount) = match mode {
            "add" => text
                .split_once(':')
                .ok_or_else(|| bad("write FEATURE:STRENGTH, e.g. 12:4".into()))?,
            "clamp" => text
                .split_once(':')
                .or_else(|| text.split_once('='))
                .ok_or_else(|| bad("write FEATURE:VALUE, e.g. 12:8".into()))?,
            "orthogonal" => text
                .split_once(':')
                .ok_or_else(|| bad("write FEATURE:COEFFICIENT, e.g. 12:0".into()))?,
            "projection_cap" => text
                .split_once(':')
                .ok_or_else(|| bad("write FEATURE:CAP, e.g. 12:2".into()))?,
            _ => (text, ""),
        };
        Self::from_parts(feature, mode, amount, usize::MAX).map_err(|e| match e {
            InterventionError::Mode(_) => SaeplayError::InvalidSetting(e.to_string()),
            other => bad(other.to_string()),
        })
    }
}

/// One patch that applies all `interventions` at the SAE's hook.
pub fn intervention_patch(sae: &Sae, interventions: &[Intervention]) -> Result<PatchOp> {
    let d_sae = sae.config.d_sae;
    let d_in = sae.config.d_in;
    for i in interventions {
        if i.feature >= d_sae {
            return Err(SaeplayError::InvalidSetting(format!(
                "feature {} does not exist: this SAE has features 0 to {}",
                i.feature,
                d_sae - 1
            )));
        }
        if !i.mode.amount().unwrap_or(0.0).is_finite() {
            return Err(SaeplayError::InvalidSetting(
                "intervention strengths and values must be finite numbers".into(),
            ));
        }
    }
    let device = sae.device().clone();
    let w_dec = sae.param(W_DEC);
    // Additions fold into one constant vector.
    let mut add = vec![0.0f32; d_sae];
    let mut clamp_features = Vec::new();
    let mut clamp_values = Vec::new();
    // Direction modes: `(unit direction [1, d_in], mode)`.
    let mut directional = Vec::new();
    for i in interventions {
        match i.mode {
            InterventionMode::Orthogonal { .. } | InterventionMode::ProjectionCap { .. } => {
                let index = int_tensor(vec![i.feature as i64], [1], &device);
                let row = w_dec.clone().select(0, index); // [1, d_in]
                let norm = row.clone().powi_scalar(2).sum().sqrt().clamp_min(1e-12);
                directional.push((row / norm.reshape([1, 1]), i.mode));
            }
            InterventionMode::Add { strength } => add[i.feature] += strength,
            InterventionMode::Clamp { value } => {
                clamp_features.push(i.feature as i64);
                clamp_values.push(value);
            }
            InterventionMode::Ablate => {
                clamp_features.push(i.feature as i64);
                clamp_values.push(0.0);
            }
        }
    }
    let added = float_tensor(add, [1, d_sae], &device).matmul(w_dec.clone()); // [1, d_in]
    let normalized = !sae.config.normalize_activations.is_none();
    if clamp_features.is_empty() && directional.is_empty() && !normalized {
        return Ok(PatchOp::Add(added.reshape([1, 1, d_in])));
    }
    let clamps = (!clamp_features.is_empty()).then(|| {
        let m = clamp_features.len();
        let index = int_tensor(clamp_features, [m], &device);
        let directions = w_dec.select(0, index.clone()); // [m, d_in]
        let targets = float_tensor(clamp_values, [1, m], &device);
        (index, directions, targets)
    });
    let sae = sae.clone();
    Ok(PatchOp::Map(Arc::new(
        move |activation: Tensor<3>, _: HookContext| {
            let [b, t, d] = activation.dims();
            let flat = activation.reshape([b * t, d]);
            let mut delta = flat.zeros_like() + added.clone(); // [n, d_in]
            if let Some((index, directions, targets)) = &clamps {
                let current = sae.encode(flat.clone()).select(1, index.clone()); // [n, m]
                delta = delta + (targets.clone() - current).matmul(directions.clone());
            }
            // A layer_norm SAE's decoder lives in normalised units: scale back per token.
            if let Some(scale) = sae.direction_scale(flat.clone()) {
                delta = delta * scale;
            }
            // Direction modes act on the model's own activation, so no rescaling.
            for (unit, mode) in &directional {
                let along = flat.clone().matmul(unit.clone().transpose()); // [n, 1]
                let change = match *mode {
                    InterventionMode::Orthogonal { coefficient } => along * (coefficient - 1.0),
                    InterventionMode::ProjectionCap { cap } => (along - cap).clamp_min(0.0).neg(),
                    _ => unreachable!("only direction modes are kept here"),
                };
                delta = delta + change * unit.clone();
            }
            (flat + delta).reshape([b, t, d])
        },
    )))
}

/// A patch that splices the SAE's reconstruction in at every position.
pub fn splice_patch(sae: &Sae) -> PatchOp {
    let sae = sae.clone();
    PatchOp::Map(Arc::new(move |activation: Tensor<3>, _: HookContext| {
        super::metrics::reconstruct_3d(&sae, activation)
    }))
}
