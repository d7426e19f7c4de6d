//! The one SAE pipeline: capture activations -> train -> evaluate on held-out text -> SAELens
//! files. The CLI (`train-sae`), the page's worker (CPU path), the page itself (WebGPU) and the
//! page's `trainSae` test API all run it; they differ only in [`TrainOptions`] and in where a
//! [`Reporter`] sends progress. A feature scan for the page's feature views lives here too.
//!
//! Everything is async and yields between model forwards and training steps
//! ([`crate::clock::yield_now`]), so in a browser the event loop keeps running; natively the
//! yields cost nothing.

use super::Sae;
use super::features::{FeatureReport, Scan, ScanConfig, feature_report, scan};
use super::metrics::{SaeMetrics, evaluate_sae_shared};
use super::saelens::{Provenance, SaeFiles, log10_densities, write_sae};
use super::spread::{ForwardHelpers, HelperTask, Spread};
use super::store::{ActivationStore, Corpus, StoreConfig, TokenStream, Window};
use super::train::{
    BatchSource, CapturedActivations, Control, Progress, RunOutcome, SaeTrainer, SaeTrainingConfig,
    run,
};
use crate::clock::{now_seconds, sleep_ms, yield_between_steps, yield_now};
use crate::error::{Result, SaeplayError};
use crate::model::HookPoint;
use crate::model::files::LoadedModel;
use crate::tinytales::HELD_OUT_SEED;
use crate::tokenizer::TextTokenizer;

/// Held-out windows a feature scan reads.
pub const SCAN_WINDOWS: usize = 24;
/// Tokens per window of a feature scan.
pub const SCAN_CONTEXT: usize = 128;
/// Most model work one feature scan may take, in parameter-tokens (parameters x tokens read):
/// the built-in model's 24 x 128 windows are 3.2e9; a GPT-2-small-sized model reads 8 x 128
/// (1.3e11, about 50 s on one core in the tab) rather than 24 x 128.
const SCAN_BUDGET_PARAMETER_TOKENS: u64 = 130_000_000_000;

/// How many held-out windows a feature scan reads on a model of `parameters`: all
/// [`SCAN_WINDOWS`] for small models, fewer (at least 4) for large ones.
pub fn scan_windows(parameters: usize) -> usize {
    let per_window = (parameters.max(1) as u64).saturating_mul(SCAN_CONTEXT as u64);
    let affordable = SCAN_BUDGET_PARAMETER_TOKENS / per_window;
    affordable.clamp(4, SCAN_WINDOWS as u64) as usize
}
/// Windows per model forward in the page: one 2-window forward is ~0.15 s on the CPU path, so
/// the page answers between them.
pub const PAGE_WINDOWS_PER_FORWARD: usize = 2;

/// Windows per model forward in the worker, which no click waits on: as many as keep a forward
/// near 0.1 s on the CPU path, so pause and cancel are heard between forwards (8 for the
/// built-in model, whose forwards are more efficient in larger batches; 1 for GPT-2 small).
pub fn worker_windows_per_forward(parameters: usize) -> usize {
    const PARAMETER_TOKENS_PER_FORWARD: u64 = 2_000_000_000;
    let per_window = (parameters.max(1) as u64).saturating_mul(SCAN_CONTEXT as u64);
    (PARAMETER_TOKENS_PER_FORWARD / per_window).clamp(1, 8) as usize
}
/// Model work (parameter-tokens) below which an evaluation runs in one worker: a helper's start
/// (its wasm instance and its copy of the model) costs about what it would save. The built-in
/// model's evaluation (24 windows, 9e9, mostly not forwards) took 2.4 s alone and 2.7 s with a
/// helper; SmolLM2's after training (8 windows, 4e11) takes 22 s with one, each batch ~5.5 s.
const EVALUATION_HELPERS_FROM_PARAMETER_TOKENS: u64 = 100_000_000_000;

