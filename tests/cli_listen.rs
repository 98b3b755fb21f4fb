//! `hearth listen`, `hearth assist --mic` and `hearth devices` end to end, through cpal and
//! ALSA, with a fake microphone: ALSA's `file` plugin playing a raw recording (two spoken
//! commands separated by silence) as the capture device, set up by an ALSA configuration
//! the test writes and points `ALSA_CONFIG_PATH` at. No sound card needed.
//! Needs `scripts/fetch-models` (Whisper, intents) and `scripts/setup-deps` (ALSA headers,
//! espeak-ng, sox).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, speak};
use hearth_runtime::voice::load_audio;
use serde_json::{json, Value};

/// "turn off the desk lamp", spoken by espeak-ng, as 16 kHz mono.
fn desk_lamp(dir: &Path) -> Vec<f32> {
    load_audio(&speak(dir, "desk", "turn off the desk lamp"))
        .unwrap()
        .samples
}

/// Start of the first command in the fake microphone's stream.
const FIRST_AT: f64 = 1.0;

/// Writes the microphone's recording (1 s silence, the shipped "turn on the kitchen
/// lights", 1.5 s silence, "turn off the desk lamp", 2 s silence; raw S16LE 16 kHz mono)
/// and an ALSA configuration whose default capture device plays it. Returns the
/// configuration's path and the recording's length in seconds.
fn fake_mic(dir: &Path) -> (PathBuf, f64) {
    let kitchen = load_audio(&repo("examples/audio/turn-on-kitchen-lights.wav"))
        .unwrap()
        .samples;
    let silence = |s: f64| vec![0f32; (s * 16_000.0) as usize];
    let mut pcm = silence(FIRST_AT);
    pcm.extend(&kitchen);
    pcm.extend(silence(1.5));
    pcm.extend(desk_lamp(dir));
    pcm.extend(silence(2.0));
    let bytes: Vec<u8> = pcm
        .iter()
        .flat_map(|v| ((v.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    let raw = dir.join("mic.raw");
    std::fs::write(&raw, bytes).unwrap();
    // The `file` plugin reads `infile` as the captured data; the `plug` in front converts
    // it to whatever format and rate cpal asks for. (After the end of the file the plugin
    // repeats stale data, so the tests stop at the recording's length with --duration.)
    let conf = format!(
        r#"</usr/share/alsa/alsa.conf>
pcm.fakemic {{
  type plug
  slave {{ pcm "fakemic_file"; format S16_LE; rate 16000; channels 1 }}
  hint {{ show on; description "Hearth test microphone" }}
}}
pcm.fakemic_file {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{}"
  format "raw"
}}
pcm.!default "fakemic"
"#,
        raw.display()
    );
    let path = dir.join("asound.conf");
    std::fs::write(&path, conf).unwrap();
    (path, pcm.len() as f64 / 16_000.0)
}

/// Runs hearth with the fake microphone; fails the test if it has not finished in 5 min.
fn hearth(alsa_conf: &Path, args: &[&str]) -> (bool, String, String) {
    let dir = alsa_conf.parent().unwrap();
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env("ALSA_CONFIG_PATH", alsa_conf)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(300) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "hearth {args:?} did not finish: {}",
                std::fs::read_to_string(&err).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap(),
    )
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn listen_prints_each_utterance() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, seconds) = fake_mic(dir.path());
    let duration = format!("{seconds}");
    // The names bias Whisper as `hearth assist` does with the home's names: without them
    // tiny.en hears espeak-ng's "desk lamp" as "best lamp".
    let (ok, stdout, stderr) = hearth(
        &conf,
        &[
            "listen",
            "--json",
            "--threads",
            "2",
            "--prompt",
            "Kitchen,Desk Lamp",
            "--duration",
            &duration,
        ],
    );
    assert!(ok, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 2, "{stdout}\n{stderr}");
    let text = |v: &Value| v["text"].as_str().unwrap().to_lowercase();
    assert!(text(&lines[0]).contains("kitchen light"), "{}", lines[0]);
    assert!(text(&lines[1]).contains("desk lamp"), "{}", lines[1]);
    for v in &lines {
        assert_eq!(v["cut"], "silence", "{v}");
        assert!(v["latency_ms"].as_u64().is_some() && v["ms"].as_u64().unwrap() > 0);
    }
    // The first utterance starts with the pre-roll, before the command's first sound.
    let start = lines[0]["start_s"].as_f64().unwrap();
    assert!((FIRST_AT - 0.35..=FIRST_AT).contains(&start), "{start}");

    // Plain text, stopped by --max-utterances: one line.
    let (ok, stdout, stderr) = hearth(
        &conf,
        &["listen", "--threads", "2", "--max-utterances", "1"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.to_lowercase().contains("kitchen light"), "{stdout}");
}

#[test]
fn assist_mic_acts_on_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, seconds) = fake_mic(dir.path());
    let home = repo("examples/home.yaml");
    let duration = format!("{seconds}");
    let (ok, stdout, stderr) = hearth(
        &conf,
        &[
            "assist",
            "--mic",
            "--json",
            "--no-llm",
            "--threads",
            "2",
            "--home",
            home.to_str().unwrap(),
            "--duration",
            &duration,
        ],
    );
    assert!(ok, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 2, "{stdout}\n{stderr}");
    assert_eq!(lines[0]["intent"], "HassTurnOn", "{}", lines[0]);
    assert_eq!(
        lines[0]["slots"],
        json!({"area": "Kitchen", "domain": "light"})
    );
    assert_eq!(lines[0]["response"], "Turned on the lights");
    assert_eq!(lines[1]["intent"], "HassTurnOff", "{}", lines[1]);
    assert_eq!(lines[1]["slots"], json!({"name": "Desk Lamp"}));
}

#[test]
fn devices_lists_the_fake_microphone_and_bad_names_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, _) = fake_mic(dir.path());
    let (ok, stdout, stderr) = hearth(&conf, &["devices", "--json"]);
    assert!(ok, "{stderr}");
    let devices = json_lines(&stdout);
    let fake = devices
        .iter()
        .find(|d| d["id"] == "fakemic")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(fake["name"], "Hearth test microphone");
    let defaults: Vec<&Value> = devices.iter().filter(|d| d["default"] == true).collect();
    assert_eq!(defaults.len(), 1, "{stdout}");
    assert_eq!(defaults[0]["id"], "default");

    // Selected by name; a name that matches nothing is refused before any audio is read.
    let (ok, stdout, stderr) = hearth(
        &conf,
        &[
            "listen",
            "--device",
            "Hearth test",
            "--threads",
            "2",
            "--max-utterances",
            "1",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.to_lowercase().contains("kitchen light"), "{stdout}");
    let (ok, _, stderr) = hearth(&conf, &["listen", "--device", "no-such-mic"]);
    assert!(!ok);
    assert!(
        stderr.contains("no-such-mic") && stderr.contains("hearth devices"),
        "{stderr}"
    );
}
