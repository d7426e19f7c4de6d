//! Wiring the page's controls to the app.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{Element, HtmlInputElement, HtmlTextAreaElement};

use crate::ui::feature_list::SortKey;
use crate::ui::steer::SteerRow;
use crate::ui::train_form::CorpusKind;
use crate::ui::View;
use crate::web::dom::listen;
use crate::web::platform::{js_error, sleep, window};
use crate::web::{App, input_of, js, select_of};

/// A whole-number `data-*` attribute of an element.
fn index_attribute(element: &Element, name: &str) -> Option<usize> {
    element.get_attribute(name)?.parse().ok()
}

impl App {
    pub(crate) fn on(self: &Rc<Self>, id: &str, event: &str, handler: impl Fn(&Rc<App>) + 'static) {
        let Some(element) = self.element(id) else {
            return;
        };
        let app = Rc::clone(self);
        let closure = Closure::<dyn Fn()>::new(move || handler(&app));
        element
            .add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())
            .ok();
        closure.forget(); // listeners live as long as the page
    }

    pub(crate) fn bind_events(self: &Rc<Self>) {
        if let Some(prompt) = self
            .element("prompt")
            .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
        {
            prompt.set_value(&self.state.borrow().prompt);
        }
        self.on("prompt", "input", |app| {
            let text = app
                .element("prompt")
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
        for id in ["temperature", "top-k", "top-p", "seed", "max-tokens"] {
            self.on(id, "input", |app| {
                let mut state = app.state.borrow_mut();
                state.form.temperature = app.input_value("temperature");
                state.form.top_k = app.input_value("top-k");
                state.form.top_p = app.input_value("top-p");
                state.form.seed = app.input_value("seed");
                state.form.max_tokens = app.input_value("max-tokens");
            });
        }
        self.on("generate", "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.generate().await });
        });
        self.on("stop", "click", |app| {
            app.generation_ticket.set(app.generation_ticket.get() + 1);
        });
        self.on("consent-yes", "click", |app| app.consent.set(Some(true)));
        self.on("consent-no", "click", |app| app.consent.set(Some(false)));
        self.on("dismiss-error", "click", |app| {
            app.update_page(|state| state.dismiss_errors());
            app.render();
        });
        // Show the form's initial values.
        let form = self.state.borrow().form.clone();
        for (id, value) in [
            ("temperature", &form.temperature),
            ("top-k", &form.top_k),
            ("top-p", &form.top_p),
            ("seed", &form.seed),
            ("max-tokens", &form.max_tokens),
        ] {
            if let Some(input) = self
                .element(id)
                .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
            {
                input.set_value(value);
            }
        }
    }

    /// Wire the SAE views' controls.
    pub(crate) fn bind_lab_events(self: &Rc<Self>) {
        for v in View::ALL {
            self.on(&format!("tab-{}", v.name()), "click", move |app| {
                app.update_page(|state| state.location.view = Some(v));
                app.update_link();
                app.render_view();
                let app = Rc::clone(app);
                spawn_local(async move { app.after_view_change().await });
            });
        }
        self.on("sae-select", "change", |app| {
            let id = select_of(app, "sae-select")
                .map(|s| s.value())
                .unwrap_or_default();
            let app = Rc::clone(app);
            spawn_local(async move {
                if id.is_empty() {
                    app.update_page(|state| state.location.sae = None);
                    app.update_page(|state| state.location.recipe = None);
                    app.update(|lab| lab.heat = None);
                    app.update_link();
                    app.render_sae_picker();
                    app.render_heatmap();
                } else {
                    app.choose_sae(id).await;
                }
            });
        });
        self.on("train-start", "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.train().await });
        });
        self.on("train-pause", "click", |app| {
            app.train_control.pause.set(!app.train_control.pause.get());
            app.render_train_progress();
        });
        self.on("train-cancel", "click", |app| {
            app.train_control.cancel.set(true);
        });
        self.on("train-file", "change", |app| {
            let Some(input) = app.element("train-file") else {
                return;
            };
            let app = Rc::clone(app);
            spawn_local(async move {
                let files = JsFuture::from(js::read_input_files(&input)).await;
                match files.map(|f| js::named_files(&f)) {
                    Ok(files) if !files.is_empty() => {
                        let (name, bytes) = files.into_iter().next().unwrap_or_default();
                        match String::from_utf8(bytes) {
                            Ok(text) => {
                                {
                                    let mut lab = app.lab.borrow_mut();
                                    lab.text_file = Some(format!(
                                        "{name}: {} characters",
                                        text.chars().count()
                                    ));
                                    lab.form.corpus = CorpusKind::Text;
                                    lab.form.text = text;
                                }
                                app.read_train_form_keep_text();
                                app.write_train_form();
                                app.render_train_progress();
                            }
                            Err(_) => app.show_error(format!(
                                "{name} is not UTF-8 text; choose a plain text file."
                            )),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        app.show_error(format!("The file could not be read: {}", js_error(e)))
                    }
                }
            });
        });
        self.on("feature-search", "input", |app| {
            app.lab.borrow_mut().query = input_of(app, "feature-search")
                .map(|e| e.value())
                .unwrap_or_default();
            app.render_features();
        });
        self.on("feature-sort", "change", |app| {
            let value = select_of(app, "feature-sort")
                .map(|e| e.value())
                .unwrap_or_default();
            {
                let mut lab = app.lab.borrow_mut();
                lab.sort = SortKey::parse(&value);
                lab.descending = value != "index";
            }
            app.render_features();
        });
        self.on("steer-add", "click", |app| {
            app.read_steer_rows();
            let feature = app
                .state
                .borrow()
                .location
                .feature
                .map(|f| f.to_string())
                .unwrap_or_default();
            app.lab
                .borrow_mut()
                .steer_rows
                .push(SteerRow::adding(feature));
            app.render_steer_rows();
        });
        self.on("steer-rows", "change", |app| {
            app.read_steer_rows();
            app.steering_to_link();
        });
        self.on("steer-run", "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.steer().await });
        });
        self.on("sae-export", "click", |app| app.export_sae());
        self.on("sae-forget", "click", |app| {
            let app = Rc::clone(app);
            spawn_local(async move { app.forget_sae().await });
        });
        self.on("sae-import", "change", |app| {
            let Some(input) = app.element("sae-import") else {
                return;
            };
            let app = Rc::clone(app);
            spawn_local(async move {
                match JsFuture::from(js::read_input_files(&input)).await {
                    Ok(files) => app.import_files(js::named_files(&files)).await,
                    Err(e) => {
                        app.show_error(format!("The files could not be read: {}", js_error(e)))
                    }
                }
                if let Some(input) = input.dyn_ref::<HtmlInputElement>() {
                    input.set_value("");
                }
            });
        });
        if let Some(body) = self.document.body() {
            let app = Rc::clone(self);
            let callback = Closure::<dyn Fn(JsValue)>::new(move |files: JsValue| {
                let app = Rc::clone(&app);
                if let Some(message) = files.as_string() {
                    app.show_error(format!("The dropped files could not be read: {message}"));
                    return;
                }
                spawn_local(async move { app.import_files(js::named_files(&files)).await });
            });
            js::watch_drops(&body, callback.as_ref().unchecked_ref());
            callback.forget();
            // One listener for every clickable feature, token and steering button.
            let app = Rc::clone(self);
            listen(&body, "click", move |event| {
                let Some(target) = event.target().and_then(|t| t.dyn_into::<Element>().ok()) else {
                    return;
                };
                let find = |selector: &str| target.closest(selector).ok().flatten();
                if let Some(button) = find("[data-steer-feature]") {
                    let feature = button
                        .get_attribute("data-steer-feature")
                        .unwrap_or_default();
                    app.read_steer_rows();
                    app.lab
                        .borrow_mut()
                        .steer_rows
                        .push(SteerRow::adding(feature));
                    app.update_page(|state| state.location.view = Some(View::Steer));
                    app.update_link();
                    app.render_view();
                    app.render_steer_rows();
                    app.render_steer();
                } else if let Some(remove) = find("[data-row]") {
                    if let Some(row) = index_attribute(&remove, "data-row") {
                        app.read_steer_rows();
                        let mut lab = app.lab.borrow_mut();
                        if row < lab.steer_rows.len() {
                            lab.steer_rows.remove(row);
                        }
                        drop(lab);
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
        self.on("copy-link", "click", |app| {
            let href = window().location().href().unwrap_or_default();
            if let Some(input) = input_of(app, "share-link") {
                input.set_value(&href);
                input.select();
            }
            let promise = js::copy_text(&href);
            let app = Rc::clone(app);
            spawn_local(async move {
                let copied = JsFuture::from(promise)
                    .await
                    .ok()
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                app.set_text(
                    "share-status",
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
