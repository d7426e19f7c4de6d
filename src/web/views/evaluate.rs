//! The evaluate view: every SAE's headline metrics, the Pareto chart, the chosen SAE in full.

use web_sys::{Document, Element};

use std::rc::Rc;

use wasm_bindgen::JsCast;

use crate::sae::metrics::{Figure, SaeMetrics};
use crate::sae::saelens::Provenance;
use crate::sae::stats::PROBE_KS;
use crate::tinytales::Concept;
use crate::ui::chart::{self, Frame};
use crate::ui::ids;
use crate::ui::lab::{Lab, metric_text};
use crate::ui::lab::{LoadedSae, Summary};
use crate::web::App;
use crate::web::dom::{append, bar_list, clear, el, histogram, svg_el, svg_text};

/// A chart label (`class=\"tick\"`) at `(x, y)`.
fn text_label(d: &Document, x: f64, y: f64, anchor: &str, text: &str) -> Element {
    svg_text(d, x, y, anchor, "tick", text)
}

impl App {
    /// Evaluate the chosen SAE in the worker on held-out text of the Train view's corpus
    /// (TinyTales, or the pasted or uploaded text), and show the metrics like a trained SAE's.
    pub(crate) async fn evaluate_chosen(self: &Rc<Self>) {
        let (Some(id), Some(loaded)) = (self.selected_sae(), self.selected_loaded()) else {
            self.show_error("Choose an SAE to evaluate.".into());
            return;
        };
        self.read_train_form();
        let form = self.lab.borrow().form.clone();
        let corpus = match form.parse(&self.hook_names()) {
            Ok(config) => config.corpus,
            Err(message) => {
                self.show_error(format!("The Train view's corpus is not usable: {message}"));
                return;
            }
        };
        self.set_text(ids::EVAL_STATUS, "Evaluating in the background…");
        let started = crate::web::platform::now_ms();
        match self.evaluate_in_worker(&loaded, corpus).await {
            Ok(metrics) => {
                let updated = Rc::new(LoadedSae {
                    sae: loaded.sae.clone(),
                    hook: loaded.hook,
                    files: loaded.files.clone(),
                    provenance: Provenance {
                        metrics: Some(metrics.clone()),
                        ..loaded.provenance.clone()
                    },
                    model_processing: loaded.model_processing,
                    neuronpedia_id: loaded.neuronpedia_id.clone(),
                });
                self.update(|lab| {
                    if let Some(slot) = lab.saes.iter_mut().find(|s| s.id == id) {
                        slot.summary = Summary::of(&metrics);
                        slot.loaded = Some(updated);
                    }
                });
                self.set_text(
                    ids::EVAL_STATUS,
                    &format!(
                        "Evaluated in {:.1} s.",
                        (crate::web::platform::now_ms() - started) / 1000.0
                    ),
                );
            }
            Err(e) => {
                self.set_text(ids::EVAL_STATUS, "");
                self.show_error(format!("The SAE could not be evaluated: {e}"));
            }
        }
        self.render_evaluate();
    }

    pub(crate) fn render_evaluate(&self) {
        let lab = self.lab.borrow();
        self.render_axis_choice(&lab);
        self.render_eval_table(&lab);
        self.render_pareto(&lab);
        self.render_eval_detail(&lab);
    }

    /// One row per SAE: where it came from, its shape, its headline metrics.
    fn render_eval_table(&self, lab: &Lab) {
        let d = &self.document;
        if let Some(body) = self.element(ids::EVAL_ROWS) {
            clear(&body);
            for slot in &lab.saes {
                let tr = el(d, "tr", "", "");
                tr.set_attribute("data-sae", &slot.id).ok();
                for (class, text) in [
                    ("", slot.id.clone()),
                    ("", slot.origin.describe().to_string()),
                    ("", slot.hook_name.clone()),
                    ("", format!("{} ({})", slot.architecture, slot.d_sae)),
                    ("num", metric_text(slot.summary.l0, 1)),
                    ("num", metric_text(slot.summary.explained_variance, 3)),
                    ("num", metric_text(slot.summary.loss_recovered, 3)),
                    ("num", metric_text(slot.summary.dead_fraction, 3)),
                    ("num", metric_text(slot.summary.dense_fraction, 3)),
                    ("num", metric_text(slot.summary.mean_concept_auroc, 3)),
                ] {
                    append(&tr, &el(d, "td", class, &text));
                }
                append(&body, &tr);
            }
        }
    }

    /// The Pareto chart's axis selects: every figure, the chosen ones selected.
    fn render_axis_choice(&self, lab: &Lab) {
        let d = &self.document;
        for (id, chosen) in [
            (ids::EVAL_PARETO_X, lab.pareto_axes.0),
            (ids::EVAL_PARETO_Y, lab.pareto_axes.1),
        ] {
            let Some(select) = self.element(id) else {
                continue;
            };
            if select.child_element_count() == 0 {
                for figure in Figure::ALL {
                    let option = el(d, "option", "", figure.label());
                    option.set_attribute("value", figure.name()).ok();
                    append(&select, &option);
                }
            }
            if let Ok(select) = select.dyn_into::<web_sys::HtmlSelectElement>() {
                select.set_value(chosen.name());
            }
        }
    }

