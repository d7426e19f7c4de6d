//! The few browser APIs that are far shorter in JavaScript than through web-sys: IndexedDB (SAEs
//! kept across reloads), downloads, reading picked or dropped files, and the clipboard.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
function db() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('saeplay', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('saes');
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(new Error('browser storage is not available: ' + open.error));
  });
}
function request(mode, work) {
  return db().then((d) => new Promise((resolve, reject) => {
    const tx = d.transaction('saes', mode);
    const req = work(tx.objectStore('saes'));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(new Error('browser storage failed: ' + tx.error));
    tx.onabort = () => reject(new Error('browser storage refused the write: ' + tx.error));
  }));
}
// `bytes` is a view into wasm memory: copy it now, before the database opens (memory may grow
// or be reused meanwhile), and so that IndexedDB clones the SAE, not the whole wasm memory.
export function store_put(key, bytes) { const copy = bytes.slice(); return request('readwrite', (s) => s.put(copy, key)); }
export function store_delete(key) { return request('readwrite', (s) => s.delete(key)); }
export function store_all() {
  return db().then((d) => new Promise((resolve, reject) => {
    const out = [];
    const tx = d.transaction('saes', 'readonly');
    const cursor = tx.objectStore('saes').openCursor();
    cursor.onsuccess = () => {
      const c = cursor.result;
      if (c) { out.push([String(c.key), new Uint8Array(c.value)]); c.continue(); }
    };
    tx.oncomplete = () => resolve(out);
    tx.onerror = () => reject(new Error('browser storage failed: ' + tx.error));
  }));
}
export function download(name, bytes) {
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/zip' }));
  const a = document.createElement('a');
  a.href = url; a.download = name; document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
function readList(files) {
  return Promise.all([...files].map((f) => f.arrayBuffer().then((b) => [f.name, new Uint8Array(b)])));
}
export function read_input_files(input) { return readList(input.files || []); }
export function watch_drops(target, callback) {
  target.addEventListener('dragover', (e) => { e.preventDefault(); target.classList.add('dragging'); });
  target.addEventListener('dragleave', () => target.classList.remove('dragging'));
  target.addEventListener('drop', (e) => {
    e.preventDefault(); target.classList.remove('dragging');
    const files = e.dataTransfer ? e.dataTransfer.files : [];
    if (files.length) readList(files).then(callback, (err) => callback(String(err)));
  });
}
export function copy_text(text) {
  return navigator.clipboard && navigator.clipboard.writeText
    ? navigator.clipboard.writeText(text).then(() => true, () => false)
    : Promise.resolve(false);
}
export function random_id() {
  const a = new Uint8Array(4); crypto.getRandomValues(a);
  return [...a].map((b) => b.toString(16).padStart(2, '0')).join('');
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    pub fn store_put(key: &str, bytes: &[u8]) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    pub fn store_delete(key: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    pub fn store_all() -> Result<js_sys::Promise, JsValue>;
    pub fn download(name: &str, bytes: &[u8]);
    pub fn read_input_files(input: &web_sys::Element) -> js_sys::Promise;
    pub fn watch_drops(target: &web_sys::Element, callback: &js_sys::Function);
    pub fn copy_text(text: &str) -> js_sys::Promise;
    pub fn random_id() -> String;
}

/// `[[name, Uint8Array], ...]` into Rust.
pub fn named_files(value: &JsValue) -> Vec<(String, Vec<u8>)> {
    js_sys::Array::from(value)
        .iter()
        .filter_map(|pair| {
            let pair = js_sys::Array::from(&pair);
            let name = pair.get(0).as_string()?;
            let bytes = js_sys::Uint8Array::new(&pair.get(1)).to_vec();
            Some((name, bytes))
        })
        .collect()
}
