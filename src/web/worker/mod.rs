//! The Web Worker: the page's own module started again in a module worker, so that capturing,
//! training on the CPU path and feature scans never hold up typing and clicking in the page.
//! The messages are [`crate::ui::worker_protocol`]'s enums as JSON (`{json, bytes}` objects,
//! byte buffers beside the text under their [`Attachment`] names); text from the worker is only
//! ever shown as text. The worker's state and the page's view of it are plain Rust in
//! [`crate::ui::worker_state`].

mod client;
mod helpers;
mod serve;

pub use client::WorkerOutcome;
pub use serve::serve;

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

use super::platform::{js_error, window};
use crate::ui::worker_protocol::{Attachment, Attachments};

/// A message as it crosses: the typed message as JSON, and byte buffers beside it by name.
fn envelope(json: String, attachments: &[(Attachment, &[u8])]) -> JsValue {
    let object = Object::new();
    Reflect::set(&object, &"json".into(), &json.into()).ok();
    let named = Object::new();
    for (name, bytes) in attachments {
        Reflect::set(&named, &name.name().into(), &Uint8Array::from(*bytes)).ok();
    }
    Reflect::set(&object, &"bytes".into(), &named).ok();
    object.into()
}

/// The JSON text and named byte buffers of a received message.
fn open(data: &JsValue) -> Option<(String, Attachments)> {
    let json = Reflect::get(data, &"json".into()).ok()?.as_string()?;
    let named = Reflect::get(data, &"bytes".into())
        .ok()
        .filter(|b| b.is_object())
        .map(|b| {
            Object::entries(&b.unchecked_into())
                .iter()
                .filter_map(|entry| {
                    let entry: Array = entry.unchecked_into();
                    let bytes = entry.get(1);
                    let bytes = bytes
                        .is_object()
                        .then(|| Uint8Array::new(&bytes).to_vec())?;
                    Some((entry.get(0).as_string()?, bytes))
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Some((json, Attachments::from_named(named)))
}

/// Where a worker keeps the URL of the page's module, to start helpers of its own.
const MODULE_URL: &str = "saeplayModuleUrl";

/// The page's module: Trunk preloads it; its absolute URL is the worker's import.
fn page_module_url() -> Result<String, String> {
    let document = window().document().ok_or("no document")?;
    let links = document
        .query_selector_all("link[rel=modulepreload]")
        .map_err(js_error)?;
    (0..links.length())
        .filter_map(|i| links.item(i))
        .filter_map(|node| {
            Reflect::get(&node, &"href".into())
                .ok()
                .and_then(|h| h.as_string())
        })
        .find(|href| !href.contains("/snippets/") && href.ends_with(".js"))
        .ok_or_else(|| "the page's module could not be found for the training worker".into())
}

/// Start a module worker running this page's own module (compiled once, shared): from the page,
/// or from a worker (its capture helpers).
/// `on_error` hears an uncaught error in the worker (a panic, running out of memory), after
/// which its wasm instance cannot be trusted.
pub fn spawn(
    on_message: impl Fn(MessageEvent) + 'static,
    on_error: impl Fn(String) + 'static,
) -> Result<web_sys::Worker, String> {
    let module_url = match Reflect::get(&js_sys::global(), &MODULE_URL.into())
        .ok()
        .and_then(|url| url.as_string())
    {
        // In a worker (starting a helper): the URL its own start-up left.
        Some(url) => url,
        None => page_module_url()?,
    };
    // `saeplayWasm` keeps the instance's exports reachable (the browser tests read its memory).
    let source = format!(
        "self.{MODULE_URL} = {module_url:?};\n\
         import init from {module_url:?};\n\
         self.onmessage = async (event) => {{ self.onmessage = null; self.saeplayWasm = await init({{ module_or_path: event.data }}); }};\n"
    );
    let parts = Array::of1(&source.into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/javascript");
    let blob =
        web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).map_err(js_error)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(js_error)?;
    let worker_options = web_sys::WorkerOptions::new();
    worker_options.set_type(web_sys::WorkerType::Module);
    let worker = web_sys::Worker::new_with_options(&url, &worker_options).map_err(js_error)?;
    let closure = Closure::<dyn Fn(MessageEvent)>::new(on_message);
    worker.set_onmessage(Some(closure.as_ref().unchecked_ref()));
    closure.forget();
    let on_error =
        Closure::<dyn Fn(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
            on_error(event.message());
        });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    // The compiled module itself: the worker does not fetch or compile the wasm again.
    worker
        .post_message(&wasm_bindgen::module())
        .map_err(js_error)?;
    Ok(worker)
}
