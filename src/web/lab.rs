//! The page's SAE views: the SAEs it holds (shipped, trained here, imported, fetched), the
//! prompt heatmap, training, features, steering and evaluation. Decisions that need no browser
//! (forms, links, chart geometry, list order) live in [`crate::ui`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{Element, HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};

use super::dom::{append, bar_list, clear, el, histogram, line_chart, listen, shaded_tokens};
use super::train_job::{Reporter, feature_job, train_job};
use super::worker::{self, Heard};
use super::{App, fetch_bytes, js, js_error, now_ms, sleep, window};
use crate::backend::read_f32;
use crate::model::{Generation, HookPoint, Hooks, LogitsFor, Step};
use crate::sae::Sae;
use crate::sae::features::{FeatureData, FeatureReport};
use crate::sae::metrics::SaeMetrics;
use crate::sae::saelens::{Provenance, SaeFiles};
use crate::sae::steer::{Intervention, InterventionMode, intervention_patch};
use crate::sae::train::{Control, Progress};
use crate::ui::chart::Frame;
use crate::ui::feature_list::{self, FeatureList, FeatureRow, SortKey};
use crate::ui::train_form::{CorpusKind, TrainForm};
use crate::ui::{SaeRef, View};

/// Features shown per token in the prompt heatmap.
const HEAT_PER_TOKEN: usize = 3;
const HEAT_ROWS: usize = 12;
const LIST_LIMIT: usize = 200;

/// Where an SAE came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// Shipped with the page, fetched from its own directory when chosen.
    Shipped { path: String },
    /// Trained in a tab or imported, kept in this browser's storage.
    Stored,
    /// Fetched from a URL a link named (after the person agreed).
    Remote { url: String },
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
}

impl Summary {
    fn of(metrics: &SaeMetrics) -> Self {
        Self {
            l0: Some(metrics.l0),
            explained_variance: Some(metrics.explained_variance),
            loss_recovered: Some(metrics.loss_recovered),
            dead_fraction: Some(metrics.dead_fraction),
            dense_fraction: Some(metrics.dense_fraction),
            mean_concept_auroc: metrics.mean_concept_auroc,
        }
    }
}

/// An SAE ready to run.
pub struct LoadedSae {
    pub sae: Sae,
    pub hook: HookPoint,
    pub files: SaeFiles,
    pub provenance: Provenance,
}

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
    pub rows: Vec<FeatureRow>,
    pub cards: RefCell<HashMap<usize, Rc<FeatureData>>>,
    /// A whole report held in the page (the fallback when the worker fails).
    pub here: Option<FeatureReport>,
}

impl FeatureIndex {
    fn card(&self, feature: usize) -> Option<Rc<FeatureData>> {
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
#[derive(Default)]
pub struct TrainRun {
    pub active: bool,
    pub paused: bool,
    pub phase: String,
    pub fraction: f64,
    pub history: Vec<Progress>,
    pub result: String,
}

/// The prompt's SAE features per token.
pub struct Heat {
    pub sae_id: String,
    pub tokens: Vec<String>,
    /// `[tokens][d_sae]` activations, only the top few per token kept.
    pub top: Vec<Vec<(usize, f32)>>,
}

/// Default text, steered text, and the next-token shifts (label, change, shown text).
pub type SteerResult = (String, String, Vec<(String, f64, String)>);

/// A steering row as typed.
#[derive(Clone)]
pub struct SteerRow {
    pub feature: String,
    pub mode: String,
    pub value: String,
}

impl SteerRow {
    /// A new row: add the feature's direction at strength 8.
    fn adding(feature: String) -> Self {
        Self {
            feature,
            mode: "add".into(),
            value: "8".into(),
        }
    }
}

/// A whole-number `data-*` attribute of an element.
fn index_attribute(element: &Element, name: &str) -> Option<usize> {
    element.get_attribute(name)?.parse().ok()
}

#[derive(Default)]
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
}

/// The result slot of a training run in the worker.
pub type WorkerOutcome = Rc<RefCell<Option<Result<Option<SaeFiles>, String>>>>;

/// Pause / cancel requests for a training run.
#[derive(Default)]
pub struct TrainControl {
    pub pause: Cell<bool>,
    pub cancel: Cell<bool>,
}

impl Lab {
    pub fn slot(&self, id: &str) -> Option<&SaeSlot> {
        self.saes.iter().find(|s| s.id == id)
    }

    fn slot_mut(&mut self, id: &str) -> Option<&mut SaeSlot> {
        self.saes.iter_mut().find(|s| s.id == id)
    }
}

fn fmt(value: Option<f64>, digits: usize) -> String {
    match value {
        None => "–".into(),
        Some(v) if !v.is_finite() => "n/a".into(),
        Some(v) => format!("{v:.digits$}"),
    }
}

fn input_of(app: &App, id: &str) -> Option<HtmlInputElement> {
    app.element(id).and_then(|e| e.dyn_into().ok())
}

fn select_of(app: &App, id: &str) -> Option<HtmlSelectElement> {
    app.element(id).and_then(|e| e.dyn_into().ok())
}

impl App {
    fn loaded(&self) -> crate::Result<Rc<crate::bundle::LoadedModel>> {
        self.model.borrow().clone().ok_or_else(|| {
            crate::SaeplayError::InvalidSetting("the model is not loaded yet".into())
        })
    }

    fn hook_names(&self) -> Vec<String> {
        self.model.borrow().as_ref().map_or_else(Vec::new, |m| {
            HookPoint::all(m.model.config())
                .into_iter()
                .map(|h| h.to_string())
                .collect()
        })
    }

    pub fn show_error(&self, message: String) {
        self.state.borrow_mut().errors.push(message);
        self.render_errors();
    }

    pub fn set_notice(&self, text: String) {
        self.lab.borrow_mut().notice = text;
        self.render_notice();
    }

    pub fn selected_sae(&self) -> Option<String> {
        match &self.state.borrow().location.sae {
            Some(SaeRef::Id(id)) => Some(id.clone()),
            _ => None,
        }
    }

    pub fn selected_loaded(&self) -> Option<Rc<LoadedSae>> {
        let id = self.selected_sae()?;
        self.lab.borrow().slot(&id)?.loaded.clone()
    }

    // ---- The SAEs the page holds ----

    /// Add the shipped SAEs (index.json) and those kept in this browser.
    pub async fn discover_saes(self: &Rc<Self>, builtin: bool) {
        if builtin {
            match fetch_bytes(&format!("{}saes/index.json", super::BUILTIN_MODEL)).await {
                Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(index) => {
                        let list = index["saes"].as_array().cloned().unwrap_or_default();
                        let mut lab = self.lab.borrow_mut();
                        for entry in list {
                            let text = |k: &str| entry[k].as_str().unwrap_or("").to_string();
                            let number = |k: &str| entry[k].as_f64();
                            let id = text("id");
                            if id.is_empty() || lab.slot(&id).is_some() {
                                continue;
                            }
                            lab.saes.push(SaeSlot {
                                label: format!("{id} (shipped)"),
                                origin: Origin::Shipped {
                                    path: format!("{}{}", super::BUILTIN_MODEL, text("path")),
                                },
                                hook_name: text("hook_name"),
                                architecture: text("architecture"),
                                d_sae: number("d_sae").unwrap_or(0.0) as usize,
                                summary: Summary {
                                    l0: number("l0"),
                                    explained_variance: number("explained_variance"),
                                    loss_recovered: number("loss_recovered"),
                                    mean_concept_auroc: number("mean_concept_auroc"),
                                    ..Summary::default()
                                },
                                id,
                                loaded: None,
                                features: None,
                            });
                        }
                    }
                    Err(e) => self.show_error(format!("The list of shipped SAEs is damaged: {e}")),
                },
                Err(e) => self.show_error(format!("The shipped SAEs could not be listed: {e}")),
            }
        }
        match stored_saes().await {
            Ok(stored) => {
                for (id, bytes) in stored {
                    if let Err(e) = self.add_from_zip(&id, &bytes, Origin::Stored).await {
                        self.show_error(format!(
                            "The SAE \"{id}\" kept in this browser could not be read ({e}); it was left alone."
                        ));
                    }
                }
            }
            Err(e) => self.show_error(format!(
                "Browser storage is not available, so SAEs trained here will not survive a reload: {e}"
            )),
        }
        self.render_sae_picker();
    }

    /// Parse SAE files, check they fit the model, and add (or replace) a slot.
    async fn add_files(
        self: &Rc<Self>,
        id: &str,
        files: SaeFiles,
        origin: Origin,
    ) -> crate::Result<()> {
        let loaded = self.loaded()?;
        let host = files.parse()?;
        let hook = HookPoint::parse(&host.config.hook_name, loaded.model.config())?;
        let sae = host.upload(loaded.model.device())?;
        sae.check_fits(&hook.to_string(), hook.width(loaded.model.config()))?;
        let provenance = host.provenance.clone();
        let summary = provenance
            .metrics
            .as_ref()
            .map(Summary::of)
            .unwrap_or_default();
        let architecture = provenance
            .trained_as
            .clone()
            .unwrap_or_else(|| host.config.architecture.name().to_string());
        let label = match (&provenance.name, &origin) {
            (Some(name), _) => format!("{name} ({id})"),
            (None, Origin::Remote { url }) => format!("{id} from {url}"),
            (None, _) => id.to_string(),
        };
        let slot = SaeSlot {
            id: id.to_string(),
            label,
            origin,
            hook_name: host.config.hook_name.clone(),
            architecture,
            d_sae: host.config.d_sae,
            summary,
            loaded: Some(Rc::new(LoadedSae {
                sae,
                hook,
                files,
                provenance,
            })),
            features: None,
        };
        let mut lab = self.lab.borrow_mut();
        match lab.slot_mut(id) {
            Some(existing) => {
                if matches!(existing.origin, Origin::Shipped { .. }) {
                    // A shipped SAE stays shipped; only its weights arrive.
                    existing.loaded = slot.loaded;
                    if existing.summary.dead_fraction.is_none() {
                        let keep = existing.summary.clone();
                        existing.summary = Summary {
                            l0: slot.summary.l0.or(keep.l0),
                            ..slot.summary
                        };
                    }
                } else {
                    *existing = slot;
                }
            }
            None => lab.saes.push(slot),
        }
        Ok(())
    }

