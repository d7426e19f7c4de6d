//! The training worker: the page's own module started in a Web Worker, so that capturing and
//! training on the CPU path never hold up typing and clicking in the page.
//!
//! Page -> worker: `{kind: "train", modelBase, config}` (config: a `SaeTrainingConfig` as JSON),
//! then `pause`, `resume` or `cancel`; `{kind: "features", id, key, modelBase, cfg, weights}`
//! scans an SAE and keeps its report under `key`; `{kind: "feature", id, key, index}` asks for one
//! feature's card. Worker -> page: `ready`, `phase {text, fraction}`, `progress {json}`,
//! `done {cfg, weights, sparsity, saeplay}` (bytes), `cancelled`, `error {message}`, and
//! `featuresPhase {id, text}`, `features {id, json}` (a `FeatureList`, or one `FeatureData`),
//! `featuresError {id, message}`. All messages are plain objects; text is only ever shown as text.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use super::train_job::{Reporter, feature_job, train_job};
use crate::backend::cpu_device;
use crate::bundle::{LoadedModel, ModelFiles};
use crate::sae::saelens::SaeFiles;
use crate::sae::train::{Control, Progress, SaeTrainingConfig};

fn field(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn message(kind: &str, fields: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    Reflect::set(&object, &"kind".into(), &kind.into()).ok();
    for (key, value) in fields {
        Reflect::set(&object, &(*key).into(), value).ok();
    }
    object.into()
}

// ---- Inside the worker ----

thread_local! {
    static CONTROL: Cell<Control> = const { Cell::new(Control::Continue) };
    static MODEL: RefCell<Option<(String, Rc<LoadedModel>)>> = const { RefCell::new(None) };
    /// Feature reports by the page's key, so cards are sent one at a time.
    static REPORTS: RefCell<std::collections::HashMap<String, crate::sae::features::FeatureReport>> =
        RefCell::new(std::collections::HashMap::new());
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(kind: &str, fields: &[(&str, JsValue)]) {
    scope().post_message(&message(kind, fields)).ok();
}

struct PostReporter;

impl Reporter for PostReporter {
    fn phase(&self, text: String, fraction: f64) {
        post(
            "phase",
            &[("text", text.into()), ("fraction", fraction.into())],
        );
    }

    fn progress(&self, progress: &Progress) {
        if let Ok(json) = serde_json::to_string(progress) {
            post("progress", &[("json", json.into())]);
        }
    }

    fn control(&self) -> Control {
        CONTROL.with(Cell::get)
    }
}

async fn model(base: &str) -> Result<Rc<LoadedModel>, String> {
    if let Some(loaded) = MODEL.with(|m| {
        m.borrow()
            .as_ref()
            .filter(|(b, _)| b == base)
            .map(|(_, l)| Rc::clone(l))
    }) {
        return Ok(loaded);
    }
    let files = ModelFiles {
        config_json: super::fetch_bytes(&format!("{base}config.json")).await?,
        safetensors: super::fetch_bytes(&format!("{base}model.safetensors")).await?,
        tokenizer_json: super::fetch_bytes(&format!("{base}tokenizer.json")).await?,
    };
    let host = files.parse().map_err(|e| e.to_string())?;
    let loaded = Rc::new(host.upload(&cpu_device()).map_err(|e| e.to_string())?);
    MODEL.with(|m| *m.borrow_mut() = Some((base.to_string(), Rc::clone(&loaded))));
    Ok(loaded)
}

async fn train(base: String, config_json: String) {
    CONTROL.with(|c| c.set(Control::Continue));
    let result = async {
        let config: SaeTrainingConfig = serde_json::from_str(&config_json)
            .map_err(|e| format!("the training settings did not arrive intact: {e}"))?;
        PostReporter.phase("Loading the model in the training worker…".into(), 0.0);
        let loaded = model(&base).await?;
        train_job(&loaded, config, &PostReporter)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(Some(files)) => {
            let bytes = |b: &[u8]| JsValue::from(Uint8Array::from(b));
            let optional = |b: &Option<Vec<u8>>| b.as_deref().map_or(JsValue::NULL, bytes);
            post(
                "done",
                &[
                    ("cfg", bytes(&files.cfg)),
                    ("weights", bytes(&files.weights)),
                    ("sparsity", optional(&files.sparsity)),
                    ("saeplay", optional(&files.saeplay)),
                ],
            );
        }
        Ok(None) => post("cancelled", &[]),
        Err(message) => post("error", &[("message", message.into())]),
    }
}

async fn features(id: f64, key: String, base: String, cfg: Vec<u8>, weights: Vec<u8>) {
    let result = async {
        let loaded = model(&base).await?;
        let host = SaeFiles {
            cfg,
            weights,
            sparsity: None,
            saeplay: None,
        }
        .parse()
        .map_err(|e| e.to_string())?;
        let hook = crate::model::HookPoint::parse(&host.config.hook_name, loaded.model.config())
            .map_err(|e| e.to_string())?;
        let sae = host
            .upload(loaded.model.device())
            .map_err(|e| e.to_string())?;
        let on_phase = |text: String| {
            post("featuresPhase", &[("id", id.into()), ("text", text.into())]);
        };
        let report = feature_job(&loaded, &sae, hook, &on_phase)
            .await
            .map_err(|e| e.to_string())?;
        let list = crate::ui::feature_list::FeatureList::of(&report);
        REPORTS.with(|r| r.borrow_mut().insert(key, report));
        serde_json::to_string(&list).map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(json) => post("features", &[("id", id.into()), ("json", json.into())]),
        Err(message) => post(
            "featuresError",
            &[("id", id.into()), ("message", message.into())],
        ),
    }
}

fn feature(id: f64, key: &str, index: usize) {
    let json = REPORTS.with(|r| {
        let reports = r.borrow();
        let report = reports
            .get(key)
            .ok_or("the worker no longer holds this SAE's features")?;
        let data = report
            .features
            .iter()
            .find(|f| f.index == index)
            .ok_or_else(|| format!("this SAE has no feature #{index}"))?;
        serde_json::to_string(data).map_err(|e| e.to_string())
    });
    match json {
        Ok(json) => post("features", &[("id", id.into()), ("json", json.into())]),
        Err(message) => post(
            "featuresError",
            &[("id", id.into()), ("message", message.into())],
        ),
    }
}

/// Run as the worker: answer the page's messages.
pub fn serve() {
    let onmessage = Closure::<dyn Fn(MessageEvent)>::new(|event: MessageEvent| {
        let data = event.data();
        let text = |key: &str| field(&data, key).as_string().unwrap_or_default();
        match text("kind").as_str() {
            "train" => spawn_local(train(text("modelBase"), text("config"))),
            "features" => {
                let bytes = |key: &str| Uint8Array::new(&field(&data, key)).to_vec();
                spawn_local(features(
                    field(&data, "id").as_f64().unwrap_or(0.0),
                    text("key"),
                    text("modelBase"),
                    bytes("cfg"),
                    bytes("weights"),
                ));
            }
            "feature" => feature(
                field(&data, "id").as_f64().unwrap_or(0.0),
                &text("key"),
                field(&data, "index").as_f64().unwrap_or(f64::MAX) as usize,
            ),
            "pause" => CONTROL.with(|c| c.set(Control::Pause)),
            "resume" => CONTROL.with(|c| c.set(Control::Continue)),
            "cancel" => CONTROL.with(|c| c.set(Control::Stop)),
            _ => {}
        }
    });
    scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post("ready", &[]);
}

// ---- In the page ----

/// What the page hears from the worker.
pub enum Heard {
    Ready,
    Phase(String, f64),
    Progress(Box<Progress>),
    Done(SaeFiles),
    Cancelled,
    Error(String),
    FeaturesPhase(u32, String),
    Features(u32, Result<String, String>),
}

pub fn parse_message(data: &JsValue) -> Option<Heard> {
    let text = |key: &str| field(data, key).as_string().unwrap_or_default();
    let id = || field(data, "id").as_f64().unwrap_or(0.0) as u32;
    let bytes = |key: &str| {
        let value = field(data, key);
        (!value.is_null() && !value.is_undefined()).then(|| Uint8Array::new(&value).to_vec())
    };
    Some(match text("kind").as_str() {
        "ready" => Heard::Ready,
        "phase" => Heard::Phase(
            text("text"),
            field(data, "fraction").as_f64().unwrap_or(0.0),
        ),
        "progress" => Heard::Progress(Box::new(serde_json::from_str(&text("json")).ok()?)),
        "done" => Heard::Done(SaeFiles {
            cfg: bytes("cfg")?,
            weights: bytes("weights")?,
            sparsity: bytes("sparsity"),
            saeplay: bytes("saeplay"),
        }),
        "cancelled" => Heard::Cancelled,
        "error" => Heard::Error(text("message")),
        "featuresPhase" => Heard::FeaturesPhase(id(), text("text")),
        "features" => Heard::Features(id(), Ok(text("json"))),
        "featuresError" => Heard::Features(id(), Err(text("message"))),
        _ => return None,
    })
}

/// Start a module worker running this page's own module (compiled once, shared).
pub fn spawn(on_message: impl Fn(MessageEvent) + 'static) -> Result<web_sys::Worker, String> {
    let document = super::window().document().ok_or("no document")?;
    // Trunk preloads the page's module; its absolute URL is the worker's import.
    let links = document
        .query_selector_all("link[rel=modulepreload]")
        .map_err(super::js_error)?;
    let module_url = (0..links.length())
        .filter_map(|i| links.item(i))
        .filter_map(|node| field(&node, "href").as_string())
        .find(|href| !href.contains("/snippets/") && href.ends_with(".js"))
        .ok_or("the page's module could not be found for the training worker")?;
    let source = format!(
        "import init from {module_url:?};\n\
         self.onmessage = async (event) => {{ self.onmessage = null; await init({{ module_or_path: event.data }}); }};\n"
    );
    let parts = js_sys::Array::of1(&source.into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/javascript");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
        .map_err(super::js_error)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(super::js_error)?;
    let worker_options = web_sys::WorkerOptions::new();
    worker_options.set_type(web_sys::WorkerType::Module);
    let worker =
        web_sys::Worker::new_with_options(&url, &worker_options).map_err(super::js_error)?;
    let closure = Closure::<dyn Fn(MessageEvent)>::new(on_message);
    worker.set_onmessage(Some(closure.as_ref().unchecked_ref()));
    closure.forget();
    // The compiled module itself: the worker does not fetch or compile the wasm again.
    worker
        .post_message(&wasm_bindgen::module())
        .map_err(super::js_error)?;
    Ok(worker)
}

pub fn send(worker: &web_sys::Worker, kind: &str, fields: &[(&str, JsValue)]) {
    worker.post_message(&message(kind, fields)).ok();
}
