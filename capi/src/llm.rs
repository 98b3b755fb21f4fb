//! The LLM entry points: load a model (engine), open sessions, generate with a
//! streaming callback and cancellation, tokenize and detokenize.
use std::ffi::{c_char, c_int, c_void};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use hearth_runtime::llm::{
    default_threads, generate, ChatMessage, ChatTemplate, Engine, EngineOptions, GenerateOptions,
    Role, Sampler, SamplerConfig, Session, StopReason,
};
use hearth_runtime::model::ModelFile;

use crate::handle::{self, Handle, Kind};
use crate::status::{guard, out_arg, str_arg, string_out, Failure, HearthStatus, Result};

/// A loaded model (weights, tokenizer, thread pool). Thread-safe: any number of
/// sessions on any threads may share one engine.
pub struct HearthEngine {
    engine: Engine,
}

impl Handle for HearthEngine {
    const KIND: Kind = Kind::Engine;
    const NAME: &'static str = "hearth_engine";
}

/// One conversation: a KV cache of fixed size on one engine. One call at a time
/// (a second concurrent call gets HEARTH_ERR_BUSY); only hearth_session_cancel may
/// be called from another thread while it generates.
pub struct HearthSession {
    engine: Engine,
    session: Mutex<Session>,
    cancel: AtomicBool,
}

impl Handle for HearthSession {
    const KIND: Kind = Kind::Session;
    const NAME: &'static str = "hearth_session";
}

/// Options for [`hearth_engine_load`]; start from [`hearth_engine_options_default`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HearthEngineOptions {
    /// Worker threads; 0 = one per core.
    pub threads: u32,
    /// Refuse to load when the weights plus one session of `max_ram_ctx` tokens would
    /// need more than this many bytes (0 = no check). The error gives the numbers.
    pub max_ram_bytes: u64,
    /// The context size the RAM check assumes (0 = min(2048, the model's)).
    pub max_ram_ctx: u32,
}

/// Why a generation ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HearthStop {
    /// `max_tokens` were generated.
    HearthStopMaxTokens = 0,
    /// The model ended its turn (end-of-sequence / end-of-turn token).
    HearthStopEndOfTurn = 1,
    /// The callback returned nonzero, or hearth_session_cancel was called.
    HearthStopCancelled = 2,
    /// The session's context is full.
    HearthStopContextFull = 3,
}

/// Options for [`hearth_generate`]; start from [`hearth_generate_options_default`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HearthGenerateOptions {
    /// Most tokens to generate (default 128).
    pub max_tokens: u32,
    /// 0 = greedy (the default, deterministic); above 0 samples.
    pub temperature: f32,
    /// Keep the k most likely tokens when sampling (0 = all; default 40).
    pub top_k: u32,
    /// Nucleus threshold (1 = off; default 0.95).
    pub top_p: f32,
    /// Drop tokens below this fraction of the top one's probability (default 0.05).
    pub min_p: f32,
    /// Repetition penalty over the last 64 tokens (1 = off, the default).
    pub repeat_penalty: f32,
    /// Sampling seed.
    pub seed: u64,
    /// false: wrap the prompt in the model's chat template as one user turn (with the
    /// model's default system prompt), like `hearth run -p`; true: feed it as is.
    pub raw: bool,
}

/// What [`hearth_generate`] did.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HearthGenerateResult {
    /// Prompt tokens (after the chat template).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Why it stopped.
    pub stop: HearthStop,
}

/// Called with each piece of generated text as it becomes final: `piece` is `len`
/// bytes of UTF-8 (whole characters), NUL-terminated, valid only during the call;
/// `token` is the id that completed it; `user` is the pointer given to
/// hearth_generate. Return 0 to continue, nonzero to stop (HEARTH_STOP_CANCELLED).
pub type HearthTokenCallback = Option<
    unsafe extern "C" fn(piece: *const c_char, len: usize, token: u32, user: *mut c_void) -> c_int,
>;

