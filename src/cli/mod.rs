//! Subcommands, one module each.
pub mod convert;
pub mod inspect;
pub mod intent;
