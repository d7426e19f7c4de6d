//! Wiring the page's controls to the app, one group of controls per function. Every handler
//! changes state through `App::update`/`update_page` and then redraws what it changed.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{Element, HtmlInputElement, HtmlTextAreaElement};

use crate::sae::metrics::Figure;
use crate::ui::feature_list::SortKey;
use crate::ui::steer::SteerRow;
use crate::ui::train_form::CorpusKind;
use crate::ui::{View, ids};
use crate::web::dom::listen;
use crate::web::platform::{copy_text, sleep, window};
use crate::web::{App, files, input_of, select_of};

/// The generation form's inputs.
const GENERATION_INPUTS: [&str; 5] = [
    ids::TEMPERATURE,
    ids::TOP_K,
    ids::TOP_P,
    ids::SEED,
    ids::MAX_TOKENS,
];

/// A whole-number `data-*` attribute of an element.
fn index_attribute(element: &Element, name: &str) -> Option<usize> {
    element.get_attribute(name)?.parse().ok()
}

impl App {
    /// Call `handler` on `event` at the element `id`, for as long as the page lives.
    pub(crate) fn on(self: &Rc<Self>, id: &str, event: &str, handler: impl Fn(&Rc<App>) + 'static) {
        let Some(element) = self.element(id) else {
            return;
        };
        let app = Rc::clone(self);
        listen(&element, event, move |_| handler(&app));
    }

    /// Wire every control of the page.
    pub(crate) fn bind_events(self: &Rc<Self>) {
        self.bind_prompt();
        self.bind_generation();
        self.bind_notices();
        self.bind_view_tabs();
        self.bind_sae_bar();
        self.bind_train();
        self.bind_feature_list();
        self.bind_steer();
        self.bind_drops();
        self.bind_clicks();
        self.bind_share();
        self.bind_model_controls();
        self.bind_evaluate();
        self.bind_circuits();
        self.bind_unload();
    }

    /// Closing or reloading while an SAE trains asks first (the browser shows its own question).
    fn bind_unload(self: &Rc<Self>) {
        let app = Rc::clone(self);
        let options = gloo_events::EventListenerOptions::enable_prevent_default();
        gloo_events::EventListener::new_with_options(
            &window(),
            "beforeunload",
            options,
            move |event| {
                if app.lab.borrow().train.active {
                    event.prevent_default();
                    // Older browsers ask only when returnValue holds text.
                    let text =
                        "An SAE is training; leaving loses the work since its last checkpoint.";
                    js_sys::Reflect::set(event, &"returnValue".into(), &text.into()).ok();
                }
            },
        )
        .forget();
    }

    /// Typing in the prompt: the link follows at once, the analysis once typing settles.
    fn bind_prompt(self: &Rc<Self>) {
        if let Some(prompt) = self
            .element(ids::PROMPT)
            .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
        {
            prompt.set_value(&self.state.borrow().prompt);
        }
        self.on(ids::PROMPT, "input", |app| {
            let text = app
                .element(ids::PROMPT)
                .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
                .map(|e| e.value())
                .unwrap_or_default();
            app.update_page(|state| state.prompt_changed(text));
            app.update_link();
            let app = Rc::clone(app);
            spawn_local(async move {
                let ticket = app.analysis_ticket.get() + 1;
                app.analysis_ticket.set(ticket);
                sleep(150).await; // let typing settle
                if app.analysis_ticket.get() == ticket {
                    app.analyse().await;
                    app.render();
                }
            });
        });
    }

