//! GGUF, llama.cpp's checkpoint format (versions 2 and 3), read from bytes in memory: metadata,
//! tensor infos, and tensors unpacked to f32.
//!
//! The file is untrusted and the page has a 32-bit address space where a panic kills it, so every
//! count and length is checked against the bytes that remain before anything is allocated, all
//! arithmetic on sizes is checked, and every refusal is a [`GgufError`] that says in one sentence
//! what is wrong. Block layouts and arithmetic follow ggml-quants.c's `dequantize_row_*` (same
//! operations in the same order), so unpacked values match llama.cpp's bit for bit.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use half::{bf16, f16};
use thiserror::Error;

/// Alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most tensors a file may declare (real checkpoints have hundreds to a few thousand).
pub const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata keys a file may declare (real checkpoints have tens).
pub const MAX_METADATA_KEYS: u64 = 1 << 16;
/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

const MAGIC: [u8; 4] = *b"GGUF";
const ALIGNMENT_KEY: &str = "general.alignment";
const SUPPORTED_TYPES: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K";
/// Smallest possible metadata entry: an empty key (8), a value type (4), a one-byte value.
const MIN_KV_BYTES: usize = 13;
/// Smallest possible tensor info: an empty name (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: usize = 24;
/// Longest name or key quoted in a message; longer ones are cut with an ellipsis.
const MAX_SHOWN_CHARS: usize = 80;

// GGUF value types, as numbered in the file.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

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

/// One metadata value, typed as the file stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: one element type throughout (arrays of arrays are refused).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl GgufValue {
    /// What the value is, for messages ("a string", "an array of 32-bit floats").
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "an unsigned 8-bit integer",
            Self::I8(_) => "a signed 8-bit integer",
            Self::U16(_) => "an unsigned 16-bit integer",
            Self::I16(_) => "a signed 16-bit integer",
            Self::U32(_) => "an unsigned 32-bit integer",
            Self::I32(_) => "a signed 32-bit integer",
            Self::F32(_) => "a 32-bit float",
            Self::Bool(_) => "a boolean",
            Self::String(_) => "a string",
            Self::Array(a) => a.type_name(),
            Self::U64(_) => "an unsigned 64-bit integer",
            Self::I64(_) => "a signed 64-bit integer",
            Self::F64(_) => "a 64-bit float",
        }
    }

    fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => T_U8,
            Self::I8(_) => T_I8,
            Self::U16(_) => T_U16,
            Self::I16(_) => T_I16,
            Self::U32(_) => T_U32,
            Self::I32(_) => T_I32,
            Self::F32(_) => T_F32,
            Self::Bool(_) => T_BOOL,
            Self::String(_) => T_STRING,
            Self::Array(_) => T_ARRAY,
            Self::U64(_) => T_U64,
            Self::I64(_) => T_I64,
            Self::F64(_) => T_F64,
        }
    }

    /// The value as a signed integer wide enough for every GGUF integer type, if it is one.
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => v.into(),
            Self::I64(v) => v.into(),
            _ => return None,
        })
    }
}

impl GgufArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the array holds, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "an array of unsigned 8-bit integers",
            Self::I8(_) => "an array of signed 8-bit integers",
            Self::U16(_) => "an array of unsigned 16-bit integers",
            Self::I16(_) => "an array of signed 16-bit integers",
            Self::U32(_) => "an array of unsigned 32-bit integers",
            Self::I32(_) => "an array of signed 32-bit integers",
            Self::F32(_) => "an array of 32-bit floats",
            Self::Bool(_) => "an array of booleans",
            Self::String(_) => "an array of strings",
            Self::U64(_) => "an array of unsigned 64-bit integers",
            Self::I64(_) => "an array of signed 64-bit integers",
            Self::F64(_) => "an array of 64-bit floats",
        }
    }

    fn element_type_id(&self) -> u32 {
        match self {
            Self::U8(_) => T_U8,
            Self::I8(_) => T_I8,
            Self::U16(_) => T_U16,
            Self::I16(_) => T_I16,
            Self::U32(_) => T_U32,
            Self::I32(_) => T_I32,
            Self::F32(_) => T_F32,
            Self::Bool(_) => T_BOOL,
            Self::String(_) => T_STRING,
            Self::U64(_) => T_U64,
            Self::I64(_) => T_I64,
            Self::F64(_) => T_F64,
        }
    }
}

/// ggml tensor types, numbered as in ggml.h. Knowing every type's block size lets the reader
/// check a whole file even where saeplay cannot unpack some tensors.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
}

/// Every known type: (type, id, name, values per block, bytes per block).
const GGML_TYPES: [(GgmlType, u32, &str, usize, usize); 34] = [
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", 256, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    (GgmlType::NVFP4, 40, "NVFP4", 64, 36),
    (GgmlType::Q1_0, 41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// The type numbered `id` in ggml.h, if it is one saeplay knows (ids of removed types are not).
    pub fn from_id(id: u32) -> Option<Self> {
        GGML_TYPES.iter().find(|t| t.1 == id).map(|t| t.0)
    }

    fn row(self) -> (GgmlType, u32, &'static str, usize, usize) {
        // Every variant is in the table; the fallback only keeps this total.
        GGML_TYPES
            .iter()
            .copied()
            .find(|t| t.0 == self)
            .unwrap_or((self, u32::MAX, "?", 1, 0))
    }

    /// The number ggml.h gives the type.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// ggml's name for the type ("Q4_K").
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Values per block (1 for plain types, 32 or 256 for most quantised ones).
    pub fn block_size(self) -> usize {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.row().4
    }

    /// Whether [`GgufFile::dequantize`] can unpack tensors of this type.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            Self::F32
                | Self::F16
                | Self::BF16
                | Self::Q8_0
                | Self::Q4_0
                | Self::Q4_1
                | Self::Q4_K
                | Self::Q5_K
                | Self::Q6_K
        )
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one tensor lies and how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Sizes in GGUF (`ne`) order: `dims[0]` varies fastest, so a weight with dims `[in, out]`
    /// is row-major `[out][in]`. See [`GgufTensorInfo::shape`] for the row-major order.
    pub dims: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section, as stored.
    pub offset: u64,
    /// Where the tensor's bytes lie in the whole file.
    pub byte_range: Range<usize>,
    /// Number of values (the product of `dims`; 1 for a tensor without dimensions).
    pub element_count: usize,
}

impl GgufTensorInfo {
    /// Sizes in row-major order (slowest first): `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed GGUF file: metadata and tensor infos, borrowing the bytes for tensor data.
#[derive(Debug, Clone)]
pub struct GgufFile<'a> {
    bytes: &'a [u8],
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, GgufValue)>,
    key_index: BTreeMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: BTreeMap<String, usize>,
}

