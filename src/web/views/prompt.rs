//! The prompt view: tokens, next-token predictions, and generation.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::HtmlElement;

use crate::backend::{BackendKind, read_f32};
use crate::model::readout::top_predictions;
use crate::model::{Generation, Hooks, LogitsFor, Step};
use crate::ui::ids;
use crate::ui::{BackendDecision, TokenView};
use crate::web::App;
use crate::web::platform::now_ms;

const PREDICTIONS_SHOWN: usize = 10;

impl App {
    /// Tokenise the prompt and show the next-token predictions.
    pub(crate) async fn analyse(self: &Rc<Self>) {
        let Some(loaded) = self.model.borrow().clone() else {
            return;
        };
        let prompt = self.state.borrow().prompt.clone();
        // With an SAE chosen, the same forward captures its hook for the heatmap.
        let sae_hook = self.selected_loaded().map(|s| s.hook);
        let result = async {
            let encoded = loaded.encode_prompt(&prompt).map_err(|e| e.to_string())?;
            let hooks = match sae_hook {
                Some(hook) => Hooks::capture([hook]),
                None => Hooks::none(),
            };
            let output = loaded
                .model
                .forward(
                    std::slice::from_ref(&encoded.ids),
                    &hooks,
                    LogitsFor::LastPosition,
                )
                .map_err(|e| e.to_string())?;
            let captured = sae_hook.and_then(|hook| output.activation(hook).cloned());
            let logits = read_f32(output.logits).await.map_err(|e| e.to_string())?;
            let tokens: Vec<TokenView> = encoded
                .ids
                .iter()
                .zip(encoded.pieces(&prompt))
                .map(|(&id, piece)| TokenView {
                    id,
                    text: piece.to_string(),
                })
                .collect();
            Ok::<_, String>((
                tokens,
                top_predictions(&logits, PREDICTIONS_SHOWN),
                captured,
            ))
        }
        .await;
        if self.state.borrow().prompt != prompt {
            return; // the person typed on; a newer analysis follows
        }
        match result {
            Ok((tokens, predictions, captured)) => {
                let texts: Vec<String> = tokens.iter().map(|t| t.text.clone()).collect();
                self.update_page(|state| {
                    state.analysed(tokens, &predictions, |id| match loaded.tokenizer() {
                        Ok(tokenizer) => tokenizer.token_text(id),
                        Err(_) => format!("#{id}"),
                    })
                });
                if let Some(activation) = captured
                    && let Err(e) = self.compute_heat(activation, texts).await
                {
                    self.show_error(format!("The SAE could not run on the prompt: {e}"));
                }
            }
            Err(message) => self.update_page(|state| state.analysis_failed(message)),
        }
        self.render_heatmap();
    }

    pub(crate) async fn generate(self: &Rc<Self>) {
        let Some(loaded) = self.model.borrow().clone() else {
            return;
        };
        let Some(config) = self.update_page(|state| state.start_generation()) else {
            self.render();
            return;
        };
        self.render();
        let ticket = self.generation_ticket.get();
        let prompt = self.state.borrow().prompt.clone();
        let started = now_ms();
        let result = async {
            let ids = loaded
                .encode_prompt(&prompt)
                .map_err(|e| e.to_string())?
                .ids;
            let mut generation = Generation::new(&loaded.model, &ids, config, Hooks::none())
                .map_err(|e| e.to_string())?;
            loop {
                if self.generation_ticket.get() != ticket {
                    return Ok(None);
                }
                match generation.step().await.map_err(|e| e.to_string())? {
                    Step::Token(_) => {
                        let text = loaded
                            .tokenizer()
                            .and_then(|tokenizer| tokenizer.decode(generation.produced()))
                            .map_err(|e| e.to_string())?;
                        let produced = generation.produced().len();
                        self.update_page(|state| state.generated(text, produced));
                        self.render_generation();
                        crate::clock::yield_between_tokens().await; // let the page handle input between tokens
                    }
                    Step::Done(reason) => return Ok(Some((reason, generation.produced().len()))),
                }
            }
        }
        .await;
        let seconds = (now_ms() - started) / 1000.0;
        self.update_page(|state| match result {
            Ok(Some((reason, tokens))) => state.generation_finished(Ok((reason, tokens, seconds))),
            Ok(None) => state.generation_cancelled(),
            Err(message) => state.generation_finished(Err(message)),
        });
        self.render();
    }

