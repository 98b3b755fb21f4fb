//! Row-interleaved ("packed") layouts read by the matrix kernels.
//!
//! A weight matrix of `rows × cols` is cut into groups of [`ROWS`] consecutive rows.
//! Within a group, the blocks of the four rows that cover the same 32 columns are
//! stored side by side in one packed block, so a kernel loads one activation block
//! and uses it for four rows. Storage order: `group 0: kb 0, kb 1, …; group 1: …`,
//! i.e. packed block `g * nb + kb` holds rows `4g..4g+4`, columns `32kb..32kb+32`
//! (`nb = cols / 32`). A last, partial group is padded with zero rows.
//!
//! Inside a packed block the scales come first (`d[r]` for row `r`), then the
//! quantized values of row 0, row 1, row 2, row 3, each in its single-block layout.
//! The model converter writes weights in these layouts so nothing is repacked at load.
use crate::block::{BlockQ4, BlockQ4A, BlockQ8, QK};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// Rows per packed group.
pub const ROWS: usize = 4;

/// Four [`BlockQ8`] rows side by side. 136 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8x4 {
    /// Scale of each row.
    pub d: [f16; ROWS],
    /// `qs[32r..32r+32]` are row `r`'s values.
    pub qs: [i8; QK * ROWS],
}

/// Four [`BlockQ4`] rows side by side. 72 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4x4 {
    /// Scale of each row.
    pub d: [f16; ROWS],
    /// `qs[16r..16r+16]` are row `r`'s nibbles, in [`BlockQ4`]'s order.
    pub qs: [u8; QK / 2 * ROWS],
}

/// Four [`BlockQ4A`] rows side by side. 80 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4Ax4 {
    /// Scale of each row.
    pub d: [f16; ROWS],
    /// Minimum of each row.
    pub m: [f16; ROWS],
    /// `qs[16r..16r+16]` are row `r`'s nibbles, in [`BlockQ4A`]'s order.
    pub qs: [u8; QK / 2 * ROWS],
}

const _: () = assert!(core::mem::size_of::<BlockQ8x4>() == 136);
const _: () = assert!(core::mem::size_of::<BlockQ4x4>() == 72);
const _: () = assert!(core::mem::size_of::<BlockQ4Ax4>() == 80);

/// A packed block type: four single-row blocks side by side.
pub trait PackedBlock: Pod {
    /// The single-row block this packs.
    type Row: Pod;
    /// Values per row-block.
    const BLCK_SIZE: usize = QK;
    /// Bits per weight, scales included.
    const BITS_PER_WEIGHT: f32 = (core::mem::size_of::<Self>() * 8) as f32 / (QK * ROWS) as f32;
    /// Interleave four rows' blocks (same columns).
    fn pack(rows: [&Self::Row; ROWS]) -> Self;
    /// Take row `r`'s block back out.
    fn unpack(&self, r: usize) -> Self::Row;
}

impl PackedBlock for BlockQ8x4 {
    type Row = BlockQ8;
    fn pack(rows: [&BlockQ8; ROWS]) -> Self {
        let mut p = Self::zeroed();
        for (r, b) in rows.iter().enumerate() {
            p.d[r] = b.d;
            p.qs[r * QK..(r + 1) * QK].copy_from_slice(&b.qs);
        }
        p
    }
    fn unpack(&self, r: usize) -> BlockQ8 {
        let mut b = BlockQ8::zeroed();
        b.d = self.d[r];
        b.qs.copy_from_slice(&self.qs[r * QK..(r + 1) * QK]);
        b
    }
}

impl PackedBlock for BlockQ4x4 {
    type Row = BlockQ4;
    fn pack(rows: [&BlockQ4; ROWS]) -> Self {
        let mut p = Self::zeroed();
        for (r, b) in rows.iter().enumerate() {
            p.d[r] = b.d;
            p.qs[r * 16..(r + 1) * 16].copy_from_slice(&b.qs);
        }
        p
    }
    fn unpack(&self, r: usize) -> BlockQ4 {
        let mut b = BlockQ4::zeroed();
        b.d = self.d[r];
        b.qs.copy_from_slice(&self.qs[r * 16..(r + 1) * 16]);
        b
    }
}

impl PackedBlock for BlockQ4Ax4 {
    type Row = BlockQ4A;
    fn pack(rows: [&BlockQ4A; ROWS]) -> Self {
        let mut p = Self::zeroed();
        for (r, b) in rows.iter().enumerate() {
            p.d[r] = b.d;
            p.m[r] = b.m;
            p.qs[r * 16..(r + 1) * 16].copy_from_slice(&b.qs);
        }
        p
    }
    fn unpack(&self, r: usize) -> BlockQ4A {
        let mut b = BlockQ4A::zeroed();
        b.d = self.d[r];
        b.m = self.m[r];
        b.qs.copy_from_slice(&self.qs[r * 16..(r + 1) * 16]);
        b
    }
}

/// Number of packed groups for `rows` rows.
#[inline]
pub const fn groups(rows: usize) -> usize {
    rows.div_ceil(ROWS)
}

/// Pack a row-major matrix of single-row blocks (`rows × nb` blocks) into `out`
/// (`groups(rows) × nb` packed blocks). Missing rows of the last group are zero.
///
/// Returns an error when the lengths do not agree.
pub fn pack_matrix<P: PackedBlock>(
    src: &[P::Row],
    rows: usize,
    nb: usize,
    out: &mut [P],
) -> Result<(), crate::QuantError> {
    let need_src = rows
        .checked_mul(nb)
        .ok_or(crate::QuantError::LengthMismatch {
            what: "rows × blocks",
            expected: usize::MAX,
            got: src.len(),
        })?;
    if src.len() != need_src {
        return Err(crate::QuantError::LengthMismatch {
            what: "source blocks",
            expected: need_src,
            got: src.len(),
        });
    }
    let need_out = groups(rows) * nb;
    if out.len() != need_out {
        return Err(crate::QuantError::LengthMismatch {
            what: "packed blocks",
            expected: need_out,
            got: out.len(),
        });
    }
    let zero = P::Row::zeroed();
    for g in 0..groups(rows) {
        for kb in 0..nb {
            let row = |r: usize| {
                let i = g * ROWS + r;
                if i < rows {
                    &src[i * nb + kb]
                } else {
                    &zero
                }
            };
            out[g * nb + kb] = P::pack([row(0), row(1), row(2), row(3)]);
        }
    }
    Ok(())
}

/// Row `row`'s block `kb` of a packed matrix with `nb` blocks per row.
#[inline]
pub fn packed_row_block<P: PackedBlock>(packed: &[P], nb: usize, row: usize, kb: usize) -> P::Row {
    packed[(row / ROWS) * nb + kb].unpack(row % ROWS)
}
