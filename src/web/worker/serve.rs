//! Inside the worker: answer the page's [`ToWorker`] messages with [`FromWorker`] ones. What
//! the worker keeps between messages is one [`WorkerState`], shared by the tasks it starts.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use super::helpers::HelperPool;
use super::{envelope, open};
use crate::backend::cpu_device;
use crate::model::WeightProcessing;
use crate::model::files::LoadedModel;
use crate::sae::features::{FeatureReport, Scan};
use crate::sae::pipeline::{
    Reporter, ResumePoint, TrainOptions, scan_job, train_sae, worker_windows_per_forward,
};
use crate::sae::saelens::SaeFiles;
use crate::sae::spread::ForwardHelpers;
use crate::sae::train::{Control, Progress, SaeTrainingConfig};
use crate::ui::feature_list::FeatureList;
use crate::ui::worker_protocol::{
    Attachment, Attachments, CHECKPOINT_SECONDS, FromWorker, ResumeFrom, ToWorker,
    sae_file_attachments,
};
use crate::ui::worker_state::ModelCache;
use crate::web::platform::load_model;

/// What the worker keeps between messages.
struct WorkerState {
    /// What the page last asked of the training run (pause, resume, cancel).
    control: Cell<Control>,
    /// Seconds between the run's checkpoints (a few MB each for the built-in model).
    checkpoint_every: Cell<f64>,
    /// The worker's own copy of the model, by base URL and processing.
    models: RefCell<ModelCache<(String, WeightProcessing), LoadedModel>>,
    /// Feature reports by the page's key, so cards are sent one at a time.
    reports: RefCell<HashMap<String, Kept>>,
    /// As a helper: the requests not yet run, and whether they are being run.
    helper_requests: RefCell<VecDeque<HelperRequest>>,
    helper_running: Cell<bool>,
    /// As a helper: the SAE it evaluates, by key.
    helper_sae: RefCell<Option<(u32, crate::sae::Sae)>>,
}

impl Default for WorkerState {
    fn default() -> Self {
        Self {
            control: Cell::new(Control::Continue),
            checkpoint_every: Cell::new(CHECKPOINT_SECONDS),
            models: RefCell::default(),
            reports: RefCell::default(),
            helper_requests: RefCell::default(),
            helper_running: Cell::new(false),
            helper_sae: RefCell::new(None),
        }
    }
}

/// SAEs up to this wide get every card made once the first is shown, and kept after their scan
/// is dropped; wider ones get their cards made one at a time, on request: for a 24,576-latent
/// SAE on GPT-2 every card at once is ~10^12 multiply-adds (logit lens and neighbours) and more
/// memory than a worker has.
const CARDS_AT_ONCE_UP_TO: usize = 4096;

/// What the worker keeps of one SAE's scan.
enum Kept {
    /// Every card, made at once (small SAEs), and the scan while it is the latest (explanations
    /// are made and scored on it).
    Report(FeatureReport, Option<(Rc<LoadedModel>, Rc<Scan>)>),
    /// The scan and its summary; cards are made when asked for.
    Lazy {
        loaded: Rc<LoadedModel>,
        sae: crate::sae::Sae,
        scan: Rc<Scan>,
        summary: crate::sae::features::ScanSummary,
    },
}

impl Kept {
    /// The scan explanations are scored on, while it is kept.
    fn scan(&self) -> Option<(&Rc<LoadedModel>, &Rc<Scan>)> {
        match self {
            Kept::Report(_, Some((loaded, scan))) | Kept::Lazy { loaded, scan, .. } => {
                Some((loaded, scan))
            }
            Kept::Report(_, None) => None,
        }
    }
}

/// Features explained per message while the worker explains in the background: small, so a
/// card or score asked for meanwhile waits little.
const EXPLAIN_PIECE: usize = 16;
/// How long the background explainer waits after the list, so the card the page asks for next
/// is made first.
const EXPLAIN_DELAY_MS: u32 = 500;

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: &FromWorker) {
    post_with(message, &[]);
}

fn post_with(message: &FromWorker, attachments: &[(Attachment, &[u8])]) {
    scope()
        .post_message(&envelope(message.to_json(), attachments))
        .ok();
}

/// Reports to the page; with helpers while the run captures.
struct PostReporter {
    state: Rc<WorkerState>,
    helpers: Option<HelperPool>,
}