    pub(crate) fn render_generation(&self) {
        let state = self.state.borrow();
        self.set_text(ids::OUTPUT, &state.output);
        if let Some(output) = self.element(ids::OUTPUT) {
            if state.output_done {
                output.set_attribute("data-done", "true").ok();
            } else {
                output.remove_attribute("data-done").ok();
            }
        }
        self.set_text(ids::GENERATION_STATUS, &state.generation_status);
        if let Some(button) = self.element(ids::GENERATE) {
            button
                .toggle_attribute_with_force("disabled", state.generating)
                .ok();
        }
        if let Some(button) = self.element(ids::STOP) {
            button
                .toggle_attribute_with_force("disabled", !state.generating)
                .ok();
        }
    }

    /// Draw the whole state. Every string is set as text, never parsed as markup.
    pub(crate) fn render(&self) {
        let state = self.state.borrow();
        if let Some(body) = self.document.body() {
            body.dataset().set("state", state.phase.name()).ok();
        }
        self.set_text(ids::STATUS, &state.status);
        match &state.backend {
            Some(BackendDecision {
                kind,
                label,
                reason,
            }) => {
                self.set_text(ids::BACKEND, label);
                self.set_text(ids::BACKEND_REASON, reason);
                if let Some(element) = self.element(ids::BACKEND) {
                    let name = if *kind == BackendKind::Wgpu {
                        "webgpu"
                    } else {
                        "cpu"
                    };
                    element.set_attribute("data-backend", name).ok();
                }
            }
            None => self.set_text(ids::BACKEND, "choosing…"),
        }
        if let Some(list) = self.element(ids::TOKENS) {
            list.set_text_content(None);
            for (index, token) in state.tokens.iter().enumerate() {
                if let Ok(span) = self.document.create_element("span") {
                    span.set_class_name("token");
                    span.set_attribute("data-id", &token.id.to_string()).ok();
                    span.set_attribute("data-token", &index.to_string()).ok();
                    span.set_attribute("title", &format!("token {}", token.id))
                        .ok();
                    span.set_text_content(Some(&token.text));
                    list.append_child(&span).ok();
                }
            }
        }
        if let Some(list) = self.element(ids::PREDICTIONS) {
            list.set_text_content(None);
            for prediction in &state.predictions {
                let Ok(item) = self.document.create_element("li") else {
                    continue;
                };
                item.set_class_name("prediction");
                item.set_attribute("data-id", &prediction.id.to_string())
                    .ok();
                item.set_attribute("data-prob", &prediction.probability.to_string())
                    .ok();
                let bar = self.document.create_element("span").ok();
                if let Some(bar) = bar.and_then(|b| b.dyn_into::<HtmlElement>().ok()) {
                    bar.set_class_name("bar");
                    bar.style()
                        .set_property("width", &format!("{:.1}%", prediction.probability * 100.0))
                        .ok();
                    item.append_child(&bar).ok();
                }
                if let Ok(label) = self.document.create_element("span") {
                    label.set_class_name("label");
                    label.set_text_content(Some(&format!("{:?}", prediction.text)));
                    item.append_child(&label).ok();
                }
                if let Ok(value) = self.document.create_element("span") {
                    value.set_class_name("prob");
                    value
                        .set_text_content(Some(&format!("{:.1}%", prediction.probability * 100.0)));
                    item.append_child(&value).ok();
                }
                list.append_child(&item).ok();
            }
        }
        drop(state);
        self.render_errors();
        self.render_generation();
    }

    pub(crate) fn render_errors(&self) {
        let state = self.state.borrow();
        let message = state.errors.join("\n");
        self.set_text(ids::ERROR_TEXT, &message);
        if let Some(error) = self.element(ids::ERROR) {
            error
                .toggle_attribute_with_force("hidden", state.errors.is_empty())
                .ok();
        }
    }
}
