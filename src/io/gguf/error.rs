//! Why a GGUF file cannot be used, in one plain sentence each, and how a message quotes the
//! file's own names (escaped and cut short: the file can hold anything).

use thiserror::Error;

use super::value::GgufValue;

const SUPPORTED_TYPES: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K";
/// Longest name or key quoted in a message; longer ones are cut with an ellipsis.
const MAX_SHOWN_CHARS: usize = 80;

/// Why a GGUF file (or a value in it) cannot be used. Each message is one plain sentence.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GgufError {
    #[error("this is not a GGUF file: it does not start with the bytes `GGUF`")]
    NotGguf,
    #[error(
        "this GGUF file is big-endian; saeplay reads only little-endian GGUF files, the usual kind"
    )]
    BigEndian,
    #[error(
        "this is a GGUF version 1 file, an early format saeplay cannot read; convert the model again with a current llama.cpp"
    )]
    Version1,
    #[error(
        "this GGUF file has version {0}, which saeplay cannot read (it reads versions 2 and 3)"
    )]
    UnsupportedVersion(u32),
    #[error("the GGUF file ends early: {0} is cut off")]
    Truncated(String),
    #[error(
        "the GGUF file is cut off or damaged: {what} declares {count} elements, more than the {remaining} bytes left in the file could hold"
    )]
    CountTooLarge {
        what: String,
        count: u64,
        remaining: usize,
    },
    #[error("the GGUF file declares {count} {what}, more than saeplay accepts ({limit})")]
    TooMany {
        what: &'static str,
        count: u64,
        limit: u64,
    },
    #[error("{0} in the GGUF file is not valid UTF-8 text")]
    InvalidUtf8(String),
    #[error(
        "metadata key `{key}` has value type {type_id}, which GGUF does not define; the file is damaged or from a newer GGUF version"
    )]
    UnknownValueType { key: String, type_id: u32 },
    #[error("metadata key `{0}` holds an array of arrays, which saeplay does not read")]
    NestedArray(String),
    #[error("metadata key `{0}` appears twice in the GGUF file")]
    DuplicateKey(String),
    #[error("tensor `{0}` appears twice in the GGUF file")]
    DuplicateTensor(String),
    #[error(
        "metadata key `general.alignment` is {0}, but an alignment must be a non-zero power of two"
    )]
    BadAlignment(u64),
    #[error("tensor `{tensor}` has {n_dims} dimensions, but GGUF tensors have at most 4")]
    TooManyDims { tensor: String, n_dims: u32 },
    #[error(
        "tensor `{tensor}` has ggml type {id}, which saeplay does not know; the file is damaged or uses a newer llama.cpp type"
    )]
    UnknownType { tensor: String, id: u32 },
    #[error(
        "tensor `{tensor}` is stored as {type_name}, which saeplay cannot read yet (it reads {list})",
        list = SUPPORTED_TYPES
    )]
    UnsupportedType {
        tensor: String,
        type_name: &'static str,
    },
    #[error(
        "tensor `{tensor}` is stored as {type_name} with rows of {row} values, which is not a whole number of {block}-value blocks"
    )]
    PartialBlock {
        tensor: String,
        type_name: &'static str,
        row: usize,
        block: usize,
    },
    #[error("tensor `{tensor}` with dimensions {dims:?} is larger than this platform can address")]
    TooLarge { tensor: String, dims: Vec<u64> },
    #[error(
        "tensor `{tensor}` starts at data offset {offset}, which is not a multiple of the file's alignment ({alignment})"
    )]
    Misaligned {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error(
        "tensor `{tensor}` needs bytes {start}..{end}, but the file has only {len} bytes; it may be cut off"
    )]
    DataOutOfRange {
        tensor: String,
        start: u128,
        end: u128,
        len: usize,
    },
    #[error("the GGUF file has no tensor named `{0}`")]
    NoSuchTensor(String),
    #[error("metadata key `{key}` holds {found}, but saeplay expected {expected}")]
    WrongValueType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("metadata key `{key}` holds the value {value}, but saeplay expected {expected}")]
    ValueOutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("there is not enough memory to unpack tensor `{tensor}` ({bytes} bytes as f32)")]
    OutOfMemory { tensor: String, bytes: u128 },
}

/// A name or key from the file as a message may quote it: control characters escaped and
/// cut short, since the file can hold anything.
pub(super) fn shown(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(MAX_SHOWN_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(MAX_SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

pub(super) fn wrong(key: &str, expected: &'static str, found: &GgufValue) -> GgufError {
    GgufError::WrongValueType {
        key: shown(key),
        expected,
        found: found.type_name(),
    }
}

pub(super) fn out_of_range(key: &str, value: i128, expected: &'static str) -> GgufError {
    GgufError::ValueOutOfRange {
        key: shown(key),
        value: value.to_string(),
        expected,
    }
}
