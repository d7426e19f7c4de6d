//! The messages between the page and its Web Worker, one enum per direction. They cross as JSON
//! text; the large byte buffers (SAE weights, both ways) travel beside the message as
//! `Uint8Array`s under the names of [`Attachment`], because megabytes of weights as JSON number
//! arrays would be slow to write and parse. Each request the page waits on is a type of its own
//! ([`WorkerRequest`]) that names the type of its answer.

use serde::{Deserialize, Serialize};

use crate::model::WeightProcessing;
use crate::sae::explain::FeatureExplanation;
use crate::sae::features::FeatureData;
use crate::sae::metrics::SaeMetrics;
use crate::sae::saelens::SaeFiles;
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
    /// go on from a checkpoint (its tensors beside: [`Attachment::Tensors`]).
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
    /// Scan an SAE's features and keep the report under `key`; beside: [`Attachment::Cfg`],
    /// [`Attachment::Weights`].
    Features {
        id: u32,
        key: String,
        model_base: String,
        #[serde(default)]
        processing: WeightProcessing,
        /// Held-out windows of this corpus are scanned.
        corpus: Corpus,
    },
    /// Evaluate an SAE on held-out windows of `corpus`; beside: [`Attachment::Cfg`],
    /// [`Attachment::Weights`].
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
    /// file beside, [`Attachment::Weights`], sent once per helper: later requests for the same
    /// `sae_key` carry neither.
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
    /// A point training can resume from; beside: [`Attachment::Tensors`].
    Checkpoint {
        resume: ResumeFrom,
    },
    /// Training finished; beside: the SAE's files ([`sae_files_attached`]).
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
    /// the hook's vectors beside, [`Attachment::Values`] (`[b * t, d]` f32, little-endian), and
    /// for an evaluation the loss sums.
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

/// The answer to one numbered request, as it arrives; [`WorkerRequest::answer`] gives it its
/// request's type.
#[derive(Debug, Clone)]
pub enum FeaturesAnswer {
    List(FeatureList),
    Card(Box<FeatureData>),
    Metrics(Box<SaeMetrics>),
    Scored(FeatureExplanation),
}

impl FeaturesAnswer {
    /// The numbered answer a message carries (`None` for messages that answer no request).
    pub fn of(message: FromWorker) -> Option<(u32, Result<Self, String>)> {
        Some(match message {
            FromWorker::FeatureList { id, list } => (id, Ok(Self::List(list))),
            FromWorker::FeatureCard { id, card } => (id, Ok(Self::Card(card))),
            FromWorker::Evaluated { id, metrics } => (id, Ok(Self::Metrics(metrics))),
            FromWorker::Scored { id, scored } => (id, Ok(Self::Scored(scored))),
            FromWorker::FeaturesError { id, message } => (id, Err(message)),
            _ => return None,
        })
    }
}

/// A request the page sends and waits on: the message it becomes once numbered, the byte
/// buffers beside it, and the type of its answer.
pub trait WorkerRequest {
    type Answer;
    fn message(self, id: u32) -> ToWorker;
    /// The answer as its type; an answer of another kind is refused in words.
    fn answer(answer: FeaturesAnswer) -> Result<Self::Answer, String>;
}

/// Scan an SAE's features (its files beside), keep the report under `key`: a [`FeatureList`].
#[derive(Debug, Clone)]
pub struct ScanFeatures {
    pub key: String,
    pub model_base: String,
    pub processing: WeightProcessing,
    pub corpus: Corpus,
}

impl WorkerRequest for ScanFeatures {
    type Answer = FeatureList;

    fn message(self, id: u32) -> ToWorker {
        ToWorker::Features {
            id,
            key: self.key,
            model_base: self.model_base,
            processing: self.processing,
            corpus: self.corpus,
        }
    }

    fn answer(answer: FeaturesAnswer) -> Result<FeatureList, String> {
        match answer {
            FeaturesAnswer::List(list) => Ok(list),
            _ => Err("the worker answered with something other than the list".into()),
        }
    }
}

/// One feature's card from the report kept under `key`.
#[derive(Debug, Clone)]
pub struct FeatureCard {
    pub key: String,
    pub index: usize,
}

impl WorkerRequest for FeatureCard {
    type Answer = FeatureData;

    fn message(self, id: u32) -> ToWorker {
        ToWorker::Feature {
            id,
            key: self.key,
            index: self.index,
        }
    }

    fn answer(answer: FeaturesAnswer) -> Result<FeatureData, String> {
        match answer {
            FeaturesAnswer::Card(card) => Ok(*card),
            _ => Err("the worker answered with something other than a card".into()),
        }
    }
}

/// A person's explanation of one feature, scored on the scan kept under `key`.
#[derive(Debug, Clone)]
pub struct ScoreExplanation {
    pub key: String,
    pub index: usize,
    pub explanation: String,
}

