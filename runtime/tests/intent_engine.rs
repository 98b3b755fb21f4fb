//! Engine behaviour on the real HA data and the sample home: supported intents, slot
//! values, context, fuzzy stage, and hostile or bad input.
mod intent_common;

use std::time::Instant;

use hearth_runtime::intent::{IntentEngine, IntentsFile, Source, Stage};
use intent_common::{data_path, engine, home_path};
use serde_json::json;

#[test]
fn supported_intents_and_slots() {
    let e = engine();
    let cases = [
        (
            "Turn on the overhead light",
            "HassTurnOn",
            json!({"name": "Overhead Light"}),
        ),
        (
            "switch off the ceiling light",
            "HassTurnOff",
            json!({"name": "Overhead Light"}),
        ),
        (
            "turn on the lights",
            "HassTurnOn",
            json!({"area": "Kitchen", "domain": "light"}),
        ),
        (
            "set the floor lamp brightness to fifty percent",
            "HassLightSet",
            json!({"name": "Floor Lamp", "brightness": 50}),
        ),
        (
            "set the desk lamp to red",
            "HassLightSet",
            json!({"name": "Desk Lamp", "color": "red"}),
        ),
        (
            "is the garage door open",
            "HassGetState",
            json!({"name": "Garage Door", "state": "open"}),
        ),
        (
            "set a timer for five minutes",
            "HassStartTimer",
            json!({"minutes": 5}),
        ),
        ("cancel the timer", "HassCancelTimer", json!({})),
        ("cancel all timers", "HassCancelAllTimers", json!({})),
        ("pause the timer", "HassPauseTimer", json!({})),
        ("resume the timer", "HassUnpauseTimer", json!({})),
        (
            "how much time is left on the timer",
            "HassTimerStatus",
            json!({}),
        ),
        (
            "add 2 minutes to the timer",
            "HassIncreaseTimer",
            json!({"minutes": 2}),
        ),
        (
            "remove 2 minutes from the timer",
            "HassDecreaseTimer",
            json!({"minutes": 2}),
        ),
        (
            "set the temperature to 21.5 degrees",
            "HassClimateSetTemperature",
            json!({"area": "Kitchen", "temperature": 21.5}),
        ),
        (
            "what is the temperature in the living room",
            "HassClimateGetTemperature",
            json!({"area": "Living Room"}),
        ),
        ("what time is it", "HassGetCurrentTime", json!({})),
        ("what is the date today", "HassGetCurrentDate", json!({})),
        ("what's the weather like", "HassGetWeather", json!({})),
        (
            "set the living room blinds to 40%",
            "HassSetPosition",
            json!({"area": "Living Room", "device_class": "blind", "position": 40}),
        ),
        (
            "set the ceiling fan speed to 30 percent",
            "HassFanSetSpeed",
            json!({"name": "Ceiling Fan", "percentage": 30}),
        ),
        (
            "pause the tv",
            "HassMediaPause",
            json!({"name": "Television"}),
        ),
        (
            "resume the television",
            "HassMediaUnpause",
            json!({"name": "Television"}),
        ),
        (
            "next track on the tv",
            "HassMediaNext",
            json!({"name": "Television"}),
        ),
        (
            "previous track on the tv",
            "HassMediaPrevious",
            json!({"name": "Television"}),
        ),
        (
            "set the tv volume to 30 percent",
            "HassSetVolume",
            json!({"name": "Television", "volume_level": 30}),
        ),
        (
            "add eggs to my shopping list",
            "HassListAddItem",
            json!({"item": "eggs", "name": "Shopping List"}),
        ),
        ("never mind", "HassNevermind", json!({})),
    ];
    let mut bad = Vec::new();
    for (text, intent, slots) in cases {
        let m = e.recognize(text);
        let ours = serde_json::to_value(&m.slots).unwrap();
        // Fixed slots (domain…) come from the data; check the ones named above.
        let ok = m.intent.as_deref() == Some(intent)
            && slots.as_object().unwrap().iter().all(|(k, v)| {
                ours.get(k)
                    .and_then(|o| o.as_f64())
                    .zip(v.as_f64())
                    .map_or(ours.get(k) == Some(v), |(a, b)| a == b)
            })
            && m.stage == Some(Stage::Template);
        if !ok {
            bad.push(format!(
                "{text:?}: want {intent} {slots}, got {}",
                m.to_json()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn unexposed_entities_and_non_commands_do_not_match() {
    let e = engine();
    for text in [
        "turn on the server rack fan",
        "hello there",
        "the quick brown fox",
        "",
        "   ",
        "?!",
    ] {
        let m = e.recognize(text);
        assert_eq!(m.intent, None, "{text:?} -> {}", m.to_json());
        assert_eq!(m.stage, None);
        assert_eq!(m.score, 0.0);
    }
}

#[test]
fn fuzzy_stage_scores_below_template() {
    let e = engine();
    let m = e.recognize("turn on the overhed light");
    assert_eq!(m.intent.as_deref(), Some("HassTurnOn"));
    assert_eq!(m.slots["name"], "Overhead Light");
    assert_eq!(m.stage, Some(Stage::Fuzzy));
    assert!(m.score > 0.6 && m.score < 1.0, "{}", m.score);
    // Too far from any name: a clear no-match, not a guess.
    assert_eq!(e.recognize("turn on the zebra blender").intent, None);
}

#[test]
fn long_utterance_is_bounded() {
    let e = engine();
    let long = "turn on the light ".repeat(600); // ~10 kB
    let t = Instant::now();
    let m = e.recognize(&long);
    assert_eq!(m.intent, None);
    assert!(t.elapsed().as_millis() < 200, "took {:?}", t.elapsed());
    // Many fillers: the fuzzy stage skips a run of them at once, not every split.
    let t = Instant::now();
    let m = e.recognize(&format!(
        "turn on the {}overhead light",
        "the uh ".repeat(40)
    ));
    assert_eq!(m.intent.as_deref(), Some("HassTurnOn"));
    assert!(t.elapsed().as_millis() < 200, "took {:?}", t.elapsed());
    // Just under the limit, still bounded (step budget).
    let t = Instant::now();
    let _ = e.recognize(&"add eggs and ".repeat(70));
    assert!(t.elapsed().as_millis() < 1000, "took {:?}", t.elapsed());
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-intent-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn custom_yaml_sentences_and_errors() {
    let ok = write("ok.yaml", "language: en\nintents:\n  HassTurnOn:\n    data:\n      - sentences:\n          - \"engage [the] {name}\"\n");
    let e = IntentEngine::load(&data_path(), &[ok], &home_path()).unwrap();
    let m = e.recognize("engage the coffee maker");
    assert_eq!(m.intent.as_deref(), Some("HassTurnOn"));
    assert_eq!(m.slots["name"], "Coffee Maker");

    // HassToggle has no English sentences upstream; user YAML can add some.
    let toggle = write(
        "toggle.yaml",
        "intents:\n  HassToggle:\n    data:\n      - sentences: [\"toggle [the] {name}\"]\n",
    );
    let e = IntentEngine::load(&data_path(), &[toggle], &home_path()).unwrap();
    let m = e.recognize("toggle the desk lamp");
    assert_eq!(m.intent.as_deref(), Some("HassToggle"));
    assert_eq!(m.slots["name"], "Desk Lamp");

    let unknown = write(
        "unknown.yaml",
        "intents:\n  HassTurnOnPlease:\n    data:\n      - sentences: [\"x {name}\"]\n",
    );
    let err = IntentEngine::load(&data_path(), &[unknown], &home_path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown intent 'HassTurnOnPlease'"), "{err}");

    let syntax = write("syntax.yaml", "intents:\n  HassTurnOn:\n    data:\n      - sentences:\n          - \"engage (the {name}\"\n");
    let err = IntentEngine::load(&data_path(), std::slice::from_ref(&syntax), &home_path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!(
            "{}:5:21: template error: unclosed '('",
            syntax.display()
        )),
        "{err}"
    );

    let rule = write(
        "rule.yaml",
        "intents:\n  HassTurnOn:\n    data:\n      - sentences: [\"engage <nope> {name}\"]\n",
    );
    let err = IntentEngine::load(&data_path(), &[rule], &home_path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown expansion rule <nope>"), "{err}");
}

#[test]
fn bad_homes_are_errors_or_warnings() {
    let empty = write("empty.yaml", "satellite_area: null\n");
    let err = IntentEngine::load(&data_path(), &[], &empty)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let dup_area = write("dup.yaml", "areas: [{name: Kitchen}, {name: kitchen}]\n");
    let err = IntentEngine::load(&data_path(), &[], &dup_area)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("duplicate area name"), "{err}");
    let dup_entity = write("dupe.yaml", "areas: [{name: A}, {name: B}]\nentities: [{name: Lamp, domain: light, area: A}, {name: Lamp, domain: light, area: B}]\n");
    let e = IntentEngine::load(&data_path(), &[], &dup_entity).unwrap();
    assert!(e
        .warnings()
        .iter()
        .any(|w| w.contains("'Lamp' is used by both")));
    assert_eq!(e.recognize("turn on the lamp").slots["name"], "Lamp");
    let missing = IntentEngine::load(
        std::path::Path::new("/nonexistent/en.json"),
        &[],
        &home_path(),
    );
    assert!(missing
        .err()
        .unwrap()
        .to_string()
        .contains("scripts/fetch-models"));
}

#[test]
fn in_memory_data() {
    let src = Source {
        name: "<memory>".into(),
        text: "{\"intents\": {\"HassNevermind\": {\"data\": [{\"sentences\": [\"forget (it|that)\"]}]}}}".into(),
    };
    let file = IntentsFile::from_json(&src).unwrap();
    let (home, _) = hearth_runtime::intent::Home::from_yaml("areas: [{name: Hall}]", "h").unwrap();
    let e = IntentEngine::new(&file, &src, &home).unwrap();
    assert_eq!(
        e.recognize("Forget that!").intent.as_deref(),
        Some("HassNevermind")
    );
    assert_eq!(e.recognize("forget").intent, None);
}
