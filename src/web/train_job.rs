//! The browser's long jobs: one SAE training run (capture activations, train, measure, write the
//! files) and one feature scan (held-out stories through the SAE, summarised per feature). They
//! run in the Web Worker on the CPU path (so the page never waits on them) and in the page itself
//! on WebGPU (where the GPU does the work); a [`Reporter`] carries their progress out.

use crate::bundle::LoadedModel;
use crate::model::HookPoint;
use crate::sae::metrics::evaluate_sae;
use crate::sae::saelens::{Provenance, SaeFiles, log10_densities, write_sae};
use crate::sae::store::{ActivationStore, Corpus, StoreConfig, TokenStream};
use crate::sae::train::{
    BatchSource, CapturedActivations, Control, Progress, RunOutcome, SaeTrainer, SaeTrainingConfig,
    run,
};
use crate::train_model::HELD_OUT_SEED;
use crate::ui::train_form::MAX_CAPTURED_TOKENS;

use super::{now_ms, sleep};

/// Held-out windows the feature scan reads.
pub const SCAN_WINDOWS: usize = 24;
/// Held-out windows the metrics after training read.
const EVAL_WINDOWS: usize = 8;
/// Windows per forward while capturing or evaluating (one 2-window forward is ~0.15 s on the
/// CPU path, so the page answers between them when this runs in the page).
pub const WINDOWS_PER_FORWARD: usize = 2;

/// Where a training run reports to, and asks whether to go on.
pub trait Reporter {
    fn phase(&self, text: String, fraction: f64);
    fn progress(&self, progress: &Progress);
    fn control(&self) -> Control;
}

/// A batch source that lets the event loop run (messages, input, paint) before each step.
pub struct Yielding<'a, S>(pub &'a mut S);

impl<S: BatchSource> BatchSource for Yielding<'_, S> {
    async fn next_batch(&mut self, n: usize) -> crate::Result<Vec<f32>> {
        sleep(0).await;
        self.0.next_batch(n).await
    }
}

