//! Subcommands, one module each.
#[cfg(feature = "whisper")]
pub mod assist;
pub mod bench;
pub mod board;
pub mod chat;
pub mod convert;
pub mod inspect;
pub mod intent;
pub mod perplexity;
pub mod run;
#[cfg(feature = "serve")]
pub mod serve;
// Without `whisper` only its default_model() is used (by `hearth whisper import`).
#[cfg_attr(not(feature = "whisper"), allow(dead_code))]
pub mod transcribe;
pub mod whisper;

use std::path::PathBuf;

/// `${HEARTH_HOME:-$HOME/.cache/hearth}`: where models and fetched files live.
pub fn hearth_home() -> PathBuf {
    if let Some(h) = std::env::var_os("HEARTH_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("hearth")
}
