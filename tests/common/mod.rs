//! Shared set-up of the CLI tests: model paths, scratch directories, the `hearth` binary,
//! the test venv's Python. Each test binary uses part of it.
#![allow(dead_code)]
mod paths;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use paths::{fetched, hearth_home, temp_dir};

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
