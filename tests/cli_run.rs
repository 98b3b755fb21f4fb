//! End-to-end tests of `hearth run / chat / bench / perplexity` on the real
//! SmolLM2-135M model (converted losslessly from the GGUF `scripts/fetch-models`
//! downloads), including the bad-input cases: each must fail with a clear message
//! and a non-zero exit code, never a panic.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn hearth_home() -> PathBuf {
    std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth")
        })
}

/// The converted model (kept for the whole test binary) and a scratch dir.
fn fixture() -> &'static (PathBuf, tempfile::TempDir) {
    static F: OnceLock<(PathBuf, tempfile::TempDir)> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let converted = hearth_home().join("models/smollm2-135m-instruct.hearth");
        if converted.exists() {
            return (converted, dir);
        }
        let gguf = hearth_home().join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            gguf.exists(),
            "{} is missing: run scripts/fetch-models",
            gguf.display()
        );
        let out = dir.path().join("smollm2.hearth");
        hearth_runtime::convert::convert_gguf(
            &gguf,
            &out,
            hearth_runtime::convert::QuantPolicy::Keep,
            &mut |_, _| {},
        )
        .unwrap();
        (out, dir)
    })
}

fn model() -> &'static Path {
    &fixture().0
}

fn hearth(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// Run and expect success; returns stdout.
fn ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = hearth(args, stdin);
    assert!(
        out.status.success(),
        "hearth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run and expect a clean failure whose stderr mentions `needle`.
fn fails(args: &[&str], stdin: Option<&[u8]>, needle: &str) {
    let out = hearth(args, stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "hearth {args:?} should fail");
    assert_ne!(
        out.status.code(),
        Some(101),
        "hearth {args:?} panicked: {err}"
    );
    assert!(!err.contains("panicked"), "hearth {args:?} panicked: {err}");
    assert!(
        err.contains(needle),
        "hearth {args:?}: expected {needle:?} in: {err}"
    );
}

fn golden() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runtime/tests/data/golden/smollm2-135m-greedy.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["runs"][0].clone()
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn run_json_with_prompt_ids_and_text_match_llama_cpp() {
    let g = golden();
    let prompt: Vec<String> = ids(&g["prompt_ids"]).iter().map(u64::to_string).collect();
    let m = model().to_str().unwrap();
    let out = ok(
        &[
            "run",
            m,
            "--prompt-ids",
            &prompt.join(" "),
            "--temp",
            "0",
            "-n",
            "8",
            "--threads",
            "1",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids(&v["prompt_ids"]), ids(&g["prompt_ids"]));
    let got = ids(&v["ids"]);
    assert_eq!(got.len(), 8);
    // llama.cpp's first two tokens; step 2 is a near-tie (margin 0.008).
    assert_eq!(got[..2], ids(&g["ids"])[..2]);
    assert!(v["text"].as_str().unwrap().starts_with("1."));
    assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0 && v["prompt_ms"].as_f64().unwrap() > 0.0);

    // The same prompt as text through the chat template (default system prompt).
    let out = ok(
        &[
            "run",
            m,
            "-p",
            "Give me three tips for staying healthy.",
            "-n",
            "8",
            "--json",
            "--threads",
            "2",
        ],
        None,
    );
    let w: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids(&w["prompt_ids"]), ids(&g["prompt_ids"]));
    assert_eq!(ids(&w["ids"]), got, "1 and 2 threads agree");

    // --raw skips the template; streaming mode prints the text.
    let out = ok(
        &[
            "run",
            m,
            "-p",
            "The capital of France is",
            "--raw",
            "-n",
            "4",
            "--threads",
            "1",
            "--json",
        ],
        None,
    );
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_ne!(ids(&r["prompt_ids"])[0], 1, "no <|im_start|> with --raw");
    let streamed = ok(
        &[
            "run",
            m,
            "-p",
            "The capital of France is",
            "--raw",
            "-n",
            "4",
            "--threads",
            "1",
        ],
        None,
    );
    assert_eq!(
        streamed.strip_suffix('\n').unwrap(),
        r["text"].as_str().unwrap()
    );
}

#[test]
fn seeded_sampling_is_reproducible_from_the_cli() {
    let m = model().to_str().unwrap();
    let args = |seed: &'static str| {
        [
            "run",
            m,
            "-p",
            "Tell me a story.",
            "-n",
            "12",
            "--temp",
            "1.0",
            "--seed",
            seed,
            "--threads",
            "1",
            "--json",
        ]
    };
    let a = ok(&args("5"), None);
    let b = ok(&args("5"), None);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&a).unwrap()["ids"],
        serde_json::from_str::<serde_json::Value>(&b).unwrap()["ids"]
    );
}

