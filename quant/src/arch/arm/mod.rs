//! aarch64 kernels: base NEON (every aarch64 CPU) and NEON + dotprod (`sdot`).
//!
//! The crate is built for baseline aarch64; the dotprod set is only handed out when
//! the running CPU has the feature: with `std`, detected at run time
//! (`is_aarch64_feature_detected!`, i.e. the kernel's HWCAP); without `std`, only if
//! the build itself targets it (`-C target-feature=+dotprod`).
use crate::dispatch::{KernelSetName, Kernels};

mod common;
mod dotprod;
mod neon;

// Private: a table must only be reachable through `available()`, which checks the CPU.
static NEON: Kernels = Kernels {
    name: KernelSetName::Neon,
    quantize_q8: neon::quantize_row_q8,
    gemv_q8: neon::gemv_q8,
    gemv_q4: neon::gemv_q4,
    gemv_q4a: neon::gemv_q4a,
    gemm_q8: neon::gemm_q8,
    gemm_q4: neon::gemm_q4,
    gemm_q4a: neon::gemm_q4a,
    // The generic f32 product vectorizes to NEON as compiled (NEON is baseline).
    gemm_f32: crate::generic::gemm_f32_generic,
    gemm_f16b: crate::generic::gemm_f16b_generic,
};

static DOTPROD: Kernels = Kernels {
    name: KernelSetName::Dotprod,
    // Quantizing is float work; `sdot` does not help it.
    quantize_q8: neon::quantize_row_q8,
    gemv_q8: dotprod::gemv_q8,
    gemv_q4: dotprod::gemv_q4,
    gemv_q4a: dotprod::gemv_q4a,
    gemm_q8: dotprod::gemm_q8,
    gemm_q4: dotprod::gemm_q4,
    gemm_q4a: dotprod::gemm_q4a,
    gemm_f32: crate::generic::gemm_f32_generic,
    gemm_f16b: crate::generic::gemm_f16b_generic,
};

/// Whether this CPU can run the dotprod set.
fn has_dotprod() -> bool {
    #[cfg(feature = "std")]
    {
        std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(target_feature = "dotprod")
    }
}

/// Supported aarch64 kernel sets, best first.
pub fn available() -> &'static [&'static Kernels] {
    static WITH_DOTPROD: [&Kernels; 2] = [&DOTPROD, &NEON];
    static BASE: [&Kernels; 1] = [&NEON];
    if has_dotprod() {
        &WITH_DOTPROD
    } else {
        &BASE
    }
}