/// Whether the page's Evaluate button should start helpers for a model of `parameters` (see
/// [`EVALUATION_HELPERS_FROM_PARAMETER_TOKENS`]): clean, spliced and ablated runs over
/// [`scan_windows`] windows.
pub fn evaluation_wants_helpers(parameters: usize) -> bool {
    let tokens = (scan_windows(parameters) * SCAN_CONTEXT) as u64;
    3 * tokens * parameters as u64 >= EVALUATION_HELPERS_FROM_PARAMETER_TOKENS
}

/// The page captures at most this many vectors and trains over them (capturing is most of the
/// cost of a run in the page).
pub const MAX_CAPTURED_TOKENS: usize = 65_536;

/// Where a run reports to, and asks whether to go on.
pub trait Reporter {
    fn phase(&self, text: String, fraction: f64);
    fn progress(&self, progress: &Progress);
    fn control(&self) -> Control;
    /// Seconds between checkpoints ([`Reporter::checkpoint`]); `None`: none are taken.
    fn checkpoint_every(&self) -> Option<f64> {
        None
    }
    /// A point the run can resume from exactly ([`TrainOptions::resume`]).
    fn checkpoint(&self, _point: ResumePoint) {}
    /// Other workers that run forwards beside this one (capture, evaluation), if any.
    fn helpers(&self) -> Option<&dyn ForwardHelpers> {
        None
    }
}

/// Largest trainer checkpointed as it trains (a 24,576 x 768 SAE's would be 450 MB each time).
pub const MAX_CHECKPOINT_BYTES: u64 = 256 << 20;

/// Where a run stopped: the trainer's checkpoint and how many captured vectors it had used.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePoint {
    pub checkpoint: crate::sae::train::TrainerCheckpoint,
    pub rows_served: u64,
}

/// Where the training vectors come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainingData {
    /// Run the model as training goes (the CLI's default).
    Stream,
    /// Capture up to `max_tokens` vectors first, then train over them (the page).
    CaptureFirst { max_tokens: usize },
    /// Vectors captured earlier (`saeplay capture`), row-major `[n, d_in]`.
    Captured(Vec<f32>),
}

/// How one run is paced and recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub data: TrainingData,
    /// Windows per model forward while capturing and evaluating.
    pub windows_per_forward: usize,
    /// Vectors the store's shuffle buffer keeps (`None`: the store's default).
    pub buffer_vectors: Option<usize>,
    /// Held-out windows for the metrics after training.
    pub eval_windows: usize,
    /// The model's name in the SAE files.
    pub model_id: String,
    /// A name for `saeplay.json`.
    pub name: Option<String>,
    /// Most bytes the run may take ([`SaeTrainingConfig::memory_needed`]); `None`: no check.
    pub memory_limit: Option<u64>,
    /// Go on from this point of an earlier run of the same config (captured data only: the
    /// capture is made again, which gives the same vectors).
    pub resume: Option<ResumePoint>,
}

impl TrainOptions {
    /// The page's run: capture first, [`PAGE_WINDOWS_PER_FORWARD`], 8 held-out windows.
    pub fn in_page(config: &SaeTrainingConfig) -> Self {
        Self {
            data: TrainingData::CaptureFirst {
                max_tokens: MAX_CAPTURED_TOKENS,
            },
            windows_per_forward: PAGE_WINDOWS_PER_FORWARD,
            buffer_vectors: Some(config.batch_size * 2),
            eval_windows: 8,
            model_id: "builtin".into(),
            name: Some(default_name(config)),
            memory_limit: Some(crate::memory::PAGE_WORK_BYTES),
            resume: None,
        }
    }
}

/// A trained SAE with its metrics and files.
pub struct TrainedSae {
    pub sae: Sae,
    pub files: SaeFiles,
    pub metrics: SaeMetrics,
    pub train_seconds: f64,
}

/// The name the page gives an SAE: `HOOK ARCH[k] xEXPANSION`.
pub fn default_name(config: &SaeTrainingConfig) -> String {
    let architecture = match config.architecture.k() {
        Some(k) => format!("{}{k}", config.architecture.name()),
        None => config.architecture.name().to_string(),
    };
    format!(
        "{} {architecture} x{}",
        config.hook_name, config.expansion_factor
    )
}

