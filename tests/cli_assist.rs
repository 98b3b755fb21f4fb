//! `hearth assist` end to end: the shipped sample recording and espeak-ng commands
//! through Whisper tiny.en, the intents, the actions and the responses; and the LLM
//! stage on phrasings the templates miss.
//! Needs `scripts/fetch-models` (Whisper, SmolLM2, intents) and `scripts/setup-deps`
//! (espeak-ng, sox).
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{hearth_home, repo, speak};
use serde_json::{json, Value};

fn assist(args: &[&str], files: &[PathBuf]) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("assist")
        .arg("--home")
        .arg(repo("examples/home.yaml"))
        .args(["--threads", "2"])
        .args(args)
        .args(files)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (lines, stderr)
}

#[test]
fn the_sample_recording_turns_on_the_kitchen_lights() {
    let sample = repo("examples/audio/turn-on-kitchen-lights.wav");
    assert!(std::fs::metadata(&sample).unwrap().len() < 100_000);
    let (lines, _) = assist(&["--json", "--no-llm"], std::slice::from_ref(&sample));
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    assert_eq!(v["file"], sample.display().to_string());
    assert!(
        v["transcript"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("kitchen light"),
        "{v}"
    );
    assert_eq!(v["intent"], "HassTurnOn");
    assert_eq!(v["slots"], json!({"area": "Kitchen", "domain": "light"}));
    assert_eq!(v["stage"], "template");
    assert_eq!(v["response"], "Turned on the lights");
    for k in ["stt", "intent", "llm", "action", "total"] {
        assert!(v["timings_ms"][k].as_f64().is_some(), "{k}: {v}");
    }
    assert!(v["timings_ms"]["stt"].as_f64().unwrap() > 0.0);

    // Without --json: the default stdout sink prints the event, then the response.
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["assist", "--no-llm", "--threads", "2", "--home"])
        .arg(repo("examples/home.yaml"))
        .arg(&sample)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let event: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(event["type"], "intent");
    assert_eq!(event["intent"], "HassTurnOn");
    assert_eq!(lines[1], "Turned on the lights");
}

#[test]
fn espeak_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "desk",
            "turn off the desk lamp",
            "HassTurnOff",
            json!({"name": "Desk Lamp"}),
            "Turned off the light",
        ),
        (
            "coffee",
            "turn on the coffee maker",
            "HassTurnOn",
            json!({"name": "Coffee Maker"}),
            "Turned on the switch",
        ),
        (
            "timer",
            "set a timer for ten minutes",
            "HassStartTimer",
            json!({"minutes": 10}),
            "Timer set for 10 minutes",
        ),
    ];
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|(name, text, ..)| speak(dir.path(), name, text))
        .collect();
    let (lines, stderr) = assist(&["--json", "--no-llm"], &files);
    assert_eq!(lines.len(), cases.len(), "{stderr}");
    for (v, (_, text, intent, slots, response)) in lines.iter().zip(&cases) {
        assert_eq!(v["intent"], *intent, "{text}: {v}");
        assert_eq!(v["slots"], *slots, "{text}: {v}");
        assert_eq!(v["response"], *response, "{text}: {v}");
    }
}

/// Intent names the LLM stage may produce, and the sample home's names.
const LLM_INTENTS: &[&str] = &[
    "HassTurnOn",
    "HassTurnOff",
    "HassToggle",
    "HassGetState",
    "HassLightSet",
    "HassClimateSetTemperature",
    "HassSetVolume",
    "HassSetPosition",
    "HassStartTimer",
    "HassGetCurrentTime",
    "HassGetCurrentDate",
    "HassGetWeather",
    "HassMediaPause",
    "HassMediaUnpause",
    "HassMediaNext",
    "HassMediaPrevious",
    "HassNevermind",
];

fn llm_model() {
    let model = hearth_home().join("models/smollm2-135m-instruct.hearth");
    assert!(
        model.exists(),
        "{}: run scripts/fetch-models",
        model.display()
    );
}

