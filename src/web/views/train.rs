//! The train view: the form, one run (in the worker on the CPU path, in the page on WebGPU), its live charts.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::HtmlTextAreaElement;

use crate::sae::pipeline::{Reporter, ResumePoint, TrainOptions, train_sae};
use crate::sae::saelens::SaeFiles;
use crate::sae::train::{Control, Progress, SaeTrainer, SaeTrainingConfig, TrainerCheckpoint};
use crate::ui::chart::Frame;
use crate::ui::ids;
use crate::ui::lab::{Origin, SavedRun, TrainRun};
use crate::ui::train_form::{CorpusKind, TrainForm, sentence};
use crate::ui::worker_protocol::ResumeFrom;
use crate::web::dom::{append, clear, el, line_chart};
use crate::web::platform::{now_ms, random_id};
use crate::web::{App, input_of, select_of, storage};

impl App {
    pub(crate) fn read_train_form(&self) {
        let value = |id: &str| input_of(self, id).map(|e| e.value()).unwrap_or_default();
        let select = |id: &str| select_of(self, id).map(|e| e.value()).unwrap_or_default();
        let text = self
            .element(ids::TRAIN_TEXT)
            .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
            .map(|e| e.value())
            .unwrap_or_default();
        let corpus = select(ids::TRAIN_CORPUS);
        self.update(|lab| {
            let form = &mut lab.form;
            form.corpus = CorpusKind::from_name(&corpus).unwrap_or(CorpusKind::TinyTales);
            form.text = text;
            form.hook = select(ids::TRAIN_HOOK);
            form.architecture = select(ids::TRAIN_ARCH);
            form.k = value(ids::TRAIN_K);
            form.expansion = value(ids::TRAIN_EXPANSION);
            form.tokens = value(ids::TRAIN_TOKENS);
            form.batch_size = value(ids::TRAIN_BATCH);
            form.learning_rate = value(ids::TRAIN_LR);
            form.sparsity = value(ids::TRAIN_SPARSITY);
            form.seed = value(ids::TRAIN_SEED);
        });
    }

    pub(crate) fn write_train_form(&self) {
        let lab = self.lab.borrow();
        let form = &lab.form;
        if let Some(hook) = select_of(self, ids::TRAIN_HOOK) {
            if hook.length() == 0 {
                for name in self.hook_names() {
                    let option = el(&self.document, "option", "", &name);
                    option.set_attribute("value", &name).ok();
                    hook.append_child(&option).ok();
                }
            }
            hook.set_value(&form.hook);
        }
        if let Some(arch) = select_of(self, ids::TRAIN_ARCH) {
            arch.set_value(&form.architecture);
        }
        if let Some(corpus) = select_of(self, ids::TRAIN_CORPUS) {
            corpus.set_value(form.corpus.name());
        }
        if let Some(text) = self
            .element(ids::TRAIN_TEXT)
            .and_then(|e| e.dyn_into::<HtmlTextAreaElement>().ok())
        {
            text.set_value(&form.text);
        }
        for (id, value) in [
            (ids::TRAIN_K, &form.k),
            (ids::TRAIN_EXPANSION, &form.expansion),
            (ids::TRAIN_TOKENS, &form.tokens),
            (ids::TRAIN_BATCH, &form.batch_size),
            (ids::TRAIN_LR, &form.learning_rate),
            (ids::TRAIN_SPARSITY, &form.sparsity),
            (ids::TRAIN_SEED, &form.seed),
        ] {
            if let Some(input) = input_of(self, id) {
                input.set_value(value);
            }
        }
    }

    /// Train an SAE from the form: capture, train with live charts, evaluate, keep. On the CPU
    /// path the work runs in a Web Worker; on WebGPU in the page (the GPU does the work).
    pub(crate) async fn train(self: &Rc<Self>) {
        if self.lab.borrow().train.active {
            return;
        }
        self.read_train_form();
        let form = self.lab.borrow().form.clone();
        let config = match form.parse(&self.hook_names()) {
            Ok(config) => config,
            Err(message) => {
                self.show_error(message);
                return;
            }
        };
        self.run_training(config, None).await;
    }

