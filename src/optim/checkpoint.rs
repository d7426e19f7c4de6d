//! One checkpoint layout for both trainers: parameters under their own names, Adam's moments
//! beside them as `adam_m.NAME` and `adam_v.NAME` (f32 safetensors), and the trainer's state as
//! JSON next to them.

use std::collections::BTreeMap;

use crate::error::{Result, SaeplayError};
use crate::io::tensors::HostTensor;

pub const FIRST_MOMENT_PREFIX: &str = "adam_m.";
pub const SECOND_MOMENT_PREFIX: &str = "adam_v.";

/// The stored name of a moment: `prefix` is one of the two prefixes above.
pub fn moment_key(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

/// `tensors[key]`, checked against the shape the trainer expects.
pub fn take<'a>(
    tensors: &'a BTreeMap<String, HostTensor>,
    key: &str,
    shape: &[usize],
) -> Result<&'a HostTensor> {
    let found = tensors
        .get(key)
        .ok_or_else(|| SaeplayError::Checkpoint(format!("it lacks `{key}`")))?;
    if found.shape.as_slice() != shape {
        return Err(SaeplayError::Checkpoint(format!(
            "`{key}` has shape {:?}, expected {shape:?}",
            found.shape
        )));
    }
    Ok(found)
}
