//! The Circuits view: attribution graphs of the prompt and cross-layer feature graphs, made on
//! this page's model and SAEs (on the page's thread, yielding between backward passes), drawn as
//! SVG, exported and opened as circuit-tracer's graph JSON.

use std::collections::HashMap;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{Element, HtmlInputElement, HtmlSelectElement};

use crate::sae::circuits::file::FileNodeKind;
use crate::sae::circuits::{
    AttributionSettings, CrossLayerMethod, CrossLayerSettings, GraphFile, GraphSae, NamedSae,
    PromptAttribution, attribute_prompt, cross_layer_file,
};
use crate::ui::circuits::{
    GraphKind, GraphPicture, OwnAttribution, SlotInfo, attribution_picture, cross_layer_picture,
    feature_of_node, node_details, pick_graph_saes,
};
use crate::ui::ids;
use crate::ui::lab::LoadedSae;
use crate::web::dom::{append, clear, el, listen, svg_el, svg_text};
use crate::web::{App, files};

/// Held-out windows (and their length) a cross-layer graph reads in the page.
const PAGE_GRAPH_WINDOWS: usize = 8;
const PAGE_GRAPH_CONTEXT: usize = 64;

impl App {
    pub(crate) fn bind_circuits(self: &Rc<Self>) {
        self.on(ids::CIRCUIT_RUN, "click", |app| {
            // Said at once, so nothing reads the last graph's status as this one's.
            app.set_circuit_status("Building the graph…".into());
            let app = Rc::clone(app);
            spawn_local(async move { app.build_graph().await });
        });
        self.on(ids::CIRCUIT_KIND, "change", |app| {
            let kind = app
                .element(ids::CIRCUIT_KIND)
                .and_then(|e| e.dyn_into::<HtmlSelectElement>().ok())
                .and_then(|s| GraphKind::parse(&s.value()))
                .unwrap_or_default();
            app.update(|lab| {
                lab.circuits.kind = kind;
                lab.circuits.threshold = if kind.is_cross_layer() { 0.3 } else { 0.8 };
            });
            app.update_page(|state| {
                state.location.graph = Some(kind);
                state.location.threshold = None;
            });
            app.update_link();
            app.render_circuits();
        });
        self.on(ids::CIRCUIT_THRESHOLD, "input", |app| {
            let value = app
                .input_value(ids::CIRCUIT_THRESHOLD)
                .parse()
                .unwrap_or(0.8);
            app.update(|lab| lab.circuits.threshold = value);
            app.update_page(|state| state.location.threshold = Some(value));
            app.update_link();
            app.draw_graph();
        });
        self.on(ids::CIRCUIT_SEARCH, "input", |app| {
            let search = app.input_value(ids::CIRCUIT_SEARCH);
            app.update(|lab| lab.circuits.search = search);
            app.draw_graph();
        });
        self.on(ids::CIRCUIT_TARGET, "input", |app| {
            let target = app.input_value(ids::CIRCUIT_TARGET);
            app.update_page(|state| {
                state.location.target = (!target.is_empty()).then(|| target.clone())
            });
            app.update(|lab| lab.circuits.target = target);
            app.update_link();
        });
        self.on(ids::CIRCUIT_PROMPT, "input", |app| {
            let text = app.input_value(ids::CIRCUIT_PROMPT);
            app.update_page(|state| state.prompt_changed(text));
            app.update_link();
        });
        self.on(ids::CIRCUIT_EXPORT, "click", |app| app.export_graph());
        self.on(ids::CIRCUIT_OPEN, "change", |app| {
            let Some(input) = app.element(ids::CIRCUIT_OPEN) else {
                return;
            };
            let app = Rc::clone(app);
            spawn_local(async move {
                match files::read_input_files(&input).await {
                    Ok(picked) => {
                        if let Some((name, bytes)) = picked.into_iter().next() {
                            app.open_graph_file(&name, &bytes);
                        }
                    }
                    Err(e) => app.show_error(format!("The file could not be read: {e}")),
                }
                if let Some(input) = input.dyn_ref::<HtmlInputElement>() {
                    input.set_value("");
                }
            });
        });
        self.on(ids::CIRCUIT_VERIFY, "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.verify_selected().await });
        });
        self.on(ids::CIRCUIT_OPEN_CARD, "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.open_selected_card().await });
        });
        if let Some(graph) = self.element(ids::CIRCUIT_GRAPH) {
            let app = Rc::clone(self);
            listen(&graph, "click", move |event| {
                let node = event
                    .target()
                    .and_then(|t| t.dyn_into::<Element>().ok())
                    .and_then(|t| t.closest("[data-node-id]").ok().flatten())
                    .and_then(|n| n.get_attribute("data-node-id"));
                if let Some(node) = node {
                    app.select_node(Some(node));
                }
            });
        }
    }

    /// The view opened (or a link asked for it): its controls from the state, and the graph a
    /// link names built once.
    pub(crate) async fn enter_circuits(self: &Rc<Self>) {
        let (kind, threshold, target, node) = {
            let state = self.state.borrow();
            let l = &state.location;
            (l.graph, l.threshold, l.target.clone(), l.node.clone())
        };
        let has_graph = self.lab.borrow().circuits.graph.is_some();
        self.update(|lab| {
            let c = &mut lab.circuits;
            if let Some(kind) = kind {
                c.kind = kind;
            }
            c.threshold = threshold.unwrap_or(if c.kind.is_cross_layer() { 0.3 } else { 0.8 });
            if let Some(target) = target {
                c.target = target;
            }
        });
        self.render_circuits();
        if kind.is_some() && !has_graph {
            self.build_graph().await;
            if node.is_some() {
                self.select_node(node);
            }
        }
    }

    pub(crate) fn render_circuits(&self) {
        let prompt = self.state.borrow().prompt.clone();
        let (kind, threshold, target, search, status) = {
            let lab = self.lab.borrow();
            let c = &lab.circuits;
            (
                c.kind,
                c.threshold,
                c.target.clone(),
                c.search.clone(),
                c.status.clone(),
            )
        };
        if let Some(select) = self
            .element(ids::CIRCUIT_KIND)
            .and_then(|e| e.dyn_into::<HtmlSelectElement>().ok())
        {
            select.set_value(kind.name());
        }
        for (id, value) in [
            (ids::CIRCUIT_THRESHOLD, format!("{threshold}")),
            (ids::CIRCUIT_TARGET, target),
            (ids::CIRCUIT_SEARCH, search),
            (ids::CIRCUIT_PROMPT, prompt),
        ] {
            if let Some(input) = self
                .element(id)
                .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
                && input.value() != value
            {
                input.set_value(&value);
            }
        }
        for id in [ids::CIRCUIT_TARGET, ids::CIRCUIT_PROMPT] {
            if let Some(input) = self.element(id) {
                input
                    .toggle_attribute_with_force("disabled", kind.is_cross_layer())
                    .ok();
            }
        }
        self.set_text(ids::CIRCUIT_STATUS, &status);
        self.set_text(
            ids::CIRCUIT_SAES,
            &match self.graph_slot_ids() {
                ids if ids.is_empty() => "No SAE on the residual stream is here yet.".into(),
                ids => format!("Reads: {}", ids.join(", ")),
            },
        );
        self.draw_graph();
    }

    fn graph_slot_ids(&self) -> Vec<String> {
        let chosen = self.selected_sae();
        let lab = self.lab.borrow();
        let slots: Vec<SlotInfo> = lab
            .saes
            .iter()
            .map(|s| SlotInfo {
                id: &s.id,
                hook_name: &s.hook_name,
                architecture: &s.architecture,
            })
            .collect();
        pick_graph_saes(&slots, chosen.as_deref())
    }

    /// The graph's SAEs, loaded, on the model as it is processed now.
    async fn graph_saes_here(self: &Rc<Self>) -> Result<Vec<(String, Rc<LoadedSae>)>, String> {
        let ids = self.graph_slot_ids();
        if ids.is_empty() {
            return Err("A graph needs SAEs on the residual stream (hook_resid_pre, _mid or _post); train or open some first.".into());
        }
        let processing = self.loaded().map_err(|e| e.to_string())?.processing;
        let mut out = Vec::new();
        for id in ids {
            let loaded = self.load_slot(&id).await?;
            if loaded.model_processing != processing {
                return Err(format!(
                    "The SAE {id} reads the model processed otherwise than it runs now; choose it to reload the model that way, or leave it out."
                ));
            }
            out.push((id, loaded));
        }
        Ok(out)
    }

    fn set_circuit_status(&self, status: String) {
        self.set_text(ids::CIRCUIT_STATUS, &status);
        self.update(|lab| lab.circuits.status = status);
    }

    pub(crate) async fn build_graph(self: &Rc<Self>) {
        let kind = self.lab.borrow().circuits.kind;
        let started = crate::web::platform::now_ms();
        let result = match kind {
            GraphKind::Attribution => self.attribute_here().await,
            GraphKind::Cosine => self.cross_layer_here(CrossLayerMethod::Cosine).await,
            GraphKind::Ablation => self.cross_layer_here(CrossLayerMethod::Ablation).await,
        };
        let seconds = (crate::web::platform::now_ms() - started) / 1000.0;
        match result {
            Ok(summary) => self.set_circuit_status(format!("{summary} Made in {seconds:.1} s.")),
            Err(e) => {
                self.set_circuit_status(String::new());
                self.show_error(format!("The graph could not be made: {e}"));
            }
        }
        self.update_page(|state| state.location.graph = Some(kind));
        self.update_link();
        self.render_circuits();
        self.render_node();
    }

    /// An explanation per (layer in forward order, feature), from the feature lists held.
    fn explanations(&self, slots: &[String]) -> Vec<HashMap<usize, String>> {
        let lab = self.lab.borrow();
        slots
            .iter()
            .map(|id| {
                lab.slot(id)
                    .and_then(|s| s.features.as_ref())
                    .map(|f| {
                        f.rows
                            .borrow()
                            .iter()
                            .filter_map(|r| r.explanation.clone().map(|e| (r.index, e)))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    async fn attribute_here(self: &Rc<Self>) -> Result<String, String> {
        let loaded = self.loaded().map_err(|e| e.to_string())?;
        let saes = self.graph_saes_here().await?;
        let prompt = self.state.borrow().prompt.clone();
        let target_text = self.lab.borrow().circuits.target.clone();
        let slots: Vec<String> = saes.iter().map(|(id, _)| id.clone()).collect();
        let explanations = self.explanations(&slots);
        let explain =
            |layer: usize, feature: usize| explanations.get(layer)?.get(&feature).cloned();
        let app = Rc::clone(self);
        let PromptAttribution {
            graph,
            file,
            ids: ids_,
            sae_ids: slots,
            target_text,
        } = attribute_prompt(
            &loaded,
            &named(&saes),
            &prompt,
            Some(target_text.as_str()),
            &AttributionSettings::default(),
            &explain,
            move |fraction| {
                app.set_text(
                    ids::CIRCUIT_STATUS,
                    &format!("Attributing: {:.0}%", fraction * 100.0),
                )
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let n_layers = loaded.model.dims().n_layers;
        let node_index = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (crate::sae::circuits::file::node_id(n, n_layers), i))
            .collect();
        let summary = format!(
            "{} nodes and {} links kept of {} nodes, explaining \"{target_text}\" (p = {:.3}); replacement score {:.2}, completeness {:.2}.",
            file.nodes.len(),
            file.links.len(),
            graph.nodes.len(),
            file.nodes
                .iter()
                .find(|n| n.is_target_logit)
                .map_or(0.0, |n| n.token_prob),
            graph.replacement_score,
            graph.completeness_score
        );
        self.update(|lab| {
            let c = &mut lab.circuits;
            c.graph = Some(Rc::new(file));
            c.own = Some(Rc::new(OwnAttribution {
                graph,
                ids: ids_,
                slots,
                node_index,
            }));
            c.selected = None;
            c.check.clear();
        });
        Ok(summary)
    }

    async fn cross_layer_here(self: &Rc<Self>, method: CrossLayerMethod) -> Result<String, String> {
        let loaded = self.loaded().map_err(|e| e.to_string())?;
        let saes = self.graph_saes_here().await?;
        self.read_train_form();
        let corpus = self
            .lab
            .borrow()
            .form
            .parse(&self.hook_names())
            .map(|c| c.corpus)
            .map_err(|e| format!("the Train view's corpus is not usable: {e}"))?;
        let windows: Vec<Vec<u32>> = crate::sae::pipeline::held_out_windows(
            loaded.tokenizer().map_err(|e| e.to_string())?,
            &corpus,
            PAGE_GRAPH_CONTEXT,
            PAGE_GRAPH_WINDOWS,
        )
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|w| w.ids)
        .collect();
        let slots: Vec<String> = saes.iter().map(|(id, _)| id.clone()).collect();
        let explanations = self.explanations(&slots);
        let explain =
            |layer: usize, feature: usize| explanations.get(layer)?.get(&feature).cloned();
        let app = Rc::clone(self);
        let (graph, file) = cross_layer_file(
            &loaded,
            &named(&saes),
            &windows,
            &CrossLayerSettings {
                method,
                // Half the CLI's sources: ablations run on the page's own thread.
                sources: CrossLayerSettings::default().sources / 2,
                ..CrossLayerSettings::default()
            },
            &explain,
            move |fraction| {
                app.set_text(
                    ids::CIRCUIT_STATUS,
                    &format!("Linking features: {:.0}%", fraction * 100.0),
                )
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let summary = format!(
            "{} features and {} links between {} SAEs ({}).",
            file.nodes.len(),
            file.links.len(),
            slots.len(),
            match method {
                CrossLayerMethod::Cosine => "decoder cosine".to_string(),
                CrossLayerMethod::Ablation =>
                    format!("ablation over {} held-out tokens", graph.tokens),
            }
        );
        self.update(|lab| {
            let c = &mut lab.circuits;
            c.graph = Some(Rc::new(file));
            c.own = None;
            c.selected = None;
            c.check.clear();
        });
        Ok(summary)
    }

    fn picture(&self) -> Option<GraphPicture> {
        let lab = self.lab.borrow();
        let c = &lab.circuits;
        let file = c.graph.as_ref()?;
        let cross = file.is_cross_layer();
        Some(if cross {
            cross_layer_picture(file, c)
        } else {
            attribution_picture(file, c)
        })
    }

    pub(crate) fn draw_graph(&self) {
        let Some(holder) = self.element(ids::CIRCUIT_GRAPH) else {
            return;
        };
        clear(&holder);
        let Some(picture) = self.picture() else {
            return;
        };
        let d = &self.document;
        let svg = svg_el(
            d,
            "svg",
            &[
                ("width", format!("{:.0}", picture.width)),
                ("height", format!("{:.0}", picture.height)),
                (
                    "viewBox",
                    format!("0 0 {:.0} {:.0}", picture.width, picture.height),
                ),
                ("role", "img".into()),
                ("aria-label", "feature graph".into()),
            ],
        );
        for e in &picture.edges {
            let class = format!(
                "edge {}{}",
                if e.positive { "pos" } else { "neg" },
                if e.touches_selected { " touch" } else { "" }
            );
            append(
                &svg,
                &svg_el(
                    d,
                    "line",
                    &[
                        ("x1", format!("{:.1}", e.from.0)),
                        ("y1", format!("{:.1}", e.from.1)),
                        ("x2", format!("{:.1}", e.to.0)),
                        ("y2", format!("{:.1}", e.to.1)),
                        ("stroke-width", format!("{:.2}", e.width)),
                        ("class", class),
                    ],
                ),
            );
        }
        let file = self.lab.borrow().circuits.graph.clone();
        let Some(file) = file else { return };
        for n in &picture.nodes {
            let kind = match n.kind {
                FileNodeKind::Feature { .. } => "feature",
                FileNodeKind::Error => "error",
                FileNodeKind::Embedding => "embedding",
                FileNodeKind::Logit => "logit",
            };
            let class = format!("node {kind}{}", if n.highlighted { " on" } else { "" });
            let shape = if matches!(n.kind, FileNodeKind::Feature { .. }) {
                svg_el(
                    d,
                    "circle",
                    &[
                        ("cx", format!("{:.1}", n.x)),
                        ("cy", format!("{:.1}", n.y)),
                        ("r", format!("{:.1}", n.radius)),
                        ("class", class),
                    ],
                )
            } else {
                // Errors, embeddings and the logit are squares.
                svg_el(
                    d,
                    "rect",
                    &[
                        ("x", format!("{:.1}", n.x - n.radius)),
                        ("y", format!("{:.1}", n.y - n.radius)),
                        ("width", format!("{:.1}", 2.0 * n.radius)),
                        ("height", format!("{:.1}", 2.0 * n.radius)),
                        ("class", class),
                    ],
                )
            };
            shape
                .set_attribute("data-node-id", &file.nodes[n.index].node_id)
                .ok();
            let title = svg_el(d, "title", &[]);
            title.set_text_content(Some(&n.title));
            append(&shape, &title);
            append(&svg, &shape);
        }
        let label =
            |x: f64, y: f64, anchor: &str, text: &str| svg_text(d, x, y, anchor, "label", text);
        for (y, text) in &picture.row_labels {
            append(&svg, &label(4.0, *y + 3.0, "start", text));
        }
        for (x, text) in &picture.column_labels {
            append(&svg, &label(*x, picture.height - 8.0, "middle", text));
        }
        append(&holder, &svg);
        if picture.edges_left_out > 0 {
            append(
                &holder,
                &el(
                    d,
                    "p",
                    "muted",
                    &format!(
                        "{} weaker links are not drawn; raise the threshold or search to see fewer.",
                        picture.edges_left_out
                    ),
                ),
            );
        }
    }

    pub(crate) fn select_node(self: &Rc<Self>, node: Option<String>) {
        self.update(|lab| {
            lab.circuits.selected = node.clone();
            lab.circuits.check.clear();
        });
        self.update_page(|state| state.location.node = node);
        self.update_link();
        self.draw_graph();
        self.render_node();
    }

    fn render_node(&self) {
        let Some(holder) = self.element(ids::CIRCUIT_NODE) else {
            return;
        };
        clear(&holder);
        let lab = self.lab.borrow();
        let c = &lab.circuits;
        let lines = c
            .graph
            .as_ref()
            .zip(c.selected.as_ref())
            .and_then(|(file, id)| node_details(file, id));
        match lines {
            Some(lines) => {
                for (i, line) in lines.iter().enumerate() {
                    append(
                        &holder,
                        &el(&self.document, "p", if i == 0 { "" } else { "muted" }, line),
                    );
                }
            }
            None => holder.set_text_content(Some("Click a node.")),
        }
        self.set_text(ids::CIRCUIT_CHECK, &c.check);
    }

    async fn verify_selected(self: &Rc<Self>) {
        let (own, selected) = {
            let lab = self.lab.borrow();
            (lab.circuits.own.clone(), lab.circuits.selected.clone())
        };
        let message = match (own, selected) {
            (_, None) => "Click a node first.".to_string(),
            (None, _) => {
                "Only graphs made here can be verified (an opened file has no model run behind it)."
                    .into()
            }
            (Some(own), Some(id)) => match own.node_index.get(&id) {
                None => "This node cannot be ablated.".into(),
                Some(&node) => self.verify(&own, node).await,
            },
        };
        self.update(|lab| lab.circuits.check = message.clone());
        self.set_text(ids::CIRCUIT_CHECK, &message);
    }

    async fn verify(self: &Rc<Self>, own: &OwnAttribution, node: usize) -> String {
        let loaded = match self.loaded() {
            Ok(l) => l,
            Err(e) => return e.to_string(),
        };
        let mut saes = Vec::new();
        for id in &own.slots {
            match self.load_slot(id).await {
                Ok(l) => saes.push(l),
                Err(e) => return e,
            }
        }
        let graph_saes: Vec<GraphSae> = saes.iter().map(|l| l.graph_sae()).collect();
        match crate::sae::circuits::attribution::verify_node(
            &loaded.model,
            &graph_saes,
            &own.ids,
            &own.graph,
            node,
        )
        .await
        {
            Ok(check) => format!(
                "Removing it moves the target's logit by {:+.3} in the real model; the graph predicted {:+.3} (to first order, with attention and layer norms frozen).",
                check.ablated, check.attributed
            ),
            Err(e) => format!("Not verified: {e}"),
        }
    }

    async fn open_selected_card(self: &Rc<Self>) {
        let found = {
            let lab = self.lab.borrow();
            let held: Vec<&str> = lab.saes.iter().map(|s| s.id.as_str()).collect();
            lab.circuits
                .graph
                .as_ref()
                .zip(lab.circuits.selected.as_ref())
                .and_then(|(file, id)| feature_of_node(file, id, &held))
        };
        match found {
            Some((slot, feature)) => {
                if self.selected_sae().as_deref() != Some(slot.as_str()) {
                    self.choose_sae(slot).await;
                }
                self.open_feature(feature).await;
            }
            None => self.show_error(
                "Choose a feature node of a graph made from SAEs this page holds.".into(),
            ),
        }
    }

    fn export_graph(&self) {
        let file = self.lab.borrow().circuits.graph.clone();
        let Some(file) = file else {
            self.show_error("Build or open a graph first.".into());
            return;
        };
        match file.to_json() {
            Ok(json) => files::download(
                &format!("{}.json", file.metadata.slug),
                json.as_bytes(),
                "application/json",
            ),
            Err(e) => self.show_error(format!("The graph could not be written: {e}")),
        }
    }

    fn open_graph_file(self: &Rc<Self>, name: &str, bytes: &[u8]) {
        match GraphFile::parse(bytes) {
            Ok(file) => {
                let cross = file.is_cross_layer();
                let summary = format!(
                    "Opened {name}: {} nodes and {} links{}.",
                    file.nodes.len(),
                    file.links.len(),
                    if file.metadata.prompt.is_empty() {
                        String::new()
                    } else {
                        format!(" for \"{}\"", file.metadata.prompt)
                    }
                );
                self.update(|lab| {
                    let c = &mut lab.circuits;
                    c.threshold = if cross {
                        0.3
                    } else {
                        file.metadata.node_threshold.unwrap_or(0.8)
                    };
                    c.graph = Some(Rc::new(file));
                    c.own = None;
                    c.selected = None;
                    c.check.clear();
                    c.status = summary;
                });
                self.render_circuits();
                self.render_node();
            }
            Err(e) => self.show_error(format!("{name} could not be opened: {e}")),
        }
    }
}

/// The graph's SAEs under their slot ids.
fn named(saes: &[(String, Rc<LoadedSae>)]) -> Vec<NamedSae<'_>> {
    saes.iter()
        .map(|(id, l)| NamedSae {
            sae: &l.sae,
            hook: l.hook,
            id: id.clone(),
            neuronpedia_id: l.neuronpedia_id.clone(),
        })
        .collect()
}
