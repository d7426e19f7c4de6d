//! The page's state machine, driven without a browser.

use saeplay::backend::BackendKind;
use saeplay::model::StopReason;
use saeplay::ui::{
    AdapterInfo, DEFAULT_PROMPT, Fragment, GenerationForm, PageState, Phase, choose_backend,
    fragment_for, parse_fragment,
};

fn swiftshader() -> AdapterInfo {
    AdapterInfo {
        vendor: "google".into(),
        architecture: "swiftshader".into(),
        description: String::new(),
        is_fallback: true,
    }
}

fn real_gpu() -> AdapterInfo {
    AdapterInfo {
        vendor: "nvidia".into(),
        architecture: "ampere".into(),
        description: String::new(),
        is_fallback: false,
    }
}

#[test]
fn backend_choice_follows_link_and_adapter() {
    let auto_soft = choose_backend(None, &Ok(Some(swiftshader())));
    assert_eq!(auto_soft.kind, BackendKind::Cpu);
    assert!(
        auto_soft.reason.contains("software fallback"),
        "{}",
        auto_soft.reason
    );
    assert_eq!(
        choose_backend(None, &Ok(Some(real_gpu()))).kind,
        BackendKind::Wgpu
    );
    let none = choose_backend(None, &Ok(None));
    assert_eq!(none.kind, BackendKind::Cpu);
    assert!(none.reason.contains("no WebGPU"));
    let failed = choose_backend(None, &Err("device lost".into()));
    assert_eq!(failed.kind, BackendKind::Cpu);
    assert!(failed.reason.contains("device lost"));
    // Forcing: WebGPU even on a software adapter; CPU even on a real GPU; a forced WebGPU that
    // is missing falls back to CPU and says so.
    let forced = choose_backend(Some(BackendKind::Wgpu), &Ok(Some(swiftshader())));
    assert_eq!(forced.kind, BackendKind::Wgpu);
    assert!(forced.label.contains("swiftshader"));
    assert_eq!(
        choose_backend(Some(BackendKind::Cpu), &Ok(Some(real_gpu()))).kind,
        BackendKind::Cpu
    );
    let missing = choose_backend(Some(BackendKind::Wgpu), &Ok(None));
    assert_eq!(missing.kind, BackendKind::Cpu);
    assert!(missing.reason.contains("asked for WebGPU"));
    // lavapipe by description, even when not flagged as a fallback.
    let lavapipe = AdapterInfo {
        description: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
        ..AdapterInfo::default()
    };
    assert!(lavapipe.is_software());
}

#[test]
fn fragments_round_trip_and_bad_parts_are_reported_not_applied() {
    let view = Fragment {
        backend: Some(BackendKind::Wgpu),
        prompt: Some("A & B = \"c\" <b>é</b>#%".into()),
        ..Fragment::default()
    };
    let text = fragment_for(&view);
    let (parsed, problems) = parse_fragment(&format!("#{text}"));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(parsed, view);

    let (parsed, problems) =
        parse_fragment("#backend=%3Cscript%3Ealert(1)%3C/script%3E&prompt=%E0%A4&zzz=1");
    assert_eq!(parsed, Fragment::default());
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].contains("<script>alert(1)</script>"),
        "shown as text: {}",
        problems[0]
    );
    let huge = format!("#prompt={}", "a".repeat(10_000));
    let (parsed, problems) = parse_fragment(&huge);
    assert_eq!(parsed.prompt, None);
    assert!(problems[0].contains("10000 bytes"));
    let (parsed, problems) = parse_fragment("#prompt=%4");
    assert_eq!(parsed.prompt, None);
    assert_eq!(problems.len(), 1);
    assert_eq!(parse_fragment("").0, Fragment::default());
}