/// Most tokens the model writes for a training corpus: sampling is one token at a time, so a
/// run trains on these (cycled) rather than waiting for fresh text per step.
pub const MODEL_TEXT_TRAIN_TOKENS: usize = 16_384;

/// A corpus ready to read: text the model writes is sampled now (at least `tokens` tokens,
/// in sequences of at most `context` tokens), with a phase message per sequence; others as
/// they are.
pub async fn realise_corpus(
    loaded: &LoadedModel,
    corpus: &Corpus,
    tokens: usize,
    context: usize,
    on_phase: &dyn Fn(String),
) -> Result<Corpus> {
    use crate::model::{Generation, Hooks, SamplingConfig, Step};
    let Corpus::ModelText { seed } = corpus else {
        return Ok(corpus.clone());
    };
    let tokenizer = loaded.tokenizer()?;
    let bos = TokenStream::new(tokenizer, Corpus::Text { text: "a".into() }, 2)?.bos();
    let length = context
        .min(loaded.model.dims().n_ctx)
        .saturating_sub(1)
        .max(1);
    let mut text = String::new();
    let mut written = 0usize;
    let mut sequence = 0u64;
    while written < tokens {
        on_phase(format!(
            "The model is writing text to read: {written} of {tokens} tokens…"
        ));
        yield_now().await;
        let sampling = SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: seed.wrapping_add(sequence),
            max_new_tokens: length,
        };
        let mut generation = Generation::new(&loaded.model, &[bos], sampling, Hooks::none())?;
        while let Step::Token(_) = generation.step().await? {}
        let produced = generation.produced();
        written += produced.len().max(1); // a sequence that ends at once still counts, so this ends
        text.push_str(&tokenizer.decode(produced)?);
        text.push_str("\n\n");
        sequence += 1;
    }
    if text.trim().is_empty() {
        return Err(SaeplayError::InvalidSetting(
            "the model wrote no text to read (it ends every sequence at once)".into(),
        ));
    }
    Ok(Corpus::Text { text })
}

/// The corpus held-out windows come from: TinyTales from its held-out seed, a text itself, and
/// the model's text from other seeds.
pub fn held_out_corpus(corpus: &Corpus) -> Corpus {
    match corpus {
        Corpus::ModelText { seed } => Corpus::ModelText {
            seed: seed ^ 0x5eed_0000_0000_0000,
        },
        Corpus::TinyTales { .. } => Corpus::TinyTales {
            seed: HELD_OUT_SEED,
        },
        text => text.clone(),
    }
}

/// `n` held-out windows of `context` tokens for a model trained or probed on `corpus`.
pub fn held_out_windows(
    tokenizer: &TextTokenizer,
    corpus: &Corpus,
    context: usize,
    n: usize,
) -> Result<Vec<Window>> {
    TokenStream::new(tokenizer, held_out_corpus(corpus), context)?.windows(n)
}

/// The activation store a run with `config` reads from.
pub fn open_store(
    loaded: &LoadedModel,
    config: &SaeTrainingConfig,
    hook: HookPoint,
    windows_per_forward: usize,
    buffer_vectors: Option<usize>,
) -> Result<ActivationStore> {
    let defaults = StoreConfig::default();
    ActivationStore::new(
        &loaded.model,
        loaded.tokenizer()?,
        config.corpus.clone(),
        &[hook],
        StoreConfig {
            context: config.context,
            windows_per_forward,
            buffer_vectors: buffer_vectors.unwrap_or(defaults.buffer_vectors),
            skip_special_tokens: config.skip_special_tokens,
            seed: config.seed,
        },
    )
}

/// A batch source that lets the event loop run (messages, input, paint) before each step.
pub struct Yielding<'a, S>(pub &'a mut S);

impl<S: BatchSource> BatchSource for Yielding<'_, S> {
    async fn next_batch(&mut self, n: usize) -> Result<Vec<f32>> {
        yield_between_steps().await;
        self.0.next_batch(n).await
    }
}

