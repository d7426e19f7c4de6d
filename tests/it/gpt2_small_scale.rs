//! GPT-2 small's real shapes (12 layers, 768 wide, 50,257 tokens, 1,024 positions; random weights
//! the project generates, in the Hugging Face layout) with a 24,576-latent SAE, as a person uses
//! them: load, predict, the heatmap's features, a feature card with its logit lens (taken in
//! blocks: as one matrix it would be 4.9 GB), and steering. Checked against direct computation
//! where one is cheap.

use crate::common::sae_reference::{config, random_weights};
use saeplay::backend::{block_on, read_f32};
use saeplay::model::fixtures::{TinySpec, tiny_checkpoint};
use saeplay::model::{Generation, HookPoint, Hooks, LogitsFor, SamplingConfig, Step};
use saeplay::sae::Architecture;
use saeplay::sae::features::{
    ScanConfig, feature_cards, feature_overview, feature_report, logit_lens, scan, summarise_scan,
};
use saeplay::sae::steer::{Intervention, InterventionMode, intervention_patch};
use saeplay::sae::store::Window;

const GPT2_SMALL: TinySpec = TinySpec::GPT2_SMALL;

#[test]
#[ignore = "slow: GPT-2 small's shapes"]
fn gpt2_small_shapes_with_a_24576_latent_sae() {
    let files = tiny_checkpoint(&GPT2_SMALL);
    assert!(
        files.shards[0].len() > 490_000_000,
        "124M parameters in f32"
    );
    let host = files.parse().unwrap();
    let c = host.dims();
    assert_eq!(
        (c.n_layers, c.d_model, c.d_vocab, c.n_ctx),
        (12, 768, 50_257, 1024)
    );
    assert_eq!(c.parameter_count, 124_439_808);
    let loaded = host.upload(&saeplay::backend::cpu_device()).unwrap();
    let model = &loaded.model;
    let device = model.device().clone();

    // Predict.
    let ids: Vec<u32> = "Once upon a time".bytes().map(u32::from).collect();
    let out = model
        .forward(
            std::slice::from_ref(&ids),
            &Hooks::none(),
            LogitsFor::LastPosition,
        )
        .unwrap();
    let logits = block_on(read_f32(out.logits)).unwrap();
    assert_eq!(logits.len(), 50_257);
    assert!(logits.iter().all(|v| v.is_finite()));

    // A 24,576-latent TopK SAE at blocks.8.hook_resid_pre (32x, as gpt2-small-res-jb).
    let hook = HookPoint::ResidPre(8);
    let mut sae_config = config(Architecture::TopK { k: 32 }, 768, 24_576);
    sae_config.hook_name = hook.to_string();
    let weights = random_weights(&sae_config, 3);
    let sae = saeplay::sae::Sae::from_host(sae_config, &weights, &device).unwrap();

    // The heatmap: features of every prompt token.
    let out = model
        .forward(
            std::slice::from_ref(&ids),
            &Hooks::capture([hook]),
            LogitsFor::LastPosition,
        )
        .unwrap();
    let x = out
        .activation(hook)
        .unwrap()
        .clone()
        .reshape([ids.len(), 768]);
    let acts = block_on(read_f32(block_on(sae.encode_async(x)).unwrap())).unwrap();
    for row in acts.chunks(24_576) {
        assert!(row.iter().filter(|&&v| v > 0.0).count() <= 32);
    }

    // A card: scan a few windows, then the report for two features.
    let windows: Vec<Window> = (0..2)
        .map(|w| Window {
            ids: (0..32).map(|i| ((i * 31 + w * 7) % 257) as u32).collect(),
            concepts: vec![Default::default(); 32],
        })
        .collect();
    let scanned = block_on(scan(model, &sae, hook, &windows, 1)).unwrap();
    let chosen = [5usize, 24_000];
    let tokenizer = loaded.tokenizer().unwrap();
    let report = block_on(feature_report(
        model,
        tokenizer,
        &sae,
        &scanned,
        Some(&chosen),
        &ScanConfig::default(),
    ))
    .unwrap();
    assert_eq!(report.features.len(), 2);
    // The list's overview covers every feature cheaply; a card made alone equals the report's.
    let summary = summarise_scan(&scanned).unwrap();
    let overview = feature_overview(tokenizer, &scanned, &summary, &ScanConfig::default()).unwrap();
    assert_eq!(overview.len(), 24_576);
    assert_eq!(overview[5].density, report.features[0].density);
    let alone = block_on(feature_cards(
        model,
        tokenizer,
        &sae,
        &scanned,
        &summary,
        &[24_000],
        &ScanConfig::default(),
    ))
    .unwrap();
    let (a, b) = (&alone[0], &report.features[1]);
    assert_eq!(
        (a.index, a.density, &a.top_examples, &a.nearest),
        (b.index, b.density, &b.top_examples, &b.nearest)
    );
    for (x, y) in a.promoted.iter().zip(&b.promoted) {
        assert_eq!(x.id, y.id);
        assert!(
            (x.value - y.value).abs() < 1e-4,
            "the lens in one block or many"
        );
    }
    // The logit lens of feature 24,000 against the direct dot products with the unembedding.
    let w_u = block_on(read_f32(model.unembed().clone())).unwrap(); // [768, vocab]
    let row = &weights["W_dec"].values[24_000 * 768..24_001 * 768];
    let direct: Vec<f64> = (0..50_257)
        .map(|j| {
            (0..768)
                .map(|i| f64::from(row[i]) * f64::from(w_u[i * 50_257 + j]))
                .sum()
        })
        .collect();
    let best = (0..50_257)
        .max_by(|&a, &b| direct[a].total_cmp(&direct[b]))
        .unwrap();
    let card = &report.features[1];
    assert_eq!(card.index, 24_000);
    assert_eq!(card.promoted[0].id as usize, best);
    assert!((f64::from(card.promoted[0].value) - direct[best]).abs() < 1e-3);
    // Blocks of rows give the same lens as one row at a time.
    let one = block_on(logit_lens(model, &sae, &[24_000], 5)).unwrap();
    let many = block_on(logit_lens(
        model,
        &sae,
        &(23_000..24_001).collect::<Vec<_>>(),
        5,
    ))
    .unwrap();
    let lens_ids = |list: &[(usize, f32)]| list.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(lens_ids(&one[0].0), lens_ids(&many[1000].0));
    assert_eq!(lens_ids(&one[0].1), lens_ids(&many[1000].1));
    for (a, b) in one[0].0.iter().zip(&many[1000].0) {
        assert!((a.1 - b.1).abs() < 1e-4);
    }

    // Steering: add feature 5 at the hook; the continuation runs and the hook moves by its row.
    let patch = intervention_patch(
        &sae,
        &[Intervention {
            feature: 5,
            mode: InterventionMode::Add { strength: 8.0 },
        }],
    )
    .unwrap();
    let sampling = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 3,
        ..SamplingConfig::default()
    };
    let mut generation =
        Generation::new(model, &ids, sampling, Hooks::none().with_patch(hook, patch)).unwrap();
    while let Step::Token(_) = block_on(generation.step()).unwrap() {}
    assert_eq!(generation.produced().len(), 3);
}
