//! # hearth-quant
//!
//! Hearth's own block-quantization formats and the kernels that compute with them.
//! `#![no_std]`, no allocator: the same code runs the LLM on a Raspberry Pi and a
//! classifier on a Cortex-M.
//!
//! Layout of the crate (the rule that keeps SIMD sane):
//! - [`block`]: the block types (`BlockQ8`, `BlockQ4`, `BlockQ4A`), 32 values each.
//! - [`packed`]: the row-interleaved layouts the matvec/matmul kernels read
//!   (`BlockQ8x4`, `BlockQ4x4`, `BlockQ4Ax4`: four rows side by side).
//! - [`quantize`]: scalar reference quantizers and dequantizers.
//! - [`generic`]: the scalar reference kernels (`_generic`), the ground truth every
//!   SIMD kernel is tested against.
//! - [`arch`]: one module per architecture with that architecture's kernels.
//! - [`classifier`]: a small intent classifier (featurizer, Hearth-file reader, forward
//!   pass) shared by the host trainer and the firmware.
//! - [`dispatch`]: the one place that picks a kernel set from the CPU's features,
//!   and the safe API ([`Kernels`]) that checks every length before calling a kernel.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod arch;
pub mod block;
pub mod classifier;
pub mod dispatch;
pub mod error;
pub mod generic;
pub mod packed;
pub mod quantize;

pub use block::{BlockQ4, BlockQ4A, BlockQ8, QK};
pub use dispatch::{BLayout, KernelSetName, Kernels, PackedMatrix};
pub use error::QuantError;
pub use packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, PackedBlock, ROWS};
