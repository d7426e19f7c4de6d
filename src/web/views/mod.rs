//! The views, one file each: each reads the state and draws it; `after_view_change` brings
//! what a newly shown view needs (the feature scan, a card).

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
use crate::ui::train_form::{CorpusKind, TrainForm};
use crate::ui::{BackendDecision, SaeRef, TokenView, View, ids};
use crate::web::dom::{
    append, bar_list, clear, el, histogram, line_chart, listen, shaded_tokens, svg_el,
};
use crate::web::platform::{fetch_bytes, js_error, now_ms, sleep, window};
use crate::web::{App, BUILTIN_MODEL, js};

mod evaluate;
mod features;
mod heatmap;
mod prompt;
mod sae_bar;
mod steer;
mod train;

impl App {
    pub(crate) async fn after_view_change(self: &Rc<Self>) {
        let view = self.state.borrow().location.view.unwrap_or_default();
        match view {
            View::Features => {
                self.ensure_features().await;
                self.render_features();
                self.ensure_card().await;
            }
            View::Evaluate => self.render_evaluate(),
            View::Steer => self.render_steer(),
            View::Train => self.render_train(),
            View::Prompt => self.render_heatmap(),
        }
    }

    /// Show the current view and mark its tab.
    pub(crate) fn render_view(&self) {
        let view = self.state.borrow().location.view.unwrap_or_default();
        for v in View::ALL {
            if let Some(section) = self.element(&ids::section(v)) {
                section
                    .toggle_attribute_with_force("hidden", v != view)
                    .ok();
            }
            if let Some(tab) = self.element(&ids::tab(v)) {
                tab.set_attribute("aria-selected", if v == view { "true" } else { "false" })
                    .ok();
            }
        }
        if let Some(body) = self.document.body() {
            body.set_attribute("data-view", view.name()).ok();
        }
    }
}
