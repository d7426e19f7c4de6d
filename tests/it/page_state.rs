//! The page's decisions that moved out of the browser glue into `ui/` (and the engine), driven
//! natively against direct computations: steering rows, the next-token shift, the heatmap's top
//! features, the Pareto chart's geometry and the worker protocol.

use saeplay::model::readout::probabilities;
use saeplay::sae::steer::{Intervention, InterventionMode};
use saeplay::sae::train::SaeTrainingConfig;
use saeplay::ui::chart::{Frame, pareto};
use saeplay::ui::heat::Heat;
use saeplay::ui::steer::{SteerMode, SteerRow, interventions, largest_shifts};
use saeplay::ui::worker_protocol::{FromWorker, ToWorker};

fn row(feature: &str, mode: SteerMode, value: &str) -> SteerRow {
    SteerRow {
        feature: feature.into(),
        mode,
        value: value.into(),
    }
}

#[test]
fn steering_rows_become_interventions_or_name_the_bad_row() {
    let rows = [
        row("#12", SteerMode::Add, " 8 "),
        row("3", SteerMode::Clamp, "-2.5"),
        row("7", SteerMode::Ablate, ""),
    ];
    let parsed = interventions(&rows, 100).unwrap();
    assert_eq!(
        parsed,
        vec![
            Intervention {
                feature: 12,
                mode: InterventionMode::Add { strength: 8.0 }
            },
            Intervention {
                feature: 3,
                mode: InterventionMode::Clamp { value: -2.5 }
            },
            Intervention {
                feature: 7,
                mode: InterventionMode::Ablate
            },
        ]
    );
    // Each row shows the intervention it came from.
    for intervention in &parsed {
        assert_eq!(
            SteerRow::of(intervention).intervention(1, 100).unwrap(),
            *intervention
        );
    }

    let bad = |rows: &[SteerRow]| interventions(rows, 100).unwrap_err();
    assert_eq!(bad(&[]), "Add at least one feature to steer with.");
    assert_eq!(
        bad(&[rows[0].clone(), row("x1", SteerMode::Add, "8")]),
        "Steering row 2: \"x1\" is not a feature number."
    );
    assert_eq!(
        bad(&[row("5", SteerMode::Clamp, "NaN")]),
        "Steering row 1: \"NaN\" is not a number."
    );
    let out_of_range = bad(&[row("100", SteerMode::Add, "1")]);
    assert!(
        out_of_range.starts_with("Steering row 1:") && out_of_range.contains("99"),
        "{out_of_range}"
    );
    assert_eq!(SteerMode::from_name("clamp"), SteerMode::Clamp);
    for mode in SteerMode::ALL {
        assert_eq!(SteerMode::from_name(mode.name()), mode);
    }
}

#[test]
fn probabilities_are_a_stable_softmax() {
    let logits = [1.0f32, 2.0, -3.0, 0.5];
    let direct: Vec<f64> = {
        let e: Vec<f64> = logits.iter().map(|&v| f64::from(v).exp()).collect();
        let total: f64 = e.iter().sum();
        e.iter().map(|v| v / total).collect()
    };
    for (p, d) in probabilities(&logits).iter().zip(&direct) {
        assert!((p - d).abs() < 1e-6, "{p} vs {d}");
    }
    // Huge logits would overflow a naive softmax.
    let huge = probabilities(&[1000.0, 1000.0]);
    assert!((huge[0] - 0.5).abs() < 1e-12 && (huge[1] - 0.5).abs() < 1e-12);
}

#[test]
fn largest_shifts_rank_tokens_by_how_far_they_moved() {
    let before = [0.1, 0.5, 0.4, 0.0];
    let after = [0.3, 0.2, 0.4, 0.1];
    let shifts = largest_shifts(&before, &after, 3);
    let tokens: Vec<u32> = shifts.iter().map(|s| s.token).collect();
    // |deltas|: 0.2, 0.3, 0, 0.1.
    assert_eq!(tokens, vec![1, 0, 3]);
    assert!((shifts[0].delta() + 0.3).abs() < 1e-12);
    assert_eq!(shifts[1].describe(), "10.0% → 30.0% (+20.0)");
    // Ties keep token order.
    let tied = largest_shifts(&[0.0, 0.0, 0.0], &[0.1, 0.1, 0.1], 3);
    assert_eq!(tied.iter().map(|s| s.token).collect::<Vec<_>>(), [0, 1, 2]);
}

