//! Matcher semantics on small in-memory data: one construct per test.
use hearth_runtime::intent::{Home, IntentEngine, IntentMatch, IntentsFile, Source, Stage};
use serde_json::json;

const HOME: &str = "satellite_area: Den\nareas: [{name: Den}, {name: Hall}]\nentities:\n  - {name: Desk Lamp, domain: light, area: Den}\n  - {name: Radio, domain: media_player}\n  - {name: Garage Door, domain: cover, device_class: garage}\n";

fn engine(yaml: &str) -> IntentEngine {
    let src = Source {
        name: "test.yaml".into(),
        text: yaml.into(),
    };
    let file = IntentsFile::from_yaml(&src).unwrap();
    let (home, _) = Home::from_yaml(HOME, "home.yaml").unwrap();
    IntentEngine::new(&file, &src, &home).unwrap()
}

fn slots(m: &IntentMatch) -> serde_json::Value {
    serde_json::to_value(&m.slots).unwrap()
}

#[test]
fn permutations_optional_and_rules() {
    let e = engine("expansion_rules:\n  the: \"(the|my)\"\nintents:\n  HassTurnOn:\n    data:\n      - sentences: [\"turn [<the>] lights (on;[in here])\"]\n        slots: {domain: light}\n");
    for text in [
        "turn the lights on",
        "turn lights in here on",
        "turn my lights on in here",
        "Turn lights ON!",
    ] {
        let m = e.recognize(text);
        assert_eq!(m.intent.as_deref(), Some("HassTurnOn"), "{text}");
        assert_eq!(slots(&m), json!({"domain": "light"}), "{text}");
    }
    assert_eq!(
        e.recognize("turn the the lights on").stage,
        Some(Stage::Fuzzy)
    );
    assert_eq!(e.recognize("turn lights").intent, None);
}

#[test]
fn ranges_multiplier_fractions_and_number_words() {
    let e = engine("lists:\n  step: {range: {from: 1, to: 100, multiplier: -1}}\n  temp: {range: {from: 0, to: 30, fractions: halves}}\n  tens: {range: {from: 10, to: 90, step: 10}}\nintents:\n  HassSetVolumeRelative:\n    data:\n      - sentences: [\"down by {step}\"]\n  HassClimateSetTemperature:\n    data:\n      - sentences: [\"heat to {temp}\", \"fan to {tens:speed}[%]\"]\n");
    assert_eq!(
        slots(&e.recognize("down by twenty five")),
        json!({"step": -25})
    );
    assert_eq!(slots(&e.recognize("down by 7")), json!({"step": -7}));
    assert_eq!(slots(&e.recognize("heat to 21.5")), json!({"temp": 21.5}));
    assert_eq!(e.recognize("heat to 21.25").intent, None);
    assert_eq!(e.recognize("heat to 31").intent, None);
    assert_eq!(slots(&e.recognize("fan to 40%")), json!({"speed": 40}));
    assert_eq!(slots(&e.recognize("fan to forty")), json!({"speed": 40}));
    assert_eq!(e.recognize("fan to 45").intent, None);
}

#[test]
fn list_values_and_wildcards() {
    let e = engine("lists:\n  color: {values: [{in: \"(red|crimson)\", out: red}, blue]}\n  item: {wildcard: true}\nintents:\n  HassLightSet:\n    data:\n      - sentences: [\"make {name} {color}\"]\n  HassListAddItem:\n    data:\n      - sentences: [\"add {item} to [the] list\"]\n");
    assert_eq!(
        slots(&e.recognize("make desk lamp crimson")),
        json!({"name": "Desk Lamp", "color": "red"})
    );
    assert_eq!(
        slots(&e.recognize("make desk lamp Blue")),
        json!({"name": "Desk Lamp", "color": "blue"})
    );
    // The wildcard keeps what was said, case included.
    assert_eq!(
        slots(&e.recognize("add Oat Milk to the list")),
        json!({"item": "Oat Milk"})
    );
    assert_eq!(e.recognize("add to the list").intent, None);
}

#[test]
fn requires_and_excludes_context() {
    let e = engine("intents:\n  HassTurnOn:\n    data:\n      - sentences: [\"open {name}\"]\n        requires_context: {domain: [cover]}\n      - sentences: [\"lights on\"]\n        requires_context: {area: {slot: true}}\n  HassMediaPause:\n    data:\n      - sentences: [\"pause {name}\"]\n        excludes_context: {domain: [light, cover]}\n");
    assert_eq!(
        slots(&e.recognize("open garage door")),
        json!({"name": "Garage Door"})
    );
    assert_eq!(e.recognize("open desk lamp").intent, None);
    assert_eq!(slots(&e.recognize("lights on")), json!({"area": "Den"}));
    assert_eq!(slots(&e.recognize("pause radio")), json!({"name": "Radio"}));
    assert_eq!(e.recognize("pause desk lamp").intent, None);
}

#[test]
fn skip_words_and_fuzzy_names() {
    let e = engine("skip_words: [please, \"can you\"]\nintents:\n  HassTurnOn:\n    data:\n      - sentences: [\"turn on [the] {name}\"]\n");
    let m = e.recognize("can you turn on the desk lamp please");
    assert_eq!(
        (m.stage, slots(&m)),
        (Some(Stage::Template), json!({"name": "Desk Lamp"}))
    );
    let m = e.recognize("turn on the desk lamb");
    assert_eq!(
        (m.stage, slots(&m)),
        (Some(Stage::Fuzzy), json!({"name": "Desk Lamp"}))
    );
    assert!(m.score < 1.0 && m.score >= 0.6);
    // "Radio" is short: one edit is already too many to trust.
    assert_eq!(e.recognize("turn on the rodeo").intent, None);
}
