//! The SAE views' state as plain Rust: the SAEs the page holds, the training run, the heatmap,
//! the feature list's query, the steering rows. The page (`web`, wasm only) renders it and changes
//! it through `App::update`; nothing here touches the browser, so tests drive it natively.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::model::{HookPoint, WeightProcessing};
use crate::sae::Sae;
use crate::sae::explain::FeatureExplanation;
use crate::sae::features::{FeatureData, FeatureReport};
use crate::sae::metrics::{Figure, SaeMetrics};
use crate::sae::saelens::{Provenance, SaeFiles};
use crate::sae::train::{Control, Progress};
use crate::ui::feature_list::{FeatureRow, SortKey};
use crate::ui::heat::Heat;
use crate::ui::steer::{SteerResult, SteerRow};
use crate::ui::train_form::TrainForm;

/// Where an SAE came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// Shipped with the page, fetched from its own directory when chosen.
    Shipped { path: String },
    /// Trained in a tab or imported, kept in this browser's storage.
    Stored,
    /// Fetched from a URL a link named (after the person agreed).
    Remote { url: String },
    /// A published SAE (`RELEASE/SAE_ID`) fetched from the Hugging Face Hub.
    Published { spec: String },
}

impl Origin {
    /// Where it came from, in the evaluate table's words.
    pub fn describe(&self) -> &'static str {
        match self {
            Origin::Shipped { .. } => "shipped",
            Origin::Stored => "this browser",
            Origin::Remote { .. } => "fetched",
            Origin::Published { .. } => "published",
        }
    }
}

/// Headline metrics, for tables and the Pareto chart.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub l0: Option<f64>,
    pub explained_variance: Option<f64>,
    pub loss_recovered: Option<f64>,
    pub dead_fraction: Option<f64>,
    pub dense_fraction: Option<f64>,
    pub mean_concept_auroc: Option<f64>,
    /// Every figure the Pareto chart can plot, by [`Figure`].
    pub figures: BTreeMap<&'static str, f64>,
}

impl Summary {
    pub fn of(metrics: &SaeMetrics) -> Self {
        Self {
            l0: Some(metrics.l0),
            explained_variance: Some(metrics.explained_variance),
            loss_recovered: Some(metrics.loss_recovered),
            dead_fraction: Some(metrics.dead_fraction),
            dense_fraction: Some(metrics.dense_fraction),
            mean_concept_auroc: metrics.mean_concept_auroc,
            figures: Figure::ALL
                .into_iter()
                .filter_map(|f| Some((f.name(), metrics.figure(f)?)))
                .collect(),
        }
    }

    /// A figure's value, `None` when this SAE's metrics do not have it.
    pub fn figure(&self, figure: Figure) -> Option<f64> {
        self.figures.get(figure.name()).copied()
    }
}

/// An SAE ready to run.
pub struct LoadedSae {
    pub sae: Sae,
    pub hook: HookPoint,
    pub files: SaeFiles,
    pub provenance: Provenance,
    /// The TransformerLens processing of the model it reads (cfg.json's
    /// `model_from_pretrained_kwargs`); the page runs the model so while it is chosen.
    pub model_processing: WeightProcessing,
    /// Where Neuronpedia shows its features, for published SAEs.
    pub neuronpedia_id: Option<String>,
}

impl LoadedSae {
    /// This SAE as a graph reads it.
    pub fn graph_sae(&self) -> crate::sae::circuits::GraphSae<'_> {
        crate::sae::circuits::GraphSae {
            sae: &self.sae,
            hook: self.hook,
        }
    }
}

/// One SAE the page holds; `loaded` once its files are here.
pub struct SaeSlot {
    pub id: String,
    pub label: String,
    pub origin: Origin,
    pub hook_name: String,
    pub architecture: String,
    pub d_sae: usize,
    pub summary: Summary,
    pub loaded: Option<Rc<LoadedSae>>,
    pub features: Option<Rc<FeatureIndex>>,
}

/// An SAE's features as the page holds them: every row for the list, and each card's data once
/// fetched from the worker (or all of them, when the page scanned itself).
pub struct FeatureIndex {
    pub tokens: usize,
    /// In feature order; explanations arrive after the list (see [`FeatureIndex::explain`]).
    pub rows: RefCell<Vec<FeatureRow>>,
    /// Whether every feature's explanation has arrived.
    pub explained: Cell<bool>,
    pub cards: RefCell<HashMap<usize, Rc<FeatureData>>>,
    /// A whole report held in the page (the fallback when the worker fails).
    pub here: Option<FeatureReport>,
}