/// The next `n` activations from `store`, one model forward at a time with the event loop run
/// between forwards. A corpus that gives no tokens is refused instead of looping for ever.
pub async fn capture(store: &mut ActivationStore, n: usize) -> Result<Vec<f32>> {
    let mut empty = 0;
    while store.buffered() < store.buffer_target(n) {
        let before = store.buffered();
        store.fill_step().await?;
        yield_between_steps().await;
        if store.buffered() == before {
            empty += 1;
            if empty > 3 {
                return Err(SaeplayError::EmptyCorpus);
            }
        }
    }
    Ok(store.next_batch(n).await?.swap_remove(0))
}

/// Wait while paused; `false` when the run was cancelled.
async fn carry_on(reporter: &dyn Reporter) -> bool {
    loop {
        match reporter.control() {
            Control::Continue => return true,
            Control::Stop => return false,
            Control::Pause => sleep_ms(100).await,
        }
    }
}

/// Capture `wanted` vectors of `d_in` in chunks of at most `chunk`, reporting as it goes;
/// `None` when cancelled.
///
/// The same vectors as drawing `chunk` at a time from the store ([`capture`]): every forward
/// that would run is planned first (which windows, how many vectors each keeps), the forwards
/// run here and on the reporter's [`ForwardHelpers`] at once, and their vectors go into the
/// store's shuffle buffer in plan order, with the draws between them where they would fall.
pub async fn capture_vectors(
    store: &mut ActivationStore,
    wanted: usize,
    d_in: usize,
    chunk: usize,
    reporter: &dyn Reporter,
) -> Result<Option<Vec<f32>>> {
    // The plan: forwards, and after which one each draw is made (and of how many).
    let mut forwards: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut draws: Vec<(usize, usize)> = Vec::new();
    let (mut buffered, mut planned) = (store.buffered(), 0);
    let mut empty = 0;
    while planned < wanted {
        let take = (wanted - planned).min(chunk.max(1));
        while buffered < store.buffer_target(take) {
            let (batch, kept) = store.next_forward()?;
            if kept == 0 {
                empty += 1;
                if empty > 3 {
                    return Err(SaeplayError::EmptyCorpus);
                }
            }
            forwards.push(batch);
            buffered += kept;
        }
        draws.push((forwards.len(), take));
        buffered -= take;
        planned += take;
    }

    // Helpers capture one hook; a run at several hooks captures here alone.
    let helpers = reporter.helpers().filter(|_| store.hooks().len() == 1);
    let mut spread = Spread::new(helpers, forwards.len(), 2);
    let mut results: Vec<Option<Vec<Vec<f32>>>> = vec![None; forwards.len()];
    let (mut taken, mut drawn) = (0, 0);
    let mut values = Vec::with_capacity(wanted * d_in);
    let start = now_seconds();
    while drawn < draws.len() {
        spread.pump(
            |i| HelperTask::Capture {
                windows: &forwards[i],
            },
            |i, answer| {
                results[i] = Some(vec![answer.values]);
                true
            },
        );
        // Buffer finished forwards in order, drawing where the plan draws.
        while taken < forwards.len() && results[taken].is_some() {
            let vectors = results[taken].take().expect("checked");
            store.take_forward(&forwards[taken], vectors);
            taken += 1;
            while drawn < draws.len() && draws[drawn].0 == taken {
                values.extend(store.draw(draws[drawn].1).swap_remove(0));
                drawn += 1;
                let done = values.len() / d_in;
                let left = (now_seconds() - start) / done as f64 * (wanted - done) as f64;
                reporter.phase(
                    format!(
                        "Capturing activations: {done} of {wanted} tokens, about {left:.0} s left"
                    ),
                    0.3 * done as f64 / wanted as f64,
                );
            }
        }
        if drawn == draws.len() {
            break;
        }
        if !carry_on(reporter).await {
            return Ok(None);
        }
        match spread.next_here() {
            Some(i) => results[i] = Some(store.run_forward(&forwards[i]).await?),
            None if spread.waiting() => sleep_ms(1).await,
            None => return Err(spread.lost()),
        }
        yield_between_steps().await;
    }
    Ok(Some(values))
}

