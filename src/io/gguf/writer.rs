//! Writing GGUF files, for tests that craft checkpoints (compiled for tests and the
//! `test-support` feature only: nothing in the CLI or the page writes GGUF).

use half::{bf16, f16};

use super::types::GgmlType;
use super::value::{
    GgufArray, GgufValue, T_ARRAY, T_BOOL, T_F32, T_F64, T_I8, T_I16, T_I32, T_I64, T_STRING, T_U8,
    T_U16, T_U32, T_U64,
};
use super::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC};

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

impl GgufValue {
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
}

impl GgufArray {
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
