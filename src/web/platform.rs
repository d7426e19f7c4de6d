//! Browser platform calls shared by the page and the worker: the global scope, timers, the
//! clock, fetch, loading the model's files, and the WebGPU adapter probe.

use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::Response;

use crate::model::WeightProcessing;
use crate::model::files::{GGUF_FILE, HfFiles, LoadedModel, ModelFiles, SHARD_INDEX, shard_names};
use crate::ui::AdapterInfo;
use crate::ui::download::{DownloadProgress, is_gguf_url, is_local_model};
use crate::web::download::{cached, fetch_cached};

pub(crate) fn window() -> web_sys::Window {
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
/// in the worker): the engine's clock, which both share.
pub(crate) async fn sleep(ms: i32) {
    crate::clock::sleep_ms(ms.max(0) as u32).await;
}

/// `work`'s result, or `None` when `ms` milliseconds pass first (`work` is then dropped).
pub(crate) async fn within<T>(
    ms: u32,
    work: impl std::future::IntoFuture<Output = T>,
) -> Option<T> {
    use std::task::Poll;
    let mut work = std::pin::pin!(work.into_future());
    let mut timer = std::pin::pin!(crate::clock::sleep_ms(ms));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

pub(crate) fn now_ms() -> f64 {
    crate::clock::now_seconds() * 1000.0
}

pub(crate) fn js_error(value: JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// Ask the browser for a WebGPU adapter and describe it, without committing to it.
pub(crate) async fn probe_adapter() -> Result<Option<AdapterInfo>, String> {
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

pub(crate) async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
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

/// The model's files from `base` (a directory holding the Hugging Face files, or a `.gguf` file's
/// URL; the page's own, or another site's through
/// the download cache with `progress`), checked, processed as TransformerLens would with
/// `processing`, and uploaded to `device`.
pub(crate) async fn load_model(
    device: &burn::tensor::Device,
    base: &str,
    processing: WeightProcessing,
    progress: &dyn Fn(&DownloadProgress),
) -> Result<LoadedModel, String> {
    let base = absolute_url(base)?;
    let local = is_local_model(&base);
    let fetch = |file: String| {
        let url = format!("{base}{file}");
        async move {
            if local {
                cached(&url).await.ok_or_else(|| {
                    format!(
                        "{file} of this model is not kept in this browser: the model was opened from files \
                         in another browser, or its files were freed here. Open its files again."
                    )
                })
            } else if is_same_origin(&url) {
                fetch_bytes(&url).await
            } else {
                fetch_cached(&url, &file, progress).await
            }
        }
    };
    let gguf_url = format!("{base}{GGUF_FILE}");
    let files = if is_gguf_url(&base) {
        let name = base.rsplit('/').next().unwrap_or("model.gguf").to_string();
        let bytes = if is_same_origin(&base) {
            fetch_bytes(&base).await?
        } else {
            fetch_cached(&base, &name, progress).await?
        };
        ModelFiles::Gguf(bytes.into())
    } else if let Some(bytes) = if local { cached(&gguf_url).await } else { None } {
        ModelFiles::Gguf(bytes.into())
    } else {
        let config_json = fetch("config.json".into()).await?;
        let tokenizer_json = Some(fetch("tokenizer.json".into()).await.map_err(|e| {
            format!("{e}; the page needs the model's tokenizer.json to read and write text")
        })?);
        // One model.safetensors, or the shards its index names (as transformers looks).
        let shards = match fetch("model.safetensors".into()).await {
            Ok(single) => vec![single],
            Err(no_single) => match fetch(SHARD_INDEX.into()).await {
                Ok(index) => {
                    let mut shards = Vec::new();
                    for name in shard_names(&index).map_err(|e| e.to_string())? {
                        shards.push(fetch(name).await?);
                    }
                    shards
                }
                Err(_) => return Err(no_single),
            },
        };
        ModelFiles::HuggingFace(HfFiles {
            config_json,
            tokenizer_json,
            shards,
        })
    };
    let host = files.parse().map_err(|e| e.to_string())?;
    // Safetensors bytes are not needed once parsed (a tab's memory is tight); a GGUF's packed
    // matrices are views of its bytes, which live on in them.
    drop(files);
    let host = host.process(processing).map_err(|e| e.to_string())?;
    host.upload(device).map_err(|e| e.to_string())
}

/// `url` resolved against the page's (or the worker's) own address.
pub(crate) fn absolute_url(url: &str) -> Result<String, String> {
    let here = Reflect::get(&global(), &"location".into())
        .ok()
        .and_then(|l| Reflect::get(&l, &"href".into()).ok())
        .and_then(|h| h.as_string())
        .unwrap_or_default();
    web_sys::Url::new_with_base(url, &here)
        .map(|u| u.href())
        .map_err(|_| format!("\"{url}\" is not a web address"))
}

/// Whether `url` is on the page's own site (its files are fetched as they are, not cached).
fn is_same_origin(url: &str) -> bool {
    let origin = Reflect::get(&global(), &"location".into())
        .ok()
        .and_then(|l| Reflect::get(&l, &"origin".into()).ok())
        .and_then(|o| o.as_string());
    origin.is_some_and(|o| url.starts_with(&format!("{o}/")))
}

/// Put `text` on the clipboard; false when the browser refuses (no permission, no focus).
pub(crate) async fn copy_text(text: &str) -> bool {
    let navigator = window().navigator();
    // Missing outside secure contexts (a page served over plain http from another host).
    let present = Reflect::get(&navigator, &"clipboard".into()).is_ok_and(|c| c.is_object());
    present
        && JsFuture::from(navigator.clipboard().write_text(text))
            .await
            .is_ok()
}

/// Eight random hex digits, for naming SAEs made or imported here.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 4];
    // The browser's crypto.getRandomValues; without it a clock-based id is still unique enough
    // to tell two SAEs of one page apart.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = (now_ms() as u32).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
