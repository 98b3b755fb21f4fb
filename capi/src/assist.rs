//! The whole assistant on one utterance: PCM (speech-to-text, feature `whisper`) or
//! text → intent (templates, fuzzy, then the optional LLM) → actions → response, as
//! the event JSON `hearth assist --json` prints.
use std::ffi::c_char;
use std::path::Path;
use std::sync::{Arc, Mutex, TryLockError};

use hearth_runtime::action::{self, Actions};
use hearth_runtime::assist::llm::{LlmFallback, LlmOptions};
use hearth_runtime::assist::{AssistResult, Assistant};
use hearth_runtime::intent::{default_data_path, Home, IntentEngine};
use hearth_runtime::llm::{default_threads, Engine, EngineOptions};
use hearth_runtime::model::ModelFile;

use crate::handle::{self, Handle, Kind};
use crate::status::{guard, out_arg, str_arg, string_out, Failure, HearthStatus, Result};

/// A loaded assistant (intents, home, action sinks, optional LLM and speech-to-text).
/// One call at a time (HEARTH_ERR_BUSY otherwise).
pub struct HearthAssistant {
    inner: Mutex<Assistant>,
    has_stt: bool,
}

impl Handle for HearthAssistant {
    const KIND: Kind = Kind::Assistant;
    const NAME: &'static str = "hearth_assistant";
}

/// Loads an assistant for the home file `home_path` (YAML, docs/home-file.md; its
/// `actions:` sinks run on every event, except `stdout`: the event comes back as JSON)
/// with the English intent templates of `$HEARTH_HOME/intents/en.json`.
/// `llm_path`: a Hearth model for the LLM fallback stage (tried when no template
/// matches), or NULL for none. `whisper_path`: a whisper.cpp ggml model for
/// hearth_assist_pcm, or NULL for a text-only assistant (a build without the `whisper`
/// feature gives HEARTH_ERR_UNSUPPORTED for a non-NULL one). `threads`: CPU threads of
/// the LLM and speech-to-text (0 = up to 4). `*out` gets a handle to free with
/// hearth_assistant_free.
///
/// # Safety
/// `llm_path` and `whisper_path` are NULL or NUL-terminated, `home_path` is
/// NUL-terminated (NULL is refused), `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_assistant_load(
    llm_path: *const c_char,
    whisper_path: *const c_char,
    home_path: *const c_char,
    threads: u32,
    out: *mut *mut HearthAssistant,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        let out = unsafe { out_arg(out, "out") }?;
        *out = std::ptr::null_mut();
        let home = unsafe { str_arg(home_path, "home_path") }?;
        let llm = opt_str(llm_path, "llm_path")?;
        let whisper = opt_str(whisper_path, "whisper_path")?;
        let threads = match threads {
            0 => default_threads().min(4),
            t => t as usize,
        };
        let assistant = load(Path::new(home), llm, whisper, threads)?;
        *out = handle::register(assistant);
        Ok(())
    })
}

/// A nullable string argument.
fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, so NUL-terminated by the entry point's contract.
    unsafe { str_arg(p, what) }.map(Some)
}

fn load(
    home_path: &Path,
    llm: Option<&str>,
    whisper: Option<&str>,
    threads: usize,
) -> Result<HearthAssistant> {
    let intents = IntentEngine::load(&default_data_path("en"), &[], home_path)?;
    let (home, _) = Home::load(home_path)?;
    let actions = match action::load_config(home_path)? {
        Some(cfg) => Actions::new(&cfg)?,
        None => Actions::none(),
    };
    let mut a = Assistant::new(intents, home, actions.without_stdout());
    if let Some(path) = llm {
        let model = ModelFile::open(Path::new(path))?;
        let engine = Engine::load(
            Arc::new(model),
            EngineOptions {
                threads,
                ..Default::default()
            },
        )?;
        a = a.with_llm(LlmFallback::new(engine, LlmOptions::default())?);
    }
    let has_stt = whisper.is_some();
    if let Some(path) = whisper {
        a = with_whisper(a, Path::new(path), threads)?;
    }
    Ok(HearthAssistant {
        inner: Mutex::new(a),
        has_stt,
    })
}

#[cfg(feature = "whisper")]
fn with_whisper(a: Assistant, path: &Path, threads: usize) -> Result<Assistant> {
    use hearth_runtime::voice::{Transcriber, TranscriberOptions};
    let opts = TranscriberOptions {
        threads,
        ..Default::default()
    };
    Ok(a.with_transcriber(Transcriber::load(path, opts)?))
}

#[cfg(not(feature = "whisper"))]
fn with_whisper(_a: Assistant, _path: &Path, _threads: usize) -> Result<Assistant> {
    Err(Failure::new(
        HearthStatus::HearthErrUnsupported,
        "this libhearth was built without speech-to-text (cargo feature `whisper`): pass whisper_path = NULL",
    ))
}

