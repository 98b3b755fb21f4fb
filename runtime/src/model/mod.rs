//! The Hearth model file: one file holding config, tokenizer and pre-packed tensors,
//! loaded by mapping it and validating the header (spec: `docs/model-format.md`).
//!
//! - [`format`]: the byte layout (header, tensor table, formats).
//! - [`config`]: [`ModelConfig`] and the tensors it implies.
//! - [`reader`]: [`ModelFile`], the validated zero-copy view.
//! - [`writer`]: [`ModelWriter`], the streaming writer used by the converters.
pub mod config;
pub mod format;
pub mod pack;
pub mod reader;
pub mod synth;
pub mod writer;

pub use config::{Arch, ModelConfig, RopeStyle, TensorSpec};
pub use format::TensorFormat;
pub use reader::{Advice, LoadOptions, ModelFile, Tensor, TensorData, TensorInfo};
pub use writer::ModelWriter;
