//! `window.saeplay`: a small API for tests, benchmarks and the curious, once the model is ready:
//! `info`, `encode`, `logits`, `benchForward`, and `trainSae` (the page's SAE training check).

use std::rc::Rc;

use js_sys::{Array, Float32Array, Object, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::App;
use super::platform::{now_ms, window};
use crate::backend::{BackendKind, read_f32};
use crate::model::files::LoadedModel;
use crate::model::{Hooks, LogitsFor};
use crate::ui::BackendDecision;

/// `window.saeplay`: a small API for tests, benchmarks and the curious, once the model is ready.
pub(super) fn install(app: &Rc<App>, decision: &BackendDecision) {
    let api = Object::new();
    let set = |name: &str, value: &JsValue| {
        Reflect::set(&api, &name.into(), value).ok();
    };

    let model = || {
        app.model
            .borrow()
            .clone()
            .expect("the API is installed after the model loads")
    };
    let loaded = model();
    let info = Object::new();
    let config = loaded.model.dims();
    for (key, value) in [
        (
            "backend",
            JsValue::from_str(if decision.kind == BackendKind::Wgpu {
                "webgpu"
            } else {
                "cpu"
            }),
        ),
        ("adapter", JsValue::from_str(&decision.label)),
        ("reason", JsValue::from_str(&decision.reason)),
        ("vocab", JsValue::from_f64(config.d_vocab as f64)),
        ("nPositions", JsValue::from_f64(config.n_ctx as f64)),
        ("nLayer", JsValue::from_f64(config.n_layers as f64)),
        ("family", JsValue::from_str(config.family.name())),
        ("dModel", JsValue::from_f64(config.d_model as f64)),
    ] {
        Reflect::set(&info, &key.into(), &value).ok();
    }
    let info_fn = Closure::<dyn Fn() -> JsValue>::new(move || info.clone().into());
    set("info", info_fn.as_ref());
    info_fn.forget();

    let for_encode = Rc::clone(&loaded);
    let encode = Closure::<dyn Fn(String) -> Promise>::new(move |text: String| {
        let loaded = Rc::clone(&for_encode);
        future_to_promise(async move {
            let encoded = loaded
                .tokenizer()
                .and_then(|tokenizer| tokenizer.encode(&text))
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            Ok(encoded
                .ids
                .iter()
                .map(|&id| JsValue::from(id))
                .collect::<Array>()
                .into())
        })
    });
    set("encode", encode.as_ref());
    encode.forget();

    let for_logits = Rc::clone(&loaded);
    let logits = Closure::<dyn Fn(JsValue) -> Promise>::new(move |ids: JsValue| {
        let loaded = Rc::clone(&for_logits);
        future_to_promise(async move {
            let ids = ids_from_js(&ids)?;
            let output = loaded
                .model
                .forward(&[ids], &Hooks::none(), LogitsFor::AllPositions)
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            let values = read_f32(output.logits)
                .await
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            Ok(Float32Array::from(values.as_slice()).into())
        })
    });
    set("logits", logits.as_ref());
    logits.forget();

    let for_bench = Rc::clone(&loaded);
    let bench =
        Closure::<dyn Fn(u32, u32, u32) -> Promise>::new(move |batch: u32, seq: u32, runs: u32| {
            let loaded = Rc::clone(&for_bench);
            future_to_promise(async move {
                let (batch, seq, runs) = (batch.max(1) as usize, seq.max(1) as usize, runs.max(1));
                let rows: Vec<Vec<u32>> = (0..batch)
                    .map(|i| (0..seq).map(|j| ((i * 31 + j * 7) % 250) as u32).collect())
                    .collect();
                let once = || async {
                    let output = loaded
                        .model
                        .forward(&rows, &Hooks::none(), LogitsFor::AllPositions)
                        .map_err(|e| JsValue::from_str(&e.to_string()))?;
                    read_f32(output.logits.slice([0..1, 0..1, 0..1]))
                        .await
                        .map_err(|e| JsValue::from_str(&e.to_string()))
                };
                let start = now_ms();
                once().await?;
                let first = now_ms() - start;
                let start = now_ms();
                for _ in 0..runs {
                    once().await?;
                }
                let mean = (now_ms() - start) / f64::from(runs);
                let result = Object::new();
                Reflect::set(&result, &"firstMs".into(), &first.into()).ok();
                Reflect::set(&result, &"meanMs".into(), &mean.into()).ok();
                Reflect::set(
                    &result,
                    &"tokensPerSecond".into(),
                    &((batch * seq) as f64 / (mean / 1000.0)).into(),
                )
                .ok();
                Ok(result.into())
            })
        });
    set("benchForward", bench.as_ref());
    bench.forget();

    // Generation with the key/value cache: ms per token after a 16-token prompt, the prompt's
    // forward timed apart and left out (as the CLI's `bench --generate`).
    let for_generate = Rc::clone(&loaded);
    let bench_generate =
        Closure::<dyn Fn(u32, u32) -> Promise>::new(move |steps: u32, runs: u32| {
            let loaded = Rc::clone(&for_generate);
            future_to_promise(async move {
                let (steps, runs) = (steps.max(1) as usize, runs.max(1));
                let prompt: Vec<u32> = (0..16).map(|j| ((j * 7) % 250) as u32).collect();
                let timed = |steps: usize| {
                    let (loaded, prompt) = (Rc::clone(&loaded), prompt.clone());
                    async move {
                        crate::model::greedy_tokens(&loaded.model, &prompt, steps)
                            .await
                            .map_err(|e| JsValue::from_str(&e.to_string()))?;
                        let start = now_ms();
                        for _ in 0..runs {
                            crate::model::greedy_tokens(&loaded.model, &prompt, steps)
                                .await
                                .map_err(|e| JsValue::from_str(&e.to_string()))?;
                        }
                        Ok::<f64, JsValue>((now_ms() - start) / f64::from(runs))
                    }
                };
                let prefill = timed(1).await?;
                let per_token = (timed(1 + steps).await? - prefill) / steps as f64;
                let result = Object::new();
                Reflect::set(&result, &"meanMs".into(), &per_token.into()).ok();
                Reflect::set(
                    &result,
                    &"tokensPerSecond".into(),
                    &(1000.0 / per_token).into(),
                )
                .ok();
                Ok(result.into())
            })
        });
    set("benchGenerate", bench_generate.as_ref());
    bench_generate.forget();

    let for_sae = Rc::clone(&loaded);
    let train_sae = Closure::<dyn Fn(JsValue) -> Promise>::new(move |options: JsValue| {
        let loaded = Rc::clone(&for_sae);
        future_to_promise(async move {
            let options = options_from_js(&options)?;
            train_sae_in_page(&loaded, options)
                .await
                .map_err(|e| JsValue::from_str(&e.to_string()))
        })
    });
    set("trainSae", train_sae.as_ref());
    train_sae.forget();

    // Crash the worker on purpose (the browser tests check the page recovers).
    let for_crash = Rc::clone(app);
    let crash = Closure::<dyn Fn()>::new(move || for_crash.crash_worker());
    set("crashWorker", crash.as_ref());
    crash.forget();
    // Make the worker hang for a number of seconds (the page must not wait forever).
    let for_hang = Rc::clone(app);
    let hang = Closure::<dyn Fn(f64)>::new(move |seconds: f64| for_hang.hang_worker(seconds));
    set("hangWorker", hang.as_ref());
    hang.forget();
    // How many workers the page has started (a stopped one is replaced at the next task).
    let for_starts = Rc::clone(app);
    let starts = Closure::<dyn Fn() -> u32>::new(move || for_starts.worker_link.borrow().starts());
    set("workerStarts", starts.as_ref());
    starts.forget();
    // Checkpoint training runs more often (the resume test cannot wait 10 s a checkpoint).
    let for_checkpoints = Rc::clone(app);
    let checkpoints = Closure::<dyn Fn(f64)>::new(move |seconds: f64| {
        if seconds.is_finite() && seconds >= 0.0 {
            for_checkpoints.checkpoint_seconds.set(seconds);
        }
    });
    set("setCheckpointSeconds", checkpoints.as_ref());
    checkpoints.forget();
    // The page's wasm memory in bytes: it only grows, so this is the peak so far.
    let memory_bytes = Closure::<dyn Fn() -> f64>::new(|| {
        wasm_bindgen::memory()
            .dyn_into::<js_sys::WebAssembly::Memory>()
            .map(|m| {
                m.buffer()
                    .dyn_into::<js_sys::ArrayBuffer>()
                    .map(|b| f64::from(b.byte_length()))
                    .unwrap_or(0.0)
            })
            .unwrap_or(0.0)
    });
    set("memoryBytes", memory_bytes.as_ref());
    memory_bytes.forget();
    Reflect::set(&window(), &"saeplay".into(), &api).ok();
}

fn ids_from_js(value: &JsValue) -> Result<Vec<u32>, JsValue> {
    let array: &Array = value
        .dyn_ref()
        .ok_or_else(|| JsValue::from_str("ids must be an array of numbers"))?;
    array
        .iter()
        .map(|v| {
            v.as_f64()
                .filter(|x| x.fract() == 0.0 && *x >= 0.0 && *x <= f64::from(u32::MAX))
                .map(|x| x as u32)
                .ok_or_else(|| JsValue::from_str("ids must be whole numbers from 0"))
        })
        .collect()
}

/// Options of `window.saeplay.trainSae`, all optional: `{architecture, k, expansion, tokens,
/// batchSize, hook, learningRate, sparsity, seed, randomInputs}`.
struct TrainSaeOptions {
    architecture: String,
    k: usize,
    expansion: usize,
    tokens: usize,
    batch_size: usize,
    hook: String,
    learning_rate: f64,
    sparsity: Option<f64>,
    seed: u64,
    /// Train on Gaussian vectors instead of the model's activations (throughput only).
    random_inputs: bool,
}

fn options_from_js(value: &JsValue) -> Result<TrainSaeOptions, JsValue> {
    let get = |key: &str| {
        Reflect::get(value, &key.into())
            .ok()
            .filter(|v| !v.is_undefined())
    };
    let number = |key: &str, default: f64| -> Result<f64, JsValue> {
        match get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| JsValue::from_str(&format!("{key} must be a number >= 0"))),
        }
    };
    let text = |key: &str, default: &str| {
        get(key)
            .and_then(|v| v.as_string())
            .unwrap_or(default.into())
    };
    Ok(TrainSaeOptions {
        architecture: text("architecture", "topk"),
        k: number("k", 16.0)? as usize,
        expansion: number("expansion", 8.0)? as usize,
        tokens: number("tokens", 65536.0)? as usize,
        batch_size: number("batchSize", 1024.0)? as usize,
        hook: text("hook", "blocks.2.hook_resid_pre"),
        learning_rate: number("learningRate", 1e-3)?,
        sparsity: get("sparsity").and_then(|v| v.as_f64()),
        seed: number("seed", 1.0)? as u64,
        random_inputs: get("randomInputs")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

/// Train an SAE in the page on its backend and report throughput and quality: the check that
/// TopK and BatchTopK train on WebGPU in wasm, and the page's SAE benchmark.
async fn train_sae_in_page(
    loaded: &LoadedModel,
    options: TrainSaeOptions,
) -> crate::Result<JsValue> {
    use crate::model::HookPoint;
    use crate::sae::Architecture;
    use crate::sae::pipeline::{Reporter, capture_vectors, open_store, train_to_end};
    use crate::sae::store::Corpus;
    use crate::sae::train::SaeTrainingConfig;
    use crate::sae::train::{BatchSource, CapturedActivations, Control, Progress, SaeTrainer};

    /// Keeps the last step's figures; never pauses.
    #[derive(Default)]
    struct LastProgress(std::cell::RefCell<Option<Progress>>);
    impl Reporter for LastProgress {
        fn phase(&self, _text: String, _fraction: f64) {}
        fn progress(&self, progress: &Progress) {
            *self.0.borrow_mut() = Some(progress.clone());
        }
        fn control(&self) -> Control {
            Control::Continue
        }
    }

    let architecture = Architecture::parse(&options.architecture, Some(options.k))?;
    let hook = HookPoint::parse(&options.hook, loaded.model.dims())?;
    let d_in = hook.width(loaded.model.dims());
    let sparsity = options
        .sparsity
        .unwrap_or(architecture.default_sparsity_coefficient());
    let config = SaeTrainingConfig {
        architecture,
        hook_name: hook.to_string(),
        expansion_factor: options.expansion,
        corpus: Corpus::TinyTales { seed: options.seed },
        training_tokens: options.tokens,
        batch_size: options.batch_size,
        learning_rate: options.learning_rate,
        sparsity_coefficient: sparsity,
        seed: options.seed,
        ..SaeTrainingConfig::default()
    };
    config.validate()?;
    let device = loaded.model.device().clone();
    let start = now_ms();
    let reporter = LastProgress::default();
    let (values, capture_ms) = if options.random_inputs {
        let mut rng = crate::rng::SplitMix64::new(options.seed);
        let rows = options.batch_size * 4;
        ((0..rows * d_in).map(|_| rng.normal()).collect(), 0.0)
    } else {
        // One forward of 16 windows x 128 tokens blocks the CPU page for ~1.2 s; 4 windows keep
        // each uninterrupted stretch near 0.3 s.
        let mut store = open_store(loaded, &config, hook, 4, Some(options.batch_size * 4))?;
        // Capture everything first, so the training figure is the SAE's own speed.
        let capture_start = now_ms();
        let wanted = options.tokens.max(options.batch_size);
        let values = capture_vectors(&mut store, wanted, d_in, 1024, &reporter)
            .await?
            .unwrap_or_default();
        (values, now_ms() - capture_start)
    };
    let mut source = CapturedActivations::new(values, d_in, options.seed)?;
    let first_batch = source.next_batch(options.batch_size).await?;
    let mut trainer = SaeTrainer::new(config, d_in, "builtin", &first_batch, &device)?;
    train_to_end(&mut trainer, &mut source, &reporter).await?;
    let total_ms = now_ms() - start;
    let progress = reporter
        .0
        .into_inner()
        .ok_or_else(|| crate::SaeplayError::InvalidSetting("no step ran".into()))?;
    // Encode on the page's device: bisection top-k on WebGPU (no synchronous read-back), host
    // selection on the CPU path.
    let sae = trainer.sae();
    let rows = first_batch.len() / d_in;
    let x = crate::backend::float_tensor(first_batch, [rows, d_in], &device);
    let acts = read_f32(sae.encode_async(x).await?).await?;
    let active = acts.iter().filter(|&&v| v > 0.0).count() as f64 / rows as f64;
    let result = Object::new();
    for (key, value) in [
        ("steps", progress.total_steps as f64),
        ("vectorsPerSecond", progress.vectors_per_second),
        ("trainSeconds", progress.elapsed_seconds),
        ("captureMs", capture_ms),
        ("totalMs", total_ms),
        (
            "explainedVariance",
            f64::from(progress.stats.explained_variance),
        ),
        ("trainL0", f64::from(progress.stats.l0)),
        ("encodeL0", active),
        ("deadFraction", f64::from(progress.stats.dead_fraction)),
        ("loss", f64::from(progress.stats.loss)),
    ] {
        Reflect::set(&result, &key.into(), &value.into()).ok();
    }
    Ok(result.into())
}
