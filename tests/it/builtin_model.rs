//! The shipped built-in model: it loads from `www/models/builtin` as the page and CLI load it, and
//! passes a quick quality check (it is not retrained here; `saeplay eval-model` gives the full figures).

use saeplay::backend::{block_on, cpu_device};
use saeplay::lm::evaluate_model;
use saeplay::model::files::{LoadedModel, ModelFiles};
use saeplay::tokenizer::END_OF_TEXT;

fn builtin_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/builtin")
}

/// The built-in model as the CLI loads it.
fn builtin() -> LoadedModel {
    ModelFiles::read_path(&builtin_dir())
        .unwrap()
        .parse()
        .unwrap()
        .upload(&cpu_device())
        .unwrap()
}

#[test]
fn the_builtin_model_loads_and_writes_tinytales() {
    let loaded = builtin();
    let config = loaded.model.dims();
    assert_eq!(
        config.eos_token_id,
        loaded.tokenizer().unwrap().id_of(END_OF_TEXT)
    );
    assert_eq!(config.d_vocab, loaded.tokenizer().unwrap().vocab_size());
    // 12 stories at temperature 0.8 from a fixed seed: a quick look, not the full evaluation.
    let report = block_on(evaluate_model(&loaded, 12, 0.8, 0, 20_000)).unwrap();
    println!("{report:#?}");
    // Uniform guessing is ln(vocab) ~ 7.2 nats; the shipped model reaches ~0.8 on held-out stories.
    assert!(
        report.held_out_loss < 1.0,
        "held-out loss {}",
        report.held_out_loss
    );
    assert!(
        report.passes_all >= 9.0 / 12.0,
        "stories keeping every rule: {}",
        report.passes_all
    );
    for (rule, rate) in [
        ("quotes", report.balanced_quotes),
        ("parentheses", report.balanced_parens),
        ("brackets", report.balanced_brackets),
        ("ending", report.proper_ending),
    ] {
        assert!(rate >= 10.0 / 12.0, "{rule}: {rate}");
    }
}

/// The SAEs shipped beside the built-in model: each loads, fits its hook, and reconstructs
/// held-out activations as well as its recorded metrics say (a quick check on 8 windows).
#[test]
fn the_shipped_saes_load_and_reconstruct() {
    use saeplay::model::HookPoint;
    use saeplay::sae::metrics::evaluate_sae;
    use saeplay::sae::saelens::SaeFiles;
    use saeplay::sae::store::{Corpus, TokenStream};
    use saeplay::tinytales::HELD_OUT_SEED;

    let dir = builtin_dir();
    let loaded = builtin();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("saes/index.json")).unwrap()).unwrap();
    let entries = index["saes"].as_array().unwrap();
    assert!(
        entries.len() >= 5,
        "a TopK SAE per layer and a standard one"
    );
    let windows = TokenStream::new(
        loaded.tokenizer().unwrap(),
        Corpus::TinyTales {
            seed: HELD_OUT_SEED,
        },
        128,
    )
    .unwrap()
    .windows(8)
    .unwrap();
    let bos = windows[0].ids[0];
    let mut layers_with_topk = std::collections::BTreeSet::new();
    for entry in entries {
        let path = dir.join(entry["path"].as_str().unwrap());
        let host = SaeFiles::read_dir(&path).unwrap().parse().unwrap();
        let hook = HookPoint::parse(&host.config.hook_name, loaded.model.dims()).unwrap();
        let sae = host.upload(loaded.model.device()).unwrap();
        let m = block_on(evaluate_sae(
            &loaded.model,
            &sae,
            hook,
            &windows,
            8,
            Some(bos),
        ))
        .unwrap();
        let recorded = host
            .provenance
            .metrics
            .expect("metrics are recorded in saeplay.json");
        println!(
            "{}: EV {:.3} (recorded {:.3}), L0 {:.1}, loss recovered {:.3}",
            entry["id"], m.explained_variance, recorded.explained_variance, m.l0, m.loss_recovered
        );
        assert!((m.explained_variance - recorded.explained_variance).abs() < 0.05);
        assert!(
            m.loss_recovered > 0.8,
            "{}: loss recovered {}",
            entry["id"],
            m.loss_recovered
        );
        if let saeplay::sae::Architecture::TopK { k } = host.config.architecture {
            assert!((m.l0 - k as f64).abs() < 1e-6);
            layers_with_topk.insert(hook.layer());
        }
    }
    assert_eq!(
        layers_with_topk.len(),
        loaded.model.dims().n_layers,
        "one TopK SAE per layer"
    );
}

