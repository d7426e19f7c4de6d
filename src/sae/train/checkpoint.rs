//! Saving a trainer and resuming it exactly, in `optim`'s checkpoint layout.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::recipe::SaeTrainingConfig;
use super::trainer::{SaeTrainer, place};
use crate::backend::read_f32;
use crate::error::{Result, SaeplayError};
use crate::io::tensors::write_safetensors;
use crate::optim::checkpoint::{self, FIRST_MOMENT_PREFIX, SECOND_MOMENT_PREFIX, moment_key};
use crate::sae::SaeConfig;
use crate::sae::host_train::NamedHostParam;
use crate::sae::select::Selection;

impl SaeTrainer {
    /// Everything needed to resume exactly: parameters and Adam moments (safetensors) and the
    /// trainer's state (JSON).
    pub async fn checkpoint(&self) -> Result<TrainerCheckpoint> {
        let mut tensors = Vec::new();
        if let Some(host) = &self.host {
            for p in host.named() {
                tensors.push((p.name.to_string(), p.shape.to_vec(), p.values));
                for (prefix, values) in [
                    (FIRST_MOMENT_PREFIX, p.first),
                    (SECOND_MOMENT_PREFIX, p.second),
                ] {
                    tensors.push((moment_key(prefix, p.name), p.shape.to_vec(), values));
                }
            }
        }
        for (prefix, params) in [
            ("", &self.params),
            (FIRST_MOMENT_PREFIX, &self.moments.first),
            (SECOND_MOMENT_PREFIX, &self.moments.second),
        ] {
            for (name, tensor) in params {
                let tensor = if prefix.is_empty() {
                    tensor.clone().inner()
                } else {
                    tensor.clone()
                };
                let shape = tensor.dims().to_vec();
                tensors.push((format!("{prefix}{name}"), shape, read_f32(tensor).await?));
            }
        }
        let named: Vec<(&str, &[usize], &[f32])> = tensors
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
            .collect();
        let state = CheckpointState {
            config: self.config.clone(),
            sae_config: self.sae_config.clone(),
            input_scale: self.input_scale,
            step: self.step,
            tokens_seen: self.tokens_seen,
            since_fired: self.since_fired.clone(),
            batchtopk_threshold: self.batchtopk_threshold,
        };
        Ok(TrainerCheckpoint {
            tensors: write_safetensors(named.into_iter()),
            state: serde_json::to_string_pretty(&state).map_err(|source| SaeplayError::Json {
                what: "the trainer state",
                source,
            })?,
        })
    }

    /// The run a checkpoint belongs to, as it was configured, and the steps it had taken.
    pub fn run_of(checkpoint: &TrainerCheckpoint) -> Result<(SaeTrainingConfig, usize)> {
        let state: CheckpointState = serde_json::from_str(&checkpoint.state)
            .map_err(|e| SaeplayError::Checkpoint(format!("its state is not valid JSON: {e}")))?;
        Ok((state.config, state.step))
    }

    /// Resume from a checkpoint.
    pub fn restore(checkpoint: &TrainerCheckpoint, device: &Device) -> Result<Self> {
        let state: CheckpointState = serde_json::from_str(&checkpoint.state)
            .map_err(|e| SaeplayError::SaeFile(format!("the trainer state is not valid: {e}")))?;
        state.config.validate()?;
        let tensors = crate::io::tensors::read_f32_tensors(&checkpoint.tensors)
            .map_err(|e| SaeplayError::SaeFile(format!("the checkpoint: {e}")))?;
        let inner_device = device.clone();
        let autodiff = device.clone().autodiff();
        let expected = trained_shapes(&state.config, &state.sae_config);
        let mut named = Vec::new();
        for (name, shape) in expected {
            let load = |key: String| -> Result<Vec<f32>> {
                Ok(checkpoint::take(&tensors, &key, &shape)?.values.clone())
            };
            named.push(NamedHostParam {
                name,
                shape,
                values: load(name.to_string())?,
                first: load(moment_key(FIRST_MOMENT_PREFIX, name))?,
                second: load(moment_key(SECOND_MOMENT_PREFIX, name))?,
            });
        }
        let (params, moments, host) = place(&state.sae_config, named, &inner_device, false);
        if state.since_fired.len() != state.sae_config.d_sae {
            return Err(SaeplayError::SaeFile(
                "the trainer state's dead-latent counts do not match d_sae".into(),
            ));
        }
        Ok(Self {
            selection: Selection::for_device(&inner_device),
            config: state.config,
            sae_config: state.sae_config,
            device: autodiff,
            inner_device,
            params,
            moments,
            input_scale: state.input_scale,
            step: state.step,
            tokens_seen: state.tokens_seen,
            since_fired: state.since_fired,
            batchtopk_threshold: state.batchtopk_threshold,
            host,
        })
    }
}

/// A trainer saved to resume later.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerCheckpoint {
    /// Parameters (training names) and Adam moments (`adam_m.*`, `adam_v.*`).
    pub tensors: Vec<u8>,
    /// [`CheckpointState`] as JSON.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    config: SaeTrainingConfig,
    sae_config: SaeConfig,
    input_scale: f32,
    step: usize,
    tokens_seen: usize,
    since_fired: Vec<usize>,
    batchtopk_threshold: Option<f64>,
}

/// The parameters an architecture trains, with their `[rows, cols]` shapes (vectors as
/// `[1, n]`): the SAE's own, less BatchTopK's threshold, which is a running average.
fn trained_shapes(config: &SaeTrainingConfig, sae: &SaeConfig) -> Vec<(&'static str, [usize; 2])> {
    let behaviour = config.architecture.behaviour();
    let untrained = |name: &&'static str| {
        behaviour.vectors().contains(name) && !behaviour.trained_vectors().contains(name)
    };
    sae.parameter_shapes()
        .into_iter()
        .filter(|(name, _)| !untrained(name))
        .map(|(name, shape)| match shape[..] {
            [rows, cols] => (name, [rows, cols]),
            _ => (name, [1, shape[0]]),
        })
        .collect()
}
