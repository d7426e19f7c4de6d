//! Model commands: `info`, `generate`, `forward`, `make-test-model`, `bench`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use saeplay::backend::{block_on, float_tensor, read_f32};
use saeplay::model::files::{HfFiles, HostWeights, ModelFiles};
use saeplay::model::fixtures::{LlamaSpec, TinySpec, tiny_checkpoint, tiny_llama_checkpoint};
use saeplay::model::readout::forward_tensors;
use saeplay::model::{
    Generation, HookPoint, Hooks, LogitsFor, SamplingConfig, Step, greedy_tokens,
};
use saeplay::sae::sae_hooks::SaeHookPoint;
use saeplay::{Result, SaeplayError};

use super::{ModelArgs, write_file};

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A SAELens directory whose features --steer, --clamp, --ablate, --orthogonal and
    /// --projection-cap name.
    #[arg(long)]
    pub sae: Option<PathBuf>,
    /// Add STRENGTH x the feature's decoder direction: FEATURE:STRENGTH (repeatable).
    #[arg(long)]
    pub steer: Vec<String>,
    /// Hold a feature at a value, keeping the SAE's error: FEATURE:VALUE (repeatable).
    #[arg(long)]
    pub clamp: Vec<String>,
    /// Remove a feature, keeping the SAE's error: FEATURE (repeatable).
    #[arg(long)]
    pub ablate: Vec<String>,
    /// Scale the activation's component along a feature's decoder direction (Neuronpedia's
    /// orthogonal decomposition; 0 removes it): FEATURE:COEFFICIENT (repeatable).
    #[arg(long)]
    pub orthogonal: Vec<String>,
    /// Cap the activation's component along a feature's unit decoder direction at CAP
    /// (Neuronpedia's projection cap): FEATURE:CAP (repeatable).
    #[arg(long)]
    pub projection_cap: Vec<String>,
    /// Also print the generated token ids (comma-separated) on stderr.
    #[arg(long)]
    pub print_ids: bool,
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated token ids.
    #[arg(long, conflicts_with = "text", required_unless_present = "text")]
    pub ids: Option<String>,
    #[arg(long)]
    pub text: Option<String>,
    /// Comma-separated hook names, e.g. blocks.0.hook_resid_pre,blocks.1.hook_mlp_out; with
    /// --sae also SAELens's SAE hooks, e.g. blocks.1.hook_resid_pre.hook_sae_acts_post.
    #[arg(long, default_value = "")]
    pub hooks: String,
    /// A SAELens directory whose hooks (hook_sae_input, hook_sae_acts_pre, hook_sae_acts_post,
    /// hook_sae_recons, hook_sae_output, hook_sae_error) --hooks may name; the model is
    /// processed as its cfg.json asks.
    #[arg(long)]
    pub sae: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct MakeTestModelArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    #[arg(long, default_value_t = 32)]
    pub d_model: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 64)]
    pub context: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Store keys with the `transformer.` prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Vocabulary rows beyond the generated tokenizer's 257 tokens.
    #[arg(long, default_value_t = 0)]
    pub vocab_padding: usize,
    /// A named shape instead of the sizes above: gpt2-small (124M parameters, ~500 MB).
    #[arg(long)]
    pub preset: Option<String>,
    /// gpt2, or llama (RMSNorm, rotary positions, SwiGLU, grouped-query attention).
    #[arg(long, default_value = "gpt2")]
    pub family: String,
    /// Llama only: key/value heads (grouped-query attention); half the heads when left out.
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Llama only: the MLP width (default 3 x d_model).
    #[arg(long)]
    pub d_mlp: Option<usize>,
    /// Llama only: write the weights as this many shards with their
    /// `model.safetensors.index.json`, as `save_pretrained` does for large models.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Shapes as BATCHxSEQ, comma-separated.
    #[arg(long, default_value = "1x1,1x64,8x64,1x128,16x128")]
    pub shapes: String,
    /// Seconds to spend per shape (at least 3 runs each).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Also time generation with the key/value cache: this many tokens after a 16-token prompt,
    /// reported per token (the prompt's forward is timed apart and left out).
    #[arg(long, default_value_t = 0)]
    pub generate: usize,
    /// Run inference on burn's tensor ops even on the CPU (the forward before the host path).
    #[arg(long)]
    pub burn_forward: bool,
    /// Print a JSON list of records instead of the table (scripts/bench.sh reads it).
    #[arg(long)]
    pub json: bool,
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let GenerateArgs {
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
        orthogonal,
        projection_cap,
        print_ids,
    } = args;
    let interventions = super::sae::interventions(&[
        ("add", &steer),
        ("clamp", &clamp),
        ("ablate", &ablate),
        ("orthogonal", &orthogonal),
        ("projection_cap", &projection_cap),
    ])?;
    let (loaded, hooks) = match (&sae, interventions.is_empty()) {
        (_, true) => (model.load()?, Hooks::none()),
        (None, false) => {
            return Err(SaeplayError::InvalidSetting(
                "--steer, --clamp, --ablate, --orthogonal and --projection-cap need --sae DIR"
                    .into(),
            ));
        }
        (Some(dir), false) => {
            let (loaded, sae, hook) = super::sae::load_model_and_sae(&model, dir)?;
            let patch = saeplay::sae::steer::intervention_patch(&sae, &interventions)?;
            (loaded, Hooks::none().with_patch(hook, patch))
        }
    };
    let prompt_ids = loaded.encode_prompt(&prompt)?.ids;
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
                let text = loaded.tokenizer()?.decode(generation.produced())?;
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
        let ids: Vec<String> = generation.produced().iter().map(u32::to_string).collect();
        eprintln!("ids: {}", ids.join(","));
    }
    Ok(())
}

