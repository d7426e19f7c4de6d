//! The key/value cache, in the storage of the forward that fills it.

use burn::tensor::Tensor;

use crate::error::{Result, SaeplayError};
use crate::kernels::HostKv;

/// One layer's keys and values as burn tensors, `[batch, kv_head, pos, d_head]`.
pub(crate) type TensorKv = Option<(Tensor<4>, Tensor<4>)>;

/// Keys and values of the positions seen so far, per layer. Which forward continues a sequence
/// is the one that started it: the first forward call makes the cache of its own kind.
#[derive(Clone, Debug, Default)]
pub enum KvCache {
    /// Nothing cached yet.
    #[default]
    Empty,
    /// The burn forward's (a GPU, gradients, or `burn_forward_only`).
    Tensors { layers: Vec<TensorKv>, len: usize },
    /// The host forward's (a model on a CPU device).
    Host { layers: Vec<HostKv>, len: usize },
}

/// The layers of a cache as one forward call reads and extends them.
pub(crate) enum CacheLayers<'a> {
    Tensors(&'a mut [TensorKv]),
    Host(&'a mut [HostKv]),
}

impl KvCache {
    /// An empty cache; the first forward sizes it for its model's layers.
    pub fn new(_n_layers: usize) -> Self {
        Self::Empty
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Tensors { len, .. } | Self::Host { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The positions a forward of a model with `n_layers` continues from: none when the cache
    /// was made for another model.
    pub(crate) fn offset_for(&self, n_layers: usize) -> usize {
        match self {
            Self::Empty => 0,
            Self::Tensors { layers, len } if layers.len() == n_layers => *len,
            Self::Host { layers, len } if layers.len() == n_layers => *len,
            _ => 0,
        }
    }

    /// The cached positions and the layers a forward of a model with `n_layers` extends: a
    /// fresh cache of the forward's kind when nothing fitting is cached (`host_forward`: the model
    /// runs inference on host buffers). A sequence a host forward started cannot be continued by
    /// the burn forward; one the burn forward started is continued by it.
    pub(crate) fn layers_for(
        &mut self,
        n_layers: usize,
        host_forward: bool,
    ) -> Result<(usize, CacheLayers<'_>)> {
        if self.offset_for(n_layers) == 0 {
            *self = if host_forward {
                Self::Host {
                    layers: vec![HostKv::default(); n_layers],
                    len: 0,
                }
            } else {
                Self::Tensors {
                    layers: vec![None; n_layers],
                    len: 0,
                }
            };
        }
        match self {
            Self::Tensors { layers, len } => Ok((*len, CacheLayers::Tensors(layers))),
            Self::Host { layers, len } if host_forward => Ok((*len, CacheLayers::Host(layers))),
            Self::Host { .. } | Self::Empty => Err(SaeplayError::InvalidSetting(
                "this key/value cache was filled by a forward on host buffers; a model on burn's ops cannot continue it".into(),
            )),
        }
    }

    /// Count `new` positions as cached after a forward that ran every block.
    pub(crate) fn advance(&mut self, new: usize) {
        if let Self::Tensors { len, .. } | Self::Host { len, .. } = self {
            *len += new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first forward makes the cache of its own kind; a cache sized for another model starts
    /// afresh; a sequence the host forward started is refused in words by the burn forward.
    #[test]
    fn the_forward_that_starts_a_sequence_continues_it() {
        let mut cache = KvCache::new(2);
        assert!(cache.is_empty());
        let (offset, layers) = cache.layers_for(2, true).unwrap();
        assert!(offset == 0 && matches!(layers, CacheLayers::Host(l) if l.len() == 2));
        cache.advance(5);
        assert_eq!(
            (cache.len(), cache.offset_for(2), cache.offset_for(3)),
            (5, 5, 0)
        );
        assert!(cache.layers_for(2, false).is_err());
        let (offset, layers) = cache.layers_for(3, false).unwrap();
        assert!(offset == 0 && matches!(layers, CacheLayers::Tensors(l) if l.len() == 3));
        cache.advance(4);
        // A host-capable model continues what the burn forward started, on burn's ops.
        let (offset, layers) = cache.layers_for(3, true).unwrap();
        assert!(offset == 4 && matches!(layers, CacheLayers::Tensors(_)));
    }
}
