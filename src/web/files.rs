//! Files in and out of the page: reading picked or dropped files (gloo-file), watching drops
//! (gloo-events), and downloads through an object URL.

use std::rc::Rc;

use gloo_events::{EventListener, EventListenerOptions};
use gloo_file::{Blob, File, FileList, ObjectUrl};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DragEvent, Element, HtmlInputElement};

use crate::web::platform::sleep;

/// A file's name and bytes.
pub(crate) type NamedFile = (String, Vec<u8>);

async fn read_all(files: FileList) -> Result<Vec<NamedFile>, String> {
    let mut out = Vec::with_capacity(files.len());
    for file in files.iter() {
        let bytes = gloo_file::futures::read_as_bytes(file)
            .await
            .map_err(|e| format!("{} could not be read: {e}", file.name()))?;
        out.push((file.name(), bytes));
    }
    Ok(out)
}

/// The files picked in an `<input type="file">` (none when it is not one).
pub(crate) async fn read_input_files(input: &Element) -> Result<Vec<NamedFile>, String> {
    let Some(list) = input
        .dyn_ref::<HtmlInputElement>()
        .and_then(HtmlInputElement::files)
    else {
        return Ok(Vec::new());
    };
    read_all(FileList::from(list)).await
}

/// Files dropped on `target` go to `on_files` (or the reason they could not be read); the
/// target carries the class `dragging` while something is held over it.
pub(crate) fn watch_drops(
    target: &Element,
    on_files: impl Fn(Result<Vec<NamedFile>, String>) + 'static,
) {
    // preventDefault on dragover and drop is what makes the page a drop target at all.
    let active = EventListenerOptions::enable_prevent_default();
    let over = target.clone();
    EventListener::new_with_options(target, "dragover", active, move |event| {
        event.prevent_default();
        over.class_list().add_1("dragging").ok();
    })
    .forget();
    let left = target.clone();
    EventListener::new(target, "dragleave", move |_| {
        left.class_list().remove_1("dragging").ok();
    })
    .forget();
    let dropped = target.clone();
    let on_files = Rc::new(on_files);
    EventListener::new_with_options(target, "drop", active, move |event| {
        event.prevent_default();
        dropped.class_list().remove_1("dragging").ok();
        let list = event
            .dyn_ref::<DragEvent>()
            .and_then(DragEvent::data_transfer)
            .and_then(|transfer| transfer.files());
        let Some(list) = list.filter(|l| l.length() > 0) else {
            return;
        };
        let on_files = Rc::clone(&on_files);
        spawn_local(async move { on_files(read_all(FileList::from(list)).await) });
    })
    .forget();
}

/// Offer `bytes` as a download named `name`.
pub(crate) fn download(name: &str, bytes: &[u8], mime_type: &str) {
    let file = File::new_with_options(name, bytes, Some(mime_type), None);
    let url = ObjectUrl::from(Blob::from(file));
    let document = crate::web::platform::window()
        .document()
        .expect("a page has a document");
    let Ok(link) = document.create_element("a") else {
        return;
    };
    link.set_attribute("href", &url).ok();
    link.set_attribute("download", name).ok();
    if let (Some(body), Some(html)) = (document.body(), link.dyn_ref::<web_sys::HtmlElement>()) {
        body.append_child(&link).ok();
        html.click();
        link.remove();
    }
    // The browser reads the URL after this call returns: revoke it (drop) a minute later.
    spawn_local(async move {
        sleep(60_000).await;
        drop(url);
    });
}