#[test]
fn heat_keeps_each_tokens_strongest_active_features() {
    // Two tokens x four features.
    let acts = [0.0, 2.0, 1.0, 0.0, 3.0, 3.0, 0.0, -1.0];
    let heat = Heat::of("sae".into(), vec!["a".into(), "b".into()], &acts, 4, 2);
    assert_eq!(heat.top[0], vec![(1, 2.0), (2, 1.0)]);
    // A tie goes to the lower feature; negative and zero activations are not active.
    assert_eq!(heat.top[1], vec![(0, 3.0), (1, 3.0)]);
    assert_eq!(heat.rows(10), vec![(0, 3.0), (1, 3.0), (2, 1.0)]);
    assert_eq!(heat.rows(1), vec![(0, 3.0)]);
    assert_eq!(heat.at(1, 1), 3.0);
    assert_eq!(heat.at(0, 3), 0.0);
}

#[test]
fn pareto_chart_places_finite_points_inside_its_frame() {
    let frame = Frame::WIDE;
    let points = [(10.0, 0.9), (40.0, 0.99), (f64::NAN, 0.5), (25.0, 0.95)];
    let chart = pareto(&points, frame).unwrap();
    // The NaN point is left out; the others keep their index.
    let indices: Vec<usize> = chart.dots.iter().map(|d| d.0).collect();
    assert_eq!(indices, vec![0, 1, 3]);
    for &(_, x, y) in &chart.dots {
        assert!(x >= frame.pad && x <= frame.width - frame.pad, "x {x}");
        assert!(y >= frame.pad && y <= frame.height - frame.pad, "y {y}");
    }
    // Lower L0 is further left; higher loss recovered is higher (smaller SVG y).
    let (a, b) = (chart.dots[0], chart.dots[1]);
    assert!(a.1 < b.1 && a.2 > b.2);
    let ticks: Vec<&str> = chart.ticks.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(ticks[0], "L0 10.00");
    assert_eq!(ticks[1], "40.00");
    assert!(pareto(&[(f64::NAN, 1.0)], frame).is_none());
}

#[test]
fn worker_messages_round_trip_as_tagged_json() {
    let processing = saeplay::model::WeightProcessing {
        center_writing_weights: true,
        ..Default::default()
    };
    let train = ToWorker::Train {
        model_base: "https://huggingface.co/openai-community/gpt2/resolve/main/".into(),
        processing,
        config: Box::new(SaeTrainingConfig::default()),
        resume: Some(saeplay::ui::worker_protocol::ResumeFrom {
            state: "{\"step\": 3}".into(),
            rows_served: 12_288,
        }),
        checkpoint_seconds: 2.5,
    };
    let json = train.to_json();
    assert!(json.contains("\"kind\":\"train\""), "{json}");
    assert!(json.contains("\"modelBase\""), "{json}");
    let back = ToWorker::from_json(&json).unwrap();
    assert_eq!(back.to_json(), json);
    match back {
        ToWorker::Train {
            config,
            processing: p,
            resume,
            checkpoint_seconds,
            ..
        } => {
            assert_eq!(*config, SaeTrainingConfig::default());
            assert_eq!(resume.map(|r| r.rows_served), Some(12_288));
            assert_eq!(checkpoint_seconds, 2.5);
            assert_eq!(
                p, processing,
                "the worker runs the model processed as the page does"
            );
        }
        other => panic!("came back as {other:?}"),
    }
    for message in [
        FromWorker::Phase {
            text: "Capturing".into(),
            fraction: 0.25,
        },
        FromWorker::Error {
            message: "bad".into(),
        },
        FromWorker::FeaturesError {
            id: 3,
            message: "gone".into(),
        },
    ] {
        let json = message.to_json();
        assert_eq!(FromWorker::from_json(&json).unwrap().to_json(), json);
    }
    let broken = FromWorker::from_json("{\"kind\":\"nonsense\"}").unwrap_err();
    assert!(broken.contains("did not arrive intact"), "{broken}");
    assert!(ToWorker::from_json("not json").is_err());
}

