//! Typed errors of the engine. Each variant's message is a plain sentence that the CLI prints as
//! its one line and the page shows as its message.

use thiserror::Error;

/// What was being done to a file when the operating system refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    Read,
    Write,
    Create,
}

impl std::fmt::Display for FileAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Create => "create",
        })
    }
}

#[derive(Debug, Error)]
pub enum SaeplayError {
    #[error("config.json is not valid: {0}")]
    Config(String),
    #[error("model weights are not a valid safetensors file: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("model weights lack the tensor `{0}`")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {found:?}, but the config needs {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` has dtype {dtype}, which saeplay cannot read (use F32, F16 or BF16)")]
    TensorDtype { name: String, dtype: String },
    #[error("tensor `{name}` holds a value that is not finite (NaN or infinity)")]
    NonFinite { name: String },
    #[error("tokenizer.json is not valid: {0}")]
    Tokenizer(String),
    #[error(
        "the tokenizer has {tokenizer} tokens but the model's vocabulary has only {model}: they do not belong together"
    )]
    VocabMismatch { tokenizer: usize, model: usize },
    #[error("token id {id} is out of range: the vocabulary has {vocab} tokens (ids 0..{vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error(
        "the input is {len} tokens long, but the model's context holds at most {max} (n_positions)"
    )]
    TooLong { len: usize, max: usize },
    #[error("the input is empty: give at least one token")]
    EmptyInput,
    #[error("unknown hook point `{name}`; valid names look like {examples}")]
    UnknownHook { name: String, examples: String },
    #[error(
        "a patch at `{hook}` has shape {found:?}, but the activation there has shape {expected:?}"
    )]
    PatchShape {
        hook: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("the SAE weights lack `{name}`, which a {architecture} SAE needs")]
    MissingSaeTensor {
        name: String,
        architecture: &'static str,
    },
    #[error("this SAE does not fit the model: {0}")]
    SaeMismatch(String),
    #[error("the SAE files are not valid: {0}")]
    SaeFile(String),
    #[error(
        "training diverged at step {step}: {what} is not finite; the last good state is kept (lower the learning rate)"
    )]
    Diverged { step: usize, what: String },
    #[error("the training checkpoint is not valid: {0}")]
    Checkpoint(String),
    #[error("a statistic could not be computed: {0}")]
    Stats(#[from] crate::sae::stats::StatsError),
    #[error(
        "the corpus gives no tokens to train on (it is empty, or holds only special tokens once they are left out)"
    )]
    EmptyCorpus,
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    #[error(
        "{what} would need about {} of memory, more than the {} it may use here; {advice}",
        crate::memory::size_text(*needed),
        crate::memory::size_text(*limit)
    )]
    TooMuchMemory {
        what: String,
        needed: u64,
        limit: u64,
        advice: String,
    },
    #[error("the compute device failed: {0}")]
    Device(String),
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        action: FileAction,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read the SAE file {}: {source}", path.display())]
    SaeFileRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write {what} as JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Gguf(#[from] crate::io::gguf::GgufError),
    /// A GGUF that parses but does not describe a model saeplay runs; the text follows "the GGUF file".
    #[error("the GGUF file {0}")]
    GgufModel(String),
    #[error("the GGUF file's tokenizer cannot be used: {0}")]
    GgufTokenizer(String),
    #[error("{0}")]
    Io(String),
    #[error("\"{id}\" is the name of an SAE shipped with the page; another SAE cannot take it")]
    ShippedName { id: String },
}

pub type Result<T, E = SaeplayError> = std::result::Result<T, E>;

impl SaeplayError {
    /// A failed file operation on `path`.
    pub fn file(
        action: FileAction,
        path: impl Into<std::path::PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::File {
            action,
            path: path.into(),
            source,
        }
    }
}