    async fn add_from_zip(
        self: &Rc<Self>,
        id: &str,
        zip: &[u8],
        origin: Origin,
    ) -> crate::Result<()> {
        let files = SaeFiles::from_named_files(vec![(format!("{id}.zip"), zip.to_vec())])?;
        self.add_files(id, files, origin).await
    }

    /// Make `id` the chosen SAE, fetching its files if they are not here yet.
    pub async fn choose_sae(self: &Rc<Self>, id: String) {
        let origin = self.lab.borrow().slot(&id).map(|s| s.origin.clone());
        let Some(origin) = origin else {
            self.show_error(format!("There is no SAE called \"{id}\" here."));
            return;
        };
        {
            let mut state = self.state.borrow_mut();
            if state.location.sae != Some(SaeRef::Id(id.clone())) {
                state.location.feature = None;
            }
            state.location.sae = Some(SaeRef::Id(id.clone()));
            state.location.recipe = None;
        }
        self.lab.borrow_mut().heat = None;
        self.update_link();
        self.render_sae_picker();
        let needs_fetch = self
            .lab
            .borrow()
            .slot(&id)
            .is_some_and(|s| s.loaded.is_none());
        if needs_fetch && let Origin::Shipped { path } = origin {
            self.set_notice(format!("Fetching the SAE {id}…"));
            match fetch_sae_dir(&path).await {
                Ok(files) => {
                    if let Err(e) = self.add_files(&id, files, Origin::Shipped { path }).await {
                        self.show_error(format!("The SAE {id} could not be loaded: {e}"));
                    }
                }
                Err(e) => self.show_error(format!("The SAE {id} could not be fetched: {e}")),
            }
            self.set_notice(String::new());
        }
        // Links carry the recipe of SAEs that live only in a browser tab.
        if let Some(slot) = self.lab.borrow().slot(&id)
            && slot.origin == Origin::Stored
        {
            let recipe = slot
                .loaded
                .as_ref()
                .and_then(|l| l.provenance.recipe.as_ref())
                .map(|r| TrainForm::from_config(r).recipe());
            self.state.borrow_mut().location.recipe = recipe;
        }
        self.update_link();
        self.render_sae_picker();
        self.render_view();
        self.analyse().await;
        self.render();
        self.after_view_change().await;
    }

    pub async fn after_view_change(self: &Rc<Self>) {
        let view = self.state.borrow().location.view.unwrap_or_default();
        match view {
            View::Features => {
                self.ensure_features().await;
                self.render_features();
                self.ensure_card().await;
            }
            View::Evaluate => self.render_evaluate(),
            View::Steer => self.render_steer(),
            View::Train => self.render_train(),
            View::Prompt => self.render_heatmap(),
        }
    }

    // ---- Prompt heatmap ----

    /// The chosen SAE's top features on each token of the prompt, from a captured activation.
    pub async fn compute_heat(
        self: &Rc<Self>,
        activation: burn::tensor::Tensor<3>,
        tokens: Vec<String>,
    ) -> crate::Result<()> {
        let Some(id) = self.selected_sae() else {
            return Ok(());
        };
        let Some(loaded) = self.selected_loaded() else {
            return Ok(());
        };
        let [_, t, d] = activation.dims();
        let acts = read_f32(loaded.sae.encode_async(activation.reshape([t, d])).await?).await?;
        let d_sae = loaded.sae.config.d_sae;
        let top = (0..t)
            .map(|i| {
                let row = &acts[i * d_sae..(i + 1) * d_sae];
                let mut order: Vec<usize> = (0..d_sae).filter(|&f| row[f] > 0.0).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                order.truncate(HEAT_PER_TOKEN);
                order.into_iter().map(|f| (f, row[f])).collect()
            })
            .collect();
        self.lab.borrow_mut().heat = Some(Heat {
            sae_id: id,
            tokens,
            top,
        });
        Ok(())
    }

    pub fn render_heatmap(&self) {
        let Some(target) = self.element("heatmap") else {
            return;
        };
        clear(&target);
        let lab = self.lab.borrow();
        let Some(heat) = lab
            .heat
            .as_ref()
            .filter(|h| Some(&h.sae_id) == self.selected_sae().as_ref())
        else {
            let text = if self.selected_sae().is_some() {
                "The SAE's features appear here once it has run on the prompt."
            } else {
                "Choose an SAE above to see its features on each token."
            };
            append(&target, &el(&self.document, "p", "muted", text));
            return;
        };
        // Rows: the features that fire most anywhere in the prompt.
        let mut best: BTreeMap<usize, f32> = BTreeMap::new();
        for row in &heat.top {
            for &(f, a) in row {
                let entry = best.entry(f).or_insert(0.0);
                *entry = entry.max(a);
            }
        }
        let mut rows: Vec<(usize, f32)> = best.into_iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        rows.truncate(HEAT_ROWS);
        let max = rows.first().map_or(0.0, |r| r.1);
        let grid = el(&self.document, "div", "heat-grid", "");
        grid.set_attribute(
            "style",
            &format!(
                "grid-template-columns: 5rem repeat({}, minmax(1.6rem, auto))",
                heat.tokens.len()
            ),
        )
        .ok();
        append(&grid, &el(&self.document, "span", "heat-corner", "feature"));
        for (i, token) in heat.tokens.iter().enumerate() {
            let head = el(&self.document, "button", "heat-token", token);
            head.set_attribute("type", "button").ok();
            head.set_attribute("data-token", &i.to_string()).ok();
            if lab.token_focus == Some(i) {
                head.set_class_name("heat-token focus");
            }
            append(&grid, &head);
        }
        for &(feature, _) in &rows {
            let label = el(
                &self.document,
                "button",
                "heat-feature",
                &format!("#{feature}"),
            );
            label.set_attribute("type", "button").ok();
            label
                .set_attribute("data-feature", &feature.to_string())
                .ok();
            append(&grid, &label);
            for top in &heat.top {
                let a = top.iter().find(|(f, _)| *f == feature).map_or(0.0, |p| p.1);
                let cell = el(&self.document, "span", "heat-cell", "");
                let alpha = crate::ui::chart::shade(a, max);
                cell.set_attribute(
                    "style",
                    &format!("background: rgba(230, 120, 20, {alpha:.3})"),
                )
                .ok();
                cell.set_attribute("title", &format!("feature {feature}: {a:.3}"))
                    .ok();
                cell.set_attribute("data-feature", &feature.to_string())
                    .ok();
                append(&grid, &cell);
            }
        }
        append(&target, &grid);
        // The clicked token's features.
        let list_target = self.element("token-features");
        if let Some(list_target) = list_target {
            clear(&list_target);
            if let Some(i) = lab.token_focus.filter(|&i| i < heat.top.len()) {
                append(
                    &list_target,
                    &el(
                        &self.document,
                        "h3",
                        "",
                        &format!("Features on token {i} ({:?})", heat.tokens[i]),
                    ),
                );
                let list = el(&self.document, "ul", "feature-chips", "");
                if heat.top[i].is_empty() {
                    append(
                        &list,
                        &el(
                            &self.document,
                            "li",
                            "muted",
                            "No feature fires on this token.",
                        ),
                    );
                }
                for &(f, a) in &heat.top[i] {
                    let item = el(&self.document, "li", "", "");
                    let button = el(&self.document, "button", "chip", &format!("#{f}  {a:.2}"));
                    button.set_attribute("type", "button").ok();
                    button.set_attribute("data-feature", &f.to_string()).ok();
                    append(&item, &button);
                    append(&list, &item);
                }
                append(&list_target, &list);
            }
        }
    }

    // ---- Training ----

    pub fn read_train_form(&self) {
        let value = |id: &str| input_of(self, id).map(|e| e.value()).unwrap_or_default();
        let select = |id: &str| select_of(self, id).map(|e| e.value()).unwrap_or_default();
        let text = self
            .element("train-text")
            .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
            .map(|e| e.value())
            .unwrap_or_default();
        let mut lab = self.lab.borrow_mut();
        let form = &mut lab.form;
        form.corpus = if select("train-corpus") == "text" {
            CorpusKind::Text
        } else {
            CorpusKind::TinyTales
        };
        form.text = text;
        form.hook = select("train-hook");
        form.architecture = select("train-arch");
        form.k = value("train-k");
        form.expansion = value("train-expansion");
        form.tokens = value("train-tokens");
        form.batch_size = value("train-batch");
        form.learning_rate = value("train-lr");
        form.sparsity = value("train-sparsity");
        form.seed = value("train-seed");
    }