/// Train `trainer` on `source` to the end, through pauses; `false` when cancelled.
pub async fn train_to_end(
    trainer: &mut SaeTrainer,
    source: &mut impl BatchSource,
    reporter: &dyn Reporter,
) -> Result<bool> {
    // A checkpoint falls due between steps: `run` is paused for it, then goes on. Sources that
    // cannot be replayed, and trainers too large to copy out every few seconds, take none.
    let every = reporter.checkpoint_every().filter(|_| {
        source.rows_served().is_some() && trainer.checkpoint_bytes() <= MAX_CHECKPOINT_BYTES
    });
    let last_saved = std::cell::Cell::new(now_seconds());
    let due = || every.is_some_and(|s| now_seconds() - last_saved.get() >= s);
    let mut on_step = |p: &Progress| {
        reporter.progress(p);
        match reporter.control() {
            Control::Continue if due() => Control::Pause,
            control => control,
        }
    };
    loop {
        match run(trainer, &mut Yielding(source), &now_seconds, &mut on_step).await? {
            RunOutcome::Finished => return Ok(true),
            RunOutcome::Stopped => return Ok(false),
            RunOutcome::Paused => {
                if due()
                    && let Some(rows_served) = source.rows_served()
                {
                    reporter.checkpoint(ResumePoint {
                        checkpoint: trainer.checkpoint().await?,
                        rows_served,
                    });
                    last_saved.set(now_seconds());
                }
                if !carry_on(reporter).await {
                    return Ok(false);
                }
            }
        }
    }
}

/// Refuse a run whose tensors would not fit in `options.memory_limit`, before anything is
/// allocated for it.
pub fn check_memory(config: &SaeTrainingConfig, d_in: usize, options: &TrainOptions) -> Result<()> {
    let stored = match &options.data {
        TrainingData::Stream => options
            .buffer_vectors
            .unwrap_or(crate::sae::store::StoreConfig::default().buffer_vectors)
            .max(config.batch_size),
        TrainingData::CaptureFirst { max_tokens } => config
            .training_tokens
            .min(*max_tokens)
            .max(config.batch_size),
        TrainingData::Captured(values) => values.len() / d_in.max(1),
    };
    crate::memory::check_fits(
        &format!(
            "Training an SAE of {} latents on {d_in}-wide activations at batch size {}",
            d_in.saturating_mul(config.expansion_factor),
            config.batch_size
        ),
        config.memory_needed(d_in, stored),
        options.memory_limit,
        "lower the expansion or the batch size",
    )
}

/// The trainer of `point`, checked to be a run of `config`, with `source` moved to where it was.
fn resume_trainer(
    config: &SaeTrainingConfig,
    point: &ResumePoint,
    source: &mut CapturedActivations,
    device: &burn::tensor::Device,
) -> Result<SaeTrainer> {
    let (saved, _) = SaeTrainer::run_of(&point.checkpoint)?;
    if saved != *config {
        return Err(SaeplayError::Checkpoint(
            "it belongs to a run with other settings".into(),
        ));
    }
    let trainer = SaeTrainer::restore(&point.checkpoint, device)?;
    source.skip(point.rows_served);
    Ok(trainer)
}