pub fn forward(args: ForwardArgs) -> Result<()> {
    let ForwardArgs {
        model,
        ids,
        text,
        hooks,
        sae,
        out,
    } = args;
    let (loaded, sae) = match &sae {
        Some(dir) => {
            let (loaded, sae, _) = super::sae::load_model_and_sae(&model, dir)?;
            (loaded, Some(sae))
        }
        None => (model.load()?, None),
    };
    let config = loaded.model.dims();
    let sae_hook = sae.as_ref().map(|s| s.config.hook_name.clone());
    let mut model_hooks = Vec::new();
    let mut sae_points = Vec::new();
    for name in hooks.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match SaeHookPoint::parse(name, sae_hook.as_deref())? {
            Some(point) => sae_points.push((name.to_string(), point)),
            None => model_hooks.push(HookPoint::parse(name, config)?),
        }
    }
    let ids = match (ids, text) {
        (Some(ids), _) => parse_ids(&ids)?,
        (None, Some(text)) => loaded.encode_prompt(&text)?.ids,
        (None, None) => return Err(SaeplayError::EmptyInput),
    };
    let mut capture = model_hooks.clone();
    let read_at = match &sae_hook {
        Some(hook) if !sae_points.is_empty() => {
            let hook = HookPoint::parse(hook, config)?;
            if !capture.contains(&hook) {
                capture.push(hook);
            }
            Some(hook.to_string())
        }
        _ => None,
    };
    let mut tensors = block_on(forward_tensors(&loaded.model, &ids, &capture))?;
    if let (Some(sae), Some(read_at)) = (&sae, read_at) {
        let (_, shape, values) = tensors
            .0
            .iter()
            .find(|(name, _, _)| *name == read_at)
            .cloned()
            .ok_or_else(|| SaeplayError::InvalidSetting(format!("`{read_at}` was not captured")))?;
        let x = float_tensor(values, [shape[0], shape[1]], loaded.model.device());
        for (name, point) in &sae_points {
            let value = point.compute(sae, x.clone());
            let dims = value.dims();
            tensors
                .0
                .push((name.clone(), dims.to_vec(), block_on(read_f32(value))?));
        }
        // The SAE's own hook is written only when asked for.
        let asked: Vec<String> = model_hooks.iter().map(ToString::to_string).collect();
        tensors.0.retain(|(name, _, _)| {
            name == "logits" || asked.contains(name) || name.contains(".hook_sae_")
        });
    }
    write_file(&out, &tensors.to_safetensors())?;
    eprintln!(
        "wrote {} ({} tokens; logits, {} hooks and {} SAE hooks)",
        out.display(),
        ids.len(),
        model_hooks.len(),
        sae_points.len()
    );
    Ok(())
}

