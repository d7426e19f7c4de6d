//! The SAE bar: the picker over every SAE the page holds, its status, the notice line.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{Element, HtmlElement, HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};

use crate::backend::{BackendKind, read_f32};
use crate::model::readout::{probabilities, top_predictions};
use crate::model::{Generation, HookPoint, Hooks, LogitsFor, Step};
use crate::sae::features::{FeatureData, LensToken};
use crate::sae::pipeline::{Reporter, TrainOptions, feature_job, train_sae};
use crate::sae::saelens::SaeFiles;
use crate::sae::steer::intervention_patch;
use crate::sae::train::{Control, Progress, SaeTrainingConfig};
use crate::ui::chart::{self, Frame};
use crate::ui::feature_list::{self, FeatureList, SortKey};
use crate::ui::heat::{HEAT_PER_TOKEN, HEAT_ROWS, Heat};
use crate::ui::lab::{FeatureIndex, LoadedSae, Origin, SaeSlot, Summary, TrainRun, metric_text};
use crate::ui::steer::{self, SHIFTS_SHOWN, SteerMode, SteerResult, SteerRow};
use crate::ui::train_form::{CorpusKind, TrainForm};
use crate::ui::{BackendDecision, SaeRef, TokenView, View, ids};
use crate::web::dom::{
    append, bar_list, clear, el, histogram, line_chart, listen, shaded_tokens, svg_el,
};
use crate::web::platform::{fetch_bytes, js_error, now_ms, sleep, window};
use crate::web::{App, BUILTIN_MODEL, js};

impl App {
    pub(crate) fn render_sae_picker(&self) {
        let Some(select) = select_of(self, "sae-select") else {
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
        self.set_text("sae-status", &status);
        if let Some(b) = self.element("sae-forget") {
            b.toggle_attribute_with_force(
                "hidden",
                lab.slot(&chosen).is_none_or(|s| s.origin != Origin::Stored),
            )
            .ok();
        }
    }

    pub(crate) fn render_notice(&self) {
        let notice = self.lab.borrow().notice.clone();
        self.set_text("notice", &notice);
        if let Some(n) = self.element("notice") {
            n.toggle_attribute_with_force("hidden", notice.is_empty())
                .ok();
        }
    }
}