impl FeatureIndex {
    pub fn new(tokens: usize, rows: Vec<FeatureRow>, here: Option<FeatureReport>) -> Self {
        let explained = rows.iter().all(|r| r.explanation.is_some());
        Self {
            tokens,
            rows: RefCell::new(rows),
            explained: Cell::new(explained),
            cards: RefCell::default(),
            here,
        }
    }

    /// Explanations that arrived: into the rows (the list shows and sorts by them) and into the
    /// cards already held.
    pub fn explain(&self, explanations: &[FeatureExplanation], done: bool) {
        let mut rows = self.rows.borrow_mut();
        let mut cards = self.cards.borrow_mut();
        for e in explanations {
            if let Ok(i) = rows.binary_search_by_key(&e.feature, |r| r.index) {
                rows[i].set_explanation(Some(e));
            }
            if let Some(card) = cards.get_mut(&e.feature) {
                let mut updated = (**card).clone();
                updated.explanation = Some(e.clone());
                *card = Rc::new(updated);
            }
        }
        if done {
            self.explained.set(true);
        }
    }

    /// Whether this index has a row for `feature`.
    pub fn has(&self, feature: usize) -> bool {
        self.rows.borrow().iter().any(|r| r.index == feature)
    }

    pub fn len(&self) -> usize {
        self.rows.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn card(&self, feature: usize) -> Option<Rc<FeatureData>> {
        if let Some(card) = self.cards.borrow().get(&feature) {
            return Some(Rc::clone(card));
        }
        let data = self
            .here
            .as_ref()?
            .features
            .iter()
            .find(|f| f.index == feature)?;
        Some(Rc::new(data.clone()))
    }
}

/// One training run's state, drawn by the train view.
#[derive(Debug, Clone, Default)]
pub struct TrainRun {
    pub active: bool,
    pub paused: bool,
    pub phase: String,
    pub fraction: f64,
    pub history: Vec<Progress>,
    pub result: String,
}

impl TrainRun {
    /// A run that has just been asked for.
    pub fn starting() -> Self {
        Self {
            active: true,
            phase: "Starting…".into(),
            ..Self::default()
        }
    }

    pub fn set_phase(&mut self, phase: String, fraction: f64) {
        self.phase = phase;
        self.fraction = fraction;
    }

    /// One training step's figures: capture is the first 30% of the bar, training the next 60%.
    pub fn record(&mut self, p: &Progress) {
        self.history.push(p.clone());
        self.fraction = 0.3 + 0.6 * p.stats.step as f64 / p.total_steps.max(1) as f64;
        self.phase = format!(
            "Training: step {} of {}, {:.0} vectors/s, about {:.0} s left",
            p.stats.step, p.total_steps, p.vectors_per_second, p.seconds_left
        );
    }

    /// The run ended: kept under an id, cancelled (`Ok(None)`), or failed.
    pub fn finish(&mut self, result: &Result<Option<String>, String>, seconds: f64) {
        self.active = false;
        self.paused = false;
        match result {
            Ok(Some(id)) => {
                self.phase = "Done.".into();
                self.fraction = 1.0;
                self.result = format!("Trained in {seconds:.0} s and kept as {id}.");
            }
            Ok(None) => self.phase = "Cancelled: nothing was kept.".into(),
            Err(e) => self.phase = format!("Stopped: {e}"),
        }
    }
}

pub struct Lab {
    pub saes: Vec<SaeSlot>,
    pub form: TrainForm,
    pub text_file: Option<String>,
    pub train: TrainRun,
    pub heat: Option<Heat>,
    pub token_focus: Option<usize>,
    pub query: String,
    pub sort: Option<SortKey>,
    pub descending: bool,
    pub steer_rows: Vec<SteerRow>,
    pub steer_result: Option<SteerResult>,
    pub steer_status: String,
    pub feature_status: String,
    pub notice: String,
    /// The Pareto chart's axes.
    pub pareto_axes: (Figure, Figure),
    /// The card's explanation being written, and the score it got.
    pub explain_text: String,
    pub explain_result: String,
    /// The Circuits view.
    pub circuits: crate::ui::circuits::CircuitsState,
    /// Stored entries that could not be read.
    pub damaged: Vec<DamagedEntry>,
}

/// A training run's last checkpoint as the page keeps it in browser storage (its tensors
/// beside), so that a reload can offer to resume it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedRun {
    pub config: crate::sae::train::SaeTrainingConfig,
    /// The model it trains on (the page's model base) and that model's processing.
    pub model_base: String,
    pub processing: WeightProcessing,
    pub resume: crate::ui::worker_protocol::ResumeFrom,
    pub step: usize,
    pub total_steps: usize,
}

