//! Every DOM id the Rust side uses, in one place. Those in [`IN_PAGE`] are written in
//! `index.html` (a native test checks each is there, so a typo cannot leave a control dead);
//! those in [`CREATED`] are given by Rust to elements it builds, and the browser tests read them.

use crate::ui::View;

// ---- Written in index.html ----

pub const BACKEND: &str = "backend";
pub const BACKEND_REASON: &str = "backend-reason";
pub const STATUS: &str = "status";
pub const MODEL_PROCESSING_TEXT: &str = "model-processing-text";
pub const PROCESSING_FOLD_LN: &str = "processing-fold-ln";
pub const PROCESSING_CENTER_WRITING_WEIGHTS: &str = "processing-center-writing-weights";
pub const PROCESSING_CENTER_UNEMBED: &str = "processing-center-unembed";
pub const PROCESSING_FOLD_VALUE_BIASES: &str = "processing-fold-value-biases";
pub const PROCESSING_APPLY: &str = "processing-apply";
pub const MODEL_FILES: &str = "model-files";
pub const STORAGE_TEXT: &str = "storage-text";
pub const STORAGE_FREE: &str = "storage-free";
pub const STORAGE_QUOTA: &str = "storage-quota";
pub const STORED_DAMAGED: &str = "stored-damaged";
pub const WORKER_BUSY: &str = "worker-busy";
pub const WORKER_BUSY_TEXT: &str = "worker-busy-text";
pub const WORKER_STOP: &str = "worker-stop";
pub const TRAIN_RESUME: &str = "train-resume";
pub const TRAIN_RESUME_TEXT: &str = "train-resume-text";
pub const TRAIN_RESUME_GO: &str = "train-resume-go";
pub const TRAIN_RESUME_DISCARD: &str = "train-resume-discard";
pub const DOWNLOAD: &str = "download";
pub const DOWNLOAD_BAR: &str = "download-bar";
pub const DOWNLOAD_TEXT: &str = "download-text";
pub const DOWNLOAD_CANCEL: &str = "download-cancel";
pub const SAE_SELECT: &str = "sae-select";
pub const SAE_STATUS: &str = "sae-status";
pub const SAE_EXPORT: &str = "sae-export";
pub const SAE_EXPORT_TEXT: &str = "sae-export-text";
pub const SAE_IMPORT: &str = "sae-import";
pub const SAE_FORGET: &str = "sae-forget";
pub const SHARE_LINK: &str = "share-link";
pub const COPY_LINK: &str = "copy-link";
pub const SHARE_STATUS: &str = "share-status";
pub const CONSENT: &str = "consent";
pub const CONSENT_TEXT: &str = "consent-text";
pub const CONSENT_YES: &str = "consent-yes";
pub const CONSENT_NO: &str = "consent-no";
pub const NOTICE: &str = "notice";
pub const ERROR: &str = "error";
pub const ERROR_TEXT: &str = "error-text";
pub const DISMISS_ERROR: &str = "dismiss-error";
pub const PROMPT: &str = "prompt";
pub const TOKENS: &str = "tokens";
pub const PREDICTIONS: &str = "predictions";
pub const HEATMAP: &str = "heatmap";
pub const TOKEN_FEATURES: &str = "token-features";
pub const TEMPERATURE: &str = "temperature";
pub const TOP_K: &str = "top-k";
pub const TOP_P: &str = "top-p";
pub const SEED: &str = "seed";
pub const MAX_TOKENS: &str = "max-tokens";
pub const GENERATE: &str = "generate";
pub const STOP: &str = "stop";
pub const GENERATION_STATUS: &str = "generation-status";
pub const OUTPUT: &str = "output";
pub const TRAIN_CORPUS: &str = "train-corpus";
pub const TRAIN_HOOK: &str = "train-hook";
pub const TRAIN_ARCH: &str = "train-arch";
pub const TRAIN_K: &str = "train-k";
pub const TRAIN_EXPANSION: &str = "train-expansion";
pub const TRAIN_TOKENS: &str = "train-tokens";
pub const TRAIN_BATCH: &str = "train-batch";
pub const TRAIN_LR: &str = "train-lr";
pub const TRAIN_SPARSITY: &str = "train-sparsity";
pub const TRAIN_SEED: &str = "train-seed";
pub const TRAIN_TEXT: &str = "train-text";
pub const TRAIN_FILE: &str = "train-file";
pub const TRAIN_FILE_STATUS: &str = "train-file-status";
pub const TRAIN_START: &str = "train-start";
pub const TRAIN_PAUSE: &str = "train-pause";
pub const TRAIN_CANCEL: &str = "train-cancel";
pub const TRAIN_PROGRESS: &str = "train-progress";
pub const TRAIN_STATUS: &str = "train-status";
pub const TRAIN_RESULT: &str = "train-result";
pub const TRAIN_CHARTS: &str = "train-charts";
pub const FEATURE_SEARCH: &str = "feature-search";
pub const FEATURE_SORT: &str = "feature-sort";
pub const FEATURE_COUNT: &str = "feature-count";
pub const FEATURE_STATUS: &str = "feature-status";
pub const FEATURE_ROWS: &str = "feature-rows";
pub const FEATURE_CARD: &str = "feature-card";
pub const STEER_ROWS: &str = "steer-rows";
pub const STEER_ADD: &str = "steer-add";
pub const STEER_RUN: &str = "steer-run";
pub const STEER_STATUS: &str = "steer-status";
pub const STEER_DEFAULT: &str = "steer-default";
pub const STEER_STEERED: &str = "steer-steered";
pub const STEER_SHIFT: &str = "steer-shift";
pub const EVAL_ROWS: &str = "eval-rows";
pub const EVAL_PARETO: &str = "eval-pareto";
pub const EVAL_DETAIL: &str = "eval-detail";
pub const EVAL_RUN: &str = "eval-run";
pub const EVAL_STATUS: &str = "eval-status";
pub const EVAL_PARETO_X: &str = "eval-pareto-x";
pub const EVAL_PARETO_Y: &str = "eval-pareto-y";

