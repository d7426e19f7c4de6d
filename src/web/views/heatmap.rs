//! The prompt view's heatmap: the chosen SAE's strongest features on each token.

use std::rc::Rc;

use crate::backend::read_f32;
use crate::ui::chart::{self};
use crate::ui::heat::{HEAT_PER_TOKEN, HEAT_ROWS, Heat};
use crate::ui::ids;
use crate::web::App;
use crate::web::dom::{append, clear, el};

impl App {
    /// The chosen SAE's top features on each token of the prompt, from a captured activation.
    pub(crate) async fn compute_heat(
        self: &Rc<Self>,
        activation: burn::tensor::Tensor<3>,
        tokens: Vec<String>,
    ) -> crate::Result<()> {
        let Some(id) = self.selected_sae() else {
            return Ok(());
        };
        let Some(loaded) = self.selected_loaded() else {
            return Ok(());
        };
        let [_, t, d] = activation.dims();
        let acts = read_f32(loaded.sae.encode_async(activation.reshape([t, d])).await?).await?;
        let heat = Heat::of(id, tokens, &acts, loaded.sae.config.d_sae, HEAT_PER_TOKEN);
        self.update(|lab| lab.heat = Some(heat));
        Ok(())
    }

    pub(crate) fn render_heatmap(&self) {
        let Some(target) = self.element(ids::HEATMAP) else {
            return;
        };
        clear(&target);
        let lab = self.lab.borrow();
        let Some(heat) = lab
            .heat
            .as_ref()
            .filter(|h| Some(&h.sae_id) == self.selected_sae().as_ref())
        else {
            let text = if self.selected_sae().is_some() {
                "The SAE's features appear here once it has run on the prompt."
            } else {
                "Choose an SAE above to see its features on each token."
            };
            append(&target, &el(&self.document, "p", "muted", text));
            return;
        };
        let rows = heat.rows(HEAT_ROWS);
        let max = rows.first().map_or(0.0, |r| r.1);
        let grid = el(&self.document, "div", "heat-grid", "");
        grid.set_attribute(
            "style",
            &format!(
                "grid-template-columns: 5rem repeat({}, minmax(1.6rem, auto))",
                heat.tokens.len()
            ),
        )
        .ok();
        append(&grid, &el(&self.document, "span", "heat-corner", "feature"));
        for (i, token) in heat.tokens.iter().enumerate() {
            let head = el(&self.document, "button", "heat-token", token);
            head.set_attribute("type", "button").ok();
            head.set_attribute("data-token", &i.to_string()).ok();
            if lab.token_focus == Some(i) {
                head.set_class_name("heat-token focus");
            }
            append(&grid, &head);
        }
        for &(feature, _) in &rows {
            let label = el(
                &self.document,
                "button",
                "heat-feature",
                &format!("#{feature}"),
            );
            label.set_attribute("type", "button").ok();
            label
                .set_attribute("data-feature", &feature.to_string())
                .ok();
            append(&grid, &label);
            for token in 0..heat.tokens.len() {
                let a = heat.at(token, feature);
                let cell = el(&self.document, "span", "heat-cell", "");
                let alpha = chart::shade(a, max);
                cell.set_attribute(
                    "style",
                    &format!("background: rgba(230, 120, 20, {alpha:.3})"),
                )
                .ok();
                cell.set_attribute("title", &format!("feature {feature}: {a:.3}"))
                    .ok();
                cell.set_attribute("data-feature", &feature.to_string())
                    .ok();
                append(&grid, &cell);
            }
        }
        append(&target, &grid);
        self.render_token_features(heat, lab.token_focus);
    }

    /// The clicked token's features, as chips that open their cards.
    fn render_token_features(&self, heat: &Heat, focus: Option<usize>) {
        if let Some(list_target) = self.element(ids::TOKEN_FEATURES) {
            clear(&list_target);
            if let Some(i) = focus.filter(|&i| i < heat.top.len()) {
                append(
                    &list_target,
                    &el(
                        &self.document,
                        "h3",
                        "",
                        &format!("Features on token {i} ({:?})", heat.tokens[i]),
                    ),
                );
                let list = el(&self.document, "ul", "feature-chips", "");
                if heat.top[i].is_empty() {
                    append(
                        &list,
                        &el(
                            &self.document,
                            "li",
                            "muted",
                            "No feature fires on this token.",
                        ),
                    );
                }
                for &(f, a) in &heat.top[i] {
                    let item = el(&self.document, "li", "", "");
                    let button = el(&self.document, "button", "chip", &format!("#{f}  {a:.2}"));
                    button.set_attribute("type", "button").ok();
                    button.set_attribute("data-feature", &f.to_string()).ok();
                    append(&item, &button);
                    append(&list, &item);
                }
                append(&list_target, &list);
            }
        }
    }
}
