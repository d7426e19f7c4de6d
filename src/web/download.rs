//! Downloads from other sites (the Hugging Face Hub, a model's own server): streamed with
//! progress, cancellable, and kept in the browser's Cache API so the second visit opens without
//! downloading. The page and the worker share this cache (both see `caches`), so the worker's
//! copy of a model costs no second download.

use std::cell::RefCell;

use js_sys::{Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, Cache, CacheStorage, ReadableStreamDefaultReader, RequestInit, Response,
};

use crate::ui::download::{DownloadProgress, HF_ENDPOINT};
use crate::web::platform::{js_error, now_ms};

/// The cache that keeps what was downloaded.
pub(crate) const CACHE_NAME: &str = "saeplay-downloads-v1";
/// The size of a kept file, on its cached response.
const SIZE_HEADER: &str = "x-saeplay-bytes";
/// Largest file the page can hold: wasm32 memory is 4 GiB in all.
const MAX_FILE_BYTES: u64 = 3 << 30;

thread_local! {
    /// The download in flight, so Cancel can stop it.
    static IN_FLIGHT: RefCell<Option<AbortController>> = const { RefCell::new(None) };
    /// Why the last download could not be kept, until the page says so.
    static KEEP_FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Why a download could not be kept in the cache since the last call, if it could not.
pub(crate) fn take_keep_failure() -> Option<String> {
    KEEP_FAILURE.with(|f| f.borrow_mut().take())
}

/// The Hub's address: `globalThis.SAEPLAY_HF_ENDPOINT` when a page sets it (a mirror), else
/// huggingface.co.
pub(crate) fn hf_endpoint() -> String {
    Reflect::get(&js_sys::global(), &"SAEPLAY_HF_ENDPOINT".into())
        .ok()
        .and_then(|v| v.as_string())
        .filter(|v| v.starts_with("https://") || v.starts_with("http://"))
        .unwrap_or_else(|| HF_ENDPOINT.to_string())
}

/// Stop the download in flight; its `fetch_cached` returns the cancellation as an error.
pub(crate) fn cancel_download() {
    IN_FLIGHT.with(|f| {
        if let Some(controller) = f.borrow_mut().take() {
            controller.abort();
        }
    });
}

/// The message a cancelled download returns.
pub(crate) const CANCELLED: &str = "The download was cancelled.";

async fn cache() -> Option<Cache> {
    // Missing outside secure contexts (plain http from another host) and in some private modes.
    let caches: CacheStorage = Reflect::get(&js_sys::global(), &"caches".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let cache = JsFuture::from(caches.open(CACHE_NAME)).await.ok()?;
    cache.dyn_into().ok()
}

async fn promise<T: JsCast>(p: Promise) -> Result<T, String> {
    JsFuture::from(p)
        .await
        .map_err(js_error)?
        .dyn_into::<T>()
        .map_err(|_| "the browser answered with an unexpected kind of value".to_string())
}

/// Fetch `url`, from the cache when it holds it, else from the network with `progress` after
/// each chunk; a complete download is then kept in the cache. Errors are sentences that say
/// what happened (a refusal, a missing file, a cut-off download, a cancellation).
pub(crate) async fn fetch_cached(
    url: &str,
    file: &str,
    progress: &dyn Fn(&DownloadProgress),
) -> Result<Vec<u8>, String> {
    if let Some(bytes) = cached(url).await {
        progress(&DownloadProgress {
            file: format!("{file} (kept in this browser)"),
            loaded: bytes.len() as u64,
            total: Some(bytes.len() as u64),
            elapsed_seconds: 0.0,
        });
        return Ok(bytes);
    }
    let controller = AbortController::new().map_err(js_error)?;
    IN_FLIGHT.with(|f| *f.borrow_mut() = Some(controller.clone()));
    let result = download(url, file, &controller, progress).await;
    IN_FLIGHT.with(|f| f.borrow_mut().take());
    let bytes = match result {
        Ok(done) => done,
        Err(_) if controller.signal().aborted() => return Err(CANCELLED.into()),
        Err(message) => return Err(message),
    };
    // Kept only once complete; a full disk or a refusal only costs the next visit a download.
    if let Err(why) = keep(url, &bytes).await {
        KEEP_FAILURE.with(|f| {
            *f.borrow_mut() = Some(format!(
                "{file} could not be kept in this browser ({why}; a private window keeps little), \
                 so the next visit downloads it again"
            ))
        });
    }
    Ok(bytes)
}

/// The bytes the cache keeps for `url`, if any.
pub(crate) async fn cached(url: &str) -> Option<Vec<u8>> {
    let cache = cache().await?;
    let hit = JsFuture::from(cache.match_with_str(url)).await.ok()?;
    let response = hit.dyn_into::<Response>().ok()?;
    let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}

/// Keep `bytes` in the cache under `url`.
pub(crate) async fn keep(url: &str, bytes: &[u8]) -> Result<(), String> {
    let cache = cache()
        .await
        .ok_or("this browser offers no cache storage to this page")?;
    let init = web_sys::ResponseInit::new();
    let headers = web_sys::Headers::new().map_err(js_error)?;
    headers
        .set(SIZE_HEADER, &bytes.len().to_string())
        .map_err(js_error)?;
    init.set_headers(&headers);
    // Copied into JavaScript's memory, not the tab's wasm memory.
    let copy = Uint8Array::from(bytes);
    let stored =
        Response::new_with_opt_buffer_source_and_init(Some(&copy), &init).map_err(js_error)?;
    JsFuture::from(cache.put_with_str(url, &stored))
        .await
        .map(|_| ())
        .map_err(|e| format!("the browser would not keep it: {}", js_error(e)))
}

async fn download(
    url: &str,
    file: &str,
    controller: &AbortController,
    progress: &dyn Fn(&DownloadProgress),
) -> Result<Vec<u8>, String> {
    let init = RequestInit::new();
    init.set_signal(Some(&controller.signal()));
    let fetch: js_sys::Function = Reflect::get(&js_sys::global(), &"fetch".into())
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| "this browser has no fetch".to_string())?;
    let started = now_ms();
    let call = fetch
        .call2(&js_sys::global(), &JsValue::from_str(url), &init)
        .map_err(js_error)?;
    let response: Response = promise(call.unchecked_into()).await.map_err(|e| {
        format!(
            "could not reach {url}: {e} (the server may be down, or it refuses pages from other sites: CORS)"
        )
    })?;
    if !response.ok() {
        let status = response.status();
        let why = match status {
            401 | 403 => "it needs a login or refuses access (a gated or private repository?)",
            404 => "there is no such file",
            429 => "too many requests; try again later",
            _ => "the server reported an error",
        };
        return Err(format!(
            "could not fetch {url}: the server answered {status}, {why}"
        ));
    }
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(total) = total
        && total > MAX_FILE_BYTES
    {
        return Err(format!(
            "{file} is {}, more than the {} a browser tab can hold",
            crate::ui::download::bytes(total),
            crate::ui::download::bytes(MAX_FILE_BYTES)
        ));
    }
    let report = |loaded: u64| {
        progress(&DownloadProgress {
            file: file.to_string(),
            loaded,
            total,
            elapsed_seconds: (now_ms() - started) / 1000.0,
        })
    };
    let Some(body) = response.body() else {
        let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?)
            .await
            .map_err(js_error)?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        report(bytes.len() as u64);
        return Ok(bytes);
    };
    let reader: ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|_| "the download cannot be read as a stream".to_string())?;
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut last_report = 0.0;
    loop {
        let chunk: Object = promise(reader.read()).await.map_err(|e| {
            format!(
                "the download of {file} broke off after {}: {e}",
                crate::ui::download::bytes(bytes.len() as u64)
            )
        })?;
        let done = Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| "the download sent something that is not bytes".to_string())?;
        let start = bytes.len();
        if start as u64 + u64::from(value.length()) > MAX_FILE_BYTES {
            controller.abort();
            return Err(format!("{file} is larger than a browser tab can hold"));
        }
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        if now_ms() - last_report > 100.0 {
            last_report = now_ms();
            report(bytes.len() as u64);
        }
    }
    report(bytes.len() as u64);
    if let Some(total) = total
        && bytes.len() as u64 != total
        && response
            .headers()
            .get("content-encoding")
            .ok()
            .flatten()
            .is_none()
    {
        return Err(format!(
            "the download of {file} was cut off: {} of {} arrived",
            crate::ui::download::bytes(bytes.len() as u64),
            crate::ui::download::bytes(total)
        ));
    }
    Ok(bytes)
}

/// How many files the download cache holds and their size in bytes.
pub(crate) async fn cache_usage() -> Option<(usize, u64)> {
    let cache = cache().await?;
    let keys: js_sys::Array = promise(cache.keys()).await.ok()?;
    let mut total = 0u64;
    for request in keys.iter() {
        let request: web_sys::Request = request.dyn_into().ok()?;
        if let Ok(hit) = JsFuture::from(cache.match_with_request(&request)).await
            && let Ok(response) = hit.dyn_into::<Response>()
        {
            total += response
                .headers()
                .get(SIZE_HEADER)
                .ok()
                .flatten()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some((keys.length() as usize, total))
}

/// Forget everything downloaded.
pub(crate) async fn clear_cache() -> Result<(), String> {
    let caches: CacheStorage = Reflect::get(&js_sys::global(), &"caches".into())
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| "this browser keeps no download cache here".to_string())?;
    JsFuture::from(caches.delete(CACHE_NAME))
        .await
        .map(|_| ())
        .map_err(js_error)
}
