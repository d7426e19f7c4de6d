//! The steer view: rows of interventions, default and steered text from one seed, next-token shift.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlInputElement, HtmlSelectElement};

use crate::backend::read_f32;
use crate::model::readout::probabilities;
use crate::model::{Generation, Hooks, LogitsFor, Step};
use crate::sae::steer::intervention_patch;
use crate::ui::ids;
use crate::ui::steer::{self, SHIFTS_SHOWN, SteerMode, SteerResult, SteerRow};
use crate::web::App;
use crate::web::dom::{append, bar_list, clear, el};

impl App {
    pub(crate) fn read_steer_rows(&self) {
        let Some(list) = self.element(ids::STEER_ROWS) else {
            return;
        };
        let rows = list.query_selector_all(".steer-row").ok();
        let mut out = Vec::new();
        if let Some(rows) = rows {
            for i in 0..rows.length() {
                let Some(row) = rows.item(i).and_then(|n| n.dyn_into::<Element>().ok()) else {
                    continue;
                };
                let value = |selector: &str| {
                    row.query_selector(selector)
                        .ok()
                        .flatten()
                        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
                        .map(|e| e.value())
                        .unwrap_or_default()
                };
                let mode = row
                    .query_selector("select")
                    .ok()
                    .flatten()
                    .and_then(|e| e.dyn_into::<HtmlSelectElement>().ok())
                    .map(|e| e.value())
                    .unwrap_or_default();
                out.push(SteerRow {
                    feature: value(".steer-feature"),
                    mode: SteerMode::from_name(&mode),
                    value: value(".steer-value"),
                });
            }
        }
        self.update(|lab| lab.steer_rows = out);
    }

    pub(crate) fn render_steer_rows(&self) {
        let Some(list) = self.element(ids::STEER_ROWS) else {
            return;
        };
        clear(&list);
        let d = &self.document;
        for (i, row) in self.lab.borrow().steer_rows.iter().enumerate() {
            let line = el(d, "div", "steer-row", "");
            let feature = el(d, "input", "steer-feature", "");
            feature
                .set_attribute("aria-label", &format!("feature of row {}", i + 1))
                .ok();
            feature.set_attribute("inputmode", "numeric").ok();
            let mode = el(d, "select", "steer-mode", "");
            for m in SteerMode::ALL {
                let option = el(d, "option", "", m.name());
                option.set_attribute("value", m.name()).ok();
                append(&mode, &option);
            }
            let value = el(d, "input", "steer-value", "");
            value
                .set_attribute("aria-label", &format!("strength or value of row {}", i + 1))
                .ok();
            let remove = el(d, "button", "steer-remove", "Remove");
            remove.set_attribute("type", "button").ok();
            remove.set_attribute("data-row", &i.to_string()).ok();
            append(&line, &el(d, "span", "muted", "Feature"));
            append(&line, &feature);
            append(&line, &mode);
            append(&line, &value);
            append(&line, &remove);
            append(&list, &line);
            if let Some(input) = feature.dyn_ref::<HtmlInputElement>() {
                input.set_value(&row.feature);
            }
            if let Some(select) = mode.dyn_ref::<HtmlSelectElement>() {
                select.set_value(row.mode.name());
            }
            if let Some(input) = value.dyn_ref::<HtmlInputElement>() {
                input.set_value(&row.value);
            }
        }
    }

    pub(crate) fn steering_to_link(&self) {
        let d_sae = self
            .selected_loaded()
            .map_or(usize::MAX, |l| l.sae.config.d_sae);
        let list = steer::interventions(&self.lab.borrow().steer_rows, d_sae).unwrap_or_default();
        self.update_page(|state| state.location.steer = list);
        self.update_link();
    }