#[test]
fn generation_form_is_checked_into_sampling_settings() {
    let form = GenerationForm::default();
    let config = form.parse().unwrap();
    assert_eq!(
        (config.temperature, config.top_k, config.top_p, config.seed),
        (0.8, None, None, 0)
    );
    let cases = [
        (
            GenerationForm {
                temperature: "hot".into(),
                ..GenerationForm::default()
            },
            "Temperature \"hot\" is not a valid number.",
        ),
        (
            GenerationForm {
                temperature: "-1".into(),
                ..GenerationForm::default()
            },
            "Temperature must be",
        ),
        (
            GenerationForm {
                top_k: "0".into(),
                ..GenerationForm::default()
            },
            "Top-k must be at least 1.",
        ),
        (
            GenerationForm {
                top_p: "2".into(),
                ..GenerationForm::default()
            },
            "Top-p must be above 0",
        ),
        (
            GenerationForm {
                seed: "-3".into(),
                ..GenerationForm::default()
            },
            "Seed \"-3\" is not a valid number.",
        ),
        (
            GenerationForm {
                max_tokens: "0".into(),
                ..GenerationForm::default()
            },
            "Max tokens must be between 1 and 1024.",
        ),
        (
            GenerationForm {
                max_tokens: "5000".into(),
                ..GenerationForm::default()
            },
            "Max tokens must be between",
        ),
    ];
    for (form, expected) in cases {
        let message = form.parse().unwrap_err();
        assert!(message.starts_with(expected), "{message} / {expected}");
    }
}

#[test]
fn page_state_moves_through_loading_generation_and_errors() {
    let (mut state, view) = PageState::new("#backend=cpu&prompt=Hello");
    assert_eq!(view.backend, Some(BackendKind::Cpu));
    assert_eq!(state.prompt, "Hello");
    assert_eq!(state.phase, Phase::Loading);
    assert!(
        state.start_generation().is_none(),
        "nothing runs before the model is ready"
    );
    state.model_loaded("ready".into());
    assert_eq!(state.phase.name(), "ready");

    state.form.max_tokens = "x".into();
    assert!(state.start_generation().is_none());
    assert_eq!(state.errors.len(), 1);
    state.dismiss_errors();
    state.form.max_tokens = "5".into();
    let config = state.start_generation().expect("starts");
    assert_eq!(config.max_new_tokens, 5);
    assert!(state.generating && !state.output_done);
    assert!(
        state.start_generation().is_none(),
        "one generation at a time"
    );
    state.generated(" world".into(), 1);
    state.generation_finished(Ok((StopReason::MaxTokens, 5, 0.5)));
    assert!(!state.generating && state.output_done);
    assert!(
        state.generation_status.contains("5 tokens")
            && state.generation_status.contains("token limit")
    );

    assert_eq!(
        state.fragment(Some(BackendKind::Cpu)),
        "backend=cpu&prompt=Hello"
    );
    state.prompt_changed(DEFAULT_PROMPT.into());
    assert_eq!(state.fragment(None), "");

    let (mut failing, _) = PageState::new("#nonsense");
    assert_eq!(failing.errors.len(), 1);
    failing
        .load_failed("could not fetch models/builtin/config.json: the server answered 404".into());
    assert_eq!(failing.phase.name(), "error");
    assert!(failing.errors.last().unwrap().contains("404"));
}

// ---- Links for every view ----

use saeplay::sae::steer::{Intervention, InterventionMode};
use saeplay::ui::chart::{self, Frame, Range};
use saeplay::ui::circuits::GraphKind;
use saeplay::ui::feature_list::{self, FeatureRow, SortKey};
use saeplay::ui::link::{MAX_FRAGMENT_BYTES, parse_steering, steering_text};
use saeplay::ui::train_form::CorpusKind;
use saeplay::ui::{ModelSource, SaeRef, TrainForm, View};

#[test]
fn a_full_view_round_trips_through_its_link() {
    let view = Fragment {
        backend: Some(BackendKind::Cpu),
        model: Some(ModelSource::Url(
            "https://huggingface.co/openai-community/gpt2/resolve/main".into(),
        )),
        sae: Some(SaeRef::Id("blocks.2.hook_resid_pre-topk16".into())),
        feature: Some(730),
        prompt: Some("Once upon a time; a fox & a hen".into()),
        steer: vec![
            Intervention {
                feature: 730,
                mode: InterventionMode::Add { strength: 12.5 },
            },
            Intervention {
                feature: 12,
                mode: InterventionMode::Clamp { value: -3.0 },
            },
            Intervention {
                feature: 5,
                mode: InterventionMode::Ablate,
            },
        ],
        view: Some(View::Steer),
        recipe: Some(TrainForm::default().recipe()),
        graph: Some(GraphKind::Ablation),
        target: Some(" cat".into()),
        threshold: Some(0.25),
        node: Some("2_15_3".into()),
    };
    let text = fragment_for(&view);
    let (parsed, problems) = parse_fragment(&format!("#{text}"));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(parsed, view);
    // The page's own state writes the same link, leaving the default view and prompt out.
    let (state, _) = PageState::new(&format!("#{text}"));
    assert_eq!(state.fragment(Some(BackendKind::Cpu)), text);
    let (state, _) = PageState::new("#view=prompt");
    assert_eq!(state.fragment(None), "");
}