/// Handles one spoken utterance: `n` samples of mono PCM (f32 in −1..1) at
/// `sample_rate` Hz (resampled to 16 kHz; at most 600 s). `*event_json` gets
/// `{"transcript", "intent", "slots", "stage", "score", "response", "actions",
/// "timings_ms"}` (`intent` null when nothing matched; `actions` the sinks' outcomes);
/// free it with hearth_string_free. An assistant loaded without a Whisper model gives
/// HEARTH_ERR_INVALID.
///
/// # Safety
/// `assistant` is any pointer (looked up first); `pcm` is NULL or points to `n`
/// floats; `event_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_assist_pcm(
    assistant: *const HearthAssistant,
    pcm: *const f32,
    n: usize,
    sample_rate: u32,
    event_json: *mut *mut c_char,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        let out = unsafe { out_arg(event_json, "event_json") }?;
        *out = std::ptr::null_mut();
        let a = unsafe { handle::get(assistant) }?;
        // The length is checked before the slice is made.
        check_rate(sample_rate, n)?;
        let samples = unsafe { samples_arg(pcm, n) }?;
        if !a.has_stt {
            return Err(Failure::new(
                HearthStatus::HearthErrInvalid,
                "hearth_assistant: loaded without a Whisper model (whisper_path was NULL)",
            ));
        }
        let r = assist_audio(&mut *lock(a)?, samples, sample_rate)?;
        *out = event_out(&r)?;
        Ok(())
    })
}

/// As hearth_assist_pcm for typed text (UTF-8; no speech-to-text).
///
/// # Safety
/// `assistant` is any pointer (looked up first); `text` is NULL or NUL-terminated;
/// `event_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_assist_text(
    assistant: *const HearthAssistant,
    text: *const c_char,
    event_json: *mut *mut c_char,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        let out = unsafe { out_arg(event_json, "event_json") }?;
        *out = std::ptr::null_mut();
        let a = unsafe { handle::get(assistant) }?;
        let text = unsafe { str_arg(text, "text") }?;
        let r = lock(a)?.handle_text(text);
        *out = event_out(&r)?;
        Ok(())
    })
}

/// Frees an assistant. HEARTH_ERR_BUSY while a call uses it.
///
/// # Safety
/// `assistant` is any pointer (looked up first).
#[no_mangle]
pub unsafe extern "C" fn hearth_assistant_free(assistant: *mut HearthAssistant) -> HearthStatus {
    guard(|| {
        // SAFETY: the caller's contract; the lock check refuses a busy assistant.
        let a = unsafe { handle::get(assistant) }?;
        if matches!(a.inner.try_lock(), Err(TryLockError::WouldBlock)) {
            return Err(busy());
        }
        unsafe { handle::take(assistant) }.map(drop)
    })
}

fn busy() -> Failure {
    Failure::new(
        HearthStatus::HearthErrBusy,
        "hearth_assistant: another call is using it",
    )
}

fn lock(a: &HearthAssistant) -> Result<std::sync::MutexGuard<'_, Assistant>> {
    a.inner.try_lock().map_err(|e| match e {
        TryLockError::WouldBlock => busy(),
        TryLockError::Poisoned(_) => Failure::new(
            HearthStatus::HearthErrPanic,
            "hearth_assistant: an earlier call panicked; free it",
        ),
    })
}

/// `n` floats at `pcm` (an empty slice for `n == 0`, whatever `pcm` is).
///
/// # Safety
/// `pcm` is NULL or points to `n` floats that outlive the borrow.
unsafe fn samples_arg<'a>(pcm: *const f32, n: usize) -> Result<&'a [f32]> {
    match (pcm.is_null(), n) {
        (_, 0) => Err(Failure::new(
            HearthStatus::HearthErrInvalid,
            "no samples (n = 0)",
        )),
        (true, _) => Err(Failure::null("pcm")),
        (false, n) if n > isize::MAX as usize / 4 => Err(Failure::new(
            HearthStatus::HearthErrInvalid,
            format!("n = {n} samples cannot be an array"),
        )),
        // SAFETY: non-NULL and `n` floats long by the caller's contract.
        (false, n) => Ok(unsafe { std::slice::from_raw_parts(pcm, n) }),
    }
}

/// Rates from 1 kHz to 384 kHz, and at most [`MAX_AUDIO_SECONDS`] of audio.
///
/// [`MAX_AUDIO_SECONDS`]: hearth_runtime::voice::MAX_AUDIO_SECONDS
fn check_rate(rate: u32, n: usize) -> Result<()> {
    use hearth_runtime::voice::MAX_AUDIO_SECONDS;
    if !(1_000..=384_000).contains(&rate) {
        return Err(Failure::new(
            HearthStatus::HearthErrInvalid,
            format!("sample_rate {rate} Hz is outside 1000..=384000"),
        ));
    }
    if n as u64 > u64::from(rate) * u64::from(MAX_AUDIO_SECONDS) {
        return Err(Failure::new(
            HearthStatus::HearthErrInvalid,
            format!("{n} samples at {rate} Hz is longer than {MAX_AUDIO_SECONDS} s"),
        ));
    }
    Ok(())
}

#[cfg(feature = "whisper")]
fn assist_audio(a: &mut Assistant, samples: &[f32], rate: u32) -> Result<AssistResult> {
    use hearth_runtime::voice::{resample::resample, SAMPLE_RATE};
    if rate == SAMPLE_RATE {
        return Ok(a.handle_audio(samples)?);
    }
    Ok(a.handle_audio(&resample(samples, rate, SAMPLE_RATE))?)
}

#[cfg(not(feature = "whisper"))]
fn assist_audio(_a: &mut Assistant, _samples: &[f32], _rate: u32) -> Result<AssistResult> {
    // Unreachable in practice: without the feature no assistant has speech-to-text.
    Err(Failure::new(
        HearthStatus::HearthErrUnsupported,
        "this libhearth was built without speech-to-text (cargo feature `whisper`)",
    ))
}

fn event_out(r: &AssistResult) -> Result<*mut c_char> {
    string_out(r.to_json().to_string(), "the event")
}
