//! SAE commands: `capture`, `train-sae`, `eval-sae`, `features`, `explain`, `score`, `encode`,
//! `bench-sae`. Training
//! runs the one pipeline in [`saeplay::sae::pipeline`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use saeplay::backend::{BackendKind, block_on, native_device};
use saeplay::error::FileAction;
use saeplay::io::tensors::{HostTensor, read_f32_tensors, write_safetensors};
use saeplay::model::HookPoint;
use saeplay::model::files::LoadedModel;
use saeplay::sae::explain::{
    Explanation, ExplanationSource, FeatureExplanation, Half, ScanText, Scorer, explain_features,
};
use saeplay::sae::features::{ScanConfig, feature_report, scan};
use saeplay::sae::metrics::{Figure, SaeMetrics, evaluate_sae};
use saeplay::sae::pipeline::{self, Reporter, TrainOptions, TrainingData};
use saeplay::sae::saelens::{HostSae, SaeFiles};
use saeplay::sae::stats::PROBE_KS;
use saeplay::sae::steer::Intervention;
use saeplay::sae::store::{ActivationStore, Corpus, StoreConfig, Window};
use saeplay::sae::train::{
    CapturedActivations, Control, LrSchedule, Progress, SaeTrainer, SaeTrainingConfig,
};
use saeplay::sae::{Architecture, Sae};
use saeplay::tinytales::Concept;
use saeplay::{Result, SaeplayError};

use super::ModelArgs;
use super::write_file as write;

#[derive(clap::Args)]
pub struct CorpusChoice {
    /// `tinytales` (generated stories) or the path of a UTF-8 text file.
    #[arg(long, default_value = "tinytales")]
    pub corpus: String,
    /// Seed of the generated stories.
    #[arg(long, default_value_t = 1)]
    pub corpus_seed: u64,
    /// Tokens per window, BOS included.
    #[arg(long, default_value_t = 128)]
    pub context: usize,
}

impl CorpusChoice {
    fn corpus(&self) -> Result<Corpus> {
        if self.corpus == "tinytales" {
            return Ok(Corpus::TinyTales {
                seed: self.corpus_seed,
            });
        }
        let text = std::fs::read_to_string(&self.corpus)
            .map_err(|e| SaeplayError::file(FileAction::Read, &self.corpus, e))?;
        Ok(Corpus::Text { text })
    }

    /// Held-out windows: TinyTales from the held-out seed, or the text itself.
    pub fn held_out(&self, loaded: &LoadedModel, windows: usize) -> Result<Vec<Window>> {
        pipeline::held_out_windows(loaded.tokenizer()?, &self.corpus()?, self.context, windows)
    }
}

