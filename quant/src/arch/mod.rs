//! Per-architecture kernels. Each module exposes its kernel sets and a check of
//! whether this CPU runs them; [`available`] lists the supported sets, best first.
use crate::dispatch::Kernels;

#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(target_arch = "aarch64")]
pub mod arm;

/// Kernel sets this CPU supports, best first (the scalar set is not listed).
pub fn available() -> &'static [&'static Kernels] {
    #[cfg(target_arch = "x86_64")]
    return x86::available();
    #[cfg(target_arch = "aarch64")]
    return arm::available();
    #[allow(unreachable_code)]
    &[]
}
