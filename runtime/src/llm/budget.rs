//! Memory needed to run a model, estimated before anything is allocated, so a board
//! with too little RAM gets a clear error up front instead of an OOM kill later.
//!
//! weights (the mapped model file, all of it resident while generating)
//! + KV cache (exact: [`KvCache::bytes_for`])
//! + scratch (the forward pass's buffers, sized by the same `forward::ScratchLens`
//!   that `Scratch::new` allocates)
//! + a fixed runtime overhead (tokenizer, thread stacks, code).
use crate::llm::engine::EngineOptions;
use crate::llm::forward::ScratchLens;
use crate::llm::kv::KvCache;
use crate::llm::weights::Hparams;
use crate::model::{ModelConfig, ModelFile};
use crate::{Error, Result};

/// Tokenizer tables, thread stacks, code and allocator slack (measured peak RSS of
/// `hearth run` on SmolLM2-135M minus weights, KV and scratch was under this).
pub const RUNTIME_OVERHEAD: u64 = 48 << 20;

/// The parts of an estimate, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The context the estimate is for (tokens).
    pub ctx: usize,
    /// The model file (mapped).
    pub weights: u64,
    /// One session's KV cache.
    pub kv_cache: u64,
    /// One session's scratch buffers.
    pub scratch: u64,
    /// [`RUNTIME_OVERHEAD`].
    pub overhead: u64,
}

impl MemoryEstimate {
    /// For `model` with one session of `ctx` tokens under `opts`.
    pub fn for_model(model: &ModelFile, ctx: usize, opts: &EngineOptions) -> Result<Self> {
        Self::for_config(model.config(), model.file_len() as u64, ctx, opts)
    }

    /// For a model of config `c` stored in `file_bytes`.
    pub fn for_config(
        c: &ModelConfig,
        file_bytes: u64,
        ctx: usize,
        opts: &EngineOptions,
    ) -> Result<Self> {
        if ctx == 0 || ctx > c.context_length {
            return Err(Error::Invalid(format!(
                "context {ctx} must be between 1 and the {} tokens the model was trained for",
                c.context_length
            )));
        }
        let hp = Hparams::from_config(c);
        let kv = KvCache::bytes_for(opts.kv_type, hp.n_layers, hp.n_kv_heads, hp.head_dim, ctx);
        Ok(Self {
            ctx,
            weights: file_bytes,
            kv_cache: kv as u64,
            scratch: ScratchLens::new(&hp, ctx, opts.batch.min(ctx), opts.kv_type).bytes() as u64,
            overhead: RUNTIME_OVERHEAD,
        })
    }

    /// Everything together.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.scratch + self.overhead
    }

    /// An error with the numbers when the total exceeds `limit` bytes; `what` names
    /// the limit (a board profile, `--max-ram`).
    pub fn check(&self, limit: u64, what: &str) -> Result<()> {
        if self.total() <= limit {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "not enough RAM: this model with a {}-token context needs about {} \
             (weights {} + KV cache {} + scratch {} + runtime {}), but {what} allows {}; \
             use a smaller context (--ctx) or model",
            self.ctx,
            mib(self.total()),
            mib(self.weights),
            mib(self.kv_cache),
            mib(self.scratch),
            mib(self.overhead),
            mib(limit)
        )))
    }
}

/// `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
