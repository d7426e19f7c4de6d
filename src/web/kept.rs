//! SAEs kept in this browser: listed at startup from their index entries (a zip is read only
//! when its SAE is chosen), kept with a look at the quota first, damaged entries shown to export
//! or remove, and what one tab keeps or removes passed to the others on a BroadcastChannel.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::memory::size_text;
use crate::ui::ids;
use crate::ui::lab::{DamagedEntry, Origin, stored_slot};
use crate::web::dom::{append, clear, el};
use crate::web::{App, files, storage};

/// The channel tabs of this page tell each other about storage on.
const CHANNEL: &str = "saeplay-storage";

thread_local! {
    /// Asked the browser for persistent storage once this session.
    static ASKED_PERSISTENT: Cell<bool> = const { Cell::new(false) };
}

/// What one tab tells the others.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum StorageNews {
    Kept { id: String },
    Removed { id: String },
}

fn tell_other_tabs(news: &StorageNews) {
    if let (Ok(channel), Ok(text)) = (
        web_sys::BroadcastChannel::new(CHANNEL),
        serde_json::to_string(news),
    ) {
        channel.post_message(&JsValue::from_str(&text)).ok();
        channel.close();
    }
}

impl App {
    /// List the SAEs kept here. An entry kept with its summary costs nothing until chosen; one
    /// without (kept by an older page) is read once, alone, and its summary written beside it;
    /// one that cannot be read is listed as damaged.
    pub(crate) async fn discover_kept(self: &Rc<Self>) {
        let entries = match storage::list().await {
            Ok(entries) => entries,
            Err(e) => {
                return self.show_error(format!(
                    "Browser storage is not available, so SAEs trained here will not survive a reload: {e}"
                ));
            }
        };
        for (id, entry) in entries {
            let listed = entry
                .as_deref()
                .ok_or_else(String::new)
                .and_then(|e| stored_slot(e.as_bytes()));
            let result = match listed {
                Ok(slot) if slot.id == id => self
                    .update(|lab| lab.insert_slot(slot))
                    .map_err(|e| e.to_string()),
                _ => self.read_kept(&id).await,
            };
            if let Err(reason) = result {
                self.note_damaged(&id, reason).await;
            }
        }
        self.render_kept();
    }

    /// Read the zip kept under `id` and add its SAE, writing its summary for next time.
    async fn read_kept(self: &Rc<Self>, id: &str) -> Result<(), String> {
        let zip = storage::get(id)
            .await?
            .ok_or("it vanished from storage while the page read it")?;
        self.add_from_zip(id, &zip, Origin::Stored)
            .await
            .map_err(|e| e.to_string())?;
        let entry = self
            .lab
            .borrow()
            .slot(id)
            .map(|s| s.index_entry().to_string());
        if let Some(entry) = entry {
            storage::put_entry(id, &entry).await.ok();
        }
        Ok(())
    }

    async fn note_damaged(&self, id: &str, reason: String) {
        let bytes = storage::get(id).await.ok().flatten().map_or(0, |b| b.len());
        self.update(|lab| {
            lab.saes
                .retain(|s| !(s.id == id && s.origin == Origin::Stored));
            lab.damaged.retain(|d| d.id != id);
            lab.damaged.push(DamagedEntry {
                id: id.to_string(),
                bytes,
                reason,
            });
        });
    }

