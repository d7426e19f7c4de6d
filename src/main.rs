//! The native command line: the same engine as the page.

/// In the browser the binary's main starts the page.
#[cfg(target_arch = "wasm32")]
fn main() {
    unsafe extern "C" {
        /// The module's static constructors (cubecl registers its kernels with `inventory`).
        fn __wasm_call_ctors();
    }
    // Run them once, here. Because this code names them, wasm-ld does not wrap every export in
    // a call to them, as it does for a binary otherwise: then each call from JavaScript into the
    // module (every DOM callback, every externref allocation) re-ran all of them, ~0.3 ms a call,
    // which made drawing a list of 200 rows take 1.5 s.
    unsafe { __wasm_call_ctors() };
    saeplay::web::start();
}

#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_arch = "wasm32"))]
#[path = "cli_sae.rs"]
mod sae_cli;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod cli {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::time::Instant;

    use clap::{Parser, Subcommand};
    use saeplay::analysis::forward_tensors;
    use saeplay::backend::{BackendKind, block_on, native_device, read_f32};
    use saeplay::bundle::{LoadedModel, ModelFiles};
    use saeplay::fixtures::{TinySpec, tiny_checkpoint};
    use saeplay::model::{Generation, HookPoint, Hooks, LogitsFor, SamplingConfig, Step};
    use saeplay::{Result, SaeplayError};

    /// The built-in model, found beside the crate's sources.
    pub const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/builtin");

