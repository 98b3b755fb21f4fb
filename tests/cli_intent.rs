//! `hearth intent` end to end: JSON lines out, clear errors for bad input, no panics.
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn home() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/home.yaml"))
}

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("intent")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hearth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn temp(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("hearth-cli-intent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn one_json_object_per_line() {
    let long = "turn on the light ".repeat(600);
    let input = format!(
        "turn on the overhead light\n\nhello there\n{long}\nset a timer for five minutes\n"
    );
    let o = run(&["--home", home().to_str().unwrap()], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["intent"], "HassTurnOn");
    assert_eq!(lines[0]["slots"]["name"], "Overhead Light");
    assert_eq!(lines[0]["stage"], "template");
    assert_eq!(lines[0]["score"], 1.0);
    for i in [1, 2, 3] {
        assert_eq!(lines[i]["intent"], Value::Null);
        assert_eq!(lines[i]["stage"], Value::Null);
    }
    assert_eq!(lines[3]["text"].as_str().unwrap().len(), long.len());
    assert_eq!(lines[4]["slots"]["minutes"], 5);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let h = home();
    let h = h.to_str().unwrap();
    let unknown = temp(
        "u.yaml",
        "intents:\n  HassTurnOnn:\n    data:\n      - sentences: [\"x {name}\"]\n",
    );
    let o = run(&["--home", h, "--custom", &unknown], "");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown intent 'HassTurnOnn'"),
        "{}",
        stderr(&o)
    );

    let syntax = temp("s.yaml", "intents:\n  HassTurnOn:\n    data:\n      - sentences:\n          - \"engage [the {name}\"\n");
    let o = run(&["--home", h, "--custom", &syntax], "");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("{syntax}:5:21: template error: unclosed '['")),
        "{}",
        stderr(&o)
    );

    let empty = temp("empty.yaml", "{}\n");
    let o = run(&["--home", &empty], "");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));

    let not_yaml = temp("bad.yaml", "areas: [unclosed\n");
    let o = run(&["--home", &not_yaml], "");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad.yaml"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));

    let missing = run(&["--home", h, "--data", "/nonexistent/en.json"], "");
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("scripts/fetch-models"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn duplicate_entity_names_warn() {
    let dup = temp(
        "dup.yaml",
        "areas: [{name: A}, {name: B}]\nentities: [{name: Lamp, domain: light, area: A}, {name: Lamp, domain: light, area: B}]\n",
    );
    let o = run(&["--home", &dup], "turn on the lamp\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: entity name 'Lamp' is used by both"),
        "{}",
        stderr(&o)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["slots"]["name"], "Lamp");
}