/// The next `n` activations from `store`, one model forward at a time with the event loop run
/// between forwards.
pub async fn capture(store: &mut ActivationStore, n: usize) -> crate::Result<Vec<f32>> {
    let mut empty = 0;
    while store.buffered() < store.buffer_target(n) {
        let before = store.buffered();
        store.fill_step().await?;
        sleep(0).await;
        if store.buffered() == before {
            empty += 1;
            if empty > 3 {
                return Err(crate::SaeplayError::InvalidSetting(
                    "the corpus gives no tokens to train on".into(),
                ));
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
            Control::Pause => sleep(100).await,
        }
    }
}

/// Train one SAE on `loaded`; `None` when cancelled.
pub async fn train_job(
    loaded: &LoadedModel,
    config: SaeTrainingConfig,
    reporter: &dyn Reporter,
) -> crate::Result<Option<SaeFiles>> {
    config.validate()?;
    let hook = HookPoint::parse(&config.hook_name, loaded.model.config())?;
    let d_in = hook.width(loaded.model.config());
    let device = loaded.model.device().clone();
    let mut store = ActivationStore::new(
        &loaded.model,
        &loaded.tokenizer,
        config.corpus.clone(),
        &[hook],
        StoreConfig {
            context: config.context,
            windows_per_forward: WINDOWS_PER_FORWARD,
            buffer_vectors: config.batch_size * 2,
            skip_special_tokens: config.skip_special_tokens,
            seed: config.seed,
        },
    )?;
    // Capture once (at most 64k vectors), then train over them: capturing is most of the cost.
    let wanted = config
        .training_tokens
        .min(MAX_CAPTURED_TOKENS)
        .max(config.batch_size);
    let mut values = Vec::with_capacity(wanted * d_in);
    let capture_start = now_ms();
    while values.len() < wanted * d_in {
        if !carry_on(reporter).await {
            return Ok(None);
        }
        let take = (wanted - values.len() / d_in).min(config.batch_size);
        values.extend(capture(&mut store, take).await?);
        let done = values.len() / d_in;
        let seconds = (now_ms() - capture_start) / 1000.0;
        let left = seconds / done as f64 * (wanted - done) as f64;
        reporter.phase(
            format!("Capturing activations: {done} of {wanted} tokens, about {left:.0} s left"),
            0.3 * done as f64 / wanted as f64,
        );
    }
    drop(store);
    let mut source = CapturedActivations::new(values, d_in, config.seed)?;
    let first = source.next_batch(config.batch_size).await?;
    let mut trainer = SaeTrainer::new(config.clone(), d_in, "builtin", &first, &device)?;
    let now = || now_ms() / 1000.0;
    let mut on_step = |p: &Progress| {
        reporter.progress(p);
        reporter.control()
    };
    loop {
        match run(&mut trainer, &mut Yielding(&mut source), &now, &mut on_step).await? {
            RunOutcome::Finished => break,
            RunOutcome::Stopped => return Ok(None),
            RunOutcome::Paused => {
                if !carry_on(reporter).await {
                    return Ok(None);
                }
            }
        }
    }
    reporter.phase("Measuring the SAE on held-out stories…".into(), 0.92);
    sleep(0).await;
    let sae = trainer.sae();
    let windows = TokenStream::new(
        &loaded.tokenizer,
        Corpus::TinyTales {
            seed: HELD_OUT_SEED,
        },
        config.context,
    )?
    .windows(EVAL_WINDOWS)?;
    let bos = TokenStream::new(&loaded.tokenizer, config.corpus.clone(), config.context)?.bos();
    let metrics = evaluate_sae(
        &loaded.model,
        &sae,
        hook,
        &windows,
        WINDOWS_PER_FORWARD,
        config.skip_special_tokens.then_some(bos),
    )
    .await?;
    let name = match config.architecture.k() {
        Some(k) => format!("{}{k}", config.architecture.name()),
        None => config.architecture.name().to_string(),
    };
    let provenance = Provenance {
        trained_as: Some(config.architecture.name().to_string()),
        recipe: Some(config.clone()),
        metrics: Some(metrics.clone()),
        input_scale: Some(trainer.input_scale),
        model_id: Some("builtin".into()),
        name: Some(format!(
            "{} {name} x{}",
            config.hook_name, config.expansion_factor
        )),
    };
    let files = write_sae(
        &sae,
        Some(&log10_densities(&metrics.feature_density)),
        &provenance,
        Some(config.context),
    )
    .await?;
    Ok(Some(files))
}

/// Scan held-out TinyTales windows with `sae` at `hook` and summarise every feature, a few windows
/// per forward with the event loop run between them.
pub async fn feature_job(
    loaded: &LoadedModel,
    sae: &crate::sae::Sae,
    hook: HookPoint,
    on_phase: &dyn Fn(String),
) -> crate::Result<crate::sae::features::FeatureReport> {
    use crate::sae::features::{ScanConfig, feature_report, scan};
    let windows = TokenStream::new(
        &loaded.tokenizer,
        Corpus::TinyTales {
            seed: HELD_OUT_SEED,
        },
        128,
    )?
    .windows(SCAN_WINDOWS)?;
    let mut scanned: Option<crate::sae::features::Scan> = None;
    for (i, chunk) in windows.chunks(WINDOWS_PER_FORWARD).enumerate() {
        on_phase(format!(
            "Reading the SAE's features on held-out stories: {} of {} windows…",
            i * WINDOWS_PER_FORWARD,
            windows.len()
        ));
        sleep(0).await;
        let part = scan(&loaded.model, sae, hook, chunk, WINDOWS_PER_FORWARD).await?;
        match &mut scanned {
            Some(s) => s.extend(part),
            None => scanned = Some(part),
        }
    }
    on_phase("Summarising features…".into());
    sleep(0).await;
    let scanned =
        scanned.ok_or_else(|| crate::SaeplayError::InvalidSetting("no windows to scan".into()))?;
    feature_report(
        &loaded.model,
        &loaded.tokenizer,
        sae,
        &scanned,
        None,
        &ScanConfig::default(),
    )
    .await
}