impl Reporter for PostReporter {
    fn phase(&self, text: String, fraction: f64) {
        post(&FromWorker::Phase { text, fraction });
    }

    fn progress(&self, progress: &Progress) {
        post(&FromWorker::Progress {
            progress: Box::new(progress.clone()),
        });
    }

    fn control(&self) -> Control {
        self.state.control.get()
    }

    fn checkpoint_every(&self) -> Option<f64> {
        Some(self.state.checkpoint_every.get())
    }

    fn helpers(&self) -> Option<&dyn ForwardHelpers> {
        self.helpers.as_ref().map(|h| h as &dyn ForwardHelpers)
    }

    fn checkpoint(&self, point: ResumePoint) {
        post_with(
            &FromWorker::Checkpoint {
                resume: ResumeFrom {
                    state: point.checkpoint.state,
                    rows_served: point.rows_served,
                },
            },
            &[(Attachment::Tensors, &point.checkpoint.tensors)],
        );
    }
}

/// The worker's own copy of the model (CPU), loaded once per base URL and processing (from the
/// download cache the page filled, for models from other sites). A load already under way
/// (`ToWorker::Prepare`'s) is waited for, not repeated.
async fn model(
    state: &WorkerState,
    base: &str,
    processing: WeightProcessing,
) -> Result<Rc<LoadedModel>, String> {
    let key = (base.to_string(), processing);
    let load = async { load_model(&cpu_device(), base, processing, &|_| {}).await };
    ModelCache::get_or_load(&state.models, key, load).await
}

async fn train(
    state: Rc<WorkerState>,
    base: String,
    processing: WeightProcessing,
    config: SaeTrainingConfig,
    resume: Option<ResumePoint>,
    checkpoint_seconds: f64,
) {
    state.control.set(Control::Continue);
    state.checkpoint_every.set(checkpoint_seconds.max(0.0));
    let result = async {
        post(&FromWorker::Phase {
            text: "Loading the model in the training worker…".into(),
            fraction: 0.0,
        });
        let loaded = model(&state, &base, processing).await?;
        let reporter = PostReporter {
            state: Rc::clone(&state),
            helpers: HelperPool::start(
                &base,
                processing,
                &config.hook_name,
                loaded.model.weight_bytes(),
            ),
        };
        let mut options = TrainOptions::in_page(&config);
        options.windows_per_forward =
            worker_windows_per_forward(loaded.model.dims().parameter_count);
        options.resume = resume;
        train_sae(&loaded, config, &options, &reporter)
            .await
            .map(|run| run.map(|trained| trained.files))
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(Some(files)) => post_with(&FromWorker::Done, &sae_file_attachments(&files)),
        Ok(None) => post(&FromWorker::Cancelled),
        Err(message) => post(&FromWorker::Error { message }),
    }
}

/// The page's model (the worker's copy) and an SAE from its `cfg.json` and weights, at its hook.
async fn sae_on_model(
    state: &WorkerState,
    (base, processing): (String, WeightProcessing),
    mut attachments: Attachments,
) -> Result<(Rc<LoadedModel>, crate::sae::Sae, crate::model::HookPoint), String> {
    let cfg = attachments.require(Attachment::Cfg)?;
    let weights = attachments.require(Attachment::Weights)?;
    let loaded = model(state, &base, processing).await?;
    let host = SaeFiles {
        cfg,
        weights,
        sparsity: None,
        saeplay: None,
    }
    .parse()
    .map_err(|e| e.to_string())?;
    let hook = crate::model::HookPoint::parse(&host.config.hook_name, loaded.model.dims())
        .map_err(|e| e.to_string())?;
    let sae = host
        .upload(loaded.model.device())
        .map_err(|e| e.to_string())?;
    Ok((loaded, sae, hook))
}