    pub fn write_train_form(&self) {
        let lab = self.lab.borrow();
        let form = &lab.form;
        if let Some(hook) = select_of(self, "train-hook") {
            if hook.length() == 0 {
                for name in self.hook_names() {
                    let option = el(&self.document, "option", "", &name);
                    option.set_attribute("value", &name).ok();
                    hook.append_child(&option).ok();
                }
            }
            hook.set_value(&form.hook);
        }
        if let Some(arch) = select_of(self, "train-arch") {
            arch.set_value(&form.architecture);
        }
        if let Some(corpus) = select_of(self, "train-corpus") {
            corpus.set_value(if form.corpus == CorpusKind::Text {
                "text"
            } else {
                "tinytales"
            });
        }
        if let Some(text) = self
            .element("train-text")
            .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
        {
            text.set_value(&form.text);
        }
        for (id, value) in [
            ("train-k", &form.k),
            ("train-expansion", &form.expansion),
            ("train-tokens", &form.tokens),
            ("train-batch", &form.batch_size),
            ("train-lr", &form.learning_rate),
            ("train-sparsity", &form.sparsity),
            ("train-seed", &form.seed),
        ] {
            if let Some(input) = input_of(self, id) {
                input.set_value(value);
            }
        }
    }

    /// Train an SAE from the form: capture, train with live charts, evaluate, keep. On the CPU
    /// path the work runs in a Web Worker; on WebGPU in the page (the GPU does the work).
    pub async fn train(self: &Rc<Self>) {
        if self.lab.borrow().train.active {
            return;
        }
        self.read_train_form();
        let form = self.lab.borrow().form.clone();
        let config = match form.parse(&self.hook_names()) {
            Ok(config) => config,
            Err(message) => {
                self.show_error(message);
                return;
            }
        };
        self.train_control.pause.set(false);
        self.train_control.cancel.set(false);
        self.lab.borrow_mut().train = TrainRun {
            active: true,
            phase: "Starting…".into(),
            ..TrainRun::default()
        };
        self.render_train();
        let on_gpu = self
            .state
            .borrow()
            .backend
            .as_ref()
            .is_some_and(|b| b.kind == crate::backend::BackendKind::Wgpu);
        let started = now_ms();
        let files = if on_gpu {
            self.train_in_page(config).await
        } else {
            self.train_in_worker(config).await
        };
        let seconds = (now_ms() - started) / 1000.0;
        let result = match files {
            Ok(Some(files)) => {
                let id = format!("tab-{}", js::random_id());
                let zip = files.to_zip(&id);
                match self.add_files(&id, files, Origin::Stored).await {
                    Ok(()) => {
                        if let Err(e) = keep_in_browser(&id, &zip).await {
                            self.show_error(format!(
                                "The SAE was trained but could not be kept in browser storage ({e}); export it to keep it."
                            ));
                        }
                        Ok(Some(id))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        {
            let mut lab = self.lab.borrow_mut();
            lab.train.active = false;
            lab.train.paused = false;
            match &result {
                Ok(Some(id)) => {
                    lab.train.phase = "Done.".into();
                    lab.train.fraction = 1.0;
                    lab.train.result = format!("Trained in {seconds:.0} s and kept as {id}.");
                }
                Ok(None) => lab.train.phase = "Cancelled: nothing was kept.".into(),
                Err(e) => lab.train.phase = format!("Stopped: {e}"),
            }
        }
        if let Err(e) = &result {
            self.show_error(format!("Training failed: {e}"));
        }
        self.render_train();
        if let Ok(Some(id)) = result {
            self.choose_sae(id).await;
        }
    }

    fn set_train_phase(&self, phase: String, fraction: f64) {
        {
            let mut lab = self.lab.borrow_mut();
            lab.train.phase = phase;
            lab.train.fraction = fraction;
        }
        self.render_train_progress();
    }

    fn record_progress(&self, p: &Progress) {
        {
            let mut lab = self.lab.borrow_mut();
            lab.train.history.push(p.clone());
            lab.train.fraction = 0.3 + 0.6 * p.stats.step as f64 / p.total_steps.max(1) as f64;
            lab.train.phase = format!(
                "Training: step {} of {}, {:.0} vectors/s, about {:.0} s left",
                p.stats.step, p.total_steps, p.vectors_per_second, p.seconds_left
            );
        }
        self.render_train_progress();
        self.render_train_charts();
    }

    async fn train_in_page(
        self: &Rc<Self>,
        config: crate::sae::train::SaeTrainingConfig,
    ) -> Result<Option<SaeFiles>, String> {
        struct PageReporter<'a>(&'a App);
        impl Reporter for PageReporter<'_> {
            fn phase(&self, text: String, fraction: f64) {
                self.0.set_train_phase(text, fraction);
            }
            fn progress(&self, progress: &Progress) {
                self.0.record_progress(progress);
            }
            fn control(&self) -> Control {
                if self.0.train_control.cancel.get() {
                    Control::Stop
                } else if self.0.train_control.pause.get() {
                    Control::Pause
                } else {
                    Control::Continue
                }
            }
        }
        let loaded = self.loaded().map_err(|e| e.to_string())?;
        train_job(&loaded, config, &PageReporter(self))
            .await
            .map_err(|e| e.to_string())
    }

    /// Start the worker (once), and wait until it listens.
    async fn ensure_worker(self: &Rc<Self>) -> Result<(), String> {
        if self.worker.borrow().is_some() {
            return Ok(());
        }
        let app = Rc::clone(self);
        let worker = worker::spawn(move |event| {
            let Some(heard) = worker::parse_message(&event.data()) else {
                return;
            };
            let finished = |result| {
                if let Some(slot) = app.worker_outcome.borrow().as_ref() {
                    *slot.borrow_mut() = Some(result);
                }
            };
            match heard {
                Heard::Ready => app.worker_ready.set(true),
                Heard::Phase(text, fraction) => app.set_train_phase(text, fraction),
                Heard::Progress(p) => app.record_progress(&p),
                Heard::Done(files) => finished(Ok(Some(files))),
                Heard::Cancelled => finished(Ok(None)),
                Heard::Error(message) => finished(Err(message)),
                Heard::FeaturesPhase(id, text) => {
                    if app.features_request.get() == id {
                        app.lab.borrow_mut().feature_status = text;
                        app.render_feature_status();
                    }
                }
                Heard::Features(id, result) => {
                    app.features_outcomes.borrow_mut().insert(id, result);
                }
            }
        })?;
        *self.worker.borrow_mut() = Some(worker);
        let since = now_ms();
        while !self.worker_ready.get() {
            if now_ms() - since > 60_000.0 {
                *self.worker.borrow_mut() = None;
                return Err("the worker did not start within a minute".into());
            }
            sleep(50).await;
        }
        Ok(())
    }

    fn model_base_url(&self) -> Result<String, String> {
        web_sys::Url::new_with_base(
            super::BUILTIN_MODEL,
            &window().location().href().unwrap_or_default(),
        )
        .map(|u| u.href())
        .map_err(js_error)
    }

    /// Send a request to the worker and wait for its `features` answer (JSON).
    async fn ask_worker(
        self: &Rc<Self>,
        kind: &str,
        fields: Vec<(&str, JsValue)>,
    ) -> Result<String, String> {
        self.ensure_worker().await?;
        let id = self.features_request.get() + 1;
        self.features_request.set(id);
        let mut all = vec![("id", JsValue::from(f64::from(id)))];
        all.extend(fields);
        if let Some(worker) = self.worker.borrow().as_ref() {
            worker::send(worker, kind, &all);
        }
        loop {
            if let Some(result) = self.features_outcomes.borrow_mut().remove(&id) {
                return result;
            }
            sleep(50).await;
        }
    }

    /// Scan `loaded` in the worker (on its CPU copy of the model); the worker keeps the report
    /// under `key` and answers with the list's rows.
    async fn features_in_worker(
        self: &Rc<Self>,
        key: &str,
        loaded: &LoadedSae,
    ) -> Result<FeatureList, String> {
        let base = self.model_base_url()?;
        let json = self
            .ask_worker(
                "features",
                vec![
                    ("key", key.into()),
                    ("modelBase", base.into()),
                    (
                        "cfg",
                        js_sys::Uint8Array::from(&loaded.files.cfg[..]).into(),
                    ),
                    (
                        "weights",
                        js_sys::Uint8Array::from(&loaded.files.weights[..]).into(),
                    ),
                ],
            )
            .await?;
        serde_json::from_str(&json)
            .map_err(|e| format!("the worker's feature list did not arrive intact: {e}"))
    }

    /// Fetch the open card's data from the worker when the page does not hold it yet.
    pub async fn ensure_card(self: &Rc<Self>) {
        let (Some(id), Some(feature)) = (self.selected_sae(), self.state.borrow().location.feature)
        else {
            return;
        };
        let Some(index) = self.lab.borrow().slot(&id).and_then(|s| s.features.clone()) else {
            return;
        };
        if index.card(feature).is_some() || !index.rows.iter().any(|r| r.index == feature) {
            self.render_card();
            return;
        }
        let answer = self
            .ask_worker(
                "feature",
                vec![
                    ("key", id.as_str().into()),
                    ("index", (feature as f64).into()),
                ],
            )
            .await
            .and_then(|json| serde_json::from_str::<FeatureData>(&json).map_err(|e| e.to_string()));
        match answer {
            Ok(data) => {
                index.cards.borrow_mut().insert(feature, Rc::new(data));
            }
            Err(e) => self.show_error(format!("Feature #{feature} could not be shown: {e}")),
        }
        self.render_card();
    }

    async fn train_in_worker(
        self: &Rc<Self>,
        config: crate::sae::train::SaeTrainingConfig,
    ) -> Result<Option<SaeFiles>, String> {
        let outcome: WorkerOutcome = Rc::default();
        self.set_train_phase("Starting the training worker…".into(), 0.0);
        self.ensure_worker().await?;
        *self.worker_outcome.borrow_mut() = Some(Rc::clone(&outcome));
        let base = self.model_base_url()?;
        let config_json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
        if let Some(worker) = self.worker.borrow().as_ref() {
            worker::send(
                worker,
                "train",
                &[("modelBase", base.into()), ("config", config_json.into())],
            );
        }
        let mut sent = Control::Continue;
        loop {
            if let Some(result) = outcome.borrow_mut().take() {
                *self.worker_outcome.borrow_mut() = None;
                return result;
            }
            // Pass pause, resume and cancel on as they change.
            let wanted = if self.train_control.cancel.get() {
                Control::Stop
            } else if self.train_control.pause.get() {
                Control::Pause
            } else {
                Control::Continue
            };
            if wanted != sent {
                let kind = match wanted {
                    Control::Stop => "cancel",
                    Control::Pause => "pause",
                    Control::Continue => "resume",
                };
                if let Some(worker) = self.worker.borrow().as_ref() {
                    worker::send(worker, kind, &[]);
                }
                self.lab.borrow_mut().train.paused = wanted == Control::Pause;
                sent = wanted;
            }
            sleep(50).await;
        }
    }

    pub fn render_train_progress(&self) {
        let lab = self.lab.borrow();
        let run = &lab.train;
        if let Some(progress) = self.element("train-progress") {
            progress
                .set_attribute("value", &format!("{:.3}", run.fraction))
                .ok();
        }
        self.set_text("train-status", &run.phase);
        self.set_text("train-result", &run.result);
        if let Some(b) = self.element("train-start") {
            b.toggle_attribute_with_force("disabled", run.active).ok();
        }
        if let Some(b) = self.element("train-pause") {
            b.toggle_attribute_with_force("disabled", !run.active).ok();
            b.set_text_content(Some(if run.paused || self.train_control.pause.get() {
                "Resume"
            } else {
                "Pause"
            }));
        }
        if let Some(b) = self.element("train-cancel") {
            b.toggle_attribute_with_force("disabled", !run.active).ok();
        }
        if let Some(file) = &lab.text_file {
            self.set_text("train-file-status", file);
        }
    }

    pub fn render_train_charts(&self) {
        let Some(target) = self.element("train-charts") else {
            return;
        };
        let lab = self.lab.borrow();
        let history = &lab.train.history;
        // Redraw at most ~100 times per run: drawing is cheap, but not free on long runs.
        let every = (history.len() / 100).max(1);
        if !history.is_empty() && !history.len().is_multiple_of(every) {
            return;
        }
        clear(&target);
        let series = |f: &dyn Fn(&Progress) -> f64| -> Vec<(f64, f64)> {
            history
                .iter()
                .map(|p| (p.stats.step as f64, f(p)))
                .collect()
        };
        let mut charts: Vec<(String, Vec<(f64, f64)>)> =
            vec![("Loss".into(), series(&|p| f64::from(p.stats.loss)))];
        if let Some(first) = history.first() {
            for (i, (name, _)) in first.stats.terms.iter().enumerate() {
                if first.stats.terms.len() > 1 {
                    charts.push((
                        format!("Loss term: {name}"),
                        series(&|p| p.stats.terms.get(i).map_or(f64::NAN, |t| f64::from(t.1))),
                    ));
                }
            }
        }
        charts.push((
            "L0 (features per token)".into(),
            series(&|p| f64::from(p.stats.l0)),
        ));
        charts.push((
            "Explained variance".into(),
            series(&|p| f64::from(p.stats.explained_variance)),
        ));
        charts.push((
            "Dead fraction".into(),
            series(&|p| f64::from(p.stats.dead_fraction)),
        ));
        for (name, points) in charts {
            let chart = line_chart(&self.document, &name, &points, Frame::SMALL);
            append(&target, &chart);
        }
    }

    pub fn render_train(&self) {
        self.render_train_progress();
        self.render_train_charts();
    }

    // ---- Features ----

    /// Scan held-out stories with the chosen SAE (once per SAE), in the worker on both paths:
    /// the summary is host work either way, and there the page never waits on it.
    pub async fn ensure_features(self: &Rc<Self>) -> Option<Rc<FeatureIndex>> {
        let id = self.selected_sae()?;
        if let Some(index) = self.lab.borrow().slot(&id).and_then(|s| s.features.clone()) {
            return Some(index);
        }
        let loaded_sae = self.selected_loaded()?;
        let index = match self.features_in_worker(&id, &loaded_sae).await {
            Ok(list) => Ok(FeatureIndex {
                tokens: list.tokens,
                rows: list.rows,
                cards: RefCell::default(),
                here: None,
            }),
            // The worker is an optimisation: without it, the page scans itself.
            Err(message) => {
                web_sys::console::warn_1(
                    &format!("feature scan in the worker failed ({message}); scanning in the page")
                        .into(),
                );
                let loaded = self.loaded().map_err(|e| e.to_string());
                match loaded {
                    Ok(loaded) => {
                        let on_phase = |text: String| {
                            self.lab.borrow_mut().feature_status = text;
                            self.render_feature_status();
                        };
                        feature_job(&loaded, &loaded_sae.sae, loaded_sae.hook, &on_phase)
                            .await
                            .map(|report| FeatureIndex {
                                tokens: report.tokens,
                                rows: FeatureList::of(&report).rows,
                                cards: RefCell::default(),
                                here: Some(report),
                            })
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match index {
            Ok(index) => {
                let index = Rc::new(index);
                let mut lab = self.lab.borrow_mut();
                lab.feature_status = format!(
                    "{} features, read on {} held-out tokens.",
                    index.rows.len(),
                    index.tokens
                );
                if let Some(slot) = lab.slot_mut(&id) {
                    slot.features = Some(Rc::clone(&index));
                }
                Some(index)
            }
            Err(e) => {
                self.lab.borrow_mut().feature_status = String::new();
                self.show_error(format!("The features could not be read: {e}"));
                None
            }
        }
    }

    fn render_feature_status(&self) {
        self.set_text("feature-status", &self.lab.borrow().feature_status);
    }

    pub fn render_features(&self) {
        self.render_feature_status();
        let Some(body) = self.element("feature-rows") else {
            return;
        };
        clear(&body);
        let Some(id) = self.selected_sae() else {
            self.set_text(
                "feature-status",
                "Choose an SAE above to list its features.",
            );
            return;
        };
        let lab = self.lab.borrow();
        let Some(index) = lab.slot(&id).and_then(|s| s.features.clone()) else {
            return;
        };
        let rows = &index.rows;
        let key = lab.sort.unwrap_or(SortKey::Density);
        let descending = lab.sort.is_none() || lab.descending;
        let chosen = feature_list::select(rows, &lab.query, key, descending, LIST_LIMIT);
        self.set_text(
            "feature-count",
            &format!("{} shown of {} features", chosen.len(), rows.len()),
        );
        for i in chosen {
            let row = &rows[i];
            let tr = el(&self.document, "tr", "", "");
            tr.set_attribute("data-feature", &row.index.to_string())
                .ok();
            append(
                &tr,
                &el(&self.document, "td", "num", &format!("#{}", row.index)),
            );
            append(
                &tr,
                &el(&self.document, "td", "num", &format!("{:.4}", row.density)),
            );
            append(
                &tr,
                &el(
                    &self.document,
                    "td",
                    "num",
                    &format!("{:.2}", row.max_activation),
                ),
            );
            let concept = row
                .concept
                .as_ref()
                .map_or("–".to_string(), |(c, a)| format!("{c} ({a:.2})"));
            append(&tr, &el(&self.document, "td", "", &concept));
            append(
                &tr,
                &el(
                    &self.document,
                    "td",
                    "tokens",
                    &row.top_tokens
                        .iter()
                        .map(|t| format!("{t:?}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            );
            append(&body, &tr);
        }
        drop(lab);
        self.render_card();
    }

    pub fn render_card(&self) {
        let Some(card) = self.element("feature-card") else {
            return;
        };
        clear(&card);
        let feature = self.state.borrow().location.feature;
        let Some(feature) = feature else {
            card.set_attribute("hidden", "").ok();
            return;
        };
        card.remove_attribute("hidden").ok();
        let Some(id) = self.selected_sae() else {
            return;
        };
        let lab = self.lab.borrow();
        let Some(index) = lab.slot(&id).and_then(|s| s.features.clone()) else {
            append(
                &card,
                &el(
                    &self.document,
                    "p",
                    "muted",
                    &format!("Feature #{feature}: reading the SAE's features…"),
                ),
            );
            return;
        };
        if !index.rows.iter().any(|r| r.index == feature) {
            append(
                &card,
                &el(
                    &self.document,
                    "p",
                    "",
                    &format!(
                        "This SAE has no feature #{feature}: its features are 0 to {}.",
                        index.rows.len().saturating_sub(1)
                    ),
                ),
            );
            return;
        }
        let Some(data) = index.card(feature) else {
            append(
                &card,
                &el(
                    &self.document,
                    "p",
                    "muted",
                    &format!("Loading feature #{feature}…"),
                ),
            );
            return;
        };
        let d = &self.document;
        let title = el(d, "h2", "", &format!("Feature #{feature}"));
        title.set_id("card-title");
        append(&card, &title);
        append(
            &card,
            &el(
                d,
                "p",
                "muted",
                &format!(
                    "Density {:.4} (fires on {:.2}% of tokens), max activation {:.2}, mean when active {:.2}.",
                    data.density,
                    data.density * 100.0,
                    data.max_activation,
                    data.mean_active
                ),
            ),
        );
        let concept = el(
            d,
            "p",
            "concept",
            &match &data.best_concept {
                Some(c) => format!(
                    "Best-matching concept: {} (AUROC {:.3})",
                    c.concept, c.auroc
                ),
                None => "No concept labels for this text.".into(),
            },
        );
        concept.set_id("card-concept");
        append(&card, &concept);
        let steer = el(d, "button", "", "Steer with this feature");
        steer.set_attribute("type", "button").ok();
        steer
            .set_attribute("data-steer-feature", &feature.to_string())
            .ok();
        append(&card, &steer);

        let columns = el(d, "div", "card-columns", "");
        let left = el(d, "div", "", "");
        append(&left, &el(d, "h3", "", "Top activations"));
        let top = el(d, "div", "examples", "");
        top.set_id("card-top");
        for example in &data.top_examples {
            append(
                &top,
                &shaded_tokens(
                    d,
                    &example.tokens,
                    &example.activations,
                    data.max_activation,
                    Some(example.focus),
                ),
            );
        }
        if data.top_examples.is_empty() {
            append(
                &top,
                &el(d, "p", "muted", "It never fired on the held-out stories."),
            );
        }
        append(&left, &top);
        let bands = el(d, "div", "examples", "");
        bands.set_id("card-bands");
        for band in &data.bands {
            if band.examples.is_empty() {
                continue;
            }
            append(
                &bands,
                &el(
                    d,
                    "h4",
                    "",
                    &format!("Activations {:.2} to {:.2}", band.low, band.high),
                ),
            );
            for example in &band.examples {
                append(
                    &bands,
                    &shaded_tokens(
                        d,
                        &example.tokens,
                        &example.activations,
                        data.max_activation,
                        Some(example.focus),
                    ),
                );
            }
        }
        append(&left, &el(d, "h3", "", "Quantile examples"));
        append(&left, &bands);
        append(&columns, &left);

        let right = el(d, "div", "", "");
        let counts: Vec<f64> = data.histogram.counts.iter().map(|&c| c as f64).collect();
        let hist = histogram(
            d,
            "Activation histogram (when active)",
            &data.histogram.edges,
            &counts,
            Frame::SMALL,
        );
        hist.set_id("card-histogram");
        append(&right, &hist);
        append(&right, &el(d, "h3", "", "Logit lens: tokens it promotes"));
        let max_lens = data
            .promoted
            .iter()
            .chain(&data.suppressed)
            .map(|t| f64::from(t.value.abs()))
            .fold(0.0, f64::max);
        let lens_rows = |tokens: &[crate::sae::features::LensToken]| {
            tokens
                .iter()
                .map(|t| {
                    (
                        format!("{:?}", t.token),
                        f64::from(t.value),
                        format!("{:+.2}", t.value),
                    )
                })
                .collect::<Vec<_>>()
        };
        let promoted = bar_list(d, &lens_rows(&data.promoted), max_lens);
        promoted.set_id("card-lens-promoted");
        append(&right, &promoted);
        append(&right, &el(d, "h3", "", "…and suppresses"));
        let suppressed = bar_list(d, &lens_rows(&data.suppressed), max_lens);
        suppressed.set_id("card-lens-suppressed");
        append(&right, &suppressed);
        append(
            &right,
            &el(d, "h3", "", "Nearest features (decoder cosine)"),
        );
        let nearest = el(d, "ul", "feature-chips", "");
        nearest.set_id("card-nearest");
        for &(f, cos) in &data.nearest {
            let item = el(d, "li", "", "");
            let button = el(d, "button", "chip", &format!("#{f}  {cos:.2}"));
            button.set_attribute("type", "button").ok();
            button.set_attribute("data-feature", &f.to_string()).ok();
            append(&item, &button);
            append(&nearest, &item);
        }
        append(&right, &nearest);
        append(&columns, &right);
        append(&card, &columns);
    }

    pub async fn open_feature(self: &Rc<Self>, feature: usize) {
        {
            let mut state = self.state.borrow_mut();
            state.location.feature = Some(feature);
            state.location.view = Some(View::Features);
        }
        self.update_link();
        self.render_view();
        self.render_card();
        self.after_view_change().await;
        if let Some(card) = self.element("feature-card") {
            card.scroll_into_view();
        }
    }

    // ---- Steering ----

    pub fn read_steer_rows(&self) {
        let Some(list) = self.element("steer-rows") else {
            return;
        };
        let rows = list.query_selector_all(".steer-row").ok();
        let mut out = Vec::new();
        if let Some(rows) = rows {
            for i in 0..rows.length() {
                let Some(row) = rows.item(i).and_then(|n| n.dyn_into::<Element>().ok()) else {
                    continue;
                };
                let value = |selector: &str| {
                    row.query_selector(selector)
                        .ok()
                        .flatten()
                        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
                        .map(|e| e.value())
                        .unwrap_or_default()
                };
                let mode = row
                    .query_selector("select")
                    .ok()
                    .flatten()
                    .and_then(|e| e.dyn_into::<HtmlSelectElement>().ok())
                    .map(|e| e.value())
                    .unwrap_or_default();
                out.push(SteerRow {
                    feature: value(".steer-feature"),
                    mode,
                    value: value(".steer-value"),
                });
            }
        }
        self.lab.borrow_mut().steer_rows = out;
    }

    /// The typed rows as interventions, or a message naming the bad one.
    fn interventions(&self, d_sae: usize) -> Result<Vec<Intervention>, String> {
        let rows = self.lab.borrow().steer_rows.clone();
        let mut out = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let n = i + 1;
            let feature: usize =
                row.feature
                    .trim()
                    .trim_start_matches('#')
                    .parse()
                    .map_err(|_| {
                        format!(
                            "Steering row {n}: \"{}\" is not a feature number.",
                            crate::ui::link::shorten(&row.feature)
                        )
                    })?;
            if feature >= d_sae {
                return Err(format!(
                    "Steering row {n}: this SAE has features 0 to {}, not {feature}.",
                    d_sae - 1
                ));
            }
            let value = || -> Result<f32, String> {
                row.value
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        format!(
                            "Steering row {n}: \"{}\" is not a number.",
                            crate::ui::link::shorten(&row.value)
                        )
                    })
            };
            let mode = match row.mode.as_str() {
                "add" => InterventionMode::Add { strength: value()? },
                "clamp" => InterventionMode::Clamp { value: value()? },
                _ => InterventionMode::Ablate,
            };
            out.push(Intervention { feature, mode });
        }
        if out.is_empty() {
            return Err("Add at least one feature to steer with.".into());
        }
        Ok(out)
    }

    pub fn render_steer_rows(&self) {
        let Some(list) = self.element("steer-rows") else {
            return;
        };
        clear(&list);
        let d = &self.document;
        for (i, row) in self.lab.borrow().steer_rows.iter().enumerate() {
            let line = el(d, "div", "steer-row", "");
            let feature = el(d, "input", "steer-feature", "");
            feature
                .set_attribute("aria-label", &format!("feature of row {}", i + 1))
                .ok();
            feature.set_attribute("inputmode", "numeric").ok();
            let mode = el(d, "select", "steer-mode", "");
            for m in ["add", "clamp", "ablate"] {
                let option = el(d, "option", "", m);
                option.set_attribute("value", m).ok();
                append(&mode, &option);
            }
            let value = el(d, "input", "steer-value", "");
            value
                .set_attribute("aria-label", &format!("strength or value of row {}", i + 1))
                .ok();
            let remove = el(d, "button", "steer-remove", "Remove");
            remove.set_attribute("type", "button").ok();
            remove.set_attribute("data-row", &i.to_string()).ok();
            append(&line, &el(d, "span", "muted", "Feature"));
            append(&line, &feature);
            append(&line, &mode);
            append(&line, &value);
            append(&line, &remove);
            append(&list, &line);
            if let Some(input) = feature.dyn_ref::<HtmlInputElement>() {
                input.set_value(&row.feature);
            }
            if let Some(select) = mode.dyn_ref::<HtmlSelectElement>() {
                select.set_value(&row.mode);
            }
            if let Some(input) = value.dyn_ref::<HtmlInputElement>() {
                input.set_value(&row.value);
            }
        }
    }

    pub fn steering_to_link(&self) {
        let d_sae = self
            .selected_loaded()
            .map_or(usize::MAX, |l| l.sae.config.d_sae);
        let list = self.interventions(d_sae).unwrap_or_default();
        self.state.borrow_mut().location.steer = list;
        self.update_link();
    }

    pub fn render_steer(&self) {
        self.set_text("steer-status", &self.lab.borrow().steer_status);
        let lab = self.lab.borrow();
        let (Some(default), Some(steered), Some(shift)) = (
            self.element("steer-default"),
            self.element("steer-steered"),
            self.element("steer-shift"),
        ) else {
            return;
        };
        clear(&shift);
        match &lab.steer_result {
            Some((a, b, changes)) => {
                default.set_text_content(Some(a));
                steered.set_text_content(Some(b));
                let max = changes.iter().map(|c| c.1.abs()).fold(0.0, f64::max);
                append(&shift, &bar_list(&self.document, changes, max));
            }
            None => {
                default.set_text_content(Some(""));
                steered.set_text_content(Some(""));
            }
        }
    }

    /// Generate default and steered text from the same seed, and the next-token shift.
    pub async fn steer(self: &Rc<Self>) {
        self.read_steer_rows();
        let Some(loaded_sae) = self.selected_loaded() else {
            self.show_error("Choose an SAE above before steering with its features.".into());
            return;
        };
        let interventions = match self.interventions(loaded_sae.sae.config.d_sae) {
            Ok(list) => list,
            Err(message) => {
                self.show_error(message);
                return;
            }
        };
        self.state.borrow_mut().location.steer = interventions.clone();
        self.update_link();
        let config = match self.state.borrow().form.parse() {
            Ok(config) => config,
            Err(message) => {
                self.show_error(message);
                return;
            }
        };
        if let Some(b) = self.element("steer-run") {
            b.set_attribute("disabled", "").ok();
        }
        let result = async {
            let loaded = self.loaded()?;
            let prompt = self.state.borrow().prompt.clone();
            let ids = loaded.encode_prompt(&prompt)?.ids;
            let patch = || -> crate::Result<Hooks> {
                Ok(Hooks::none().with_patch(
                    loaded_sae.hook,
                    intervention_patch(&loaded_sae.sae, &interventions)?,
                ))
            };
            let mut texts = Vec::new();
            for (label, hooks) in [("default", Hooks::none()), ("steered", patch()?)] {
                let mut generation = Generation::new(&loaded.model, &ids, config.clone(), hooks)?;
                while let Step::Token(_) = generation.step().await? {
                    self.lab.borrow_mut().steer_status = format!(
                        "Generating the {label} text: {} tokens…",
                        generation.produced().len()
                    );
                    self.set_text("steer-status", &self.lab.borrow().steer_status);
                    sleep(0).await;
                }
                texts.push(loaded.tokenizer.decode(generation.produced())?);
            }
            // How the next-token distribution after the prompt moves.
            let probabilities = |hooks: Hooks| {
                let loaded = Rc::clone(&loaded);
                let ids = ids.clone();
                async move {
                    let out = loaded
                        .model
                        .forward(&[ids], &hooks, LogitsFor::LastPosition)?;
                    let logits = read_f32(out.logits).await?;
                    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let total: f64 = logits.iter().map(|&v| f64::from(v - max).exp()).sum();
                    Ok::<_, crate::SaeplayError>(
                        logits
                            .iter()
                            .map(|&v| f64::from(v - max).exp() / total)
                            .collect::<Vec<f64>>(),
                    )
                }
            };
            let before = probabilities(Hooks::none()).await?;
            let after = probabilities(patch()?).await?;
            let mut order: Vec<usize> = (0..before.len()).collect();
            order.sort_by(|&a, &b| {
                (after[b] - before[b])
                    .abs()
                    .total_cmp(&(after[a] - before[a]).abs())
            });
            let changes = order
                .into_iter()
                .take(10)
                .map(|i| {
                    let delta = after[i] - before[i];
                    (
                        format!("{:?}", loaded.tokenizer.token_text(i as u32)),
                        delta,
                        format!(
                            "{:.1}% → {:.1}% ({:+.1})",
                            before[i] * 100.0,
                            after[i] * 100.0,
                            delta * 100.0
                        ),
                    )
                })
                .collect();
            Ok::<_, crate::SaeplayError>((texts.remove(0), texts.remove(0), changes))
        }
        .await;
        {
            let mut lab = self.lab.borrow_mut();
            match result {
                Ok(r) => {
                    lab.steer_status = format!("Both from seed {}, same settings.", config.seed);
                    lab.steer_result = Some(r);
                }
                Err(e) => {
                    lab.steer_status = String::new();
                    drop(lab);
                    self.show_error(format!("Steering failed: {e}"));
                }
            }
        }
        if let Some(b) = self.element("steer-run") {
            b.remove_attribute("disabled").ok();
        }
        if let Some(out) = self.element("steer-steered") {
            out.set_attribute("data-done", "true").ok();
        }
        self.render_steer();
    }

    // ---- Evaluate ----

    pub fn render_evaluate(&self) {
        let d = &self.document;
        let lab = self.lab.borrow();
        if let Some(body) = self.element("eval-rows") {
            clear(&body);
            for slot in &lab.saes {
                let tr = el(d, "tr", "", "");
                tr.set_attribute("data-sae", &slot.id).ok();
                let origin = match &slot.origin {
                    Origin::Shipped { .. } => "shipped",
                    Origin::Stored => "this browser",
                    Origin::Remote { .. } => "fetched",
                };
                for (class, text) in [
                    ("", slot.id.clone()),
                    ("", origin.to_string()),
                    ("", slot.hook_name.clone()),
                    ("", format!("{} ({})", slot.architecture, slot.d_sae)),
                    ("num", fmt(slot.summary.l0, 1)),
                    ("num", fmt(slot.summary.explained_variance, 3)),
                    ("num", fmt(slot.summary.loss_recovered, 3)),
                    ("num", fmt(slot.summary.dead_fraction, 3)),
                    ("num", fmt(slot.summary.dense_fraction, 3)),
                    ("num", fmt(slot.summary.mean_concept_auroc, 3)),
                ] {
                    append(&tr, &el(d, "td", class, &text));
                }
                append(&body, &tr);
            }
        }
        if let Some(target) = self.element("eval-pareto") {
            clear(&target);
            let points: Vec<(f64, f64)> = lab
                .saes
                .iter()
                .map(|s| {
                    (
                        s.summary.l0.unwrap_or(f64::NAN),
                        s.summary.loss_recovered.unwrap_or(f64::NAN),
                    )
                })
                .collect();
            let frame = Frame::WIDE;
            let figure = el(d, "figure", "chart-figure", "");
            append(
                &figure,
                &el(
                    d,
                    "figcaption",
                    "",
                    "L0 against loss recovered, every SAE here (up and left is better)",
                ),
            );
            let svg = super::dom::svg_el(
                d,
                "svg",
                &[
                    ("viewBox", format!("0 0 {} {}", frame.width, frame.height)),
                    ("class", "chart".into()),
                    ("role", "img".into()),
                    ("aria-label", "Pareto chart".into()),
                ],
            );
            if let Some((placed, xs, ys)) = crate::ui::chart::scatter(&points, frame) {
                let axis = super::dom::svg_el(
                    d,
                    "polyline",
                    &[
                        (
                            "points",
                            format!(
                                "{0:.1},{1:.1} {0:.1},{2:.1} {3:.1},{2:.1}",
                                frame.x(0.0),
                                frame.y(1.0),
                                frame.y(0.0),
                                frame.x(1.0)
                            ),
                        ),
                        ("class", "axis".into()),
                    ],
                );
                append(&svg, &axis);
                for (x, y, anchor, text) in [
                    (
                        frame.x(0.0),
                        frame.y(0.0) + 14.0,
                        "start",
                        format!("L0 {}", crate::ui::chart::tick(xs.min)),
                    ),
                    (
                        frame.x(1.0),
                        frame.y(0.0) + 14.0,
                        "end",
                        crate::ui::chart::tick(xs.max),
                    ),
                    (
                        frame.x(0.0) - 3.0,
                        frame.y(1.0) + 4.0,
                        "end",
                        crate::ui::chart::tick(ys.max),
                    ),
                    (
                        frame.x(0.0) - 3.0,
                        frame.y(0.0),
                        "end",
                        crate::ui::chart::tick(ys.min),
                    ),
                ] {
                    let t = super::dom::svg_el(
                        d,
                        "text",
                        &[
                            ("x", format!("{x:.1}")),
                            ("y", format!("{y:.1}")),
                            ("text-anchor", anchor.into()),
                            ("class", "tick".into()),
                        ],
                    );
                    t.set_text_content(Some(&text));
                    append(&svg, &t);
                }
                for (i, x, y) in placed {
                    let chosen = Some(&lab.saes[i].id) == self.selected_sae().as_ref();
                    let dot = super::dom::svg_el(
                        d,
                        "circle",
                        &[
                            ("cx", format!("{x:.1}")),
                            ("cy", format!("{y:.1}")),
                            ("r", if chosen { "6".into() } else { "4".into() }),
                            (
                                "class",
                                if chosen {
                                    "dot chosen".into()
                                } else {
                                    "dot".into()
                                },
                            ),
                            ("data-sae", lab.saes[i].id.clone()),
                        ],
                    );
                    let tip = super::dom::svg_el(d, "title", &[]);
                    tip.set_text_content(Some(&format!(
                        "{}: L0 {:.1}, loss recovered {:.3}",
                        lab.saes[i].id, points[i].0, points[i].1
                    )));
                    append(&dot, &tip);
                    append(&svg, &dot);
                    if chosen {
                        // Only the chosen SAE is named: shipped ones often sit on one spot.
                        let label = super::dom::svg_el(
                            d,
                            "text",
                            &[
                                ("x", format!("{:.1}", x - 6.0)),
                                ("y", format!("{:.1}", y - 8.0)),
                                ("text-anchor", "end".into()),
                                ("class", "tick".into()),
                            ],
                        );
                        label.set_text_content(Some(
                            &lab.saes[i].id.chars().take(32).collect::<String>(),
                        ));
                        append(&svg, &label);
                    }
                }
            }
            append(&figure, &svg);
            append(&target, &figure);
        }
        if let Some(target) = self.element("eval-detail") {
            clear(&target);
            let chosen = self.selected_sae().and_then(|id| lab.slot(&id));
            let metrics = chosen
                .and_then(|s| s.loaded.as_ref())
                .and_then(|l| l.provenance.metrics.clone());
            match (chosen, metrics) {
                (Some(slot), Some(m)) => {
                    append(
                        &target,
                        &el(
                            d,
                            "h3",
                            "",
                            &format!("{}: measured on {} held-out tokens", slot.id, m.tokens),
                        ),
                    );
                    let rows = [
                        ("L0", format!("{:.2}", m.l0)),
                        ("Explained variance", format!("{:.3}", m.explained_variance)),
                        (
                            "Loss recovered",
                            format!(
                                "{:.3} (CE {:.3} clean, {:.3} with the SAE, {:.3} zero-ablated)",
                                m.loss_recovered, m.ce_clean, m.ce_with_sae, m.ce_zero_ablation
                            ),
                        ),
                        ("KL divergence", format!("{:.4}", m.kl)),
                        ("Dead fraction", format!("{:.3}", m.dead_fraction)),
                        ("Dense fraction (>10%)", format!("{:.3}", m.dense_fraction)),
                        ("Shrinkage", format!("{:.3}", m.shrinkage)),
                    ];
                    if !m.ce_clean.is_finite() {
                        append(
                            &target,
                            &el(
                                d,
                                "p",
                                "muted",
                                "The model's cross-entropy came out non-finite on this backend, so loss recovered and KL are not available (seen with WebGPU in software, SwiftShader; the CPU path computes them).",
                            ),
                        );
                    }
                    let dl = el(d, "dl", "metrics", "");
                    dl.set_id("eval-metrics");
                    for (k, v) in rows {
                        append(&dl, &el(d, "dt", "", k));
                        append(&dl, &el(d, "dd", "", &v));
                    }
                    append(&target, &dl);
                    let counts: Vec<f64> = m
                        .density_histogram
                        .counts
                        .iter()
                        .map(|&c| c as f64)
                        .collect();
                    let h = histogram(
                        d,
                        "Feature density (log10 of the fraction of tokens each fires on)",
                        &m.density_histogram.edges,
                        &counts,
                        Frame::WIDE,
                    );
                    h.set_id("eval-density");
                    append(&target, &h);
                    if !m.concept_recovery.is_empty() {
                        append(
                            &target,
                            &el(
                                d,
                                "h3",
                                "",
                                &format!(
                                    "Concept recovery: the best feature's AUROC per concept (mean {})",
                                    fmt(m.mean_concept_auroc, 3)
                                ),
                            ),
                        );
                        let mut rows: Vec<(String, f64, String)> = m
                            .concept_recovery
                            .iter()
                            .map(|c| {
                                (
                                    format!("{} (#{})", c.concept, c.feature),
                                    c.auroc,
                                    format!("{:.3}", c.auroc),
                                )
                            })
                            .collect();
                        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
                        let list = bar_list(d, &rows, 1.0);
                        list.set_id("eval-concepts");
                        append(&target, &list);
                    }
                }
                (Some(slot), None) if slot.loaded.is_none() => {
                    append(
                        &target,
                        &el(
                            d,
                            "p",
                            "muted",
                            "Choose this SAE above to load its full metrics.",
                        ),
                    );
                }
                (Some(_), None) => append(
                    &target,
                    &el(d, "p", "muted", "This SAE's files carry no metrics."),
                ),
                (None, _) => append(
                    &target,
                    &el(
                        d,
                        "p",
                        "muted",
                        "Choose an SAE above to see its metrics in full.",
                    ),
                ),
            }
        }
    }

    // ---- Keep and move SAEs ----

    pub fn export_sae(&self) {
        let Some(id) = self.selected_sae() else {
            self.show_error("Choose an SAE to export.".into());
            return;
        };
        let Some(loaded) = self.selected_loaded() else {
            self.show_error("This SAE is still loading; try again in a moment.".into());
            return;
        };
        js::download(&format!("{id}.zip"), &loaded.files.to_zip(&id));
    }

    pub async fn import_files(self: &Rc<Self>, files: Vec<(String, Vec<u8>)>) {
        if files.is_empty() {
            return;
        }
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let result = async {
            let sae_files = SaeFiles::from_named_files(files)?;
            let id = format!("imported-{}", js::random_id());
            let zip = sae_files.to_zip(&id);
            self.add_files(&id, sae_files, Origin::Stored).await?;
            if let Err(e) = keep_in_browser(&id, &zip).await {
                self.show_error(format!(
                    "The SAE was imported but could not be kept in browser storage: {e}"
                ));
            }
            Ok::<_, crate::SaeplayError>(id)
        }
        .await;
        match result {
            Ok(id) => {
                self.set_notice(format!("Imported {} as {id}.", names.join(", ")));
                self.choose_sae(id).await;
            }
            Err(e) => self.show_error(format!("Could not import {}: {e}", names.join(", "))),
        }
    }

    pub async fn forget_sae(self: &Rc<Self>) {
        let Some(id) = self.selected_sae() else {
            return;
        };
        let stored = self
            .lab
            .borrow()
            .slot(&id)
            .is_some_and(|s| s.origin == Origin::Stored);
        if !stored {
            self.show_error(
                "Only SAEs trained or imported here can be removed; shipped ones stay.".into(),
            );
            return;
        }
        if let Ok(promise) = js::store_delete(&id) {
            JsFuture::from(promise).await.ok();
        }
        self.lab.borrow_mut().saes.retain(|s| s.id != id);
        self.state.borrow_mut().location.sae = None;
        self.update_link();
        self.render_sae_picker();
        self.render_view();
        self.after_view_change().await;
    }

    pub fn render_sae_picker(&self) {
        let Some(select) = select_of(self, "sae-select") else {
            return;
        };
        let chosen = self.selected_sae().unwrap_or_default();
        clear(&select);
        let none = el(&self.document, "option", "", "(no SAE)");
        none.set_attribute("value", "").ok();
        append(&select, &none);
        let lab = self.lab.borrow();
        for slot in &lab.saes {
            let option = el(&self.document, "option", "", &slot.label);
            option.set_attribute("value", &slot.id).ok();
            append(&select, &option);
        }
        select.set_value(&chosen);
        let status = match lab.slot(&chosen) {
            Some(slot) if slot.loaded.is_some() => format!(
                "{} at {}, {} features{}",
                slot.architecture,
                slot.hook_name,
                slot.d_sae,
                if slot.origin == Origin::Stored {
                    ", kept in this browser"
                } else {
                    ""
                }
            ),
            Some(_) => "loading…".into(),
            None => String::new(),
        };
        self.set_text("sae-status", &status);
        if let Some(b) = self.element("sae-forget") {
            b.toggle_attribute_with_force(
                "hidden",
                lab.slot(&chosen).is_none_or(|s| s.origin != Origin::Stored),
            )
            .ok();
        }
    }

    pub fn render_notice(&self) {
        let notice = self.lab.borrow().notice.clone();
        self.set_text("notice", &notice);
        if let Some(n) = self.element("notice") {
            n.toggle_attribute_with_force("hidden", notice.is_empty())
                .ok();
        }
    }

    /// Show the current view and mark its tab.
    pub fn render_view(&self) {
        let view = self.state.borrow().location.view.unwrap_or_default();
        for v in View::ALL {
            if let Some(section) = self.element(&format!("view-{}", v.name())) {
                section
                    .toggle_attribute_with_force("hidden", v != view)
                    .ok();
            }
            if let Some(tab) = self.element(&format!("tab-{}", v.name())) {
                tab.set_attribute("aria-selected", if v == view { "true" } else { "false" })
                    .ok();
            }
        }
        if let Some(body) = self.document.body() {
            body.set_attribute("data-view", view.name()).ok();
        }
    }

    /// Wire the SAE views' controls.
    pub fn bind_lab_events(self: &Rc<Self>) {
        for v in View::ALL {
            self.on(&format!("tab-{}", v.name()), "click", move |app| {
                app.state.borrow_mut().location.view = Some(v);
                app.update_link();
                app.render_view();
                let app = Rc::clone(app);
                spawn_local(async move { app.after_view_change().await });
            });
        }
        self.on("sae-select", "change", |app| {
            let id = select_of(app, "sae-select")
                .map(|s| s.value())
                .unwrap_or_default();
            let app = Rc::clone(app);
            spawn_local(async move {
                if id.is_empty() {
                    app.state.borrow_mut().location.sae = None;
                    app.state.borrow_mut().location.recipe = None;
                    app.lab.borrow_mut().heat = None;
                    app.update_link();
                    app.render_sae_picker();
                    app.render_heatmap();
                } else {
                    app.choose_sae(id).await;
                }
            });
        });
        self.on("train-start", "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.train().await });
        });
        self.on("train-pause", "click", |app| {
            app.train_control.pause.set(!app.train_control.pause.get());
            app.render_train_progress();
        });
        self.on("train-cancel", "click", |app| {
            app.train_control.cancel.set(true);
        });
        self.on("train-file", "change", |app| {
            let Some(input) = app.element("train-file") else {
                return;
            };
            let app = Rc::clone(app);
            spawn_local(async move {
                let files = JsFuture::from(js::read_input_files(&input)).await;
                match files.map(|f| js::named_files(&f)) {
                    Ok(files) if !files.is_empty() => {
                        let (name, bytes) = files.into_iter().next().unwrap_or_default();
                        match String::from_utf8(bytes) {
                            Ok(text) => {
                                {
                                    let mut lab = app.lab.borrow_mut();
                                    lab.text_file = Some(format!(
                                        "{name}: {} characters",
                                        text.chars().count()
                                    ));
                                    lab.form.corpus = CorpusKind::Text;
                                    lab.form.text = text;
                                }
                                app.read_train_form_keep_text();
                                app.write_train_form();
                                app.render_train_progress();
                            }
                            Err(_) => app.show_error(format!(
                                "{name} is not UTF-8 text; choose a plain text file."
                            )),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        app.show_error(format!("The file could not be read: {}", js_error(e)))
                    }
                }
            });
        });
        self.on("feature-search", "input", |app| {
            app.lab.borrow_mut().query = input_of(app, "feature-search")
                .map(|e| e.value())
                .unwrap_or_default();
            app.render_features();
        });
        self.on("feature-sort", "change", |app| {
            let value = select_of(app, "feature-sort")
                .map(|e| e.value())
                .unwrap_or_default();
            {
                let mut lab = app.lab.borrow_mut();
                lab.sort = SortKey::parse(&value);
                lab.descending = value != "index";
            }
            app.render_features();
        });
        self.on("steer-add", "click", |app| {
            app.read_steer_rows();
            let feature = app
                .state
                .borrow()
                .location
                .feature
                .map(|f| f.to_string())
                .unwrap_or_default();
            app.lab
                .borrow_mut()
                .steer_rows
                .push(SteerRow::adding(feature));
            app.render_steer_rows();
        });
        self.on("steer-rows", "change", |app| {
            app.read_steer_rows();
            app.steering_to_link();
        });
        self.on("steer-run", "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.steer().await });
        });
        self.on("sae-export", "click", |app| app.export_sae());
        self.on("sae-forget", "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.forget_sae().await });
        });
        self.on("sae-import", "change", |app| {
            let Some(input) = app.element("sae-import") else {
                return;
            };
            let app = Rc::clone(app);
            spawn_local(async move {
                match JsFuture::from(js::read_input_files(&input)).await {
                    Ok(files) => app.import_files(js::named_files(&files)).await,
                    Err(e) => {
                        app.show_error(format!("The files could not be read: {}", js_error(e)))
                    }
                }
                if let Some(input) = input.dyn_ref::<HtmlInputElement>() {
                    input.set_value("");
                }
            });
        });
        if let Some(body) = self.document.body() {
            let app = Rc::clone(self);
            let callback = Closure::<dyn Fn(JsValue)>::new(move |files: JsValue| {
                let app = Rc::clone(&app);
                if let Some(message) = files.as_string() {
                    app.show_error(format!("The dropped files could not be read: {message}"));
                    return;
                }
                spawn_local(async move { app.import_files(js::named_files(&files)).await });
            });
            js::watch_drops(&body, callback.as_ref().unchecked_ref());
            callback.forget();
            // One listener for every clickable feature, token and steering button.
            let app = Rc::clone(self);
            listen(&body, "click", move |event| {
                let Some(target) = event.target().and_then(|t| t.dyn_into::<Element>().ok()) else {
                    return;
                };
                let find = |selector: &str| target.closest(selector).ok().flatten();
                if let Some(button) = find("[data-steer-feature]") {
                    let feature = button
                        .get_attribute("data-steer-feature")
                        .unwrap_or_default();
                    app.read_steer_rows();
                    app.lab
                        .borrow_mut()
                        .steer_rows
                        .push(SteerRow::adding(feature));
                    app.state.borrow_mut().location.view = Some(View::Steer);
                    app.update_link();
                    app.render_view();
                    app.render_steer_rows();
                    app.render_steer();
                } else if let Some(remove) = find("[data-row]") {
                    if let Some(row) = index_attribute(&remove, "data-row") {
                        app.read_steer_rows();
                        let mut lab = app.lab.borrow_mut();
                        if row < lab.steer_rows.len() {
                            lab.steer_rows.remove(row);
                        }
                        drop(lab);
                        app.render_steer_rows();
                        app.steering_to_link();
                    }
                } else if let Some(token) = find("[data-token]") {
                    if let Some(i) = index_attribute(&token, "data-token") {
                        app.lab.borrow_mut().token_focus = Some(i);
                        app.render_heatmap();
                    }
                } else if let Some(feature) = find("[data-feature]") {
                    if let Some(f) = index_attribute(&feature, "data-feature") {
                        let app = Rc::clone(&app);
                        spawn_local(async move { app.open_feature(f).await });
                    }
                } else if let Some(dot) = find("circle[data-sae]")
                    && let Some(id) = dot.get_attribute("data-sae")
                {
                    let app = Rc::clone(&app);
                    spawn_local(async move { app.choose_sae(id).await });
                }
            });
        }
        self.on("copy-link", "click", |app| {
            let href = window().location().href().unwrap_or_default();
            if let Some(input) = input_of(app, "share-link") {
                input.set_value(&href);
                input.select();
            }
            let promise = js::copy_text(&href);
            let app = Rc::clone(app);
            spawn_local(async move {
                let copied = JsFuture::from(promise)
                    .await
                    .ok()
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                app.set_text(
                    "share-status",
                    if copied {
                        "Copied."
                    } else {
                        "Select and copy the link above."
                    },
                );
            });
        });
    }

    fn read_train_form_keep_text(&self) {
        let text = self.lab.borrow().form.text.clone();
        self.read_train_form();
        let mut lab = self.lab.borrow_mut();
        lab.form.text = text;
        lab.form.corpus = CorpusKind::Text;
    }

    /// After the model loads: apply what the link asked for (SAE, recipe, feature, steering).
    pub async fn apply_link(self: &Rc<Self>) {
        let location = self.state.borrow().location.clone();
        // Only a recipe in the link fills the form: what the person typed since loading stays.
        if let Some(recipe) = &location.recipe
            && let Ok(form) = TrainForm::from_recipe(recipe)
        {
            self.lab.borrow_mut().form = form;
            self.write_train_form();
        }
        self.lab.borrow_mut().steer_rows = location
            .steer
            .iter()
            .map(|i| match i.mode {
                InterventionMode::Add { strength } => SteerRow {
                    feature: i.feature.to_string(),
                    mode: "add".into(),
                    value: strength.to_string(),
                },
                InterventionMode::Clamp { value } => SteerRow {
                    feature: i.feature.to_string(),
                    mode: "clamp".into(),
                    value: value.to_string(),
                },
                InterventionMode::Ablate => SteerRow {
                    feature: i.feature.to_string(),
                    mode: "ablate".into(),
                    value: String::new(),
                },
            })
            .collect();
        self.render_steer_rows();
        match location.sae.clone() {
            Some(SaeRef::Id(id)) => {
                if self.lab.borrow().slot(&id).is_some() {
                    let feature = location.feature;
                    self.choose_sae(id).await;
                    if let Some(f) = feature {
                        self.state.borrow_mut().location.feature = Some(f);
                        self.update_link();
                        self.render_card();
                        self.after_view_change().await;
                    }
                } else if location.recipe.is_some() {
                    let text_corpus = self.lab.borrow().form.corpus == CorpusKind::Text;
                    self.set_notice(format!(
                        "This link names the SAE \"{id}\", which was trained in another browser tab and is not kept in this browser. \
                         You can train it yourself from the recipe the link carries: the Train view is filled in with it, press Train.{} \
                         Or, if you have its exported file, import it with \"Import SAE\".",
                        if text_corpus {
                            " It was trained on a text the link cannot carry: paste or upload that text first."
                        } else {
                            ""
                        }
                    ));
                    self.state.borrow_mut().location.view = Some(View::Train);
                    self.render_view();
                    self.render_train();
                } else {
                    self.set_notice(format!(
                        "This link names the SAE \"{id}\", which this page does not have and the link carries no recipe for. \
                         Import its file with \"Import SAE\", or choose another SAE."
                    ));
                    self.state.borrow_mut().location.sae = None;
                    self.update_link();
                }
            }
            Some(SaeRef::Url(url)) => {
                if self
                    .ask_consent(&format!(
                        "This link asks to fetch an SAE from {url}. Fetch it?"
                    ))
                    .await
                {
                    self.fetch_remote_sae(url).await;
                } else {
                    self.state.borrow_mut().location.sae = None;
                    self.update_link();
                    self.set_notice("The SAE named by the link was not fetched.".into());
                }
            }
            None => self.after_view_change().await,
        }
    }

    /// Show a yes/no question and wait for the answer.
    pub async fn ask_consent(self: &Rc<Self>, question: &str) -> bool {
        self.consent.set(None);
        self.set_text("consent-text", question);
        if let Some(c) = self.element("consent") {
            c.remove_attribute("hidden").ok();
        }
        let answer = loop {
            if let Some(answer) = self.consent.get() {
                break answer;
            }
            sleep(100).await;
        };
        if let Some(c) = self.element("consent") {
            c.set_attribute("hidden", "").ok();
        }
        answer
    }

    async fn fetch_remote_sae(self: &Rc<Self>, url: String) {
        self.set_notice(format!("Fetching the SAE from {url}…"));
        let result = async {
            let files = if url.to_ascii_lowercase().ends_with(".zip") {
                SaeFiles::from_named_files(vec![(
                    "sae.zip".into(),
                    fetch_bytes(&url).await.map_err(crate::SaeplayError::Io)?,
                )])?
            } else {
                let base = if url.ends_with('/') {
                    url.clone()
                } else {
                    format!("{url}/")
                };
                fetch_sae_dir(&base)
                    .await
                    .map_err(crate::SaeplayError::Io)?
            };
            let id = format!("fetched-{}", js::random_id());
            self.add_files(&id, files, Origin::Remote { url: url.clone() })
                .await?;
            Ok::<_, crate::SaeplayError>(id)
        }
        .await;
        self.set_notice(String::new());
        match result {
            Ok(id) => {
                self.choose_sae(id).await;
                // The link keeps naming the URL, so it still works for others.
                self.state.borrow_mut().location.sae = Some(SaeRef::Url(url));
                self.update_link();
            }
            Err(e) => self.show_error(format!("The SAE at {url} could not be loaded: {e}")),
        }
    }
}

async fn fetch_sae_dir(base: &str) -> Result<SaeFiles, String> {
    use crate::sae::saelens::{CFG_FILE, SAEPLAY_FILE, SPARSITY_FILE, WEIGHTS_FILE};
    Ok(SaeFiles {
        cfg: fetch_bytes(&format!("{base}{CFG_FILE}")).await?,
        weights: fetch_bytes(&format!("{base}{WEIGHTS_FILE}")).await?,
        sparsity: fetch_bytes(&format!("{base}{SPARSITY_FILE}")).await.ok(),
        saeplay: fetch_bytes(&format!("{base}{SAEPLAY_FILE}")).await.ok(),
    })
}

async fn keep_in_browser(id: &str, zip: &[u8]) -> Result<(), String> {
    let promise = js::store_put(id, zip).map_err(js_error)?;
    JsFuture::from(promise).await.map(|_| ()).map_err(js_error)
}

async fn stored_saes() -> Result<Vec<(String, Vec<u8>)>, String> {
    let promise = js::store_all().map_err(js_error)?;
    let all = JsFuture::from(promise).await.map_err(js_error)?;
    Ok(js::named_files(&all))
}
