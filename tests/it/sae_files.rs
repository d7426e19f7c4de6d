//! Moving SAEs as one file: SAELens directories zipped and unzipped, as the page exports and
//! imports them.

use std::path::Path;

use saeplay::io::zip::{read_zip, write_zip};
use saeplay::sae::saelens::SaeFiles;

const SHIPPED: &str = "www/models/builtin/saes/blocks.2.hook_resid_pre-topk16";

#[test]
fn a_zip_made_by_an_ordinary_zip_tool_reads() {
    // tests/fixtures/deflated.zip was written by Python's zipfile with ZIP_DEFLATED.
    let bytes = std::fs::read("tests/fixtures/deflated.zip").unwrap();
    let files = read_zip(&bytes).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["my_sae/hello.txt", "my_sae/empty.bin", "my_sae/bytes.bin"]
    );
    assert_eq!(
        files[0].1,
        "hello hello hello hello, zip!\n".repeat(20).into_bytes()
    );
    assert!(files[1].1.is_empty());
    let expected: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    assert_eq!(files[2].1, expected);
}

#[test]
fn an_exported_sae_imports_with_the_same_weights() {
    let files = SaeFiles::read_dir(Path::new(SHIPPED)).unwrap();
    let zip = files.to_zip("my-sae");
    let back = SaeFiles::from_named_files(vec![("my-sae.zip".into(), zip)]).unwrap();
    assert_eq!(back.cfg, files.cfg);
    assert_eq!(back.weights, files.weights);
    assert_eq!(back.sparsity, files.sparsity);
    assert_eq!(back.saeplay, files.saeplay);
    let (a, b) = (files.parse().unwrap(), back.parse().unwrap());
    assert_eq!(a.config, b.config);
    assert_eq!(a.provenance, b.provenance);

    // The directory's files picked one by one work too, in any order.
    let loose = vec![
        ("sae_weights.safetensors".to_string(), files.weights.clone()),
        ("cfg.json".to_string(), files.cfg.clone()),
    ];
    let back = SaeFiles::from_named_files(loose).unwrap();
    assert_eq!(back.weights, files.weights);
    assert!(back.sparsity.is_none());
}

#[test]
fn files_that_are_not_one_sae_are_refused_in_words() {
    let files = SaeFiles::read_dir(Path::new(SHIPPED)).unwrap();
    let error =
        |list: Vec<(String, Vec<u8>)>| SaeFiles::from_named_files(list).unwrap_err().to_string();
    let message = error(vec![("notes.txt".into(), b"hello".to_vec())]);
    assert!(message.contains("no cfg.json"), "{message}");
    let message = error(vec![("cfg.json".into(), files.cfg.clone())]);
    assert!(
        message.contains("sae_weights.safetensors is missing"),
        "{message}"
    );
    let two = write_zip(&[
        ("a/cfg.json".into(), files.cfg.clone()),
        ("a/sae_weights.safetensors".into(), files.weights.clone()),
        ("b/cfg.json".into(), files.cfg.clone()),
        ("b/sae_weights.safetensors".into(), files.weights.clone()),
    ]);
    let message = error(vec![("two.zip".into(), two)]);
    assert!(message.contains("2 SAEs"), "{message}");
    let zip = files.to_zip("x");
    let message = error(vec![("cut.zip".into(), zip[..zip.len() / 2].to_vec())]);
    assert!(message.contains("zip"), "{message}");
    // A well-formed zip whose weights are not an SAE's fails when parsed, not before.
    let wrong = write_zip(&[
        ("cfg.json".into(), files.cfg.clone()),
        ("sae_weights.safetensors".into(), b"garbage".to_vec()),
    ]);
    let parsed = SaeFiles::from_named_files(vec![("w.zip".into(), wrong)])
        .unwrap()
        .parse();
    assert!(parsed.is_err());
}

/// Text a person pasted to train on leaves the browser in an export only if they choose so: the
/// export without it keeps everything else, and says it was a text.
#[test]
fn an_export_leaves_the_training_text_out_unless_asked() {
    use saeplay::sae::saelens::Provenance;
    use saeplay::sae::store::Corpus;
    use saeplay::sae::train::SaeTrainingConfig;
    let mut files = SaeFiles::read_dir(Path::new(SHIPPED)).unwrap();
    let secret = "my private notes about a patient, 1234";
    let mut provenance: Provenance =
        serde_json::from_slice(files.saeplay.as_ref().unwrap()).unwrap();
    provenance.recipe = Some(SaeTrainingConfig {
        corpus: Corpus::Text {
            text: secret.into(),
        },
        ..SaeTrainingConfig::default()
    });
    files.saeplay = Some(serde_json::to_vec(&provenance).unwrap());
    assert_eq!(files.training_text_len(), Some(secret.len()));
    let contains = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
    assert!(contains(&files.to_zip("with")));
    let without = files.without_training_text().unwrap();
    assert!(!contains(&without.to_zip("without")));
    assert_eq!(without.training_text_len(), None);
    assert_eq!(without.weights, files.weights);
    let back = without.parse().unwrap();
    let recipe = back.provenance.recipe.unwrap();
    assert_eq!(
        recipe.corpus,
        Corpus::Text {
            text: String::new()
        }
    );
    assert_eq!(
        recipe.architecture,
        SaeTrainingConfig::default().architecture
    );
    // An SAE trained on TinyTales has no text to leave out.
    let shipped = SaeFiles::read_dir(Path::new(SHIPPED)).unwrap();
    assert_eq!(shipped.training_text_len(), None);
}
