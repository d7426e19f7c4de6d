//! Language-model commands: `train-model` (resumable, in a run directory) and `eval-model`.

use std::path::PathBuf;
use std::time::Instant;

use saeplay::Result;
use saeplay::backend::{BackendKind, block_on, native_device};
use saeplay::lm::run::{RunDir, RunEvent};
use saeplay::lm::{ModelTrainingConfig, evaluate_model};

use super::ModelArgs;

#[derive(clap::Args)]
pub struct TrainModelArgs {
    /// Run directory: checkpoints, and the final model in the Hugging Face layout.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 128)]
    pub d_model: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 256)]
    pub context: usize,
    #[arg(long, default_value_t = 4096)]
    pub vocab: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Megabytes of TinyTales text to train on.
    #[arg(long, default_value_t = 40.0)]
    pub train_mb: f64,
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    #[arg(long, default_value = "cpu", value_parser = super::parse_backend)]
    pub backend: BackendKind,
}

#[derive(clap::Args)]
pub struct EvalModelArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bytes of held-out TinyTales text for the loss.
    #[arg(long, default_value_t = 100_000)]
    pub eval_bytes: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

pub fn train_model(args: TrainModelArgs) -> Result<()> {
    let config = ModelTrainingConfig {
        n_layer: args.layers,
        n_embd: args.d_model,
        n_head: args.heads,
        n_positions: args.context,
        batch_size: args.batch_size,
        steps: args.steps,
        learning_rate: args.lr,
        min_learning_rate: args.lr / 10.0,
        warmup_steps: args.warmup,
        eval_every: args.eval_every,
        checkpoint_every: args.checkpoint_every,
        seed: args.seed,
        train_bytes: (args.train_mb * 1e6) as usize,
        tokenizer_vocab: args.vocab,
        ..ModelTrainingConfig::default()
    };
    let run = RunDir::new(&args.out)?;
    // A resumed run keeps its own recipe; only the step count comes from the command line.
    let recipe = match run.saved_state()? {
        Some(state) => state.config,
        None => config.clone(),
    };
    let steps = args.steps;
    let tokens_per_step = recipe.batch_size * recipe.n_positions;
    let device = native_device(args.backend)?;
    let started = Instant::now();
    let mut loop_start = None;
    let mut first_step = 0;
    let mut smoothed: Option<f32> = None;
    run.train(config, &device, |event| match event {
        RunEvent::Corpus {
            stories,
            train_bytes,
            held_out,
        } => eprintln!(
            "corpus: {stories} stories ({:.1} MB) for training, {held_out} held out",
            train_bytes as f64 / 1e6,
        ),
        RunEvent::Tokenizer {
            vocab,
            train_tokens,
        } => eprintln!(
            "tokenizer: {vocab} tokens; {train_tokens} training tokens ({:.2} bytes/token); prepared in {:.0} s",
            recipe.train_bytes as f64 / train_tokens as f64,
            started.elapsed().as_secs_f64()
        ),
        RunEvent::Resumed { step } => {
            first_step = step;
            eprintln!("resumed at step {step}");
        }
        RunEvent::Model { parameters } => {
            loop_start = Some(Instant::now());
            eprintln!(
                "model: {parameters} parameters, {} layers, d_model {}, context {}",
                recipe.n_layer, recipe.n_embd, recipe.n_positions
            );
        }
        RunEvent::Step {
            report,
            done,
            held_out,
        } => {
            smoothed = Some(smoothed.map_or(report.loss, |s| 0.95 * s + 0.05 * report.loss));
            if done % 10 == 0 || held_out.is_some() || done == steps {
                let elapsed = loop_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
                let per_step = elapsed / (done - first_step) as f64;
                eprintln!(
                    "step {done}/{steps}  loss {:.3} (avg {:.3}){}  lr {:.1e}  |g| {:.2}  {:.2} s/step  {:.0} tok/s  elapsed {}  left {}",
                    report.loss,
                    smoothed.unwrap_or(report.loss),
                    held_out
                        .map(|e| format!("  held-out {e:.3}"))
                        .unwrap_or_default(),
                    report.learning_rate,
                    report.grad_norm,
                    per_step,
                    tokens_per_step as f64 / per_step,
                    duration(started.elapsed().as_secs_f64()),
                    duration(per_step * (steps - done) as f64),
                );
            }
        }
    })?;
    eprintln!(
        "done: {steps} steps in {}; model in {}",
        duration(started.elapsed().as_secs_f64()),
        args.out.display()
    );
    Ok(())
}

pub fn eval_model(args: &EvalModelArgs) -> Result<()> {
    let EvalModelArgs {
        samples,
        temperature,
        seed,
        eval_bytes,
        json,
        ..
    } = *args;
    let loaded = args.model.load()?;
    let report = block_on(evaluate_model(
        &loaded,
        samples,
        temperature,
        seed,
        eval_bytes,
    ))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        println!("held-out loss {:.4} (nats/token)", report.held_out_loss);
        println!(
            "{} stories sampled at temperature {} (mean {:.0} tokens)",
            samples, temperature, report.mean_tokens
        );
        for (name, rate) in [
            ("balanced quotes", report.balanced_quotes),
            ("balanced parentheses", report.balanced_parens),
            ("balanced brackets", report.balanced_brackets),
            ("pronoun agreement", report.pronouns_agree),
            ("proper ending", report.proper_ending),
            ("all rules", report.passes_all),
        ] {
            println!("  {name:<22} {:>6.1}%", rate * 100.0);
        }
        println!("example:\n{}", report.example);
        for (story, broken) in &report.failures {
            println!("\nbroke {}:\n{story}", broken.join(", "));
        }
    }
    Ok(())
}
