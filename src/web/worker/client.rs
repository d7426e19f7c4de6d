//! The page's side of the worker: starting it, and the calls that wait on its answers.

use std::cell::RefCell;
use std::rc::Rc;

use super::{envelope, open};
use crate::model::WeightProcessing;
use crate::sae::explain::FeatureExplanation;
use crate::sae::features::FeatureData;
use crate::sae::metrics::SaeMetrics;
use crate::sae::saelens::SaeFiles;
use crate::sae::store::Corpus;
use crate::sae::train::{Control, SaeTrainingConfig};
use crate::ui::feature_list::FeatureList;
use crate::ui::lab::FeatureIndex;
use crate::ui::lab::LoadedSae;
use crate::ui::worker_protocol::{
    Attachment, Attachments, EvaluateSae, FeatureCard, FeaturesAnswer, FromWorker, ResumeFrom,
    ScanFeatures, ScoreExplanation, ToWorker, WorkerRequest, sae_files_attached,
};
use crate::ui::worker_state::{Liveness, SILENCE_LIMIT_MS};
use crate::web::App;
use crate::web::platform::{now_ms, sleep};

/// The result slot of a training run in the worker.
pub type WorkerOutcome = Rc<RefCell<Option<Result<Option<SaeFiles>, String>>>>;

impl App {
    fn send(&self, message: &ToWorker, attachments: &[(Attachment, &[u8])]) {
        if let Some(worker) = self.worker.borrow().as_ref() {
            worker
                .post_message(&envelope(message.to_json(), attachments))
                .ok();
        }
    }

    fn hear(&self, message: FromWorker, mut attachments: Attachments) {
        self.worker_link.borrow_mut().heard(now_ms());
        let finished = |result| {
            if let Some(slot) = self.worker_outcome.borrow().as_ref() {
                *slot.borrow_mut() = Some(result);
            }
        };
        match message {
            FromWorker::Ready => self.worker_link.borrow_mut().set_ready(true),
            FromWorker::Phase { text, fraction } => self.set_train_phase(text, fraction),
            FromWorker::Progress { progress } => self.record_progress(&progress),
            FromWorker::Done => match sae_files_attached(&mut attachments) {
                Ok(files) => finished(Ok(Some(files))),
                Err(_) => finished(Err("the trained SAE's files did not arrive".into())),
            },
            FromWorker::Checkpoint { resume } => {
                if let Some(tensors) = attachments.take(Attachment::Tensors) {
                    self.keep_run(resume, tensors);
                }
            }
            FromWorker::Cancelled => finished(Ok(None)),
            FromWorker::Error { message } => finished(Err(message)),
            FromWorker::FeaturesPhase { id, text } => {
                if self.worker_link.borrow().last_request() == id {
                    self.update(|lab| lab.feature_status = text);
                    self.render_feature_status();
                }
            }
            FromWorker::Explained {
                key,
                explanations,
                done,
            } => self.explanations_arrived(key, explanations, done),
            // Only the training worker's own helpers send these.
            FromWorker::HelperAnswered { .. } | FromWorker::HelperError { .. } => {}
            answer => {
                if let Some((id, answer)) = FeaturesAnswer::of(answer) {
                    self.worker_link.borrow_mut().answered(id, answer);
                }
            }
        }
    }

    /// Explanations from the worker's background explainer: into the SAE's feature index, or
    /// kept until the index is stored.
    fn explanations_arrived(&self, key: String, explanations: Vec<FeatureExplanation>, done: bool) {
        let index = self
            .lab
            .borrow()
            .slot(&key)
            .and_then(|s| s.features.clone());
        match index {
            Some(index) => {
                index.explain(&explanations, done);
                if self.selected_sae().as_deref() == Some(key.as_str()) {
                    self.render_features();
                }
            }
            None => {
                let mut early = self.early_explanations.borrow_mut();
                let entry = early.entry(key).or_default();
                entry.0.extend(explanations);
                entry.1 |= done;
            }
        }
    }

    /// Explanations that arrived before `index` was stored under `key`.
    pub(crate) fn apply_early_explanations(&self, key: &str, index: &FeatureIndex) {
        if let Some((explanations, done)) = self.early_explanations.borrow_mut().remove(key) {
            index.explain(&explanations, done);
        }
    }

    /// The worker crashed (a panic, out of memory): stop it, answer whatever waited on it with
    /// the reason, and forget what it held (feature scans), so the next task starts a new one.
    pub(crate) fn worker_failed(&self, why: String) {
        if let Some(worker) = self.worker.borrow_mut().take() {
            worker.terminate();
        }
        self.show_worker_busy(false, 0.0);
        let message = format!(
            "the background worker stopped ({}); it starts again for the next task",
            if why.is_empty() {
                "no reason given"
            } else {
                why.as_str()
            }
        );
        if let Some(slot) = self.worker_outcome.borrow().as_ref() {
            *slot.borrow_mut() = Some(Err(message.clone()));
        }
        self.worker_link.borrow_mut().failed(message);
        self.update(|lab| {
            for slot in &mut lab.saes {
                slot.features = None; // its cards lived in the worker
            }
            lab.feature_status = String::new();
        });
        self.render_feature_status();
    }