impl SavedRun {
    /// The offer shown after a reload.
    pub fn offer(&self) -> String {
        format!(
            "Training of {} stopped at step {} of {} when the page closed; it can go on from there.",
            crate::sae::pipeline::default_name(&self.config),
            self.step,
            self.total_steps
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("the saved run is not readable ({e})"))
    }
}

/// Pause / cancel requests for a training run.
#[derive(Default)]
pub struct TrainControl {
    pub pause: Cell<bool>,
    pub cancel: Cell<bool>,
}

impl TrainControl {
    /// What the person asks of the run now: cancel wins over pause.
    pub fn wanted(&self) -> Control {
        if self.cancel.get() {
            Control::Stop
        } else if self.pause.get() {
            Control::Pause
        } else {
            Control::Continue
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self {
            saes: Vec::new(),
            form: TrainForm::default(),
            text_file: None,
            train: TrainRun::default(),
            heat: None,
            token_focus: None,
            query: String::new(),
            sort: None,
            descending: false,
            steer_rows: Vec::new(),
            steer_result: None,
            steer_status: String::new(),
            feature_status: String::new(),
            notice: String::new(),
            pareto_axes: (Figure::L0, Figure::LossRecovered),
            explain_text: String::new(),
            explain_result: String::new(),
            circuits: Default::default(),
            damaged: Vec::new(),
        }
    }
}

impl Lab {
    pub fn slot(&self, id: &str) -> Option<&SaeSlot> {
        self.saes.iter().find(|s| s.id == id)
    }

    pub fn slot_mut(&mut self, id: &str) -> Option<&mut SaeSlot> {
        self.saes.iter_mut().find(|s| s.id == id)
    }

    /// Add the shipped SAEs whose ids are not here yet.
    pub fn add_shipped(&mut self, slots: Vec<SaeSlot>) {
        for slot in slots {
            if self.slot(&slot.id).is_none() {
                self.saes.push(slot);
            }
        }
    }

    /// Add a slot, or replace the one with its id. A shipped SAE stays shipped: only its own
    /// weights (and the metrics it lacked) arrive; an SAE from elsewhere (browser storage, a
    /// file, a URL) under a shipped SAE's id is refused, so it can never pass for the shipped one.
    pub fn insert_slot(&mut self, slot: SaeSlot) -> crate::Result<()> {
        match self.slot_mut(&slot.id) {
            Some(existing)
                if matches!(existing.origin, Origin::Shipped { .. })
                    && !matches!(slot.origin, Origin::Shipped { .. }) =>
            {
                return Err(crate::SaeplayError::ShippedName { id: slot.id });
            }
            Some(existing) if matches!(existing.origin, Origin::Shipped { .. }) => {
                existing.loaded = slot.loaded;
                if existing.summary.dead_fraction.is_none() {
                    let keep = existing.summary.clone();
                    existing.summary = Summary {
                        l0: slot.summary.l0.or(keep.l0),
                        ..slot.summary
                    };
                }
            }
            Some(existing) => *existing = slot,
            None => self.saes.push(slot),
        }
        Ok(())
    }

