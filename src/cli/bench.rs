//! `hearth bench`: prompt-processing and generation speed, load time, peak memory.
//!
//! Like llama-bench: `pp` runs a prompt of `-p` tokens in one go from an empty
//! cache; `tg` generates `-n` tokens one at a time from an empty cache. Each test is
//! repeated `-r` times and the mean reported, after one untimed warm-up (a prompt of
//! `-p` tokens and one generated token, as llama-bench does; `--no-warmup` skips it):
//! the first pass over a freshly mapped model pays its page faults and wakes the
//! thread team, which is not what a running assistant sees.
use super::run::{load_engine, EngineArgs};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `hearth bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model file (.hearth).
    pub model: PathBuf,
    /// Prompt tokens.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 64)]
    pub p: usize,
    /// Generated tokens.
    #[arg(short = 'n', long = "n-gen", default_value_t = 64)]
    pub n: usize,
    /// Repetitions.
    #[arg(short = 'r', long = "reps", default_value_t = 3)]
    pub reps: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Time the first pass too (no untimed warm-up run before the repetitions).
    #[arg(long)]
    pub no_warmup: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Peak resident set size in bytes (`VmHWM`), where the OS reports it.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Run `hearth bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    if a.reps == 0 {
        anyhow::bail!("--reps must be at least 1");
    }
    let (engine, load_ms) = load_engine(&a.model, &a.engine)?;
    let vocab = engine.hparams().vocab_size as u64;
    // Deterministic "random" tokens spread over the vocabulary.
    let tokens: Vec<u32> = (0..a.p.max(1) as u64)
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let ctx = (a.p.max(a.n) + 1).min(engine.hparams().context_length);
    let mut session = engine.new_session(ctx)?;
    if !a.no_warmup {
        if a.p > 0 {
            session.reset();
            session.prefill(&tokens[..a.p])?;
        }
        if a.n > 0 {
            session.reset();
            session.decode(tokens[0])?;
        }
    }
    let (mut pp_ms, mut tg_ms) = (0.0, 0.0);
    for _ in 0..a.reps {
        if a.p > 0 {
            session.reset();
            let t = Instant::now();
            session.prefill(&tokens[..a.p])?;
            pp_ms += t.elapsed().as_secs_f64() * 1e3;
        }
        if a.n > 0 {
            session.reset();
            let mut tok = tokens[0];
            let t = Instant::now();
            for _ in 0..a.n {
                let l = session.decode(tok)?;
                tok = hearth_runtime::llm::sampler::argmax(l);
            }
            tg_ms += t.elapsed().as_secs_f64() * 1e3;
        }
    }
    let reps = a.reps as f64;
    let pp_tps = if a.p > 0 {
        a.p as f64 / (pp_ms / reps / 1e3)
    } else {
        0.0
    };
    let tg_tps = if a.n > 0 {
        a.n as f64 / (tg_ms / reps / 1e3)
    } else {
        0.0
    };
    let rss = peak_rss();
    if a.json {
        let v = serde_json::json!({
            "model": engine.info().name,
            "kernels": engine.kernels().name().as_str(),
            "threads": engine.options().threads,
            "load_ms": load_ms,
            "prompt_tokens": a.p,
            "prompt_tokens_per_s": pp_tps,
            "gen_tokens": a.n,
            "gen_tokens_per_s": tg_tps,
            "reps": a.reps,
            "peak_rss_bytes": rss,
        });
        println!("{v}");
    } else {
        println!("model:      {}", engine.info().name);
        println!(
            "kernels:    {}, {} threads",
            engine.kernels().name().as_str(),
            engine.options().threads
        );
        println!("load:       {load_ms:.1} ms");
        println!("pp{}:       {pp_tps:.1} t/s", a.p);
        println!("tg{}:       {tg_tps:.1} t/s", a.n);
        if let Some(r) = rss {
            println!("peak RSS:   {:.1} MiB", r as f64 / (1024.0 * 1024.0));
        }
    }
    Ok(())
}
