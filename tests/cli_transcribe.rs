//! `hearth transcribe` and `hearth whisper import` end to end.
//! Needs `scripts/fetch-models` (Whisper tiny.en, jfk.wav).
mod common;

use std::process::Command;

use common::{fetched, hearth, repo, temp_dir};

#[test]
fn json_output_per_file_and_bad_files_reported() {
    let jfk = fetched("audio/jfk.wav");
    let dir = temp_dir("transcribe");
    let bogus = dir.join("bogus.wav");
    std::fs::write(&bogus, b"RIFF not really").unwrap();
    let out = hearth()
        .args(["transcribe", "--json", "--threads", "2", "--model"])
        .arg(fetched("models/ggml-tiny.en.bin"))
        .arg(&jfk)
        .arg(&bogus)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // The bad file fails the run, but the good file's result is still printed.
    assert!(!out.status.success());
    assert!(
        stderr.contains("bogus.wav") && stderr.contains("1 of 2 files failed"),
        "{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["file"], jfk.display().to_string());
    let text = v["text"].as_str().unwrap().to_lowercase();
    assert!(
        text.contains("ask not what your country can do for you"),
        "{text}"
    );
    assert!((v["audio_s"].as_f64().unwrap() - 11.0).abs() < 0.01, "{v}");
    assert!(v["ms"].as_u64().unwrap() > 0);
    // The encoder context sized to jfk.wav's 176 000 samples (scripts/bench/stt reads it).
    let ctx = hearth_runtime::voice::audio_ctx_for(176_000);
    assert_eq!(v["audio_ctx"].as_u64(), Some(ctx as u64), "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_model_names_fetch_models() {
    let out = hearth()
        .args(["transcribe", "--model", "/nonexistent/ggml.bin", "x.wav"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("scripts/fetch-models"), "{stderr}");
}

#[test]
fn import_accepts_ready_ggml_and_rejects_other_files() {
    let dir = temp_dir("import");
    let model = fetched("models/ggml-tiny.en.bin");
    let out = dir.join("copy.bin");
    let ok = hearth()
        .args(["whisper", "import", "--from"])
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&model).unwrap());
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, vec![7u8; 100]).unwrap();
    let never = dir.join("never.bin");
    let bad = hearth()
        .args(["whisper", "import", "--from"])
        .arg(&junk)
        .arg("-o")
        .arg(&never)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a ggml whisper model"));
    assert!(!never.exists() && !dir.join("never.bin.part").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flac_and_ogg_vorbis_are_transcribed() {
    // The shipped recording as 48 kHz stereo FLAC and 44.1 kHz Ogg Vorbis, made by sox.
    let wav = repo("examples/audio/turn-on-kitchen-lights.wav");
    let dir = temp_dir("flac-ogg");
    let flac = dir.join("kitchen.flac");
    let ogg = dir.join("kitchen.ogg");
    for (out, rate, channels) in [(&flac, "48000", "2"), (&ogg, "44100", "1")] {
        let ok = Command::new("sox")
            .arg(&wav)
            .args(["-r", rate, "-c", channels])
            .arg(out)
            .status()
            .expect("sox (scripts/setup-deps installs it)")
            .success();
        assert!(ok);
    }
    let out = hearth()
        .args(["transcribe", "--json", "--threads", "2", "--model"])
        .arg(fetched("models/ggml-tiny.en.bin"))
        .arg(&flac)
        .arg(&ogg)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for v in &lines {
        let text = v["text"].as_str().unwrap().to_lowercase();
        assert!(text.contains("turn on the kitchen light"), "{v}");
        assert!((v["audio_s"].as_f64().unwrap() - 1.888).abs() < 0.01, "{v}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