#[test]
fn hub_models_and_published_saes_round_trip_through_links() {
    let view = Fragment {
        model: Some(ModelSource::Hub("openai-community/gpt2".into())),
        sae: Some(SaeRef::Release(
            "gpt2-small-res-jb/blocks.8.hook_resid_pre".into(),
        )),
        feature: Some(1234),
        view: Some(View::Features),
        ..Fragment::default()
    };
    let text = fragment_for(&view);
    assert_eq!(
        text,
        "view=features&model=hf:openai-community/gpt2&sae=gpt2-small-res-jb/blocks.8.hook_resid_pre&feature=1234"
    );
    let (parsed, problems) = parse_fragment(&format!("#{text}"));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(parsed, view);
    assert_eq!(
        parsed.model.unwrap().base_url("https://huggingface.co"),
        Some("https://huggingface.co/openai-community/gpt2/resolve/main/".into())
    );
    // A model opened from files in this browser.
    let local = Fragment {
        model: Some(ModelSource::Local("files-0a1b2c3d".into())),
        ..Fragment::default()
    };
    let text = fragment_for(&local);
    assert_eq!(text, "model=local:files-0a1b2c3d");
    assert_eq!(parse_fragment(&text).0, local);
    assert_eq!(
        local.model.unwrap().base_url("https://huggingface.co"),
        Some("local-models/files-0a1b2c3d/".into())
    );
    // A release or SAE id the table does not have, and a repository name that is not one,
    // are refused in words and left out.
    for (fragment, needle) in [
        (
            "#sae=gpt2-small-res-jb/blocks.99.hook_resid_pre",
            "has no SAE",
        ),
        (
            "#sae=no-such-release/blocks.1.hook_resid_pre",
            "unknown SAE release",
        ),
        ("#model=hf:../../evil", "not a Hugging Face repository"),
        ("#model=hf:a/b/c", "not a Hugging Face repository"),
        ("#model=local:../x", "not a model opened in this browser"),
    ] {
        let (parsed, problems) = parse_fragment(fragment);
        assert!(parsed.sae.is_none() && parsed.model.is_none(), "{fragment}");
        assert_eq!(problems.len(), 1, "{fragment}");
        assert!(problems[0].contains(needle), "{fragment}: {problems:?}");
    }
}

