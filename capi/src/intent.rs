//! Intent matching: Home Assistant sentence templates + a home file → one JSON
//! object per utterance (the same line `hearth intent` prints).
use std::ffi::c_char;
use std::path::{Path, PathBuf};

use hearth_runtime::intent::{default_data_path, IntentEngine};

use crate::handle::{self, Handle, Kind};
use crate::status::{guard, out_arg, str_arg, string_out, HearthStatus};

/// Compiled templates for one language and one home. Thread-safe (read-only).
pub struct HearthIntents {
    engine: IntentEngine,
}

impl Handle for HearthIntents {
    const KIND: Kind = Kind::Intents;
    const NAME: &'static str = "hearth_intents";
}

/// Compiles the intent templates `data_path` (home-assistant-intents' `<lang>.json`;
/// NULL = `$HEARTH_HOME/intents/en.json`, which scripts/fetch-models creates) for
/// the home file `home_path` (YAML, docs/home-file.md). `*out` gets a handle to free
/// with hearth_intents_free.
///
/// # Safety
/// `data_path` and `home_path` are NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_intents_load(
    data_path: *const c_char,
    home_path: *const c_char,
    out: *mut *mut HearthIntents,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        let out = unsafe { out_arg(out, "out") }?;
        *out = std::ptr::null_mut();
        let data = if data_path.is_null() {
            default_data_path("en")
        } else {
            PathBuf::from(unsafe { str_arg(data_path, "data_path") }?)
        };
        let home = unsafe { str_arg(home_path, "home_path") }?;
        let engine = IntentEngine::load(&data, &[], Path::new(home))?;
        *out = handle::register(HearthIntents { engine });
        Ok(())
    })
}

/// Matches one utterance (UTF-8). `*out_json` gets
/// `{"text", "intent", "slots", "stage", "score"}` (`intent` null when nothing
/// matched); free it with hearth_string_free.
///
/// # Safety
/// `intents` is any pointer (looked up first); `text` is NULL or NUL-terminated;
/// `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hearth_intent_match(
    intents: *const HearthIntents,
    text: *const c_char,
    out_json: *mut *mut c_char,
) -> HearthStatus {
    guard(|| {
        // SAFETY (all): the caller's contract above.
        let out = unsafe { out_arg(out_json, "out_json") }?;
        *out = std::ptr::null_mut();
        let engine = &unsafe { handle::get(intents) }?.engine;
        let text = unsafe { str_arg(text, "text") }?;
        let json = engine.recognize(text).to_json().to_string();
        *out = string_out(json, "the match")?;
        Ok(())
    })
}

/// Frees an intents handle.
///
/// # Safety
/// `intents` is any pointer (looked up first); no other thread uses it meanwhile.
#[no_mangle]
pub unsafe extern "C" fn hearth_intents_free(intents: *mut HearthIntents) -> HearthStatus {
    // SAFETY: the caller's contract.
    guard(|| unsafe { handle::take(intents) }.map(drop))
}
