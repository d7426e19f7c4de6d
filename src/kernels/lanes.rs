//! Vectors of four `f32`s and of sixteen bytes for the page's kernels (`panel.rs`, the packed
//! dot products in `quantised.rs`): wasm SIMD128 in the page; natively, where only the tests run
//! those kernels, plain arrays with the same meaning.

#[cfg(target_arch = "wasm32")]
mod simd128 {
    use core::arch::wasm32::*;

    /// Four `f32` lanes.
    #[derive(Clone, Copy)]
    pub struct F4(v128);

    impl F4 {
        #[inline(always)]
        pub fn splat(x: f32) -> Self {
            Self(f32x4_splat(x))
        }

        /// # Safety
        /// `p..p + 4` must be readable.
        #[inline(always)]
        pub unsafe fn load(p: *const f32) -> Self {
            // SAFETY: as the caller promised; v128 loads need no alignment.
            Self(unsafe { v128_load(p as *const v128) })
        }

        /// # Safety
        /// `p..p + 4` must be writable.
        #[inline(always)]
        pub unsafe fn store(self, p: *mut f32) {
            // SAFETY: as the caller promised.
            unsafe { v128_store(p as *mut v128, self.0) }
        }

        /// `self + x * y`: fused where the build allows relaxed SIMD.
        #[inline(always)]
        pub fn mul_add(self, x: Self, y: Self) -> Self {
            #[cfg(target_feature = "relaxed-simd")]
            return Self(f32x4_relaxed_madd(x.0, y.0, self.0));
            #[cfg(not(target_feature = "relaxed-simd"))]
            Self(f32x4_add(self.0, f32x4_mul(x.0, y.0)))
        }

        #[inline(always)]
        pub fn mul(self, x: Self) -> Self {
            Self(f32x4_mul(self.0, x.0))
        }

        #[inline(always)]
        pub fn add(self, x: Self) -> Self {
            Self(f32x4_add(self.0, x.0))
        }

        /// Rows of a 4x4 block into its columns.
        #[inline(always)]
        pub fn transpose(r: [Self; 4]) -> [Self; 4] {
            let low01 = i32x4_shuffle::<0, 4, 1, 5>(r[0].0, r[1].0);
            let high01 = i32x4_shuffle::<2, 6, 3, 7>(r[0].0, r[1].0);
            let low23 = i32x4_shuffle::<0, 4, 1, 5>(r[2].0, r[3].0);
            let high23 = i32x4_shuffle::<2, 6, 3, 7>(r[2].0, r[3].0);
            [
                Self(i32x4_shuffle::<0, 1, 4, 5>(low01, low23)),
                Self(i32x4_shuffle::<2, 3, 6, 7>(low01, low23)),
                Self(i32x4_shuffle::<0, 1, 4, 5>(high01, high23)),
                Self(i32x4_shuffle::<2, 3, 6, 7>(high01, high23)),
            ]
        }

        #[inline(always)]
        pub fn to_array(self) -> [f32; 4] {
            [
                f32x4_extract_lane::<0>(self.0),
                f32x4_extract_lane::<1>(self.0),
                f32x4_extract_lane::<2>(self.0),
                f32x4_extract_lane::<3>(self.0),
            ]
        }
    }

    impl F4 {
        /// Four values from an array (safe: the array is there).
        #[inline(always)]
        pub fn from_array(values: &[f32; 4]) -> Self {
            // SAFETY: the array holds the 4 values read.
            unsafe { Self::load(values.as_ptr()) }
        }

        /// The sum of the four lanes.
        #[inline(always)]
        pub fn sum(self) -> f32 {
            self.to_array().iter().sum()
        }
    }

    /// Sixteen bytes.
    #[derive(Clone, Copy)]
    pub struct Bytes16(v128);

    impl Bytes16 {
        #[inline(always)]
        pub fn from_array(bytes: &[u8; 16]) -> Self {
            // SAFETY: the array holds the 16 bytes read; v128 loads need no alignment.
            Self(unsafe { v128_load(bytes.as_ptr() as *const v128) })
        }

        /// Each byte's low four bits.
        #[inline(always)]
        pub fn low_nibbles(self) -> Self {
            Self(v128_and(self.0, u8x16_splat(0x0F)))
        }