pub fn make_test_model(args: MakeTestModelArgs) -> Result<()> {
    let MakeTestModelArgs {
        out,
        layers,
        d_model,
        heads,
        context,
        seed,
        prefix,
        vocab_padding,
        preset,
        family,
        kv_heads,
        d_mlp,
        shards,
    } = args;
    if family == "llama" {
        if preset.is_some() {
            return Err(SaeplayError::InvalidSetting(
                "--preset names GPT-2 shapes; give a Llama's sizes with --layers, --d-model, --heads".into(),
            ));
        }
        let spec = LlamaSpec {
            layers,
            d_model,
            heads,
            kv_heads: kv_heads.unwrap_or(if heads % 2 == 0 { heads / 2 } else { heads }),
            d_mlp: d_mlp.unwrap_or(3 * d_model),
            n_ctx: context,
            vocab_padding,
            tied: false,
            qwen2: false,
            seed,
        };
        let mut files = tiny_llama_checkpoint(&spec);
        if shards == 0 {
            return Err(SaeplayError::InvalidSetting(
                "--shards 0 writes no file: give 1 (one model.safetensors) or more".into(),
            ));
        }
        if shards > 1 {
            files.shards = split_into_shards(&files, shards)?;
        }
        files.parse()?; // the generator must produce what the loader accepts
        files.write_dir(&out)?;
        eprintln!("wrote a random-weight Llama to {}", out.display());
        return Ok(());
    }
    if family != "gpt2" {
        return Err(SaeplayError::InvalidSetting(format!(
            "unknown family `{family}`: use gpt2 or llama"
        )));
    }
    if shards != 1 {
        return Err(SaeplayError::InvalidSetting(
            "--shards is for --family llama: a GPT-2 comes as one model.safetensors".into(),
        ));
    }
    let spec = match preset.as_deref() {
        None => TinySpec {
            n_layer: layers,
            n_embd: d_model,
            n_head: heads,
            n_positions: context,
            vocab_padding,
            seed,
            with_prefix: prefix,
        },
        Some("gpt2-small") => TinySpec {
            seed,
            ..TinySpec::GPT2_SMALL
        },
        Some(other) => {
            return Err(SaeplayError::InvalidSetting(format!(
                "unknown preset `{other}`: use gpt2-small"
            )));
        }
    };
    let files = tiny_checkpoint(&spec);
    files.parse()?; // the generator must produce what the loader accepts
    files.write_dir(&out)?;
    eprintln!("wrote a random-weight GPT-2 to {}", out.display());
    Ok(())
}