// ---- Created by Rust (feature card, evaluate detail) ----

pub const CARD_TITLE: &str = "card-title";
pub const CARD_CONCEPT: &str = "card-concept";
pub const CARD_TOP: &str = "card-top";
pub const CARD_BANDS: &str = "card-bands";
pub const CARD_HISTOGRAM: &str = "card-histogram";
pub const CARD_LENS_PROMOTED: &str = "card-lens-promoted";
pub const CARD_LENS_SUPPRESSED: &str = "card-lens-suppressed";
pub const CARD_NEAREST: &str = "card-nearest";
pub const CARD_NEURONPEDIA: &str = "card-neuronpedia";
pub const CARD_EXPLANATION: &str = "card-explanation";
pub const CARD_EXPLAIN_INPUT: &str = "card-explain-input";
pub const CARD_EXPLAIN_RUN: &str = "card-explain-run";
pub const CARD_EXPLAIN_RESULT: &str = "card-explain-result";
pub const EVAL_PROBING: &str = "eval-probing";
pub const EVAL_ABSORPTION: &str = "eval-absorption";
pub const EVAL_METRICS: &str = "eval-metrics";
pub const EVAL_DENSITY: &str = "eval-density";
pub const EVAL_CONCEPTS: &str = "eval-concepts";
pub const CIRCUIT_KIND: &str = "circuit-kind";
pub const CIRCUIT_TARGET: &str = "circuit-target";
pub const CIRCUIT_RUN: &str = "circuit-run";
pub const CIRCUIT_THRESHOLD: &str = "circuit-threshold";
pub const CIRCUIT_SEARCH: &str = "circuit-search";
pub const CIRCUIT_EXPORT: &str = "circuit-export";
pub const CIRCUIT_OPEN: &str = "circuit-open";
pub const CIRCUIT_PROMPT: &str = "circuit-prompt";
pub const CIRCUIT_STATUS: &str = "circuit-status";
pub const CIRCUIT_SAES: &str = "circuit-saes";
pub const CIRCUIT_GRAPH: &str = "circuit-graph";
pub const CIRCUIT_NODE: &str = "circuit-node";
pub const CIRCUIT_VERIFY: &str = "circuit-verify";
pub const CIRCUIT_OPEN_CARD: &str = "circuit-open-card";
pub const CIRCUIT_CHECK: &str = "circuit-check";

