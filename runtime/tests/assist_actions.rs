//! The assistant's text path on the real HA data and the sample home: responses from
//! HA's templates, and the action sinks against real receivers — a local HTTP listener
//! for the webhook, a real `mosquitto` broker with `mosquitto_sub` for MQTT (both from
//! Debian, installed by scripts/setup-deps), a program for the shell sink.
mod intent_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth_runtime::action::{self, Actions};
use hearth_runtime::assist::Assistant;
use hearth_runtime::intent::{Home, Stage};
use intent_common::{engine, home_path};
use serde_json::{json, Value};

fn home() -> Home {
    Home::load(&home_path()).unwrap().0
}

fn assistant(actions_yaml: &str) -> Assistant {
    let actions = match action::parse_config(actions_yaml, "test").unwrap() {
        Some(cfg) => Actions::new(&cfg).unwrap(),
        None => Actions::none(),
    };
    Assistant::new(engine(), home(), actions)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn responses_come_from_home_assistant_templates() {
    let mut a = assistant("{}");
    let cases = [
        (
            "turn on the overhead light",
            "HassTurnOn",
            "Turned on the light",
        ),
        (
            "turn off the ceiling fan",
            "HassTurnOff",
            "Turned off the fan",
        ),
        ("turn on the lights", "HassTurnOn", "Turned on the lights"),
        // Matched as the garage's door (device class), as hassil does.
        ("open the garage door", "HassTurnOn", "Opening the door"),
        (
            "set the temperature to 21 degrees",
            "HassClimateSetTemperature",
            "Temperature set to 21 degrees",
        ),
        (
            "set a timer for 5 minutes",
            "HassStartTimer",
            "Timer set for 5 minutes",
        ),
        ("pause", "HassMediaPause", "Paused"),
        (
            "add milk to my shopping list",
            "HassListAddItem",
            "Added milk",
        ),
    ];
    for (text, intent, response) in cases {
        let r = a.handle_text(text);
        assert_eq!(r.matched.intent.as_deref(), Some(intent), "{text}: {r:?}");
        assert_eq!(r.response, response, "{text}");
        assert!(r.actions.is_empty(), "no sinks configured");
    }
    // The clock intents render the time and date.
    let r = a.handle_text("what time is it");
    assert_eq!(r.matched.intent.as_deref(), Some("HassGetCurrentTime"));
    assert!(
        r.response.ends_with(" AM") || r.response.ends_with(" PM"),
        "{}",
        r.response
    );
    let r = a.handle_text("what is the date today");
    assert_eq!(r.matched.intent.as_deref(), Some("HassGetCurrentDate"));
    assert!(r.response.contains(", 20"), "{}", r.response);
    // No match: HA's no_intent error text, no actions.
    let r = a.handle_text("the quick brown fox");
    assert_eq!(r.matched.intent, None);
    assert_eq!(r.response, "Sorry, I couldn't understand that");
    let j = r.to_json();
    assert_eq!(j["intent"], Value::Null);
    assert!(j["timings_ms"]["total"].as_f64().unwrap() >= 0.0);
}

/// `responses:` in a user YAML file replace the package's per intent and key; the
/// package's other responses stay.
#[test]
fn user_responses_override_the_packages() {
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("custom.yaml");
    std::fs::write(
        &custom,
        "language: en\nintents:\n  HassTurnOn:\n    data:\n      - sentences: [\"engage [the] {name}\"]\n        response: engaged\nresponses:\n  intents:\n    HassTurnOn:\n      default: \"{{ slots.name }} is on\"\n      engaged: \"Engaged the {{ slots.name | lower }}\"\n  errors:\n    no_intent: \"Pardon?\"\n",
    )
    .unwrap();
    let engine = hearth_runtime::intent::IntentEngine::load(
        &intent_common::data_path(),
        &[custom],
        &home_path(),
    )
    .unwrap();
    let mut a = Assistant::new(engine, home(), Actions::none());
    let r = a.handle_text("turn on the overhead light");
    assert_eq!(r.response, "Overhead Light is on");
    let r = a.handle_text("engage the desk lamp");
    assert_eq!(r.matched.intent.as_deref(), Some("HassTurnOn"));
    assert_eq!(r.response, "Engaged the desk lamp");
    // Keys the user did not set keep the package's text.
    let r = a.handle_text("turn off the ceiling fan");
    assert_eq!(r.response, "Turned off the fan");
    let r = a.handle_text("the quick brown fox");
    assert_eq!(r.response, "Pardon?");
}

/// Accepts one HTTP request; returns its body.
fn http_listener(status: u16) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s);
        let mut len = 0;
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        assert!(first.starts_with("POST /hook HTTP/1.1"), "{first}");
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let mut s = r.into_inner();
        write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").unwrap();
        String::from_utf8(body).unwrap()
    });
    (port, h)
}

