//! Errors of the safe API.
use core::fmt;

/// What the safe API rejects instead of reading out of bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuantError {
    /// A length is not a multiple of the block size [`crate::QK`].
    NotBlockMultiple {
        /// What was being measured (e.g. "columns").
        what: &'static str,
        /// The offending length.
        len: usize,
    },
    /// Two lengths that must agree do not.
    LengthMismatch {
        /// What was being compared.
        what: &'static str,
        /// The length required by the other arguments.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// A byte slice is not aligned for the block type it should hold.
    Misaligned {
        /// Required alignment in bytes.
        align: usize,
    },
    /// `HEARTH_KERNELS` (or a forced choice) names a kernel set this CPU cannot run.
    Unsupported {
        /// The requested kernel set.
        requested: &'static str,
    },
    /// `HEARTH_KERNELS` holds a name that is not a kernel set.
    UnknownKernelSet,
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantError::NotBlockMultiple { what, len } => {
                write!(
                    f,
                    "{what} = {len} is not a multiple of the block size {}",
                    crate::QK
                )
            }
            QuantError::LengthMismatch {
                what,
                expected,
                got,
            } => {
                write!(
                    f,
                    "length mismatch for {what}: expected {expected}, got {got}"
                )
            }
            QuantError::Misaligned { align } => {
                write!(f, "data is not aligned to {align} bytes")
            }
            QuantError::Unsupported { requested } => write!(
                f,
                "kernel set `{requested}` is not supported by this CPU (or this build's target)"
            ),
            QuantError::UnknownKernelSet => write!(
                f,
                "unknown kernel set; expected one of scalar, avx2, avx512vnni, neon, dotprod"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for QuantError {}
