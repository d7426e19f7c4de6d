//! The native command line: the same engine as the page. One file per command group:
//! [`model`] (info, generate, forward, make-test-model, bench), [`lm`] (train-model, eval-model)
//! and [`sae`] (capture, train-sae, eval-sae, features, encode, bench-sae).

mod circuits;
mod lm;
mod model;
mod sae;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use saeplay::backend::{BackendKind, native_device};
use saeplay::error::FileAction;
use saeplay::model::WeightProcessing;
use saeplay::model::files::{LoadedModel, ModelFiles};
use saeplay::{Result, SaeplayError};

/// Where the built-in model is looked for when `--model` is not given, in order: the
/// `SAEPLAY_MODEL` environment variable, `models/builtin` beside the binary (an installed copy),
/// `../share/saeplay/models/builtin` above it, and `www/models/builtin` of the source tree the
/// binary was built from (a checkout).
pub fn builtin_model_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("SAEPLAY_MODEL") {
        candidates.push(PathBuf::from(dir));
        return candidates; // an explicit choice is not second-guessed
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin_dir) = exe.parent()
    {
        candidates.push(bin_dir.join("models/builtin"));
        candidates.push(bin_dir.join("../share/saeplay/models/builtin"));
    }
    candidates.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/www/models/builtin"
    )));
    candidates
}

/// The first candidate that holds a config.json, or an error naming every place looked at.
pub fn resolve_builtin_model() -> Result<PathBuf> {
    let candidates = builtin_model_candidates();
    if let Some(found) = candidates
        .iter()
        .find(|dir| dir.join("config.json").is_file())
    {
        return Ok(found.clone());
    }
    let looked = candidates
        .iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(SaeplayError::InvalidSetting(format!(
        "no --model given and the built-in model was not found (looked in {looked}); \
         pass --model DIR or set SAEPLAY_MODEL to the model's directory"
    )))
}

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

/// `--backend`, with the engine's own message for a name it does not know.
fn parse_backend(text: &str) -> std::result::Result<BackendKind, String> {
    BackendKind::parse(text).map_err(|e| e.to_string())
}

/// The model a command runs.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// A GGUF file, or a Hugging Face directory (config.json, model.safetensors or its shards,
    /// tokenizer.json) of GPT-2 or a Llama-family model (Llama, Qwen2, SmolLM2); the
    /// built-in model when left out (found through SAEPLAY_MODEL or beside the binary).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// cpu, or wgpu (Vulkan/Metal natively).
    #[arg(long, default_value = "cpu", value_parser = parse_backend)]
    pub backend: BackendKind,
    /// TransformerLens's fold_ln: fold each layer norm's gain and bias into the weights that read it.
    #[arg(long)]
    pub fold_ln: bool,
    /// TransformerLens's center_writing_weights: weights writing to the residual stream lose their mean.
    #[arg(long)]
    pub center_writing_weights: bool,
    /// TransformerLens's center_unembed: the unembedding loses its mean over the vocabulary.
    #[arg(long)]
    pub center_unembed: bool,
    /// TransformerLens's fold_value_biases: value biases folded into the attention output bias.
    #[arg(long)]
    pub fold_value_biases: bool,
}

impl ModelArgs {
    /// The processing the flags ask for.
    pub fn processing(&self) -> WeightProcessing {
        WeightProcessing {
            fold_ln: self.fold_ln,
            center_writing_weights: self.center_writing_weights,
            center_unembed: self.center_unembed,
            fold_value_biases: self.fold_value_biases,
        }
    }

    /// The model directory: `--model`, or the built-in model found at run time.
    pub fn dir(&self) -> Result<PathBuf> {
        match &self.model {
            Some(dir) => Ok(dir.clone()),
            None => resolve_builtin_model(),
        }
    }

    pub fn load(&self) -> Result<LoadedModel> {
        self.load_processed(WeightProcessing::default())
    }

