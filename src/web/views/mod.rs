//! The views, one file each: each reads the state and draws it; `after_view_change` brings
//! what a newly shown view needs (the feature scan, a card).

use std::rc::Rc;

use crate::ui::{View, ids};
use crate::web::App;

mod circuits;
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
            View::Circuits => self.enter_circuits().await,
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