#[test]
fn hostile_and_malformed_links_become_messages_and_the_default_view() {
    let markup = "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E";
    let fragment = format!(
        "#view={markup}&sae={markup}&feature={markup}&steer={markup}&recipe={markup}&model=javascript:alert(1)&backend={markup}"
    );
    let (parsed, problems) = parse_fragment(&fragment);
    assert_eq!(parsed, Fragment::default());
    assert_eq!(problems.len(), 7, "{problems:?}");
    for problem in &problems {
        assert!(problem.ends_with('.'), "a sentence: {problem}");
        assert!(!problem.contains('\n'));
    }
    // The prompt may hold markup: it is data, shown as text by the page.
    let (parsed, problems) = parse_fragment(&format!("#prompt={markup}"));
    assert!(problems.is_empty());
    assert_eq!(
        parsed.prompt.as_deref(),
        Some("<img src=x onerror=alert(1)>")
    );
    // Huge links are refused whole; truncated encodings per part.
    let huge = format!("#sae=x&prompt={}", "a".repeat(MAX_FRAGMENT_BYTES));
    let (parsed, problems) = parse_fragment(&huge);
    assert_eq!(parsed, Fragment::default());
    assert!(problems[0].contains("more than"), "{problems:?}");
    let (parsed, problems) = parse_fragment("#feature=12&steer=12:add:%E0%A4&view=train");
    assert_eq!(parsed.feature, Some(12));
    assert_eq!(parsed.view, Some(View::Train));
    assert!(parsed.steer.is_empty());
    assert_eq!(problems.len(), 1);
    // Out-of-range and non-finite steering, ids with path characters, non-web URLs.
    for bad in [
        "#steer=1:add:inf",
        "#steer=1:add:1e9",
        "#steer=1:boost:3",
        "#steer=-1:ablate",
        "#sae=../../etc/passwd",
        "#sae=file:///etc/passwd",
        "#model=ftp://example.com/m",
        "#feature=99999999999",
    ] {
        let (parsed, problems) = parse_fragment(bad);
        assert_eq!(parsed, Fragment::default(), "{bad}");
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
    }
    let too_many = (0..17)
        .map(|i| format!("{i}:ablate"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(parse_steering(&too_many).is_err());
}

#[test]
fn steering_text_round_trips() {
    let list =
        parse_steering("730:add:4, 12:clamp:-0.5,5:ablate,3:orthogonal:0,9:projection_cap:2.5")
            .unwrap();
    assert_eq!(list.len(), 5);
    assert_eq!(list[1].mode, InterventionMode::Clamp { value: -0.5 });
    assert_eq!(
        list[3].mode,
        InterventionMode::Orthogonal { coefficient: 0.0 }
    );
    assert_eq!(list[4].mode, InterventionMode::ProjectionCap { cap: 2.5 });
    assert_eq!(parse_steering(&steering_text(&list)).unwrap(), list);
    // Each row shows its mode, and reads back as the same intervention.
    for i in &list {
        let row = saeplay::ui::steer::SteerRow::of(i);
        assert_eq!(row.mode.name(), i.mode.name());
        assert_eq!(row.intervention(1, 1000).unwrap(), *i);
    }
    // The direction modes need their number.
    assert!(parse_steering("3:orthogonal").is_err());
    assert!(parse_steering("3:projection_cap:x").is_err());
}

fn hooks() -> Vec<String> {
    (0..4)
        .map(|l| format!("blocks.{l}.hook_resid_pre"))
        .chain(["ln_final.hook_normalized".to_string()])
        .collect()
}

#[test]
fn the_train_form_checks_every_field_and_round_trips_as_a_recipe() {
    let form = TrainForm::default();
    let config = form.parse(&hooks()).unwrap();
    assert_eq!(config.architecture.name(), "topk");
    assert_eq!(config.architecture.k(), Some(16));
    assert_eq!(config.expansion_factor, 8);
    assert_eq!(config.hook_name, "blocks.2.hook_resid_pre");
    // The recipe carries everything but a pasted text, and comes back to the same config.
    let mut custom = TrainForm {
        architecture: "jumprelu".into(),
        sparsity: "2.5".into(),
        expansion: "4".into(),
        seed: "7".into(),
        ..TrainForm::default()
    };
    let back = TrainForm::from_recipe(&custom.recipe()).unwrap();
    assert_eq!(back, custom);
    assert_eq!(
        TrainForm::from_config(&custom.parse(&hooks()).unwrap()),
        custom
    );
    custom.corpus = CorpusKind::Text;
    assert!(
        custom
            .parse(&hooks())
            .unwrap_err()
            .contains("text corpus is empty")
    );
    custom.text = "Hello there. ".repeat(50);
    assert!(custom.parse(&hooks()).is_ok());

    for (field, value, message) in [
        ("hook", "blocks.9.hook_resid_pre", "Hook point"),
        ("arch", "transcoder", "Unknown SAE architecture"),
        ("k", "zero", "k \"zero\""),
        ("k", "0", "k >= 1"),
        ("x", "0", "Expansion"),
        ("x", "1000", "Expansion"),
        ("tokens", "-5", "Training tokens"),
        ("batch", "0", "Batch size"),
        ("lr", "0", "Learning rate"),
        ("lr", "NaN", "Learning rate"),
        ("sparsity", "-1", "Sparsity"),
        ("seed", "1.5", "Seed"),
    ] {
        let mut form = TrainForm::default();
        match field {
            "hook" => form.hook = value.into(),
            "arch" => form.architecture = value.into(),
            "k" => form.k = value.into(),
            "x" => form.expansion = value.into(),
            "tokens" => form.tokens = value.into(),
            "batch" => form.batch_size = value.into(),
            "lr" => form.learning_rate = value.into(),
            "sparsity" => form.sparsity = value.into(),
            _ => form.seed = value.into(),
        }
        let error = form.parse(&hooks()).unwrap_err();
        assert!(error.contains(message), "{field}={value}: {error}");
        assert!(error.ends_with('.'), "a sentence: {error}");
    }
    for bad in ["arch:topk;k", "arch:<script>", "nonsense:1", "corpus:web"] {
        assert!(TrainForm::from_recipe(bad).is_err(), "{bad}");
    }
}

#[test]
fn charts_scale_data_into_their_frame() {
    let frame = Frame::SMALL;
    let (points, xs, ys) =
        chart::polyline(&[(0.0, 10.0), (5.0, f64::NAN), (10.0, 20.0)], frame).unwrap();
    assert_eq!((xs.min, xs.max, ys.min, ys.max), (0.0, 10.0, 10.0, 20.0));
    // The lowest value sits on the bottom edge, the highest on the top; NaN is left out.
    let left_bottom = format!("{:.1},{:.1}", frame.pad, frame.height - frame.pad);
    let right_top = format!("{:.1},{:.1}", frame.width - frame.pad, frame.pad);
    assert_eq!(points, format!("{left_bottom} {right_top}"));
    assert!(chart::polyline(&[(f64::NAN, 1.0)], frame).is_none());
    // Flat series do not divide by zero.
    let flat = Range::of([0.0, 0.0]).unwrap();
    assert_eq!((flat.min, flat.max), (0.0, 1.0));
    let flat = Range::of([16.0, 16.0]).unwrap();
    assert!(flat.min < 16.0 && flat.max > 16.0);

    let bars = chart::bars(&[1.0, 4.0, 0.0, 2.0], frame);
    assert_eq!(bars.len(), 4);
    assert!(
        (bars[1].y - frame.pad).abs() < 1e-9,
        "tallest reaches the top"
    );
    assert_eq!(bars[2].height, 0.0);
    assert!(
        (bars[0].height * 4.0 - bars[1].height).abs() < 1e-9,
        "heights are proportional"
    );
    assert!(chart::bars(&[0.0, 0.0], frame).is_empty());

    let (placed, _, _) =
        chart::scatter(&[(16.0, 0.99), (f64::NAN, 0.5), (10.0, 0.95)], frame).unwrap();
    assert_eq!(placed.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(chart::shade(2.0, 4.0), 0.5);
    assert_eq!(chart::shade(-1.0, 4.0), 0.0);
    assert_eq!(chart::shade(9.0, 4.0), 1.0);
    assert_eq!(chart::shade(1.0, 0.0), 0.0);
}

#[test]
fn the_feature_list_searches_and_sorts() {
    let row = |index: usize, density: f64, max: f32, concept: Option<(&str, f64)>, token: &str| {
        FeatureRow {
            index,
            density,
            max_activation: max,
            concept: concept.map(|(c, a)| (c.to_string(), a)),
            top_tokens: vec![token.to_string()],
            explanation: None,
            score: None,
        }
    };
    let mut rows = vec![
        row(0, 0.10, 3.0, Some(("animal", 0.93)), " dog"),
        row(1, 0.02, 9.0, Some(("colour", 0.81)), " red"),
        row(2, 0.00, 0.0, None, ""),
        row(3, 0.30, 1.0, Some(("animal", 0.60)), " hen"),
    ];
    rows[1].explanation = Some("after: the; concept:colour".into());
    rows[1].score = Some(0.4);
    rows[3].explanation = Some("hen, duck".into());
    rows[3].score = Some(0.9);
    assert_eq!(
        feature_list::select(&rows, "", SortKey::Density, true, 10),
        vec![3, 0, 1, 2]
    );
    assert_eq!(
        feature_list::select(&rows, "", SortKey::MaxActivation, true, 2),
        vec![1, 0]
    );
    assert_eq!(
        feature_list::select(&rows, "", SortKey::ConceptMatch, true, 10),
        vec![0, 1, 3, 2]
    );
    assert_eq!(
        feature_list::select(&rows, "", SortKey::Index, false, 10),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        feature_list::select(&rows, "Animal", SortKey::Density, true, 10),
        vec![3, 0]
    );
    assert_eq!(
        feature_list::select(&rows, "red", SortKey::Density, true, 10),
        vec![1]
    );
    assert_eq!(
        feature_list::select(&rows, "#2", SortKey::Density, true, 10),
        vec![2]
    );
    assert!(feature_list::select(&rows, "giraffe", SortKey::Density, true, 10).is_empty());
    // By explanation score, unexplained last; explanations are searched too.
    assert_eq!(
        feature_list::select(&rows, "", SortKey::Score, true, 10),
        vec![3, 1, 0, 2]
    );
    assert_eq!(
        feature_list::select(&rows, "duck", SortKey::Density, true, 10),
        vec![3]
    );
}

#[test]
fn explanations_arriving_later_fill_the_list() {
    use saeplay::sae::explain::{ExplanationScore, ExplanationSource, FeatureExplanation};
    use saeplay::ui::lab::FeatureIndex;
    let rows = (0..4)
        .map(|index| FeatureRow {
            index,
            density: 0.1,
            max_activation: 1.0,
            concept: None,
            top_tokens: vec![],
            explanation: None,
            score: None,
        })
        .collect();
    let index = FeatureIndex::new(1000, rows, None);
    assert!(!index.explained.get());
    let explained = |feature: usize, text: &str, simulation: f64| FeatureExplanation {
        feature,
        explanation: text.into(),
        source: ExplanationSource::TopTokens,
        score: Some(ExplanationScore {
            simulation,
            detection: Some(0.9),
            top_contexts: 20,
            random_contexts: 20,
        }),
    };
    index.explain(&[explained(2, "cat", 0.8), explained(0, "dog", 0.3)], false);
    assert!(!index.explained.get());
    index.explain(&[explained(3, "", 0.0)], true);
    assert!(index.explained.get());
    let rows = index.rows.borrow();
    assert_eq!(rows[2].explanation.as_deref(), Some("cat"));
    assert_eq!(rows[2].score, Some(0.8));
    assert_eq!(rows[0].score, Some(0.3));
    // An empty explanation (a feature that never fired) shows as none.
    assert_eq!(
        (rows[3].explanation.as_deref(), rows[3].score),
        (None, None)
    );
    assert_eq!(
        feature_list::select(&rows, "", SortKey::Score, true, 10),
        vec![2, 0, 1, 3]
    );
}

#[test]
fn the_pareto_chart_plots_the_chosen_figures() {
    use saeplay::sae::metrics::Figure;
    use saeplay::ui::lab::{Lab, Summary, shipped_slots};
    let index = br#"{"saes": [
        {"id": "a", "path": "a", "l0": 16, "loss_recovered": 0.99, "cossim": 0.97},
        {"id": "b", "path": "b", "l0": 32, "loss_recovered": 0.995}
    ]}"#;
    let mut lab = Lab::default();
    lab.add_shipped(shipped_slots(index, "saes/").unwrap());
    assert_eq!(lab.pareto_points(), vec![(16.0, 0.99), (32.0, 0.995)]);
    lab.pareto_axes = (Figure::Cossim, Figure::L0);
    let points = lab.pareto_points();
    assert_eq!(points[0], (0.97, 16.0));
    assert!(points[1].0.is_nan() && points[1].1 == 32.0);
    // Every figure has a name the links and the index use, read back the same.
    for figure in Figure::ALL {
        assert_eq!(Figure::parse(figure.name()), Some(figure));
    }
    assert_eq!(Summary::default().figure(Figure::L0), None);
}

#[test]
fn index_html_has_every_id_the_page_uses() {
    use saeplay::ui::{View, ids};
    let html = include_str!("../../index.html");
    let has = |id: &str| html.contains(&format!("id=\"{id}\""));
    let views = View::ALL
        .into_iter()
        .flat_map(|v| [ids::tab(v), ids::section(v)]);
    for id in ids::IN_PAGE.iter().map(|s| s.to_string()).chain(views) {
        assert!(has(&id), "index.html has no element with id {id}");
    }
    for id in ids::CREATED {
        assert!(
            !has(id),
            "{id} is created by Rust, yet index.html has it too"
        );
    }
}

#[test]
fn a_recipe_can_name_text_the_model_writes() {
    use saeplay::sae::store::Corpus;
    use saeplay::ui::train_form::CorpusKind;
    let form = TrainForm {
        corpus: CorpusKind::ModelText,
        ..TrainForm::default()
    };
    let recipe = form.recipe();
    assert!(recipe.contains("corpus:model"), "{recipe}");
    let back = TrainForm::from_recipe(&recipe).unwrap();
    assert_eq!(back.corpus, CorpusKind::ModelText);
    let hooks = vec![back.hook.clone()];
    let config = back.parse(&hooks).unwrap();
    assert!(matches!(config.corpus, Corpus::ModelText { .. }));
    assert_eq!(
        TrainForm::from_config(&config).corpus,
        CorpusKind::ModelText
    );
    assert!(TrainForm::from_recipe("corpus:poems").is_err());
}

#[test]
fn circuit_links_refuse_bad_parts_in_words() {
    let (parsed, problems) =
        parse_fragment("#view=circuits&graph=magic&threshold=2&node=%3Cscript%3E&target=%00x");
    assert_eq!(parsed.view, Some(View::Circuits));
    assert_eq!((parsed.graph, parsed.threshold), (None, None));
    assert_eq!((parsed.node, parsed.target), (None, None));
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems[0].contains("attribution, cosine, ablation"),
        "{problems:?}"
    );
}