    /// Load with the flags' processing, or with `required` (what an SAE's cfg.json asks for) when
    /// no flag is given; flags that disagree with `required` are refused in words.
    pub fn load_processed(&self, required: WeightProcessing) -> Result<LoadedModel> {
        let asked = self.processing();
        let processing = if asked.is_none() { required } else { asked };
        if !required.is_none() && processing != required {
            return Err(SaeplayError::InvalidSetting(format!(
                "the SAE was trained on the model processed with {}, but the flags ask for {}",
                required.describe(),
                processing.describe()
            )));
        }
        ModelFiles::read_path(&self.dir()?)?
            .parse()?
            .process(processing)?
            .upload(&native_device(self.backend)?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Shapes of a model and the list of its hook points.
    Info(ModelArgs),
    /// Continue a prompt.
    Generate(model::GenerateArgs),
    /// Run one forward pass and write logits and hook activations as safetensors.
    Forward(model::ForwardArgs),
    /// Write a deterministic random-weight GPT-2 checkpoint (tests, benchmarks, placeholders).
    MakeTestModel(model::MakeTestModelArgs),
    /// Write a deterministic random SAE as a SAELens directory (tests, benchmarks).
    MakeTestSae(sae::MakeTestSaeArgs),
    /// Forward throughput (tokens per second) for several batch x sequence shapes.
    Bench(model::BenchArgs),
    /// Train a GPT-2 on TinyTales from scratch (resumes from DIR's checkpoint when present).
    TrainModel(lm::TrainModelArgs),
    /// Sample stories and score them against TinyTales' rules; held-out loss.
    EvalModel(lm::EvalModelArgs),
    /// Capture activations at hook points over a corpus (safetensors, one tensor per hook).
    Capture(sae::CaptureArgs),
    /// Train an SAE and write it as a SAELens directory (with metrics in saeplay.json).
    TrainSae(sae::TrainSaeArgs),
    /// Evaluate an SAE on held-out text: L0, explained variance, loss recovered, ...
    EvalSae(sae::EvalSaeArgs),
    /// Per-feature data (examples, histogram, logit lens, nearest features, concepts) as JSON.
    Features(sae::FeaturesArgs),
    /// Explain features automatically (top tokens, context, logit lens, TinyTales concept) and
    /// score each explanation on held-out text, as JSON.
    Explain(sae::FeaturesArgs),
    /// Score a written explanation of one feature: simulation and detection on held-out text.
    Score(sae::ScoreArgs),
    /// Encode captured activations with an SAE: writes x, feature_acts and x_hat.
    Encode(sae::EncodeArgs),
    /// The cross-layer feature graph of SAEs at several blocks (decoder cosine or ablation),
    /// as circuit-tracer's graph JSON.
    Graph(circuits::GraphArgs),
    /// The attribution graph of a prompt's top prediction (or --target) through SAEs at
    /// several blocks, as the graph JSON circuit-tracer writes and Neuronpedia reads.
    Attribute(circuits::AttributeArgs),
    /// SAE training throughput (vectors/s, GFLOP/s) on random activations.
    BenchSae(sae::BenchSaeArgs),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => error.exit(), // --help, --version
        Err(error) => {
            // Errors are one line, as the engine's are; clap's first line names the problem.
            let text = error.to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Info(args) => model::info(&args),
        Command::Generate(args) => model::generate(args),
        Command::Forward(args) => model::forward(args),
        Command::MakeTestModel(args) => model::make_test_model(args),
        Command::MakeTestSae(args) => sae::make_test_sae(args),
        Command::Explain(args) => sae::explain(args),
        Command::Score(args) => sae::score(args),
        Command::Bench(args) => model::bench(&args),
        Command::TrainModel(args) => lm::train_model(args),
        Command::EvalModel(args) => lm::eval_model(&args),
        Command::Capture(args) => sae::capture(args),
        Command::TrainSae(args) => sae::train_sae(args),
        Command::EvalSae(args) => sae::eval_sae(args),
        Command::Features(args) => sae::features(args),
        Command::BenchSae(args) => sae::bench_sae(args),
        Command::Encode(args) => sae::encode(args),
        Command::Graph(args) => circuits::graph(args),
        Command::Attribute(args) => circuits::attribute(args),
    }
}

/// Write a file, creating its directory first.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| SaeplayError::file(FileAction::Create, parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| SaeplayError::file(FileAction::Write, path, e))
}
