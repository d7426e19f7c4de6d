//! The model the page runs: where it comes from (the built-in one, a URL, a Hub repository, or
//! the model a published SAE reads), the consent before fetching it, the download bar, the
//! TransformerLens weight processing in force, and the download cache's size.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::HtmlInputElement;

use crate::backend::{BackendKind, cpu_device};
use crate::model::WeightProcessing;
use crate::model::files::LoadedModel;
use crate::model::files::ModelFiles;
use crate::sae::releases::PublishedSae;
use crate::ui::download::{DownloadProgress, bytes};
use crate::ui::download::{local_model_path, shown_url};
use crate::ui::{BackendDecision, Fragment, ModelSource, SaeRef, ids};
use crate::web::download::{self, cancel_download, hf_endpoint};
use crate::web::platform::{absolute_url, load_model, random_id, sleep, window};
use crate::web::{App, BUILTIN_MODEL};

const PROCESSING_BOXES: [&str; 4] = [
    ids::PROCESSING_FOLD_LN,
    ids::PROCESSING_CENTER_WRITING_WEIGHTS,
    ids::PROCESSING_CENTER_UNEMBED,
    ids::PROCESSING_FOLD_VALUE_BIASES,
];

impl App {
    /// The model directory a link asks for, after the person agreed to fetch it: the link's
    /// `model=`, or, for a published SAE with no model named, the model that SAE reads. The
    /// built-in model when there is none or the person declines.
    pub(crate) async fn choose_model_base(self: &Rc<Self>, view: &Fragment) -> String {
        let release = match &view.sae {
            Some(SaeRef::Release(spec)) => PublishedSae::find(spec).ok(),
            _ => None,
        };
        let source = view.model.clone().or_else(|| {
            release
                .as_ref()
                .map(|r| ModelSource::Hub(r.release.hf_model.clone()))
        });
        let Some(base) = source.as_ref().and_then(|s| s.base_url(&hf_endpoint())) else {
            return BUILTIN_MODEL.to_string();
        };
        if let Some(ModelSource::Local(_)) = &source {
            return base; // this browser's own copy: nothing to fetch, nothing to ask
        }
        let question = match &release {
            Some(published) if view.model.is_none() => format!(
                "This link opens the published SAE {} (from {}), which reads the model {}. \
                 Fetch the model from {} and the SAE from {}? (Otherwise the built-in model loads.)",
                published.spec(),
                published.release.repo_id,
                published.release.hf_model,
                shown_url(&base),
                shown_url(&published.folder_url(&hf_endpoint())),
            ),
            _ => format!(
                "This link asks to load a model from {}. Fetch it? (Otherwise the built-in model loads.)",
                shown_url(&base)
            ),
        };
        if self.ask_consent(&question).await {
            self.sae_consented
                .set(release.is_some() && view.model.is_none());
            self.update_page(|state| state.location.model = source);
            base
        } else {
            self.update_page(|state| {
                state.location.model = None;
                if release.is_some() {
                    state.location.sae = None;
                }
            });
            self.update_link();
            BUILTIN_MODEL.to_string()
        }
    }

    /// Load the model from `base` with `processing` onto `device`, showing the download.
    pub(crate) async fn fetch_model(
        self: &Rc<Self>,
        device: &burn::tensor::Device,
        base: &str,
        processing: WeightProcessing,
    ) -> Result<LoadedModel, String> {
        let app = Rc::clone(self);
        let progress = move |p: &DownloadProgress| app.show_download(Some(p));
        let result = load_model(device, base, processing, &progress).await;
        self.show_download(None);
        self.render_storage().await;
        if let Some(why) = download::take_keep_failure() {
            self.set_notice(format!("{why}."));
        }
        result
    }

    /// A sentence for the status line: the model's shape and where it came from.
    pub(crate) fn describe_model(&self, loaded: &LoadedModel) -> String {
        let base = self.model_base.borrow();
        let from = if *base == BUILTIN_MODEL {
            "the built-in TinyTales model".to_string()
        } else if crate::ui::download::is_local_model(&base) {
            "your files (kept in this browser)".to_string()
        } else {
            base.clone()
        };
        format!("Model: {from}; {}.", loaded.model.dims().describe())
    }