impl<'a> GgufFile<'a> {
    /// Parse and check the header, metadata and tensor infos; tensor data is unpacked on demand.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GgufError> {
        let mut r = Reader { bytes, pos: 0 };
        let header_cut = || GgufError::Truncated("the header".into());
        let magic = match r.array::<4>() {
            Some(magic) => magic,
            None if MAGIC.starts_with(bytes) => return Err(header_cut()),
            None => return Err(GgufError::NotGguf),
        };
        if magic != MAGIC {
            return Err(GgufError::NotGguf);
        }
        let version = r.u32().ok_or_else(header_cut)?;
        match version {
            2 | 3 => {}
            1 => return Err(GgufError::Version1),
            // A big-endian writer stores the magic as usual but swaps the version.
            v if v & 0xFFFF == 0 && matches!(v.swap_bytes(), 1..=3) => {
                return Err(GgufError::BigEndian);
            }
            v => return Err(GgufError::UnsupportedVersion(v)),
        }
        let tensor_count = r.u64().ok_or_else(header_cut)?;
        let kv_count = r.u64().ok_or_else(header_cut)?;
        let tensor_count = check_count(tensor_count, MAX_TENSORS, "tensors")?;
        let kv_count = check_count(kv_count, MAX_METADATA_KEYS, "metadata keys")?;
        // Reserve only what the remaining bytes could hold: a damaged count then ends in a plain
        // "cut off" refusal at the first missing entry instead of a large allocation.
        let mut metadata = Vec::with_capacity(kv_count.min(r.remaining() / MIN_KV_BYTES));
        let mut key_index = BTreeMap::new();
        for i in 0..kv_count {
            let raw = r
                .string()
                .ok_or_else(|| GgufError::Truncated(format!("metadata key {i}")))?;
            let key = text(raw, || format!("metadata key {i}"))?;
            if key_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey(shown(&key)));
            }
            let type_id = r.u32().ok_or_else(|| value_cut(&key))?;
            let value = read_value(&mut r, type_id, &key)?;
            metadata.push((key, value));
        }

        let alignment = match key_index.get(ALIGNMENT_KEY).and_then(|&i| metadata.get(i)) {
            None => DEFAULT_ALIGNMENT,
            Some((key, value)) => {
                let alignment = value_u64(value, key)?;
                if !alignment.is_power_of_two() {
                    return Err(GgufError::BadAlignment(alignment));
                }
                alignment
            }
        };

        let mut tensors =
            Vec::with_capacity(tensor_count.min(r.remaining() / MIN_TENSOR_INFO_BYTES));
        let mut tensor_index = BTreeMap::new();
        for i in 0..tensor_count {
            let raw = r
                .string()
                .ok_or_else(|| GgufError::Truncated(format!("tensor info {i}")))?;
            let name = text(raw, || format!("the name of tensor info {i}"))?;
            let cut = || GgufError::Truncated(format!("tensor info {i} (`{}`)", shown(&name)));
            let n_dims = r.u32().ok_or_else(cut)?;
            if n_dims > MAX_DIMS {
                return Err(GgufError::TooManyDims {
                    tensor: shown(&name),
                    n_dims,
                });
            }
            let mut raw_dims = Vec::with_capacity(MAX_DIMS as usize);
            for _ in 0..n_dims {
                raw_dims.push(r.u64().ok_or_else(cut)?);
            }
            let type_id = r.u32().ok_or_else(cut)?;
            let offset = r.u64().ok_or_else(cut)?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownType {
                tensor: shown(&name),
                id: type_id,
            })?;
            let (dims, element_count, byte_len) = tensor_size(&name, &raw_dims, ggml_type)?;
            if offset % alignment != 0 {
                return Err(GgufError::Misaligned {
                    tensor: shown(&name),
                    offset,
                    alignment,
                });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor(shown(&name)));
            }
            tensors.push(GgufTensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                // Placeholder length until the data section's start is known.
                byte_range: 0..byte_len,
                element_count,
            });
        }

        // u128 keeps every sum below exact: positions and offsets are at most 2^64 each.
        let end_of_infos = r.pos as u128;
        let align = u128::from(alignment);
        let data_offset = end_of_infos.div_ceil(align) * align;
        for info in &mut tensors {
            let start = data_offset + u128::from(info.offset);
            let end = start + info.byte_range.len() as u128;
            let range = match (usize::try_from(start), usize::try_from(end)) {
                (Ok(s), Ok(e)) if e <= bytes.len() => s..e,
                _ => {
                    return Err(GgufError::DataOutOfRange {
                        tensor: shown(&info.name),
                        start,
                        end,
                        len: bytes.len(),
                    });
                }
            };
            info.byte_range = range;
        }

        Ok(Self {
            bytes,
            version,
            alignment,
            data_offset: u64::try_from(data_offset).unwrap_or(u64::MAX),
            metadata,
            key_index,
            tensors,
            tensor_index,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of every tensor offset.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts in the file (tensor offsets count from here).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &GgufValue)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        let &i = self.key_index.get(key)?;
        self.metadata.get(i).map(|(_, v)| v)
    }

    /// An integer of any width and signedness as u64; negative values are refused.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.get(key).map(|v| value_u64(v, key)).transpose()
    }

    /// An integer of any width and signedness as i64; values beyond i64 are refused.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, GgufError> {
        self.get(key)
            .map(|v| {
                let n = v.as_i128().ok_or_else(|| wrong(key, "an integer", v))?;
                i64::try_from(n).map_err(|_| out_of_range(key, n, "a 64-bit signed integer"))
            })
            .transpose()
    }

    /// Any integer or float as f64 (hyperparameters are stored as either).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.get(key)
            .map(|v| match *v {
                GgufValue::F32(x) => Ok(f64::from(x)),
                GgufValue::F64(x) => Ok(x),
                _ => match v.as_i128() {
                    // Integers read as hyperparameters are far below 2^53, where f64 is exact.
                    Some(n) => Ok(n as f64),
                    None => Err(wrong(key, "a number", v)),
                },
            })
            .transpose()
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.get(key)
            .map(|v| match v {
                GgufValue::String(s) => Ok(s.as_str()),
                _ => Err(wrong(key, "a string", v)),
            })
            .transpose()
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get(key)
            .map(|v| match *v {
                GgufValue::Bool(b) => Ok(b),
                _ => Err(wrong(key, "a boolean", v)),
            })
            .transpose()
    }

    /// An array of strings (a vocabulary, merges), borrowed without copying.
    pub fn get_string_array(&self, key: &str) -> Result<Option<&[String]>, GgufError> {
        self.get(key)
            .map(|v| match v {
                GgufValue::Array(GgufArray::String(s)) => Ok(s.as_slice()),
                _ => Err(wrong(key, "an array of strings", v)),
            })
            .transpose()
    }

    /// An array of integers of any width (token types are stored as i32) as i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let GgufValue::Array(a) = v else {
            return Err(wrong(key, "an array of integers", v));
        };
        Ok(Some(match a {
            GgufArray::U8(xs) => xs.iter().map(|&x| x.into()).collect(),
            GgufArray::I8(xs) => xs.iter().map(|&x| x.into()).collect(),
            GgufArray::U16(xs) => xs.iter().map(|&x| x.into()).collect(),
            GgufArray::I16(xs) => xs.iter().map(|&x| x.into()).collect(),
            GgufArray::U32(xs) => xs.iter().map(|&x| x.into()).collect(),
            GgufArray::I32(xs) => xs.iter().map(|&x| x.into()).collect(),
            GgufArray::I64(xs) => xs.clone(),
            GgufArray::U64(xs) => xs
                .iter()
                .map(|&x| {
                    i64::try_from(x)
                        .map_err(|_| out_of_range(key, x.into(), "a 64-bit signed integer"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(wrong(key, "an array of integers", v)),
        }))
    }

    /// An array of floats (token scores) as f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        self.get(key)
            .map(|v| match v {
                GgufValue::Array(GgufArray::F32(xs)) => Ok(xs.clone()),
                // Rounding to the nearest f32 is what a reader of scores wants.
                GgufValue::Array(GgufArray::F64(xs)) => Ok(xs.iter().map(|&x| x as f32).collect()),
                _ => Err(wrong(key, "an array of floats", v)),
            })
            .transpose()
    }

    /// Every tensor's info, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of the tensor called `name`, if any.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        let &i = self.tensor_index.get(name)?;
        self.tensors.get(i)
    }

    /// The tensor's stored bytes, still in its ggml type.
    pub fn tensor_data(&self, name: &str) -> Result<&'a [u8], GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::NoSuchTensor(shown(name)))?;
        self.bytes
            .get(info.byte_range.clone())
            .ok_or_else(|| GgufError::DataOutOfRange {
                tensor: shown(name),
                start: info.byte_range.start as u128,
                end: info.byte_range.end as u128,
                len: self.bytes.len(),
            })
    }

    /// The tensor's values as f32 in row-major order (`dims[0]` fastest), unpacked exactly as
    /// llama.cpp's `dequantize_row_*` does.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let data = self.tensor_data(name)?;
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::NoSuchTensor(shown(name)))?;
        if !info.ggml_type.is_supported() {
            return Err(GgufError::UnsupportedType {
                tensor: shown(name),
                type_name: info.ggml_type.name(),
            });
        }
        let n = info.element_count;
        let mut out = Vec::new();
        // A failed allocation would abort the page; asking first turns it into a message.
        out.try_reserve_exact(n)
            .map_err(|_| GgufError::OutOfMemory {
                tensor: shown(name),
                bytes: n as u128 * 4,
            })?;
        out.resize(n, 0.0);
        decode(info.ggml_type, data, &mut out);
        Ok(out)
    }
}

