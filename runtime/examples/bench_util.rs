//! Helpers for `scripts/bench/*` (benchmarks only, not part of the runtime's API).
//! Every subcommand prints one JSON object on stdout.
//!
//! ```text
//! bench_util convert IN.gguf OUT.hearth keep|q4|q4a|q8|mixed
//! bench_util load MODEL.hearth THREADS     open + Engine::load (+ 1-token eval): ms, RSS
//! bench_util weight-bytes FILE             bytes of weights read per generated token
//! bench_util bandwidth                     single-core triad and read-only GB/s
//! ```
//!
//! `cargo run --release -p hearth-runtime --example bench_util -- SUBCOMMAND ...`
use hearth_runtime::convert::{convert, QuantPolicy};
use hearth_runtime::gguf::GgufFile;
use hearth_runtime::llm::{Engine, EngineOptions};
use hearth_runtime::model::ModelFile;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A `/proc/self/status` field in KiB (Linux), or 0 elsewhere.
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn policy(s: &str) -> Res<QuantPolicy> {
    Ok(match s {
        "keep" => QuantPolicy::Keep,
        "q4" => QuantPolicy::Q4,
        "q4a" => QuantPolicy::Q4A,
        "q8" => QuantPolicy::Q8,
        "mixed" => QuantPolicy::Mixed,
        _ => return Err(format!("unknown policy {s:?}").into()),
    })
}

fn cmd_convert(input: &str, output: &str, pol: &str) -> Res<()> {
    let t = Instant::now();
    let r = convert(
        Path::new(input),
        Path::new(output),
        policy(pol)?,
        &mut |_, _| {},
    )?;
    let v = serde_json::json!({
        "output": output, "policy": pol, "bytes": r.bytes, "tensors": r.tensors,
        "carried": r.carried, "requantized": r.requantized,
        "seconds": t.elapsed().as_secs_f64(),
    });
    println!("{v}");
    Ok(())
}

/// Open + build the engine (what `hearth bench` calls load), then report the resident
/// memory: the weights stay in the page cache mapping until a forward pass reads them.
/// Then one forward pass over a 1-token prompt ("Hello"), because llama.cpp's reported
/// "load time" runs from opening the model to the end of its first evaluation (it
/// counts the page faults of the mapped weights).
fn cmd_load(path: &str, threads: usize) -> Res<()> {
    let rss0 = status_kib("VmRSS:");
    let t = Instant::now();
    let model = ModelFile::open(Path::new(path))?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let engine = Engine::load(
        Arc::new(model),
        EngineOptions {
            threads,
            ..Default::default()
        },
    )?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss1 = status_kib("VmRSS:");
    let prompt = engine.tokenize("Hello", engine.info().add_bos)?;
    let mut session = engine.new_session(64)?;
    black_box(session.prefill(&prompt)?);
    let first_eval_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss2 = status_kib("VmRSS:");
    // What part of the load is parsing the tokenizer JSON: parse it once more.
    let again = ModelFile::open(Path::new(path))?;
    let t = Instant::now();
    let tok = again.tokenizer_json().parse::<tokenizers::Tokenizer>();
    let tokenizer_ms = t.elapsed().as_secs_f64() * 1e3;
    black_box(tok.is_ok());
    let v = serde_json::json!({
        "open_ms": open_ms, "load_ms": load_ms, "first_eval_ms": first_eval_ms,
        "prompt_tokens": prompt.len(), "tokenizer_parse_ms": tokenizer_ms,
        "rss_before_kib": rss0, "rss_after_load_kib": rss1, "rss_after_first_eval_kib": rss2,
    });
    println!("{v}");
    Ok(())
}

/// Bytes of weight matrices one decode step reads: every matrix except the embedding
/// table (one row per token) — unless the output head is tied to it.
fn cmd_weight_bytes(path: &str) -> Res<()> {
    let (total, embd, has_head, file_len, params) = if path.ends_with(".gguf") {
        let g = GgufFile::open(Path::new(path))?;
        let ts = g.tensors();
        let size = |i: usize| -> Res<u64> { Ok(g.tensor_bytes(&ts[i])?.len() as u64) };
        let (mut total, mut embd, mut params) = (0u64, 0u64, 0u64);
        for (i, t) in ts.iter().enumerate() {
            params += t.dims.iter().product::<u64>();
            if t.dims.len() < 2 {
                continue;
            }
            total += size(i)?;
            if t.name == "token_embd.weight" {
                embd = size(i)?;
            }
        }
        let has_head = ts.iter().any(|t| t.name == "output.weight");
        let len = std::fs::metadata(path)?.len();
        (total, embd, has_head, len, params)
    } else {
        let m = ModelFile::open(Path::new(path))?;
        let (mut total, mut embd, mut params) = (0u64, 0u64, 0u64);
        for t in m.tensor_infos() {
            params += (t.rows * t.cols) as u64;
            if t.rows < 2 {
                continue;
            }
            total += t.len as u64;
            if t.name == "token_embd.weight" {
                embd = t.len as u64;
            }
        }
        let has_head = m.tensor_infos().iter().any(|t| t.name == "output.weight");
        (total, embd, has_head, m.file_len() as u64, params)
    };
    let per_token = if has_head { total - embd } else { total };
    let v = serde_json::json!({
        "matrix_bytes": total, "bytes_per_token": per_token, "tied_head": !has_head,
        "file_bytes": file_len, "params": params,
        "bits_per_weight": 8.0 * total as f64 / params as f64,
    });
    println!("{v}");
    Ok(())
}

/// Best time of `f` over calls until `budget` is spent (at least 3 calls).
fn best(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut n = 0;
    while n < 3 || start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        n += 1;
    }
    best
}

/// Single-core STREAM-like bandwidth over arrays much larger than the caches.
fn cmd_bandwidth() -> Res<()> {
    const LEN: usize = 16 << 20; // 64 MiB of f32 per array
    let b = vec![1.0f32; LEN];
    let c = vec![2.0f32; LEN];
    let mut a = vec![0.0f32; LEN];
    let s = black_box(0.5f32);
    let budget = Duration::from_millis(1500);
    let triad = best(budget, || {
        for ((a, b), c) in a.iter_mut().zip(&b).zip(&c) {
            *a = b + s * c;
        }
        black_box(&mut a);
    });
    let read = best(budget, || {
        // Eight independent sums so the adds do not bound the loop.
        let mut acc = [0.0f32; 8];
        for ch in b.chunks_exact(8) {
            for (x, y) in acc.iter_mut().zip(ch) {
                *x += y;
            }
        }
        black_box(acc);
    });
    let bytes = (LEN * 4) as f64;
    let v = serde_json::json!({
        "triad_gbs": 3.0 * bytes / triad / 1e9,
        "read_gbs": bytes / read / 1e9,
    });
    println!("{v}");
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["convert", i, o, p] => cmd_convert(i, o, p),
        ["load", m, t] => cmd_load(m, t.parse()?),
        ["weight-bytes", f] => cmd_weight_bytes(f),
        ["bandwidth"] => cmd_bandwidth(),
        _ => Err(
            "usage: bench_util convert IN OUT POLICY | load MODEL THREADS | \
                  weight-bytes FILE | bandwidth"
                .into(),
        ),
    }
}
