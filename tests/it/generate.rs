//! Sampling rules and generation with the key/value cache.
use crate::common;



use saeplay::backend::{block_on, read_f32};
use saeplay::model::fixtures::TinySpec;
use saeplay::model::generate::sample;
use saeplay::model::{Generation, Hooks, LogitsFor, SamplingConfig, StopReason};
use saeplay::rng::SplitMix64;

fn config(temperature: f32, seed: u64, max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        temperature,
        top_k: None,
        top_p: None,
        seed,
        max_new_tokens,
    }
}

#[test]
fn greedy_generation_equals_argmax_of_full_forwards() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let model = &loaded.model;
    let prompt = vec![10, 20, 30];
    let (tokens, reason) = block_on(
        Generation::new(model, &prompt, config(0.0, 0, 12), Hooks::none())
            .unwrap()
            .run(),
    )
    .unwrap();
    assert_eq!(reason, StopReason::MaxTokens);
    // Without a cache: run the whole sequence each step and take the argmax.
    let mut sequence = prompt.clone();
    for _ in 0..12 {
        let out = model
            .forward(&[sequence.clone()], &Hooks::none(), LogitsFor::LastPosition)
            .unwrap();
        let logits = block_on(read_f32(out.logits)).unwrap();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
            .unwrap();
        sequence.push(best as u32);
    }
    assert_eq!(tokens, sequence[3..]);
}

#[test]
fn the_same_seed_reproduces_and_another_seed_differs() {
    let (_, loaded) = common::cpu_model(&TinySpec {
        seed: 5,
        ..TinySpec::default()
    });
    let run = |seed| {
        block_on(
            Generation::new(
                &loaded.model,
                &[1, 2, 3],
                config(1.5, seed, 24),
                Hooks::none(),
            )
            .unwrap()
            .run(),
        )
        .unwrap()
        .0
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn generation_stops_when_the_context_is_full_and_at_end_of_text() {
    let spec = TinySpec {
        n_positions: 8,
        ..TinySpec::default()
    };
    let (_, loaded) = common::cpu_model(&spec);
    let (tokens, reason) = block_on(
        Generation::new(
            &loaded.model,
            &[1, 2, 3],
            config(0.0, 0, 100),
            Hooks::none(),
        )
        .unwrap()
        .run(),
    )
    .unwrap();
    assert_eq!(reason, StopReason::ContextFull);
    // 3 prompt tokens + 5 fed back fill the 8 positions; the 6th token is sampled from position 8.
    assert_eq!(tokens.len(), 6);

    // Force end of text: a top-k of 1 on logits biased to <|endoftext|> through a steering patch.
    let eos = loaded.model.dims().eos_token_id.unwrap();
    let out = loaded
        .model
        .forward(&[vec![1]], &Hooks::none(), LogitsFor::LastPosition)
        .unwrap();
    let _ = out;
    let mut generation =
        Generation::new(&loaded.model, &[1, 2], config(0.0, 0, 100), Hooks::none()).unwrap();
    // Drive it token by token until the model emits eos or the context fills.
    loop {
        match block_on(generation.step()).unwrap() {
            saeplay::model::Step::Token(t) if t == eos => {
                assert_eq!(
                    block_on(generation.step()).unwrap(),
                    saeplay::model::Step::Done(StopReason::EndOfText)
                );
                break;
            }
            saeplay::model::Step::Token(_) => {}
            saeplay::model::Step::Done(reason) => {
                assert_eq!(reason, StopReason::ContextFull);
                break;
            }
        }
    }
}

#[test]
fn sampling_follows_softmax_with_temperature() {
    let logits = [2.0f32, 1.0, 0.0, -1.0];
    let temperature = 0.7f64;
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| (f64::from(l) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut rng = SplitMix64::new(42);
    let n = 40_000;
    let mut counts = [0usize; 4];
    let cfg = config(0.7, 0, 1);
    for _ in 0..n {
        counts[sample(&logits, &cfg, &mut rng) as usize] += 1;
    }
    for i in 0..4 {
        let expected = weights[i] / total;
        let got = counts[i] as f64 / n as f64;
        assert!(
            (got - expected).abs() < 0.01,
            "token {i}: {got} vs {expected}"
        );
    }
}

#[test]
fn top_k_and_top_p_restrict_the_candidates() {
    let logits = [3.0f32, 2.9, 2.8, 0.0, -5.0];
    let mut rng = SplitMix64::new(1);
    let top2 = SamplingConfig {
        top_k: Some(2),
        ..config(5.0, 0, 1)
    };
    let mut seen = [false; 5];
    for _ in 0..2000 {
        seen[sample(&logits, &top2, &mut rng) as usize] = true;
    }
    assert_eq!(seen, [true, true, false, false, false]);

    // Probabilities at T=1: about 0.36, 0.33, 0.30, 0.018, ...: top-p 0.6 keeps the first two.
    let top_p = SamplingConfig {
        top_p: Some(0.6),
        ..config(1.0, 0, 1)
    };
    let mut seen = [false; 5];
    for _ in 0..2000 {
        seen[sample(&logits, &top_p, &mut rng) as usize] = true;
    }
    assert_eq!(seen, [true, true, false, false, false]);

    // Greedy and top-k 1 take the argmax; ties go to the lower id.
    assert_eq!(sample(&[1.0, 5.0, 5.0], &config(0.0, 0, 1), &mut rng), 1);
    let top1 = SamplingConfig {
        top_k: Some(1),
        ..config(2.0, 0, 1)
    };
    assert_eq!(sample(&[1.0, 5.0, 4.0], &top1, &mut rng), 1);
}

#[test]
fn invalid_sampling_settings_are_refused() {
    let (_, loaded) = common::cpu_model(&TinySpec::default());
    let bad = [
        SamplingConfig {
            temperature: -1.0,
            ..config(0.0, 0, 4)
        },
        SamplingConfig {
            temperature: f32::NAN,
            ..config(0.0, 0, 4)
        },
        SamplingConfig {
            top_k: Some(0),
            ..config(1.0, 0, 4)
        },
        SamplingConfig {
            top_p: Some(0.0),
            ..config(1.0, 0, 4)
        },
        SamplingConfig {
            top_p: Some(1.5),
            ..config(1.0, 0, 4)
        },
    ];
    for cfg in bad {
        let error = Generation::new(&loaded.model, &[1], cfg.clone(), Hooks::none())
            .err()
            .expect("refused");
        assert!(error.to_string().starts_with("invalid setting"), "{error}");
    }
    assert!(Generation::new(&loaded.model, &[], config(0.0, 0, 4), Hooks::none()).is_err());
}