/// The defaults: one thread per core, no RAM check.
#[no_mangle]
pub extern "C" fn hearth_engine_options_default() -> HearthEngineOptions {
    HearthEngineOptions {
        threads: 0,
        max_ram_bytes: 0,
        max_ram_ctx: 0,
    }
}

/// The defaults: greedy, 128 tokens, chat template on.
#[no_mangle]
pub extern "C" fn hearth_generate_options_default() -> HearthGenerateOptions {
    HearthGenerateOptions {
        max_tokens: 128,
        temperature: 0.0,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.0,
        seed: 0,
        raw: false,
    }
}

fn default_ctx(engine: &Engine) -> usize {
    engine.hparams().context_length.min(2048)
}

/// Loads a Hearth model file (`hearth convert` makes one) and starts its engine.
/// `options` may be NULL (defaults). On success `*out` is a new engine to free with
/// hearth_engine_free.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `options` is NULL or points to a
/// hearth_engine_options; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_engine_load(
    path: *const c_char,
    options: *const HearthEngineOptions,
    out: *mut *mut HearthEngine,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all three): the caller's contract above.
        let out = unsafe { out_arg(out, "out") }?;
        *out = std::ptr::null_mut();
        let path = unsafe { str_arg(path, "path") }?;
        let o = unsafe { options.as_ref() }
            .copied()
            .unwrap_or_else(|| hearth_engine_options_default());
        let model = ModelFile::open(Path::new(path))?;
        let opts = EngineOptions {
            threads: if o.threads == 0 {
                default_threads()
            } else {
                o.threads as usize
            },
            ..Default::default()
        };
        if o.max_ram_bytes > 0 {
            let ctx = match o.max_ram_ctx {
                0 => model.config().context_length.min(2048),
                c => c as usize,
            };
            hearth_runtime::llm::MemoryEstimate::for_model(&model, ctx, &opts)?
                .check(o.max_ram_bytes, "max_ram_bytes")?;
        }
        let engine = Engine::load(Arc::new(model), opts)?;
        *out = handle::register(HearthEngine { engine });
        Ok(())
    })
}

/// Frees an engine. Sessions created from it stay usable (they keep the model alive).
/// NULL gives HEARTH_ERR_NULL_ARG; a second free HEARTH_ERR_INVALID_HANDLE.
///
/// # Safety
/// `engine` is any pointer (it is looked up first); no other thread uses it meanwhile.
#[no_mangle]
pub unsafe extern "C" fn hearth_engine_free(engine: *mut HearthEngine) -> HearthStatus {
    // SAFETY: the caller's contract.
    guard(|| unsafe { handle::take(engine) }.map(drop))
}

/// Opens a session with a KV cache of `ctx` tokens (0 = min(2048, the model's)),
/// allocated now.
///
/// # Safety
/// `engine` is any pointer (looked up first); `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_session_new(
    engine: *const HearthEngine,
    ctx: u32,
    out: *mut *mut HearthSession,
) -> HearthStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { out_arg(out, "out") }?;
        *out = std::ptr::null_mut();
        let e = &unsafe { handle::get(engine) }?.engine;
        let ctx = if ctx == 0 {
            default_ctx(e)
        } else {
            ctx as usize
        };
        let session = e.new_session(ctx)?;
        *out = handle::register(HearthSession {
            engine: e.clone(),
            session: Mutex::new(session),
            cancel: AtomicBool::new(false),
        });
        Ok(())
    })
}

/// Frees a session. HEARTH_ERR_BUSY while it generates (cancel it first).
///
/// # Safety
/// `session` is any pointer (looked up first).
#[no_mangle]
pub unsafe extern "C" fn hearth_session_free(session: *mut HearthSession) -> HearthStatus {
    guard(|| {
        // SAFETY: the caller's contract; the lock check below refuses a busy session.
        let s = unsafe { handle::get(session) }?;
        if matches!(s.session.try_lock(), Err(TryLockError::WouldBlock)) {
            return Err(busy());
        }
        unsafe { handle::take(session) }.map(drop)
    })
}

