//! The SAEs the page holds: shipped (fetched when chosen), stored in this browser (trained here or
//! imported), fetched from a link's URL; choosing one, export, import, forgetting.

use std::rc::Rc;

use wasm_bindgen::JsCast;

use crate::model::HookPoint;
use crate::sae::releases::PublishedSae;
use crate::sae::saelens::SaeFiles;
use crate::ui::download::DownloadProgress;
use crate::ui::lab::{LoadedSae, Origin, SaeSlot, Summary, shipped_slots};
use crate::ui::train_form::TrainForm;
use crate::ui::{SaeRef, ids};
use crate::web::download::{fetch_cached, hf_endpoint};
use crate::web::platform::{fetch_bytes, random_id};
use crate::web::{App, BUILTIN_MODEL, files};

impl App {
    // ---- The SAEs the page holds ----

    /// Add the shipped SAEs (index.json) and those kept in this browser.
    pub(crate) async fn discover_saes(self: &Rc<Self>, builtin: bool) {
        if builtin {
            match fetch_bytes(&format!("{}saes/index.json", BUILTIN_MODEL)).await {
                Ok(bytes) => match shipped_slots(&bytes, BUILTIN_MODEL) {
                    Ok(slots) => self.update(|lab| lab.add_shipped(slots)),
                    Err(e) => self.show_error(format!("The list of shipped SAEs is damaged: {e}")),
                },
                Err(e) => self.show_error(format!("The shipped SAEs could not be listed: {e}")),
            }
        }
        self.discover_kept().await;
        self.render_sae_picker();
    }

