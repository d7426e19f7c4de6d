//! The messages between the page and its Web Worker, one enum per direction. They cross as JSON
//! text; the large byte buffers (SAE weights, both ways) travel beside the message as
//! `Uint8Array`s, in the order [`ToWorker::Features`] and [`FromWorker::Done`] name, because
//! megabytes of weights as JSON number arrays would be slow to write and parse.

use serde::{Deserialize, Serialize};

use crate::model::WeightProcessing;
use crate::sae::explain::FeatureExplanation;
use crate::sae::features::FeatureData;
use crate::sae::metrics::SaeMetrics;
use crate::sae::store::Corpus;
use crate::sae::train::{Progress, SaeTrainingConfig};
use crate::ui::feature_list::FeatureList;

/// Page -> worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ToWorker {
    /// Train one SAE on the model at `model_base`, processed with `processing`; with `resume`,
    /// go on from a checkpoint (its tensors beside: `[tensors]`).
    Train {
        model_base: String,
        #[serde(default)]
        processing: WeightProcessing,
        config: Box<SaeTrainingConfig>,
        #[serde(default)]
        resume: Option<ResumeFrom>,
        /// Seconds between the checkpoints it sends.
        #[serde(default = "default_checkpoint_seconds")]
        checkpoint_seconds: f64,
    },
    Pause,
    Resume,
    Cancel,
    /// Fail on purpose, as a crash would (the browser tests check that the page recovers).
    Crash,
    /// Stay busy for `seconds`, answering nothing, as a hang would (for the browser tests).
    Hang {
        seconds: f64,
    },
    /// Scan an SAE's features and keep the report under `key`; bytes beside: `[cfg, weights]`.
    Features {
        id: u32,
        key: String,
        model_base: String,
        #[serde(default)]
        processing: WeightProcessing,
        /// Held-out windows of this corpus are scanned.
        corpus: Corpus,
    },
    /// Evaluate an SAE on held-out windows of `corpus`; bytes beside: `[cfg, weights]`.
    Evaluate {
        id: u32,
        model_base: String,
        #[serde(default)]
        processing: WeightProcessing,
        corpus: Corpus,
    },
    /// One feature's card from the report kept under `key`.
    Feature {
        id: u32,
        key: String,
        index: usize,
    },
    /// Score a person's explanation of one feature on the scan kept under `key`.
    Score {
        id: u32,
        key: String,
        index: usize,
        explanation: String,
    },
    /// Load the model at `model_base` now (the page's is small and loaded): the first scan or
    /// training run then finds it.
    Prepare {
        model_base: String,
        #[serde(default)]
        processing: WeightProcessing,
    },
    /// To a helper worker (started by the training worker to run forwards on another core): one
    /// forward over `windows` of the model at `model_base`, capturing `hook_name`.
    HelperCapture {
        id: u32,
        model_base: String,
        #[serde(default)]
        processing: WeightProcessing,
        hook_name: String,
        windows: Vec<Vec<u32>>,
    },
    /// To a helper worker: evaluate an SAE at `hook_name` on `windows`
    /// (`metrics::batch_losses`). The SAE is `sae_config` with its parameters as a safetensors
    /// file beside, `[weights]`, sent once per helper: later requests for the same `sae_key`
    /// carry neither.
    HelperEvaluate {
        id: u32,
        model_base: String,
        #[serde(default)]
        processing: WeightProcessing,
        hook_name: String,
        windows: Vec<Vec<u32>>,
        sae_key: u32,
        #[serde(default)]
        sae_config: Option<crate::sae::SaeConfig>,
        special_id: Option<u32>,
    },
}

/// How often a training run sends a checkpoint to keep, in seconds: a reload loses at most
/// this much work.
pub const CHECKPOINT_SECONDS: f64 = 10.0;

fn default_checkpoint_seconds() -> f64 {
    CHECKPOINT_SECONDS
}

/// A trainer checkpoint's state (JSON) and the captured vectors it had used; its tensors travel
/// beside the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeFrom {
    pub state: String,
    pub rows_served: u64,
}

/// Worker -> page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum FromWorker {
    Ready,
    Phase {
        text: String,
        fraction: f64,
    },
    Progress {
        progress: Box<Progress>,
    },
    /// A point training can resume from; bytes beside: `[tensors]`.
    Checkpoint {
        resume: ResumeFrom,
    },
    /// Training finished; bytes beside: `[cfg, weights, sparsity?, saeplay?]`.
    Done,
    Cancelled,
    Error {
        message: String,
    },
    FeaturesPhase {
        id: u32,
        text: String,
    },
    FeatureList {
        id: u32,
        list: FeatureList,
    },
    FeatureCard {
        id: u32,
        card: Box<FeatureData>,
    },
    FeaturesError {
        id: u32,
        message: String,
    },
    /// The answer to [`ToWorker::Evaluate`].
    Evaluated {
        id: u32,
        metrics: Box<SaeMetrics>,
    },
    /// Automatic explanations of some of the features kept under `key`, made in the background
    /// after the list; `done` with the last of them.
    Explained {
        key: String,
        explanations: Vec<FeatureExplanation>,
        done: bool,
    },
    /// The answer to [`ToWorker::Score`].
    Scored {
        id: u32,
        scored: FeatureExplanation,
    },
    /// A helper's answer to [`ToWorker::HelperCapture`] or [`ToWorker::HelperEvaluate`] `id`:
    /// the hook's vectors beside, `[values]` (`[b * t, d]` f32, little-endian), and for an
    /// evaluation the loss sums.
    HelperAnswered {
        id: u32,
        #[serde(default)]
        losses: Option<crate::sae::metrics::LossSums>,
    },
    /// A helper could not run request `id`.
    HelperError {
        id: u32,
        message: String,
    },
}

/// The answer to one features request.
#[derive(Debug, Clone)]
pub enum FeaturesAnswer {
    List(FeatureList),
    Card(Box<FeatureData>),
    Metrics(Box<SaeMetrics>),
    Scored(FeatureExplanation),
}

impl ToWorker {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("worker messages are plain data")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text)
            .map_err(|e| format!("a message to the worker did not arrive intact: {e}"))
    }
}

impl FromWorker {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("worker messages are plain data")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text)
            .map_err(|e| format!("a message from the worker did not arrive intact: {e}"))
    }
}