/// Check a declared count against a fixed limit (which also keeps it inside usize).
fn check_count(count: u64, limit: u64, what: &'static str) -> Result<usize, GgufError> {
    usize::try_from(count)
        .ok()
        .filter(|_| count <= limit)
        .ok_or(GgufError::TooMany { what, count, limit })
}

/// Dimensions as usize, the element count and the byte length of a tensor, all checked.
fn tensor_size(
    name: &str,
    raw_dims: &[u64],
    ty: GgmlType,
) -> Result<(Vec<usize>, usize, usize), GgufError> {
    let too_large = || GgufError::TooLarge {
        tensor: shown(name),
        dims: raw_dims.to_vec(),
    };
    let dims = raw_dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(too_large)?;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_large)?;
    let row = dims.first().copied().unwrap_or(1);
    let block = ty.block_size();
    if row % block != 0 {
        return Err(GgufError::PartialBlock {
            tensor: shown(name),
            type_name: ty.name(),
            row,
            block,
        });
    }
    let rows = count.checked_div(row).unwrap_or(0);
    let byte_len = (row / block)
        .checked_mul(ty.type_size())
        .and_then(|b| b.checked_mul(rows))
        .ok_or_else(too_large)?;
    Ok((dims, count, byte_len))
}

/// A cursor over the file that never reads past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A GGUF string's bytes: a u64 length, then that many bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        self.take(len)
    }
}

fn value_cut(key: &str) -> GgufError {
    GgufError::Truncated(format!("the value of metadata key `{}`", shown(key)))
}

fn read_value(r: &mut Reader<'_>, type_id: u32, key: &str) -> Result<GgufValue, GgufError> {
    let cut = || value_cut(key);
    Ok(match type_id {
        T_U8 => GgufValue::U8(u8::from_le_bytes(r.array().ok_or_else(cut)?)),
        T_I8 => GgufValue::I8(i8::from_le_bytes(r.array().ok_or_else(cut)?)),
        T_U16 => GgufValue::U16(u16::from_le_bytes(r.array().ok_or_else(cut)?)),
        T_I16 => GgufValue::I16(i16::from_le_bytes(r.array().ok_or_else(cut)?)),
        T_U32 => GgufValue::U32(u32::from_le_bytes(r.array().ok_or_else(cut)?)),
        T_I32 => GgufValue::I32(i32::from_le_bytes(r.array().ok_or_else(cut)?)),
        T_F32 => GgufValue::F32(f32::from_le_bytes(r.array().ok_or_else(cut)?)),
        // Any non-zero byte is true, as in C.
        T_BOOL => GgufValue::Bool(r.array::<1>().ok_or_else(cut)? != [0]),
        T_STRING => {
            let raw = r.string().ok_or_else(cut)?;
            GgufValue::String(text(raw, || {
                format!("the value of metadata key `{}`", shown(key))
            })?)
        }
        T_ARRAY => GgufValue::Array(read_array(r, key)?),
        T_U64 => GgufValue::U64(u64::from_le_bytes(r.array().ok_or_else(cut)?)),
        T_I64 => GgufValue::I64(i64::from_le_bytes(r.array().ok_or_else(cut)?)),
        T_F64 => GgufValue::F64(f64::from_le_bytes(r.array().ok_or_else(cut)?)),
        _ => {
            return Err(GgufError::UnknownValueType {
                key: shown(key),
                type_id,
            });
        }
    })
}

/// Fixed-size elements decoded from little-endian chunks of `N` bytes.
fn elements<const N: usize, T>(raw: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    raw.as_chunks::<N>().0.iter().map(|c| from(*c)).collect()
}

fn read_array(r: &mut Reader<'_>, key: &str) -> Result<GgufArray, GgufError> {
    let cut = || value_cut(key);
    let element_type = r.u32().ok_or_else(cut)?;
    let len = r.u64().ok_or_else(cut)?;
    // Strings take at least their 8-byte length; other elements their fixed size.
    let min_size: usize = match element_type {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 | T_STRING => 8,
        T_ARRAY => return Err(GgufError::NestedArray(shown(key))),
        _ => {
            return Err(GgufError::UnknownValueType {
                key: shown(key),
                type_id: element_type,
            });
        }
    };
    let remaining = r.remaining();
    let count = usize::try_from(len)
        .ok()
        .filter(|&n| n <= remaining / min_size)
        .ok_or_else(|| GgufError::CountTooLarge {
            what: format!("metadata key `{}`", shown(key)),
            count: len,
            remaining,
        })?;
    if element_type == T_STRING {
        // Capacity grows with what is actually read, never straight from the declared count.
        let mut out = Vec::with_capacity(count.min(1 << 16));
        for j in 0..count {
            let raw = r.string().ok_or_else(|| {
                GgufError::Truncated(format!("string {j} of metadata key `{}`", shown(key)))
            })?;
            out.push(text(raw, || {
                format!("string {j} of metadata key `{}`", shown(key))
            })?);
        }
        return Ok(GgufArray::String(out));
    }
    let raw = count
        .checked_mul(min_size)
        .and_then(|n| r.take(n))
        .ok_or_else(cut)?;
    Ok(match element_type {
        T_U8 => GgufArray::U8(raw.to_vec()),
        T_I8 => GgufArray::I8(elements(raw, i8::from_le_bytes)),
        T_BOOL => GgufArray::Bool(raw.iter().map(|&b| b != 0).collect()),
        T_U16 => GgufArray::U16(elements(raw, u16::from_le_bytes)),
        T_I16 => GgufArray::I16(elements(raw, i16::from_le_bytes)),
        T_U32 => GgufArray::U32(elements(raw, u32::from_le_bytes)),
        T_I32 => GgufArray::I32(elements(raw, i32::from_le_bytes)),
        T_F32 => GgufArray::F32(elements(raw, f32::from_le_bytes)),
        T_U64 => GgufArray::U64(elements(raw, u64::from_le_bytes)),
        T_I64 => GgufArray::I64(elements(raw, i64::from_le_bytes)),
        _ => GgufArray::F64(elements(raw, f64::from_le_bytes)),
    })
}

/// Bytes as UTF-8 text; `what` names them in the refusal.
fn text(raw: &[u8], what: impl FnOnce() -> String) -> Result<String, GgufError> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| GgufError::InvalidUtf8(what()))
}

/// A name or key from the file as a message may quote it: control characters escaped and
/// cut short, since the file can hold anything.
fn shown(s: &str) -> String {
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

fn wrong(key: &str, expected: &'static str, found: &GgufValue) -> GgufError {
    GgufError::WrongValueType {
        key: shown(key),
        expected,
        found: found.type_name(),
    }
}

fn out_of_range(key: &str, value: i128, expected: &'static str) -> GgufError {
    GgufError::ValueOutOfRange {
        key: shown(key),
        value: value.to_string(),
        expected,
    }
}

fn value_u64(v: &GgufValue, key: &str) -> Result<u64, GgufError> {
    let n = v
        .as_i128()
        .ok_or_else(|| wrong(key, "a non-negative integer", v))?;
    u64::try_from(n).map_err(|_| out_of_range(key, n, "a non-negative integer"))
}

// ---------------------------------------------------------------------------------------------
// Unpacking. `data` and `out` have the lengths the tensor info implies (checked at parse time);
// were they ever shorter, the zips below would stop early rather than index past an end.

/// Unpack `data`, whole blocks of type `ty`, into `out` (one value per slot), as
/// [`GgufFile::dequantize`] does. `None` when the type is not one saeplay unpacks or the lengths
/// do not match whole blocks.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Option<()> {
    let (block, size) = (ty.block_size(), ty.type_size());
    let fits = ty.is_supported()
        && out.len().is_multiple_of(block)
        && out.len() / block * size == data.len();
    fits.then(|| decode(ty, data, out))
}

