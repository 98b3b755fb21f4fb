//! Speech-to-text of a PCM buffer with whisper.cpp (feature `whisper`). Without the
//! feature the functions exist and return HEARTH_ERR_UNSUPPORTED, so hearth.h is the
//! same for every build.
use std::ffi::c_char;

use crate::handle::{self, Handle, Kind};
use crate::status::{guard, out_arg, HearthStatus, Result};
#[cfg(feature = "whisper")]
use crate::status::{str_arg, string_out, Failure};

/// A loaded Whisper model with its decoding state. One call at a time
/// (HEARTH_ERR_BUSY otherwise).
pub struct HearthTranscriber {
    #[cfg(feature = "whisper")]
    inner: std::sync::Mutex<hearth_runtime::voice::Transcriber>,
}

impl Handle for HearthTranscriber {
    const KIND: Kind = Kind::Transcriber;
    const NAME: &'static str = "hearth_transcriber";
}

/// Whether this build can transcribe (was built with the `whisper` feature).
#[no_mangle]
pub extern "C" fn hearth_has_whisper() -> bool {
    cfg!(feature = "whisper")
}

#[cfg(not(feature = "whisper"))]
fn unsupported() -> crate::status::Failure {
    crate::status::Failure::new(
        HearthStatus::HearthErrUnsupported,
        "this libhearth was built without speech-to-text (cargo feature `whisper`)",
    )
}

/// Loads a whisper.cpp ggml model (e.g. `$HEARTH_HOME/models/ggml-tiny.en.bin`) with
/// `threads` CPU threads (0 = up to 4). `*out` gets a handle to free with
/// hearth_transcriber_free.
///
/// # Safety
/// `model_path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_transcriber_load(
    model_path: *const c_char,
    threads: u32,
    out: *mut *mut HearthTranscriber,
) -> HearthStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { out_arg(out, "out") }?;
        *out = std::ptr::null_mut();
        *out = handle::register(unsafe { load(model_path, threads) }?);
        Ok(())
    })
}

#[cfg(feature = "whisper")]
unsafe fn load(model_path: *const c_char, threads: u32) -> Result<HearthTranscriber> {
    use hearth_runtime::voice::{Transcriber, TranscriberOptions};
    // SAFETY: the caller's contract (hearth_transcriber_load).
    let path = unsafe { str_arg(model_path, "model_path") }?;
    let mut opts = TranscriberOptions::default();
    if threads > 0 {
        opts.threads = threads as usize;
    }
    let t = Transcriber::load(std::path::Path::new(path), opts)?;
    Ok(HearthTranscriber {
        inner: std::sync::Mutex::new(t),
    })
}

#[cfg(not(feature = "whisper"))]
unsafe fn load(_model_path: *const c_char, _threads: u32) -> Result<HearthTranscriber> {
    Err(unsupported())
}

/// Transcribes `n` samples of 16 kHz mono PCM (f32 in −1..1). `*out_text` gets the
/// text, UTF-8, trimmed ("" for silence); free it with hearth_string_free.
///
/// # Safety
/// `transcriber` is any pointer (looked up first); `pcm` is NULL or points to `n`
/// floats; `out_text` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_transcribe(
    transcriber: *const HearthTranscriber,
    pcm: *const f32,
    n: usize,
    out_text: *mut *mut c_char,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        let out = unsafe { out_arg(out_text, "out_text") }?;
        *out = std::ptr::null_mut();
        let t = unsafe { handle::get(transcriber) }?;
        *out = unsafe { transcribe(t, pcm, n) }?;
        Ok(())
    })
}

#[cfg(feature = "whisper")]
unsafe fn transcribe(t: &HearthTranscriber, pcm: *const f32, n: usize) -> Result<*mut c_char> {
    let samples: &[f32] = match (pcm.is_null(), n) {
        (_, 0) => &[],
        (true, _) => return Err(Failure::null("pcm")),
        (false, n) if n > isize::MAX as usize / 4 => {
            return Err(Failure::new(
                HearthStatus::HearthErrInvalid,
                format!("n = {n} samples cannot be an array"),
            ))
        }
        // SAFETY: non-NULL and `n` floats long by the caller's contract.
        (false, n) => unsafe { std::slice::from_raw_parts(pcm, n) },
    };
    let mut guard = t.inner.try_lock().map_err(|e| match e {
        std::sync::TryLockError::WouldBlock => Failure::new(
            HearthStatus::HearthErrBusy,
            "hearth_transcriber: another call is using it",
        ),
        std::sync::TryLockError::Poisoned(_) => Failure::new(
            HearthStatus::HearthErrPanic,
            "hearth_transcriber: an earlier call panicked; free it",
        ),
    })?;
    let r = guard.transcribe(samples)?;
    string_out(r.text, "the transcript")
}

#[cfg(not(feature = "whisper"))]
unsafe fn transcribe(_t: &HearthTranscriber, _pcm: *const f32, _n: usize) -> Result<*mut c_char> {
    Err(unsupported())
}

/// Frees a transcriber.
///
/// # Safety
/// `transcriber` is any pointer (looked up first); no other thread uses it meanwhile.
#[no_mangle]
pub unsafe extern "C" fn hearth_transcriber_free(
    transcriber: *mut HearthTranscriber,
) -> HearthStatus {
    // SAFETY: the caller's contract.
    guard(|| unsafe { handle::take(transcriber) }.map(drop))
}
