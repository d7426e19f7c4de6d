//! The model-training pipeline on a miniature run: tokenizer training, the loss falling,
//! reproducibility from a seed, and exact resume from a checkpoint.

use saeplay::backend::{block_on, cpu_device};
use saeplay::lm::{ModelTrainer, ModelTrainingConfig, init_weights, tokenize_stories};
use saeplay::model::Gpt2Config;
use saeplay::tinytales::stories as tinytales_stories;
use saeplay::tokenizer::{END_OF_TEXT, TextTokenizer, train_tokenizer};

fn tiny_config(steps: usize) -> ModelTrainingConfig {
    ModelTrainingConfig {
        n_layer: 1,
        n_embd: 32,
        n_head: 2,
        n_positions: 32,
        batch_size: 8,
        steps,
        learning_rate: 1e-2,
        min_learning_rate: 1e-3,
        warmup_steps: 5,
        eval_every: 10,
        eval_batches: 2,
        checkpoint_every: 10,
        seed: 7,
        train_bytes: 200_000,
        eval_bytes: 20_000,
        tokenizer_vocab: 400,
        ..ModelTrainingConfig::default()
    }
}

struct Setup {
    tokenizer: TextTokenizer,
    tokens: Vec<u32>,
    model_config: Gpt2Config,
}

fn setup(config: &ModelTrainingConfig) -> Setup {
    let stories = tinytales_stories(config.seed, config.train_bytes);
    let json = train_tokenizer(&stories, config.tokenizer_vocab).unwrap();
    let tokenizer = TextTokenizer::from_bytes(json.as_bytes()).unwrap();
    let tokens = tokenize_stories(&tokenizer, &stories).unwrap();
    let mut model_config = Gpt2Config::new(
        tokenizer.vocab_size(),
        config.n_positions,
        config.n_embd,
        config.n_layer,
        config.n_head,
    );
    model_config.eos_token_id = tokenizer.id_of(END_OF_TEXT);
    Setup {
        tokenizer,
        tokens,
        model_config,
    }
}

fn run(config: &ModelTrainingConfig, setup: &Setup, steps: usize) -> (Vec<f32>, ModelTrainer) {
    let weights = init_weights(&setup.model_config, config.seed);
    let mut trainer = ModelTrainer::new(
        config.clone(),
        setup.model_config.clone(),
        &weights,
        &cpu_device(),
    )
    .unwrap();
    let losses = (0..steps)
        .map(|_| block_on(trainer.train_step(&setup.tokens)).unwrap().loss)
        .collect();
    (losses, trainer)
}

#[test]
fn trained_tokenizer_covers_the_world_and_still_encodes_anything() {
    let config = tiny_config(1);
    let s = setup(&config);
    assert_eq!(s.tokenizer.vocab_size(), 400);
    // With 143 merges, frequent pieces already take well under one token per byte; the bytes
    // remain for anything else.
    let story = tinytales_stories(99, 2000).remove(0);
    let ids = s.tokenizer.encode(&story).unwrap().ids;
    assert!(
        (ids.len() as f64) < story.len() as f64 * 0.6,
        "{} tokens for {} bytes",
        ids.len(),
        story.len()
    );
    for text in ["Zebra ¿qué? 🦊 \u{0}", "  \t\n", "<|endoftext|>"] {
        let encoded = s.tokenizer.encode(text).unwrap();
        assert_eq!(s.tokenizer.decode(&encoded.ids).unwrap(), text);
    }
}

#[test]
fn loss_falls_and_a_seed_reproduces_the_run() {
    let config = tiny_config(60);
    let s = setup(&config);
    let (losses, trainer) = run(&config, &s, 60);
    let start: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let end: f32 = losses[55..].iter().sum::<f32>() / 5.0;
    // Uniform guessing over 400 tokens is ln(400) = 5.99 nats.
    assert!((start - (400f32).ln()).abs() < 0.5, "initial loss {start}");
    assert!(end < start - 1.0, "loss fell from {start} to {end}");
    let held_out = block_on(trainer.evaluate(&s.tokens)).unwrap();
    assert!(
        held_out < start - 0.5,
        "held-out {held_out} vs initial {start}"
    );
    let (again, _) = run(&config, &s, 60);
    assert_eq!(losses, again, "same seed, same run on the CPU backend");
}

#[test]
fn resuming_from_a_checkpoint_continues_exactly() {
    let config = tiny_config(20);
    let s = setup(&config);
    let (straight, _) = run(&config, &s, 20);
    let (first_half, trainer) = run(&config, &s, 10);
    assert_eq!(first_half[..], straight[..10]);
    let weights = block_on(trainer.weights()).unwrap();
    // Through bytes, as the CLI saves them.
    let weights = saeplay::model::Gpt2Weights::from_safetensors(
        &s.model_config,
        &weights.to_safetensors(false),
    )
    .unwrap();
    let (moments, state) = block_on(trainer.optimizer_state(Vec::new())).unwrap();
    let state: saeplay::lm::TrainerState =
        serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    let mut resumed = ModelTrainer::new(
        config.clone(),
        s.model_config.clone(),
        &weights,
        &cpu_device(),
    )
    .unwrap();
    resumed.restore(&moments, &state).unwrap();
    let second_half: Vec<f32> = (0..10)
        .map(|_| block_on(resumed.train_step(&s.tokens)).unwrap().loss)
        .collect();
    assert_eq!(second_half[..], straight[10..]);
}

#[test]
fn learning_rate_warms_up_then_follows_a_cosine() {
    let config = ModelTrainingConfig {
        steps: 110,
        warmup_steps: 10,
        learning_rate: 1.0,
        min_learning_rate: 0.1,
        ..ModelTrainingConfig::default()
    };
    assert!((config.learning_rate_at(0) - 0.1).abs() < 1e-12);
    assert!((config.learning_rate_at(9) - 1.0).abs() < 1e-12);
    assert!((config.learning_rate_at(10) - 1.0).abs() < 1e-12);
    assert!(
        (config.learning_rate_at(60) - 0.55).abs() < 1e-12,
        "halfway down the cosine"
    );
    assert!((config.learning_rate_at(110) - 0.1).abs() < 1e-12);
    let bad = ModelTrainingConfig {
        n_head: 3,
        ..ModelTrainingConfig::default()
    };
    assert!(bad.validate().is_err());
}
