//! [`Engine`] (weights + kernels + thread team, shared) and [`Session`] (one
//! conversation's KV cache and position).
use crate::llm::forward::{self, Exec, Logits, Scratch};
use crate::llm::kv::{KvCache, KvType};
use crate::llm::ops::RopeTable;
use crate::llm::team::Team;
use crate::llm::weights::{Hparams, Weights};
use crate::tokenizer::Bpe;
use crate::{Error, Result};
use hearth_quant::Kernels;
use std::sync::{Arc, OnceLock};
use tokenizers::Tokenizer;

/// Most threads a pool may have; more is a typo, not a configuration.
pub const MAX_THREADS: usize = 256;

/// What the engine needs to know about a model besides its tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelInfo {
    /// Display name.
    pub name: String,
    /// Beginning-of-sequence token, if the model has one.
    pub bos_id: Option<u32>,
    /// End-of-sequence token.
    pub eos_id: u32,
    /// Tokens that end a generation (eos and end-of-turn).
    pub stop_ids: Vec<u32>,
    /// Whether text is tokenized with a leading BOS.
    pub add_bos: bool,
    /// The model's chat template (Jinja source), if it ships one.
    pub chat_template: Option<String>,
}

/// Something that holds a model's tensors and can lend them as [`Weights`]: the
/// memory-mapped model file, or in-memory tensors in tests.
pub trait WeightSource: Send + Sync + 'static {
    /// Borrow every tensor (validated by the engine after this returns).
    fn weights(&self) -> Result<Weights<'_>>;
    /// Model metadata.
    fn info(&self) -> ModelInfo;
    /// A `tokenizers` JSON document, if the model ships a tokenizer.
    fn tokenizer_json(&self) -> Option<&str>;
    /// The fast tokenizer's tables, read in place, if the source has them (then the
    /// JSON is only parsed if [`Engine::tokenizer`] is asked for).
    fn tokenizer_tables(&self) -> Option<Bpe<'_>> {
        None
    }
}

self_cell::self_cell!(
    /// The source and the weights borrowed from it, kept together.
    struct Loaded {
        owner: Arc<dyn WeightSource>,
        #[covariant]
        dependent: Weights,
    }
);

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Worker threads (1 = no team: everything on the calling thread).
    pub threads: usize,
    /// KV cache storage type for new sessions.
    pub kv_type: KvType,
    /// Most prompt tokens per forward pass (each weight is read once per batch).
    /// Default 64: against 32, a 512-token prefill ran 6–12% faster at 1 and 2 threads
    /// and a 50-token prompt fits one pass (7% faster); 128 was no faster and 256–512
    /// slower (the activations of a batch no longer stay in L2) — BENCHMARKS.md
    /// "Prefill batch 64". The attention scores scratch grows with it
    /// (`n_heads × batch × ctx` f32).
    pub batch: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            kv_type: KvType::F16,
            batch: 64,
        }
    }
}

/// Parse a tokenizer.json (`None` when there is none).
fn parse_tokenizer(json: Option<&str>) -> Result<Option<Tokenizer>> {
    json.map(|j| {
        j.parse::<Tokenizer>()
            .map_err(|e| Error::Format(format!("model tokenizer: {e}")))
    })
    .transpose()
}

/// The machine's parallelism (1 if unknown).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

struct Inner {
    loaded: Loaded,
    info: ModelInfo,
    /// Whether the source has fast tokenizer tables (then they do all tokenizing).
    fast_tokenizer: bool,
    /// The `tokenizers`-crate tokenizer: parsed at load when there are no tables,
    /// else on first use of [`Engine::tokenizer`] (it costs ~200 ms and ~30 MiB).
    reference: OnceLock<std::result::Result<Option<Tokenizer>, String>>,
    kernels: &'static Kernels,
    /// The forward pass's thread team (none with one thread).
    team: Option<Team>,
    opts: EngineOptions,
}

/// A loaded model ready to run: cheap to clone (shared), `Send + Sync`.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.inner.info.name)
            .field("opts", &self.inner.opts)
            .finish()
    }
}

