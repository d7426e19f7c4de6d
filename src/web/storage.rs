//! SAEs kept across reloads: IndexedDB database `saeplay`. Store `saes` holds one SAELens zip per
//! SAE under its id (the layout of version 1, so SAEs kept then still load); version 2 adds store
//! `meta`, the SAE's index entry beside it, so startup lists stored SAEs without reading a zip,
//! and `runs`, the last checkpoint of a training run, so a reload can resume it.
//! A connection lives for one operation and closes itself on `versionchange`, so another tab's
//! upgrade never waits on this one; an open that another tab blocks gives up in words.

use idb::{Database, TransactionMode};
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbOpenDbRequest};

use super::platform::{js_error, window, within};

const DATABASE: &str = "saeplay";
const SAES: &str = "saes";
const META: &str = "meta";
/// The training run in progress: its last checkpoint, under [`RUN_KEY`].
const RUNS: &str = "runs";
const RUN_KEY: &str = "current";
const VERSION: u32 = 2;
/// How long an open may wait on another tab before it is given up.
const OPEN_TIMEOUT_MS: u32 = 8_000;

/// A storage failure as a plain sentence, with the browser's own reason.
fn describe(action: &str, error: idb::Error) -> String {
    let reason = error.to_string();
    if reason.contains("QuotaExceeded") {
        return format!("browser storage is full, so it {action}");
    }
    format!("browser storage {action}: {reason}")
}

thread_local! {
    /// Closes the connection it is set on when another tab asks to upgrade.
    static CLOSE_ON_VERSION_CHANGE: Closure<dyn Fn(web_sys::Event)> =
        Closure::new(|event: web_sys::Event| {
            if let Some(target) = event.target() {
                target.unchecked_into::<IdbDatabase>().close();
            }
        });
}

/// The connection an open request gave, if it gave one.
fn opened(request: &IdbOpenDbRequest) -> Option<IdbDatabase> {
    request.result().ok().and_then(|r| r.dyn_into().ok())
}

/// Open the database, creating or upgrading its stores. (Through web-sys rather than `idb`: an
/// open given up on must still close its connection when it comes late.)
async fn open() -> Result<Database, String> {
    let unavailable = |e: JsValue| format!("browser storage is not available: {}", js_error(e));
    let factory = window()
        .indexed_db()
        .map_err(unavailable)?
        .ok_or("browser storage is not available in this browser (no IndexedDB)")?;
    let request = factory
        .open_with_u32(DATABASE, VERSION)
        .map_err(unavailable)?;
    let upgrade = Closure::once_into_js(|event: web_sys::Event| {
        let Some(db) = event
            .target()
            .and_then(|t| t.dyn_into::<IdbOpenDbRequest>().ok())
            .and_then(|r| opened(&r))
        else {
            return;
        };
        let names = db.object_store_names();
        for store in [SAES, META, RUNS] {
            if !names.contains(store) {
                db.create_object_store(store).ok();
            }
        }
    });
    request.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
    let settled = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    let db = match within(OPEN_TIMEOUT_MS, JsFuture::from(settled)).await {
        Some(Ok(_)) => opened(&request).ok_or("browser storage opened without a database")?,
        Some(Err(_)) => {
            let name = request
                .error()
                .ok()
                .flatten()
                .map(|e| e.name())
                .unwrap_or_default();
            return Err(if name == "VersionError" {
                "browser storage was upgraded by a newer saeplay page; reload this one".into()
            } else {
                format!("browser storage is not available ({name})")
            });
        }
        None => {
            // Given up: a connection that comes later is closed at once.
            let late = Closure::once_into_js(|event: web_sys::Event| {
                if let Some(db) = event
                    .target()
                    .and_then(|t| t.dyn_into::<IdbOpenDbRequest>().ok())
                    .and_then(|r| opened(&r))
                {
                    db.close();
                }
            });
            request.set_onsuccess(Some(late.unchecked_ref()));
            return Err(
                "browser storage is held by another saeplay tab that is still open at \
                        an older version; reload or close that tab"
                    .into(),
            );
        }
    };
    // Another tab's upgrade closes this connection instead of waiting for it.
    CLOSE_ON_VERSION_CHANGE
        .with(|close| db.set_onversionchange(Some(close.as_ref().unchecked_ref())));
    Ok(Database::from(db))
}

/// One transaction over every store, the connection closed after it.
async fn with_stores<T>(
    mode: TransactionMode,
    action: &str,
    work: impl AsyncFnOnce(&idb::Transaction) -> Result<T, idb::Error>,
) -> Result<T, String> {
    let db = open().await?;
    let result = async {
        let tx = db.transaction(&[SAES, META, RUNS], mode)?;
        let value = work(&tx).await?;
        let done = tx.await?;
        Ok::<_, idb::Error>((value, done.is_committed()))
    }
    .await;
    db.close();
    match result {
        Ok((value, true)) => Ok(value),
        Ok((_, false)) => Err(format!(
            "browser storage {action}: the write was cancelled (storage may be full)"
        )),
        Err(e) => Err(describe(action, e)),
    }
}