    #[derive(Parser)]
    #[command(
        name = "saeplay",
        version,
        about = "A sparse-autoencoder playground for small GPT models"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Args)]
    struct ModelArgs {
        /// A Hugging Face GPT-2 directory (config.json, model.safetensors, tokenizer.json).
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// cpu, or wgpu (Vulkan/Metal natively).
        #[arg(long, default_value = "cpu")]
        backend: String,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Shapes of a model and the list of its hook points.
        Info {
            #[command(flatten)]
            model: ModelArgs,
        },
        /// Continue a prompt.
        Generate {
            #[command(flatten)]
            model: ModelArgs,
            #[arg(long)]
            prompt: String,
            #[arg(long, default_value_t = 64)]
            max_tokens: usize,
            /// 0 is greedy.
            #[arg(long, default_value_t = 0.8)]
            temperature: f32,
            #[arg(long)]
            top_k: Option<usize>,
            #[arg(long)]
            top_p: Option<f32>,
            #[arg(long, default_value_t = 0)]
            seed: u64,
            /// A SAELens directory whose features --steer, --clamp and --ablate name.
            #[arg(long)]
            sae: Option<PathBuf>,
            /// Add STRENGTH x the feature's decoder direction: FEATURE:STRENGTH (repeatable).
            #[arg(long)]
            steer: Vec<String>,
            /// Hold a feature at a value, keeping the SAE's error: FEATURE:VALUE (repeatable).
            #[arg(long)]
            clamp: Vec<String>,
            /// Remove a feature, keeping the SAE's error: FEATURE (repeatable).
            #[arg(long)]
            ablate: Vec<String>,
            /// Also print the generated token ids (comma-separated) on stderr.
            #[arg(long)]
            print_ids: bool,
        },
        /// Run one forward pass and write logits and hook activations as safetensors.
        Forward {
            #[command(flatten)]
            model: ModelArgs,
            /// Comma-separated token ids.
            #[arg(long, conflicts_with = "text", required_unless_present = "text")]
            ids: Option<String>,
            #[arg(long)]
            text: Option<String>,
            /// Comma-separated hook names, e.g. blocks.0.hook_resid_pre,blocks.1.hook_mlp_out.
            #[arg(long, default_value = "")]
            hooks: String,
            #[arg(long)]
            out: PathBuf,
        },
        /// Write a deterministic random-weight GPT-2 checkpoint (tests, benchmarks, placeholders).
        MakeTestModel {
            #[arg(long)]
            out: PathBuf,
            #[arg(long, default_value_t = 2)]
            layers: usize,
            #[arg(long, default_value_t = 32)]
            d_model: usize,
            #[arg(long, default_value_t = 4)]
            heads: usize,
            #[arg(long, default_value_t = 64)]
            context: usize,
            #[arg(long, default_value_t = 1)]
            seed: u64,
            /// Store keys with the `transformer.` prefix.
            #[arg(long)]
            prefix: bool,
        },
        /// Train a GPT-2 on TinyTales from scratch (resumes from DIR's checkpoint when present).
        TrainModel(TrainModelArgs),
        /// Sample stories and score them against TinyTales' rules; held-out loss.
        EvalModel {
            #[command(flatten)]
            model: ModelArgs,
            #[arg(long, default_value_t = 100)]
            samples: usize,
            #[arg(long, default_value_t = 0.8)]
            temperature: f32,
            #[arg(long, default_value_t = 0)]
            seed: u64,
            /// Bytes of held-out TinyTales text for the loss.
            #[arg(long, default_value_t = 100_000)]
            eval_bytes: usize,
            /// Print the report as JSON.
            #[arg(long)]
            json: bool,
        },
        /// Capture activations at hook points over a corpus (safetensors, one tensor per hook).
        Capture(crate::sae_cli::CaptureArgs),
        /// Train an SAE and write it as a SAELens directory (with metrics in saeplay.json).
        TrainSae(crate::sae_cli::TrainSaeArgs),
        /// Evaluate an SAE on held-out text: L0, explained variance, loss recovered, ...
        EvalSae(crate::sae_cli::EvalSaeArgs),
        /// Per-feature data (examples, histogram, logit lens, nearest features, concepts) as JSON.
        Features(crate::sae_cli::FeaturesArgs),
        /// Encode captured activations with an SAE: writes x, feature_acts and x_hat.
        Encode(crate::sae_cli::EncodeArgs),
        /// SAE training throughput (vectors/s, GFLOP/s) on random activations.
        BenchSae(crate::sae_cli::BenchSaeArgs),
        /// Forward throughput (tokens per second) for several batch x sequence shapes.
        Bench {
            #[command(flatten)]
            model: ModelArgs,
            /// Shapes as BATCHxSEQ, comma-separated.
            #[arg(long, default_value = "1x1,1x64,8x64,1x128,16x128")]
            shapes: String,
            /// Seconds to spend per shape (at least 3 runs each).
            #[arg(long, default_value_t = 2.0)]
            seconds: f64,
        },
    }

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
        #[arg(long, default_value = "cpu")]
        pub backend: String,
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        match run(cli.command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    }

    fn load(args: &ModelArgs) -> Result<LoadedModel> {
        let kind = BackendKind::parse(&args.backend)?;
        let host = ModelFiles::read_dir(&args.model)?.parse()?;
        host.upload(&native_device(kind)?)
    }

    fn run(command: Command) -> Result<()> {
        match command {
            Command::Info { model } => info(&model),
            Command::Generate {
                model,
                prompt,
                max_tokens,
                temperature,
                top_k,
                top_p,
                seed,
                sae,
                steer,
                clamp,
                ablate,
                print_ids,
            } => {
                let loaded = load(&model)?;
                let prompt_ids = loaded.encode_prompt(&prompt)?.ids;
                let interventions = crate::sae_cli::interventions(&steer, &clamp, &ablate)?;
                let hooks = match (&sae, interventions.is_empty()) {
                    (_, true) => Hooks::none(),
                    (None, false) => {
                        return Err(SaeplayError::InvalidSetting(
                            "--steer, --clamp and --ablate need --sae DIR".into(),
                        ));
                    }
                    (Some(dir), false) => {
                        let (sae, hook) = crate::sae_cli::steering_sae(dir, &loaded)?;
                        Hooks::none().with_patch(
                            hook,
                            saeplay::sae::steer::intervention_patch(&sae, &interventions)?,
                        )
                    }
                };
                let config = SamplingConfig {
                    temperature,
                    top_k,
                    top_p,
                    seed,
                    max_new_tokens: max_tokens,
                };
                let mut generation = Generation::new(&loaded.model, &prompt_ids, config, hooks)?;
                print!("{prompt}");
                let mut shown = String::new();
                let reason = loop {
                    match block_on(generation.step())? {
                        Step::Token(_) => {
                            // Decode the whole continuation so multi-byte characters print whole.
                            let text = loaded.tokenizer.decode(generation.produced())?;
                            if let Some(new) = text.strip_prefix(shown.as_str()) {
                                print!("{new}");
                                shown = text;
                            }
                            std::io::stdout().flush().ok();
                        }
                        Step::Done(reason) => break reason,
                    }
                };
                println!();
                eprintln!(
                    "({} tokens; {})",
                    generation.produced().len(),
                    reason.describe()
                );
                if print_ids {
                    let ids: Vec<String> =
                        generation.produced().iter().map(u32::to_string).collect();
                    eprintln!("ids: {}", ids.join(","));
                }
                Ok(())
            }
            Command::Forward {
                model,
                ids,
                text,
                hooks,
                out,
            } => {
                let loaded = load(&model)?;
                let config = loaded.model.config();
                let hooks = HookPoint::parse_list(&hooks, config)?;
                let ids = match (ids, text) {
                    (Some(ids), _) => parse_ids(&ids)?,
                    (None, Some(text)) => loaded.encode_prompt(&text)?.ids,
                    (None, None) => return Err(SaeplayError::EmptyInput),
                };
                let tensors = block_on(forward_tensors(&loaded.model, &ids, &hooks))?;
                write_file(&out, &tensors.to_safetensors())?;
                eprintln!(
                    "wrote {} ({} tokens; logits and {} hooks)",
                    out.display(),
                    ids.len(),
                    hooks.len()
                );
                Ok(())
            }
            Command::MakeTestModel {
                out,
                layers,
                d_model,
                heads,
                context,
                seed,
                prefix,
            } => {
                let spec = TinySpec {
                    n_layer: layers,
                    n_embd: d_model,
                    n_head: heads,
                    n_positions: context,
                    vocab_padding: 0,
                    seed,
                    with_prefix: prefix,
                };
                let files = tiny_checkpoint(&spec);
                files.parse()?; // the generator must produce what the loader accepts
                files.write_dir(&out)?;
                eprintln!("wrote a random-weight GPT-2 to {}", out.display());
                Ok(())
            }
            Command::Bench {
                model,
                shapes,
                seconds,
            } => bench(&model, &shapes, seconds),
            Command::TrainModel(args) => crate::train::train_model(args),
            Command::Capture(args) => crate::sae_cli::capture(args),
            Command::TrainSae(args) => crate::sae_cli::train_sae(args),
            Command::EvalSae(args) => crate::sae_cli::eval_sae(args),
            Command::Features(args) => crate::sae_cli::features(args),
            Command::BenchSae(args) => crate::sae_cli::bench_sae(args),
            Command::Encode(args) => crate::sae_cli::encode(args),
            Command::EvalModel {
                model,
                samples,
                temperature,
                seed,
                eval_bytes,
                json,
            } => crate::train::eval_model(
                &load(&model)?,
                samples,
                temperature,
                seed,
                eval_bytes,
                json,
            ),
        }
    }

    fn info(args: &ModelArgs) -> Result<()> {
        let host = ModelFiles::read_dir(&args.model)?.parse()?;
        let c = host.config();
        println!("model: {}", args.model.display());
        println!(
            "n_layer {}  n_embd {}  n_head {}  d_head {}  d_mlp {}  n_positions {}  vocab {}  (tokenizer {})",
            c.n_layer,
            c.n_embd,
            c.n_head,
            c.d_head(),
            c.d_mlp(),
            c.n_positions,
            c.vocab_size,
            host.tokenizer.vocab_size()
        );
        println!("parameters: {}", c.parameter_count());
        println!(
            "activation: {}  layer_norm_epsilon: {}",
            c.activation_function, c.layer_norm_epsilon
        );
        println!("hook points ([pos, d]):");
        for hook in HookPoint::all(c) {
            println!("  {hook}  [pos, {}]", hook.width(c));
        }
        Ok(())
    }

    fn parse_ids(text: &str) -> Result<Vec<u32>> {
        let ids: Result<Vec<u32>> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u32>().map_err(|_| {
                    SaeplayError::InvalidSetting(format!(
                        "`{s}` is not a token id (ids are whole numbers from 0)"
                    ))
                })
            })
            .collect();
        let ids = ids?;
        if ids.is_empty() {
            return Err(SaeplayError::EmptyInput);
        }
        Ok(ids)
    }

    fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
        std::fs::write(path, bytes)
            .map_err(|error| SaeplayError::Io(format!("cannot write {}: {error}", path.display())))
    }

    fn bench(args: &ModelArgs, shapes: &str, seconds: f64) -> Result<()> {
        let loaded = load(args)?;
        let config = loaded.model.config().clone();
        println!(
            "backend {}  model {}  (n_layer {}, n_embd {}, vocab {})",
            args.backend,
            args.model.display(),
            config.n_layer,
            config.n_embd,
            config.vocab_size
        );
        println!(
            "{:>10} {:>12} {:>14} {:>12}",
            "shape", "first (ms)", "mean (ms)", "tokens/s"
        );
        for shape in shapes.split(',') {
            let (b, t) = shape
                .split_once('x')
                .and_then(|(b, t)| {
                    Some((
                        b.trim().parse::<usize>().ok()?,
                        t.trim().parse::<usize>().ok()?,
                    ))
                })
                .ok_or_else(|| {
                    SaeplayError::InvalidSetting(format!("shape `{shape}` is not BATCHxSEQ"))
                })?;
            let batch: Vec<Vec<u32>> = (0..b)
                .map(|i| (0..t).map(|j| ((i * 31 + j * 7) % 250) as u32).collect())
                .collect();
            let run_once = || -> Result<()> {
                let output =
                    loaded
                        .model
                        .forward(&batch, &Hooks::none(), LogitsFor::AllPositions)?;
                // Reading one value forces the whole computation to finish.
                block_on(read_f32(output.logits.slice([0..1, 0..1, 0..1])))?;
                Ok(())
            };
            let start = Instant::now();
            run_once()?;
            let first = start.elapsed().as_secs_f64();
            let start = Instant::now();
            let mut runs = 0;
            while runs < 3 || start.elapsed().as_secs_f64() < seconds {
                run_once()?;
                runs += 1;
            }
            let mean = start.elapsed().as_secs_f64() / runs as f64;
            println!(
                "{:>10} {:>12.1} {:>14.2} {:>12.0}",
                shape,
                first * 1e3,
                mean * 1e3,
                (b * t) as f64 / mean
            );
        }
        Ok(())
    }
}

