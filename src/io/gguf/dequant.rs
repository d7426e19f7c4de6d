//! Unpacking tensor data to f32. Block layouts and arithmetic follow ggml-quants.c's
//! `dequantize_row_*` (same operations in the same order), so values match llama.cpp's bit for
//! bit. `data` and `out` have the lengths the tensor info implies (checked at parse time); were
//! they ever shorter, the zips below would stop early rather than index past an end.

use half::{bf16, f16};

use super::types::GgmlType;

/// Unpack `data`, whole blocks of type `ty`, into `out` (one value per slot), as
/// [`GgufFile::dequantize`](super::GgufFile::dequantize) does. `None` when the type is not one saeplay unpacks or the lengths
/// do not match whole blocks.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Option<()> {
    let (block, size) = (ty.block_size(), ty.type_size());
    let fits = ty.is_supported()
        && out.len().is_multiple_of(block)
        && out.len() / block * size == data.len();
    fits.then(|| decode(ty, data, out))
}

pub(super) fn decode(ty: GgmlType, data: &[u8], out: &mut [f32]) {
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
