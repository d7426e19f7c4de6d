//! Tensors on the host and the safetensors format: the one place every file reader and writer
//! (model checkpoints, SAE weights, captured activations, optimiser state) goes through.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{Result, SaeplayError};
use crate::rng::SplitMix64;

/// One tensor's values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A stored tensor's values as f32 (F32, F16 or BF16 stored).
pub fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(SaeplayError::TensorDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Ok(values)
}

/// A stored tensor as f32, refused in words unless it has the `expected` shape.
pub(crate) fn shaped_f32(
    name: &str,
    expected: Vec<usize>,
    view: &TensorView<'_>,
) -> Result<HostTensor> {
    if view.shape() != expected.as_slice() {
        return Err(SaeplayError::TensorShape {
            name: name.to_string(),
            expected,
            found: view.shape().to_vec(),
        });
    }
    let values = to_f32(name, view)?;
    Ok(HostTensor {
        shape: expected,
        values,
    })
}

/// Write f32 tensors as a safetensors file, in the order given.
pub fn write_safetensors<'a>(
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [f32])>,
) -> Vec<u8> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.to_string(), shape.to_vec(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .expect("shape and byte count agree by construction");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).expect("serialising f32 tensors cannot fail")
}

/// Every tensor of a safetensors file as f32 (F32, F16 or BF16 stored), by name.
pub fn read_f32_tensors(bytes: &[u8]) -> Result<BTreeMap<String, HostTensor>> {
    let file = SafeTensors::deserialize(bytes)?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let values = to_f32(&name, &view)?;
        out.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(out)
}

/// How a random tensor's values spread around their centre.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spread {
    /// `1 + scale * normal`: a norm's gain.
    AroundOne(f32),
    /// `scale * normal`.
    AroundZero(f32),
}

/// Deterministic random tensors of the given shapes (a model family's `expected_shapes`, for its
/// random weights), drawn in order from one SplitMix64 seeded with `seed`, each spread as
/// `spread` says for its name.
pub(crate) fn random_tensors(
    shapes: Vec<(String, Vec<usize>)>,
    seed: u64,
    spread: impl Fn(&str) -> Spread,
) -> BTreeMap<String, HostTensor> {
    let mut rng = SplitMix64::new(seed);
    let mut tensors = BTreeMap::new();
    for (name, shape) in shapes {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = match spread(&name) {
            Spread::AroundOne(scale) => (0..count).map(|_| 1.0 + scale * rng.normal()).collect(),
            Spread::AroundZero(scale) => (0..count).map(|_| scale * rng.normal()).collect(),
        };
        tensors.insert(name, HostTensor { shape, values });
    }
    tensors
}
