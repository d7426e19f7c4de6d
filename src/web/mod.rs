//! Browser glue (wasm only): DOM events in, rendering out, the model run between them. The
//! decisions live in [`crate::ui`]; this file only connects them to the page.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Float32Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise, spawn_local};
use web_sys::{Document, Element, HtmlElement, HtmlInputElement, HtmlTextAreaElement, Response};

use crate::analysis::top_predictions;
use crate::backend::{BackendKind, cpu_device, read_f32, wgpu_device};
use crate::bundle::{LoadedModel, ModelFiles};
use crate::model::{Generation, Hooks, LogitsFor, Step};
use crate::ui::{AdapterInfo, BackendDecision, ModelSource, PageState, TokenView, choose_backend};

mod dom;
mod js;
mod lab;
mod train_job;
mod worker;

/// Where the built-in model's files are served from, relative to the page.
pub(crate) const BUILTIN_MODEL: &str = "models/builtin/";
const PREDICTIONS_SHOWN: usize = 10;

struct App {
    document: Document,
    state: RefCell<PageState>,
    model: RefCell<Option<Rc<LoadedModel>>>,
    forced_backend: Option<BackendKind>,
    /// Bumped by each prompt edit, so a stale analysis does not overwrite a newer one.
    analysis_ticket: Cell<u64>,
    /// Bumped to cancel a running generation.
    generation_ticket: Cell<u64>,
    /// The SAE views' state.
    lab: RefCell<lab::Lab>,
    train_control: lab::TrainControl,
    /// The answer to the question on screen (fetch a URL the link names?), once given.
    consent: Cell<Option<bool>>,
    /// The training worker (CPU path), started at the first training run and kept.
    worker: RefCell<Option<web_sys::Worker>>,
    worker_ready: Cell<bool>,
    /// Where the worker's answer to the current run goes.
    worker_outcome: RefCell<Option<lab::WorkerOutcome>>,
    /// The latest feature-report request to the worker, and the answers by request.
    features_request: Cell<u32>,
    features_outcomes: RefCell<std::collections::HashMap<u32, Result<String, String>>>,
}

/// Start the page: called by the binary's `main` in wasm.
pub fn start() {
    console_error_panic_hook::set_once();
    if web_sys::window().is_none() {
        // The same module, started inside the training worker.
        worker::serve();
        return;
    }
    spawn_local(run());
}

fn window() -> web_sys::Window {
    web_sys::window().expect("a page has a window")
}

/// The global scope: the page's window, or the worker's scope.
fn global() -> js_sys::Object {
    js_sys::global()
}

fn global_function(name: &str) -> Option<js_sys::Function> {
    Reflect::get(&global(), &name.into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
}

/// Resolve after `ms` milliseconds, letting the browser handle events and paint (in the page or
/// in the worker).
async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        if let Some(set_timeout) = global_function("setTimeout") {
            set_timeout
                .call2(&global(), &resolve, &JsValue::from(ms))
                .ok();
        }
    });
    JsFuture::from(promise).await.ok();
}

fn now_ms() -> f64 {
    Reflect::get(&global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

fn js_error(value: JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
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
        lab: RefCell::new(lab::Lab::default()),
        train_control: lab::TrainControl::default(),
        consent: Cell::new(None),
        worker: RefCell::new(None),
        worker_ready: Cell::new(false),
        worker_outcome: RefCell::new(None),
        features_request: Cell::new(0),
        features_outcomes: RefCell::new(std::collections::HashMap::new()),
    });
    app.bind_events();
    app.bind_lab_events();
    app.render_view();
    app.render();

    // A model from elsewhere is fetched only if the person agrees.
    let mut model_base = BUILTIN_MODEL.to_string();
    if let Some(ModelSource::Url(url)) = &view.model {
        let question = format!(
            "This link asks to load a model from {url}. Fetch it? (Otherwise the built-in model loads.)"
        );
        if app.ask_consent(&question).await {
            model_base = if url.ends_with('/') {
                url.clone()
            } else {
                format!("{url}/")
            };
        } else {
            app.state.borrow_mut().location.model = None;
            app.update_link();
        }
    }
    let builtin = model_base == BUILTIN_MODEL;

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
    app.state.borrow_mut().backend_chosen(decision.clone());
    app.render();

    match load_model(&device, &model_base).await {
        Ok(loaded) => {
            let c = loaded.model.config();
            let description = format!(
                "Model: {} layers, d_model {}, {} heads, context {}, vocabulary {}.",
                c.n_layer, c.n_embd, c.n_head, c.n_positions, c.vocab_size
            );
            *app.model.borrow_mut() = Some(Rc::new(loaded));
            app.write_train_form(); // the model's hook points, and the defaults
            install_api(&app, &decision);
            app.analyse().await;
            app.state.borrow_mut().model_loaded(description);
            app.render();
            app.discover_saes(builtin).await;
            app.apply_link().await;
        }
        Err(message) => app.state.borrow_mut().load_failed(message),
    }
    app.render();
}

