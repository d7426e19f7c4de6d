//! The link: keeping the address bar in step with the view, applying a link after the model
//! loads, and asking before anything a link names is fetched from elsewhere.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::HtmlInputElement;

use crate::ui::ids;
use crate::ui::steer::SteerRow;
use crate::ui::train_form::{CorpusKind, TrainForm};
use crate::ui::{SaeRef, View};
use crate::web::App;
use crate::web::platform::{sleep, window};

impl App {
    pub(crate) fn update_link(&self) {
        let fragment = self.state.borrow().fragment(self.forced_backend);
        let url = if fragment.is_empty() {
            " ".to_string()
        } else {
            format!("#{fragment}")
        };
        if let Ok(history) = window().history() {
            history
                .replace_state_with_url(&JsValue::NULL, "", Some(url.trim()))
                .ok();
        }
        if let Some(input) = self
            .element(ids::SHARE_LINK)
            .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
        {
            input.set_value(&window().location().href().unwrap_or_default());
        }
    }

    /// After the model loads: apply what the link asked for (SAE, recipe, feature, steering).
    pub(crate) async fn apply_link(self: &Rc<Self>) {
        let location = self.state.borrow().location.clone();
        // Only a recipe in the link fills the form: what the person typed since loading stays.
        if let Some(recipe) = &location.recipe
            && let Ok(form) = TrainForm::from_recipe(recipe)
        {
            self.update(|lab| lab.form = form);
            self.write_train_form();
        }
        let rows = location.steer.iter().map(SteerRow::of).collect();
        self.update(|lab| lab.steer_rows = rows);
        self.render_steer_rows();
        match location.sae.clone() {
            Some(SaeRef::Id(id)) => {
                if self.lab.borrow().slot(&id).is_some() {
                    let feature = location.feature;
                    self.choose_sae(id).await;
                    if let Some(f) = feature {
                        self.update_page(|state| state.location.feature = Some(f));
                        self.update_link();
                        self.render_card();
                        self.after_view_change().await;
                    }
                } else if location.recipe.is_some() {
                    let text_corpus = self.lab.borrow().form.corpus == CorpusKind::Text;
                    self.set_notice(format!(
                        "This link names the SAE \"{id}\", which was trained in another browser tab and is not kept in this browser. \
                         You can train it yourself from the recipe the link carries: the Train view is filled in with it, press Train.{} \
                         Or, if you have its exported file, import it with \"Import SAE\".",
                        if text_corpus {
                            " It was trained on a text the link cannot carry: paste or upload that text first."
                        } else {
                            ""
                        }
                    ));
                    self.update_page(|state| state.location.view = Some(View::Train));
                    self.render_view();
                    self.render_train();
                } else {
                    self.set_notice(format!(
                        "This link names the SAE \"{id}\", which this page does not have and the link carries no recipe for. \
                         Import its file with \"Import SAE\", or choose another SAE."
                    ));
                    self.update_page(|state| state.location.sae = None);
                    self.update_link();
                }
            }
            Some(SaeRef::Url(url)) => {
                if self
                    .ask_consent(&format!(
                        "This link asks to fetch an SAE from {}. Fetch it?",
                        crate::ui::download::shown_url(&url)
                    ))
                    .await
                {
                    self.fetch_remote_sae(url).await;
                } else {
                    self.update_page(|state| state.location.sae = None);
                    self.update_link();
                    self.set_notice("The SAE named by the link was not fetched.".into());
                }
            }
            Some(SaeRef::Release(spec)) => {
                let agreed = self.sae_consented.get()
                    || self
                        .ask_consent(&format!(
                            "This link opens the published SAE {spec}. Fetch it from {}?",
                            crate::sae::releases::PublishedSae::find(&spec)
                                .map(|p| crate::ui::download::shown_url(
                                    &p.folder_url(&crate::web::download::hf_endpoint())
                                ))
                                .unwrap_or_default()
                        ))
                        .await;
                if agreed {
                    let feature = location.feature;
                    self.fetch_published_sae(spec).await;
                    if let Some(f) = feature {
                        self.update_page(|state| state.location.feature = Some(f));
                        self.update_link();
                        self.render_card();
                        self.after_view_change().await;
                    }
                } else {
                    self.update_page(|state| state.location.sae = None);
                    self.update_link();
                    self.set_notice("The SAE named by the link was not fetched.".into());
                }
            }
            None => self.after_view_change().await,
        }
    }

    /// Show a yes/no question and wait for the answer.
    pub(crate) async fn ask_consent(self: &Rc<Self>, question: &str) -> bool {
        self.consent.set(None);
        self.set_text(ids::CONSENT_TEXT, question);
        if let Some(c) = self.element(ids::CONSENT) {
            c.remove_attribute("hidden").ok();
        }
        let answer = loop {
            if let Some(answer) = self.consent.get() {
                break answer;
            }
            sleep(100).await;
        };
        if let Some(c) = self.element(ids::CONSENT) {
            c.set_attribute("hidden", "").ok();
        }
        answer
    }
}