/// Asks a running hearth_generate on this session to stop after the current token
/// (it returns HEARTH_OK with HEARTH_STOP_CANCELLED). Safe to call from any thread;
/// a cancel while nothing runs is forgotten when the next generation starts.
///
/// # Safety
/// `session` is any pointer (looked up first).
#[no_mangle]
pub unsafe extern "C" fn hearth_session_cancel(session: *const HearthSession) -> HearthStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { handle::get(session) }?
            .cancel
            .store(true, Ordering::SeqCst);
        Ok(())
    })
}

fn busy() -> Failure {
    Failure::new(
        HearthStatus::HearthErrBusy,
        "hearth_session: another call is using this session",
    )
}

fn lock(s: &HearthSession) -> Result<std::sync::MutexGuard<'_, Session>> {
    match s.session.try_lock() {
        Ok(g) => Ok(g),
        Err(TryLockError::WouldBlock) => Err(busy()),
        Err(TryLockError::Poisoned(_)) => Err(Failure::new(
            HearthStatus::HearthErrPanic,
            "hearth_session: an earlier call panicked; free this session",
        )),
    }
}

fn prompt_ids(engine: &Engine, prompt: &str, raw: bool) -> Result<Vec<u32>> {
    let text = if raw {
        prompt.to_string()
    } else {
        let tpl = ChatTemplate::from_model(engine.info().chat_template.as_deref())?;
        tpl.render(&[ChatMessage::new(Role::User, prompt)], true)
    };
    Ok(engine.tokenize(&text, engine.info().add_bos)?)
}

/// Generates a reply to `prompt` (UTF-8) in `session`, streaming text pieces to
/// `on_token` (may be NULL). A prompt that starts like the session's previous one
/// only runs the new part (the chat template's system prompt is cached).
/// `options` may be NULL (defaults: greedy, 128 tokens, chat template). If `out_text`
/// is not NULL it receives the whole reply (free with hearth_string_free); if
/// `out_result` is not NULL it receives the counts and the stop reason.
///
/// # Safety
/// `session` is any pointer (looked up first); `prompt` is NULL or NUL-terminated;
/// `options` is NULL or valid; `out_text`, `out_result` are NULL or writable;
/// `on_token` is NULL or a function following [`HearthTokenCallback`]'s contract.
#[no_mangle]
pub unsafe extern "C" fn hearth_generate(
    session: *mut HearthSession,
    prompt: *const c_char,
    options: *const HearthGenerateOptions,
    on_token: HearthTokenCallback,
    user: *mut c_void,
    out_text: *mut *mut c_char,
    out_result: *mut HearthGenerateResult,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        if let Some(t) = unsafe { out_text.as_mut() } {
            *t = std::ptr::null_mut();
        }
        let s = unsafe { handle::get(session) }?;
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        let o = unsafe { options.as_ref() }
            .copied()
            .unwrap_or_else(|| hearth_generate_options_default());
        let mut sampler = Sampler::new(SamplerConfig {
            temperature: o.temperature,
            top_k: o.top_k as usize,
            top_p: o.top_p,
            min_p: o.min_p,
            repeat_penalty: o.repeat_penalty,
            repeat_last_n: 64,
            seed: o.seed,
        })?;
        let ids = prompt_ids(&s.engine, prompt, o.raw)?;
        let mut guard = lock(s)?;
        s.cancel.store(false, Ordering::SeqCst);
        let opts = GenerateOptions {
            max_tokens: o.max_tokens as usize,
            ..Default::default()
        };
        let mut buf = Vec::new();
        let g = generate(&mut guard, &ids, &mut sampler, &opts, |piece, id| {
            if s.cancel.load(Ordering::SeqCst) {
                return ControlFlow::Break(());
            }
            let Some(cb) = on_token else {
                return ControlFlow::Continue(());
            };
            buf.clear();
            buf.extend_from_slice(piece.as_bytes());
            buf.push(0);
            // SAFETY: `buf` is NUL-terminated and outlives the call; the callback's
            // contract is the caller's.
            let stop = unsafe { cb(buf.as_ptr().cast(), piece.len(), id, user) };
            if stop != 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        drop(guard);
        if let Some(r) = unsafe { out_result.as_mut() } {
            *r = HearthGenerateResult {
                prompt_tokens: ids.len() as u32,
                generated_tokens: g.ids.len() as u32,
                stop: match g.stop {
                    StopReason::MaxTokens => HearthStop::HearthStopMaxTokens,
                    StopReason::StopToken(_) | StopReason::StopString => {
                        HearthStop::HearthStopEndOfTurn
                    }
                    StopReason::Cancelled => HearthStop::HearthStopCancelled,
                    StopReason::ContextFull => HearthStop::HearthStopContextFull,
                },
            };
        }
        if let Some(t) = unsafe { out_text.as_mut() } {
            *t = string_out(g.text, "the generated text")?;
        }
        Ok(())
    })
}