impl WorkerRequest for ScoreExplanation {
    type Answer = FeatureExplanation;

    fn message(self, id: u32) -> ToWorker {
        ToWorker::Score {
            id,
            key: self.key,
            index: self.index,
            explanation: self.explanation,
        }
    }

    fn answer(answer: FeaturesAnswer) -> Result<FeatureExplanation, String> {
        match answer {
            FeaturesAnswer::Scored(scored) => Ok(scored),
            _ => Err("the worker answered with something other than a score".into()),
        }
    }
}

/// Evaluate an SAE (its files beside) on held-out windows of `corpus`.
#[derive(Debug, Clone)]
pub struct EvaluateSae {
    pub model_base: String,
    pub processing: WeightProcessing,
    pub corpus: Corpus,
}

impl WorkerRequest for EvaluateSae {
    type Answer = SaeMetrics;

    fn message(self, id: u32) -> ToWorker {
        ToWorker::Evaluate {
            id,
            model_base: self.model_base,
            processing: self.processing,
            corpus: self.corpus,
        }
    }

    fn answer(answer: FeaturesAnswer) -> Result<SaeMetrics, String> {
        match answer {
            FeaturesAnswer::Metrics(metrics) => Ok(*metrics),
            _ => Err("the worker answered with something other than metrics".into()),
        }
    }
}

/// The byte buffers that travel beside a message, each under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attachment {
    /// An SAE's `cfg.json`.
    Cfg,
    /// An SAE's weights (safetensors).
    Weights,
    /// An SAE's feature sparsity (safetensors), when it has one.
    Sparsity,
    /// An SAE's `saeplay.json` provenance, when it has one.
    Saeplay,
    /// A training checkpoint's tensors.
    Tensors,
    /// A helper's captured vectors (`[b * t, d]` f32, little-endian).
    Values,
}

impl Attachment {
    pub const ALL: [Attachment; 6] = [
        Self::Cfg,
        Self::Weights,
        Self::Sparsity,
        Self::Saeplay,
        Self::Tensors,
        Self::Values,
    ];

    /// The name it crosses under.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cfg => "cfg",
            Self::Weights => "weights",
            Self::Sparsity => "sparsity",
            Self::Saeplay => "saeplay",
            Self::Tensors => "tensors",
            Self::Values => "values",
        }
    }

    /// What it is, for a refusal when it is missing.
    fn described(self) -> &'static str {
        match self {
            Self::Cfg => "the SAE's cfg.json",
            Self::Weights => "the SAE's weights",
            Self::Sparsity => "the SAE's sparsity",
            Self::Saeplay => "the SAE's saeplay.json",
            Self::Tensors => "the checkpoint's tensors",
            Self::Values => "a helper's vectors",
        }
    }
}

/// The byte buffers a message arrived with, taken out by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attachments(Vec<(Attachment, Vec<u8>)>);

impl Attachments {
    /// Buffers as they arrived, by name; unknown names are left out.
    pub fn from_named(named: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self(
            named
                .into_iter()
                .filter_map(|(name, bytes)| {
                    let known = Attachment::ALL.into_iter().find(|a| a.name() == name)?;
                    Some((known, bytes))
                })
                .collect(),
        )
    }

    /// The buffer named `which`, if it came.
    pub fn take(&mut self, which: Attachment) -> Option<Vec<u8>> {
        let at = self.0.iter().position(|(a, _)| *a == which)?;
        Some(self.0.swap_remove(at).1)
    }

    /// The buffer named `which`, refused in words when it did not come.
    pub fn require(&mut self, which: Attachment) -> Result<Vec<u8>, String> {
        self.take(which)
            .ok_or_else(|| format!("{} did not arrive with the message", which.described()))
    }
}

/// An SAE's files as attachments (for [`FromWorker::Done`], and the SAE of a scan or evaluation,
/// where only `cfg` and `weights` are sent).
pub fn sae_file_attachments(files: &SaeFiles) -> Vec<(Attachment, &[u8])> {
    [
        (Attachment::Cfg, Some(files.cfg.as_slice())),
        (Attachment::Weights, Some(files.weights.as_slice())),
        (Attachment::Sparsity, files.sparsity.as_deref()),
        (Attachment::Saeplay, files.saeplay.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, bytes)| Some((name, bytes?)))
    .collect()
}

/// The SAE files attached to a message: `cfg` and `weights` required, the rest when present.
pub fn sae_files_attached(attachments: &mut Attachments) -> Result<SaeFiles, String> {
    Ok(SaeFiles {
        cfg: attachments.require(Attachment::Cfg)?,
        weights: attachments.require(Attachment::Weights)?,
        sparsity: attachments.take(Attachment::Sparsity),
        saeplay: attachments.take(Attachment::Saeplay),
    })
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
