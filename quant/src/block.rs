//! Block formats: 32 values share one f16 scale (and, for `Q4A`, an f16 minimum).
//!
//! The byte layouts are chosen so that GGUF's `Q8_0`, `Q4_0` and `Q4_1` blocks carry
//! over bit for bit (same field order, same nibble order), but the code is ours.
use bytemuck::{Pod, Zeroable};
use half::f16;

/// Values per block.
pub const QK: usize = 32;

/// 32 signed 8-bit values with one scale: `x[i] = d * qs[i]`. 34 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8 {
    /// Scale.
    pub d: f16,
    /// Quantized values.
    pub qs: [i8; QK],
}

/// 32 4-bit values, symmetric: `x[i] = d * (q[i] - 8)`. 18 bytes.
///
/// Nibble order: byte `j` holds value `j` in its low nibble and value `j + 16` in its
/// high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4 {
    /// Scale.
    pub d: f16,
    /// Packed nibbles (see the type's docs for the order).
    pub qs: [u8; QK / 2],
}

/// 32 4-bit values, asymmetric: `x[i] = d * q[i] + m`. 20 bytes.
///
/// Same nibble order as [`BlockQ4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4A {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}

const _: () = assert!(core::mem::size_of::<BlockQ8>() == 34);
const _: () = assert!(core::mem::size_of::<BlockQ4>() == 18);
const _: () = assert!(core::mem::size_of::<BlockQ4A>() == 20);

/// The unsigned nibble (0..=15) of value `i` in the shared 4-bit order.
#[inline]
fn nibble(qs: &[u8; QK / 2], i: usize) -> u8 {
    let b = qs[i % (QK / 2)];
    if i < QK / 2 {
        b & 0x0F
    } else {
        b >> 4
    }
}

impl BlockQ4 {
    /// The unsigned nibble (0..=15) of value `i`.
    #[inline]
    pub fn nibble(&self, i: usize) -> u8 {
        nibble(&self.qs, i)
    }
}

impl BlockQ4A {
    /// The unsigned nibble (0..=15) of value `i`.
    #[inline]
    pub fn nibble(&self, i: usize) -> u8 {
        nibble(&self.qs, i)
    }
}