fn decode(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (y, b) in out.iter_mut().zip(data.as_chunks::<4>().0) {
                *y = f32::from_le_bytes(*b);
            }
        }
        GgmlType::F16 => {
            for (y, b) in out.iter_mut().zip(data.as_chunks::<2>().0) {
                *y = f16::from_le_bytes(*b).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (y, b) in out.iter_mut().zip(data.as_chunks::<2>().0) {
                *y = bf16::from_le_bytes(*b).to_f32();
            }
        }
        GgmlType::Q4_0 => blocks::<18, 32>(data, out, q4_0),
        GgmlType::Q4_1 => blocks::<20, 32>(data, out, q4_1),
        GgmlType::Q8_0 => blocks::<34, 32>(data, out, q8_0),
        GgmlType::Q4_K => blocks::<144, 256>(data, out, q4_k),
        GgmlType::Q5_K => blocks::<176, 256>(data, out, q5_k),
        GgmlType::Q6_K => blocks::<210, 256>(data, out, q6_k),
        // Refused before decoding; nothing to write.
        _ => {}
    }
}

/// Unpack `B`-byte blocks of `Q` values each with `f`.
fn blocks<const B: usize, const Q: usize>(
    data: &[u8],
    out: &mut [f32],
    f: fn(&[u8; B], &mut [f32; Q]),
) {
    for (b, y) in data
        .as_chunks::<B>()
        .0
        .iter()
        .zip(out.as_chunks_mut::<Q>().0)
    {
        f(b, y);
    }
}

fn half_at(lo: u8, hi: u8) -> f32 {
    f16::from_le_bytes([lo, hi]).to_f32()
}

/// `len` bytes of a block from `at` (empty if out of range, which the block sizes rule out).
fn part(block: &[u8], at: usize, len: usize) -> &[u8] {
    block.get(at..at.saturating_add(len)).unwrap_or_default()
}

/// Q4_0: f16 d, then 16 bytes; low nibbles are values 0..16, high nibbles 16..32; x = (q-8)*d.
fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let [d0, d1, ..] = *b;
    let d = half_at(d0, d1);
    let (lo, hi) = y.split_at_mut_checked(16).unwrap_or_default();
    for ((a, z), &q) in lo.iter_mut().zip(hi).zip(part(b, 2, 16)) {
        *a = f32::from(i16::from(q & 0x0F) - 8) * d;
        *z = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

/// Q4_1: f16 d, f16 m, then 16 bytes of nibbles as in Q4_0; x = q*d + m.
fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let [d0, d1, m0, m1, ..] = *b;
    let (d, m) = (half_at(d0, d1), half_at(m0, m1));
    let (lo, hi) = y.split_at_mut_checked(16).unwrap_or_default();
    for ((a, z), &q) in lo.iter_mut().zip(hi).zip(part(b, 4, 16)) {
        *a = f32::from(q & 0x0F) * d + m;
        *z = f32::from(q >> 4) * d + m;
    }
}

/// Q8_0: f16 d, then 32 signed bytes; x = q*d.
fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let [d0, d1, ..] = *b;
    let d = half_at(d0, d1);
    for (a, &q) in y.iter_mut().zip(part(b, 2, 32)) {
        *a = f32::from(i8::from_le_bytes([q])) * d;
    }
}

/// The eight 6-bit (scale, min) pairs packed into 12 bytes (ggml's `get_scale_min_k4`): pairs
/// 0..4 sit in the low six bits of bytes 0..4 and 4..8; pairs 4..8 take their low four bits from
/// bytes 8..12 and their top two from the spare high bits of bytes 0..8.
fn scales_mins_k4(s: &[u8; 12]) -> [(u8, u8); 8] {
    [
        (s[0] & 63, s[4] & 63),
        (s[1] & 63, s[5] & 63),
        (s[2] & 63, s[6] & 63),
        (s[3] & 63, s[7] & 63),
        (
            (s[8] & 0x0F) | ((s[0] >> 6) << 4),
            (s[8] >> 4) | ((s[4] >> 6) << 4),
        ),
        (
            (s[9] & 0x0F) | ((s[1] >> 6) << 4),
            (s[9] >> 4) | ((s[5] >> 6) << 4),
        ),
        (
            (s[10] & 0x0F) | ((s[2] >> 6) << 4),
            (s[10] >> 4) | ((s[6] >> 6) << 4),
        ),
        (
            (s[11] & 0x0F) | ((s[3] >> 6) << 4),
            (s[11] >> 4) | ((s[7] >> 6) << 4),
        ),
    ]
}

/// The 12 scale bytes of a Q4_K or Q5_K block (bytes 4..16).
fn k4_scales(b: &[u8]) -> [u8; 12] {
    part(b, 4, 12).try_into().unwrap_or([0; 12])
}

/// Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles. Sub-block s (32 values) uses
/// the low (even s) or high (odd s) nibbles of bytes 32*(s/2).. ; x = d*sc*q - dmin*m.
fn q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let [d0, d1, m0, m1, ..] = *b;
    let (d, min) = (half_at(d0, d1), half_at(m0, m1));
    let qs = part(b, 16, 128);
    let pairs = scales_mins_k4(&k4_scales(b));
    for (s, (out, &(sc, m))) in y.chunks_exact_mut(32).zip(&pairs).enumerate() {
        let (ds, dm) = (d * f32::from(sc), min * f32::from(m));
        let shift = 4 * (s % 2);
        for (o, &q) in out.iter_mut().zip(part(qs, 32 * (s / 2), 32)) {
            *o = ds * f32::from((q >> shift) & 0x0F) - dm;
        }
    }
}