/// A stored (or imported, or fetched) SAE can never take a shipped SAE's id: its weights would
/// pass for the shipped one's. The shipped slot itself still receives its own files.
#[test]
fn shipped_saes_cannot_be_shadowed() {
    use saeplay::ui::lab::{Lab, Origin, SaeSlot, Summary, shipped_slots};
    const ID: &str = "blocks.0.hook_resid_pre-topk16";
    let slot = |id: &str, origin: Origin, architecture: &str| SaeSlot {
        id: id.into(),
        label: id.into(),
        origin,
        hook_name: "blocks.0.hook_resid_pre".into(),
        architecture: architecture.into(),
        d_sae: 1024,
        summary: Summary::default(),
        loaded: None,
        features: None,
    };
    let index = br#"{"saes": [{"id": "blocks.0.hook_resid_pre-topk16", "path": "saes/a/",
        "hook_name": "blocks.0.hook_resid_pre", "architecture": "topk", "d_sae": 1024}]}"#;
    let mut lab = Lab::default();
    lab.add_shipped(shipped_slots(index, "models/builtin/").unwrap());
    let shipped = lab.saes[0].origin.clone();

    let err = lab
        .insert_slot(slot(ID, Origin::Stored, "standard"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("shipped with the page"), "{err}");
    assert_eq!(lab.saes.len(), 1);
    assert_eq!(lab.saes[0].architecture, "topk");
    assert_eq!(lab.saes[0].origin, shipped);

    // Its own files (shipped origin) are taken, and a new id is simply added.
    lab.insert_slot(slot(ID, shipped.clone(), "topk")).unwrap();
    lab.insert_slot(slot("imported-1234", Origin::Stored, "standard"))
        .unwrap();
    assert_eq!(lab.saes.len(), 2);
    assert_eq!(lab.saes[0].origin, shipped);
}

/// What browser storage keeps beside a stored SAE's zip lists it again after a reload with the
/// same name, hook, architecture, width and every figure, without reading the zip; an entry
/// that says nothing usable is refused in words.
#[test]
fn stored_index_entries_list_an_sae_without_its_zip() {
    use saeplay::ui::lab::{Origin, shipped_slots, stored_slot};
    let index = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/www/models/builtin/saes/index.json"
    ))
    .unwrap();
    let shipped = shipped_slots(&index, "models/builtin/").unwrap();
    assert!(shipped.len() >= 4);
    for mut slot in shipped {
        slot.origin = Origin::Stored;
        slot.label = format!("{} trained here", slot.id);
        let entry = slot.index_entry().to_string();
        let listed = stored_slot(entry.as_bytes()).unwrap();
        assert_eq!(listed.id, slot.id);
        assert_eq!(listed.label, slot.label);
        assert_eq!(listed.origin, Origin::Stored);
        assert_eq!(
            (
                listed.hook_name.as_str(),
                listed.architecture.as_str(),
                listed.d_sae
            ),
            (
                slot.hook_name.as_str(),
                slot.architecture.as_str(),
                slot.d_sae
            )
        );
        assert_eq!(listed.summary.l0, slot.summary.l0);
        assert_eq!(listed.summary.loss_recovered, slot.summary.loss_recovered);
        assert_eq!(listed.summary.figures, slot.summary.figures);
        assert!(!listed.summary.figures.is_empty());
        assert!(listed.loaded.is_none(), "its zip is read when it is chosen");
    }
    for bad in [
        &b"{"[..],
        b"[]",
        br#"{"id": "x"}"#,
        br#"{"hook_name": "blocks.0.hook_resid_pre"}"#,
    ] {
        let error = stored_slot(bad).err().expect("refused");
        assert!(error.len() > 10, "{error}");
    }
}