/// Keep `zip` under `key` with its index entry, replacing what was there. A copy owned by
/// JavaScript goes in: IndexedDB's structured clone of a view would copy all of wasm memory.
pub(crate) async fn put(key: &str, zip: &[u8], entry: &str) -> Result<(), String> {
    let value: JsValue = Uint8Array::from(zip).into();
    let id = JsValue::from_str(key);
    with_stores(
        TransactionMode::ReadWrite,
        "refused the write",
        async |tx| {
            tx.object_store(SAES)?.put(&value, Some(&id))?.await?;
            tx.object_store(META)?
                .put(&JsValue::from_str(entry), Some(&id))?
                .await?;
            Ok(())
        },
    )
    .await
}

/// Keep (or replace) only the index entry of `key` (for zips kept before entries existed).
pub(crate) async fn put_entry(key: &str, entry: &str) -> Result<(), String> {
    let id = JsValue::from_str(key);
    with_stores(
        TransactionMode::ReadWrite,
        "refused the write",
        async |tx| {
            tx.object_store(META)?
                .put(&JsValue::from_str(entry), Some(&id))?
                .await?;
            Ok(())
        },
    )
    .await
}

pub(crate) async fn delete(key: &str) -> Result<(), String> {
    let id = JsValue::from_str(key);
    with_stores(TransactionMode::ReadWrite, "failed", async |tx| {
        tx.object_store(SAES)?.delete(id.clone())?.await?;
        tx.object_store(META)?.delete(id)?.await?;
        Ok(())
    })
    .await
}

/// The zip kept under `key`, `None` when there is none; a value that is not bytes is an error.
pub(crate) async fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
    let id = JsValue::from_str(key);
    let value = with_stores(TransactionMode::ReadOnly, "failed", async |tx| {
        tx.object_store(SAES)?.get(id)?.await
    })
    .await?;
    match value {
        None => Ok(None),
        Some(v)
            if v.is_instance_of::<Uint8Array>() || v.is_instance_of::<js_sys::ArrayBuffer>() =>
        {
            Ok(Some(Uint8Array::new(&v).to_vec()))
        }
        Some(_) => Err("the stored value is not a file's bytes".into()),
    }
}

/// Every kept key, with its index entry when it has one.
pub(crate) async fn list() -> Result<Vec<(String, Option<String>)>, String> {
    with_stores(TransactionMode::ReadOnly, "failed", async |tx| {
        let keys = tx.object_store(SAES)?.get_all_keys(None, None)?.await?;
        let mut out = Vec::with_capacity(keys.len());
        let meta = tx.object_store(META)?;
        for key in keys {
            let Some(id) = key.as_string() else { continue };
            let entry = meta.get(key)?.await?.and_then(|v| v.as_string());
            out.push((id, entry));
        }
        Ok(out)
    })
    .await
}

/// Keep a training run's checkpoint (its record as JSON, its tensors), replacing the last.
pub(crate) async fn put_run(record: &str, tensors: &[u8]) -> Result<(), String> {
    let value = js_sys::Object::new();
    js_sys::Reflect::set(&value, &"record".into(), &record.into()).ok();
    js_sys::Reflect::set(&value, &"tensors".into(), &Uint8Array::from(tensors)).ok();
    with_stores(
        TransactionMode::ReadWrite,
        "refused the write",
        async |tx| {
            tx.object_store(RUNS)?
                .put(&value, Some(&JsValue::from_str(RUN_KEY)))?
                .await?;
            Ok(())
        },
    )
    .await
}

/// The kept training run: its record (JSON) and tensors.
pub(crate) async fn get_run() -> Result<Option<(String, Vec<u8>)>, String> {
    let value = with_stores(TransactionMode::ReadOnly, "failed", async |tx| {
        tx.object_store(RUNS)?
            .get(JsValue::from_str(RUN_KEY))?
            .await
    })
    .await?;
    let Some(value) = value else { return Ok(None) };
    let field = |k: &str| js_sys::Reflect::get(&value, &k.into()).ok();
    let record = field("record").and_then(|r| r.as_string());
    let tensors = field("tensors").filter(|t| t.is_instance_of::<Uint8Array>());
    match (record, tensors) {
        (Some(record), Some(tensors)) => Ok(Some((record, Uint8Array::new(&tensors).to_vec()))),
        _ => Err("the kept training run is damaged".into()),
    }
}

pub(crate) async fn delete_run() -> Result<(), String> {
    with_stores(TransactionMode::ReadWrite, "failed", async |tx| {
        tx.object_store(RUNS)?
            .delete(JsValue::from_str(RUN_KEY))?
            .await?;
        Ok(())
    })
    .await
}

/// The browser's own figures for this site's storage: `(usage, quota)` in bytes.
pub(crate) async fn estimate() -> Option<(f64, f64)> {
    let manager = window().navigator().storage();
    let promise = manager.estimate().ok()?;
    let estimate = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let number = |k: &str| js_sys::Reflect::get(&estimate, &k.into()).ok()?.as_f64();
    Some((number("usage")?, number("quota")?))
}

/// Ask the browser to keep this site's storage under pressure; `true` when it agreed.
pub(crate) async fn ask_persistent() -> bool {
    let manager = window().navigator().storage();
    let Ok(promise) = manager.persist() else {
        return false;
    };
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}
