//! A bounds-checked cursor over the file and the metadata values read through it.

use super::error::{GgufError, shown};
use super::value::{
    GgufArray, GgufValue, T_ARRAY, T_BOOL, T_F32, T_F64, T_I8, T_I16, T_I32, T_I64, T_STRING, T_U8,
    T_U16, T_U32, T_U64,
};

/// A cursor over the file that never reads past its end.
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A GGUF string's bytes: a u64 length, then that many bytes.
    pub(super) fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        self.take(len)
    }
}

pub(super) fn value_cut(key: &str) -> GgufError {
    GgufError::Truncated(format!("the value of metadata key `{}`", shown(key)))
}

pub(super) fn read_value(
    r: &mut Reader<'_>,
    type_id: u32,
    key: &str,
) -> Result<GgufValue, GgufError> {
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
pub(super) fn text(raw: &[u8], what: impl FnOnce() -> String) -> Result<String, GgufError> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| GgufError::InvalidUtf8(what()))
}