    /// Train `config`, from scratch or on from a kept checkpoint. Checkpoints are kept in
    /// browser storage as it goes; the kept one is dropped once the run ends or is cancelled.
    async fn run_training(
        self: &Rc<Self>,
        config: SaeTrainingConfig,
        resume: Option<(ResumeFrom, Vec<u8>)>,
    ) {
        // A run that would not fit is refused before the worker or the GPU allocates anything.
        if let Err(e) = self.check_training_memory(&config) {
            self.show_error(e);
            return;
        }
        self.train_control.pause.set(false);
        self.train_control.cancel.set(false);
        self.update(|lab| lab.train = TrainRun::starting());
        self.render_train();
        let on_gpu = self.on_gpu();
        let started = now_ms();
        if resume.is_none() {
            // A new run: an older kept one would be offered after a reload before this one's
            // first checkpoint.
            storage::delete_run().await.ok();
        }
        let files = if on_gpu {
            self.train_in_page(config, resume).await
        } else {
            self.train_in_worker(config, resume).await
        };
        if files.is_ok() {
            storage::delete_run().await.ok();
        }
        let seconds = (now_ms() - started) / 1000.0;
        let result = match files {
            Ok(Some(files)) => {
                let id = format!("tab-{}", random_id());
                let zip = files.to_zip(&id);
                match self.add_files(&id, files, Origin::Stored).await {
                    Ok(()) => {
                        if let Err(e) = self.keep_in_browser(&id, &zip).await {
                            self.show_error(format!(
                                "The SAE was trained but could not be kept in browser storage: {e}."
                            ));
                        }
                        Ok(Some(id))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        self.update(|lab| lab.train.finish(&result, seconds));
        if let Err(e) = &result {
            self.show_error(format!("Training failed: {e}"));
        }
        self.render_train();
        if let Ok(Some(id)) = result {
            self.choose_sae(id).await;
        }
    }

    /// Keep a checkpoint of the run in progress in browser storage (a failure only means a
    /// reload cannot resume; it is said in the console, not in the way).
    pub(crate) fn keep_run(&self, resume: ResumeFrom, tensors: Vec<u8>) {
        let Ok((config, step)) = SaeTrainer::run_of(&TrainerCheckpoint {
            tensors: Vec::new(),
            state: resume.state.clone(),
        }) else {
            return;
        };
        let Ok((model_base, processing)) = self.model_for_worker() else {
            return;
        };
        let record = SavedRun {
            total_steps: config.steps(),
            config,
            model_base,
            processing,
            resume,
            step,
        }
        .to_json();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = storage::put_run(&record, &tensors).await {
                web_sys::console::warn_1(
                    &format!("the training checkpoint was not kept: {e}").into(),
                );
            }
        });
    }

    /// After a reload: a run kept for this model is offered to resume.
    pub(crate) async fn offer_resume(&self) {
        let offer = match storage::get_run().await {
            Ok(Some((record, _))) => match SavedRun::from_json(&record) {
                Ok(run)
                    if self
                        .model_for_worker()
                        .is_ok_and(|(base, _)| base == run.model_base) =>
                {
                    run.offer()
                }
                _ => String::new(),
            },
            _ => String::new(),
        };
        self.set_text(ids::TRAIN_RESUME_TEXT, &offer);
        if let Some(bar) = self.element(ids::TRAIN_RESUME) {
            bar.toggle_attribute_with_force("hidden", offer.is_empty())
                .ok();
        }
    }

    /// The person's answer to the offer: go on from the kept checkpoint, or drop it.
    pub(crate) async fn answer_resume(self: &Rc<Self>, resume: bool) {
        if let Some(bar) = self.element(ids::TRAIN_RESUME) {
            bar.toggle_attribute_with_force("hidden", true).ok();
        }
        let kept = storage::get_run().await;
        if !resume {
            storage::delete_run().await.ok();
            return;
        }
        let (record, tensors) = match kept {
            Ok(Some(kept)) => kept,
            Ok(None) => {
                return self.show_error("The training run to resume is no longer kept.".into());
            }
            Err(e) => {
                return self.show_error(format!("The training run could not be resumed: {e}"));
            }
        };
        let run = match SavedRun::from_json(&record) {
            Ok(run) => run,
            Err(e) => {
                return self.show_error(format!("The training run could not be resumed: {e}"));
            }
        };
        if self.lab.borrow().train.active {
            return self.show_error("Another SAE is training; resume when it is done.".into());
        }
        self.update(|lab| lab.form = TrainForm::from_config(&run.config));
        self.write_train_form();
        self.update_page(|state| state.location.view = Some(crate::ui::View::Train));
        self.update_link();
        self.render_view();
        self.run_training(run.config, Some((run.resume, tensors)))
            .await;
    }

    fn check_training_memory(&self, config: &SaeTrainingConfig) -> Result<(), String> {
        let loaded = self.loaded().map_err(|e| e.to_string())?;
        let hook = crate::model::HookPoint::parse(&config.hook_name, loaded.model.dims())
            .map_err(|e| e.to_string())?;
        let d_in = hook.width(loaded.model.dims());
        crate::sae::pipeline::check_memory(config, d_in, &TrainOptions::in_page(config))
            .map_err(|e| sentence(&e.to_string()))
    }

    pub(crate) fn set_train_phase(&self, phase: String, fraction: f64) {
        self.update(|lab| lab.train.set_phase(phase, fraction));
        self.render_train_progress();
    }

    pub(crate) fn record_progress(&self, p: &Progress) {
        self.update(|lab| lab.train.record(p));
        self.render_train_progress();
        self.render_train_charts();
    }

    pub(crate) async fn train_in_page(
        self: &Rc<Self>,
        config: SaeTrainingConfig,
        resume: Option<(ResumeFrom, Vec<u8>)>,
    ) -> Result<Option<SaeFiles>, String> {
        struct PageReporter<'a>(&'a App);
        impl Reporter for PageReporter<'_> {
            fn phase(&self, text: String, fraction: f64) {
                self.0.set_train_phase(text, fraction);
            }
            fn progress(&self, progress: &Progress) {
                self.0.record_progress(progress);
            }
            fn control(&self) -> Control {
                self.0.train_control.wanted()
            }
            fn checkpoint_every(&self) -> Option<f64> {
                Some(self.0.checkpoint_seconds.get())
            }
            fn checkpoint(&self, point: ResumePoint) {
                let from = ResumeFrom {
                    state: point.checkpoint.state,
                    rows_served: point.rows_served,
                };
                self.0.keep_run(from, point.checkpoint.tensors);
            }
        }
        let loaded = self.loaded().map_err(|e| e.to_string())?;
        let mut options = TrainOptions::in_page(&config);
        options.resume = resume.map(|(from, tensors)| ResumePoint {
            checkpoint: TrainerCheckpoint {
                tensors,
                state: from.state,
            },
            rows_served: from.rows_served,
        });
        train_sae(&loaded, config, &options, &PageReporter(self))
            .await
            .map(|run| run.map(|trained| trained.files))
            .map_err(|e| e.to_string())
    }