struct Quiet(std::cell::RefCell<Vec<String>>);

impl saeplay::sae::pipeline::Reporter for Quiet {
    fn phase(&self, text: String, _: f64) {
        self.0.borrow_mut().push(text);
    }
    fn progress(&self, _: &saeplay::sae::train::Progress) {}
    fn control(&self) -> saeplay::sae::train::Control {
        saeplay::sae::train::Control::Continue
    }
}

/// Text the model writes is a corpus: sampled from a seed (the same seed, the same text), read
/// like any text, and an SAE trained on it keeps saying so in its recipe.
#[test]
fn text_the_model_writes_is_a_corpus_to_train_and_scan_on() {
    use saeplay::sae::pipeline::{TrainOptions, realise_corpus, train_sae};
    use saeplay::sae::store::Corpus;
    use saeplay::sae::train::SaeTrainingConfig;
    let loaded = builtin();
    let realise = |seed| {
        block_on(realise_corpus(
            &loaded,
            &Corpus::ModelText { seed },
            200,
            64,
            &|_| {},
        ))
        .unwrap()
    };
    let (a, b, c) = (realise(3), realise(3), realise(4));
    assert_eq!(a, b, "the same seed writes the same text");
    assert_ne!(a, c);
    let Corpus::Text { text } = &a else {
        panic!("realised as text: {a:?}")
    };
    let tokens = loaded.tokenizer().unwrap().encode(text).unwrap().ids.len();
    assert!(
        tokens >= 150,
        "about 200 tokens were asked for, {tokens} came"
    );
    // A small SAE on it; the recipe names the model's text, not the sampled words.
    let config = SaeTrainingConfig {
        hook_name: "blocks.1.hook_resid_pre".into(),
        corpus: Corpus::ModelText { seed: 5 },
        training_tokens: 2048,
        batch_size: 256,
        context: 64,
        expansion_factor: 2,
        ..SaeTrainingConfig::default()
    };
    let mut options = TrainOptions::in_page(&config);
    options.eval_windows = 2;
    let reporter = Quiet(Default::default());
    let trained = block_on(train_sae(&loaded, config, &options, &reporter))
        .unwrap()
        .expect("not cancelled");
    assert!(
        reporter
            .0
            .borrow()
            .iter()
            .any(|p| p.contains("The model is writing text")),
        "the sampling shows as a phase"
    );
    let host = trained.files.parse().unwrap();
    assert_eq!(
        host.provenance.recipe.unwrap().corpus,
        Corpus::ModelText { seed: 5 }
    );
    assert!(trained.metrics.l0 > 0.0);
}

