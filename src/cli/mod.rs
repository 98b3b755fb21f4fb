//! Subcommands, one module each.
pub mod bench;
pub mod chat;
pub mod convert;
pub mod inspect;
pub mod perplexity;
pub mod run;