    pub(crate) fn render_steer(&self) {
        self.set_text(ids::STEER_STATUS, &self.lab.borrow().steer_status);
        let lab = self.lab.borrow();
        let (Some(default), Some(steered), Some(shift)) = (
            self.element(ids::STEER_DEFAULT),
            self.element(ids::STEER_STEERED),
            self.element(ids::STEER_SHIFT),
        ) else {
            return;
        };
        clear(&shift);
        match &lab.steer_result {
            Some(result) => {
                default.set_text_content(Some(&result.default_text));
                steered.set_text_content(Some(&result.steered_text));
                let max = result.shifts.iter().map(|c| c.1.abs()).fold(0.0, f64::max);
                append(&shift, &bar_list(&self.document, &result.shifts, max));
            }
            None => {
                default.set_text_content(Some(""));
                steered.set_text_content(Some(""));
            }
        }
    }

    /// Generate default and steered text from the same seed, and the next-token shift.
    pub(crate) async fn steer(self: &Rc<Self>) {
        self.read_steer_rows();
        let Some(loaded_sae) = self.selected_loaded() else {
            self.show_error("Choose an SAE above before steering with its features.".into());
            return;
        };
        let rows = self.lab.borrow().steer_rows.clone();
        let interventions = match steer::interventions(&rows, loaded_sae.sae.config.d_sae) {
            Ok(list) => list,
            Err(message) => {
                self.show_error(message);
                return;
            }
        };
        self.update_page(|state| state.location.steer = interventions.clone());
        self.update_link();
        let config = match self.state.borrow().form.parse() {
            Ok(config) => config,
            Err(message) => {
                self.show_error(message);
                return;
            }
        };
        if let Some(b) = self.element(ids::STEER_RUN) {
            b.set_attribute("disabled", "").ok();
        }
        let result = async {
            let loaded = self.loaded()?;
            let prompt = self.state.borrow().prompt.clone();
            let ids = loaded.encode_prompt(&prompt)?.ids;
            let patch = || -> crate::Result<Hooks> {
                Ok(Hooks::none().with_patch(
                    loaded_sae.hook,
                    intervention_patch(&loaded_sae.sae, &interventions)?,
                ))
            };
            let mut texts = Vec::new();
            for (label, hooks) in [("default", Hooks::none()), ("steered", patch()?)] {
                let mut generation = Generation::new(&loaded.model, &ids, config.clone(), hooks)?;
                while let Step::Token(_) = generation.step().await? {
                    let status = format!(
                        "Generating the {label} text: {} tokens…",
                        generation.produced().len()
                    );
                    self.update(|lab| lab.steer_status = status);
                    self.set_text(ids::STEER_STATUS, &self.lab.borrow().steer_status);
                    crate::clock::yield_between_tokens().await;
                }
                texts.push(loaded.tokenizer()?.decode(generation.produced())?);
            }
            // How the next-token distribution after the prompt moves.
            let probabilities_with = |hooks: Hooks| {
                let loaded = Rc::clone(&loaded);
                let ids = ids.clone();
                async move {
                    let out = loaded
                        .model
                        .forward(&[ids], &hooks, LogitsFor::LastPosition)?;
                    Ok::<_, crate::SaeplayError>(probabilities(&read_f32(out.logits).await?))
                }
            };
            let tokenizer = loaded.tokenizer()?;
            let before = probabilities_with(Hooks::none()).await?;
            let after = probabilities_with(patch()?).await?;
            let shifts = steer::largest_shifts(&before, &after, SHIFTS_SHOWN)
                .into_iter()
                .map(|shift| {
                    (
                        format!("{:?}", tokenizer.token_text(shift.token)),
                        shift.delta(),
                        shift.describe(),
                    )
                })
                .collect();
            Ok::<_, crate::SaeplayError>(SteerResult {
                default_text: texts.remove(0),
                steered_text: texts.remove(0),
                shifts,
            })
        }
        .await;
        match result {
            Ok(r) => self.update(|lab| {
                lab.steer_status = format!("Both from seed {}, same settings.", config.seed);
                lab.steer_result = Some(r);
            }),
            Err(e) => {
                self.update(|lab| lab.steer_status = String::new());
                self.show_error(format!("Steering failed: {e}"));
            }
        }
        if let Some(b) = self.element(ids::STEER_RUN) {
            b.remove_attribute("disabled").ok();
        }
        if let Some(out) = self.element(ids::STEER_STEERED) {
            out.set_attribute("data-done", "true").ok();
        }
        self.render_steer();
    }
}