/// A run whose tensors would not fit the page's memory is refused in words before any text is
/// sampled or any activation captured; a modest one passes the same check.
#[test]
fn a_run_too_large_for_the_page_is_refused_before_it_starts() {
    use saeplay::SaeplayError;
    use saeplay::sae::pipeline::{TrainOptions, check_memory, train_sae};
    use saeplay::sae::train::SaeTrainingConfig;
    let loaded = builtin();
    let config = SaeTrainingConfig {
        hook_name: "blocks.1.hook_resid_pre".into(),
        expansion_factor: 64,
        batch_size: 16_384,
        training_tokens: 65_536,
        ..SaeTrainingConfig::default()
    };
    // 8,192 latents x 16,384 rows x 8 latent-wide f32 tensors alone are 4.3 GB.
    let needed = config.memory_needed(128, 65_536);
    assert!(needed > 4_000_000_000, "{needed}");
    let options = TrainOptions::in_page(&config);
    let reporter = Quiet(Default::default());
    let error = block_on(train_sae(&loaded, config.clone(), &options, &reporter))
        .err()
        .expect("refused");
    assert!(
        matches!(error, SaeplayError::TooMuchMemory { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("8192 latents")
            && text.contains("GB")
            && text.contains("lower the expansion"),
        "{text}"
    );
    assert!(reporter.0.borrow().is_empty(), "nothing started");
    // The parameters alone, four copies of two d_in x d_sae matrices, bound the estimate below.
    let small = SaeTrainingConfig {
        batch_size: 1,
        ..config
    };
    assert!(small.memory_needed(128, 0) >= 4 * 4 * 2 * 128 * 8192);
    let default = SaeTrainingConfig::default();
    assert!(check_memory(&default, 128, &TrainOptions::in_page(&default)).is_ok());
}

/// A run resumed from any of its checkpoints (the capture made again, the trainer restored, the
/// captured vectors replayed to where it was) ends with exactly the weights of the run that was
/// never interrupted: what the page relies on to resume after a reload.
#[test]
fn a_resumed_run_ends_exactly_as_the_uninterrupted_one() {
    use saeplay::sae::pipeline::{Reporter, ResumePoint, TrainOptions, train_sae};
    use saeplay::sae::train::{Control, Progress, SaeTrainingConfig};
    use std::cell::RefCell;

    /// Checkpoints after every step and keeps them.
    #[derive(Default)]
    struct Keeping(RefCell<Vec<ResumePoint>>);
    impl Reporter for Keeping {
        fn phase(&self, _: String, _: f64) {}
        fn progress(&self, _: &Progress) {}
        fn control(&self) -> Control {
            Control::Continue
        }
        fn checkpoint_every(&self) -> Option<f64> {
            Some(0.0)
        }
        fn checkpoint(&self, point: ResumePoint) {
            self.0.borrow_mut().push(point);
        }
    }

    let loaded = builtin();
    let config = SaeTrainingConfig {
        hook_name: "blocks.1.hook_resid_pre".into(),
        architecture: saeplay::sae::Architecture::TopK { k: 8 },
        expansion_factor: 2,
        training_tokens: 6_144,
        batch_size: 512,
        ..SaeTrainingConfig::default()
    };
    let mut options = TrainOptions::in_page(&config);
    options.data = saeplay::sae::pipeline::TrainingData::CaptureFirst { max_tokens: 2_048 };
    options.eval_windows = 2;
    let whole = Keeping::default();
    let uninterrupted = block_on(train_sae(&loaded, config.clone(), &options, &whole))
        .unwrap()
        .unwrap();
    let points = whole.0.into_inner();
    // 12 steps over 2,048 captured vectors: a checkpoint after each, passes reshuffled in between.
    assert!(points.len() >= 10, "{} checkpoints", points.len());
    for point in [&points[2], &points[7]] {
        let mut resumed_options = options.clone();
        resumed_options.resume = Some(point.clone());
        let resumed = block_on(train_sae(
            &loaded,
            config.clone(),
            &resumed_options,
            &Quiet(Default::default()),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            resumed.files.weights, uninterrupted.files.weights,
            "resumed after {} vectors",
            point.rows_served
        );
    }
    // A checkpoint of other settings is refused in words.
    let mut other = options.clone();
    other.resume = Some(points[2].clone());
    let changed = SaeTrainingConfig {
        learning_rate: config.learning_rate * 2.0,
        ..config
    };
    let error = block_on(train_sae(
        &loaded,
        changed,
        &other,
        &Quiet(Default::default()),
    ))
    .err()
    .expect("refused")
    .to_string();
    assert!(error.contains("other settings"), "{error}");
}

/// A capture split between this worker and helper workers (the page on several cores) gives
/// exactly the vectors of one worker drawing chunk by chunk: forwards are planned first, run
/// wherever, and buffered in plan order. A helper that fails has its forward run here.
#[test]
fn a_capture_shared_with_helpers_gives_the_same_vectors() {
    use saeplay::model::HookPoint;
    use saeplay::sae::pipeline::{Reporter, capture, capture_vectors, open_store};
    use saeplay::sae::spread::{ForwardHelpers, HelperAnswer, HelperTask};
    use saeplay::sae::train::{Control, Progress, SaeTrainingConfig};
    use std::cell::{Cell, RefCell};

    /// An answer, and the polls left before it comes.
    type Pending = (Cell<usize>, Result<HelperAnswer, String>);
    /// Helpers that answer in order, a few polls after being asked; helper 1 fails its second
    /// request.
    struct FakeHelpers {
        loaded: LoadedModel,
        hook: HookPoint,
        pending: RefCell<Vec<std::collections::VecDeque<Pending>>>,
        asked: RefCell<Vec<usize>>,
    }
    impl ForwardHelpers for FakeHelpers {
        fn count(&self) -> usize {
            2
        }
        fn send(&self, helper: usize, task: HelperTask<'_>) {
            let HelperTask::Capture { windows: batch } = task else {
                panic!("a capture asks for captures");
            };
            let asked = {
                let mut asked = self.asked.borrow_mut();
                asked[helper] += 1;
                asked[helper]
            };
            let answer = if helper == 1 && asked == 2 {
                Err("the helper crashed".to_string())
            } else {
                let captured = self.loaded.model.capture(batch, &[self.hook]).unwrap();
                Ok(HelperAnswer {
                    values: block_on(saeplay::backend::read_f32(captured[0].1.clone())).unwrap(),
                    losses: None,
                })
            };
            self.pending.borrow_mut()[helper].push_back((Cell::new(1 + helper), answer));
        }
        fn poll(&self, helper: usize) -> Option<Result<HelperAnswer, String>> {
            let mut pending = self.pending.borrow_mut();
            let (wait, _) = pending[helper].front()?;
            if wait.get() > 0 {
                wait.set(wait.get() - 1);
                return None;
            }
            pending[helper].pop_front().map(|(_, answer)| answer)
        }
    }
    struct WithHelpers<'a>(Option<&'a FakeHelpers>, Cell<usize>);
    impl Reporter for WithHelpers<'_> {
        fn phase(&self, _: String, _: f64) {
            self.1.set(self.1.get() + 1);
        }
        fn progress(&self, _: &Progress) {}
        fn control(&self) -> Control {
            Control::Continue
        }
        fn helpers(&self) -> Option<&dyn ForwardHelpers> {
            self.0.map(|h| h as &dyn ForwardHelpers)
        }
    }

    let loaded = builtin();
    let config = SaeTrainingConfig {
        hook_name: "blocks.1.hook_resid_pre".into(),
        context: 32,
        ..SaeTrainingConfig::default()
    };
    let hook = HookPoint::parse(&config.hook_name, loaded.model.dims()).unwrap();
    let (wanted, chunk, d_in) = (2_000, 300, loaded.model.dims().d_model);
    let store = || open_store(&loaded, &config, hook, 2, Some(512)).unwrap();

    let mut alone = store();
    let mut expected = Vec::new();
    while expected.len() < wanted * d_in {
        let take = (wanted - expected.len() / d_in).min(chunk);
        expected.extend(block_on(capture(&mut alone, take)).unwrap());
    }
    let here = WithHelpers(None, Cell::new(0));
    let planned = block_on(capture_vectors(&mut store(), wanted, d_in, chunk, &here))
        .unwrap()
        .unwrap();
    assert_eq!(planned, expected, "planned ahead, run here alone");
    assert!(here.1.get() >= wanted / chunk, "progress after each chunk");

    let helpers = FakeHelpers {
        loaded: builtin(),
        hook,
        pending: RefCell::new(vec![Default::default(), Default::default()]),
        asked: RefCell::new(vec![0, 0]),
    };
    let shared = WithHelpers(Some(&helpers), Cell::new(0));
    let got = block_on(capture_vectors(&mut store(), wanted, d_in, chunk, &shared))
        .unwrap()
        .unwrap();
    assert_eq!(got, expected, "shared with helpers");
    let asked = helpers.asked.borrow();
    assert!(asked[0] >= 3, "helper 0 ran {} forwards", asked[0]);
    // Asked ahead: its second request fails, and it is left out after it.
    assert!(
        (2..=3).contains(&asked[1]),
        "helper 1 was asked {} times",
        asked[1]
    );
}