    /// Run the model with `processing`: reload it (from the download cache) when what is in
    /// force differs. `why` names who asked, for the notice.
    pub(crate) async fn ensure_processing(
        self: &Rc<Self>,
        processing: WeightProcessing,
        why: &str,
    ) -> Result<(), String> {
        let current = self.loaded().map_err(|e| e.to_string())?;
        if current.processing == processing {
            return Ok(());
        }
        self.set_notice(format!(
            "Reloading the model with weight processing {} ({why})…",
            processing.describe()
        ));
        let base = self.model_base.borrow().clone();
        let device = current.model.device().clone();
        drop(current);
        let loaded = self.fetch_model(&device, &base, processing).await?;
        let description = self.describe_model(&loaded);
        *self.model.borrow_mut() = Some(Rc::new(loaded));
        self.update_page(|state| state.status = description);
        self.render_processing();
        self.set_notice(format!(
            "The model now runs with weight processing {} ({why}).",
            processing.describe()
        ));
        Ok(())
    }

    /// Watch for the GPU failing (a read from a lost WebGPU device), and move to the CPU once.
    pub(crate) fn watch_device(self: &Rc<Self>) {
        let app = Rc::clone(self);
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                sleep(500).await;
                if app.on_gpu()
                    && let Some(reason) = crate::backend::device_failure()
                {
                    app.move_to_cpu(reason).await;
                }
            }
        });
    }

    /// WebGPU stopped working: reload the model on the CPU, upload each loaded SAE again, and
    /// say so. A training run on the GPU stopped with it; its last checkpoint is offered to
    /// resume (on the CPU path, in the worker).
    async fn move_to_cpu(self: &Rc<Self>, reason: String) {
        let message = format!(
            "WebGPU stopped working ({reason}), so the page moved to the CPU path; what you were \
             doing on the GPU stopped, and nothing kept was lost."
        );
        self.update_page(|state| {
            state.backend_chosen(BackendDecision {
                kind: BackendKind::Cpu,
                label: "CPU (WebAssembly)".into(),
                reason: message.clone(),
            })
        });
        self.render();
        let (base, processing) = (self.model_base.borrow().clone(), self.model_processing());
        match self.fetch_model(&cpu_device(), &base, processing).await {
            Ok(loaded) => *self.model.borrow_mut() = Some(Rc::new(loaded)),
            Err(e) => {
                return self.show_error(format!(
                    "{message} The model could not be loaded on the CPU: {e}"
                ));
            }
        }
        crate::backend::clear_device_failure();
        // Each loaded SAE lives on the lost device: upload it again from its files.
        let loaded: Vec<_> = self
            .lab
            .borrow()
            .saes
            .iter()
            .filter_map(|s| {
                Some((
                    s.id.clone(),
                    s.origin.clone(),
                    s.loaded.as_ref()?.files.clone(),
                ))
            })
            .collect();
        for (id, origin, files) in loaded {
            if let Err(e) = self.add_files(&id, files, origin).await {
                self.show_error(format!("The SAE {id} could not be moved to the CPU: {e}"));
            }
        }
        self.show_error(message);
        self.render_sae_picker();
        self.offer_resume().await;
        self.analyse().await;
        self.render();
    }

    /// The processing line and boxes show what is in force.
    pub(crate) fn render_processing(&self) {
        let Some(loaded) = self.model.borrow().clone() else {
            return;
        };
        let p = loaded.processing;
        self.set_text(
            ids::MODEL_PROCESSING_TEXT,
            &format!("Weight processing in force: {}.", p.describe()),
        );
        for (id, on) in PROCESSING_BOXES.iter().zip([
            p.fold_ln,
            p.center_writing_weights,
            p.center_unembed,
            p.fold_value_biases,
        ]) {
            if let Some(input) = self
                .element(id)
                .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
            {
                input.set_checked(on);
            }
        }
    }

    /// The person pressed Apply beside the processing boxes.
    pub(crate) async fn apply_processing_setting(self: &Rc<Self>) {
        let checked = |id: &str| {
            self.element(id)
                .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
                .is_some_and(|i| i.checked())
        };
        let wanted = WeightProcessing {
            fold_ln: checked(ids::PROCESSING_FOLD_LN),
            center_writing_weights: checked(ids::PROCESSING_CENTER_WRITING_WEIGHTS),
            center_unembed: checked(ids::PROCESSING_CENTER_UNEMBED),
            fold_value_biases: checked(ids::PROCESSING_FOLD_VALUE_BIASES),
        };
        if let Some(sae) = self.selected_loaded()
            && sae.model_processing != wanted
        {
            self.show_error(format!(
                "The chosen SAE reads the model processed with {}; with {} its features would be \
                 read from the wrong activations. Choose no SAE first to run the model otherwise.",
                sae.model_processing.describe(),
                wanted.describe()
            ));
            self.render_processing();
            return;
        }
        match self.ensure_processing(wanted, "your setting").await {
            Ok(()) => {
                self.analyse().await;
                self.render();
            }
            Err(e) => self.show_error(format!("The model could not be reloaded: {e}")),
        }
    }

    /// Show a download's progress, or hide the bar (`None`).
    pub(crate) fn show_download(&self, progress: Option<&DownloadProgress>) {
        let Some(bar) = self.element(ids::DOWNLOAD) else {
            return;
        };
        bar.toggle_attribute_with_force("hidden", progress.is_none())
            .ok();
        if let Some(p) = progress {
            self.set_text(ids::DOWNLOAD_TEXT, &format!("Downloading {}", p.describe()));
            if let Some(progress_element) = self.element(ids::DOWNLOAD_BAR) {
                match p.fraction() {
                    Some(f) => progress_element.set_attribute("value", &format!("{f:.4}")),
                    None => progress_element.remove_attribute("value"),
                }
                .ok();
            }
        }
    }

    /// How much the download cache holds, and the button that frees it.
    pub(crate) async fn render_storage(&self) {
        let usage = download::cache_usage().await;
        let text = match usage {
            Some((0, _)) | None => String::new(),
            Some((files, size)) => format!(
                "Downloads kept in this browser: {files} files, {}.",
                bytes(size)
            ),
        };
        self.set_text(ids::STORAGE_TEXT, &text);
        if let Some(button) = self.element(ids::STORAGE_FREE) {
            button
                .toggle_attribute_with_force("hidden", text.is_empty())
                .ok();
        }
    }

    pub(crate) async fn free_storage(&self) {
        match download::clear_cache().await {
            Ok(()) => self.set_notice(
                "The downloaded files were removed from this browser; the model in this tab keeps running."
                    .into(),
            ),
            Err(e) => self.show_error(format!("The downloaded files could not be removed: {e}")),
        }
        self.render_storage().await;
    }

    /// A model's files picked or dropped: keep them in this browser's cache and open the page on
    /// them (a fresh start, since SAEs and views belong to one model).
    pub(crate) async fn open_local_model(self: &Rc<Self>, files: Vec<(String, Vec<u8>)>) {
        let result = async {
            let model = ModelFiles::from_named_files(files).map_err(|e| e.to_string())?;
            // Checked here first, so a bad file is refused before the page moves.
            let host = model.parse().map_err(|e| e.to_string())?;
            if !host.has_tokenizer() {
                return Err(
                    "tokenizer.json is missing: the page reads and writes text, so it needs the \
                            model's tokenizer too (add the tokenizer.json of its family)"
                        .to_string(),
                );
            }
            drop(host);
            let id = format!("files-{}", random_id());
            let base = absolute_url(&local_model_path(&id))?;
            for (name, bytes) in model.named_files() {
                download::keep(&format!("{base}{name}"), &bytes)
                    .await
                    .map_err(|e| format!("{name} could not be kept in this browser: {e}"))?;
            }
            Ok::<_, String>(id)
        }
        .await;
        match result {
            Ok(id) => {
                let location = window().location();
                location.set_hash(&format!("model=local:{id}")).ok();
                location.reload().ok();
            }
            Err(e) => self.show_error(format!("The model files could not be opened: {e}")),
        }
    }

    pub(crate) fn bind_model_controls(self: &Rc<Self>) {
        self.on(ids::DOWNLOAD_CANCEL, "click", |_| cancel_download());
        self.on(ids::PROCESSING_APPLY, "click", |app| {
            let app = Rc::clone(app);
            wasm_bindgen_futures::spawn_local(async move { app.apply_processing_setting().await });
        });
        self.on(ids::MODEL_FILES, "change", |app| {
            let Some(input) = app.element(ids::MODEL_FILES) else {
                return;
            };
            let app = Rc::clone(app);
            wasm_bindgen_futures::spawn_local(async move {
                match crate::web::files::read_input_files(&input).await {
                    Ok(files) if !files.is_empty() => app.open_local_model(files).await,
                    Ok(_) => {}
                    Err(e) => app.show_error(format!("The files could not be read: {e}")),
                }
            });
        });
        self.on(ids::STORAGE_FREE, "click", |app| {
            let app = Rc::clone(app);
            wasm_bindgen_futures::spawn_local(async move { app.free_storage().await });
        });
    }
}
