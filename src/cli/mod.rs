//! Subcommands, one module each.
pub mod intent;
