//! aarch64 kernels: base NEON and NEON + dotprod.
use crate::dispatch::Kernels;

/// Supported aarch64 kernel sets, best first. (Kernels land here.)
pub fn available() -> &'static [&'static Kernels] {
    &[]
}