/// Train one SAE on `loaded`, measure it on held-out text and write its SAELens files; `None`
/// when cancelled.
pub async fn train_sae(
    loaded: &LoadedModel,
    config: SaeTrainingConfig,
    options: &TrainOptions,
    reporter: &dyn Reporter,
) -> Result<Option<TrainedSae>> {
    config.validate()?;
    let hook = HookPoint::parse(&config.hook_name, loaded.model.dims())?;
    let d_in = hook.width(loaded.model.dims());
    check_memory(&config, d_in, options)?;
    // Text the model writes is sampled first; the recipe keeps saying where it came from.
    let on_phase = |text: String| reporter.phase(text, 0.0);
    let train_corpus = realise_corpus(
        loaded,
        &config.corpus,
        MODEL_TEXT_TRAIN_TOKENS.min(config.training_tokens),
        config.context,
        &on_phase,
    )
    .await?;
    let eval_corpus = realise_corpus(
        loaded,
        &held_out_corpus(&config.corpus),
        options.eval_windows * config.context,
        config.context,
        &on_phase,
    )
    .await?;
    let work_config = SaeTrainingConfig {
        corpus: train_corpus,
        ..config.clone()
    };
    let device = loaded.model.device().clone();
    let start = now_seconds();
    let new_trainer =
        |first: &[f32]| SaeTrainer::new(config.clone(), d_in, &options.model_id, first, &device);
    let open = || {
        open_store(
            loaded,
            &work_config,
            hook,
            options.windows_per_forward,
            options.buffer_vectors,
        )
    };
    let trainer = match &options.data {
        TrainingData::Stream => {
            let mut store = open()?;
            let first = capture(&mut store, config.batch_size).await?;
            let mut trainer = new_trainer(&first)?;
            if !train_to_end(&mut trainer, &mut store, reporter).await? {
                return Ok(None);
            }
            trainer
        }
        TrainingData::CaptureFirst { max_tokens } => {
            let wanted = config
                .training_tokens
                .min(*max_tokens)
                .max(config.batch_size);
            let mut store = open()?;
            let chunk = config.batch_size;
            let Some(values) = capture_vectors(&mut store, wanted, d_in, chunk, reporter).await?
            else {
                return Ok(None);
            };
            drop(store);
            let mut source = CapturedActivations::new(values, d_in, config.seed)?;
            let mut trainer = match &options.resume {
                Some(point) => resume_trainer(&config, point, &mut source, &device)?,
                None => {
                    let first = source.next_batch(config.batch_size).await?;
                    new_trainer(&first)?
                }
            };
            if !train_to_end(&mut trainer, &mut source, reporter).await? {
                return Ok(None);
            }
            trainer
        }
        TrainingData::Captured(values) => {
            let mut source = CapturedActivations::new(values.clone(), d_in, config.seed)?;
            let first = source.next_batch(config.batch_size).await?;
            let mut trainer = new_trainer(&first)?;
            if !train_to_end(&mut trainer, &mut source, reporter).await? {
                return Ok(None);
            }
            trainer
        }
    };
    let train_seconds = now_seconds() - start;

    reporter.phase("Measuring the SAE on held-out stories…".into(), 0.92);
    yield_now().await;
    let sae = trainer.sae();
    let windows = held_out_windows(
        loaded.tokenizer()?,
        &eval_corpus,
        config.context,
        options.eval_windows,
    )?;
    let bos = TokenStream::new(loaded.tokenizer()?, eval_corpus.clone(), config.context)?.bos();
    let metrics = evaluate_sae_shared(
        &loaded.model,
        &sae,
        hook,
        &windows,
        options.windows_per_forward,
        config.skip_special_tokens.then_some(bos),
        reporter.helpers(),
    )
    .await?;
    let provenance = Provenance {
        trained_as: Some(config.architecture.name().to_string()),
        recipe: Some(config.clone()),
        metrics: Some(metrics.clone()),
        input_scale: Some(trainer.input_scale),
        model_id: Some(options.model_id.clone()),
        name: options.name.clone(),
        model_processing: loaded.processing,
    };
    let files = write_sae(
        &sae,
        Some(&log10_densities(&metrics.feature_density)),
        &provenance,
        Some(config.context),
    )
    .await?;
    Ok(Some(TrainedSae {
        sae,
        files,
        metrics,
        train_seconds,
    }))
}

/// The held-out windows a scan or an evaluation reads on this model ([`scan_windows`] of
/// [`SCAN_CONTEXT`] tokens of `corpus`'s held-out text, sampled first when the model writes it),
/// and the realised held-out corpus.
async fn scan_windows_of(
    loaded: &LoadedModel,
    corpus: &Corpus,
    on_phase: &dyn Fn(String),
) -> Result<(Vec<Window>, Corpus)> {
    let n = scan_windows(loaded.model.dims().parameter_count);
    let held_out = realise_corpus(
        loaded,
        &held_out_corpus(corpus),
        n * SCAN_CONTEXT,
        SCAN_CONTEXT,
        on_phase,
    )
    .await?;
    let windows =
        TokenStream::new(loaded.tokenizer()?, held_out.clone(), SCAN_CONTEXT)?.windows(n)?;
    Ok((windows, held_out))
}

