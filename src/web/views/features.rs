//! The features view: the list (search, sort) and one feature's card.

use std::rc::Rc;

use wasm_bindgen::JsCast;

use crate::sae::explain::ExplanationScore;
use crate::sae::pipeline::{PAGE_WINDOWS_PER_FORWARD, feature_job};
use crate::ui::View;
use crate::ui::chart::Frame;
use crate::ui::feature_list::{self, FeatureList, SortKey};
use crate::ui::ids;
use crate::ui::lab::FeatureIndex;
use crate::web::App;
use crate::web::dom::{append, bar_list, clear, el, histogram, shaded_tokens};

const LIST_LIMIT: usize = 200;

/// An explanation's score in words.
fn score_words(score: Option<&ExplanationScore>) -> String {
    match score {
        None => {
            "not scored: the feature never fires on the scored half of the held-out text".into()
        }
        Some(s) => format!(
            "simulation {:.2}, detection {} (held out: {} top and {} random contexts)",
            s.simulation,
            s.detection
                .map_or("n/a (fires everywhere)".to_string(), |d| format!("{d:.2}")),
            s.top_contexts,
            s.random_contexts
        ),
    }
}

impl App {
    /// Fetch the open card's data from the worker when the page does not hold it yet.
    pub(crate) async fn ensure_card(self: &Rc<Self>) {
        let (Some(id), Some(feature)) = (self.selected_sae(), self.state.borrow().location.feature)
        else {
            return;
        };
        let Some(index) = self.lab.borrow().slot(&id).and_then(|s| s.features.clone()) else {
            return;
        };
        if index.card(feature).is_some() || !index.has(feature) {
            self.render_card();
            return;
        }
        let answer = self.card_from_worker(&id, feature).await;
        match answer {
            Ok(data) => {
                index.cards.borrow_mut().insert(feature, Rc::new(data));
            }
            Err(e) => self.show_error(format!("Feature #{feature} could not be shown: {e}")),
        }
        self.render_card();
    }

    /// What a feature scan reads: held-out text of the Train view's corpus (TinyTales, the
    /// person's text, or text the model writes), and that in words; TinyTales when the form's
    /// corpus is not usable (an empty text box).
    fn scan_corpus(&self) -> (crate::sae::store::Corpus, &'static str) {
        self.read_train_form();
        let form = self.lab.borrow().form.clone();
        match form.parse(&self.hook_names()) {
            Ok(config) => (config.corpus, form.corpus.describe()),
            Err(_) => (
                crate::sae::store::Corpus::TinyTales { seed: 0 },
                crate::ui::train_form::CorpusKind::TinyTales.describe(),
            ),
        }
    }

