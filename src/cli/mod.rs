//! Subcommands, one module each.
#[cfg(feature = "whisper")]
pub mod assist;
pub mod bench;
pub mod board;
pub mod chat;
pub mod classifier;
pub mod convert;
#[cfg(feature = "mic")]
pub mod devices;
pub mod inspect;
pub mod intent;
// Without `mic` only its options exist (parsed by `hearth assist`, refused at run time).
#[cfg(feature = "whisper")]
#[cfg_attr(not(feature = "mic"), allow(dead_code))]
pub mod listen;
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