#[derive(clap::Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub corpus: CorpusChoice,
    /// Comma-separated hook names.
    #[arg(long, default_value = "blocks.2.hook_resid_pre")]
    pub hooks: String,
    /// Activation vectors to capture per hook.
    #[arg(long, default_value_t = 200_000)]
    pub tokens: usize,
    /// Keep BOS / end-of-text positions.
    #[arg(long)]
    pub keep_special: bool,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn capture(args: CaptureArgs) -> Result<()> {
    let loaded = args.model.load()?;
    let hooks = HookPoint::parse_list(&args.hooks, loaded.model.dims())?;
    if hooks.is_empty() {
        return Err(SaeplayError::InvalidSetting(
            "name at least one hook".into(),
        ));
    }
    let mut store = ActivationStore::new(
        &loaded.model,
        loaded.tokenizer()?,
        args.corpus.corpus()?,
        &hooks,
        StoreConfig {
            context: args.corpus.context,
            skip_special_tokens: !args.keep_special,
            ..StoreConfig::default()
        },
    )?;
    let start = Instant::now();
    let batches = block_on(store.next_batch(args.tokens))?;
    let widths = store.widths().to_vec();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = hooks
        .iter()
        .zip(batches)
        .zip(&widths)
        .map(|((h, values), &w)| (h.to_string(), vec![args.tokens, w], values))
        .collect();
    let named = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()));
    write(&args.out, &write_safetensors(named))?;
    eprintln!(
        "wrote {} vectors of {} hook(s) to {} ({} tokens read, {:.1} s)",
        args.tokens,
        hooks.len(),
        args.out.display(),
        store.tokens_read(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct TrainSaeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub corpus: CorpusChoice,
    #[arg(long, default_value = "blocks.2.hook_resid_pre")]
    pub hook: String,
    /// standard, topk, batchtopk, gated, jumprelu or matryoshka_batchtopk.
    #[arg(long, default_value = "topk")]
    pub architecture: String,
    /// k of TopK, BatchTopK and Matryoshka BatchTopK.
    #[arg(long, default_value_t = 16)]
    pub k: usize,
    /// Matryoshka BatchTopK's nested widths, comma-separated (d_sae is added last); default
    /// d_sae/8, d_sae/4, d_sae/2.
    #[arg(long)]
    pub matryoshka_widths: Option<String>,
    #[arg(long, default_value_t = 8)]
    pub expansion: usize,
    /// Training vectors in all.
    #[arg(long, default_value_t = 1_000_000)]
    pub tokens: usize,
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    pub lr_schedule: LrSchedule,
    /// L1 (standard, gated) or L0 (jumprelu) coefficient.
    #[arg(long)]
    pub sparsity: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Train on activations written by `saeplay capture` instead of running the model.
    #[arg(long)]
    pub activations: Option<PathBuf>,
    /// Held-out windows for the final evaluation.
    #[arg(long, default_value_t = 32)]
    pub eval_windows: usize,
    /// Name recorded in saeplay.json.
    #[arg(long)]
    pub name: Option<String>,
    /// Output SAELens directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the final metrics as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints a line of progress every two seconds; never pauses.
struct PrintProgress {
    last_print: std::cell::Cell<f64>,
}

impl Reporter for PrintProgress {
    fn phase(&self, _text: String, _fraction: f64) {}

    fn progress(&self, p: &Progress) {
        let t = p.elapsed_seconds;
        if t - self.last_print.get() < 2.0 && p.stats.step + 1 != p.total_steps {
            return;
        }
        self.last_print.set(t);
        let terms: Vec<String> = p
            .stats
            .terms
            .iter()
            .map(|(n, v)| format!("{} {v:.4}", n.trim_end_matches("_loss")))
            .collect();
        eprintln!(
            "step {}/{}  loss {:.4} ({})  L0 {:.1}  EV {:.3}  dead {:.1}%  {:.0} vec/s  left {:.0}s",
            p.stats.step + 1,
            p.total_steps,
            p.stats.loss,
            terms.join(", "),
            p.stats.l0,
            p.stats.explained_variance,
            p.stats.dead_fraction * 100.0,
            p.vectors_per_second,
            p.seconds_left
        );
    }

    fn control(&self) -> Control {
        Control::Continue
    }
}

pub fn train_sae(args: TrainSaeArgs) -> Result<()> {
    let loaded = args.model.load()?;
    let hook = HookPoint::parse(&args.hook, loaded.model.dims())?;
    let architecture = Architecture::parse(&args.architecture, Some(args.k))?;
    let config = SaeTrainingConfig {
        architecture,
        hook_name: hook.to_string(),
        expansion_factor: args.expansion,
        corpus: args.corpus.corpus()?,
        context: args.corpus.context,
        training_tokens: args.tokens,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        lr_schedule: args.lr_schedule,
        sparsity_coefficient: args
            .sparsity
            .unwrap_or(architecture.default_sparsity_coefficient()),
        seed: args.seed,
        matryoshka_widths: match &args.matryoshka_widths {
            Some(list) => parse_sizes(list, "a Matryoshka width")?,
            None => Vec::new(),
        },
        ..SaeTrainingConfig::default()
    };
    config.validate()?;
    let data = match &args.activations {
        Some(path) => {
            let d_in = hook.width(loaded.model.dims());
            TrainingData::Captured(read_captured(path, &hook.to_string(), d_in)?)
        }
        None => TrainingData::Stream,
    };
    let options = TrainOptions {
        data,
        windows_per_forward: StoreConfig::default().windows_per_forward,
        buffer_vectors: None,
        eval_windows: args.eval_windows,
        model_id: model_name(&args.model.dir()?),
        name: args.name.clone(),
        memory_limit: saeplay::memory::available_bytes(),
        resume: None,
    };
    let reporter = PrintProgress {
        last_print: std::cell::Cell::new(-1.0),
    };
    let trained = block_on(pipeline::train_sae(&loaded, config, &options, &reporter))?
        .ok_or_else(|| SaeplayError::InvalidSetting("training ended early".into()))?;
    trained.files.write_dir(&args.out)?;
    eprintln!(
        "trained in {:.1} s; wrote {}",
        trained.train_seconds,
        args.out.display()
    );
    print_metrics(&trained.metrics, args.json);
    Ok(())
}

/// The model's name for SAE files: the directory's name under `saeplay/`.
fn model_name(dir: &Path) -> String {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    format!("saeplay/{name}")
}

fn read_captured(path: &Path, hook: &str, width: usize) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| SaeplayError::file(FileAction::Read, path, e))?;
    let mut tensors = read_f32_tensors(&bytes)?;
    let HostTensor { shape, values } = tensors.remove(hook).ok_or_else(|| {
        SaeplayError::InvalidSetting(format!(
            "{} holds no activations for `{hook}`",
            path.display()
        ))
    })?;
    if shape.len() != 2 || shape[1] != width {
        return Err(SaeplayError::InvalidSetting(format!(
            "the activations for `{hook}` have shape {shape:?}; the model's hook is {width} wide"
        )));
    }
    Ok(values)
}

