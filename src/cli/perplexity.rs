//! `hearth perplexity`: llama.cpp's perplexity method on a text file, so the
//! figures compare with `llama-perplexity -f FILE -c 512`.
use super::run::{load_engine, EngineArgs};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `hearth perplexity`.
#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// Model file (.hearth).
    pub model: PathBuf,
    /// UTF-8 text file.
    pub file: PathBuf,
    /// Window (context) size in tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx: usize,
    /// Most windows to evaluate (default: all that fit).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Print one JSON object at the end.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Run `hearth perplexity`.
pub fn run(a: PerplexityArgs) -> Result<()> {
    let bytes =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", a.file.display()))?;
    let (engine, _) = load_engine(&a.model, &a.engine)?;
    let tokens = engine.tokenize(&text, engine.info().add_bos)?;
    eprintln!(
        "{} tokens; windows of {} tokens, scoring the second half of each",
        tokens.len(),
        a.ctx
    );
    let t = std::time::Instant::now();
    let p = hearth_runtime::llm::perplexity(&engine, &tokens, a.ctx, a.chunks, |i, ppl| {
        eprint!("[{}]{ppl:.4},", i + 1);
    })?;
    eprintln!();
    let secs = t.elapsed().as_secs_f64();
    if a.json {
        let v = serde_json::json!({
            "ppl": p.ppl, "stderr": p.stderr, "chunks": p.chunks, "ctx": a.ctx,
            "tokens_scored": p.tokens, "seconds": secs,
        });
        println!("{v}");
    } else {
        println!("Final estimate: PPL = {:.4} +/- {:.5}", p.ppl, p.stderr);
        eprintln!(
            "{} chunks, {} tokens scored, {secs:.1} s",
            p.chunks, p.tokens
        );
    }
    Ok(())
}
