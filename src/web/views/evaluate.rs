//! The evaluate view: every SAE's headline metrics, the Pareto chart, the chosen SAE in full.



use crate::ui::chart::{self, Frame};
use crate::ui::lab::{Origin, metric_text};
use crate::web::dom::{
    append, bar_list, clear, el, histogram, svg_el,
};
use crate::web::App;

impl App {
    pub(crate) fn render_evaluate(&self) {
        let d = &self.document;
        let lab = self.lab.borrow();
        if let Some(body) = self.element("eval-rows") {
            clear(&body);
            for slot in &lab.saes {
                let tr = el(d, "tr", "", "");
                tr.set_attribute("data-sae", &slot.id).ok();
                let origin = match &slot.origin {
                    Origin::Shipped { .. } => "shipped",
                    Origin::Stored => "this browser",
                    Origin::Remote { .. } => "fetched",
                };
                for (class, text) in [
                    ("", slot.id.clone()),
                    ("", origin.to_string()),
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
        if let Some(target) = self.element("eval-pareto") {
            clear(&target);
            let points: Vec<(f64, f64)> = lab
                .saes
                .iter()
                .map(|s| {
                    (
                        s.summary.l0.unwrap_or(f64::NAN),
                        s.summary.loss_recovered.unwrap_or(f64::NAN),
                    )
                })
                .collect();
            let frame = Frame::WIDE;
            let figure = el(d, "figure", "chart-figure", "");
            append(
                &figure,
                &el(
                    d,
                    "figcaption",
                    "",
                    "L0 against loss recovered, every SAE here (up and left is better)",
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
            if let Some((placed, xs, ys)) = chart::scatter(&points, frame) {
                let axis = svg_el(
                    d,
                    "polyline",
                    &[
                        (
                            "points",
                            format!(
                                "{0:.1},{1:.1} {0:.1},{2:.1} {3:.1},{2:.1}",
                                frame.x(0.0),
                                frame.y(1.0),
                                frame.y(0.0),
                                frame.x(1.0)
                            ),
                        ),
                        ("class", "axis".into()),
                    ],
                );
                append(&svg, &axis);
                for (x, y, anchor, text) in [
                    (
                        frame.x(0.0),
                        frame.y(0.0) + 14.0,
                        "start",
                        format!("L0 {}", chart::tick(xs.min)),
                    ),
                    (
                        frame.x(1.0),
                        frame.y(0.0) + 14.0,
                        "end",
                        chart::tick(xs.max),
                    ),
                    (
                        frame.x(0.0) - 3.0,
                        frame.y(1.0) + 4.0,
                        "end",
                        chart::tick(ys.max),
                    ),
                    (frame.x(0.0) - 3.0, frame.y(0.0), "end", chart::tick(ys.min)),
                ] {
                    let t = svg_el(
                        d,
                        "text",
                        &[
                            ("x", format!("{x:.1}")),
                            ("y", format!("{y:.1}")),
                            ("text-anchor", anchor.into()),
                            ("class", "tick".into()),
                        ],
                    );
                    t.set_text_content(Some(&text));
                    append(&svg, &t);
                }
                for (i, x, y) in placed {
                    let chosen = Some(&lab.saes[i].id) == self.selected_sae().as_ref();
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
                            ("data-sae", lab.saes[i].id.clone()),
                        ],
                    );
                    let tip = svg_el(d, "title", &[]);
                    tip.set_text_content(Some(&format!(
                        "{}: L0 {:.1}, loss recovered {:.3}",
                        lab.saes[i].id, points[i].0, points[i].1
                    )));
                    append(&dot, &tip);
                    append(&svg, &dot);
                    if chosen {
                        // Only the chosen SAE is named: shipped ones often sit on one spot.
                        let label = svg_el(
                            d,
                            "text",
                            &[
                                ("x", format!("{:.1}", x - 6.0)),
                                ("y", format!("{:.1}", y - 8.0)),
                                ("text-anchor", "end".into()),
                                ("class", "tick".into()),
                            ],
                        );
                        label.set_text_content(Some(
                            &lab.saes[i].id.chars().take(32).collect::<String>(),
                        ));
                        append(&svg, &label);
                    }
                }
            }
            append(&figure, &svg);
            append(&target, &figure);
        }
        if let Some(target) = self.element("eval-detail") {
            clear(&target);
            let chosen = self.selected_sae().and_then(|id| lab.slot(&id));
            let metrics = chosen
                .and_then(|s| s.loaded.as_ref())
                .and_then(|l| l.provenance.metrics.clone());
            match (chosen, metrics) {
                (Some(slot), Some(m)) => {
                    append(
                        &target,
                        &el(
                            d,
                            "h3",
                            "",
                            &format!("{}: measured on {} held-out tokens", slot.id, m.tokens),
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
                        ("Shrinkage", format!("{:.3}", m.shrinkage)),
                    ];
                    if !m.ce_clean.is_finite() {
                        append(
                            &target,
                            &el(
                                d,
                                "p",
                                "muted",
                                "The model's cross-entropy came out non-finite on this backend, so loss recovered and KL are not available (seen with WebGPU in software, SwiftShader; the CPU path computes them).",
                            ),
                        );
                    }
                    let dl = el(d, "dl", "metrics", "");
                    dl.set_id("eval-metrics");
                    for (k, v) in rows {
                        append(&dl, &el(d, "dt", "", k));
                        append(&dl, &el(d, "dd", "", &v));
                    }
                    append(&target, &dl);
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
                    h.set_id("eval-density");
                    append(&target, &h);
                    if !m.concept_recovery.is_empty() {
                        append(
                            &target,
                            &el(
                                d,
                                "h3",
                                "",
                                &format!(
                                    "Concept recovery: the best feature's AUROC per concept (mean {})",
                                    metric_text(m.mean_concept_auroc, 3)
                                ),
                            ),
                        );
                        let mut rows: Vec<(String, f64, String)> = m
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
                        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
                        let list = bar_list(d, &rows, 1.0);
                        list.set_id("eval-concepts");
                        append(&target, &list);
                    }
                }
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
}