#[test]
fn webhook_posts_the_event() {
    let (port, h) = http_listener(200);
    let mut a = assistant(&format!(
        "actions: [{{type: webhook, url: 'http://127.0.0.1:{port}/hook'}}]"
    ));
    let r = a.handle_text("turn off the desk lamp");
    assert_eq!(r.actions.len(), 1);
    assert_eq!(r.actions[0].error, None);
    let body: Value = serde_json::from_str(&h.join().unwrap()).unwrap();
    assert_eq!(body["intent"], "HassTurnOff");
    assert_eq!(body["slots"], json!({"name": "Desk Lamp"}));
    assert_eq!(body["entity_id"], "light.desk_lamp");
    assert_eq!(body["stage"], "template");
    assert_eq!(body["response"], "Turned off the light");

    // A server error is reported, not swallowed.
    let (port, h) = http_listener(500);
    let mut a = assistant(&format!(
        "actions: [{{type: webhook, url: 'http://127.0.0.1:{port}/hook'}}]"
    ));
    let r = a.handle_text("turn off the desk lamp");
    h.join().unwrap();
    let err = r.actions[0].error.as_deref().unwrap();
    assert!(err.contains("500"), "{err}");
}

/// The broker process and its config directory (deleted with it).
struct Broker(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A mosquitto broker on a free loopback port.
fn broker() -> (Broker, u16) {
    let port = free_port();
    (broker_on(port), port)
}

/// A mosquitto broker on `port`, once it accepts connections.
fn broker_on(port: u16) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (scripts/setup-deps installs it)");
    let broker = Broker(child, dir);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "mosquitto did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}

/// `mosquitto_sub` on `topic` for `count` messages, returned once its subscription is
/// acknowledged. Line-buffered (`stdbuf`): a pipe would hold its output back until exit.
fn subscriber(
    port: u16,
    topic: &str,
    count: usize,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut sub = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-C",
            &count.to_string(),
        ])
        .args(["-v", "-d", "-W", "20", "-q", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    let mut out = BufReader::new(sub.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "mosquitto_sub ended");
        if line.contains("SUBACK") {
            break;
        }
    }
    (sub, out)
}

/// The first message line: `topic payload`.
fn message(out: &mut BufReader<std::process::ChildStdout>) -> (String, Value) {
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no message");
        // Debug lines ("Client …", "Subscribed …") are not `topic {json}`.
        let Some((topic, payload)) = line.trim_end().split_once(' ') else {
            continue;
        };
        if line.starts_with("Client ") || !payload.starts_with('{') {
            continue;
        }
        return (topic.to_string(), serde_json::from_str(payload).unwrap());
    }
}

#[test]
fn mqtt_publishes_to_a_real_broker() {
    let (_broker, port) = broker();
    let mut a = assistant(&format!(
        "actions: [{{type: mqtt, host: 127.0.0.1, port: {port}, topic_prefix: home}}]"
    ));
    let (mut sub, mut out) = subscriber(port, "home/#", 1);
    let r = a.handle_text("turn on the coffee maker");
    assert_eq!(r.actions[0].error, None, "{:?}", r.actions);
    let (topic, payload) = message(&mut out);
    assert_eq!(topic, "home/switch/coffee_maker/HassTurnOn");
    assert_eq!(payload["slots"], json!({"name": "Coffee Maker"}));
    assert_eq!(payload["response"], "Turned on the switch");
    sub.wait().unwrap();

    // An area-wide command has no single entity: the intent topic.
    let (mut sub, mut out) = subscriber(port, "home/#", 1);
    a.handle_text("turn off the lights in the living room");
    let (topic, payload) = message(&mut out);
    assert_eq!(topic, "home/intent/HassTurnOff");
    assert_eq!(payload["slots"]["area"], "Living Room");
    sub.wait().unwrap();
}

#[test]
fn mqtt_queues_while_the_broker_is_down() {
    let port = free_port();
    let mut a = assistant(&format!(
        "actions: [{{type: mqtt, host: 127.0.0.1, port: {port}}}]"
    ));
    // Down: the event is kept, and the failure reported.
    let r = a.handle_text("turn on the desk lamp");
    let err = r.actions[0].error.as_deref().unwrap();
    assert!(err.contains("1 event(s) queued"), "{err}");
    // Up again: the queued event goes first, then the new one.
    let _broker = broker_on(port);
    let (mut sub, mut out) = subscriber(port, "hearth/#", 2);
    let r = a.handle_text("turn off the desk lamp");
    assert_eq!(r.actions[0].error, None);
    let (t1, p1) = message(&mut out);
    let (t2, p2) = message(&mut out);
    assert_eq!(t1, "hearth/light/desk_lamp/HassTurnOn");
    assert_eq!(p1["intent"], "HassTurnOn");
    assert_eq!(t2, "hearth/light/desk_lamp/HassTurnOff");
    assert_eq!(p2["intent"], "HassTurnOff");
    sub.wait().unwrap();
}

#[test]
fn shell_gets_slots_and_filters_by_intent() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let yaml = format!(
        "actions:\n  - type: shell\n    intents: [HassTurnOn]\n    command: [/bin/sh, -c, 'echo \"$1 $HEARTH_SLOT_NAME $HEARTH_ENTITY_ID\" >> \"$0\"', '{}', '{{intent}}']\n",
        log.display()
    );
    let mut a = assistant(&yaml);
    let r = a.handle_text("turn on the reading lamp");
    assert_eq!(r.matched.stage, Some(Stage::Template));
    assert_eq!(r.actions.len(), 1);
    assert_eq!(r.actions[0].error, None);
    // Filtered out: no run.
    let r = a.handle_text("turn off the reading lamp");
    assert!(r.actions.is_empty());
    let got = std::fs::read_to_string(&log).unwrap();
    assert_eq!(got, "HassTurnOn Reading Lamp light.reading_lamp\n");
}
