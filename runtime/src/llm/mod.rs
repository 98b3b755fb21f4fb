//! The LLM engine: a Llama-family forward pass (Llama, SmolLM2, Qwen2) over the
//! Hearth model file's packed weights, a fixed-budget KV cache, sampling, the ChatML
//! template, streaming generation and perplexity.
//!
//! ```text
//! Engine (shared: weights, kernels, thread team)
//!   └─ Session (one conversation: KV cache, tokens)  ── prefill / decode / sync
//!        └─ generate(session, prompt, sampler, opts, on_piece)
//! ```
pub mod budget;
pub mod chat;
pub mod engine;
mod forward;
pub mod generate;
pub mod kv;
mod model;
pub mod ops;
pub mod perplexity;
pub mod sampler;
mod team;
pub mod weights;

pub use budget::MemoryEstimate;
pub use chat::{ChatMessage, ChatTemplate, Role};
pub use engine::{
    default_threads, Engine, EngineOptions, ModelInfo, Session, WeightSource, MAX_THREADS,
};
pub use generate::{generate, GenerateOptions, Generation, StopMatcher, StopReason, TextStream};
pub use kv::{KvCache, KvType};
pub use ops::RopeStyle;
pub use perplexity::{perplexity, Perplexity};
pub use sampler::{Sampler, SamplerConfig};
pub use weights::{Hparams, LayerWeights, Matrix, Weights};