    pub(crate) fn render_train_progress(&self) {
        let lab = self.lab.borrow();
        let run = &lab.train;
        if let Some(progress) = self.element(ids::TRAIN_PROGRESS) {
            progress
                .set_attribute("value", &format!("{:.3}", run.fraction))
                .ok();
        }
        self.set_text(ids::TRAIN_STATUS, &run.phase);
        self.set_text(ids::TRAIN_RESULT, &run.result);
        if let Some(b) = self.element(ids::TRAIN_START) {
            b.toggle_attribute_with_force("disabled", run.active).ok();
        }
        if let Some(b) = self.element(ids::TRAIN_PAUSE) {
            b.toggle_attribute_with_force("disabled", !run.active).ok();
            b.set_text_content(Some(if run.paused || self.train_control.pause.get() {
                "Resume"
            } else {
                "Pause"
            }));
        }
        if let Some(b) = self.element(ids::TRAIN_CANCEL) {
            b.toggle_attribute_with_force("disabled", !run.active).ok();
        }
        if let Some(file) = &lab.text_file {
            self.set_text(ids::TRAIN_FILE_STATUS, file);
        }
    }

    pub(crate) fn render_train_charts(&self) {
        let Some(target) = self.element(ids::TRAIN_CHARTS) else {
            return;
        };
        let lab = self.lab.borrow();
        let history = &lab.train.history;
        // Redraw at most ~100 times per run: drawing is cheap, but not free on long runs.
        let every = (history.len() / 100).max(1);
        if !history.is_empty() && !history.len().is_multiple_of(every) {
            return;
        }
        clear(&target);
        let series = |f: &dyn Fn(&Progress) -> f64| -> Vec<(f64, f64)> {
            history
                .iter()
                .map(|p| (p.stats.step as f64, f(p)))
                .collect()
        };
        let mut charts: Vec<(String, Vec<(f64, f64)>)> =
            vec![("Loss".into(), series(&|p| f64::from(p.stats.loss)))];
        if let Some(first) = history.first() {
            for (i, (name, _)) in first.stats.terms.iter().enumerate() {
                if first.stats.terms.len() > 1 {
                    charts.push((
                        format!("Loss term: {name}"),
                        series(&|p| p.stats.terms.get(i).map_or(f64::NAN, |t| f64::from(t.1))),
                    ));
                }
            }
        }
        charts.push((
            "L0 (features per token)".into(),
            series(&|p| f64::from(p.stats.l0)),
        ));
        charts.push((
            "Explained variance".into(),
            series(&|p| f64::from(p.stats.explained_variance)),
        ));
        charts.push((
            "Dead fraction".into(),
            series(&|p| f64::from(p.stats.dead_fraction)),
        ));
        for (name, points) in charts {
            let chart = line_chart(&self.document, &name, &points, Frame::SMALL);
            append(&target, &chart);
        }
    }

    pub(crate) fn render_train(&self) {
        self.render_train_progress();
        self.render_train_charts();
    }

    pub(crate) fn read_train_form_keep_text(&self) {
        let text = self.lab.borrow().form.text.clone();
        self.read_train_form();
        self.update(|lab| {
            lab.form.text = text;
            lab.form.corpus = CorpusKind::Text;
        });
    }
}
