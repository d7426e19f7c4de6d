//! Row-wise steps of a transformer on host buffers: layer norm, GELU, ReLU, softmax and the
//! fast `exp`/`tanh` they use, as loops the compiler vectorises.

use super::parallel::for_each_chunk;

/// Each row of `x` `[_, d]` as `(x - mean) / sqrt(var + eps)` (biased variance, as torch's
/// LayerNorm), in place; natively over every core for large inputs.
pub(crate) fn normalize_rows(x: &mut [f32], d: usize, eps: f32) {
    for_each_chunk(x, 64 * d, |_, rows| {
        for row in rows.chunks_exact_mut(d) {
            let mean = sum_lanes(row) / d as f32;
            row.iter_mut().for_each(|v| *v -= mean);
            let squares = sum_squares(row);
            let inv = 1.0 / (squares / d as f32 + eps).sqrt();
            row.iter_mut().for_each(|v| *v *= inv);
        }
    });
}

/// Sums in eight running lanes: one running sum is a chain of dependent adds the compiler may not
/// reorder; eight lanes vectorise.
fn sum_lanes(row: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

pub(crate) fn sum_squares(row: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v * v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|v| v * v).sum::<f32>()
}

/// `x * weight + bias` on each row of `x` `[_, d]`, in place.
pub(crate) fn scale_shift_rows(x: &mut [f32], weight: &[f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(weight.len()) {
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = *v * w + b;
        }
    }
}

/// `a += b`, element-wise.
pub(crate) fn add_into(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
}

/// tanh in f32 as a rational function on [-7.9, 7.9] (Eigen's `generic_fast_tanh_float`, within
/// a few ulp): unlike `f32::tanh` it has no branches or calls, so loops over it vectorise.
#[inline(always)]
pub(crate) fn fast_tanh(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
    p = x2 * p + -8.604_672e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619e-4;
    p = x2 * p + 4.893_524_6e-3;
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347e-4;
    q = x2 * q + 2.268_434_6e-3;
    q = x2 * q + 4.893_525e-3;
    x * p / q
}

/// GPT-2's `gelu_new`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, in place.
pub(crate) fn gelu_tanh(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x.iter_mut() {
        let u = *v;
        *v = 0.5 * u * (1.0 + fast_tanh(SQRT_2_OVER_PI * (u + 0.044_715 * u * u * u)));
    }
}

/// erf in f32 (Abramowitz and Stegun 7.1.26, absolute error under 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    sign * (1.0 - poly * (-x * x).exp())
}

/// The exact GELU `0.5 x (1 + erf(x / sqrt 2))`, in place.
pub(crate) fn gelu_erf(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

pub(crate) fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// e^x in f32 without calls or branches, so loops over it vectorise (Cephes' `expf`: e^x =
/// 2^k e^r with |r| <= ln2/2 and a degree-6 polynomial, within 2 ulp), for x in [-87, 88].
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    // Rounding by the 1.5 * 2^23 trick: `round()` is a call on baseline x86-64.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((k as i32 + 127) << 23) as u32)
}

/// Softmax of `row[..visible]` in place; the rest (future positions) becomes exactly 0.
pub(crate) fn softmax_prefix(row: &mut [f32], visible: usize) {
    let (seen, future) = row.split_at_mut(visible);
    future.fill(0.0);
    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    seen.iter_mut().for_each(|v| *v = fast_exp(*v - max));
    let inv = 1.0 / sum_lanes(seen);
    seen.iter_mut().for_each(|v| *v *= inv);
}

/// The rows the logits are read from: every position of `resid` `[b * t, d]`, or each
/// sequence's last; with the positions per sequence that remain.
pub(crate) fn logit_rows(
    resid: Vec<f32>,
    (b, t, d): (usize, usize, usize),
    all_positions: bool,
) -> (Vec<f32>, usize) {
    if all_positions {
        return (resid, t);
    }
    let mut last = Vec::with_capacity(b * d);
    for seq in resid.chunks_exact(t * d) {
        last.extend_from_slice(&seq[(t - 1) * d..]);
    }
    (last, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_matches_f64_tanh() {
        let worst = (-2000..=2000)
            .map(|i| i as f64 / 100.0)
            .map(|x| (fast_tanh(x as f32) as f64 - x.tanh()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "worst |fast_tanh - tanh| = {worst}");
    }

    #[test]
    fn fast_exp_matches_f64_exp() {
        let worst = (-8700..=8800)
            .map(|i| (i as f32 / 100.0) as f64)
            .map(|x| ((fast_exp(x as f32) as f64 - x.exp()) / x.exp()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(-1e9) < 1e-37 && fast_exp(-1e9) > 0.0);
    }

    #[test]
    fn erf_gelu_matches_a_direct_computation() {
        // erf(1) = 0.8427007929497149, erf(-0.5) = -0.5204998778130465 (tables).
        for (x, erf_x) in [
            (1.0f64, 0.842_700_792_949_714_9),
            (-0.5, -0.520_499_877_813_046_5),
        ] {
            let mut v = [(x * std::f64::consts::SQRT_2) as f32];
            gelu_erf(&mut v);
            let expected = 0.5 * x * std::f64::consts::SQRT_2 * (1.0 + erf_x);
            assert!(
                (v[0] as f64 - expected).abs() < 1e-6,
                "{} vs {expected}",
                v[0]
            );
        }
    }

    #[test]
    fn softmax_prefix_zeroes_the_future() {
        let mut row = [1.0, 2.0, 3.0, 100.0];
        softmax_prefix(&mut row, 3);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let sum: f64 = e.iter().sum();
        for i in 0..3 {
            assert!((row[i] as f64 - e[i] / sum).abs() < 1e-6);
        }
        assert_eq!(row[3], 0.0);
    }

    #[test]
    fn layer_norm_rows_have_zero_mean_and_unit_variance() {
        let mut x: Vec<f32> = (0..24).map(|i| (i * i) as f32 * 0.1).collect();
        normalize_rows(&mut x, 8, 0.0);
        for row in x.chunks(8) {
            let mean: f32 = row.iter().sum::<f32>() / 8.0;
            let var: f32 = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 8.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        }
    }
}