/// Q5_K: as Q4_K with 32 more bytes (after the scales) whose bit s adds 16 to value l of
/// sub-block s.
fn q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let [d0, d1, m0, m1, ..] = *b;
    let (d, min) = (half_at(d0, d1), half_at(m0, m1));
    let qh = part(b, 16, 32);
    let qs = part(b, 48, 128);
    let pairs = scales_mins_k4(&k4_scales(b));
    for (s, (out, &(sc, m))) in y.chunks_exact_mut(32).zip(&pairs).enumerate() {
        let (ds, dm) = (d * f32::from(sc), min * f32::from(m));
        let shift = 4 * (s % 2);
        for ((o, &q), &h) in out.iter_mut().zip(part(qs, 32 * (s / 2), 32)).zip(qh) {
            let q = ((q >> shift) & 0x0F) | (((h >> s) & 1) << 4);
            *o = ds * f32::from(q) - dm;
        }
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 bytes of high bit pairs, 16 signed scales, f16 d. Values
/// come in two halves of 128, each four groups g of 32; x = d*sc*(q-32) with one scale per 16.
fn q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let [.., d0, d1] = *b;
    let d = half_at(d0, d1);
    let ql = part(b, 0, 128);
    let qh = part(b, 128, 64);
    let scales = part(b, 192, 16);
    for (t, (out, &sc)) in y.chunks_exact_mut(16).zip(scales).enumerate() {
        let (half, g, l0) = (t / 8, (t % 8) / 2, 16 * (t % 2));
        let low = part(ql, 64 * half + 32 * (g % 2) + l0, 16);
        let high = part(qh, 32 * half + l0, 16);
        let (low_shift, high_shift) = (4 * (g / 2), 2 * g);
        let ds = d * f32::from(i8::from_le_bytes([sc]));
        for ((o, &a), &h) in out.iter_mut().zip(low).zip(high) {
            let q = ((a >> low_shift) & 0x0F) | (((h >> high_shift) & 3) << 4);
            *o = ds * f32::from(i16::from(q) - 32);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing, for tests that craft checkpoints.

/// Largest alignment the writer pads to (larger values would only bloat test files).
const MAX_WRITER_ALIGNMENT: usize = 1 << 16;

/// A GGUF version 3 file with these metadata entries and tensors (dims in GGUF `ne` order, data
/// already in the given type). Tensors are aligned to `general.alignment` when the metadata
/// sets it to a power of two up to 65536, else to 32 (the key is written as given either way).
/// Nothing else is checked, so tests can write broken files.
pub fn write_gguf(
    metadata: &[(&str, GgufValue)],
    tensors: &[(&str, &[usize], GgmlType, &[u8])],
) -> Vec<u8> {
    let alignment = metadata
        .iter()
        .find(|(k, _)| *k == ALIGNMENT_KEY)
        .and_then(|(_, v)| v.as_i128())
        .and_then(|a| usize::try_from(a).ok())
        .filter(|&a| a.is_power_of_two() && a <= MAX_WRITER_ALIGNMENT)
        .unwrap_or(DEFAULT_ALIGNMENT as usize);
    let pad = |out: &mut Vec<u8>| out.resize(out.len().next_multiple_of(alignment), 0);

    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        out.extend_from_slice(&value.type_id().to_le_bytes());
        put_value(&mut out, value);
    }
    let mut offset = 0usize;
    for (name, dims, ty, data) in tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for &d in *dims {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&ty.id().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + data.len()).next_multiple_of(alignment);
    }
    pad(&mut out);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
        pad(&mut out);
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Array(a) => {
            out.extend_from_slice(&a.element_type_id().to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            match a {
                GgufArray::U8(xs) => out.extend_from_slice(xs),
                GgufArray::I8(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
                GgufArray::U16(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
                GgufArray::I16(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
                GgufArray::U32(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
                GgufArray::I32(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
                GgufArray::F32(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
                GgufArray::Bool(xs) => xs.iter().for_each(|&x| out.push(u8::from(x))),
                GgufArray::String(xs) => xs.iter().for_each(|x| put_str(out, x)),
                GgufArray::U64(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
                GgufArray::I64(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
                GgufArray::F64(xs) => xs.iter().for_each(|x| out.extend(x.to_le_bytes())),
            }
        }
    }
}

/// f32 values as F32 tensor data.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// f32 values rounded to F16 tensor data.
pub fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect()
}

/// f32 values rounded to BF16 tensor data.
pub fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64: a fixed, dependency-free stream of test bytes.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    /// The f32 an f16-stored scale stands for.
    fn hv(x: f32) -> f32 {
        f16::from_f32(x).to_f32()
    }

    fn one_tensor(ty: GgmlType, dims: &[usize], data: &[u8]) -> Vec<f32> {
        let bytes = write_gguf(&[], &[("t", dims, ty, data)]);
        let file = GgufFile::parse(&bytes).expect("valid file");
        file.dequantize("t").expect("supported type")
    }

    fn assert_same(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "value {i}: got {g}, want {w}");
        }
    }

    #[test]
    fn q4_0_matches_formula() {
        let mut rng = Rng(1);
        let mut data = Vec::new();
        let mut want = Vec::new();
        for d in [0.5f32, -1.25, 3.0e-3] {
            // Values 0..16 in both halves, then random; the stored d is an f16.
            let v: Vec<u8> = (0..32)
                .map(|j| if j < 16 { j as u8 } else { rng.below(16) as u8 })
                .collect();
            data.extend(h(d));
            data.extend((0..16).map(|j| v[j] | (v[j + 16] << 4)));
            want.extend(v.iter().map(|&q| (q as f32 - 8.0) * hv(d)));
        }
        assert_same(&one_tensor(GgmlType::Q4_0, &[32, 3], &data), &want);
    }

    #[test]
    fn q4_1_matches_formula() {
        let mut rng = Rng(2);
        let mut data = Vec::new();
        let mut want = Vec::new();
        for (d, m) in [(0.25f32, -1.0f32), (-0.75, 2.5), (1.0e-2, 0.0)] {
            let v: Vec<u8> = (0..32)
                .map(|j| {
                    if j < 16 {
                        15 - j as u8
                    } else {
                        rng.below(16) as u8
                    }
                })
                .collect();
            data.extend(h(d));
            data.extend(h(m));
            data.extend((0..16).map(|j| v[j] | (v[j + 16] << 4)));
            want.extend(v.iter().map(|&q| q as f32 * hv(d) + hv(m)));
        }
        assert_same(&one_tensor(GgmlType::Q4_1, &[96], &data), &want);
    }

    #[test]
    fn q8_0_matches_formula() {
        let mut rng = Rng(3);
        let mut data = Vec::new();
        let mut want = Vec::new();
        for d in [0.5f32, -2.0, 7.0e-4] {
            let v: Vec<i8> = (0..32)
                .map(|j| match j {
                    0 => -128,
                    1 => 127,
                    2 => -1,
                    3 => 0,
                    _ => rng.next() as i8,
                })
                .collect();
            data.extend(h(d));
            data.extend(v.iter().map(|&q| q as u8));
            want.extend(v.iter().map(|&q| q as f32 * hv(d)));
        }
        assert_same(&one_tensor(GgmlType::Q8_0, &[32, 3], &data), &want);
    }

    /// Pack eight 6-bit scales and mins the way ggml's `quantize_row_q4_K_ref` does.
    fn pack_k4_scales(sc: &[u8; 8], mn: &[u8; 8]) -> [u8; 12] {
        let mut s = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                s[j] = sc[j];
                s[j + 4] = mn[j];
            } else {
                s[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
                s[j - 4] |= (sc[j] >> 4) << 6;
                s[j] |= (mn[j] >> 4) << 6;
            }
        }
        s
    }

    /// Scales and mins that use every bit, including the high two bits of pairs 4..8.
    const K_SCALES: [[u8; 8]; 2] = [
        [1, 63, 32, 17, 45, 8, 0, 60],
        [63, 0, 5, 40, 33, 62, 16, 47],
    ];
    const K_MINS: [[u8; 8]; 2] = [
        [0, 63, 33, 5, 48, 12, 31, 62],
        [7, 63, 0, 50, 1, 32, 63, 20],
    ];

    #[test]
    fn q4_k_matches_formula() {
        let mut rng = Rng(4);
        let mut data = Vec::new();
        let mut want = Vec::new();
        for (k, (d, dmin)) in [(0.125f32, 0.5f32), (-0.0625, 0.03)]
            .into_iter()
            .enumerate()
        {
            let (sc, mn) = (K_SCALES[k], K_MINS[k]);
            let l: Vec<u8> = (0..256)
                .map(|i| if i < 16 { i as u8 } else { rng.below(16) as u8 })
                .collect();
            data.extend(h(d));
            data.extend(h(dmin));
            data.extend(pack_k4_scales(&sc, &mn));
            for n in 0..4 {
                data.extend((0..32).map(|j| l[64 * n + j] | (l[64 * n + j + 32] << 4)));
            }
            for (i, &q) in l.iter().enumerate() {
                let s = i / 32;
                want.push(hv(d) * sc[s] as f32 * q as f32 - hv(dmin) * mn[s] as f32);
            }
        }
        assert_eq!(data.len(), 2 * 144);
        assert_same(&one_tensor(GgmlType::Q4_K, &[512], &data), &want);
    }

    #[test]
    fn q5_k_matches_formula() {
        let mut rng = Rng(5);
        let mut data = Vec::new();
        let mut want = Vec::new();
        for (k, (d, dmin)) in [(0.25f32, 0.125f32), (-0.01, 1.5)].into_iter().enumerate() {
            let (sc, mn) = (K_SCALES[k], K_MINS[k]);
            let l: Vec<u8> = (0..256)
                .map(|i| if i < 32 { i as u8 } else { rng.below(32) as u8 })
                .collect();
            // ggml's packing: low nibbles as in Q4_K, the fifth bit of the value at 64n+j
            // (and 64n+j+32) in bit 2n (and 2n+1) of qh[j].
            let mut qh = [0u8; 32];
            let mut qs = [0u8; 128];
            for n in 0..4 {
                for j in 0..32 {
                    let (l1, l2) = (l[64 * n + j], l[64 * n + j + 32]);
                    qh[j] |= ((l1 >> 4) << (2 * n)) | ((l2 >> 4) << (2 * n + 1));
                    qs[32 * n + j] = (l1 & 0xF) | ((l2 & 0xF) << 4);
                }
            }
            data.extend(h(d));
            data.extend(h(dmin));
            data.extend(pack_k4_scales(&sc, &mn));
            data.extend(qh);
            data.extend(qs);
            for (i, &q) in l.iter().enumerate() {
                let s = i / 32;
                want.push(hv(d) * sc[s] as f32 * q as f32 - hv(dmin) * mn[s] as f32);
            }
        }
        assert_eq!(data.len(), 2 * 176);
        assert_same(&one_tensor(GgmlType::Q5_K, &[256, 2], &data), &want);
    }

    #[test]
    fn q6_k_matches_formula() {
        let mut rng = Rng(6);
        let mut data = Vec::new();
        let mut want = Vec::new();
        for d in [0.0625f32, -0.3] {
            let l: Vec<u8> = (0..256)
                .map(|i| if i < 64 { i as u8 } else { rng.below(64) as u8 })
                .collect();
            let sc: [i8; 16] = [
                -128, 127, -1, 0, 1, 64, -64, 33, -33, 2, 100, -100, 5, -7, 90, -90,
            ];
            // ggml's packing (quantize_row_q6_K_ref).
            let mut ql = [0u8; 128];
            let mut qh = [0u8; 64];
            for n in 0..2 {
                for j in 0..32 {
                    let b = 128 * n;
                    let (a, bb, c, e) = (l[b + j], l[b + j + 32], l[b + j + 64], l[b + j + 96]);
                    ql[64 * n + j] = (a & 0xF) | ((c & 0xF) << 4);
                    ql[64 * n + j + 32] = (bb & 0xF) | ((e & 0xF) << 4);
                    qh[32 * n + j] =
                        (a >> 4) | ((bb >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
                }
            }
            data.extend(ql);
            data.extend(qh);
            data.extend(sc.iter().map(|&s| s as u8));
            data.extend(h(d));
            for (i, &q) in l.iter().enumerate() {
                want.push(hv(d) * sc[i / 16] as f32 * (q as f32 - 32.0));
            }
        }
        assert_eq!(data.len(), 2 * 210);
        assert_same(&one_tensor(GgmlType::Q6_K, &[256, 1, 2], &data), &want);
    }

    fn every_value() -> Vec<(&'static str, GgufValue)> {
        vec![
            ("u8", GgufValue::U8(200)),
            ("i8", GgufValue::I8(-100)),
            ("u16", GgufValue::U16(60_000)),
            ("i16", GgufValue::I16(-30_000)),
            ("u32", GgufValue::U32(4_000_000_000)),
            ("i32", GgufValue::I32(-2_000_000_000)),
            ("f32", GgufValue::F32(1.0e-5)),
            ("bool", GgufValue::Bool(true)),
            ("string", GgufValue::String("héllo, wörld ✓".into())),
            ("u64", GgufValue::U64(u64::MAX)),
            ("i64", GgufValue::I64(i64::MIN)),
            ("f64", GgufValue::F64(-1.0e300)),
            ("a.u8", GgufValue::Array(GgufArray::U8(vec![0, 1, 255]))),
            ("a.i8", GgufValue::Array(GgufArray::I8(vec![-128, 127]))),
            ("a.u16", GgufValue::Array(GgufArray::U16(vec![1, 65535]))),
            ("a.i16", GgufValue::Array(GgufArray::I16(vec![-1, 2]))),
            ("a.u32", GgufValue::Array(GgufArray::U32(vec![7]))),
            (
                "a.i32",
                GgufValue::Array(GgufArray::I32(vec![1, 2, 3, 6, -1])),
            ),
            ("a.f32", GgufValue::Array(GgufArray::F32(vec![0.5, -0.25]))),
            (
                "a.bool",
                GgufValue::Array(GgufArray::Bool(vec![true, false])),
            ),
            (
                "a.string",
                GgufValue::Array(GgufArray::String(vec![
                    "a".into(),
                    String::new(),
                    "Ġthe".into(),
                ])),
            ),
            ("a.u64", GgufValue::Array(GgufArray::U64(vec![u64::MAX, 0]))),
            ("a.i64", GgufValue::Array(GgufArray::I64(vec![i64::MIN]))),
            ("a.f64", GgufValue::Array(GgufArray::F64(vec![1.5, 2.5]))),
            ("a.empty", GgufValue::Array(GgufArray::F32(Vec::new()))),
        ]
    }

    /// A small valid file with every value type and a tensor of every supported type (plus one
    /// unsupported); the quantised blocks hold arbitrary bytes.
    fn sample_file() -> Vec<u8> {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let q8: Vec<u8> = h(0.5).into_iter().chain((0..32).map(|i| i as u8)).collect();
        let mut tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)> = vec![
            (
                "f32".into(),
                vec![3, 2],
                GgmlType::F32,
                f32_bytes(&[1.0, -2.0, 3.5, 0.0, -0.0, 1e-3]),
            ),
            (
                "f16".into(),
                vec![5],
                GgmlType::F16,
                f16_bytes(&[1.0, -2.0, 0.5, 65504.0, -0.125]),
            ),
            (
                "bf16".into(),
                vec![1, 3],
                GgmlType::BF16,
                bf16_bytes(&[1.0, -3.0, 256.0]),
            ),
            ("q8".into(), vec![32], GgmlType::Q8_0, q8),
            ("q2k".into(), vec![256], GgmlType::Q2_K, vec![0; 84]),
        ];
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            let data = (0..ty.type_size()).map(|_| rng.next() as u8).collect();
            tensors.push((ty.name().to_lowercase(), vec![ty.block_size()], ty, data));
        }
        let tensors: Vec<(&str, &[usize], GgmlType, &[u8])> = tensors
            .iter()
            .map(|(n, d, t, b)| (n.as_str(), d.as_slice(), *t, b.as_slice()))
            .collect();
        write_gguf(&every_value(), &tensors)
    }

    #[test]
    fn round_trip_metadata_and_tensors() {
        let bytes = sample_file();
        let file = GgufFile::parse(&bytes).unwrap();
        assert_eq!(file.version(), 3);
        assert_eq!(file.alignment(), 32);
        assert_eq!(file.data_offset() % 32, 0);
        let want = every_value();
        let got: Vec<(&str, &GgufValue)> = file.metadata().collect();
        assert_eq!(got.len(), want.len());
        for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
            assert_eq!(gk, wk);
            assert_eq!(*gv, wv);
        }
        let names: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "f32", "f16", "bf16", "q8", "q2k", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"
            ]
        );
        for t in file.tensors() {
            assert_eq!(t.byte_range.start % 32, 0, "{} is aligned", t.name);
            assert_eq!(t.offset % 32, 0);
        }
        let info = file.tensor_info("f32").unwrap();
        assert_eq!(info.dims, [3, 2]);
        assert_eq!(info.shape(), [2, 3]);
        assert_eq!(info.element_count, 6);
        assert_eq!(info.ggml_type, GgmlType::F32);
        assert_eq!(info.byte_range.len(), 24);
        assert_same(
            &file.dequantize("f32").unwrap(),
            &[1.0, -2.0, 3.5, 0.0, -0.0, 1e-3],
        );
        assert_same(
            &file.dequantize("f16").unwrap(),
            &[1.0, -2.0, 0.5, 65504.0, -0.125],
        );
        assert_same(&file.dequantize("bf16").unwrap(), &[1.0, -3.0, 256.0]);
        let q8: Vec<f32> = (0..32).map(|i| i as f32 * 0.5).collect();
        assert_same(&file.dequantize("q8").unwrap(), &q8);
        assert_eq!(file.tensor_data("q2k").unwrap().len(), 84);
        assert!(file.tensor_info("nope").is_none());
        assert!(matches!(
            file.dequantize("nope"),
            Err(GgufError::NoSuchTensor(_))
        ));
    }

    #[test]
    fn custom_alignment_is_honoured() {
        let meta = [("general.alignment", GgufValue::U32(64))];
        let a = f32_bytes(&[1.0; 3]);
        let b = f32_bytes(&[2.0; 5]);
        let bytes = write_gguf(
            &meta,
            &[
                ("a", &[3], GgmlType::F32, &a),
                ("b", &[5], GgmlType::F32, &b),
            ],
        );
        let file = GgufFile::parse(&bytes).unwrap();
        assert_eq!(file.alignment(), 64);
        assert_eq!(file.data_offset() % 64, 0);
        assert_eq!(file.tensor_info("b").unwrap().offset, 64);
        assert_same(&file.dequantize("b").unwrap(), &[2.0; 5]);
    }

    #[test]
    fn accessors_convert_and_refuse() {
        let bytes = sample_file();
        let file = GgufFile::parse(&bytes).unwrap();
        assert_eq!(file.get_u64("u8").unwrap(), Some(200));
        assert_eq!(file.get_u64("u32").unwrap(), Some(4_000_000_000));
        assert_eq!(file.get_u64("u64").unwrap(), Some(u64::MAX));
        assert_eq!(file.get_u64("missing").unwrap(), None);
        assert!(matches!(
            file.get_u64("i8"),
            Err(GgufError::ValueOutOfRange { .. })
        ));
        assert!(matches!(
            file.get_u64("f32"),
            Err(GgufError::WrongValueType { .. })
        ));
        assert_eq!(file.get_i64("i64").unwrap(), Some(i64::MIN));
        assert!(file.get_i64("u64").is_err());
        assert_eq!(file.get_f64("f32").unwrap(), Some(f64::from(1.0e-5f32)));
        assert_eq!(file.get_f64("i16").unwrap(), Some(-30_000.0));
        assert_eq!(file.get_f64("f64").unwrap(), Some(-1.0e300));
        assert!(file.get_f64("string").is_err());
        assert_eq!(file.get_str("string").unwrap(), Some("héllo, wörld ✓"));
        assert!(file.get_str("u8").is_err());
        assert_eq!(file.get_bool("bool").unwrap(), Some(true));
        assert!(file.get_bool("u8").is_err());
        let strings = file.get_string_array("a.string").unwrap().unwrap();
        assert_eq!(strings, ["a", "", "Ġthe"]);
        let err = file.get_string_array("a.i32").unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata key `a.i32` holds an array of signed 32-bit integers, but saeplay expected an array of strings"
        );
        assert_eq!(
            file.get_i64_array("a.i32").unwrap(),
            Some(vec![1, 2, 3, 6, -1])
        );
        assert_eq!(file.get_i64_array("a.u8").unwrap(), Some(vec![0, 1, 255]));
        assert!(file.get_i64_array("a.u64").is_err());
        assert!(file.get_i64_array("a.f32").is_err());
        assert!(file.get_i64_array("u8").is_err());
        assert_eq!(file.get_f32_array("a.f32").unwrap(), Some(vec![0.5, -0.25]));
        assert_eq!(file.get_f32_array("a.f64").unwrap(), Some(vec![1.5, 2.5]));
        assert!(file.get_f32_array("a.string").is_err());
        assert!(matches!(file.get("a.empty"), Some(GgufValue::Array(a)) if a.is_empty()));
    }

    #[test]
    fn unsupported_type_is_named() {
        let q2k = vec![0u8; 84];
        let bytes = write_gguf(
            &[],
            &[("blk.0.attn_q.weight", &[256], GgmlType::Q2_K, &q2k)],
        );
        let file = GgufFile::parse(&bytes).unwrap();
        assert_eq!(
            file.dequantize("blk.0.attn_q.weight")
                .unwrap_err()
                .to_string(),
            "tensor `blk.0.attn_q.weight` is stored as Q2_K, which saeplay cannot read yet \
             (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K)"
        );
    }

    #[test]
    fn type_table_is_consistent() {
        for id in 0..64 {
            if let Some(t) = GgmlType::from_id(id) {
                assert_eq!(t.id(), id);
                assert!(t.block_size() > 0 && t.type_size() > 0);
            }
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(31), None);
        assert_eq!(GgmlType::Q6_K.to_string(), "Q6_K");
    }

    #[test]
    fn truncated_anywhere_is_refused() {
        let bytes = sample_file();
        let file = GgufFile::parse(&bytes).unwrap();
        let data_end = file
            .tensors()
            .iter()
            .map(|t| t.byte_range.end)
            .max()
            .unwrap();
        for cut in 0..data_end {
            let err = GgufFile::parse(&bytes[..cut]).expect_err("a cut file is refused");
            assert!(!err.to_string().is_empty());
        }
        // Only the padding after the last tensor may go.
        for cut in data_end..=bytes.len() {
            assert!(GgufFile::parse(&bytes[..cut]).is_ok());
        }
        // Without tensors the file ends with its last value (a non-zero byte here), then padding.
        let mut meta = every_value();
        meta.push(("last", GgufValue::U8(7)));
        let meta_only = write_gguf(&meta, &[]);
        let end = meta_only.iter().rposition(|&b| b == 7).unwrap() + 1;
        for cut in 0..end {
            assert!(GgufFile::parse(&meta_only[..cut]).is_err());
        }
        assert!(GgufFile::parse(&meta_only[..end]).is_ok());
        let one = write_gguf(&[], &[("w", &[8], GgmlType::F32, &f32_bytes(&[0.0; 8]))]);
        assert_eq!(
            GgufFile::parse(&one[..24 + 9 + 2]).unwrap_err().to_string(),
            "the GGUF file ends early: tensor info 0 (`w`) is cut off"
        );
        assert_eq!(
            GgufFile::parse(&bytes[..30]).unwrap_err().to_string(),
            "the GGUF file ends early: metadata key 0 is cut off"
        );
    }

    /// A header followed by whatever a test appends.
    fn raw(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend(version.to_le_bytes());
        v.extend(tensors.to_le_bytes());
        v.extend(kvs.to_le_bytes());
        v
    }

    fn push_str(v: &mut Vec<u8>, s: &[u8]) {
        v.extend((s.len() as u64).to_le_bytes());
        v.extend(s);
    }

    fn parse_err(bytes: &[u8]) -> GgufError {
        let err = GgufFile::parse(bytes).expect_err("refused");
        assert!(!err.to_string().is_empty());
        err
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(parse_err(b"GGML\x03\0\0\0"), GgufError::NotGguf);
        assert_eq!(parse_err(b"PK"), GgufError::NotGguf);
        assert!(matches!(parse_err(b""), GgufError::Truncated(_)));
        assert!(matches!(parse_err(b"GG"), GgufError::Truncated(_)));
        assert_eq!(parse_err(&raw(1, 0, 0)), GgufError::Version1);
        assert_eq!(parse_err(&raw(4, 0, 0)), GgufError::UnsupportedVersion(4));
        assert_eq!(parse_err(&raw(0x0300_0000, 0, 0)), GgufError::BigEndian);
        assert!(parse_err(&raw(1, 0, 0)).to_string().contains("version 1"));
        assert!(GgufFile::parse(&raw(2, 0, 0)).is_ok());
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        assert!(matches!(
            parse_err(&raw(3, 1 << 60, 0)),
            GgufError::TooMany { .. }
        ));
        assert!(matches!(
            parse_err(&raw(3, 0, u64::MAX)),
            GgufError::TooMany { .. }
        ));
        assert!(matches!(
            parse_err(&raw(3, 1000, 0)),
            GgufError::Truncated(_)
        ));
        assert!(matches!(
            parse_err(&raw(3, 0, 1000)),
            GgufError::Truncated(_)
        ));

        // An array of 2^60 strings, and of 2^60 bytes, in a tiny file.
        for element in [T_STRING, T_U8, T_F64] {
            let mut v = raw(3, 0, 1);
            push_str(&mut v, b"tokenizer.ggml.tokens");
            v.extend(T_ARRAY.to_le_bytes());
            v.extend(element.to_le_bytes());
            v.extend((1u64 << 60).to_le_bytes());
            v.extend([0u8; 64]);
            let err = parse_err(&v);
            assert!(matches!(err, GgufError::CountTooLarge { count, .. } if count == 1 << 60));
        }

        // A key whose declared length is far past the end.
        let mut v = raw(3, 0, 1);
        v.extend((1u64 << 60).to_le_bytes());
        v.extend([b'a'; 40]);
        assert!(matches!(parse_err(&v), GgufError::Truncated(_)));

        // A tensor whose dimensions multiply past usize.
        let mut v = raw(3, 1, 0);
        push_str(&mut v, b"w");
        v.extend(2u32.to_le_bytes());
        v.extend((1u64 << 40).to_le_bytes());
        v.extend((1u64 << 40).to_le_bytes());
        v.extend(0u32.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        assert!(matches!(parse_err(&v), GgufError::TooLarge { .. }));

        // One huge dimension: its bytes overflow, or lie past the end.
        for dim in [u64::MAX, 1 << 61, 1 << 30] {
            let mut v = raw(3, 1, 0);
            push_str(&mut v, b"w");
            v.extend(1u32.to_le_bytes());
            v.extend(dim.to_le_bytes());
            v.extend(0u32.to_le_bytes());
            v.extend(0u64.to_le_bytes());
            let err = parse_err(&v);
            assert!(
                matches!(
                    err,
                    GgufError::TooLarge { .. } | GgufError::DataOutOfRange { .. }
                ),
                "{err}"
            );
        }

        // Five dimensions.
        let mut v = raw(3, 1, 0);
        push_str(&mut v, b"w");
        v.extend(5u32.to_le_bytes());
        v.extend([1u8; 64]);
        assert!(matches!(
            parse_err(&v),
            GgufError::TooManyDims { n_dims: 5, .. }
        ));
    }

    #[test]
    fn bad_values_are_refused() {
        let kv = |type_id: u32, body: &[u8]| {
            let mut v = raw(3, 0, 1);
            push_str(&mut v, b"k");
            v.extend(type_id.to_le_bytes());
            v.extend(body);
            v
        };
        assert!(matches!(
            parse_err(&kv(13, &[0; 8])),
            GgufError::UnknownValueType { type_id: 13, .. }
        ));
        let nested: Vec<u8> = T_ARRAY
            .to_le_bytes()
            .into_iter()
            .chain(1u64.to_le_bytes())
            .collect();
        assert!(matches!(
            parse_err(&kv(T_ARRAY, &nested)),
            GgufError::NestedArray(_)
        ));
        let mut bad_str = Vec::new();
        push_str(&mut bad_str, b"ok\xFF");
        assert_eq!(
            parse_err(&kv(T_STRING, &bad_str)).to_string(),
            "the value of metadata key `k` in the GGUF file is not valid UTF-8 text"
        );
        let mut arr: Vec<u8> = T_STRING
            .to_le_bytes()
            .into_iter()
            .chain(2u64.to_le_bytes())
            .collect();
        push_str(&mut arr, b"fine");
        push_str(&mut arr, b"\xC3");
        assert!(
            parse_err(&kv(T_ARRAY, &arr))
                .to_string()
                .contains("string 1 of metadata key `k`")
        );
        let mut v = raw(3, 0, 1);
        push_str(&mut v, b"\xFFkey");
        v.extend(T_U8.to_le_bytes());
        v.push(0);
        assert!(matches!(parse_err(&v), GgufError::InvalidUtf8(_)));
        // Booleans take any byte, as in C.
        let file_bytes = kv(T_BOOL, &[2]);
        assert_eq!(
            GgufFile::parse(&file_bytes).unwrap().get_bool("k").unwrap(),
            Some(true)
        );
    }

    #[test]
    fn bad_alignment_is_refused() {
        for (value, bad) in [
            (GgufValue::U32(0), true),
            (GgufValue::U32(48), true),
            (GgufValue::I32(-32), true),
            (GgufValue::String("32".into()), true),
            (GgufValue::U64(1), false),
            (GgufValue::U8(16), false),
        ] {
            let bytes = write_gguf(&[("general.alignment", value)], &[]);
            assert_eq!(GgufFile::parse(&bytes).is_err(), bad);
        }
    }

    /// Where a tensor's info continues after its name (n_dims, dims, type, offset).
    fn after_name(bytes: &[u8], name: &str) -> usize {
        let mut needle = (name.len() as u64).to_le_bytes().to_vec();
        needle.extend(name.as_bytes());
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        at + needle.len()
    }

    fn patch(bytes: &mut [u8], at: usize, new: &[u8]) {
        bytes[at..at + new.len()].copy_from_slice(new);
    }

    #[test]
    fn bad_tensor_infos_are_refused() {
        let data = f32_bytes(&[1.0; 8]);
        let good = write_gguf(&[], &[("w", &[8], GgmlType::F32, &data)]);
        let at = after_name(&good, "w");
        // n_dims (4), one dim (8), type (4), offset (8).
        let (type_at, offset_at) = (at + 12, at + 16);

        let mut v = good.clone();
        patch(&mut v, offset_at, &4u64.to_le_bytes());
        assert!(matches!(
            parse_err(&v),
            GgufError::Misaligned { offset: 4, .. }
        ));

        let mut v = good.clone();
        patch(&mut v, offset_at, &(32u64 * 1000).to_le_bytes());
        assert!(matches!(parse_err(&v), GgufError::DataOutOfRange { .. }));

        let mut v = good.clone();
        patch(&mut v, offset_at, &(u64::MAX - 31).to_le_bytes());
        assert!(matches!(parse_err(&v), GgufError::DataOutOfRange { .. }));

        for id in [99u32, 31, 4] {
            let mut v = good.clone();
            patch(&mut v, type_at, &id.to_le_bytes());
            let err = parse_err(&v);
            assert!(matches!(err, GgufError::UnknownType { .. }));
            assert!(err.to_string().contains(&format!("ggml type {id}")));
        }

        let mut v = good.clone();
        patch(&mut v, at - 1, b"\xFF");
        assert!(matches!(parse_err(&v), GgufError::InvalidUtf8(_)));

        let short = &good[..good.len() - 8];
        assert!(matches!(parse_err(short), GgufError::DataOutOfRange { .. }));

        let twice = write_gguf(
            &[],
            &[
                ("w", &[8], GgmlType::F32, &data),
                ("w", &[8], GgmlType::F32, &data),
            ],
        );
        assert_eq!(parse_err(&twice), GgufError::DuplicateTensor("w".into()));
        let keys = write_gguf(&[("k", GgufValue::U8(1)), ("k", GgufValue::U8(2))], &[]);
        assert_eq!(parse_err(&keys), GgufError::DuplicateKey("k".into()));

        let q4 = vec![0u8; 18 * 3];
        let partial = write_gguf(&[], &[("q", &[48, 2], GgmlType::Q4_0, &q4)]);
        assert!(matches!(
            parse_err(&partial),
            GgufError::PartialBlock {
                row: 48,
                block: 32,
                ..
            }
        ));

        // Names in messages are escaped and cut short.
        let long = format!("a\nb{}", "x".repeat(200));
        let twice = write_gguf(
            &[],
            &[
                (&long, &[1], GgmlType::F32, &data[..4]),
                (&long, &[1], GgmlType::F32, &data[..4]),
            ],
        );
        let message = parse_err(&twice).to_string();
        assert!(
            message.contains("a\\nb") && message.contains('…') && message.len() < 200,
            "{message}"
        );
    }

    #[test]
    fn zero_sized_and_scalar_tensors() {
        let scalar = f32_bytes(&[4.5]);
        let bytes = write_gguf(
            &[],
            &[
                ("s", &[], GgmlType::F32, &scalar),
                ("e", &[0, 7], GgmlType::Q4_K, &[]),
            ],
        );
        let file = GgufFile::parse(&bytes).unwrap();
        assert_eq!(file.dequantize("s").unwrap(), [4.5]);
        assert_eq!(file.dequantize("e").unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn mutated_files_never_panic() {
        let base = sample_file();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let tables = GgufFile::parse(&base).unwrap().data_offset() as usize;
        let (mut ok, mut refused) = (0, 0);
        for round in 0..4000 {
            let mut v = base.clone();
            let flips = 1 + rng.below(4);
            for _ in 0..flips {
                let i = rng.below(v.len() as u64) as usize;
                // Even rounds damage only the header and tables, where damage matters most.
                let i = if round % 2 == 0 { i % tables } else { i };
                v[i] ^= (1 + rng.below(255)) as u8;
            }
            if round % 7 == 0 {
                v.truncate(rng.below(v.len() as u64 + 1) as usize);
            }
            match GgufFile::parse(&v) {
                Ok(file) => {
                    ok += 1;
                    for t in file.tensors() {
                        match file.dequantize(&t.name) {
                            Ok(values) => assert_eq!(values.len(), t.element_count),
                            Err(e) => assert!(!e.to_string().is_empty()),
                        }
                    }
                    for (key, _) in file.metadata() {
                        let errors = [
                            file.get_u64(key).err(),
                            file.get_i64(key).err(),
                            file.get_f64(key).err(),
                            file.get_str(key).err(),
                            file.get_bool(key).err(),
                            file.get_string_array(key).err(),
                            file.get_i64_array(key).err(),
                            file.get_f32_array(key).err(),
                        ];
                        for e in errors.into_iter().flatten() {
                            assert!(!e.to_string().is_empty());
                        }
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert!(ok > 100 && refused > 100, "ok {ok}, refused {refused}");
    }
}