#[test]
fn llm_stage_on_phrasings_the_templates_miss() {
    llm_model();
    // examples/home.yaml's exposed entities and its areas.
    let names = [
        "Overhead Light",
        "Under Cabinet Lights",
        "Floor Lamp",
        "Reading Lamp",
        "Desk Lamp",
        "Coffee Maker",
        "Ceiling Fan",
        "Garage Door",
        "Living Room Blinds",
        "Thermostat",
        "Television",
        "Front Door Lock",
        "Outdoor Temperature",
        "Shopping List",
        "Forecast Home",
        "Good Night",
    ];
    let areas = ["Kitchen", "Living Room", "Bedroom", "Office", "Garage"];
    // (text, Some((intent, slots)) for the clear cases, None: any valid output).
    let cases: &[(&str, Option<(&str, Value)>)] = &[
        (
            "could you power up the desk lamp",
            Some(("HassTurnOn", json!({"name": "Desk Lamp"}))),
        ),
        (
            "kill the coffee maker",
            Some(("HassTurnOff", json!({"name": "Coffee Maker"}))),
        ),
        ("i'd like the garage door shut", None),
        ("make it brighter in the office", None),
        (
            "please get the ceiling fan spinning",
            Some(("HassTurnOn", json!({"name": "Ceiling Fan"}))),
        ),
        ("is the television doing anything", None),
        // A number: the same slots (numbers as numbers) as the template stage reports.
        (
            "put the thermostat on 21 degrees",
            Some((
                "HassClimateSetTemperature",
                json!({"name": "Thermostat", "temperature": 21}),
            )),
        ),
        ("crank the floor lamp up to 80 percent", None),
        ("start a countdown of 5 minutes", None),
        // Not commands: the decision step says so.
        ("what is the capital of france", Some(("", Value::Null))),
        ("tell me a joke", Some(("", Value::Null))),
    ];
    let mut args = vec!["--json".to_string(), "--no-answers".to_string()];
    for (t, _) in cases {
        args.push("--text".into());
        args.push((*t).into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (lines, stderr) = assist(&args, &[]);
    assert_eq!(lines.len(), cases.len(), "{stderr}");
    for (v, (text, want)) in lines.iter().zip(cases) {
        // Every stage-llm result is well formed: a real intent, real names, numbers
        // in range.
        if v["stage"] == "llm" {
            let intent = v["intent"].as_str().unwrap();
            assert!(LLM_INTENTS.contains(&intent), "{text}: {v}");
            for (k, s) in v["slots"].as_object().unwrap() {
                match k.as_str() {
                    "name" => assert!(names.contains(&s.as_str().unwrap()), "{text}: {v}"),
                    "area" => assert!(areas.contains(&s.as_str().unwrap()), "{text}: {v}"),
                    "domain" => assert!(s.is_string()),
                    "brightness" | "temperature" | "volume_level" | "position" => {
                        assert!(s.as_u64().is_some_and(|n| n <= 100), "{text}: {v}")
                    }
                    "hours" | "minutes" | "seconds" => {
                        assert!(
                            s.as_u64().is_some_and(|n| (1..=100).contains(&n)),
                            "{text}: {v}"
                        )
                    }
                    _ => panic!("{text}: unexpected slot {k}: {v}"),
                }
            }
        } else {
            assert_eq!(v["intent"], Value::Null, "{text}: {v}");
        }
        match want {
            Some(("", _)) => {
                assert_eq!(v["intent"], Value::Null, "{text}: {v}");
                assert_eq!(
                    v["response"], "Sorry, I couldn't understand that",
                    "{text}: {v}"
                );
            }
            Some((intent, slots)) => {
                assert_eq!(v["stage"], "llm", "{text}: {v}");
                assert_eq!(v["intent"], *intent, "{text}: {v}");
                assert_eq!(v["slots"], *slots, "{text}: {v}");
            }
            None => {}
        }
    }
}

/// Numbers said are read from the text (digits, words, "half", units) and decide which
/// intents the model chooses among: commands none of the templates take, end to end.
#[test]
fn llm_stage_takes_numbers_from_the_text() {
    llm_model();
    let cases = [
        (
            "could the desk lamp go to twenty five percent",
            "HassLightSet",
            json!({"name": "Desk Lamp", "brightness": 25}),
        ),
        (
            "i'd like the thermostat at 18 degrees",
            "HassClimateSetTemperature",
            json!({"name": "Thermostat", "temperature": 18}),
        ),
        (
            "buzz me in an hour and a half",
            "HassStartTimer",
            json!({"hours": 1, "minutes": 30}),
        ),
        (
            "the living room blinds should be halfway open",
            "HassSetPosition",
            json!({"name": "Living Room Blinds", "position": 50}),
        ),
        (
            "the television at 40 percent volume would be great",
            "HassSetVolume",
            json!({"name": "Television", "volume_level": 40}),
        ),
    ];
    let mut args = vec!["--json".to_string(), "--no-answers".to_string()];
    for (t, ..) in &cases {
        args.push("--text".into());
        args.push((*t).into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (lines, stderr) = assist(&args, &[]);
    assert_eq!(lines.len(), cases.len(), "{stderr}");
    for (v, (text, intent, slots)) in lines.iter().zip(&cases) {
        assert_eq!(v["stage"], "llm", "{text}: {v}");
        assert_eq!(v["intent"], *intent, "{text}: {v}");
        assert_eq!(v["slots"], *slots, "{text}: {v}");
    }
}

/// The answer path: an open question gets no intent and the LLM's own answer as the
/// response (stage "llm"); a paraphrased command in the same run still gets its intent.
#[test]
fn llm_answers_open_questions() {
    llm_model();
    let (lines, stderr) = assist(
        &[
            "--json",
            "--text",
            "what is the capital of france",
            "--text",
            "kill the coffee maker",
        ],
        &[],
    );
    assert_eq!(lines.len(), 2, "{stderr}");
    let q = &lines[0];
    assert_eq!(q["intent"], Value::Null, "{q}");
    assert_eq!(q["stage"], "llm", "{q}");
    let answer = q["response"].as_str().unwrap();
    assert!(!answer.trim().is_empty(), "{q}");
    assert_ne!(answer, "Sorry, I couldn't understand that", "{q}");
    assert!(q["timings_ms"]["llm"].as_f64().unwrap() > 0.0, "{q}");
    let c = &lines[1];
    assert_eq!(c["stage"], "llm", "{c}");
    assert_eq!(c["intent"], "HassTurnOff", "{c}");
    assert_eq!(c["slots"], json!({"name": "Coffee Maker"}), "{c}");
    assert_eq!(c["response"], "Turned off the switch", "{c}");
}
