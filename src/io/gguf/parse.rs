//! The header, metadata and tensor infos, every declared count and size checked before use.

use std::collections::BTreeMap;

use super::error::{GgufError, shown};
use super::reader::{Reader, read_value, text, value_cut};
use super::types::GgmlType;
use super::value::value_u64;
use super::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GgufFile, GgufTensorInfo, MAGIC, MAX_DIMS, MAX_METADATA_KEYS,
    MAX_TENSORS,
};

/// Smallest possible metadata entry: an empty key (8), a value type (4), a one-byte value.
const MIN_KV_BYTES: usize = 13;
/// Smallest possible tensor info: an empty name (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: usize = 24;

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
