//! GGUF, llama.cpp's checkpoint format (versions 2 and 3), read from bytes in memory: metadata,
//! tensor infos, and tensors unpacked to f32.
//!
//! The file is untrusted and the page has a 32-bit address space where a panic kills it, so every
//! count and length is checked against the bytes that remain before anything is allocated, all
//! arithmetic on sizes is checked, and every refusal is a [`GgufError`] that says in one sentence
//! what is wrong. Block layouts and arithmetic follow ggml-quants.c's `dequantize_row_*` (same
//! operations in the same order), so unpacked values match llama.cpp's bit for bit.
//!
//! Rooms: `error` (refusals), `value` (metadata values), `types` (ggml's type table), `reader`
//! (the bounds-checked cursor), `parse` (header and tensor infos), `dequant` (unpacking), and
//! `writer` (tests only).

use std::collections::BTreeMap;
use std::ops::Range;

mod dequant;
mod error;
mod parse;
mod reader;
mod types;
mod value;
#[cfg(any(test, feature = "test-support"))]
mod writer;

pub use dequant::dequantize_into;
pub use error::GgufError;
use error::{out_of_range, shown, wrong};
pub use types::GgmlType;
use value::value_u64;
pub use value::{GgufArray, GgufValue};
#[cfg(any(test, feature = "test-support"))]
pub use writer::{bf16_bytes, f16_bytes, f32_bytes, write_gguf};

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
        dequant::decode(info.ggml_type, data, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