/// A hand-made attribution graph: two tokens, a feature per layer, an error, the logit.
fn small_graph() -> saeplay::sae::circuits::GraphFile {
    let json = r#"{
      "metadata": {"slug": "s", "scan": "m", "transcoder_list": ["sae-a", "sae-b"],
        "prompt_tokens": ["<bos>", "cat"], "prompt": "cat", "node_threshold": 0.8, "schema_version": 1,
        "saeplay": {"kind": "attribution", "layers": [["0", "blocks.0.hook_resid_pre"], ["1", "blocks.1.hook_resid_pre"]]}},
      "nodes": [
        {"node_id": "E_5_0", "feature": 0, "layer": "E", "ctx_idx": 0, "feature_type": "embedding", "jsNodeId": "E_5-0", "clerp": "", "influence": 0.9},
        {"node_id": "E_7_1", "feature": 1, "layer": "E", "ctx_idx": 1, "feature_type": "embedding", "jsNodeId": "E_7-1", "clerp": "", "influence": 0.5},
        {"node_id": "0_12_1", "feature": 90, "layer": "0", "ctx_idx": 1, "feature_type": "cross layer transcoder", "jsNodeId": "0_12-0", "clerp": "animals", "influence": 0.3, "activation": 2.0},
        {"node_id": "0_-1_1", "feature": -1, "layer": "0", "ctx_idx": 1, "feature_type": "residual reconstruction error", "jsNodeId": "0_-1-1", "clerp": "", "influence": 0.95},
        {"node_id": "1_40_1", "feature": 901, "layer": "1", "ctx_idx": 1, "feature_type": "cross layer transcoder", "jsNodeId": "1_40-0", "clerp": "", "influence": 0.2, "activation": 1.0},
        {"node_id": "3_9_1", "feature": 9, "layer": "3", "ctx_idx": 1, "feature_type": "logit", "token_prob": 0.4, "is_target_logit": true, "jsNodeId": "L_9-1", "clerp": "Output \"dog\" (p=0.400)"}
      ],
      "links": [
        {"source": "E_7_1", "target": "0_12_1", "weight": 1.5},
        {"source": "0_12_1", "target": "1_40_1", "weight": -0.5},
        {"source": "0_-1_1", "target": "1_40_1", "weight": 0.1},
        {"source": "1_40_1", "target": "3_9_1", "weight": 2.0}
      ]
    }"#;
    saeplay::sae::circuits::GraphFile::parse(json.as_bytes()).unwrap()
}