    /// Two figures (L0 against loss recovered unless chosen otherwise) for every SAE; the chosen
    /// one larger and named.
    fn render_pareto(&self, lab: &Lab) {
        let d = &self.document;
        let Some(target) = self.element(ids::EVAL_PARETO) else {
            return;
        };
        clear(&target);
        let points = lab.pareto_points();
        let frame = Frame::WIDE;
        let figure = el(d, "figure", "chart-figure", "");
        append(
            &figure,
            &el(
                d,
                "figcaption",
                "",
                &format!(
                    "{} against {}, every SAE here{}",
                    lab.pareto_axes.0.label(),
                    lab.pareto_axes.1.label(),
                    if lab.pareto_axes == (Figure::L0, Figure::LossRecovered) {
                        " (up and left is better)"
                    } else {
                        ""
                    }
                ),
            ),
        );
        let svg = svg_el(
            d,
            "svg",
            &[
                ("viewBox", format!("0 0 {} {}", frame.width, frame.height)),
                ("class", "chart".into()),
                ("role", "img".into()),
                ("aria-label", "Pareto chart".into()),
            ],
        );
        if let Some(chart) = chart::pareto(&points, frame) {
            let axis = svg_el(
                d,
                "polyline",
                &[("points", chart.axis), ("class", "axis".into())],
            );
            append(&svg, &axis);
            for tick in chart.ticks {
                append(
                    &svg,
                    &text_label(d, tick.x, tick.y, tick.anchor, &tick.text),
                );
            }
            let selected = self.selected_sae();
            for (i, x, y) in chart.dots {
                let id = &lab.saes[i].id;
                let chosen = Some(id) == selected.as_ref();
                let dot = svg_el(
                    d,
                    "circle",
                    &[
                        ("cx", format!("{x:.1}")),
                        ("cy", format!("{y:.1}")),
                        ("r", if chosen { "6".into() } else { "4".into() }),
                        (
                            "class",
                            if chosen {
                                "dot chosen".into()
                            } else {
                                "dot".into()
                            },
                        ),
                        ("data-sae", id.clone()),
                    ],
                );
                let tip = svg_el(d, "title", &[]);
                tip.set_text_content(Some(&format!(
                    "{id}: {} {:.3}, {} {:.3}",
                    lab.pareto_axes.0.label(),
                    points[i].0,
                    lab.pareto_axes.1.label(),
                    points[i].1
                )));
                append(&dot, &tip);
                append(&svg, &dot);
                if chosen {
                    // Only the chosen SAE is named: shipped ones often sit on one spot.
                    let name: String = id.chars().take(32).collect();
                    append(&svg, &text_label(d, x - 6.0, y - 8.0, "end", &name));
                }
            }
        }
        append(&figure, &svg);
        append(&target, &figure);
    }

    /// The chosen SAE's metrics in full: the table, the density histogram, concept recovery.
    fn render_eval_detail(&self, lab: &Lab) {
        let d = &self.document;
        if let Some(target) = self.element(ids::EVAL_DETAIL) {
            clear(&target);
            let chosen = self.selected_sae().and_then(|id| lab.slot(&id));
            let metrics = chosen
                .and_then(|s| s.loaded.as_ref())
                .and_then(|l| l.provenance.metrics.clone());
            match (chosen, metrics) {
                (Some(slot), Some(m)) => self.render_metrics(&target, &slot.id, &m),
                (Some(slot), None) if slot.loaded.is_none() => {
                    append(
                        &target,
                        &el(
                            d,
                            "p",
                            "muted",
                            "Choose this SAE above to load its full metrics.",
                        ),
                    );
                }
                (Some(_), None) => append(
                    &target,
                    &el(d, "p", "muted", "This SAE's files carry no metrics."),
                ),
                (None, _) => append(
                    &target,
                    &el(
                        d,
                        "p",
                        "muted",
                        "Choose an SAE above to see its metrics in full.",
                    ),
                ),
            }
        }
    }