#[test]
fn chat_answers_every_turn() {
    let m = model().to_str().unwrap();
    let out = ok(
        &["chat", m, "--temp", "0", "-n", "12", "--threads", "1"],
        Some(b"Hi!\nWhat is 2+2?\n"),
    );
    let replies: Vec<&str> = out.split("\n\n").filter(|s| !s.trim().is_empty()).collect();
    assert_eq!(replies.len(), 2, "{out:?}");
}

#[test]
fn bench_and_perplexity_report_figures() {
    let m = model().to_str().unwrap();
    let out = ok(
        &[
            "bench",
            m,
            "-p",
            "8",
            "-n",
            "4",
            "-r",
            "1",
            "--threads",
            "1",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for k in ["prompt_tokens_per_s", "gen_tokens_per_s", "load_ms"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
    assert!(
        v["peak_rss_bytes"].as_u64().unwrap() > 50 << 20,
        "the model is mapped and touched: {v}"
    );

    let text = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runtime/tests/data/golden/smollm2-135m-greedy.json");
    let out = ok(
        &[
            "perplexity",
            m,
            text.to_str().unwrap(),
            "-c",
            "64",
            "--chunks",
            "2",
            "--threads",
            "2",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let ppl = v["ppl"].as_f64().unwrap();
    assert_eq!(v["chunks"].as_u64(), Some(2));
    assert!(ppl.is_finite() && ppl > 1.0 && ppl < 1000.0, "{v}");
}

#[test]
fn bad_input_fails_cleanly() {
    let (m, dir) = (model().to_str().unwrap(), fixture().1.path());
    fails(&["run", m, "-p", ""], None, "empty prompt");
    fails(&["run", m, "--prompt-ids", "  "], None, "empty prompt");
    fails(&["run", m, "--prompt-ids", "1 x 3"], None, "not a token id");
    fails(
        &["run", m, "--prompt-ids", "1 99999999"],
        None,
        "outside the vocabulary",
    );
    fails(
        &[
            "run",
            m,
            "-p",
            "Give me three tips for staying healthy.",
            "--ctx",
            "16",
        ],
        None,
        "context full",
    );
    fails(
        &["run", m, "-p", "hi", "--ctx", "100000"],
        None,
        "exceeds the 8192 tokens",
    );
    fails(
        &["run", m, "-p", "hi", "--threads", "0"],
        None,
        "threads must be between 1 and",
    );
    fails(
        &["run", m, "-p", "hi", "--threads", "10000"],
        None,
        "threads must be between 1 and",
    );
    fails(&["run", m, "-p", "hi", "--top-p", "2"], None, "top-p");
    fails(
        &["run", "/nonexistent/model.hearth", "-p", "hi"],
        None,
        "cannot load model",
    );
    fails(
        &["chat", m, "-n", "2", "--threads", "1"],
        Some(b"hello\n\xff\xfe\n"),
        "UTF-8",
    );

    let msgs = dir.join("messages.json");
    std::fs::write(&msgs, r#"[{"role": "wizard", "content": "hi"}]"#).unwrap();
    fails(
        &["run", m, "--messages", msgs.to_str().unwrap()],
        None,
        "unknown chat role \"wizard\"",
    );

    let bad_text = dir.join("latin1.txt");
    std::fs::write(&bad_text, b"caf\xe9 ".repeat(100)).unwrap();
    fails(
        &["perplexity", m, bad_text.to_str().unwrap()],
        None,
        "not UTF-8",
    );

    // A model file whose architecture this build does not know.
    let bytes = std::fs::read(model()).unwrap();
    let at = bytes
        .windows(15)
        .position(|w| w == b"\"arch\": \"llama\"")
        .expect("arch in the config");
    let mut patched = bytes;
    patched[at..at + 15].copy_from_slice(b"\"arch\": \"mamba\"");
    let mamba = dir.join("mamba.hearth");
    std::fs::write(&mamba, patched).unwrap();
    fails(
        &["run", mamba.to_str().unwrap(), "-p", "hi"],
        None,
        "unknown variant `mamba`",
    );
}
