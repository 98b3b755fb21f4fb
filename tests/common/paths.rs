//! Where the fetched models and data are, and scratch directories: shared by the CLI
//! tests (tests/common/mod.rs) and the runtime's speech test (by `#[path]`), so it uses
//! nothing of either crate.
use std::path::{Path, PathBuf};

/// `$HEARTH_HOME`, default `~/.cache/hearth` (where `scripts/fetch-models` puts things).
pub fn hearth_home() -> PathBuf {
    match std::env::var_os("HEARTH_HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth"),
    }
}

/// A file `scripts/fetch-models` installs under `$HEARTH_HOME` (fails the test, naming the
/// script, when it is missing).
pub fn fetched(rel: &str) -> PathBuf {
    let p = hearth_home().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models",
        p.display()
    );
    p
}

/// A fresh scratch directory for one test (`tag` keeps tests of one binary apart).
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `text` in espeak-ng's default voice as `dir/FILE` (22.05 kHz mono: whoever reads it
/// resamples).
pub fn espeak(dir: &Path, file: &str, text: &str) -> PathBuf {
    let wav = dir.join(file);
    let status = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .status()
        .unwrap_or_else(|e| panic!("espeak-ng: {e}: run scripts/setup-deps"));
    assert!(status.success());
    wav
}