    /// The generation form, Generate and Stop.
    fn bind_generation(self: &Rc<Self>) {
        for id in GENERATION_INPUTS {
            self.on(id, "input", |app| {
                let [temperature, top_k, top_p, seed, max_tokens] =
                    GENERATION_INPUTS.map(|id| app.input_value(id));
                app.update_page(|state| {
                    state.form.temperature = temperature;
                    state.form.top_k = top_k;
                    state.form.top_p = top_p;
                    state.form.seed = seed;
                    state.form.max_tokens = max_tokens;
                });
            });
        }
        self.on(ids::GENERATE, "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.generate().await });
        });
        self.on(ids::STOP, "click", |app| {
            app.generation_ticket.set(app.generation_ticket.get() + 1);
        });
        // Show the form's initial values.
        let form = self.state.borrow().form.clone();
        let values = [
            &form.temperature,
            &form.top_k,
            &form.top_p,
            &form.seed,
            &form.max_tokens,
        ];
        for (id, value) in GENERATION_INPUTS.into_iter().zip(values) {
            if let Some(input) = input_of(self, id) {
                input.set_value(value);
            }
        }
    }

    /// The consent question's answers and the error box's dismissal.
    fn bind_notices(self: &Rc<Self>) {
        self.on(ids::CONSENT_YES, "click", |app| app.consent.set(Some(true)));
        self.on(ids::CONSENT_NO, "click", |app| app.consent.set(Some(false)));
        self.on(ids::DISMISS_ERROR, "click", |app| {
            app.update_page(|state| state.dismiss_errors());
            app.render();
        });
    }

    fn bind_view_tabs(self: &Rc<Self>) {
        for v in View::ALL {
            self.on(&ids::tab(v), "click", move |app| {
                app.update_page(|state| state.location.view = Some(v));
                app.update_link();
                app.render_view();
                let app = Rc::clone(app);
                spawn_local(async move { app.after_view_change().await });
            });
        }
    }

    /// Choosing an SAE (or none), export, forget, import.
    fn bind_sae_bar(self: &Rc<Self>) {
        self.on(ids::SAE_SELECT, "change", |app| {
            let id = select_of(app, ids::SAE_SELECT)
                .map(|s| s.value())
                .unwrap_or_default();
            let app = Rc::clone(app);
            spawn_local(async move {
                if id.is_empty() {
                    app.update_page(|state| {
                        state.location.sae = None;
                        state.location.recipe = None;
                    });
                    app.update(|lab| lab.heat = None);
                    app.update_link();
                    app.render_sae_picker();
                    app.render_heatmap();
                } else {
                    app.choose_sae(id).await;
                }
            });
        });
        self.on(ids::SAE_EXPORT, "click", |app| app.export_sae());
        self.on(ids::WORKER_STOP, "click", |app| app.stop_worker());
        for (id, resume) in [
            (ids::TRAIN_RESUME_GO, true),
            (ids::TRAIN_RESUME_DISCARD, false),
        ] {
            self.on(id, "click", move |app| {
                let app = Rc::clone(app);
                spawn_local(async move { app.answer_resume(resume).await });
            });
        }
        self.on(ids::SAE_FORGET, "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.forget_sae().await });
        });
        self.on(ids::SAE_IMPORT, "change", |app| {
            let Some(input) = app.element(ids::SAE_IMPORT) else {
                return;
            };
            let app = Rc::clone(app);
            spawn_local(async move {
                match files::read_input_files(&input).await {
                    Ok(files) => app.import_files(files).await,
                    Err(e) => app.show_error(format!("The files could not be read: {e}")),
                }
                if let Some(input) = input.dyn_ref::<HtmlInputElement>() {
                    input.set_value("");
                }
            });
        });
    }

    /// Train, pause/resume, cancel, and a text file to train on.
    fn bind_train(self: &Rc<Self>) {
        self.on(ids::TRAIN_START, "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.train().await });
        });
        self.on(ids::TRAIN_PAUSE, "click", |app| {
            app.train_control.pause.set(!app.train_control.pause.get());
            app.render_train_progress();
        });
        self.on(ids::TRAIN_CANCEL, "click", |app| {
            app.train_control.cancel.set(true);
        });
        self.on(ids::TRAIN_FILE, "change", |app| {
            let Some(input) = app.element(ids::TRAIN_FILE) else {
                return;
            };
            let app = Rc::clone(app);
            spawn_local(async move { app.read_training_text(&input).await });
        });
    }

    /// The picked text file becomes the training corpus.
    async fn read_training_text(self: &Rc<Self>, input: &Element) {
        match files::read_input_files(input).await {
            Ok(files) if !files.is_empty() => {
                let (name, bytes) = files.into_iter().next().unwrap_or_default();
                match String::from_utf8(bytes) {
                    Ok(text) => {
                        self.update(|lab| {
                            lab.text_file =
                                Some(format!("{name}: {} characters", text.chars().count()));
                            lab.form.corpus = CorpusKind::Text;
                            lab.form.text = text;
                        });
                        self.read_train_form_keep_text();
                        self.write_train_form();
                        self.render_train_progress();
                    }
                    Err(_) => self.show_error(format!(
                        "{name} is not UTF-8 text; choose a plain text file."
                    )),
                }
            }
            Ok(_) => {}
            Err(e) => self.show_error(format!("The file could not be read: {e}")),
        }
    }

    /// The feature list's search and sort.
    fn bind_feature_list(self: &Rc<Self>) {
        self.on(ids::FEATURE_SEARCH, "input", |app| {
            let query = input_of(app, ids::FEATURE_SEARCH)
                .map(|e| e.value())
                .unwrap_or_default();
            app.update(|lab| lab.query = query);
            app.render_features();
        });
        self.on(ids::FEATURE_SORT, "change", |app| {
            let value = select_of(app, ids::FEATURE_SORT)
                .map(|e| e.value())
                .unwrap_or_default();
            app.update(|lab| {
                lab.sort = SortKey::parse(&value);
                lab.descending = value != "index";
            });
            app.render_features();
        });
    }

    /// Adding rows, editing them (the link follows), and running the comparison.
    fn bind_evaluate(self: &Rc<Self>) {
        self.on(ids::EVAL_RUN, "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.evaluate_chosen().await });
        });
        for (select, is_x) in [(ids::EVAL_PARETO_X, true), (ids::EVAL_PARETO_Y, false)] {
            self.on(select, "change", move |app| {
                let value = select_of(app, select)
                    .map(|e| e.value())
                    .unwrap_or_default();
                if let Some(figure) = Figure::parse(&value) {
                    app.update(|lab| {
                        if is_x {
                            lab.pareto_axes.0 = figure;
                        } else {
                            lab.pareto_axes.1 = figure;
                        }
                    });
                    app.render_evaluate();
                }
            });
        }
    }

    fn bind_steer(self: &Rc<Self>) {
        self.on(ids::STEER_ADD, "click", |app| {
            app.read_steer_rows();
            let feature = app
                .state
                .borrow()
                .location
                .feature
                .map(|f| f.to_string())
                .unwrap_or_default();
            app.update(|lab| lab.steer_rows.push(SteerRow::adding(feature)));
            app.render_steer_rows();
        });
        self.on(ids::STEER_ROWS, "change", |app| {
            app.read_steer_rows();
            app.steering_to_link();
        });
        self.on(ids::STEER_RUN, "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.steer().await });
        });
    }

    /// SAE files dropped anywhere on the page are imported.
    fn bind_drops(self: &Rc<Self>) {
        let Some(body) = self.document.body() else {
            return;
        };
        let app = Rc::clone(self);
        files::watch_drops(&body, move |files| match files {
            Ok(files) => {
                let app = Rc::clone(&app);
                spawn_local(async move { app.import_files(files).await });
            }
            Err(e) => app.show_error(format!("The dropped files could not be read: {e}")),
        });
    }

    /// One listener for every clickable feature, token, steering button and chart dot, which
    /// the views create and recreate.
    fn bind_clicks(self: &Rc<Self>) {
        let Some(body) = self.document.body() else {
            return;
        };
        let app = Rc::clone(self);
        listen(&body, "click", move |event| {
            let Some(target) = event.target().and_then(|t| t.dyn_into::<Element>().ok()) else {
                return;
            };
            let find = |selector: &str| target.closest(selector).ok().flatten();
            if let Some(button) = find("[data-damaged-export]") {
                let id = button
                    .get_attribute("data-damaged-export")
                    .unwrap_or_default();
                let app = Rc::clone(&app);
                spawn_local(async move { app.export_damaged(&id).await });
            } else if let Some(button) = find("[data-damaged-remove]") {
                let id = button
                    .get_attribute("data-damaged-remove")
                    .unwrap_or_default();
                let app = Rc::clone(&app);
                spawn_local(async move { app.remove_damaged(&id).await });
            } else if let Some(button) = find("[data-explain-feature]") {
                if let Some(f) = index_attribute(&button, "data-explain-feature") {
                    let app = Rc::clone(&app);
                    spawn_local(async move { app.score_explanation(f).await });
                }
            } else if let Some(button) = find("[data-steer-feature]") {
                let feature = button
                    .get_attribute("data-steer-feature")
                    .unwrap_or_default();
                app.steer_with(feature);
            } else if let Some(remove) = find("[data-row]") {
                if let Some(row) = index_attribute(&remove, "data-row") {
                    app.read_steer_rows();
                    app.update(|lab| {
                        if row < lab.steer_rows.len() {
                            lab.steer_rows.remove(row);
                        }
                    });
                    app.render_steer_rows();
                    app.steering_to_link();
                }
            } else if let Some(token) = find("[data-token]") {
                if let Some(i) = index_attribute(&token, "data-token") {
                    app.update(|lab| lab.token_focus = Some(i));
                    app.render_heatmap();
                }
            } else if let Some(feature) = find("[data-feature]") {
                if let Some(f) = index_attribute(&feature, "data-feature") {
                    let app = Rc::clone(&app);
                    spawn_local(async move { app.open_feature(f).await });
                }
            } else if let Some(dot) = find("circle[data-sae]")
                && let Some(id) = dot.get_attribute("data-sae")
            {
                let app = Rc::clone(&app);
                spawn_local(async move { app.choose_sae(id).await });
            }
        });
    }

    /// A card's "Steer with this feature": a new row, and the steer view.
    fn steer_with(&self, feature: String) {
        self.read_steer_rows();
        self.update(|lab| lab.steer_rows.push(SteerRow::adding(feature)));
        self.update_page(|state| state.location.view = Some(View::Steer));
        self.update_link();
        self.render_view();
        self.render_steer_rows();
        self.render_steer();
    }

    /// Copy the link.
    fn bind_share(self: &Rc<Self>) {
        self.on(ids::COPY_LINK, "click", |app| {
            let href = window().location().href().unwrap_or_default();
            if let Some(input) = input_of(app, ids::SHARE_LINK) {
                input.set_value(&href);
                input.select();
            }
            let app = Rc::clone(app);
            spawn_local(async move {
                let copied = copy_text(&href).await;
                app.set_text(
                    ids::SHARE_STATUS,
                    if copied {
                        "Copied."
                    } else {
                        "Select and copy the link above."
                    },
                );
            });
        });
    }
}
