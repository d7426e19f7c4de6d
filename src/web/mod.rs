//! Browser glue (wasm only): DOM events in, rendering out, the model run between them. The
//! state and decisions live in [`crate::ui`]; this module starts the page and connects them.
//!
//! - `events.rs` wires controls to the app; `views/` draws each view from the state;
//! - `saes.rs` holds the SAE slots (shipped, stored, fetched), `link.rs` the address bar and
//!   consent, `models.rs` where the model comes from, `download.rs` downloads into the Cache
//!   API, `worker/` the Web Worker and the page's calls to it;
//! - `platform.rs`, `dom.rs`, `files.rs` (files in and out), `storage.rs` (IndexedDB) are the
//!   browser calls; `kept.rs` the SAEs kept in this browser (listing, quota, damaged entries,
//!   other tabs); `api.rs` is `window.saeplay`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{Document, Element, HtmlInputElement};

use crate::backend::{BackendKind, cpu_device, wgpu_device};
use crate::model::HookPoint;
use crate::model::WeightProcessing;
use crate::model::files::LoadedModel;
use crate::ui::lab::{Lab, LoadedSae, TrainControl};
use crate::ui::worker_state::WorkerLink;
use crate::ui::{PageState, SaeRef, choose_backend};
use platform::{probe_adapter, window};

mod api;
mod dom;
mod download;
mod events;
mod files;
mod kept;
mod link;
mod models;
mod platform;
mod saes;
mod storage;
mod views;
mod worker;

/// Where the built-in model's files are served from, relative to the page.
pub(crate) const BUILTIN_MODEL: &str = "models/builtin/";

/// Explanations that came before their SAE's feature index was stored: by SAE id, all of them
/// so far and whether the last has come.
type EarlyExplanations = HashMap<String, (Vec<crate::sae::explain::FeatureExplanation>, bool)>;

struct App {
    document: Document,
    state: RefCell<PageState>,
    model: RefCell<Option<Rc<LoadedModel>>>,
    forced_backend: Option<BackendKind>,
    /// Bumped by each prompt edit, so a stale analysis does not overwrite a newer one.
    analysis_ticket: Cell<u64>,
    /// Bumped to cancel a running generation.
    generation_ticket: Cell<u64>,
    /// The SAE views' state; changed only through [`App::update`].
    lab: RefCell<Lab>,
    train_control: TrainControl,
    /// The answer to the question on screen (fetch a URL the link names?), once given.
    consent: Cell<Option<bool>>,
    /// The directory the model came from (absolute for other sites), for reloads and the worker.
    model_base: RefCell<String>,
    /// The person already agreed to fetch the published SAE the link names (with its model).
    sae_consented: Cell<bool>,
    /// The worker, started at the first training run or feature scan and kept.
    worker: RefCell<Option<web_sys::Worker>>,
    /// Whether it listens, when it last spoke, how many were started, and numbered answers.
    worker_link: RefCell<WorkerLink>,
    /// Seconds between the checkpoints a training run keeps (shorter in the browser tests).
    checkpoint_seconds: Cell<f64>,
    /// Where the worker's answer to the current run goes.
    worker_outcome: RefCell<Option<worker::WorkerOutcome>>,
    /// Explanations that came before their SAE's feature index was stored, by SAE id.
    early_explanations: RefCell<EarlyExplanations>,
}

/// Start the page: called by the binary's `main` in wasm.
pub fn start() {
    console_error_panic_hook::set_once();
    if web_sys::window().is_none() {
        // The same module, started inside the worker.
        worker::serve();
        return;
    }
    spawn_local(run());
}