    /// Scan held-out stories with the chosen SAE (once per SAE), in the worker on both paths:
    /// the summary is host work either way, and there the page never waits on it.
    pub(crate) async fn ensure_features(self: &Rc<Self>) -> Option<Rc<FeatureIndex>> {
        let id = self.selected_sae()?;
        if let Some(index) = self.lab.borrow().slot(&id).and_then(|s| s.features.clone()) {
            return Some(index);
        }
        let loaded_sae = self.selected_loaded()?;
        let (corpus, corpus_words) = self.scan_corpus();
        let index = match self
            .features_in_worker(&id, &loaded_sae, corpus.clone())
            .await
        {
            Ok(list) => {
                let index = FeatureIndex::new(list.tokens, list.rows, None);
                self.apply_early_explanations(&id, &index);
                Ok(index)
            }
            // The worker is an optimisation: without it, the page scans itself.
            Err(message) => {
                web_sys::console::warn_1(
                    &format!("feature scan in the worker failed ({message}); scanning in the page")
                        .into(),
                );
                let loaded = self.loaded().map_err(|e| e.to_string());
                match loaded {
                    Ok(loaded) => {
                        let on_phase = |text: String| {
                            self.update(|lab| lab.feature_status = text);
                            self.render_feature_status();
                        };
                        feature_job(
                            &loaded,
                            &loaded_sae.sae,
                            loaded_sae.hook,
                            &corpus,
                            PAGE_WINDOWS_PER_FORWARD,
                            &on_phase,
                        )
                        .await
                        .map(|report| {
                            FeatureIndex::new(
                                report.tokens,
                                FeatureList::of(&report).rows,
                                Some(report),
                            )
                        })
                        .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match index {
            Ok(index) => {
                let index = Rc::new(index);
                self.update(|lab| {
                    lab.feature_status = format!(
                        "{} features, read on {} held-out tokens of {corpus_words}.",
                        index.len(),
                        index.tokens
                    );
                    if let Some(slot) = lab.slot_mut(&id) {
                        slot.features = Some(Rc::clone(&index));
                    }
                });
                Some(index)
            }
            Err(e) => {
                self.update(|lab| lab.feature_status = String::new());
                self.show_error(format!("The features could not be read: {e}"));
                None
            }
        }
    }

    pub(crate) fn render_feature_status(&self) {
        self.set_text(ids::FEATURE_STATUS, &self.lab.borrow().feature_status);
    }

    pub(crate) fn render_features(&self) {
        self.render_feature_status();
        let Some(body) = self.element(ids::FEATURE_ROWS) else {
            return;
        };
        clear(&body);
        let Some(id) = self.selected_sae() else {
            self.set_text(
                ids::FEATURE_STATUS,
                "Choose an SAE above to list its features.",
            );
            return;
        };
        let lab = self.lab.borrow();
        let Some(index) = lab.slot(&id).and_then(|s| s.features.clone()) else {
            return;
        };
        let rows = index.rows.borrow();
        let rows = &*rows;
        let key = lab.sort.unwrap_or(SortKey::Density);
        let descending = lab.sort.is_none() || lab.descending;
        let chosen = feature_list::select(rows, &lab.query, key, descending, LIST_LIMIT);
        self.set_text(
            ids::FEATURE_COUNT,
            &format!("{} shown of {} features", chosen.len(), rows.len()),
        );
        for i in chosen {
            let row = &rows[i];
            let tr = el(&self.document, "tr", "", "");
            tr.set_attribute("data-feature", &row.index.to_string())
                .ok();
            append(
                &tr,
                &el(&self.document, "td", "num", &format!("#{}", row.index)),
            );
            append(
                &tr,
                &el(&self.document, "td", "num", &format!("{:.4}", row.density)),
            );
            append(
                &tr,
                &el(
                    &self.document,
                    "td",
                    "num",
                    &format!("{:.2}", row.max_activation),
                ),
            );
            let concept = row
                .concept
                .as_ref()
                .map_or("–".to_string(), |(c, a)| format!("{c} ({a:.2})"));
            append(&tr, &el(&self.document, "td", "", &concept));
            let explanation = match (&row.explanation, row.score) {
                (Some(e), Some(score)) => format!("{e} ({score:.2})"),
                (Some(e), None) => e.clone(),
                _ => "–".into(),
            };
            append(&tr, &el(&self.document, "td", "explanation", &explanation));
            append(
                &tr,
                &el(
                    &self.document,
                    "td",
                    "tokens",
                    &row.top_tokens
                        .iter()
                        .map(|t| format!("{t:?}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            );
            append(&body, &tr);
        }
        drop(lab);
        self.render_card();
    }

    pub(crate) fn render_card(&self) {
        let Some(card) = self.element(ids::FEATURE_CARD) else {
            return;
        };
        // What is being typed survives the card being drawn again (explanations arrive).
        if let Some(input) = self
            .element(ids::CARD_EXPLAIN_INPUT)
            .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
        {
            let typed = input.value();
            self.update(|lab| lab.explain_text = typed);
        }
        clear(&card);
        let feature = self.state.borrow().location.feature;
        let Some(feature) = feature else {
            card.set_attribute("hidden", "").ok();
            return;
        };
        card.remove_attribute("hidden").ok();
        let Some(id) = self.selected_sae() else {
            return;
        };
        let lab = self.lab.borrow();
        let Some(index) = lab.slot(&id).and_then(|s| s.features.clone()) else {
            append(
                &card,
                &el(
                    &self.document,
                    "p",
                    "muted",
                    &format!("Feature #{feature}: reading the SAE's features…"),
                ),
            );
            return;
        };
        if !index.has(feature) {
            append(
                &card,
                &el(
                    &self.document,
                    "p",
                    "",
                    &format!(
                        "This SAE has no feature #{feature}: its features are 0 to {}.",
                        index.len().saturating_sub(1)
                    ),
                ),
            );
            return;
        }
        let Some(data) = index.card(feature) else {
            append(
                &card,
                &el(
                    &self.document,
                    "p",
                    "muted",
                    &format!("Loading feature #{feature}…"),
                ),
            );
            return;
        };
        let d = &self.document;
        let title = el(d, "h2", "", &format!("Feature #{feature}"));
        title.set_id(ids::CARD_TITLE);
        append(&card, &title);
        // A published SAE's feature is also on Neuronpedia (SAELens's dashboard link).
        if let Some(url) = self
            .selected_loaded()
            .and_then(|l| l.neuronpedia_id.clone())
            .and_then(|id| crate::sae::releases::neuronpedia_url(&id, feature))
        {
            let link = el(d, "a", "neuronpedia", "Open this feature on Neuronpedia");
            link.set_id(ids::CARD_NEURONPEDIA);
            link.set_attribute("href", &url).ok();
            link.set_attribute("target", "_blank").ok();
            link.set_attribute("rel", "noopener noreferrer").ok();
            append(&card, &link);
        }
        append(
            &card,
            &el(
                d,
                "p",
                "muted",
                &format!(
                    "Density {:.4} (fires on {:.2}% of tokens), max activation {:.2}, mean when active {:.2}.",
                    data.density,
                    data.density * 100.0,
                    data.max_activation,
                    data.mean_active
                ),
            ),
        );
        let concept = el(
            d,
            "p",
            "concept",
            &match &data.best_concept {
                Some(c) => format!(
                    "Best-matching concept: {} (AUROC {:.3})",
                    c.concept, c.auroc
                ),
                None => "No concept labels for this text.".into(),
            },
        );
        concept.set_id(ids::CARD_CONCEPT);
        append(&card, &concept);
        let explanation = el(
            d,
            "p",
            "explanation",
            &match &data.explanation {
                Some(e) if !e.explanation.is_empty() => format!(
                    "Explanation (from {}): {} — {}",
                    e.source.describe(),
                    e.explanation,
                    score_words(e.score.as_ref())
                ),
                _ if !index.explained.get() => {
                    "Explaining every feature in the background; this card's comes shortly.".into()
                }
                _ => "No explanation: it never fired on the explaining half of the held-out text."
                    .into(),
            },
        );
        explanation.set_id(ids::CARD_EXPLANATION);
        append(&card, &explanation);
        let form = el(d, "div", "controls explain-form", "");
        let label = el(d, "label", "", "Your explanation ");
        let input = el(d, "input", "", "");
        input.set_id(ids::CARD_EXPLAIN_INPUT);
        input.set_attribute("size", "40").ok();
        input
            .set_attribute(
                "placeholder",
                "words, \"a phrase\"; concept:animal; after: the; before: .",
            )
            .ok();
        input.set_attribute("value", &lab.explain_text).ok();
        append(&label, &input);
        append(&form, &label);
        let run = el(d, "button", "secondary", "Score it");
        run.set_id(ids::CARD_EXPLAIN_RUN);
        run.set_attribute("type", "button").ok();
        run.set_attribute("data-explain-feature", &feature.to_string())
            .ok();
        append(&form, &run);
        append(&card, &form);
        let result = el(d, "p", "muted", &lab.explain_result);
        result.set_id(ids::CARD_EXPLAIN_RESULT);
        result.set_attribute("role", "status").ok();
        append(&card, &result);
        let steer = el(d, "button", "", "Steer with this feature");
        steer.set_attribute("type", "button").ok();
        steer
            .set_attribute("data-steer-feature", &feature.to_string())
            .ok();
        append(&card, &steer);

        let columns = el(d, "div", "card-columns", "");
        let left = el(d, "div", "", "");
        append(&left, &el(d, "h3", "", "Top activations"));
        let top = el(d, "div", "examples", "");
        top.set_id(ids::CARD_TOP);
        for example in &data.top_examples {
            append(
                &top,
                &shaded_tokens(
                    d,
                    &example.tokens,
                    &example.activations,
                    data.max_activation,
                    Some(example.focus),
                ),
            );
        }
        if data.top_examples.is_empty() {
            append(
                &top,
                &el(d, "p", "muted", "It never fired on the held-out stories."),
            );
        }
        append(&left, &top);
        let bands = el(d, "div", "examples", "");
        bands.set_id(ids::CARD_BANDS);
        for band in &data.bands {
            if band.examples.is_empty() {
                continue;
            }
            append(
                &bands,
                &el(
                    d,
                    "h4",
                    "",
                    &format!("Activations {:.2} to {:.2}", band.low, band.high),
                ),
            );
            for example in &band.examples {
                append(
                    &bands,
                    &shaded_tokens(
                        d,
                        &example.tokens,
                        &example.activations,
                        data.max_activation,
                        Some(example.focus),
                    ),
                );
            }
        }
        append(&left, &el(d, "h3", "", "Quantile examples"));
        append(&left, &bands);
        append(&columns, &left);

        let right = el(d, "div", "", "");
        let counts: Vec<f64> = data.histogram.counts.iter().map(|&c| c as f64).collect();
        let hist = histogram(
            d,
            "Activation histogram (when active)",
            &data.histogram.edges,
            &counts,
            Frame::SMALL,
        );
        hist.set_id(ids::CARD_HISTOGRAM);
        append(&right, &hist);
        append(&right, &el(d, "h3", "", "Logit lens: tokens it promotes"));
        let max_lens = data
            .promoted
            .iter()
            .chain(&data.suppressed)
            .map(|t| f64::from(t.value.abs()))
            .fold(0.0, f64::max);
        let lens_rows = |tokens: &[crate::sae::features::LensToken]| {
            tokens
                .iter()
                .map(|t| {
                    (
                        format!("{:?}", t.token),
                        f64::from(t.value),
                        format!("{:+.2}", t.value),
                    )
                })
                .collect::<Vec<_>>()
        };
        let promoted = bar_list(d, &lens_rows(&data.promoted), max_lens);
        promoted.set_id(ids::CARD_LENS_PROMOTED);
        append(&right, &promoted);
        append(&right, &el(d, "h3", "", "…and suppresses"));
        let suppressed = bar_list(d, &lens_rows(&data.suppressed), max_lens);
        suppressed.set_id(ids::CARD_LENS_SUPPRESSED);
        append(&right, &suppressed);
        append(
            &right,
            &el(d, "h3", "", "Nearest features (decoder cosine)"),
        );
        let nearest = el(d, "ul", "feature-chips", "");
        nearest.set_id(ids::CARD_NEAREST);
        for &(f, cos) in &data.nearest {
            let item = el(d, "li", "", "");
            let button = el(d, "button", "chip", &format!("#{f}  {cos:.2}"));
            button.set_attribute("type", "button").ok();
            button.set_attribute("data-feature", &f.to_string()).ok();
            append(&item, &button);
            append(&nearest, &item);
        }
        append(&right, &nearest);
        append(&columns, &right);
        append(&card, &columns);
    }

    /// Score the explanation typed in the open card, in the worker on the held-out scan.
    pub(crate) async fn score_explanation(self: &Rc<Self>, feature: usize) {
        let text = self
            .element(ids::CARD_EXPLAIN_INPUT)
            .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
            .map(|e| e.value())
            .unwrap_or_default();
        let Some(id) = self.selected_sae() else {
            return;
        };
        self.update(|lab| {
            lab.explain_text = text.clone();
            lab.explain_result = "Scoring on held-out text…".into();
        });
        self.set_text(ids::CARD_EXPLAIN_RESULT, "Scoring on held-out text…");
        let message = match self.score_in_worker(&id, feature, text).await {
            Ok(scored) => format!(
                "\u{201c}{}\u{201d}: {}",
                scored.explanation,
                score_words(scored.score.as_ref())
            ),
            Err(e) => format!("Not scored: {e}"),
        };
        self.update(|lab| lab.explain_result = message.clone());
        self.set_text(ids::CARD_EXPLAIN_RESULT, &message);
    }

    pub(crate) async fn open_feature(self: &Rc<Self>, feature: usize) {
        if self.state.borrow().location.feature != Some(feature) {
            self.update(|lab| lab.explain_result.clear());
        }
        self.update_page(|state| {
            state.location.feature = Some(feature);
            state.location.view = Some(View::Features);
        });
        self.update_link();
        self.render_view();
        self.render_card();
        self.after_view_change().await;
        if let Some(card) = self.element(ids::FEATURE_CARD) {
            card.scroll_into_view();
        }
    }
}
