//! # hearth-runtime
//!
//! Everything above the kernels: the memory-mapped Hearth model file and its
//! importers, the LLM engine, and (as they land) voice, intents and actions.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod action;
pub mod assist;
pub mod convert;
pub mod error;
pub mod gguf;
pub mod intent;
pub mod llm;
pub mod model;
#[cfg(feature = "serve")]
pub mod serve;
pub mod tokenizer;
pub mod voice;

pub use error::{Error, Result};