    /// Every SAE's figures on the chosen axes (L0 and loss recovered unless changed), NaN where
    /// unknown: the Pareto chart's points.
    pub fn pareto_points(&self) -> Vec<(f64, f64)> {
        let (x, y) = self.pareto_axes;
        self.saes
            .iter()
            .map(|s| {
                (
                    s.summary.figure(x).unwrap_or(f64::NAN),
                    s.summary.figure(y).unwrap_or(f64::NAN),
                )
            })
            .collect()
    }
}

/// A metric for a table: a dash when unknown, "n/a" when not finite.
pub fn metric_text(value: Option<f64>, digits: usize) -> String {
    match value {
        None => "–".into(),
        Some(v) if !v.is_finite() => "n/a".into(),
        Some(v) => format!("{v:.digits$}"),
    }
}

/// The shipped SAEs listed in `saes/index.json` (`{"saes": [{id, path, hook_name, architecture,
/// d_sae, l0, ...}]}`), their files under `base`; entries without an id are skipped.
pub fn shipped_slots(index_json: &[u8], base: &str) -> Result<Vec<SaeSlot>, serde_json::Error> {
    let index: serde_json::Value = serde_json::from_slice(index_json)?;
    let list = index["saes"].as_array().cloned().unwrap_or_default();
    Ok(list
        .iter()
        .filter_map(|entry| {
            let path = format!("{base}{}", entry["path"].as_str().unwrap_or(""));
            slot_from_entry(entry, Origin::Shipped { path }, |id| {
                format!("{id} (shipped)")
            })
        })
        .collect())
}

/// An SAE kept in this browser, listed from the index entry stored beside its zip (see
/// [`SaeSlot::index_entry`]) without reading the zip.
pub fn stored_slot(entry_json: &[u8]) -> Result<SaeSlot, String> {
    let entry: serde_json::Value = serde_json::from_slice(entry_json)
        .map_err(|e| format!("its summary is not valid JSON ({e})"))?;
    let label = entry["label"].as_str().map(str::to_string);
    slot_from_entry(&entry, Origin::Stored, |id| {
        label.unwrap_or_else(|| id.to_string())
    })
    .filter(|slot| !slot.hook_name.is_empty())
    .ok_or_else(|| "its summary names no id or hook point".to_string())
}

/// A slot from an index entry (`None` without an id); its files load when it is chosen.
fn slot_from_entry(
    entry: &serde_json::Value,
    origin: Origin,
    label: impl FnOnce(&str) -> String,
) -> Option<SaeSlot> {
    let text = |k: &str| entry[k].as_str().unwrap_or("").to_string();
    let number = |k: &str| entry[k].as_f64();
    let id = text("id");
    (!id.is_empty()).then(|| SaeSlot {
        label: label(&id),
        origin,
        hook_name: text("hook_name"),
        architecture: text("architecture"),
        d_sae: number("d_sae").unwrap_or(0.0).clamp(0.0, u32::MAX as f64) as usize,
        summary: Summary {
            l0: number("l0"),
            explained_variance: number("explained_variance"),
            loss_recovered: number("loss_recovered"),
            dead_fraction: number("dead_fraction"),
            dense_fraction: number("dense_fraction"),
            mean_concept_auroc: number("mean_concept_auroc"),
            // The index lists figures under SAEBench's names.
            figures: Figure::ALL
                .into_iter()
                .filter_map(|f| Some((f.name(), number(f.name())?)))
                .collect(),
        },
        id,
        loaded: None,
        features: None,
    })
}

impl SaeSlot {
    /// This SAE as an index entry (`saes/index.json`'s shape, with its label): what browser
    /// storage keeps beside the zip, so that startup lists stored SAEs without reading them.
    pub fn index_entry(&self) -> serde_json::Value {
        let mut entry = serde_json::json!({
            "id": self.id,
            "label": self.label,
            "hook_name": self.hook_name,
            "architecture": self.architecture,
            "d_sae": self.d_sae,
        });
        let s = &self.summary;
        let figures = [
            ("l0", s.l0),
            ("explained_variance", s.explained_variance),
            ("loss_recovered", s.loss_recovered),
            ("dead_fraction", s.dead_fraction),
            ("dense_fraction", s.dense_fraction),
            ("mean_concept_auroc", s.mean_concept_auroc),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .chain(s.figures.iter().map(|(name, value)| (*name, *value)));
        for (name, value) in figures {
            if value.is_finite() {
                entry[name] = serde_json::json!(value);
            }
        }
        entry
    }
}

/// A stored entry that could not be read: shown with its size and reason, to export as raw
/// bytes or remove.
#[derive(Debug, Clone, PartialEq)]
pub struct DamagedEntry {
    pub id: String,
    pub bytes: usize,
    pub reason: String,
}
