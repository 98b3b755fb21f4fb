//! `hearth intent`: sentences on stdin, one JSON match per line on stdout.
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hearth_runtime::intent::{default_data_path, IntentEngine};

/// Arguments of `hearth intent`.
#[derive(Args)]
pub struct IntentArgs {
    /// The home file (floors, areas, entities; see docs/home-file.md).
    #[arg(long)]
    pub home: PathBuf,
    /// Language of the templates.
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// The templates (`<lang>.json` from home-assistant-intents); default
    /// `$HEARTH_HOME/intents/<lang>.json`, which scripts/fetch-models creates.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Extra sentences/lists in Home Assistant's YAML shape (repeatable).
    #[arg(long)]
    pub custom: Vec<PathBuf>,
    /// Add the matching time in microseconds ("us") to each line (for benchmarks).
    #[arg(long)]
    pub timings: bool,
}

/// Runs the command.
pub fn run(args: &IntentArgs) -> Result<()> {
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| default_data_path(&args.lang));
    let engine = IntentEngine::load(&data, &args.custom, &args.home).context("loading intents")?;
    for w in engine.warnings() {
        eprintln!("warning: {w}");
    }
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        let start = std::time::Instant::now();
        let m = engine.recognize(&line);
        let us = start.elapsed().as_secs_f64() * 1e6;
        let mut json = m.to_json();
        if args.timings {
            json["us"] = serde_json::json!(us);
        }
        serde_json::to_writer(&mut out, &json)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}