fn print_metrics(m: &SaeMetrics, json: bool) {
    if json {
        let mut m = m.clone();
        m.feature_density.clear();
        let mut value = serde_json::to_value(&m).unwrap_or_default();
        // Every plottable figure under its SAEBench name, as the page's index lists them.
        let figures: serde_json::Map<String, serde_json::Value> = Figure::ALL
            .into_iter()
            .filter_map(|f| Some((f.name().to_string(), m.figure(f)?.into())))
            .collect();
        value["figures"] = figures.into();
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return;
    }
    println!("held-out tokens      {}", m.tokens);
    println!("L0                   {:.2}", m.l0);
    println!("explained variance   {:.4}", m.explained_variance);
    println!("MSE                  {:.6}", m.mse);
    println!(
        "CE clean / SAE / zero {:.4} / {:.4} / {:.4}",
        m.ce_clean, m.ce_with_sae, m.ce_zero_ablation
    );
    println!("loss recovered       {:.4}", m.loss_recovered);
    println!("KL                   {:.5}", m.kl);
    println!(
        "dead / dense         {:.1}% / {:.1}%",
        m.dead_fraction * 100.0,
        m.dense_fraction * 100.0
    );
    println!(
        "shrinkage (gamma)    {:.3}   L2 ratio {:.3}   cosine {:.4}",
        m.shrinkage, m.l2_ratio, m.cossim
    );
    println!(
        "fraction alive       {:.3}   consistent activation {:.2}",
        m.fraction_alive(),
        m.consistent_activation_heuristic
    );
    println!(
        "mean max cosine      decoder {:.3}   encoder {:.3}",
        m.mean_max_decoder_cosine, m.mean_max_encoder_cosine
    );
    if !m.sparse_probing.is_empty() {
        let ks: Vec<String> = PROBE_KS
            .iter()
            .enumerate()
            .map(|(i, k)| {
                format!(
                    "top {k} {:.3}",
                    m.sparse_probing_mean(i).unwrap_or(f64::NAN)
                )
            })
            .collect();
        println!(
            "sparse probing       {} ({} concepts)",
            ks.join("   "),
            m.sparse_probing.len()
        );
    }
    if !m.absorption.is_empty() {
        println!(
            "absorption           mean fraction {:.3}   full {:.3} ({} concepts)",
            m.mean_absorption_fraction().unwrap_or(f64::NAN),
            m.full_absorption_rate().unwrap_or(f64::NAN),
            m.absorption.len()
        );
        for a in &m.absorption {
            println!(
                "  {:<18} fraction {:.3}  full {:.3}  main latents {:?}",
                Concept::from_index(a.concept).map_or("?", Concept::name),
                a.mean_absorption_fraction,
                a.full_absorption_rate,
                a.main_latents
            );
        }
    }
    if let Some(mean) = m.mean_concept_auroc {
        println!(
            "concept recovery     mean best-feature AUROC {mean:.3} over {} concepts",
            m.concept_recovery.len()
        );
        let mut sorted = m.concept_recovery.clone();
        sorted.sort_by(|a, b| b.auroc.total_cmp(&a.auroc));
        for c in sorted {
            println!("  {:<18} {:.3}  feature {}", c.concept, c.auroc, c.feature);
        }
    }
}

