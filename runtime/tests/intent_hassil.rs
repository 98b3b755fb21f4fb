//! Our matcher against hassil (Home Assistant's reference matcher) on sentences sampled
//! from the templates with the sample home's names. The fixture is regenerated with
//! `scripts/intents-reference.py fixture` (see `scripts/bench/intents`).
mod intent_common;

use hearth_runtime::intent::Stage;
use intent_common::{engine, same_slots};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/intents_hassil.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

#[test]
fn same_intent_and_slots_as_hassil_on_every_sentence_it_accepts() {
    let engine = engine();
    let fx = fixture();
    let cases = fx["cases"].as_array().expect("cases");
    let mut accepted = 0;
    let mut mismatches = Vec::new();
    for case in cases {
        let Some(intent) = case["intent"].as_str() else {
            // hassil rejects it: our template stage (same semantics) must too.
            let text = case["text"].as_str().expect("text");
            let m = engine.recognize(text);
            if m.stage == Some(Stage::Template) {
                mismatches.push(format!(
                    "{text:?}\n  hassil: no match\n  hearth: {}",
                    m.to_json()
                ));
            }
            continue;
        };
        accepted += 1;
        let text = case["text"].as_str().expect("text");
        let m = engine.recognize(text);
        if m.intent.as_deref() != Some(intent) || !same_slots(&m.slots, &case["slots"]) {
            mismatches.push(format!(
                "{text:?}\n  hassil: {intent} {}\n  hearth: {}",
                case["slots"],
                m.to_json()
            ));
        }
    }
    assert!(
        accepted >= 300,
        "fixture too small: {accepted} accepted sentences"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {accepted} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn accepts_off_phrasings_that_hassil_rejects() {
    let engine = engine();
    let fx = fixture();
    let off = fx["off_phrasings"].as_array().expect("off_phrasings");
    assert!(
        off.len() >= 100,
        "fixture too small: {} off-phrasings",
        off.len()
    );
    let mut misses = Vec::new();
    for case in off {
        let text = case["text"].as_str().expect("text");
        let m = engine.recognize(text);
        let ok =
            m.intent.as_deref() == case["intent"].as_str() && same_slots(&m.slots, &case["slots"]);
        if !ok {
            misses.push(format!(
                "{text:?} ({}): want {} {}, got {}",
                case["kind"],
                case["intent"],
                case["slots"],
                m.to_json()
            ));
        } else {
            assert!(m.score > 0.0 && m.score <= 1.0);
        }
    }
    assert!(
        misses.is_empty(),
        "{} of {} missed:\n{}",
        misses.len(),
        off.len(),
        misses.join("\n")
    );
}

/// The committed fixture is what hassil says today: regenerate it with the pinned venv
/// (`scripts/setup-python`) and compare.
#[test]
fn fixture_is_reproducible_with_hassil() {
    let venv_python = intent_common::hearth_home().join("venv/bin/python");
    assert!(
        venv_python.exists(),
        "{} is missing: run scripts/setup-python (hassil venv)",
        venv_python.display()
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::env::temp_dir().join(format!("intents_hassil-{}.json", std::process::id()));
    let status = std::process::Command::new(&venv_python)
        .arg(format!("{root}/scripts/intents-reference.py"))
        .arg("fixture")
        .arg(intent_common::data_path())
        .arg(intent_common::home_path())
        .arg(&out)
        .status()
        .expect("running scripts/intents-reference.py");
    assert!(status.success(), "intents-reference.py failed: {status}");
    let fresh: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        fresh,
        fixture(),
        "hassil's answers changed: regenerate with `scripts/bench/intents --regen`"
    );
}