#[test]
fn attribution_pictures_put_tokens_below_layers_below_the_output_and_hide_weak_nodes() {
    use saeplay::ui::circuits::{
        CircuitsState, attribution_picture, feature_of_node, node_details,
    };
    let file = small_graph();
    let state = CircuitsState {
        threshold: 0.8,
        selected: Some("1_40_1".into()),
        ..CircuitsState::default()
    };
    let picture = attribution_picture(&file, &state);
    let y = |id: &str| {
        let i = file.nodes.iter().position(|n| n.node_id == id).unwrap();
        picture.nodes.iter().find(|n| n.index == i).map(|n| n.y)
    };
    // The error (cumulative influence 0.95) is past the 0.8 threshold; embeddings never hide.
    assert_eq!(y("0_-1_1"), None);
    assert!(y("E_5_0").is_some());
    let (e, f0, f1, logit) = (
        y("E_7_1").unwrap(),
        y("0_12_1").unwrap(),
        y("1_40_1").unwrap(),
        y("3_9_1").unwrap(),
    );
    assert!(
        e > f0 && f0 > f1 && f1 > logit,
        "tokens, layers, output from the bottom up"
    );
    // Three links among the drawn nodes; the strongest is widest; the chosen node's are marked.
    assert_eq!(picture.edges.len(), 3);
    let widest = picture.edges.iter().map(|e| e.width).fold(0.0, f64::max);
    assert_eq!(picture.edges[0].width, widest);
    assert_eq!(
        picture.edges.iter().filter(|e| e.touches_selected).count(),
        2
    );
    assert!(picture.edges.iter().any(|e| !e.positive));
    assert_eq!(picture.column_labels[1].1, "cat");
    // Details: the title, then inputs strongest first, then outputs.
    let lines = node_details(&file, "1_40_1").unwrap();
    assert!(
        lines[0].starts_with("layer 1 feature 40 at \"cat\""),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("from layer 0 feature 12"), "{lines:?}");
    assert!(lines.last().unwrap().starts_with("to Output"), "{lines:?}");
    // A feature node opens its SAE's card when the page holds that SAE.
    assert_eq!(
        feature_of_node(&file, "0_12_1", &["sae-a", "sae-b"]),
        Some(("sae-a".into(), 12))
    );
    assert_eq!(feature_of_node(&file, "0_12_1", &["other"]), None);
    assert_eq!(feature_of_node(&file, "0_-1_1", &["sae-a"]), None);
}