/// An SAE's files and the model it reads, processed as its cfg.json asks
/// (`model_from_pretrained_kwargs`) unless the flags say otherwise.
pub fn load_model_and_sae(model: &ModelArgs, dir: &Path) -> Result<(LoadedModel, Sae, HookPoint)> {
    let host = SaeFiles::read_dir(dir)?.parse()?;
    let loaded = model.load_processed(host.model_processing)?;
    host.check_model_processing(loaded.processing)?;
    let (sae, hook) = upload_sae(&host, &loaded)?;
    Ok((loaded, sae, hook))
}

pub fn upload_sae(host: &HostSae, loaded: &LoadedModel) -> Result<(Sae, HookPoint)> {
    let hook = HookPoint::parse(&host.config.hook_name, loaded.model.dims())?;
    let sae = host.upload(loaded.model.device())?;
    sae.check_fits(&hook.to_string(), hook.width(loaded.model.dims()))?;
    Ok((sae, hook))
}

#[derive(clap::Args)]
pub struct EvalSaeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub corpus: CorpusChoice,
    /// A SAELens directory.
    #[arg(long)]
    pub sae: PathBuf,
    #[arg(long, default_value_t = 32)]
    pub windows: usize,
    /// Count BOS / end-of-text positions too.
    #[arg(long)]
    pub keep_special: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn eval_sae(args: EvalSaeArgs) -> Result<()> {
    let (loaded, sae, hook) = load_model_and_sae(&args.model, &args.sae)?;
    let windows = args.corpus.held_out(&loaded, args.windows)?;
    let bos = windows.first().map(|w| w.ids[0]);
    let metrics = block_on(evaluate_sae(
        &loaded.model,
        &sae,
        hook,
        &windows,
        16,
        if args.keep_special { None } else { bos },
    ))?;
    print_metrics(&metrics, args.json);
    Ok(())
}

#[derive(clap::Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub corpus: CorpusChoice,
    #[arg(long)]
    pub sae: PathBuf,
    /// Comma-separated feature indices (all when absent).
    #[arg(long)]
    pub features: Option<String>,
    #[arg(long, default_value_t = 64)]
    pub windows: usize,
    /// Write the JSON here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The SAE at `sae_dir` on its model, and its activations on `windows` held-out windows of
/// `corpus` (for `features`, `explain` and `score`).
fn scan_held_out(
    model: &ModelArgs,
    corpus: &CorpusChoice,
    sae_dir: &Path,
    windows: usize,
) -> Result<(LoadedModel, Sae, saeplay::sae::features::Scan)> {
    let (loaded, sae, hook) = load_model_and_sae(model, sae_dir)?;
    let held_out = corpus.held_out(&loaded, windows)?;
    let scanned = block_on(scan(
        &loaded.model,
        &sae,
        hook,
        &held_out,
        ScanConfig::default().batch_windows,
    ))?;
    Ok((loaded, sae, scanned))
}