        /// Each byte's high four bits.
        #[inline(always)]
        pub fn high_nibbles(self) -> Self {
            Self(u8x16_shr(self.0, 4))
        }

        /// The bytes as unsigned integers, in order, as four vectors of `f32`.
        #[inline(always)]
        pub fn unsigned_to_f32(self) -> [F4; 4] {
            let (low, high) = (
                u16x8_extend_low_u8x16(self.0),
                u16x8_extend_high_u8x16(self.0),
            );
            // Signed conversion: the values fit, and V8 has one instruction for it on x86.
            [
                F4(f32x4_convert_i32x4(u32x4_extend_low_u16x8(low))),
                F4(f32x4_convert_i32x4(u32x4_extend_high_u16x8(low))),
                F4(f32x4_convert_i32x4(u32x4_extend_low_u16x8(high))),
                F4(f32x4_convert_i32x4(u32x4_extend_high_u16x8(high))),
            ]
        }

        /// The bytes as signed integers, in order, as four vectors of `f32`.
        #[inline(always)]
        pub fn signed_to_f32(self) -> [F4; 4] {
            let (low, high) = (
                i16x8_extend_low_i8x16(self.0),
                i16x8_extend_high_i8x16(self.0),
            );
            [
                F4(f32x4_convert_i32x4(i32x4_extend_low_i16x8(low))),
                F4(f32x4_convert_i32x4(i32x4_extend_high_i16x8(low))),
                F4(f32x4_convert_i32x4(i32x4_extend_low_i16x8(high))),
                F4(f32x4_convert_i32x4(i32x4_extend_high_i16x8(high))),
            ]
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod arrays {
    /// Four `f32` lanes (the tests' stand-in for a SIMD128 vector).
    #[derive(Clone, Copy)]
    pub struct F4([f32; 4]);

    impl F4 {
        pub fn splat(x: f32) -> Self {
            Self([x; 4])
        }

        /// # Safety
        /// `p..p + 4` must be readable.
        pub unsafe fn load(p: *const f32) -> Self {
            // SAFETY: as the caller promised.
            Self(unsafe { std::ptr::read_unaligned(p as *const [f32; 4]) })
        }

        /// # Safety
        /// `p..p + 4` must be writable.
        pub unsafe fn store(self, p: *mut f32) {
            // SAFETY: as the caller promised.
            unsafe { std::ptr::write_unaligned(p as *mut [f32; 4], self.0) }
        }

        pub fn mul_add(self, x: Self, y: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] + x.0[i] * y.0[i]))
        }

        pub fn mul(self, x: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] * x.0[i]))
        }

        pub fn add(self, x: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] + x.0[i]))
        }

        pub fn transpose(r: [Self; 4]) -> [Self; 4] {
            std::array::from_fn(|i| Self(std::array::from_fn(|j| r[j].0[i])))
        }

        pub fn to_array(self) -> [f32; 4] {
            self.0
        }
    }

    impl F4 {
        pub fn from_array(values: &[f32; 4]) -> Self {
            Self(*values)
        }

        pub fn sum(self) -> f32 {
            self.0.iter().sum()
        }
    }

    /// Sixteen bytes.
    #[derive(Clone, Copy)]
    pub struct Bytes16([u8; 16]);

    impl Bytes16 {
        pub fn from_array(bytes: &[u8; 16]) -> Self {
            Self(*bytes)
        }

        pub fn low_nibbles(self) -> Self {
            Self(self.0.map(|b| b & 0x0F))
        }

        pub fn high_nibbles(self) -> Self {
            Self(self.0.map(|b| b >> 4))
        }

        pub fn unsigned_to_f32(self) -> [F4; 4] {
            std::array::from_fn(|v| F4(std::array::from_fn(|i| f32::from(self.0[4 * v + i]))))
        }

        pub fn signed_to_f32(self) -> [F4; 4] {
            std::array::from_fn(|v| F4(std::array::from_fn(|i| f32::from(self.0[4 * v + i] as i8))))
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use arrays::{Bytes16, F4};
#[cfg(target_arch = "wasm32")]
pub(crate) use simd128::{Bytes16, F4};