impl Engine {
    /// Load from any weight source: validates every tensor's shape, opens the
    /// tokenizer (its stored tables, or else its JSON, parsed), picks the kernels (`HEARTH_KERNELS` honoured) and starts the pool.
    pub fn from_source(source: Arc<dyn WeightSource>, opts: EngineOptions) -> Result<Engine> {
        if opts.threads == 0 || opts.threads > MAX_THREADS {
            return Err(Error::Invalid(format!(
                "threads must be between 1 and {MAX_THREADS}, got {}",
                opts.threads
            )));
        }
        if opts.batch == 0 {
            return Err(Error::Invalid("batch size must be at least 1".into()));
        }
        let info = source.info();
        let fast_tokenizer = source.tokenizer_tables().is_some();
        let reference = OnceLock::new();
        if !fast_tokenizer {
            let parsed = parse_tokenizer(source.tokenizer_json())?;
            let _ = reference.set(Ok(parsed));
        }
        let loaded = Loaded::try_new(source, |s| s.weights())?;
        loaded.borrow_dependent().validate()?;
        let kernels = Kernels::detect()?;
        let team = if opts.threads > 1 {
            Some(Team::new(opts.threads)?)
        } else {
            None
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                loaded,
                info,
                fast_tokenizer,
                reference,
                kernels,
                team,
                opts,
            }),
        })
    }

    /// Hyper-parameters.
    pub fn hparams(&self) -> &Hparams {
        &self.weights().hp
    }
    /// Model metadata.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }
    /// Settings.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.opts
    }
    /// The kernel set in use.
    pub fn kernels(&self) -> &'static Kernels {
        self.inner.kernels
    }
    /// The `tokenizers`-crate tokenizer (the reference the fast one is tested
    /// against), or an error when the model ships none. With stored tables it is
    /// parsed on the first call (~200 ms); [`tokenize`](Self::tokenize) and
    /// [`detokenize`](Self::detokenize) never need it then.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        let parsed = self.inner.reference.get_or_init(|| {
            parse_tokenizer(self.inner.loaded.borrow_owner().tokenizer_json())
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(Error::Invalid("this model has no tokenizer".into())),
            Err(e) => Err(Error::Format(e.clone())),
        }
    }

    /// The fast tokenizer, when the model file has its tables.
    pub fn fast_tokenizer(&self) -> Option<Bpe<'_>> {
        if !self.inner.fast_tokenizer {
            return None;
        }
        self.inner.loaded.borrow_owner().tokenizer_tables()
    }

    /// Whether the model can tokenize at all.
    pub fn has_tokenizer(&self) -> bool {
        self.inner.fast_tokenizer || self.tokenizer().is_ok()
    }

    fn weights(&self) -> &Weights<'_> {
        self.inner.loaded.borrow_dependent()
    }

    /// Tokenize `text` (special tokens such as `<|im_start|>` are recognised),
    /// with a leading BOS when `add_bos` and the model has one.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if add_bos {
            if let Some(b) = self.inner.info.bos_id {
                ids.push(b);
            }
        }
        if let Some(fast) = self.fast_tokenizer() {
            ids.extend(fast.encode(text));
            return Ok(ids);
        }
        let enc = self
            .tokenizer()?
            .encode(text, false)
            .map_err(|e| Error::Invalid(format!("tokenize: {e}")))?;
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids` (special tokens included).
    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        if let Some(fast) = self.fast_tokenizer() {
            return Ok(fast.decode(ids));
        }
        self.tokenizer()?
            .decode(ids, false)
            .map_err(|e| Error::Invalid(format!("detokenize: {e}")))
    }

    /// A new session with a KV cache for `ctx` tokens, allocated now.
    pub fn new_session(&self, ctx: usize) -> Result<Session> {
        let hp = self.hparams();
        if ctx == 0 {
            return Err(Error::Invalid("context length must be at least 1".into()));
        }
        if ctx > hp.context_length {
            return Err(Error::Invalid(format!(
                "context {ctx} exceeds the {} tokens the model was trained for",
                hp.context_length
            )));
        }
        let kv = KvCache::new(
            self.inner.opts.kv_type,
            hp.n_layers,
            hp.n_kv_heads,
            hp.head_dim,
            ctx,
        )?;
        let batch = self.inner.opts.batch.min(ctx);
        Ok(Session {
            engine: self.clone(),
            kv,
            scratch: Scratch::new(hp, ctx, batch, self.inner.opts.kv_type),
            rope: Arc::new(RopeTable::new(hp.head_dim, hp.rope_theta, ctx)),
            tokens: Vec::with_capacity(ctx),
        })
    }
}

/// One conversation: the tokens seen so far and their keys and values.
///
/// Clone a session to fork it, e.g. after prefilling a fixed system prompt once:
/// every clone continues from the same cached prefix.
#[derive(Clone)]
pub struct Session {
    engine: Engine,
    kv: KvCache,
    scratch: Scratch,
    rope: Arc<RopeTable>,
    tokens: Vec<u32>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("len", &self.tokens.len())
            .field("ctx", &self.kv.capacity())
            .finish()
    }
}

impl Session {
    /// The engine this session runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    /// Tokens in the cache, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    /// Number of cached tokens (the next token's position).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    /// The context budget in tokens.
    pub fn capacity(&self) -> usize {
        self.kv.capacity()
    }
    /// Bytes of the KV cache and scratch buffers (fixed for the session's life).
    pub fn memory_bytes(&self) -> usize {
        self.kv.bytes() + self.scratch.bytes()
    }
    /// Forget everything after the first `n` tokens (no-op if `n ≥ len`).
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
    }
    /// Forget everything.
    pub fn reset(&mut self) {
        self.tokens.clear();
    }

    /// Append `ids` and return the logits of the last one (`[vocab]`).
    pub fn prefill(&mut self, ids: &[u32]) -> Result<&[f32]> {
        self.run(ids, Logits::Last, &mut |_, _| {})?;
        Ok(&self.scratch.logits[..self.engine.hparams().vocab_size])
    }

    /// Append one token and return the next token's logits.
    pub fn decode(&mut self, id: u32) -> Result<&[f32]> {
        self.prefill(std::slice::from_ref(&id))
    }

    /// Append `ids`, calling `f(i, logits)` for every `i ≥ from` with the logits
    /// that follow `ids[i]` (teacher forcing, perplexity).
    pub fn eval_logits(
        &mut self,
        ids: &[u32],
        from: usize,
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.run(ids, Logits::From(from), &mut f)
    }

    /// Make the cache hold exactly `ids` and return the logits after the last one,
    /// re-using the longest common prefix already cached: a chat turn only runs its
    /// new tokens.
    pub fn sync(&mut self, ids: &[u32]) -> Result<&[f32]> {
        if ids.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        if ids.len() > self.capacity() {
            // Checked before truncating, so a rejected sync leaves the cache intact.
            return Err(Error::Invalid(format!(
                "context full: {} tokens exceed the {}-token context",
                ids.len(),
                self.capacity()
            )));
        }
        let common = self
            .tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count();
        // At least the last token must run to produce logits.
        let keep = common.min(ids.len() - 1);
        self.truncate(keep);
        self.prefill(&ids[keep..])
    }

    /// Run `ids` in batches; `f(i, logits)` receives the wanted logits.
    fn run(&mut self, ids: &[u32], want: Logits, f: &mut dyn FnMut(usize, &[f32])) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::Invalid("empty prompt: nothing to evaluate".into()));
        }
        let cap = self.kv.capacity();
        if self.tokens.len() + ids.len() > cap {
            return Err(Error::Invalid(format!(
                "context full: {} cached + {} new tokens exceed the {cap}-token context",
                self.tokens.len(),
                ids.len()
            )));
        }
        let engine = self.engine.clone();
        let hp = engine.hparams();
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= hp.vocab_size) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary ({})",
                hp.vocab_size
            )));
        }
        let inner = &engine.inner;
        let ex = Exec {
            kernels: inner.kernels,
            team: inner.team.as_ref(),
        };
        let w = engine.weights();
        let vocab = hp.vocab_size;
        let batch = self.scratch.batch;
        for (c, chunk) in ids.chunks(batch).enumerate() {
            let start = c * batch;
            let last = start + chunk.len() == ids.len();
            let mode = match want {
                Logits::Last if last => Logits::Last,
                Logits::From(from) if from < start + chunk.len() => {
                    Logits::From(from.saturating_sub(start))
                }
                _ => Logits::None,
            };
            let pos = self.tokens.len();
            let (kv, rope, scratch) = (&mut self.kv, &*self.rope, &mut self.scratch);
            forward::forward(w, ex, kv, rope, scratch, chunk, pos, mode)?;
            self.tokens.extend_from_slice(chunk);
            if let Logits::From(from) = mode {
                for (i, row) in self
                    .scratch
                    .logits
                    .chunks_exact(vocab)
                    .take(chunk.len() - from)
                    .enumerate()
                {
                    f(start + from + i, row);
                }
            }
        }
        Ok(())
    }
}