/// Token ids of `text` (UTF-8; special tokens such as `<|im_start|>` recognised),
/// with the model's BOS first when `add_bos` and the model has one. `*out_ids` gets
/// an array of `*out_len` ids to free with hearth_ids_free (NULL when empty).
///
/// # Safety
/// `engine` is any pointer (looked up first); `text` is NULL or NUL-terminated;
/// `out_ids`, `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_tokenize(
    engine: *const HearthEngine,
    text: *const c_char,
    add_bos: bool,
    out_ids: *mut *mut u32,
    out_len: *mut usize,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        let out_ids = unsafe { out_arg(out_ids, "out_ids") }?;
        let out_len = unsafe { out_arg(out_len, "out_len") }?;
        *out_ids = std::ptr::null_mut();
        *out_len = 0;
        let e = &unsafe { handle::get(engine) }?.engine;
        let text = unsafe { str_arg(text, "text") }?;
        let ids = e.tokenize(text, add_bos)?;
        *out_len = ids.len();
        *out_ids = handle::register_ids(ids);
        Ok(())
    })
}

/// Frees an array from hearth_tokenize (NULL is ignored).
///
/// # Safety
/// `ids` is any pointer (looked up first).
#[no_mangle]
pub unsafe extern "C" fn hearth_ids_free(ids: *mut u32) -> HearthStatus {
    guard(|| {
        if ids.is_null() {
            return Ok(());
        }
        // SAFETY: looked up before use.
        unsafe { handle::free_ids(ids) }
    })
}

/// The text of `n` token ids (special tokens included), UTF-8, in `*out_text` (free
/// with hearth_string_free). Ids outside the vocabulary are an error.
///
/// # Safety
/// `engine` is any pointer (looked up first); `ids` is NULL or points to `n` ids;
/// `out_text` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_detokenize(
    engine: *const HearthEngine,
    ids: *const u32,
    n: usize,
    out_text: *mut *mut c_char,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        let out = unsafe { out_arg(out_text, "out_text") }?;
        *out = std::ptr::null_mut();
        let e = &unsafe { handle::get(engine) }?.engine;
        let ids: &[u32] = match (ids.is_null(), n) {
            (_, 0) => &[],
            (true, _) => return Err(Failure::null("ids")),
            (false, n) => {
                if n > isize::MAX as usize / 4 {
                    return Err(Failure::new(
                        HearthStatus::HearthErrInvalid,
                        format!("n = {n} ids cannot be an array"),
                    ));
                }
                // SAFETY: non-NULL, `n` ids long by the caller's contract, size checked.
                unsafe { std::slice::from_raw_parts(ids, n) }
            }
        };
        let vocab = e.hparams().vocab_size;
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Failure::new(
                HearthStatus::HearthErrInvalid,
                format!("token id {bad} is outside the vocabulary ({vocab})"),
            ));
        }
        *out = string_out(e.detokenize(ids)?, "the text")?;
        Ok(())
    })
}
