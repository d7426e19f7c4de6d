//! The native command line: the same engine as the page.

/// In the browser the binary's main starts the page.
#[cfg(target_arch = "wasm32")]
fn main() {
    saeplay::web::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
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
    const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/builtin");

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
            } => {
                let loaded = load(&model)?;
                let prompt_ids = loaded.encode_prompt(&prompt)?.ids;
                let config = SamplingConfig {
                    temperature,
                    top_k,
                    top_p,
                    seed,
                    max_new_tokens: max_tokens,
                };
                let mut generation =
                    Generation::new(&loaded.model, &prompt_ids, config, Hooks::none())?;
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
