//! Shared set-up of the CLI tests: model paths, scratch directories, the `hearth` binary,
//! the test venv's Python. Each test binary uses part of it.
#![allow(dead_code)]
mod paths;

use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(unused_imports)] // each test binary uses part of it
pub use paths::{espeak, fetched, hearth_home, temp_dir};

/// The `hearth` binary under test.
pub fn hearth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
}

/// A path in the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The venv `scripts/setup-python` makes (wyoming, openai, hassil).
pub fn python() -> PathBuf {
    let p = hearth_home().join("venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-python",
        p.display()
    );
    p
}

/// A spoken command: espeak-ng's en-us voice at 150 words a minute, resampled by sox to
/// 16 kHz mono, as `dir/NAME.wav`.
pub fn speak(dir: &Path, name: &str, text: &str) -> PathBuf {
    let raw = dir.join(format!("{name}-22k.wav"));
    let wav = dir.join(format!("{name}.wav"));
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .expect("espeak-ng (scripts/setup-deps installs it)")
        .success();
    assert!(ok);
    let ok = Command::new("sox")
        .arg(&raw)
        .args(["-r", "16000", "-c", "1", "-b", "16"])
        .arg(&wav)
        .status()
        .expect("sox (scripts/setup-deps installs it)")
        .success();
    assert!(ok);
    wav
}