/// Evaluate an SAE on held-out windows of `corpus` (as many as [`scan_windows`] affords on this
/// model), its forwards shared with `helpers`: the page's Evaluate button for SAEs whose files
/// carry no metrics (published ones).
pub async fn evaluate_job(
    loaded: &LoadedModel,
    sae: &Sae,
    hook: HookPoint,
    corpus: &Corpus,
    windows_per_forward: usize,
    on_phase: &dyn Fn(String),
    helpers: Option<&dyn ForwardHelpers>,
) -> Result<SaeMetrics> {
    let n = scan_windows(loaded.model.dims().parameter_count);
    on_phase(format!(
        "Evaluating on {n} held-out windows of {SCAN_CONTEXT} tokens: clean, spliced and zero-ablated forwards…"
    ));
    yield_now().await;
    let (windows, held_out) = scan_windows_of(loaded, corpus, on_phase).await?;
    let bos = TokenStream::new(loaded.tokenizer()?, held_out, SCAN_CONTEXT)?.bos();
    evaluate_sae_shared(
        &loaded.model,
        sae,
        hook,
        &windows,
        windows_per_forward,
        Some(bos),
        helpers,
    )
    .await
}

/// Scan held-out windows of `corpus` with `sae` at `hook` and summarise every feature, a few
/// windows per forward with the event loop run between them.
pub async fn feature_job(
    loaded: &LoadedModel,
    sae: &Sae,
    hook: HookPoint,
    corpus: &Corpus,
    windows_per_forward: usize,
    on_phase: &dyn Fn(String),
) -> Result<FeatureReport> {
    let scanned = scan_job(loaded, sae, hook, corpus, windows_per_forward, on_phase).await?;
    on_phase("Summarising features…".into());
    yield_now().await;
    feature_report(
        &loaded.model,
        loaded.tokenizer()?,
        sae,
        &scanned,
        None,
        &ScanConfig::default(),
    )
    .await
}

/// Read the SAE's activations on held-out windows of `corpus` (TinyTales' held-out stories, the
/// person's text, or text the model writes; as many windows as [`scan_windows`] affords on this
/// model), with a phase message between forwards.
pub async fn scan_job(
    loaded: &LoadedModel,
    sae: &Sae,
    hook: HookPoint,
    corpus: &Corpus,
    windows_per_forward: usize,
    on_phase: &dyn Fn(String),
) -> Result<Scan> {
    let (windows, _) = scan_windows_of(loaded, corpus, on_phase).await?;
    let mut scanned: Option<Scan> = None;
    for (i, chunk) in windows.chunks(windows_per_forward).enumerate() {
        on_phase(format!(
            "Reading the SAE's features on held-out text: {} of {} windows…",
            i * windows_per_forward,
            windows.len()
        ));
        yield_now().await;
        let part = scan(&loaded.model, sae, hook, chunk, windows_per_forward).await?;
        match &mut scanned {
            Some(s) => s.extend(part),
            None => scanned = Some(part),
        }
    }
    scanned.ok_or_else(|| SaeplayError::InvalidSetting("no windows to scan".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_work_per_forward_scales_with_the_model() {
        // The built-in model (about 1M parameters) and GPT-2 small (124M).
        assert_eq!(worker_windows_per_forward(1_000_000), 8);
        assert_eq!(worker_windows_per_forward(124_000_000), 1);
        assert_eq!(worker_windows_per_forward(0), 8);
        assert_eq!(scan_windows(1_000_000), SCAN_WINDOWS);
        assert_eq!(scan_windows(124_000_000), 8);
        // SmolLM2-135M's evaluation is worth a helper's start; the built-in model's is not.
        assert!(evaluation_wants_helpers(135_000_000));
        assert!(!evaluation_wants_helpers(1_000_000));
    }
}
