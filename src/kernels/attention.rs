//! Causal self-attention on host buffers, grouped-query included, with the host key/value cache.

use super::matmul::{MatRef, matmul};
use super::parallel::for_each_chunk;
use super::rows::softmax_prefix;

/// Keys and values of one layer on the host: `[batch, kv_head, pos, d_head]`.
#[derive(Clone, Debug, Default)]
pub struct HostKv {
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// Where queries, keys and values sit in each row of a `[b * t, row]` buffer: `heads` query
/// heads from `q`, and `kv_heads` key and value heads from `k` and `v` (grouped-query attention
/// when fewer: query head `h` reads key/value head `h / (heads / kv_heads)`, as transformers'
/// `repeat_kv`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct QkvLayout {
    pub heads: usize,
    pub kv_heads: usize,
    pub d_head: usize,
    pub row: usize,
    pub q: usize,
    pub k: usize,
    pub v: usize,
}

/// Causal self-attention of the new positions in `qkv` over the cached and new keys, scores
/// scaled by `scale`; appends the new keys and values to `kv`. Returns `z`
/// `[b * t, heads * d_head]`.
pub(crate) fn causal_attention(
    qkv: &[f32],
    layout: QkvLayout,
    (b, t): (usize, usize),
    offset: usize,
    scale: f32,
    kv: &mut HostKv,
) -> Vec<f32> {
    let QkvLayout {
        heads,
        kv_heads,
        d_head: dh,
        row: width,
        ..
    } = layout;
    let group = heads / kv_heads;
    let total = offset + t;
    // The cache grows to [b, kv_head, total, dh]: old positions first, then the new ones.
    let mut keys = vec![0.0f32; b * kv_heads * total * dh];
    let mut values = vec![0.0f32; b * kv_heads * total * dh];
    for (bh, (k_seq, v_seq)) in keys
        .chunks_exact_mut(total * dh)
        .zip(values.chunks_exact_mut(total * dh))
        .enumerate()
    {
        let (bi, h) = (bh / kv_heads, bh % kv_heads);
        if offset > 0 {
            k_seq[..offset * dh].copy_from_slice(&kv.keys[bh * offset * dh..][..offset * dh]);
            v_seq[..offset * dh].copy_from_slice(&kv.values[bh * offset * dh..][..offset * dh]);
        }
        for i in 0..t {
            let row = &qkv[(bi * t + i) * width..][..width];
            k_seq[(offset + i) * dh..][..dh].copy_from_slice(&row[layout.k + h * dh..][..dh]);
            v_seq[(offset + i) * dh..][..dh].copy_from_slice(&row[layout.v + h * dh..][..dh]);
        }
    }

    // Per (batch, head): scores [t, total] = q k^T * scale, masked softmax, z = pattern v.
    let mut z_heads = vec![0.0f32; b * heads * t * dh]; // [b, head, t, dh]
    // Queries go in blocks that read only the keys they can see: half the work of a causal
    // forward from position 0.
    const QUERY_BLOCK: usize = 32;
    for_each_chunk(&mut z_heads, t * dh, |bh, z| {
        let (bi, h) = (bh / heads, bh % heads);
        let kv_index = bi * kv_heads + h / group;
        let k_seq = &keys[kv_index * total * dh..][..total * dh];
        let v_seq = &values[kv_index * total * dh..][..total * dh];
        let mut scores = vec![0.0f32; QUERY_BLOCK.min(t) * total];
        for first in (0..t).step_by(QUERY_BLOCK) {
            let rows = QUERY_BLOCK.min(t - first);
            let seen = offset + first + rows; // keys visible to the block's last query
            let q = MatRef {
                data: &qkv[(bi * t + first) * width + layout.q + h * dh..],
                rows,
                cols: dh,
                row_stride: width,
                col_stride: 1,
            };
            let block = &mut scores[..rows * seen];
            matmul(block, q, MatRef::transposed(k_seq, dh, seen), scale, false);
            for (i, row) in block.chunks_exact_mut(seen).enumerate() {
                softmax_prefix(row, offset + first + i + 1);
            }
            matmul(
                &mut z[first * dh..(first + rows) * dh],
                MatRef::rows(block, rows, seen),
                MatRef::rows(v_seq, seen, dh),
                1.0,
                false,
            );
        }
    });
    *kv = HostKv { keys, values };

    // [b, head, t, dh] -> [b, t, head * dh]
    let d = heads * dh;
    let mut z = vec![0.0f32; b * t * d];
    for (bh, z_head) in z_heads.chunks_exact(t * dh).enumerate() {
        let (bi, h) = (bh / heads, bh % heads);
        for (i, row) in z_head.chunks_exact(dh).enumerate() {
            z[(bi * t + i) * d + h * dh..][..dh].copy_from_slice(row);
        }
    }
    z
}
