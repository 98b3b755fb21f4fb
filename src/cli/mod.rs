//! The CLI's subcommands, one module each.
pub mod bench;
pub mod chat;
pub mod perplexity;
pub mod run;
