//! `hearth serve` end to end, driven by the real clients: the `wyoming` package's
//! AsyncTcpClient and the `openai` package (tests/serve/*.py, run with the venv
//! `scripts/setup-python` makes), plus curl. Needs `scripts/fetch-models` (SmolLM2,
//! Whisper tiny.en, jfk.wav, the intent templates).
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{espeak, fetched, hearth, python, repo, temp_dir};

const API_KEY: &str = "test-key-1234";

/// A running `hearth serve`, killed on drop.
struct Server {
    child: Child,
    http: Option<String>,
    wyoming: Option<u16>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `hearth serve ARGS` (ports 0 = free ports) and waits for its "listening" lines.
    fn start(args: &[&str], config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("serve.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = hearth()
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .args(["--threads", "2"])
            .args(args)
            .env_remove("HEARTH_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let wanted = args
            .iter()
            .filter(|a| ["--http", "--wyoming"].contains(a))
            .count();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut s = Server {
            child,
            http: None,
            wyoming: None,
        };
        for _ in 0..wanted {
            let line = rx
                .recv_timeout(Duration::from_secs(300))
                .expect("hearth serve did not start");
            if let Some(a) = line.strip_prefix("hearth serve: http listening on ") {
                s.http = Some(a.to_string());
            } else if let Some(a) = line.strip_prefix("hearth serve: wyoming listening on tcp://") {
                s.wyoming = Some(a.rsplit(':').next().unwrap().parse().unwrap());
            } else {
                panic!("unexpected output: {line}");
            }
        }
        drop(dir); // the config was read at start-up
        s
    }

    fn base(&self) -> &str {
        self.http.as_deref().unwrap()
    }

    /// `curl` with the API key; returns (status, body).
    fn curl(&self, path: &str, extra: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
            .args(["-H", &format!("Authorization: Bearer {API_KEY}")])
            .args(extra)
            .arg(format!("{}{path}", self.base()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

fn run_py(script: &str, args: &[&str]) -> Output {
    let out = Command::new(python())
        .arg(repo(&format!("tests/serve/{script}")))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    out
}

/// The sample home plus a shell action that appends "INTENT SLOTS-JSON" lines to `log`.
fn home_with_shell_action(dir: &Path, log: &Path) -> PathBuf {
    let mut yaml = std::fs::read_to_string(repo("examples/home.yaml")).unwrap();
    assert!(
        !yaml.contains("\nactions:"),
        "examples/home.yaml grew actions"
    );
    yaml.push_str(&format!(
        "\nactions:\n  - type: shell\n    command: [sh, -c, 'printf \"%s %s\\n\" \"$HEARTH_INTENT\" \"$HEARTH_SLOT_AREA\" >> \"$0\"', {}]\n",
        serde_json::to_string(log.to_str().unwrap()).unwrap()
    ));
    let home = dir.join("home.yaml");
    std::fs::write(&home, yaml).unwrap();
    home
}

#[test]
fn wyoming_with_the_wyoming_client_and_bad_input() {
    let dir = temp_dir("serve-wyoming");
    let log = dir.join("actions.log");
    let home = home_with_shell_action(&dir, &log);
    // 22.05 kHz: the server resamples it on the way.
    let command = espeak(&dir, "kitchen.wav", "turn on the kitchen light");
    let s = Server::start(
        &[
            "--home",
            home.to_str().unwrap(),
            "--wyoming",
            "tcp://127.0.0.1:0",
            "--whisper",
            fetched("models/ggml-tiny.en.bin").to_str().unwrap(),
        ],
        "[limits]\nwyoming_read_timeout_s = 2\n",
    );
    let port = s.wyoming.unwrap().to_string();
    let jfk = fetched("audio/jfk.wav");
    let args = [&port, jfk.to_str().unwrap(), command.to_str().unwrap()];
    run_py("wyoming_client.py", &args);
    // The two commands handled (typed, then spoken) ran the home's action; recognize and
    // the unknown sentence did not.
    let actions = std::fs::read_to_string(&log).unwrap();
    assert_eq!(actions, "HassTurnOn Kitchen\nHassTurnOn Kitchen\n");
    run_py("wyoming_bad.py", &[&port]);
    // Still serving after all of that.
    run_py("wyoming_client.py", &args);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn http_with_the_openai_client_curl_and_load() {
    let model = fetched("models/smollm2-135m-instruct.hearth");
    let s = Server::start(
        &[
            "--http",
            "127.0.0.1:0",
            "--api-key",
            API_KEY,
            "--model",
            model.to_str().unwrap(),
            "--model",
            &format!("smol-b={}", model.display()),
            "--queue",
            "2",
        ],
        "[limits]\nhttp_body_bytes = 1048576\n",
    );
    let base = format!("{}/v1", s.base());
    let jfk = fetched("audio/jfk.wav");
    let prompt = "What is the capital of France?";
    let n = "24";
    let out = run_py(
        "openai_client.py",
        &[&base, API_KEY, jfk.to_str().unwrap(), prompt, n],
    );
    let got: serde_json::Value = serde_json::from_slice(
        out.stdout
            .trim_ascii_end()
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap(),
    )
    .unwrap();

    // Greedy chat over HTTP = `hearth run` greedy on the same model and prompt.
    let run = hearth()
        .args(["run", model.to_str().unwrap(), "-p", prompt, "--temp", "0"])
        .args(["-n", n, "--json", "--threads", "2"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let want: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(got["chat"], want["text"], "HTTP chat vs hearth run");

    // curl: health (no key needed), metrics, a body over the limit, malformed JSON.
    let health = Command::new("curl")
        .args(["-sS", &format!("{}/health", s.base())])
        .output()
        .unwrap();
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["llm"], "smollm2-135m-instruct");
    let (code, metrics) = s.curl("/metrics", &[]);
    assert_eq!(code, 200);
    for name in [
        "hearth_llm_tokens_per_second{model=\"smollm2-135m-instruct\"}",
        "hearth_llm_queue_depth{model=\"smollm2-135m-instruct\"} 0",
        "hearth_llm_queue_wait_seconds_count",
        "hearth_llm_generation_seconds_bucket",
        "hearth_asr_seconds_count 1",
        "hearth_http_responses_total{route=\"/v1/chat/completions\",status=\"200\"} 3",
        "hearth_http_responses_total{route=\"/v1/chat/completions\",status=\"404\"} 1",
        // The second model has its own queue and series: the one chat sent to it.
        "hearth_llm_requests_total{model=\"smol-b\"} 1",
        "hearth_llm_queue_capacity{model=\"smol-b\"} 2",
        "hearth_http_responses_total{route=\"/v1/models\",status=\"401\"} 1",
    ] {
        assert!(metrics.contains(name), "{name} not in:\n{metrics}");
    }
    let tps: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("hearth_llm_tokens_per_second{model=\"smollm2-135m-instruct\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(tps > 0.0, "{tps}");

    let dir = temp_dir("serve-http");
    let big = dir.join("big.json");
    let mut f = std::fs::File::create(&big).unwrap();
    write!(f, "{{\"prompt\": \"{}\"}}", "a".repeat(2 << 20)).unwrap();
    drop(f);
    let (code, _) = s.curl(
        "/v1/completions",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", big.display()),
        ],
    );
    assert_eq!(code, 413, "a 2 MiB body against a 1 MiB limit");
    let (code, body) = s.curl(
        "/v1/chat/completions",
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            "{\"messages\": [ oops",
        ],
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid_request_error"), "{body}");
    assert_eq!(s.curl("/v1/models", &[]).0, 200, "still serving");

    run_py("load.py", &[&base, API_KEY, "60"]);
    assert_eq!(s.curl("/health", &[]).0, 200, "alive after the load");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_unauthenticated_non_loopback_http() {
    let out = hearth()
        .args(["serve", "--http", "0.0.0.0:0"])
        .env_remove("HEARTH_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-loopback") && err.contains("API key"),
        "{err}"
    );
    let out = hearth()
        .arg("serve")
        .env_remove("HEARTH_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to serve"));
}