#[test]
fn cross_layer_pictures_keep_strong_links_and_search_narrows_them() {
    use saeplay::ui::circuits::{CircuitsState, GraphKind, cross_layer_picture};
    let node = |layer: u32, feature: u32, density: f64, clerp: &str| {
        format!(
            r#"{{"node_id": "{layer}_{feature}_0", "feature": {feature}, "layer": "{layer}", "ctx_idx": 0, "feature_type": "cross layer transcoder", "jsNodeId": "", "clerp": "{clerp}", "activation": 1.0, "density": {density}}}"#
        )
    };
    let link = |a: &str, b: &str, w: f64| {
        format!(r#"{{"source": "{a}", "target": "{b}", "weight": {w}}}"#)
    };
    let json = format!(
        r#"{{"metadata": {{"slug": "c", "scan": "m", "prompt_tokens": [], "prompt": "",
            "saeplay": {{"kind": "cosine", "layers": [["0", "a"], ["1", "b"]]}}}},
          "nodes": [{}, {}, {}, {}], "links": [{}, {}, {}]}}"#,
        node(0, 3, 0.2, "animals"),
        node(0, 4, 0.01, ""),
        node(1, 7, 0.1, ""),
        node(1, 8, 0.05, ""),
        link("0_3_0", "1_7_0", 0.9),
        link("0_4_0", "1_8_0", -0.6),
        link("0_4_0", "1_7_0", 0.2),
    );
    let file = saeplay::sae::circuits::GraphFile::parse(json.as_bytes()).unwrap();
    let state = CircuitsState {
        kind: GraphKind::Cosine,
        threshold: 0.5,
        ..CircuitsState::default()
    };
    // At half the strongest weight (0.9): the 0.9 and -0.6 links, and their four features.
    let picture = cross_layer_picture(&file, &state);
    assert_eq!(picture.edges.len(), 2);
    assert_eq!(picture.nodes.len(), 4);
    assert_eq!(picture.column_labels.len(), 2);
    // Layers are columns; the denser feature is larger.
    let at = |i: usize| picture.nodes.iter().find(|n| n.index == i).unwrap();
    assert!(at(0).x < at(2).x);
    assert!(at(0).radius > at(1).radius);
    let searched = CircuitsState {
        search: "animals".into(),
        threshold: 0.0,
        ..state
    };
    let picture = cross_layer_picture(&file, &searched);
    assert_eq!(
        picture.edges.len(),
        1,
        "only links touching the feature explained as animals"
    );
    assert!(picture.nodes.iter().any(|n| n.highlighted));
}