/// `value` as pretty JSON, to `out` or standard output.
pub fn write_json(
    value: &impl serde::Serialize,
    what: &'static str,
    out: Option<&Path>,
) -> Result<()> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|source| SaeplayError::Json { what, source })?;
    match out {
        Some(path) => write(path, json.as_bytes()),
        None => {
            println!("{json}");
            Ok(())
        }
    }
}

pub fn features(args: FeaturesArgs) -> Result<()> {
    let chosen = match &args.features {
        None => None,
        Some(list) => Some(parse_sizes(list, "a feature index")?),
    };
    let (loaded, sae, scanned) = scan_held_out(&args.model, &args.corpus, &args.sae, args.windows)?;
    let report = block_on(feature_report(
        &loaded.model,
        loaded.tokenizer()?,
        &sae,
        &scanned,
        chosen.as_deref(),
        &ScanConfig::default(),
    ))?;
    write_json(&report, "the feature report", args.out.as_deref())
}

/// Explaining reads the even windows and scores on the odd ones.
fn check_explain_windows(windows: usize) -> Result<()> {
    if windows < 2 {
        return Err(SaeplayError::InvalidSetting(
            "explaining needs at least 2 windows: the even ones explain, the odd ones score".into(),
        ));
    }
    Ok(())
}

pub fn explain(args: FeaturesArgs) -> Result<()> {
    check_explain_windows(args.windows)?;
    let (loaded, sae, scanned) = scan_held_out(&args.model, &args.corpus, &args.sae, args.windows)?;
    let features = match &args.features {
        None => (0..sae.config.d_sae).collect(),
        Some(list) => parse_sizes(list, "a feature index")?,
    };
    let explanations = block_on(explain_features(
        &loaded.model,
        loaded.tokenizer()?,
        &sae,
        &scanned,
        &features,
        0,
    ))?;
    write_json(&explanations, "the explanations", args.out.as_deref())
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub corpus: CorpusChoice,
    #[arg(long)]
    pub sae: PathBuf,
    #[arg(long)]
    pub feature: usize,
    /// Words or phrases, `concept:NAME`, `after: ...` or `before: ...`, clauses split by `;`.
    #[arg(long)]
    pub explanation: String,
    #[arg(long, default_value_t = 64)]
    pub windows: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn score(args: ScoreArgs) -> Result<()> {
    let explanation = Explanation::parse(&args.explanation)
        .map_err(|e| SaeplayError::InvalidSetting(e.to_string()))?;
    check_explain_windows(args.windows)?;
    let (loaded, sae, scanned) = scan_held_out(&args.model, &args.corpus, &args.sae, args.windows)?;
    if args.feature >= sae.config.d_sae {
        return Err(SaeplayError::InvalidSetting(format!(
            "feature {} does not exist: this SAE has features 0 to {}",
            args.feature,
            sae.config.d_sae - 1
        )));
    }
    let text = ScanText::new(loaded.tokenizer()?, &scanned);
    let score = Scorer::new(&scanned, &text, 0).score(args.feature, &explanation, Half::Score);
    let result = FeatureExplanation {
        feature: args.feature,
        explanation: explanation.text(),
        source: ExplanationSource::Person,
        score,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
        return Ok(());
    }
    println!("explanation   {}", result.explanation);
    match &result.score {
        None => println!(
            "feature {} never fires on the scored half of the held-out text",
            args.feature
        ),
        Some(s) => {
            println!(
                "simulation    {:.3}  (correlation over {} top and {} random contexts)",
                s.simulation, s.top_contexts, s.random_contexts
            );
            match s.detection {
                Some(d) => println!("detection     {d:.3}  (balanced accuracy)"),
                None => println!("detection     -  (the feature fires in every context)"),
            }
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct BenchSaeArgs {
    /// cpu or wgpu.
    #[arg(long, default_value = "cpu", value_parser = super::parse_backend)]
    pub backend: BackendKind,
    #[arg(long, default_value = "64,128,256")]
    pub d_in: String,
    #[arg(long, default_value = "1024,4096,8192")]
    pub d_sae: String,
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    #[arg(long, default_value = "topk")]
    pub architecture: String,
    #[arg(long, default_value_t = 16)]
    pub k: usize,
    /// Seconds per shape (after two warm-up steps).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    #[arg(long)]
    pub json: bool,
    /// Train on burn's ops (autodiff) even where a CPU device would run on host buffers.
    #[arg(long)]
    pub burn_ops: bool,
}

/// Training throughput on random activations: vectors/s and achieved GFLOP/s, counting the six
/// `batch x d_in x d_sae` matrix products of a step (two forward, four backward) at 2 flops per
/// multiply-add, as the PyTorch yardstick (tests/sae/pytorch_bench.py) does.
pub fn bench_sae(args: BenchSaeArgs) -> Result<()> {
    let device = native_device(args.backend)?;
    let parse = |s: &str| parse_sizes(s, "a size");
    let architecture = Architecture::parse(&args.architecture, Some(args.k))?;
    let mut records = Vec::new();
    if !args.json {
        println!(
            "{:>9} {:>5} {:>6} {:>6} {:>6} {:>9} {:>10} {:>8}",
            "arch", "d_in", "d_sae", "batch", "steps", "ms/step", "vectors/s", "GFLOP/s"
        );
    }
    for &d_in in &parse(&args.d_in)? {
        for &d_sae in &parse(&args.d_sae)? {
            if d_sae % d_in != 0 {
                continue;
            }
            let mut rng = saeplay::rng::SplitMix64::new(7);
            let rows = args.batch_size * 4;
            let values: Vec<f32> = (0..rows * d_in).map(|_| rng.normal()).collect();
            let mut source = CapturedActivations::new(values, d_in, 1)?;
            let config = SaeTrainingConfig {
                architecture,
                expansion_factor: d_sae / d_in,
                batch_size: args.batch_size,
                training_tokens: usize::MAX / 2,
                sparsity_coefficient: architecture.default_sparsity_coefficient(),
                ..SaeTrainingConfig::default()
            };
            let next = |source: &mut CapturedActivations| {
                block_on(saeplay::sae::train::BatchSource::next_batch(
                    source,
                    args.batch_size,
                ))
            };
            let first = next(&mut source)?;
            let mut trainer = SaeTrainer::new(config, d_in, "bench", &first, &device)?;
            if args.burn_ops {
                trainer = trainer.with_burn_ops();
            }
            for _ in 0..2 {
                let batch = next(&mut source)?;
                block_on(trainer.train_step(&batch))?;
            }
            let start = Instant::now();
            let mut steps = 0;
            while steps < 3 || start.elapsed().as_secs_f64() < args.seconds {
                let batch = next(&mut source)?;
                block_on(trainer.train_step(&batch))?;
                steps += 1;
            }
            let seconds = start.elapsed().as_secs_f64();
            let per_step = seconds / steps as f64;
            let vectors = args.batch_size as f64 / per_step;
            let gflops = 12.0 * (args.batch_size * d_in * d_sae) as f64 / per_step / 1e9;
            if !args.json {
                println!(
                    "{:>9} {:>5} {:>6} {:>6} {:>6} {:>9.1} {:>10.0} {:>8.1}",
                    architecture.name(),
                    d_in,
                    d_sae,
                    args.batch_size,
                    steps,
                    per_step * 1e3,
                    vectors,
                    gflops
                );
            }
            records.push(serde_json::json!({
                "backend": args.backend.name(), "arch": architecture.name(), "d_in": d_in,
                "path": if trainer.trains_on_host() { "host" } else { "burn" },
                "d_sae": d_sae, "batch": args.batch_size, "steps": steps,
                "vectors_per_s": vectors, "gflops": gflops,
            }));
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(records));
    }
    Ok(())
}

/// Comma-separated whole numbers; `what` names one in the error.
fn parse_sizes(text: &str, what: &str) -> Result<Vec<usize>> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| SaeplayError::InvalidSetting(format!("`{v}` is not {what}")))
        })
        .collect()
}