    /// A stored SAE's files, read when it is first chosen.
    pub(crate) async fn load_kept(self: &Rc<Self>, id: &str) -> Result<(), String> {
        self.set_notice(format!("Reading the SAE {id} from browser storage…"));
        let result = async {
            let zip = storage::get(id)
                .await?
                .ok_or("it is no longer in browser storage (removed in another tab?)")?;
            self.add_from_zip(id, &zip, Origin::Stored)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        self.set_notice(String::new());
        if let Err(reason) = &result {
            self.note_damaged(id, reason.clone()).await;
            self.render_kept();
            self.render_sae_picker();
        }
        result.map_err(|e| format!("The SAE {id} kept in this browser could not be read: {e}"))
    }

    /// Keep the slot `id`'s zip in this browser. Refused in words, before writing, when the
    /// browser says it will not fit; the SAE stays usable in this tab either way.
    pub(crate) async fn keep_in_browser(&self, id: &str, zip: &[u8]) -> Result<(), String> {
        if let Some((usage, quota)) = storage::estimate().await {
            let room = (quota - usage).max(0.0);
            // IndexedDB adds a little to each value; a tenth covers it.
            if zip.len() as f64 * 1.1 > room {
                return Err(format!(
                    "browser storage is full: this site uses {} of its {}, and this SAE needs {}; \
                     it stays usable in this tab (export it to keep it), or remove stored SAEs or \
                     downloaded files to make room",
                    size_text(usage as u64),
                    size_text(quota as u64),
                    size_text(zip.len() as u64)
                ));
            }
        }
        if !ASKED_PERSISTENT.replace(true) {
            storage::ask_persistent().await;
        }
        let entry = self
            .lab
            .borrow()
            .slot(id)
            .map(|s| s.index_entry().to_string())
            .ok_or("the SAE is no longer here")?;
        storage::put(id, zip, &entry)
            .await
            .map_err(|e| format!("{e}; it stays usable in this tab (export it to keep it)"))?;
        tell_other_tabs(&StorageNews::Kept { id: id.to_string() });
        self.render_kept();
        Ok(())
    }

    /// Remove `id` from this browser and tell the other tabs.
    pub(crate) async fn remove_kept(&self, id: &str) -> Result<(), String> {
        storage::delete(id).await?;
        tell_other_tabs(&StorageNews::Removed { id: id.to_string() });
        self.update(|lab| lab.damaged.retain(|d| d.id != id));
        self.render_kept();
        Ok(())
    }

    /// A damaged entry's bytes as they are, for a person to look at or mend.
    pub(crate) async fn export_damaged(&self, id: &str) {
        match storage::get(id).await {
            Ok(Some(bytes)) => files::download(
                &format!("{}.raw", id.replace(['/', '\\'], "__")),
                &bytes,
                "application/octet-stream",
            ),
            Ok(None) => self.show_error(format!("The entry {id} is no longer in browser storage.")),
            Err(e) => self.show_error(format!("The entry {id} could not be read: {e}")),
        }
    }

    pub(crate) async fn remove_damaged(&self, id: &str) {
        if let Err(e) = self.remove_kept(id).await {
            self.show_error(format!("The entry {id} could not be removed: {e}"));
        }
    }

    /// Listen to the other tabs: an SAE they keep appears here, one they remove goes.
    pub(crate) fn listen_to_other_tabs(self: &Rc<Self>) {
        let Ok(channel) = web_sys::BroadcastChannel::new(CHANNEL) else {
            return;
        };
        let app = Rc::clone(self);
        let on_message =
            Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
                let Some(news) = event
                    .data()
                    .as_string()
                    .and_then(|t| serde_json::from_str::<StorageNews>(&t).ok())
                else {
                    return;
                };
                let app = Rc::clone(&app);
                wasm_bindgen_futures::spawn_local(async move { app.hear_other_tab(news).await });
            });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        // Kept for the page's life: a closed channel hears nothing.
        std::mem::forget(channel);
    }

    async fn hear_other_tab(self: &Rc<Self>, news: StorageNews) {
        match news {
            StorageNews::Kept { id } => {
                let entry = storage::list()
                    .await
                    .ok()
                    .and_then(|all| all.into_iter().find(|(k, _)| *k == id))
                    .and_then(|(_, entry)| entry);
                let slot = entry.and_then(|e| stored_slot(e.as_bytes()).ok());
                if let Some(slot) = slot
                    && self.lab.borrow().slot(&id).is_none()
                {
                    self.update(|lab| lab.insert_slot(slot)).ok();
                    self.set_notice(format!(
                        "The SAE {id} was kept in another tab and is listed here too."
                    ));
                }
            }
            StorageNews::Removed { id } => {
                let here = self
                    .lab
                    .borrow()
                    .slot(&id)
                    .is_some_and(|s| s.origin == Origin::Stored);
                if here {
                    self.update(|lab| lab.saes.retain(|s| s.id != id));
                    if self.selected_sae().as_deref() == Some(id.as_str()) {
                        self.update_page(|state| state.location.sae = None);
                        self.update_link();
                        self.render_view();
                    }
                    self.set_notice(format!(
                        "The SAE {id} was removed from this browser in another tab."
                    ));
                }
                self.update(|lab| lab.damaged.retain(|d| d.id != id));
            }
        }
        self.render_sae_picker();
        self.render_kept();
    }

    /// Damaged entries, each with its size, reason and two buttons; and what storage holds.
    pub(crate) fn render_kept(&self) {
        if let Some(list) = self.element(ids::STORED_DAMAGED) {
            clear(&list);
            let damaged = self.lab.borrow().damaged.clone();
            for entry in &damaged {
                let row = el(&self.document, "li", "", "");
                append(
                    &row,
                    &el(
                        &self.document,
                        "span",
                        "",
                        &format!(
                            "The entry \"{}\" kept in this browser ({}) cannot be read: {}. ",
                            entry.id,
                            size_text(entry.bytes as u64),
                            entry.reason
                        ),
                    ),
                );
                for (label, attribute) in [
                    ("Export its bytes", "data-damaged-export"),
                    ("Remove it", "data-damaged-remove"),
                ] {
                    let button = el(&self.document, "button", "secondary", label);
                    button.set_attribute("type", "button").ok();
                    button.set_attribute(attribute, &entry.id).ok();
                    append(&row, &button);
                }
                append(&list, &row);
            }
            list.toggle_attribute_with_force("hidden", damaged.is_empty())
                .ok();
        }
        let app_kept = self
            .lab
            .borrow()
            .saes
            .iter()
            .filter(|s| s.origin == Origin::Stored)
            .count();
        let document = self.document.clone();
        let id = ids::STORAGE_QUOTA;
        wasm_bindgen_futures::spawn_local(async move {
            let text = match storage::estimate().await {
                Some((usage, quota)) => format!(
                    "SAEs kept here: {app_kept}. This site uses {} of the {} the browser allows.",
                    size_text(usage as u64),
                    size_text(quota as u64)
                ),
                None => format!("SAEs kept here: {app_kept}."),
            };
            if let Some(element) = document.get_element_by_id(id) {
                element.set_text_content(Some(&text));
            }
        });
    }
}