    /// Parse SAE files, check they fit the model, and add (or replace) a slot.
    pub(crate) async fn add_files(
        self: &Rc<Self>,
        id: &str,
        files: SaeFiles,
        origin: Origin,
    ) -> crate::Result<()> {
        let loaded = self.loaded()?;
        let host = files.parse()?;
        let hook = HookPoint::parse(&host.config.hook_name, loaded.model.dims())?;
        let sae = host.upload(loaded.model.device())?;
        sae.check_fits(&hook.to_string(), hook.width(loaded.model.dims()))?;
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
            (None, Origin::Published { spec }) => format!("{spec} (published)"),
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
                model_processing: host.model_processing,
                neuronpedia_id: host.neuronpedia_id.clone(),
            })),
            features: None,
        };
        self.update(|lab| lab.insert_slot(slot))
    }

    pub(crate) async fn add_from_zip(
        self: &Rc<Self>,
        id: &str,
        zip: &[u8],
        origin: Origin,
    ) -> crate::Result<()> {
        let files = SaeFiles::from_named_files(vec![(format!("{id}.zip"), zip.to_vec())])?;
        self.add_files(id, files, origin).await
    }

    /// Make `id` the chosen SAE, fetching its files if they are not here yet.
    pub(crate) async fn choose_sae(self: &Rc<Self>, id: String) {
        let origin = self.lab.borrow().slot(&id).map(|s| s.origin.clone());
        let Some(origin) = origin else {
            self.show_error(format!("There is no SAE called \"{id}\" here."));
            return;
        };
        // The link names an SAE the way another browser can find it again.
        let named = match &origin {
            Origin::Published { spec } => SaeRef::Release(spec.clone()),
            Origin::Remote { url } => SaeRef::Url(url.clone()),
            _ => SaeRef::Id(id.clone()),
        };
        self.update_page(|state| {
            if state.location.sae.as_ref() != Some(&named) {
                state.location.feature = None;
            }
            state.location.sae = Some(named);
            state.location.recipe = None;
        });
        self.update(|lab| lab.heat = None);
        self.update_link();
        self.render_sae_picker();
        if let Err(e) = self.load_slot(&id).await {
            self.show_error(e);
        }
        // The model runs processed as the chosen SAE asks (cfg.json's model_from_pretrained_kwargs).
        let chosen = self.lab.borrow().slot(&id).and_then(|s| s.loaded.clone());
        if let Some(chosen) = chosen
            && let Err(e) = self
                .ensure_processing(
                    chosen.model_processing,
                    &format!("the SAE {id} was trained on the model processed so"),
                )
                .await
        {
            self.show_error(format!(
                "The model could not be reloaded for the SAE {id}: {e}"
            ));
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
            self.update_page(|state| state.location.recipe = recipe);
        }
        self.update_link();
        self.render_sae_picker();
        self.render_view();
        self.analyse().await;
        self.render();
        self.after_view_change().await;
    }

    /// The SAE `id` ready to run, fetching a shipped one's files the first time.
    pub(crate) async fn load_slot(self: &Rc<Self>, id: &str) -> Result<Rc<LoadedSae>, String> {
        let (origin, loaded) = {
            let lab = self.lab.borrow();
            let slot = lab
                .slot(id)
                .ok_or_else(|| format!("There is no SAE called \"{id}\" here."))?;
            (slot.origin.clone(), slot.loaded.clone())
        };
        if let Some(loaded) = loaded {
            return Ok(loaded);
        }
        let path = match origin {
            Origin::Shipped { path } => path,
            Origin::Stored => {
                self.load_kept(id).await?;
                return self
                    .lab
                    .borrow()
                    .slot(id)
                    .and_then(|s| s.loaded.clone())
                    .ok_or_else(|| format!("The SAE {id} could not be loaded."));
            }
            _ => {
                return Err(format!(
                    "The SAE {id} is still loading; try again in a moment."
                ));
            }
        };
        self.set_notice(format!("Fetching the SAE {id}…"));
        let result = match fetch_sae_dir(&path).await {
            Ok(files) => self
                .add_files(id, files, Origin::Shipped { path })
                .await
                .map_err(|e| format!("The SAE {id} could not be loaded: {e}")),
            Err(e) => Err(format!("The SAE {id} could not be fetched: {e}")),
        };
        self.set_notice(String::new());
        result?;
        self.lab
            .borrow()
            .slot(id)
            .and_then(|s| s.loaded.clone())
            .ok_or_else(|| format!("The SAE {id} could not be loaded."))
    }

    // ---- Keep and move SAEs ----

    pub(crate) fn export_sae(&self) {
        let Some(id) = self.selected_sae() else {
            self.show_error("Choose an SAE to export.".into());
            return;
        };
        let Some(loaded) = self.selected_loaded() else {
            self.show_error("This SAE is still loading; try again in a moment.".into());
            return;
        };
        // Text a person pasted or uploaded goes out only if they tick the box beside Export.
        let include_text = self
            .element(ids::SAE_EXPORT_TEXT)
            .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
            .is_some_and(|i| i.checked());
        let exported = if include_text {
            Ok(loaded.files.clone())
        } else {
            loaded.files.without_training_text()
        };
        let name = id.replace(['/', '\\'], "__");
        match exported {
            Ok(files_out) => {
                files::download(
                    &format!("{name}.zip"),
                    &files_out.to_zip(&name),
                    "application/zip",
                );
                if !include_text && let Some(n) = loaded.files.training_text_len() {
                    self.set_notice(format!(
                        "Exported without the {n} bytes of text it was trained on (tick \"with its training text\" to include them)."
                    ));
                }
            }
            Err(e) => self.show_error(format!("The SAE could not be exported: {e}")),
        }
    }

    pub(crate) async fn import_files(self: &Rc<Self>, files: Vec<(String, Vec<u8>)>) {
        if files.is_empty() {
            return;
        }
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        if crate::model::files::ModelFiles::looks_like_model(&name_refs) {
            return self.open_local_model(files).await;
        }
        let result = async {
            let sae_files = SaeFiles::from_named_files(files)?;
            let id = format!("imported-{}", random_id());
            let zip = sae_files.to_zip(&id);
            self.add_files(&id, sae_files, Origin::Stored).await?;
            if let Err(e) = self.keep_in_browser(&id, &zip).await {
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

    pub(crate) async fn forget_sae(self: &Rc<Self>) {
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
        if let Err(e) = self.remove_kept(&id).await {
            self.show_error(format!(
                "The SAE could not be removed from browser storage: {e}"
            ));
            return;
        }
        self.update(|lab| lab.saes.retain(|s| s.id != id));
        self.update_page(|state| state.location.sae = None);
        self.update_link();
        self.render_sae_picker();
        self.render_view();
        self.after_view_change().await;
    }

    pub(crate) async fn fetch_remote_sae(self: &Rc<Self>, url: String) {
        self.set_notice(format!("Fetching the SAE from {url}…"));
        let app = Rc::clone(self);
        let progress = move |p: &DownloadProgress| app.show_download(Some(p));
        let result = async {
            // Through the download cache, with progress: a second visit fetches nothing.
            let fetch = |file_url: String, name: &'static str| {
                let progress = &progress;
                async move { fetch_cached(&file_url, name, progress).await }
            };
            let files = if url.to_ascii_lowercase().ends_with(".zip") {
                SaeFiles::from_named_files(vec![(
                    "sae.zip".into(),
                    fetch(url.clone(), "the SAE zip")
                        .await
                        .map_err(crate::SaeplayError::Io)?,
                )])?
            } else {
                use crate::sae::saelens::{CFG_FILE, SAEPLAY_FILE, SPARSITY_FILE, WEIGHTS_FILE};
                let base = if url.ends_with('/') {
                    url.clone()
                } else {
                    format!("{url}/")
                };
                SaeFiles {
                    cfg: fetch(format!("{base}{CFG_FILE}"), CFG_FILE)
                        .await
                        .map_err(crate::SaeplayError::Io)?,
                    weights: fetch(format!("{base}{WEIGHTS_FILE}"), WEIGHTS_FILE)
                        .await
                        .map_err(crate::SaeplayError::Io)?,
                    sparsity: fetch(format!("{base}{SPARSITY_FILE}"), SPARSITY_FILE)
                        .await
                        .ok(),
                    saeplay: fetch(format!("{base}{SAEPLAY_FILE}"), SAEPLAY_FILE)
                        .await
                        .ok(),
                }
            };
            let id = format!("fetched-{}", random_id());
            self.add_files(&id, files, Origin::Remote { url: url.clone() })
                .await?;
            Ok::<_, crate::SaeplayError>(id)
        }
        .await;
        self.show_download(None);
        self.set_notice(String::new());
        self.render_storage().await;
        match result {
            Ok(id) => self.choose_sae(id).await,
            Err(e) => self.show_error(format!("The SAE at {url} could not be loaded: {e}")),
        }
    }
}

impl App {
    /// Fetch a published SAE (`RELEASE/SAE_ID`) from the Hub into the download cache, with
    /// SAELens's overrides from the release table, and choose it.
    pub(crate) async fn fetch_published_sae(self: &Rc<Self>, spec: String) {
        use crate::sae::saelens::{CFG_FILE, SPARSITY_FILE, WEIGHTS_FILE};
        let published = match PublishedSae::find(&spec) {
            Ok(published) => published,
            Err(e) => return self.show_error(e.to_string()),
        };
        if self.lab.borrow().slot(&spec).is_some() {
            return self.choose_sae(spec).await;
        }
        let endpoint = hf_endpoint();
        self.set_notice(format!(
            "Fetching the SAE {spec} from {}…",
            published.folder_url(&endpoint)
        ));
        let app = Rc::clone(self);
        let progress = move |p: &DownloadProgress| app.show_download(Some(p));
        let result = async {
            let fetch = |file: &'static str| {
                let url = published.file_url(&endpoint, file);
                let progress = &progress;
                async move { fetch_cached(&url, file, progress).await }
            };
            let cfg = fetch(CFG_FILE).await.map_err(crate::SaeplayError::Io)?;
            let files = SaeFiles {
                cfg: published.complete_cfg(&cfg)?,
                weights: fetch(WEIGHTS_FILE).await.map_err(crate::SaeplayError::Io)?,
                // Optional in SAELens too: a missing one only leaves densities to the scan.
                sparsity: fetch(SPARSITY_FILE).await.ok(),
                saeplay: None,
            };
            self.add_files(&spec, files, Origin::Published { spec: spec.clone() })
                .await
        }
        .await;
        self.show_download(None);
        self.set_notice(String::new());
        self.render_storage().await;
        match result {
            Ok(()) => self.choose_sae(spec).await,
            Err(e) => {
                self.update_page(|state| state.location.sae = None);
                self.update_link();
                self.show_error(format!("The published SAE {spec} could not be loaded: {e}"));
            }
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