/// Ask the browser for a WebGPU adapter and describe it, without committing to it.
async fn probe_adapter() -> Result<Option<AdapterInfo>, String> {
    let navigator = window().navigator();
    let gpu = Reflect::get(&navigator, &"gpu".into()).map_err(js_error)?;
    if gpu.is_undefined() || gpu.is_null() {
        return Ok(None);
    }
    let request = Reflect::get(&gpu, &"requestAdapter".into()).map_err(js_error)?;
    let request: js_sys::Function = request
        .dyn_into()
        .map_err(|_| "navigator.gpu.requestAdapter is missing".to_string())?;
    let promise: Promise = request
        .call0(&gpu)
        .map_err(js_error)?
        .dyn_into()
        .map_err(js_error)?;
    let adapter = JsFuture::from(promise).await.map_err(js_error)?;
    if adapter.is_null() || adapter.is_undefined() {
        return Ok(None);
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let text = |object: &JsValue, key: &str| {
        Reflect::get(object, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let flag = |object: &JsValue, key: &str| {
        Reflect::get(object, &key.into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    };
    Ok(Some(AdapterInfo {
        vendor: text(&info, "vendor"),
        architecture: text(&info, "architecture"),
        description: text(&info, "description"),
        is_fallback: flag(&info, "isFallbackAdapter") || flag(&adapter, "isFallbackAdapter"),
    }))
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let fetch = global_function("fetch").ok_or("this browser has no fetch")?;
    let promise: Promise = fetch
        .call1(&global(), &JsValue::from_str(url))
        .map_err(js_error)?
        .dyn_into()
        .map_err(js_error)?;
    let response = JsFuture::from(promise)
        .await
        .map_err(|e| format!("could not fetch {url}: {}", js_error(e)))?;
    let response: Response = response.dyn_into().map_err(js_error)?;
    if !response.ok() {
        return Err(format!(
            "could not fetch {url}: the server answered {}",
            response.status()
        ));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?)
        .await
        .map_err(js_error)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

async fn load_model(device: &burn::tensor::Device, base: &str) -> Result<LoadedModel, String> {
    let files = ModelFiles {
        config_json: fetch_bytes(&format!("{base}config.json")).await?,
        safetensors: fetch_bytes(&format!("{base}model.safetensors")).await?,
        tokenizer_json: fetch_bytes(&format!("{base}tokenizer.json")).await?,
    };
    let host = files.parse().map_err(|e| e.to_string())?;
    host.upload(device).map_err(|e| e.to_string())
}

impl App {
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

    fn on(self: &Rc<Self>, id: &str, event: &str, handler: impl Fn(&Rc<App>) + 'static) {
        let Some(element) = self.element(id) else {
            return;
        };
        let app = Rc::clone(self);
        let closure = Closure::<dyn Fn()>::new(move || handler(&app));
        element
            .add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())
            .ok();
        closure.forget(); // listeners live as long as the page
    }

    fn bind_events(self: &Rc<Self>) {
        if let Some(prompt) = self
            .element("prompt")
            .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
        {
            prompt.set_value(&self.state.borrow().prompt);
        }
        self.on("prompt", "input", |app| {
            let text = app
                .element("prompt")
                .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
                .map(|e| e.value())
                .unwrap_or_default();
            app.state.borrow_mut().prompt_changed(text);
            app.update_link();
            let app = Rc::clone(app);
            spawn_local(async move {
                let ticket = app.analysis_ticket.get() + 1;
                app.analysis_ticket.set(ticket);
                sleep(150).await; // let typing settle
                if app.analysis_ticket.get() == ticket {
                    app.analyse().await;
                    app.render();
                }
            });
        });
        for id in ["temperature", "top-k", "top-p", "seed", "max-tokens"] {
            self.on(id, "input", |app| {
                let mut state = app.state.borrow_mut();
                state.form.temperature = app.input_value("temperature");
                state.form.top_k = app.input_value("top-k");
                state.form.top_p = app.input_value("top-p");
                state.form.seed = app.input_value("seed");
                state.form.max_tokens = app.input_value("max-tokens");
            });
        }
        self.on("generate", "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.generate().await });
        });
        self.on("stop", "click", |app| {
            app.generation_ticket.set(app.generation_ticket.get() + 1);
        });
        self.on("consent-yes", "click", |app| app.consent.set(Some(true)));
        self.on("consent-no", "click", |app| app.consent.set(Some(false)));
        self.on("dismiss-error", "click", |app| {
            app.state.borrow_mut().dismiss_errors();
            app.render();
        });
        // Show the form's initial values.
        let form = self.state.borrow().form.clone();
        for (id, value) in [
            ("temperature", &form.temperature),
            ("top-k", &form.top_k),
            ("top-p", &form.top_p),
            ("seed", &form.seed),
            ("max-tokens", &form.max_tokens),
        ] {
            if let Some(input) = self
                .element(id)
                .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
            {
                input.set_value(value);
            }
        }
    }

    fn update_link(&self) {
        let fragment = self.state.borrow().fragment(self.forced_backend);
        let url = if fragment.is_empty() {
            " ".to_string()
        } else {
            format!("#{fragment}")
        };
        if let Ok(history) = window().history() {
            history
                .replace_state_with_url(&JsValue::NULL, "", Some(url.trim()))
                .ok();
        }
        if let Some(input) = self
            .element("share-link")
            .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
        {
            input.set_value(&window().location().href().unwrap_or_default());
        }
    }

    /// Tokenise the prompt and show the next-token predictions.
    async fn analyse(self: &Rc<Self>) {
        let Some(loaded) = self.model.borrow().clone() else {
            return;
        };
        let prompt = self.state.borrow().prompt.clone();
        // With an SAE chosen, the same forward captures its hook for the heatmap.
        let sae_hook = self.selected_loaded().map(|s| s.hook);
        let result = async {
            let encoded = loaded.encode_prompt(&prompt).map_err(|e| e.to_string())?;
            let hooks = match sae_hook {
                Some(hook) => Hooks::capture([hook]),
                None => Hooks::none(),
            };
            let output = loaded
                .model
                .forward(
                    std::slice::from_ref(&encoded.ids),
                    &hooks,
                    LogitsFor::LastPosition,
                )
                .map_err(|e| e.to_string())?;
            let captured = sae_hook.and_then(|hook| output.activation(hook).cloned());
            let logits = read_f32(output.logits).await.map_err(|e| e.to_string())?;
            let tokens: Vec<TokenView> = encoded
                .ids
                .iter()
                .zip(encoded.pieces(&prompt))
                .map(|(&id, piece)| TokenView {
                    id,
                    text: piece.to_string(),
                })
                .collect();
            Ok::<_, String>((
                tokens,
                top_predictions(&logits, PREDICTIONS_SHOWN),
                captured,
            ))
        }
        .await;
        if self.state.borrow().prompt != prompt {
            return; // the person typed on; a newer analysis follows
        }
        match result {
            Ok((tokens, predictions, captured)) => {
                let texts: Vec<String> = tokens.iter().map(|t| t.text.clone()).collect();
                self.state
                    .borrow_mut()
                    .analysed(tokens, &predictions, |id| loaded.tokenizer.token_text(id));
                if let Some(activation) = captured
                    && let Err(e) = self.compute_heat(activation, texts).await
                {
                    self.show_error(format!("The SAE could not run on the prompt: {e}"));
                }
            }
            Err(message) => self.state.borrow_mut().analysis_failed(message),
        }
        self.render_heatmap();
    }

    async fn generate(self: &Rc<Self>) {
        let Some(loaded) = self.model.borrow().clone() else {
            return;
        };
        let Some(config) = self.state.borrow_mut().start_generation() else {
            self.render();
            return;
        };
        self.render();
        let ticket = self.generation_ticket.get();
        let prompt = self.state.borrow().prompt.clone();
        let started = now_ms();
        let result = async {
            let ids = loaded
                .encode_prompt(&prompt)
                .map_err(|e| e.to_string())?
                .ids;
            let mut generation = Generation::new(&loaded.model, &ids, config, Hooks::none())
                .map_err(|e| e.to_string())?;
            loop {
                if self.generation_ticket.get() != ticket {
                    return Ok(None);
                }
                match generation.step().await.map_err(|e| e.to_string())? {
                    Step::Token(_) => {
                        let text = loaded
                            .tokenizer
                            .decode(generation.produced())
                            .map_err(|e| e.to_string())?;
                        self.state
                            .borrow_mut()
                            .generated(text, generation.produced().len());
                        self.render_generation();
                        sleep(0).await; // let the page handle input between tokens
                    }
                    Step::Done(reason) => return Ok(Some((reason, generation.produced().len()))),
                }
            }
        }
        .await;
        let seconds = (now_ms() - started) / 1000.0;
        {
            let mut state = self.state.borrow_mut();
            match result {
                Ok(Some((reason, tokens))) => {
                    state.generation_finished(Ok((reason, tokens, seconds)))
                }
                Ok(None) => state.generation_cancelled(),
                Err(message) => state.generation_finished(Err(message)),
            }
        }
        self.render();
    }

    fn render_generation(&self) {
        let state = self.state.borrow();
        self.set_text("output", &state.output);
        if let Some(output) = self.element("output") {
            if state.output_done {
                output.set_attribute("data-done", "true").ok();
            } else {
                output.remove_attribute("data-done").ok();
            }
        }
        self.set_text("generation-status", &state.generation_status);
        if let Some(button) = self.element("generate") {
            button
                .toggle_attribute_with_force("disabled", state.generating)
                .ok();
        }
        if let Some(button) = self.element("stop") {
            button
                .toggle_attribute_with_force("disabled", !state.generating)
                .ok();
        }
    }

    /// Draw the whole state. Every string is set as text, never parsed as markup.
    fn render(&self) {
        let state = self.state.borrow();
        if let Some(body) = self.document.body() {
            body.dataset().set("state", state.phase.name()).ok();
        }
        self.set_text("status", &state.status);
        match &state.backend {
            Some(BackendDecision {
                kind,
                label,
                reason,
            }) => {
                self.set_text("backend", label);
                self.set_text("backend-reason", reason);
                if let Some(element) = self.element("backend") {
                    let name = if *kind == BackendKind::Wgpu {
                        "webgpu"
                    } else {
                        "cpu"
                    };
                    element.set_attribute("data-backend", name).ok();
                }
            }
            None => self.set_text("backend", "choosing…"),
        }
        if let Some(list) = self.element("tokens") {
            list.set_text_content(None);
            for (index, token) in state.tokens.iter().enumerate() {
                if let Ok(span) = self.document.create_element("span") {
                    span.set_class_name("token");
                    span.set_attribute("data-id", &token.id.to_string()).ok();
                    span.set_attribute("data-token", &index.to_string()).ok();
                    span.set_attribute("title", &format!("token {}", token.id))
                        .ok();
                    span.set_text_content(Some(&token.text));
                    list.append_child(&span).ok();
                }
            }
        }
        if let Some(list) = self.element("predictions") {
            list.set_text_content(None);
            for prediction in &state.predictions {
                let Ok(item) = self.document.create_element("li") else {
                    continue;
                };
                item.set_class_name("prediction");
                item.set_attribute("data-id", &prediction.id.to_string())
                    .ok();
                item.set_attribute("data-prob", &prediction.probability.to_string())
                    .ok();
                let bar = self.document.create_element("span").ok();
                if let Some(bar) = bar.and_then(|b| b.dyn_into::<HtmlElement>().ok()) {
                    bar.set_class_name("bar");
                    bar.style()
                        .set_property("width", &format!("{:.1}%", prediction.probability * 100.0))
                        .ok();
                    item.append_child(&bar).ok();
                }
                if let Ok(label) = self.document.create_element("span") {
                    label.set_class_name("label");
                    label.set_text_content(Some(&format!("{:?}", prediction.text)));
                    item.append_child(&label).ok();
                }
                if let Ok(value) = self.document.create_element("span") {
                    value.set_class_name("prob");
                    value
                        .set_text_content(Some(&format!("{:.1}%", prediction.probability * 100.0)));
                    item.append_child(&value).ok();
                }
                list.append_child(&item).ok();
            }
        }
        drop(state);
        self.render_errors();
        self.render_generation();
    }

    fn render_errors(&self) {
        let state = self.state.borrow();
        let message = state.errors.join("\n");
        self.set_text("error-text", &message);
        if let Some(error) = self.element("error") {
            error
                .toggle_attribute_with_force("hidden", state.errors.is_empty())
                .ok();
        }
    }
}

/// `window.saeplay`: a small API for tests, benchmarks and the curious, once the model is ready.
fn install_api(app: &Rc<App>, decision: &BackendDecision) {
    let api = Object::new();
    let set = |name: &str, value: &JsValue| {
        Reflect::set(&api, &name.into(), value).ok();
    };

    let model = || {
        app.model
            .borrow()
            .clone()
            .expect("the API is installed after the model loads")
    };
    let loaded = model();
    let info = Object::new();
    let config = loaded.model.config();
    for (key, value) in [
        (
            "backend",
            JsValue::from_str(if decision.kind == BackendKind::Wgpu {
                "webgpu"
            } else {
                "cpu"
            }),
        ),
        ("adapter", JsValue::from_str(&decision.label)),
        ("reason", JsValue::from_str(&decision.reason)),
        ("vocab", JsValue::from_f64(config.vocab_size as f64)),
        ("nPositions", JsValue::from_f64(config.n_positions as f64)),
        ("nLayer", JsValue::from_f64(config.n_layer as f64)),
        ("dModel", JsValue::from_f64(config.n_embd as f64)),
    ] {
        Reflect::set(&info, &key.into(), &value).ok();
    }
    let info_fn = Closure::<dyn Fn() -> JsValue>::new(move || info.clone().into());
    set("info", info_fn.as_ref());
    info_fn.forget();

    let for_encode = Rc::clone(&loaded);
    let encode = Closure::<dyn Fn(String) -> Promise>::new(move |text: String| {
        let loaded = Rc::clone(&for_encode);
        future_to_promise(async move {
            let encoded = loaded
                .tokenizer
                .encode(&text)
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            Ok(encoded
                .ids
                .iter()
                .map(|&id| JsValue::from(id))
                .collect::<Array>()
                .into())
        })
    });
    set("encode", encode.as_ref());
    encode.forget();

    let for_logits = Rc::clone(&loaded);
    let logits = Closure::<dyn Fn(JsValue) -> Promise>::new(move |ids: JsValue| {
        let loaded = Rc::clone(&for_logits);
        future_to_promise(async move {
            let ids = ids_from_js(&ids)?;
            let output = loaded
                .model
                .forward(&[ids], &Hooks::none(), LogitsFor::AllPositions)
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            let values = read_f32(output.logits)
                .await
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            Ok(Float32Array::from(values.as_slice()).into())
        })
    });
    set("logits", logits.as_ref());
    logits.forget();

    let for_bench = Rc::clone(&loaded);
    let bench =
        Closure::<dyn Fn(u32, u32, u32) -> Promise>::new(move |batch: u32, seq: u32, runs: u32| {
            let loaded = Rc::clone(&for_bench);
            future_to_promise(async move {
                let (batch, seq, runs) = (batch.max(1) as usize, seq.max(1) as usize, runs.max(1));
                let rows: Vec<Vec<u32>> = (0..batch)
                    .map(|i| (0..seq).map(|j| ((i * 31 + j * 7) % 250) as u32).collect())
                    .collect();
                let once = || async {
                    let output = loaded
                        .model
                        .forward(&rows, &Hooks::none(), LogitsFor::AllPositions)
                        .map_err(|e| JsValue::from_str(&e.to_string()))?;
                    read_f32(output.logits.slice([0..1, 0..1, 0..1]))
                        .await
                        .map_err(|e| JsValue::from_str(&e.to_string()))
                };
                let start = now_ms();
                once().await?;
                let first = now_ms() - start;
                let start = now_ms();
                for _ in 0..runs {
                    once().await?;
                }
                let mean = (now_ms() - start) / f64::from(runs);
                let result = Object::new();
                Reflect::set(&result, &"firstMs".into(), &first.into()).ok();
                Reflect::set(&result, &"meanMs".into(), &mean.into()).ok();
                Reflect::set(
                    &result,
                    &"tokensPerSecond".into(),
                    &((batch * seq) as f64 / (mean / 1000.0)).into(),
                )
                .ok();
                Ok(result.into())
            })
        });
    set("benchForward", bench.as_ref());
    bench.forget();

    let for_sae = Rc::clone(&loaded);
    let train_sae = Closure::<dyn Fn(JsValue) -> Promise>::new(move |options: JsValue| {
        let loaded = Rc::clone(&for_sae);
        future_to_promise(async move {
            let options = options_from_js(&options)?;
            train_sae_in_page(&loaded, options)
                .await
                .map_err(|e| JsValue::from_str(&e.to_string()))
        })
    });
    set("trainSae", train_sae.as_ref());
    train_sae.forget();

    Reflect::set(&window(), &"saeplay".into(), &api).ok();
}

fn ids_from_js(value: &JsValue) -> Result<Vec<u32>, JsValue> {
    let array: &Array = value
        .dyn_ref()
        .ok_or_else(|| JsValue::from_str("ids must be an array of numbers"))?;
    array
        .iter()
        .map(|v| {
            v.as_f64()
                .filter(|x| x.fract() == 0.0 && *x >= 0.0 && *x <= f64::from(u32::MAX))
                .map(|x| x as u32)
                .ok_or_else(|| JsValue::from_str("ids must be whole numbers from 0"))
        })
        .collect()
}

use train_job::Yielding;

/// Options of `window.saeplay.trainSae`, all optional: `{architecture, k, expansion, tokens,
/// batchSize, hook, learningRate, sparsity, seed, randomInputs}`.
struct TrainSaeOptions {
    architecture: String,
    k: usize,
    expansion: usize,
    tokens: usize,
    batch_size: usize,
    hook: String,
    learning_rate: f64,
    sparsity: Option<f64>,
    seed: u64,
    /// Train on Gaussian vectors instead of the model's activations (throughput only).
    random_inputs: bool,
}

fn options_from_js(value: &JsValue) -> Result<TrainSaeOptions, JsValue> {
    let get = |key: &str| {
        Reflect::get(value, &key.into())
            .ok()
            .filter(|v| !v.is_undefined())
    };
    let number = |key: &str, default: f64| -> Result<f64, JsValue> {
        match get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| JsValue::from_str(&format!("{key} must be a number >= 0"))),
        }
    };
    let text = |key: &str, default: &str| {
        get(key)
            .and_then(|v| v.as_string())
            .unwrap_or(default.into())
    };
    Ok(TrainSaeOptions {
        architecture: text("architecture", "topk"),
        k: number("k", 16.0)? as usize,
        expansion: number("expansion", 8.0)? as usize,
        tokens: number("tokens", 65536.0)? as usize,
        batch_size: number("batchSize", 1024.0)? as usize,
        hook: text("hook", "blocks.2.hook_resid_pre"),
        learning_rate: number("learningRate", 1e-3)?,
        sparsity: get("sparsity").and_then(|v| v.as_f64()),
        seed: number("seed", 1.0)? as u64,
        random_inputs: get("randomInputs")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

/// Train an SAE in the page on its backend and report throughput and quality: the check that
/// TopK and BatchTopK train on WebGPU in wasm, and the page's SAE benchmark.
async fn train_sae_in_page(
    loaded: &LoadedModel,
    options: TrainSaeOptions,
) -> crate::Result<JsValue> {
    use crate::model::HookPoint;
    use crate::sae::Architecture;
    use crate::sae::store::{ActivationStore, Corpus, StoreConfig};
    use crate::sae::train::{
        BatchSource, CapturedActivations, Control, SaeTrainer, SaeTrainingConfig, run,
    };

    let architecture = Architecture::parse(&options.architecture, Some(options.k))?;
    let hook = HookPoint::parse(&options.hook, loaded.model.config())?;
    let d_in = hook.width(loaded.model.config());
    let sparsity = options
        .sparsity
        .unwrap_or(architecture.default_sparsity_coefficient());
    let config = SaeTrainingConfig {
        architecture,
        hook_name: hook.to_string(),
        expansion_factor: options.expansion,
        training_tokens: options.tokens,
        batch_size: options.batch_size,
        learning_rate: options.learning_rate,
        sparsity_coefficient: sparsity,
        seed: options.seed,
        ..SaeTrainingConfig::default()
    };
    config.validate()?;
    let device = loaded.model.device().clone();
    let start = now_ms();
    let now = || now_ms() / 1000.0;
    let mut last = None;
    let mut on_step = |p: &crate::sae::train::Progress| {
        last = Some(p.clone());
        Control::Continue
    };
    let first_batch;
    let (trainer, capture_ms) = if options.random_inputs {
        let mut rng = crate::rng::SplitMix64::new(options.seed);
        let rows = options.batch_size * 4;
        let values = (0..rows * d_in).map(|_| rng.normal()).collect();
        let mut source = CapturedActivations::new(values, d_in, options.seed)?;
        first_batch = source.next_batch(options.batch_size).await?;
        let mut trainer = SaeTrainer::new(config, d_in, "builtin", &first_batch, &device)?;
        run(&mut trainer, &mut Yielding(&mut source), &now, &mut on_step).await?;
        (trainer, 0.0)
    } else {
        let mut store = ActivationStore::new(
            &loaded.model,
            &loaded.tokenizer,
            Corpus::TinyTales { seed: options.seed },
            &[hook],
            StoreConfig {
                buffer_vectors: options.batch_size * 4,
                // One forward of 16 windows x 128 tokens blocks the CPU page for ~1.2 s; 4 windows
                // keep each uninterrupted stretch near 0.3 s.
                windows_per_forward: 4,
                ..StoreConfig::default()
            },
        )?;
        // Capture everything first, so the training figure is the SAE's own speed.
        let capture_start = now_ms();
        // In chunks, yielding between them, so the page keeps answering while it captures.
        let wanted = options.tokens.max(options.batch_size);
        let mut values = Vec::with_capacity(wanted * d_in);
        while values.len() < wanted * d_in {
            let take = (wanted - values.len() / d_in).min(1024);
            values.extend(train_job::capture(&mut store, take).await?);
        }
        let capture_ms = now_ms() - capture_start;
        let mut source = CapturedActivations::new(values, d_in, options.seed)?;
        first_batch = source.next_batch(options.batch_size).await?;
        let mut trainer = SaeTrainer::new(config, d_in, "builtin", &first_batch, &device)?;
        run(&mut trainer, &mut Yielding(&mut source), &now, &mut on_step).await?;
        (trainer, capture_ms)
    };
    let total_ms = now_ms() - start;
    let progress = last.ok_or_else(|| crate::SaeplayError::InvalidSetting("no step ran".into()))?;
    // Encode on the page's device: bisection top-k on WebGPU (no synchronous read-back), host
    // selection on the CPU path.
    let sae = trainer.sae();
    let rows = first_batch.len() / d_in;
    let x = crate::backend::float_tensor(first_batch, [rows, d_in], &device);
    let acts = read_f32(sae.encode_async(x).await?).await?;
    let active = acts.iter().filter(|&&v| v > 0.0).count() as f64 / rows as f64;
    let result = Object::new();
    for (key, value) in [
        ("steps", progress.total_steps as f64),
        ("vectorsPerSecond", progress.vectors_per_second),
        ("trainSeconds", progress.elapsed_seconds),
        ("captureMs", capture_ms),
        ("totalMs", total_ms),
        (
            "explainedVariance",
            f64::from(progress.stats.explained_variance),
        ),
        ("trainL0", f64::from(progress.stats.l0)),
        ("encodeL0", active),
        ("deadFraction", f64::from(progress.stats.dead_fraction)),
        ("loss", f64::from(progress.stats.loss)),
    ] {
        Reflect::set(&result, &key.into(), &value.into()).ok();
    }
    Ok(result.into())
}
