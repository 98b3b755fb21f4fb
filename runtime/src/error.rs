//! The runtime's error type.
use thiserror::Error;

/// Everything that can go wrong in the runtime, with enough context to act on.
#[derive(Debug, Error)]
pub enum Error {
    /// An I/O error, with the path or action that failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A kernel rejected its arguments.
    #[error("kernel: {0}")]
    Quant(#[from] hearth_quant::QuantError),
    /// Malformed or hostile input file / data.
    #[error("{0}")]
    Format(String),
    /// A request that cannot be served (bad argument, unsupported model, full context…).
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}