/// The ids `index.html` must hold (besides each view's tab and section).
pub const IN_PAGE: &[&str] = &[
    BACKEND,
    BACKEND_REASON,
    STATUS,
    MODEL_PROCESSING_TEXT,
    PROCESSING_FOLD_LN,
    PROCESSING_CENTER_WRITING_WEIGHTS,
    PROCESSING_CENTER_UNEMBED,
    PROCESSING_FOLD_VALUE_BIASES,
    PROCESSING_APPLY,
    MODEL_FILES,
    STORAGE_TEXT,
    STORAGE_FREE,
    STORAGE_QUOTA,
    STORED_DAMAGED,
    WORKER_BUSY,
    WORKER_BUSY_TEXT,
    WORKER_STOP,
    TRAIN_RESUME,
    TRAIN_RESUME_TEXT,
    TRAIN_RESUME_GO,
    TRAIN_RESUME_DISCARD,
    DOWNLOAD,
    DOWNLOAD_BAR,
    DOWNLOAD_TEXT,
    DOWNLOAD_CANCEL,
    SAE_SELECT,
    SAE_STATUS,
    SAE_EXPORT,
    SAE_EXPORT_TEXT,
    SAE_IMPORT,
    SAE_FORGET,
    SHARE_LINK,
    COPY_LINK,
    SHARE_STATUS,
    CONSENT,
    CONSENT_TEXT,
    CONSENT_YES,
    CONSENT_NO,
    NOTICE,
    ERROR,
    ERROR_TEXT,
    DISMISS_ERROR,
    PROMPT,
    TOKENS,
    PREDICTIONS,
    HEATMAP,
    TOKEN_FEATURES,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    SEED,
    MAX_TOKENS,
    GENERATE,
    STOP,
    GENERATION_STATUS,
    OUTPUT,
    TRAIN_CORPUS,
    TRAIN_HOOK,
    TRAIN_ARCH,
    TRAIN_K,
    TRAIN_EXPANSION,
    TRAIN_TOKENS,
    TRAIN_BATCH,
    TRAIN_LR,
    TRAIN_SPARSITY,
    TRAIN_SEED,
    TRAIN_TEXT,
    TRAIN_FILE,
    TRAIN_FILE_STATUS,
    TRAIN_START,
    TRAIN_PAUSE,
    TRAIN_CANCEL,
    TRAIN_PROGRESS,
    TRAIN_STATUS,
    TRAIN_RESULT,
    TRAIN_CHARTS,
    FEATURE_SEARCH,
    FEATURE_SORT,
    FEATURE_COUNT,
    FEATURE_STATUS,
    FEATURE_ROWS,
    FEATURE_CARD,
    STEER_ROWS,
    STEER_ADD,
    STEER_RUN,
    STEER_STATUS,
    STEER_DEFAULT,
    STEER_STEERED,
    STEER_SHIFT,
    EVAL_ROWS,
    EVAL_PARETO,
    EVAL_DETAIL,
    EVAL_RUN,
    EVAL_STATUS,
    EVAL_PARETO_X,
    EVAL_PARETO_Y,
    CIRCUIT_KIND,
    CIRCUIT_TARGET,
    CIRCUIT_RUN,
    CIRCUIT_THRESHOLD,
    CIRCUIT_SEARCH,
    CIRCUIT_EXPORT,
    CIRCUIT_OPEN,
    CIRCUIT_PROMPT,
    CIRCUIT_STATUS,
    CIRCUIT_SAES,
    CIRCUIT_GRAPH,
    CIRCUIT_NODE,
    CIRCUIT_VERIFY,
    CIRCUIT_OPEN_CARD,
    CIRCUIT_CHECK,
];

/// The ids Rust gives to elements it creates; not in `index.html`.
pub const CREATED: &[&str] = &[
    CARD_TITLE,
    CARD_CONCEPT,
    CARD_TOP,
    CARD_BANDS,
    CARD_HISTOGRAM,
    CARD_LENS_PROMOTED,
    CARD_LENS_SUPPRESSED,
    CARD_NEAREST,
    CARD_NEURONPEDIA,
    EVAL_METRICS,
    EVAL_DENSITY,
    EVAL_CONCEPTS,
    CARD_EXPLANATION,
    CARD_EXPLAIN_INPUT,
    CARD_EXPLAIN_RUN,
    CARD_EXPLAIN_RESULT,
    EVAL_PROBING,
    EVAL_ABSORPTION,
];

/// A view's tab button, `tab-{name}` (in `index.html`).
pub fn tab(view: View) -> String {
    format!("tab-{}", view.name())
}

/// A view's section, `view-{name}` (in `index.html`).
pub fn section(view: View) -> String {
    format!("view-{}", view.name())
}
