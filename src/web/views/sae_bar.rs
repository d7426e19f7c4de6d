//! The SAE bar: the picker over every SAE the page holds, its status, the notice line.

use crate::ui::ids;
use crate::ui::lab::Origin;
use crate::web::dom::{append, clear, el};
use crate::web::{App, select_of};

impl App {
    pub(crate) fn render_sae_picker(&self) {
        let Some(select) = select_of(self, ids::SAE_SELECT) else {
            return;
        };
        let chosen = self.selected_sae().unwrap_or_default();
        clear(&select);
        let none = el(&self.document, "option", "", "(no SAE)");
        none.set_attribute("value", "").ok();
        append(&select, &none);
        let lab = self.lab.borrow();
        for slot in &lab.saes {
            let option = el(&self.document, "option", "", &slot.label);
            option.set_attribute("value", &slot.id).ok();
            append(&select, &option);
        }
        select.set_value(&chosen);
        let status = match lab.slot(&chosen) {
            Some(slot) if slot.loaded.is_some() => format!(
                "{} at {}, {} features{}",
                slot.architecture,
                slot.hook_name,
                slot.d_sae,
                if slot.origin == Origin::Stored {
                    ", kept in this browser"
                } else {
                    ""
                }
            ),
            Some(_) => "loading…".into(),
            None => String::new(),
        };
        self.set_text(ids::SAE_STATUS, &status);
        if let Some(b) = self.element(ids::SAE_FORGET) {
            b.toggle_attribute_with_force(
                "hidden",
                lab.slot(&chosen).is_none_or(|s| s.origin != Origin::Stored),
            )
            .ok();
        }
    }

    pub(crate) fn render_notice(&self) {
        let notice = self.lab.borrow().notice.clone();
        self.set_text(ids::NOTICE, &notice);
        if let Some(n) = self.element(ids::NOTICE) {
            n.toggle_attribute_with_force("hidden", notice.is_empty())
                .ok();
        }
    }
}