    /// Make the worker fail as a crash would (for the browser tests).
    pub(crate) fn crash_worker(&self) {
        self.send(&ToWorker::Crash, &[]);
    }

    /// Make the worker hang for `seconds` (for the browser tests).
    pub(crate) fn hang_worker(&self, seconds: f64) {
        self.send(&ToWorker::Hang { seconds }, &[]);
    }

    /// While a request waits: after [`BUSY_SHOWN_MS`] of silence the page says the worker is
    /// busy and offers to stop it; after [`SILENCE_LIMIT_MS`] it stops it itself. `Err` once the
    /// worker was stopped (the waiting request is answered with the reason).
    fn watch_worker(&self, since: f64, start: u32) -> Result<(), String> {
        let present = self.worker.borrow().is_some();
        let liveness = self
            .worker_link
            .borrow()
            .liveness(present, start, since, now_ms());
        match liveness {
            Liveness::Gone => Err("the background worker stopped".into()),
            Liveness::Hung { .. } => {
                self.worker_failed(format!(
                    "it gave no sign of life for {} minutes",
                    SILENCE_LIMIT_MS / 60_000.0
                ));
                Err("the background worker stopped".into())
            }
            Liveness::Working {
                silent_ms,
                busy_shown,
            } => {
                self.show_worker_busy(busy_shown, silent_ms);
                Ok(())
            }
        }
    }

    fn show_worker_busy(&self, busy: bool, silent_ms: f64) {
        let text = if busy {
            format!(
                "The background worker has said nothing for {:.0} s.",
                silent_ms / 1000.0
            )
        } else {
            String::new()
        };
        self.set_text(crate::ui::ids::WORKER_BUSY_TEXT, &text);
        if let Some(bar) = self.element(crate::ui::ids::WORKER_BUSY) {
            bar.toggle_attribute_with_force("hidden", !busy).ok();
        }
    }

    /// The person's "Stop the worker": whatever waited on it is answered, and the next task
    /// starts a fresh one.
    pub(crate) fn stop_worker(&self) {
        self.worker_failed("stopped by you".into());
    }

    /// With a small model (the built-in one): start the worker now and have it load its copy,
    /// so a first feature card or training run waits for neither (0.1-0.2 s together). Larger
    /// models are copied into the worker only when a task needs it.
    pub(crate) fn prepare_worker(self: &Rc<Self>) {
        const PREPARE_UP_TO_PARAMETERS: usize = 40_000_000;
        let small =
            self.model.borrow().as_ref().is_some_and(|loaded| {
                loaded.model.dims().parameter_count <= PREPARE_UP_TO_PARAMETERS
            });
        if !small {
            return;
        }
        let app = Rc::clone(self);
        wasm_bindgen_futures::spawn_local(async move {
            if app.ensure_worker().await.is_ok()
                && let Ok((model_base, processing)) = app.model_for_worker()
            {
                app.send(
                    &ToWorker::Prepare {
                        model_base,
                        processing,
                    },
                    &[],
                );
            }
        });
    }

    /// Start the worker (once), and wait until it listens (also when another task started it).
    async fn ensure_worker(self: &Rc<Self>) -> Result<(), String> {
        if self.worker.borrow().is_some() {
            let since = now_ms();
            while self.worker.borrow().is_some() && !self.worker_link.borrow().is_ready() {
                if now_ms() - since > 60_000.0 {
                    return Err("the worker did not start within a minute".into());
                }
                sleep(10).await;
            }
            return if self.worker.borrow().is_some() {
                Ok(())
            } else {
                Err("the background worker stopped".into())
            };
        }
        let app = Rc::clone(self);
        let for_errors = Rc::clone(self);
        let worker = super::spawn(
            move |event| {
                // A message that does not parse is dropped, as an unknown one always was.
                if let Some((json, bytes)) = open(&event.data())
                    && let Ok(message) = FromWorker::from_json(&json)
                {
                    app.hear(message, bytes);
                }
            },
            move |why| for_errors.worker_failed(why),
        )?;
        *self.worker.borrow_mut() = Some(worker);
        self.worker_link.borrow_mut().started();
        let since = now_ms();
        while !self.worker_link.borrow().is_ready() {
            if now_ms() - since > 60_000.0 {
                *self.worker.borrow_mut() = None;
                return Err("the worker did not start within a minute".into());
            }
            sleep(10).await;
        }
        Ok(())
    }

    /// The page's model as the worker loads it: an absolute URL, and the processing in force.
    pub(crate) fn model_for_worker(&self) -> Result<(String, WeightProcessing), String> {
        let base = crate::web::platform::absolute_url(&self.model_base.borrow())?;
        Ok((base, self.model_processing()))
    }