/// Interventions from `--steer`, `--clamp`, `--ablate`, `--orthogonal` and `--projection-cap`,
/// each a list of `(mode, texts)`.
pub fn interventions(by_mode: &[(&str, &[String])]) -> Result<Vec<Intervention>> {
    let mut out = Vec::new();
    for (mode, texts) in by_mode {
        for text in *texts {
            out.push(Intervention::parse(text, mode)?);
        }
    }
    Ok(out)
}

#[derive(clap::Args)]
pub struct EncodeArgs {
    /// A SAELens directory.
    #[arg(long)]
    pub sae: PathBuf,
    /// Activations written by `saeplay capture` (the tensor named as the SAE's hook is read).
    #[arg(long)]
    pub activations: PathBuf,
    /// How many rows to encode (from the start).
    #[arg(long, default_value_t = 1024)]
    pub rows: usize,
    /// Output safetensors: `x`, `feature_acts`, `x_hat`.
    #[arg(long)]
    pub out: PathBuf,
}

/// Encode captured activations with an SAE and write inputs, features and reconstructions (for
/// offline analysis, and for checking an SAE against SAELens: tests/sae/compare_saelens.py).
pub fn encode(args: EncodeArgs) -> Result<()> {
    let device = saeplay::backend::cpu_device();
    let host = SaeFiles::read_dir(&args.sae)?.parse()?;
    let sae = host.upload(&device)?;
    let (d_in, d_sae) = (sae.config.d_in, sae.config.d_sae);
    let values = read_captured(&args.activations, &sae.config.hook_name, d_in)?;
    let rows = args.rows.min(values.len() / d_in);
    let x = values[..rows * d_in].to_vec();
    let xt = saeplay::backend::float_tensor(x.clone(), [rows, d_in], &device);
    let (acts, x_hat) = sae.encode_and_reconstruct(xt);
    let x_hat = block_on(saeplay::backend::read_f32(x_hat))?;
    let acts = block_on(saeplay::backend::read_f32(acts))?;
    let tensors = [
        ("x", vec![rows, d_in], x),
        ("feature_acts", vec![rows, d_sae], acts),
        ("x_hat", vec![rows, d_in], x_hat),
    ];
    let named = tensors
        .iter()
        .map(|(n, s, v)| (*n, s.as_slice(), v.as_slice()));
    write(&args.out, &write_safetensors(named))?;
    eprintln!("wrote {rows} rows to {}", args.out.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct MakeTestSaeArgs {
    /// Width of the activations it reads.
    #[arg(long)]
    pub d_in: usize,
    /// Number of latents.
    #[arg(long)]
    pub d_sae: usize,
    /// The hook it reads, e.g. blocks.8.hook_resid_pre.
    #[arg(long)]
    pub hook: String,
    /// standard, topk, batchtopk, gated or jumprelu.
    #[arg(long, default_value = "topk")]
    pub architecture: String,
    #[arg(long, default_value_t = 32)]
    pub k: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

/// Write a random SAELens directory (unit decoder rows, encoder their transpose): for tests and
/// benchmarks at real sizes without downloads.
pub fn make_test_sae(args: MakeTestSaeArgs) -> Result<()> {
    let architecture = saeplay::sae::Architecture::parse(&args.architecture, Some(args.k))?;
    let config = saeplay::sae::SaeConfig {
        architecture,
        d_in: args.d_in,
        d_sae: args.d_sae,
        hook_name: args.hook.clone(),
        model_name: "saeplay/test-model".into(),
        normalize_activations: Default::default(),
    };
    config.validate()?;
    let weights = saeplay::sae::fixtures::random_sae_weights(&config, args.seed);
    let sae = saeplay::sae::Sae::from_host(config, &weights, &saeplay::backend::cpu_device())?;
    let files = block_on(saeplay::sae::saelens::write_sae(
        &sae,
        None,
        &saeplay::sae::saelens::Provenance::default(),
        None,
    ))?;
    files.write_dir(&args.out)?;
    eprintln!(
        "wrote a random {} SAE ({} x {}) to {}",
        args.architecture,
        args.d_in,
        args.d_sae,
        args.out.display()
    );
    Ok(())
}
