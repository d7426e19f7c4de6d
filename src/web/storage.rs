//! SAEs kept across reloads: IndexedDB (through rexie), database `saeplay`, store `saes`, one
//! zip per SAE under its id. The layout is the one earlier versions of the page wrote, so SAEs
//! kept by them still load.

use js_sys::Uint8Array;
use rexie::{ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::JsValue;

const DATABASE: &str = "saeplay";
const STORE: &str = "saes";

/// A storage failure as a plain sentence, with the browser's own reason when it gave one.
fn describe(action: &str, error: rexie::Error) -> String {
    let reason = match &error {
        rexie::Error::IdbError(inner) => inner.to_string(),
        other => other.to_string(),
    };
    format!("browser storage {action}: {reason}")
}

async fn open() -> Result<Rexie, String> {
    Rexie::builder(DATABASE)
        .version(1)
        .add_object_store(ObjectStore::new(STORE))
        .build()
        .await
        .map_err(|e| describe("is not available", e))
}

/// Keep `bytes` under `key`, replacing what was there.
pub(crate) async fn put(key: &str, bytes: &[u8]) -> Result<(), String> {
    let db = open().await?;
    let result = async {
        let tx = db.transaction(&[STORE], TransactionMode::ReadWrite)?;
        // A copy owned by JavaScript: IndexedDB clones it, not a view of the wasm memory.
        let value: JsValue = Uint8Array::from(bytes).into();
        tx.store(STORE)?
            .put(&value, Some(&JsValue::from_str(key)))
            .await?;
        tx.done().await
    }
    .await;
    db.close();
    match result {
        Ok(done) if done.is_committed() => Ok(()),
        Ok(_) => Err("browser storage refused the write (the transaction was aborted)".into()),
        Err(e) => Err(describe("refused the write", e)),
    }
}

pub(crate) async fn delete(key: &str) -> Result<(), String> {
    let db = open().await?;
    let result = async {
        let tx = db.transaction(&[STORE], TransactionMode::ReadWrite)?;
        tx.store(STORE)?.delete(JsValue::from_str(key)).await?;
        tx.done().await
    }
    .await;
    db.close();
    result.map(|_| ()).map_err(|e| describe("failed", e))
}

/// Every kept entry as `(key, bytes)`.
pub(crate) async fn all() -> Result<Vec<(String, Vec<u8>)>, String> {
    let db = open().await?;
    let result = async {
        let tx = db.transaction(&[STORE], TransactionMode::ReadOnly)?;
        let entries = tx.store(STORE)?.scan(None, None, None, None).await?;
        tx.done().await?;
        Ok::<_, rexie::Error>(entries)
    }
    .await;
    db.close();
    let entries = result.map_err(|e| describe("failed", e))?;
    Ok(entries
        .into_iter()
        .filter_map(|(key, value)| Some((key.as_string()?, Uint8Array::new(&value).to_vec())))
        .collect())
}
