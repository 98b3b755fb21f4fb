//! Shared by the intent tests: the engine over the real HA data and the sample home.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::PathBuf;

use hearth_runtime::intent::{default_data_path, IntentEngine};
use serde_json::Value;

pub fn hearth_home() -> PathBuf {
    std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hearth")
        })
}

pub fn data_path() -> PathBuf {
    let p = default_data_path("en");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models (it extracts home-assistant-intents' en.json)",
        p.display()
    );
    p
}

pub fn home_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/home.yaml"
    ))
}

pub fn engine() -> IntentEngine {
    IntentEngine::load(&data_path(), &[], &home_path()).expect("engine")
}

/// Slots equal, numbers compared by value (hassil reports ranges as floats).
pub fn same_slots(ours: &BTreeMap<String, Value>, theirs: &Value) -> bool {
    let Some(theirs) = theirs.as_object() else {
        return false;
    };
    ours.len() == theirs.len()
        && ours.iter().all(|(k, v)| {
            theirs
                .get(k)
                .is_some_and(|t| match (v.as_f64(), t.as_f64()) {
                    (Some(a), Some(b)) => a == b,
                    _ => v == t,
                })
        })
}
