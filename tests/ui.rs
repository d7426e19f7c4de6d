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
