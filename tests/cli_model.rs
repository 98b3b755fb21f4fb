//! End-to-end: `hearth convert` and `hearth inspect` as a user runs them.
use hearth_runtime::model::synth::{tiny_config, write_random_model};
use hearth_runtime::model::TensorFormat;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .output()
        .expect("run hearth")
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hearth failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn failed(out: Output) -> String {
    assert!(!out.status.success(), "hearth should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn smollm2() -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/hearth"));
    let p = home.join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models",
        p.display()
    );
    p
}

#[test]
fn convert_keep_then_inspect_smollm2() {
    let dir = tempfile::tempdir().unwrap();
    // No -o: the output goes next to the input, named `.hearth`.
    let input = dir.path().join("smol.gguf");
    std::os::unix::fs::symlink(smollm2(), &input).unwrap();
    let msg = ok(hearth(&["convert", s(&input), "--quant", "keep"]));
    let out = dir.path().join("smol.hearth");
    assert!(
        out.exists() && msg.contains("211 carried bit-exactly"),
        "{msg}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(hearth(&["inspect", s(&out), "--json", "--verify"]))).unwrap();
    assert_eq!(json["config"]["vocab_size"], 49152);
    assert_eq!(json["config"]["n_layers"], 30);
    assert_eq!(json["tokenizer"]["tokens"], 49152);
    // Format v2: the fast tokenizer's tables were built from the GGUF's tokenizer.
    let tables = &json["tokenizer"]["tables"];
    assert_eq!(tables["pre_tokenizer"], "smollm");
    assert_eq!(
        (
            &tables["tokens"],
            &tables["merges"],
            &tables["added_tokens"]
        ),
        (&49152.into(), &48900.into(), &17.into())
    );
    assert_eq!(
        (&json["format_version"], &json["outdated"]),
        (&2.into(), &false.into())
    );
    assert_eq!(json["totals"]["tensors"], 272);
    assert_eq!(json["verify"]["ok"], true);
    assert_eq!(json["file_bytes"], std::fs::metadata(&out).unwrap().len());
    let embd = &json["tensors"][0];
    assert_eq!(
        (embd["name"].as_str(), embd["format"].as_str()),
        (Some("token_embd.weight"), Some("Q8x4"))
    );
    assert_eq!(embd["bits_per_weight"], 8.5);
    let q = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "blk.0.attn_q.weight")
        .unwrap();
    assert_eq!(
        (
            q["format"].as_str(),
            q["rows"].as_u64(),
            q["bits_per_weight"].as_f64()
        ),
        (Some("Q4Ax4"), Some(576), Some(5.0))
    );

    let text = ok(hearth(&["inspect", s(&out)]));
    assert!(
        text.contains("vocab 49152, dim 576, 30 layers, 9 heads / 3 kv heads × 64, ffn 1536"),
        "{text}"
    );
    assert!(text.contains("total      272 tensors"), "{text}");
}

#[test]
fn inspect_verify_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.hearth");
    write_random_model(&path, &tiny_config(), TensorFormat::Q4x4, 5).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&ok(hearth(&["inspect", s(&path), "--json"]))).unwrap();
    let t = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "blk.1.ffn_up.weight")
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[t["offset"].as_u64().unwrap() as usize + 3] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    ok(hearth(&["inspect", s(&path)])); // loads: data is not hashed at load
    let e = failed(hearth(&["inspect", s(&path), "--verify"]));
    assert!(
        e.contains("checksum mismatch") && e.contains("blk.1.ffn_up.weight"),
        "{e}"
    );
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.hearth");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    let e = failed(hearth(&["inspect", s(&junk)]));
    assert!(e.contains("not a Hearth model file"), "{e}");
    let e = failed(hearth(&["convert", s(&junk), "--quant", "q5"]));
    assert!(e.contains("invalid value 'q5'"), "{e}");
    let e = failed(hearth(&[
        "convert",
        s(&junk),
        "-o",
        s(&dir.path().join("o.hearth")),
    ]));
    assert!(e.contains("converting") && e.contains("gguf"), "{e}");
    assert!(!dir.path().join("o.hearth").exists());
}