pub fn info(args: &ModelArgs) -> Result<()> {
    let dir = args.dir()?;
    let host = ModelFiles::read_path(&dir)?
        .parse()?
        .process(args.processing())?;
    let c = host.dims();
    println!("model: {}", dir.display());
    println!("weight processing: {}", host.processing.describe());
    println!("{}", c.describe());
    println!(
        "tokenizer: {}",
        match host.tokenizer() {
            Ok(tokenizer) => format!("{} tokens", tokenizer.vocab_size()),
            Err(_) => "none: no tokenizer.json, token ids only".into(),
        }
    );
    println!("parameters: {}", c.parameter_count);
    println!("hook points ([pos, d]):");
    for hook in HookPoint::all(&c) {
        println!("  {hook}  [pos, {}]", hook.width(&c));
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

pub fn bench(args: &BenchArgs) -> Result<()> {
    let (shapes, seconds, json) = (&args.shapes, args.seconds, args.json);
    let model_args = &args.model;
    let loaded = model_args.load()?;
    let model = if args.burn_forward {
        loaded.model.clone().burn_forward_only()
    } else {
        loaded.model.clone()
    };
    let engine = if model.has_host_forward() {
        "host"
    } else {
        "burn"
    };
    let peer = format!("saeplay-{}-{engine}", model_args.backend.name());
    if !json {
        println!(
            "backend {}  engine {engine}  model {}  ({})",
            model_args.backend.name(),
            model_args.dir()?.display(),
            model.dims().describe()
        );
        println!(
            "{:>10} {:>12} {:>14} {:>12}",
            "shape", "first (ms)", "mean (ms)", "tokens/s"
        );
    }
    let vocab = model.dims().d_vocab;
    let ids = |b: usize, t: usize| -> Vec<Vec<u32>> {
        (0..b)
            .map(|i| {
                (0..t)
                    .map(|j| ((i * 31 + j * 7) % 250 % vocab) as u32)
                    .collect()
            })
            .collect()
    };
    // Mean seconds per call after one untimed call; at least 3 calls and `seconds` in all.
    let time = |run: &mut dyn FnMut() -> Result<()>, min_runs: usize| -> Result<(f64, f64)> {
        let start = Instant::now();
        run()?;
        let first = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut runs = 0;
        while runs < min_runs || start.elapsed().as_secs_f64() < seconds {
            run()?;
            runs += 1;
        }
        Ok((first, start.elapsed().as_secs_f64() / runs as f64))
    };
    let mut records = Vec::new();
    let mut report = |work: &str, shape: &str, first: f64, mean: f64, tokens: usize| {
        if !json {
            println!(
                "{:>10} {:>12.1} {:>14.2} {:>12.0}",
                shape,
                first * 1e3,
                mean * 1e3,
                tokens as f64 / mean
            );
        }
        records.push(serde_json::json!({
            "peer": peer, "work": work, "shape": shape, "ms": mean * 1e3,
            "tokens_per_s": tokens as f64 / mean,
        }));
    };
    for shape in shapes.split(',') {
        let (b, t) = shape
            .split_once('x')
            .and_then(|(b, t)| {
                Some((
                    b.trim().parse::<usize>().ok()?,
                    t.trim().parse::<usize>().ok()?,
                ))
            })
            .filter(|&(b, t)| b > 0 && t > 0)
            .ok_or_else(|| {
                SaeplayError::InvalidSetting(format!(
                    "shape `{shape}` is not BATCHxSEQ (whole numbers from 1)"
                ))
            })?;
        let batch = ids(b, t);
        let (first, mean) = time(
            &mut || {
                let output = model.forward(&batch, &Hooks::none(), LogitsFor::AllPositions)?;
                // Reading one value forces the whole computation to finish.
                block_on(read_f32(output.logits.slice([0..1, 0..1, 0..1])))?;
                Ok(())
            },
            3,
        )?;
        report("forward", shape, first, mean, b * t);
    }
    if args.generate > 0 {
        // The prompt's forward (and its first token) timed apart, then left out.
        let prompt = &ids(1, 16)[0];
        let (_, prefill) = time(
            &mut || block_on(greedy_tokens(&model, prompt, 1)).map(|_| ()),
            3,
        )?;
        let (first, total) = time(
            &mut || block_on(greedy_tokens(&model, prompt, 1 + args.generate)).map(|_| ()),
            2,
        )?;
        let per_token = (total - prefill) / args.generate as f64;
        report(
            "generate",
            &format!("16+{}", args.generate),
            first,
            per_token,
            1,
        );
    }
    if json {
        println!("{}", serde_json::Value::Array(records));
    }
    Ok(())
}

/// The checkpoint's tensors spread over `n` safetensors files, in name order.
fn split_into_shards(files: &HfFiles, n: usize) -> Result<Vec<Vec<u8>>> {
    let HostWeights::Llama(weights) = files.parse()?.weights else {
        return Err(SaeplayError::InvalidSetting(
            "only a Llama checkpoint is sharded".into(),
        ));
    };
    let names: Vec<&String> = weights.tensors.keys().collect();
    if n > names.len() {
        return Err(SaeplayError::InvalidSetting(format!(
            "--shards {n} is more than the model's {} tensors",
            names.len()
        )));
    }
    Ok((0..n)
        .map(|i| &names[i * names.len() / n..(i + 1) * names.len() / n])
        .map(|part| {
            saeplay::io::tensors::write_safetensors(part.iter().map(|name| {
                let t = &weights.tensors[*name];
                (name.as_str(), &t.shape[..], &t.values[..])
            }))
        })
        .collect())
}