    /// Every metric of one SAE, its density histogram and concept recovery.
    fn render_metrics(&self, target: &Element, id: &str, m: &SaeMetrics) {
        let d = &self.document;
        append(
            target,
            &el(
                d,
                "h3",
                "",
                &format!("{}: measured on {} held-out tokens", id, m.tokens),
            ),
        );
        let rows = [
            ("L0", format!("{:.2}", m.l0)),
            ("Explained variance", format!("{:.3}", m.explained_variance)),
            (
                "Loss recovered",
                format!(
                    "{:.3} (CE {:.3} clean, {:.3} with the SAE, {:.3} zero-ablated)",
                    m.loss_recovered, m.ce_clean, m.ce_with_sae, m.ce_zero_ablation
                ),
            ),
            ("KL divergence", format!("{:.4}", m.kl)),
            ("Dead fraction", format!("{:.3}", m.dead_fraction)),
            ("Dense fraction (>10%)", format!("{:.3}", m.dense_fraction)),
            (
                "Relative reconstruction bias (shrinkage)",
                format!("{:.3}", m.shrinkage),
            ),
            ("L2 ratio", format!("{:.3}", m.l2_ratio)),
            ("Cosine of reconstruction", metric_text(Some(m.cossim), 4)),
            ("Fraction alive", format!("{:.3}", m.fraction_alive())),
            (
                "Consistent-activation heuristic",
                match m.figure(Figure::ConsistentActivation) {
                    Some(v) => format!("{v:.2} tokens per window it fires in"),
                    None => metric_text(None, 2),
                },
            ),
            (
                "Mean max decoder cosine",
                metric_text(Some(m.mean_max_decoder_cosine), 3),
            ),
            (
                "Mean max encoder cosine",
                metric_text(Some(m.mean_max_encoder_cosine), 3),
            ),
        ];
        if !m.ce_clean.is_finite() {
            append(
                target,
                &el(
                    d,
                    "p",
                    "muted",
                    "The model's cross-entropy came out non-finite on this backend, so loss recovered and KL are not available (seen with WebGPU in software, SwiftShader; the CPU path computes them).",
                ),
            );
        }
        let dl = el(d, "dl", "metrics", "");
        dl.set_id(ids::EVAL_METRICS);
        for (k, v) in rows {
            append(&dl, &el(d, "dt", "", k));
            append(&dl, &el(d, "dd", "", &v));
        }
        append(target, &dl);
        let counts: Vec<f64> = m
            .density_histogram
            .counts
            .iter()
            .map(|&c| c as f64)
            .collect();
        let h = histogram(
            d,
            "Feature density (log10 of the fraction of tokens each fires on)",
            &m.density_histogram.edges,
            &counts,
            Frame::WIDE,
        );
        h.set_id(ids::EVAL_DENSITY);
        append(target, &h);
        if !m.concept_recovery.is_empty() {
            let rows = m
                .concept_recovery
                .iter()
                .map(|c| {
                    (
                        format!("{} (#{})", c.concept, c.feature),
                        c.auroc,
                        format!("{:.3}", c.auroc),
                    )
                })
                .collect();
            self.ranked_list(
                target,
                &format!(
                    "Concept recovery: the best feature's AUROC per concept (mean {})",
                    metric_text(m.mean_concept_auroc, 3)
                ),
                rows,
                ids::EVAL_CONCEPTS,
            );
        }
        let concept_name = |c: usize| {
            Concept::from_index(c).map_or_else(|| format!("concept {c}"), |c| c.name().to_string())
        };
        if !m.sparse_probing.is_empty() {
            let means: Vec<String> = PROBE_KS
                .iter()
                .enumerate()
                .map(|(i, k)| format!("top {k} {}", metric_text(m.sparse_probing_mean(i), 3)))
                .collect();
            let rows = m
                .sparse_probing
                .iter()
                .map(|p| {
                    let last = p.accuracy.last().copied().unwrap_or(f64::NAN);
                    (
                        concept_name(p.concept),
                        last,
                        p.accuracy
                            .iter()
                            .map(|a| format!("{a:.3}"))
                            .collect::<Vec<_>>()
                            .join(" / "),
                    )
                })
                .collect();
            self.ranked_list(
                target,
                &format!(
                    "Sparse probing: a logistic probe's test accuracy on the best 1, 2 and 5 latents per concept (mean {})",
                    means.join(", ")
                ),
                rows,
                ids::EVAL_PROBING,
            );
        }
        if !m.absorption.is_empty() {
            let rows = m
                .absorption
                .iter()
                .map(|a| {
                    (
                        format!(
                            "{} (main {})",
                            concept_name(a.concept),
                            a.main_latents
                                .iter()
                                .map(|l| format!("#{l}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                        a.mean_absorption_fraction,
                        format!(
                            "{:.3} (full {:.3})",
                            a.mean_absorption_fraction, a.full_absorption_rate
                        ),
                    )
                })
                .collect();
            self.ranked_list(
                target,
                &format!(
                    "Feature absorption per concept: the mean absorption fraction (mean {}; full absorption {})",
                    metric_text(m.mean_absorption_fraction(), 3),
                    metric_text(m.full_absorption_rate(), 3)
                ),
                rows,
                ids::EVAL_ABSORPTION,
            );
        }
    }

    /// A heading and a bar list of `(label, value in 0..1, text)` rows, largest value first.
    fn ranked_list(
        &self,
        target: &Element,
        heading: &str,
        mut rows: Vec<(String, f64, String)>,
        id: &str,
    ) {
        let d = &self.document;
        append(target, &el(d, "h3", "", heading));
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        let list = bar_list(d, &rows, 1.0);
        list.set_id(id);
        append(target, &list);
    }
}