async fn run() {
    let document = window().document().expect("a page has a document");
    let fragment = window().location().hash().unwrap_or_default();
    let (state, view) = PageState::new(&fragment);
    let app = Rc::new(App {
        document,
        state: RefCell::new(state),
        model: RefCell::new(None),
        forced_backend: view.backend,
        analysis_ticket: Cell::new(0),
        generation_ticket: Cell::new(0),
        lab: RefCell::new(Lab::default()),
        train_control: TrainControl::default(),
        consent: Cell::new(None),
        model_base: RefCell::new(BUILTIN_MODEL.to_string()),
        sae_consented: Cell::new(false),
        worker: RefCell::new(None),
        worker_link: RefCell::default(),
        checkpoint_seconds: Cell::new(crate::ui::worker_protocol::CHECKPOINT_SECONDS),
        worker_outcome: RefCell::new(None),
        early_explanations: RefCell::new(HashMap::new()),
    });
    app.bind_events();
    app.listen_to_other_tabs();
    app.render_view();
    app.render();

    // A model from elsewhere is fetched only if the person agrees.
    let model_base = app.choose_model_base(&view).await;
    let builtin = model_base == BUILTIN_MODEL;
    *app.model_base.borrow_mut() = model_base.clone();

    let adapter = probe_adapter().await;
    let mut decision = choose_backend(view.backend, &adapter);
    let device = match decision.kind {
        BackendKind::Cpu => cpu_device(),
        BackendKind::Wgpu => match wgpu_device().await {
            Ok(device) => device,
            Err(error) => {
                decision = choose_backend(Some(BackendKind::Wgpu), &Err(error.to_string()));
                cpu_device()
            }
        },
    };
    app.update_page(|state| state.backend_chosen(decision.clone()));
    app.render();

    match app
        .fetch_model(&device, &model_base, WeightProcessing::default())
        .await
    {
        Ok(loaded) => {
            let description = app.describe_model(&loaded);
            *app.model.borrow_mut() = Some(Rc::new(loaded));
            app.render_processing();
            app.write_train_form(); // the model's hook points, and the defaults
            api::install(&app, &decision);
            app.analyse().await;
            app.update_page(|state| state.model_loaded(description));
            app.render();
            app.discover_saes(builtin).await;
            app.apply_link().await;
            app.offer_resume().await;
            app.watch_device();
            app.prepare_worker();
        }
        Err(message) => app.update_page(|state| state.load_failed(message)),
    }
    app.render();
}

fn lab_origin_remote(url: &str) -> crate::ui::lab::Origin {
    crate::ui::lab::Origin::Remote {
        url: url.to_string(),
    }
}

fn input_of(app: &App, id: &str) -> Option<HtmlInputElement> {
    app.element(id).and_then(|e| e.dyn_into().ok())
}

fn select_of(app: &App, id: &str) -> Option<web_sys::HtmlSelectElement> {
    app.element(id).and_then(|e| e.dyn_into().ok())
}

impl App {
    /// The one way the SAE views' state changes: events and jobs pass their change here, and
    /// the views read the state afterwards.
    fn update<R>(&self, change: impl FnOnce(&mut Lab) -> R) -> R {
        change(&mut self.lab.borrow_mut())
    }

    /// The one way the page's own state (prompt, generation, link, errors) changes.
    fn update_page<R>(&self, change: impl FnOnce(&mut PageState) -> R) -> R {
        change(&mut self.state.borrow_mut())
    }

    fn element(&self, id: &str) -> Option<Element> {
        self.document.get_element_by_id(id)
    }

    fn set_text(&self, id: &str, text: &str) {
        if let Some(element) = self.element(id) {
            element.set_text_content(Some(text));
        }
    }

    fn input_value(&self, id: &str) -> String {
        self.element(id)
            .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
            .map(|e| e.value())
            .unwrap_or_default()
    }

    fn loaded(&self) -> crate::Result<Rc<LoadedModel>> {
        self.model.borrow().clone().ok_or_else(|| {
            crate::SaeplayError::InvalidSetting("the model is not loaded yet".into())
        })
    }

    fn hook_names(&self) -> Vec<String> {
        self.model.borrow().as_ref().map_or_else(Vec::new, |m| {
            HookPoint::all(m.model.dims())
                .into_iter()
                .map(|h| h.to_string())
                .collect()
        })
    }

    fn show_error(&self, message: String) {
        self.update_page(|state| state.errors.push(message));
        self.render_errors();
    }

    fn set_notice(&self, text: String) {
        self.update(|lab| lab.notice = text);
        self.render_notice();
    }

    fn selected_sae(&self) -> Option<String> {
        match &self.state.borrow().location.sae {
            Some(SaeRef::Id(id)) => Some(id.clone()),
            // A published SAE's slot is named by its spec; a fetched one is found by its URL.
            Some(SaeRef::Release(spec)) => Some(spec.clone()),
            Some(SaeRef::Url(url)) => self
                .lab
                .borrow()
                .saes
                .iter()
                .find(|s| s.origin == lab_origin_remote(url))
                .map(|s| s.id.clone()),
            None => None,
        }
    }

    /// Whether the page runs on WebGPU.
    fn on_gpu(&self) -> bool {
        self.state
            .borrow()
            .backend
            .as_ref()
            .is_some_and(|b| b.kind == BackendKind::Wgpu)
    }

    /// The TransformerLens processing the page's model runs with.
    fn model_processing(&self) -> WeightProcessing {
        self.model
            .borrow()
            .as_ref()
            .map(|m| m.processing)
            .unwrap_or_default()
    }

    fn selected_loaded(&self) -> Option<Rc<LoadedSae>> {
        let id = self.selected_sae()?;
        self.lab.borrow().slot(&id)?.loaded.clone()
    }
}
