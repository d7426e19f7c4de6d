//! Metadata values as the file types them, and the numbers GGUF gives each value type.

use super::error::{GgufError, out_of_range, wrong};

// GGUF value types, as numbered in the file.
pub(super) const T_U8: u32 = 0;
pub(super) const T_I8: u32 = 1;
pub(super) const T_U16: u32 = 2;
pub(super) const T_I16: u32 = 3;
pub(super) const T_U32: u32 = 4;
pub(super) const T_I32: u32 = 5;
pub(super) const T_F32: u32 = 6;
pub(super) const T_BOOL: u32 = 7;
pub(super) const T_STRING: u32 = 8;
pub(super) const T_ARRAY: u32 = 9;
pub(super) const T_U64: u32 = 10;
pub(super) const T_I64: u32 = 11;
pub(super) const T_F64: u32 = 12;

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

    /// The value as a signed integer wide enough for every GGUF integer type, if it is one.
    pub(super) fn as_i128(&self) -> Option<i128> {
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
}

pub(super) fn value_u64(v: &GgufValue, key: &str) -> Result<u64, GgufError> {
    let n = v
        .as_i128()
        .ok_or_else(|| wrong(key, "a non-negative integer", v))?;
    u64::try_from(n).map_err(|_| out_of_range(key, n, "a non-negative integer"))
}