async fn features(
    state: Rc<WorkerState>,
    id: u32,
    key: String,
    (base, processing): (String, WeightProcessing),
    corpus: crate::sae::store::Corpus,
    attachments: Attachments,
) {
    let result = async {
        let (loaded, sae, hook) = sae_on_model(&state, (base, processing), attachments).await?;
        let on_phase = |text: String| post(&FromWorker::FeaturesPhase { id, text });
        // One scan kept at a time: each holds [tokens, d_sae] activations. A small SAE whose
        // cards were not all made yet gets them now, so they stay without its scan.
        let unfinished: Vec<String> = state
            .reports
            .borrow()
            .iter()
            .filter(|(_, k)| matches!(k, Kept::Lazy { sae, .. } if cards_at_once(sae)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in unfinished {
            make_every_card(&state, &key).await;
        }
        {
            let mut reports = state.reports.borrow_mut();
            reports.retain(|_, k| matches!(k, Kept::Report(..)));
            for kept in reports.values_mut() {
                if let Kept::Report(_, scan) = kept {
                    *scan = None;
                }
            }
        }
        // The list comes from the scan's overview, and each card when it is asked for: a small
        // SAE's cards are all made once the first one is shown (`make_every_card`).
        use crate::sae::features::{ScanConfig, feature_overview, summarise_scan};
        let scan = scan_job(
            &loaded,
            &sae,
            hook,
            &corpus,
            worker_windows_per_forward(loaded.model.dims().parameter_count),
            &on_phase,
        )
        .await
        .map_err(|e| e.to_string())?;
        on_phase("Summarising features…".into());
        let summary = summarise_scan(&scan).map_err(|e| e.to_string())?;
        let tokenizer = loaded.tokenizer().map_err(|e| e.to_string())?;
        let overview = feature_overview(tokenizer, &scan, &summary, &ScanConfig::default())
            .map_err(|e| e.to_string())?;
        let list = FeatureList::of_overview(scan.tokens, &overview);
        let kept = Kept::Lazy {
            loaded: Rc::clone(&loaded),
            sae: sae.clone(),
            scan: Rc::new(scan),
            summary,
        };
        let with_lens = cards_at_once(&sae);
        state.reports.borrow_mut().insert(key.clone(), kept);
        Ok::<_, String>((list, sae, with_lens))
    }
    .await;
    match result {
        Ok((list, sae, with_lens)) => {
            post(&FromWorker::FeatureList { id, list });
            // The card the page asks for next is made first.
            crate::clock::sleep_ms(EXPLAIN_DELAY_MS).await;
            make_every_card(&state, &key).await;
            explain_in_background(&state, key, sae, with_lens).await;
        }
        Err(message) => post(&FromWorker::FeaturesError { id, message }),
    }
}

/// Whether every card of `sae` is made and kept (small SAEs) rather than made when asked for.
fn cards_at_once(sae: &crate::sae::Sae) -> bool {
    sae.config.d_sae <= CARDS_AT_ONCE_UP_TO
}

/// Make every card of the small SAE kept lazily under `key`, and keep them in its place (with
/// the scan, for explanations); nothing when it is not such an SAE or is being read meanwhile.
async fn make_every_card(state: &WorkerState, key: &str) {
    use crate::sae::features::{ScanConfig, feature_cards};
    let taken = {
        let mut reports = state.reports.borrow_mut();
        match reports.get(key) {
            Some(Kept::Lazy { sae, .. }) if cards_at_once(sae) => reports.remove(key),
            _ => None,
        }
    };
    let Some(Kept::Lazy {
        loaded,
        sae,
        scan,
        summary,
    }) = taken
    else {
        return;
    };
    let all: Vec<usize> = (0..scan.d_sae).collect();
    let config = ScanConfig {
        explain: false,
        ..ScanConfig::default()
    };
    let cards = match loaded.tokenizer() {
        Ok(tokenizer) => {
            feature_cards(
                &loaded.model,
                tokenizer,
                &sae,
                &scan,
                &summary,
                &all,
                &config,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let kept = match cards {
        Ok(features) => Kept::Report(
            FeatureReport {
                tokens: scan.tokens,
                features,
                concept_recovery: summary.concept_recovery,
                mean_concept_auroc: summary.mean_concept_auroc,
            },
            Some((loaded, scan)),
        ),
        // Cards are still made one at a time on request.
        Err(_) => Kept::Lazy {
            loaded,
            sae,
            scan,
            summary,
        },
    };
    state.reports.borrow_mut().insert(key.to_string(), kept);
}

/// Explain every feature of the scan kept under `key`, a piece at a time with the event loop run
/// between pieces (cards and scores are answered meanwhile), posting each piece; stops when the
/// scan is no longer the kept one. `with_lens` tries the logit lens too (SAEs whose cards are
/// all made; wider ones get it when a card is opened).
async fn explain_in_background(
    state: &WorkerState,
    key: String,
    sae: crate::sae::Sae,
    with_lens: bool,
) {
    use crate::sae::explain::{ScanText, Scorer, promoted_tokens};
    let current = || {
        state
            .reports
            .borrow()
            .get(&key)
            .and_then(|k| k.scan().map(|(l, s)| (Rc::clone(l), Rc::clone(s))))
    };
    let Some((loaded, scan)) = current() else {
        return;
    };
    let Ok(tokenizer) = loaded.tokenizer() else {
        return;
    };
    let text = ScanText::new(tokenizer, &scan);
    let scorer = Scorer::new(&scan, &text, 0);
    let features: Vec<usize> = (0..scan.d_sae).collect();
    for piece in features.chunks(EXPLAIN_PIECE) {
        crate::clock::yield_now().await;
        if !current().is_some_and(|(_, s)| Rc::ptr_eq(&s, &scan)) {
            return;
        }
        let promoted = if with_lens {
            match promoted_tokens(&loaded.model, tokenizer, &sae, piece).await {
                Ok(p) => p.into_iter().map(Some).collect(),
                Err(_) => vec![None; piece.len()],
            }
        } else {
            vec![None; piece.len()]
        };
        let explanations = piece
            .iter()
            .zip(&promoted)
            .map(|(&f, p)| scorer.explain(f, p.as_deref()))
            .collect();
        post(&FromWorker::Explained {
            key: key.clone(),
            explanations,
            done: piece.last() == features.last(),
        });
    }
}

async fn evaluate(
    state: Rc<WorkerState>,
    id: u32,
    (base, processing): (String, WeightProcessing),
    corpus: crate::sae::store::Corpus,
    attachments: Attachments,
) {
    let result = async {
        let (loaded, sae, hook) =
            sae_on_model(&state, (base.clone(), processing), attachments).await?;
        let on_phase = |text: String| post(&FromWorker::FeaturesPhase { id, text });
        // Stopped when dropped, after the evaluation.
        let parameters = loaded.model.dims().parameter_count;
        let helpers = crate::sae::pipeline::evaluation_wants_helpers(parameters)
            .then(|| {
                HelperPool::start(
                    &base,
                    processing,
                    &hook.to_string(),
                    loaded.model.weight_bytes(),
                )
            })
            .flatten();
        crate::sae::pipeline::evaluate_job(
            &loaded,
            &sae,
            hook,
            &corpus,
            worker_windows_per_forward(loaded.model.dims().parameter_count),
            &on_phase,
            helpers.as_ref().map(|h| h as &dyn ForwardHelpers),
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(metrics) => post(&FromWorker::Evaluated {
            id,
            metrics: Box::new(metrics),
        }),
        Err(message) => post(&FromWorker::FeaturesError { id, message }),
    }
}

async fn feature(state: Rc<WorkerState>, id: u32, key: String, index: usize) {
    let card = async {
        // Taken out while the card is made (the map cannot stay borrowed across awaits), then put back.
        let kept = state
            .reports
            .borrow_mut()
            .remove(&key)
            .ok_or("the worker no longer holds this SAE's features")?;
        let card = match &kept {
            Kept::Report(report, _) => report
                .features
                .iter()
                .find(|f| f.index == index)
                .cloned()
                .ok_or_else(|| format!("this SAE has no feature #{index}")),
            Kept::Lazy {
                loaded,
                sae,
                scan,
                summary,
            } => {
                let tokenizer = loaded.tokenizer().map_err(|e| e.to_string())?;
                crate::sae::features::feature_cards(
                    &loaded.model,
                    tokenizer,
                    sae,
                    scan,
                    summary,
                    &[index],
                    &crate::sae::features::ScanConfig::default(),
                )
                .await
                .map_err(|e| e.to_string())
                .and_then(|mut cards| cards.pop().ok_or_else(|| "no card was made".to_string()))
            }
        };
        state.reports.borrow_mut().insert(key, kept);
        card
    }
    .await;
    match card {
        Ok(card) => post(&FromWorker::FeatureCard {
            id,
            card: Box::new(card),
        }),
        Err(message) => post(&FromWorker::FeaturesError { id, message }),
    }
}

/// Score a person's explanation of feature `index` on the scan kept under `key`.
fn score(state: &WorkerState, id: u32, key: &str, index: usize, explanation: &str) {
    match scored(state, key, index, explanation) {
        Ok(scored) => post(&FromWorker::Scored { id, scored }),
        Err(message) => post(&FromWorker::FeaturesError { id, message }),
    }
}

fn scored(
    state: &WorkerState,
    key: &str,
    index: usize,
    explanation: &str,
) -> Result<crate::sae::explain::FeatureExplanation, String> {
    use crate::sae::explain::{
        Explanation, ExplanationSource, FeatureExplanation, Half, ScanText, Scorer,
    };
    let reports = state.reports.borrow();
    let (loaded, scan) = match reports.get(key).map(|k| (k.scan(), k)) {
        Some((Some((loaded, scan)), _)) => (loaded, scan),
        Some((None, _)) => {
            return Err(
                    "another SAE's features were read since: read this SAE's features again to score explanations"
                        .to_string(),
                );
        }
        None => return Err("the worker no longer holds this SAE's features".to_string()),
    };
    if index >= scan.d_sae {
        return Err(format!("this SAE has no feature #{index}"));
    }
    let parsed = Explanation::parse(explanation).map_err(|e| e.to_string())?;
    let text = ScanText::new(loaded.tokenizer().map_err(|e| e.to_string())?, scan);
    let score = Scorer::new(scan, &text, 0).score(index, &parsed, Half::Score);
    Ok(FeatureExplanation {
        feature: index,
        explanation: parsed.text(),
        source: ExplanationSource::Person,
        score,
    })
}

fn handle(state: &Rc<WorkerState>, message: ToWorker, mut attachments: Attachments) {
    let shared = || Rc::clone(state);
    match message {
        ToWorker::Train {
            model_base,
            processing,
            config,
            resume,
            checkpoint_seconds,
        } => {
            let resume = match resume
                .map(|r| Ok::<_, String>((r, attachments.require(Attachment::Tensors)?)))
                .transpose()
            {
                Ok(resume) => resume.map(|(r, tensors)| ResumePoint {
                    checkpoint: crate::sae::train::TrainerCheckpoint {
                        tensors,
                        state: r.state,
                    },
                    rows_served: r.rows_served,
                }),
                Err(message) => return post(&FromWorker::Error { message }),
            };
            spawn_local(train(
                shared(),
                model_base,
                processing,
                *config,
                resume,
                checkpoint_seconds,
            ))
        }
        ToWorker::Features {
            id,
            key,
            model_base,
            processing,
            corpus,
        } => spawn_local(features(
            shared(),
            id,
            key,
            (model_base, processing),
            corpus,
            attachments,
        )),
        ToWorker::Evaluate {
            id,
            model_base,
            processing,
            corpus,
        } => spawn_local(evaluate(
            shared(),
            id,
            (model_base, processing),
            corpus,
            attachments,
        )),
        ToWorker::Feature { id, key, index } => spawn_local(feature(shared(), id, key, index)),
        ToWorker::Score {
            id,
            key,
            index,
            explanation,
        } => score(state, id, &key, index, &explanation),
        ToWorker::HelperCapture {
            id,
            model_base,
            processing,
            hook_name,
            windows,
        } => queue_helper_request(
            state,
            HelperRequest {
                id,
                model_base,
                processing,
                hook_name,
                windows,
                evaluate: None,
            },
        ),
        ToWorker::HelperEvaluate {
            id,
            model_base,
            processing,
            hook_name,
            windows,
            sae_key,
            sae_config,
            special_id,
        } => {
            let weights = attachments.take(Attachment::Weights);
            queue_helper_request(
                state,
                HelperRequest {
                    id,
                    model_base,
                    processing,
                    hook_name,
                    windows,
                    evaluate: Some(HelperEvaluate {
                        sae_key,
                        sae: sae_config.zip(weights),
                        special_id,
                    }),
                },
            )
        }
        ToWorker::Prepare {
            model_base,
            processing,
        } => {
            let state = shared();
            spawn_local(async move {
                // A failure here is met again, and reported, by the request that needs the model.
                model(&state, &model_base, processing).await.ok();
            })
        }
        ToWorker::Pause => state.control.set(Control::Pause),
        ToWorker::Resume => state.control.set(Control::Continue),
        ToWorker::Cancel => state.control.set(Control::Stop),
        ToWorker::Hang { seconds } => {
            let until = crate::clock::now_seconds() + seconds.clamp(0.0, 3600.0);
            while crate::clock::now_seconds() < until {
                std::hint::spin_loop();
            }
        }
        ToWorker::Crash => {
            // A real failure's shape: an uncaught error that leaves the instance unusable.
            wasm_bindgen::throw_str("the worker was asked to crash");
        }
    }
}

/// A helper's request: a forward over `windows` of the model at `model_base`, capturing
/// `hook_name`, and with `evaluate` the SAE's loss sums too.
struct HelperRequest {
    id: u32,
    model_base: String,
    processing: WeightProcessing,
    hook_name: String,
    windows: Vec<Vec<u32>>,
    evaluate: Option<HelperEvaluate>,
}

/// The SAE a helper evaluates: `sae` (config and safetensors) comes with the first request for
/// `sae_key`.
struct HelperEvaluate {
    sae_key: u32,
    sae: Option<(crate::sae::SaeConfig, Vec<u8>)>,
    special_id: Option<u32>,
}

/// Run helper requests one at a time, in order: the first loads the model, the rest wait for it.
fn queue_helper_request(state: &Rc<WorkerState>, request: HelperRequest) {
    state.helper_requests.borrow_mut().push_back(request);
    if !state.helper_running.replace(true) {
        let state = Rc::clone(state);
        spawn_local(async move {
            loop {
                let next = state.helper_requests.borrow_mut().pop_front();
                let Some(request) = next else { break };
                helper_forward(&state, request).await;
            }
            state.helper_running.set(false);
        });
    }
}

/// As a helper of the training worker: one forward (capture, or the three runs of an
/// evaluation), answered with the hook's vectors.
async fn helper_forward(state: &WorkerState, request: HelperRequest) {
    let HelperRequest {
        id,
        model_base,
        processing,
        hook_name,
        windows,
        evaluate,
    } = request;
    let result = async {
        let loaded = model(state, &model_base, processing).await?;
        let hook = crate::model::HookPoint::parse(&hook_name, loaded.model.dims())
            .map_err(|e| e.to_string())?;
        let Some(evaluate) = evaluate else {
            let captured = loaded
                .model
                .capture(&windows, &[hook])
                .map_err(|e| e.to_string())?;
            let (_, values) = captured
                .into_iter()
                .next()
                .ok_or_else(|| format!("`{hook}` was not captured"))?;
            let values = crate::backend::read_f32(values)
                .await
                .map_err(|e| e.to_string())?;
            return Ok((values, None));
        };
        if let Some((config, weights)) = evaluate.sae {
            let sae = crate::sae::spread::SaeForHelpers::upload(config, &weights, &cpu_device())
                .map_err(|e| e.to_string())?;
            *state.helper_sae.borrow_mut() = Some((evaluate.sae_key, sae));
        }
        let sae = state
            .helper_sae
            .borrow()
            .as_ref()
            .filter(|(key, _)| *key == evaluate.sae_key)
            .map(|(_, sae)| sae.clone())
            .ok_or("the helper does not hold the SAE it was asked to evaluate")?;
        let (values, losses) = crate::sae::metrics::batch_losses(
            &loaded.model,
            &sae,
            hook,
            &windows,
            evaluate.special_id,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((values, Some(losses)))
    }
    .await;
    match result {
        Ok((values, losses)) => {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            post_with(
                &FromWorker::HelperAnswered { id, losses },
                &[(Attachment::Values, &bytes)],
            );
        }
        Err(message) => post(&FromWorker::HelperError { id, message }),
    }
}

/// Run as the worker: answer the page's messages.
pub fn serve() {
    let state = Rc::new(WorkerState::default());
    let onmessage = Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
        let Some((json, attachments)) = open(&event.data()) else {
            return;
        };
        match ToWorker::from_json(&json) {
            Ok(message) => handle(&state, message, attachments),
            Err(message) => post(&FromWorker::Error { message }),
        }
    });
    scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post(&FromWorker::Ready);
}
