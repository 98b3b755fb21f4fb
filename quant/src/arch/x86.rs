//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 VNNI.
use crate::dispatch::Kernels;

/// Supported x86 kernel sets, best first. (Kernels land here.)
pub fn available() -> &'static [&'static Kernels] {
    &[]
}