    /// Send a request (numbered here) and wait for the worker's answer to it, as its type.
    async fn ask_worker<R: WorkerRequest>(
        self: &Rc<Self>,
        request: R,
        attachments: &[(Attachment, &[u8])],
    ) -> Result<R::Answer, String> {
        self.ensure_worker().await?;
        let id = self.worker_link.borrow_mut().next_request();
        self.send(&request.message(id), attachments);
        let (since, start) = (now_ms(), self.worker_link.borrow().starts());
        loop {
            if let Some(result) = self.worker_link.borrow_mut().take_answer::<R>(id) {
                self.show_worker_busy(false, 0.0);
                return result;
            }
            if let Err(stopped) = self.watch_worker(since, start) {
                // worker_failed answered the latest request; an older one hears it here.
                return self
                    .worker_link
                    .borrow_mut()
                    .take_answer::<R>(id)
                    .unwrap_or(Err(stopped));
            }
            sleep(50).await;
        }
    }

    /// Scan `loaded` in the worker (on its CPU copy of the model); the worker keeps the report
    /// under `key` and answers with the list's rows.
    pub(crate) async fn features_in_worker(
        self: &Rc<Self>,
        key: &str,
        loaded: &LoadedSae,
        corpus: Corpus,
    ) -> Result<FeatureList, String> {
        let (model_base, processing) = self.model_for_worker()?;
        let request = ScanFeatures {
            key: key.to_string(),
            model_base,
            processing,
            corpus,
        };
        self.ask_worker(request, &sae_attachments(loaded)).await
    }

    /// One feature's card from the report the worker keeps under `key`.
    pub(crate) async fn card_from_worker(
        self: &Rc<Self>,
        key: &str,
        index: usize,
    ) -> Result<FeatureData, String> {
        let request = FeatureCard {
            key: key.to_string(),
            index,
        };
        self.ask_worker(request, &[]).await
    }

    /// Score a person's explanation of feature `index` on the scan the worker keeps under `key`.
    pub(crate) async fn score_in_worker(
        self: &Rc<Self>,
        key: &str,
        index: usize,
        explanation: String,
    ) -> Result<FeatureExplanation, String> {
        let request = ScoreExplanation {
            key: key.to_string(),
            index,
            explanation,
        };
        self.ask_worker(request, &[]).await
    }

    /// Evaluate `loaded` in the worker on held-out windows of `corpus`.
    pub(crate) async fn evaluate_in_worker(
        self: &Rc<Self>,
        loaded: &LoadedSae,
        corpus: Corpus,
    ) -> Result<SaeMetrics, String> {
        let (model_base, processing) = self.model_for_worker()?;
        let request = EvaluateSae {
            model_base,
            processing,
            corpus,
        };
        self.ask_worker(request, &sae_attachments(loaded)).await
    }

    pub(crate) async fn train_in_worker(
        self: &Rc<Self>,
        config: SaeTrainingConfig,
        resume: Option<(ResumeFrom, Vec<u8>)>,
    ) -> Result<Option<SaeFiles>, String> {
        let outcome: WorkerOutcome = Rc::default();
        self.set_train_phase("Starting the training worker…".into(), 0.0);
        self.ensure_worker().await?;
        *self.worker_outcome.borrow_mut() = Some(Rc::clone(&outcome));
        let (model_base, processing) = self.model_for_worker()?;
        let (resume, tensors) = match resume {
            Some((from, tensors)) => (Some(from), Some(tensors)),
            None => (None, None),
        };
        let attachments: Vec<(Attachment, &[u8])> = tensors
            .as_deref()
            .map(|t| (Attachment::Tensors, t))
            .into_iter()
            .collect();
        self.send(
            &ToWorker::Train {
                model_base,
                processing,
                config: Box::new(config),
                resume,
                checkpoint_seconds: self.checkpoint_seconds.get(),
            },
            &attachments,
        );
        let mut sent = Control::Continue;
        let (since, start) = (now_ms(), self.worker_link.borrow().starts());
        loop {
            if let Some(result) = outcome.borrow_mut().take() {
                *self.worker_outcome.borrow_mut() = None;
                self.show_worker_busy(false, 0.0);
                return result;
            }
            if let Err(stopped) = self.watch_worker(since, start) {
                *self.worker_outcome.borrow_mut() = None;
                return outcome.borrow_mut().take().unwrap_or(Err(stopped));
            }
            // Pass pause, resume and cancel on as they change.
            let wanted = self.train_control.wanted();
            if wanted != sent {
                let message = match wanted {
                    Control::Stop => ToWorker::Cancel,
                    Control::Pause => ToWorker::Pause,
                    Control::Continue => ToWorker::Resume,
                };
                self.send(&message, &[]);
                self.update(|lab| lab.train.paused = wanted == Control::Pause);
                sent = wanted;
            }
            sleep(50).await;
        }
    }
}

/// The files of an SAE the worker scans or evaluates: its `cfg.json` and weights.
fn sae_attachments(loaded: &LoadedSae) -> [(Attachment, &[u8]); 2] {
    [
        (Attachment::Cfg, loaded.files.cfg.as_slice()),
        (Attachment::Weights, loaded.files.weights.as_slice()),
    ]
}