/// `train-model` and `eval-model`.
#[cfg(not(target_arch = "wasm32"))]
mod train {
    use std::path::Path;
    use std::time::Instant;

    use saeplay::backend::{BackendKind, block_on, native_device};
    use saeplay::bundle::LoadedModel;
    use saeplay::model::{Gpt2Config, Gpt2Weights};
    use saeplay::tokenizer::TextTokenizer;
    use saeplay::train_model::{
        END_OF_TEXT, HELD_OUT_SEED, ModelTrainer, ModelTrainingConfig, TrainerState,
        evaluate_model, init_weights, tinytales_stories, tokenize_stories, train_tokenizer,
    };
    use saeplay::{Result, SaeplayError};

    use super::cli::TrainModelArgs;

    fn io(path: &Path, error: std::io::Error) -> SaeplayError {
        SaeplayError::Io(format!("cannot access {}: {error}", path.display()))
    }

    fn write(path: &Path, bytes: &[u8]) -> Result<()> {
        // Write then rename, so an interrupted checkpoint never leaves a half file behind.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes).map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, path).map_err(|e| io(path, e))
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
        let dir = args.out.clone();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let state_path = dir.join("trainer_state.json");
        let resumed: Option<TrainerState> = if state_path.exists() {
            let text = std::fs::read(&state_path).map_err(|e| io(&state_path, e))?;
            Some(serde_json::from_slice(&text).map_err(|e| {
                SaeplayError::Io(format!("{} is not valid: {e}", state_path.display()))
            })?)
        } else {
            None
        };
        let config = match &resumed {
            Some(state) => ModelTrainingConfig {
                steps: args.steps,
                ..state.config.clone()
            },
            None => ModelTrainingConfig {
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
            },
        };
        config.validate()?;
        let started = Instant::now();
        let stories = tinytales_stories(config.seed, config.train_bytes);
        let held_out = tinytales_stories(HELD_OUT_SEED, config.eval_bytes);
        eprintln!(
            "corpus: {} stories ({:.1} MB) for training, {} held out",
            stories.len(),
            config.train_bytes as f64 / 1e6,
            held_out.len()
        );

        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.exists() {
            // A few megabytes hold every word of the closed world many times over.
            let sample: Vec<String> = stories.iter().take(20_000).cloned().collect();
            let json = train_tokenizer(&sample, config.tokenizer_vocab)?;
            write(&tokenizer_path, json.as_bytes())?;
        }
        let tokenizer_json = std::fs::read(&tokenizer_path).map_err(|e| io(&tokenizer_path, e))?;
        let tokenizer = TextTokenizer::from_bytes(&tokenizer_json)?;
        let eos = tokenizer
            .id_of(END_OF_TEXT)
            .expect("the trained tokenizer has <|endoftext|>");
        let train_tokens = tokenize_stories(&tokenizer, &stories)?;
        let eval_tokens = tokenize_stories(&tokenizer, &held_out)?;
        drop(stories);
        eprintln!(
            "tokenizer: {} tokens; {} training tokens ({:.2} bytes/token); prepared in {:.0} s",
            tokenizer.vocab_size(),
            train_tokens.len(),
            config.train_bytes as f64 / train_tokens.len() as f64,
            started.elapsed().as_secs_f64()
        );

        let mut model_config = Gpt2Config::new(
            tokenizer.vocab_size(),
            config.n_positions,
            config.n_embd,
            config.n_layer,
            config.n_head,
        );
        model_config.bos_token_id = Some(eos);
        model_config.eos_token_id = Some(eos);
        let weights = match &resumed {
            Some(_) => {
                let path = dir.join("model.safetensors");
                let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
                Gpt2Weights::from_safetensors(&model_config, &bytes)?
            }
            None => init_weights(&model_config, config.seed),
        };
        let device = native_device(BackendKind::parse(&args.backend)?)?;
        let mut trainer =
            ModelTrainer::new(config.clone(), model_config.clone(), &weights, &device)?;
        let mut history = Vec::new();
        if let Some(state) = &resumed {
            let path = dir.join("optimizer.safetensors");
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            trainer.restore(&bytes, state)?;
            history = state.history.clone();
            eprintln!("resumed at step {}", trainer.step);
        }
        eprintln!(
            "model: {} parameters, {} layers, d_model {}, context {}",
            model_config.parameter_count(),
            config.n_layer,
            config.n_embd,
            config.n_positions
        );

        let save =
            |trainer: &ModelTrainer, history: &Vec<(usize, f32, Option<f32>)>| -> Result<()> {
                let weights = block_on(trainer.weights())?;
                let (moments, state) = block_on(trainer.optimizer_state(history.clone()))?;
                write(
                    &dir.join("model.safetensors"),
                    &weights.to_safetensors(false),
                )?;
                write(&dir.join("config.json"), model_config.to_json().as_bytes())?;
                write(&dir.join("optimizer.safetensors"), &moments)?;
                write(
                    &state_path,
                    serde_json::to_string_pretty(&state)
                        .expect("state serialises")
                        .as_bytes(),
                )
            };

        let loop_start = Instant::now();
        let first_step = trainer.step;
        let tokens_per_step = config.batch_size * config.n_positions;
        let mut smoothed: Option<f32> = None;
        while trainer.step < config.steps {
            let report = block_on(trainer.train_step(&train_tokens))?;
            smoothed = Some(smoothed.map_or(report.loss, |s| 0.95 * s + 0.05 * report.loss));
            let done = trainer.step;
            let mut eval = None;
            if done % config.eval_every == 0 || done == config.steps {
                eval = Some(block_on(trainer.evaluate(&eval_tokens))?);
            }
            history.push((report.step, report.loss, eval));
            if done % 10 == 0 || eval.is_some() || done == config.steps {
                let per_step = loop_start.elapsed().as_secs_f64() / (done - first_step) as f64;
                eprintln!(
                    "step {done}/{}  loss {:.3} (avg {:.3}){}  lr {:.1e}  |g| {:.2}  {:.2} s/step  {:.0} tok/s  elapsed {}  left {}",
                    config.steps,
                    report.loss,
                    smoothed.unwrap_or(report.loss),
                    eval.map(|e| format!("  held-out {e:.3}"))
                        .unwrap_or_default(),
                    report.learning_rate,
                    report.grad_norm,
                    per_step,
                    tokens_per_step as f64 / per_step,
                    duration(started.elapsed().as_secs_f64()),
                    duration(per_step * (config.steps - done) as f64),
                );
            }
            if done % config.checkpoint_every == 0 || done == config.steps {
                save(&trainer, &history)?;
            }
        }
        eprintln!(
            "done: {} steps in {}; model in {}",
            config.steps,
            duration(started.elapsed().as_secs_f64()),
            dir.display()
        );
        Ok(())
    }

    pub fn eval_model(
        loaded: &LoadedModel,
        samples: usize,
        temperature: f32,
        seed: u64,
        eval_bytes: usize,
        json: bool,
    ) -> Result<()> {
        let report = block_on(evaluate_model(
            loaded,
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
}
