//! `hearth serve`: the Wyoming and OpenAI-compatible HTTP servers (runtime/src/serve).
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hearth_runtime::serve::{run as serve, ServeConfig, Services};

/// Arguments of `hearth serve`. Flags override the `--config` file's keys.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML settings (keys: docs/serve.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Home file: intents and actions for Wyoming `recognize` and the handle path.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Wyoming address, e.g. tcp://127.0.0.1:10300.
    #[arg(long)]
    pub wyoming: Option<String>,
    /// HTTP address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub http: Option<String>,
    /// LLM, `PATH` or `NAME=PATH` (.hearth; repeatable, the first is the default; default:
    /// $HEARTH_HOME/models/smollm2-135m-instruct.hearth). Replaces the config's `llm`.
    #[arg(long, value_name = "[NAME=]PATH")]
    pub model: Vec<String>,
    /// Whisper ggml model (default: $HEARTH_HOME/models/ggml-tiny.en.bin).
    #[arg(long)]
    pub whisper: Option<PathBuf>,
    /// Bearer token for the HTTP API (required off loopback).
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Generation requests that may wait (more get HTTP 429).
    #[arg(long)]
    pub queue: Option<usize>,
    /// Worker threads for the LLM and Whisper.
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
}

/// `dst = v` when `v` is given.
fn set<T>(dst: &mut Option<T>, v: Option<T>) {
    if v.is_some() {
        *dst = v;
    }
}

/// Runs the servers until killed.
pub fn run(a: ServeArgs) -> Result<()> {
    let mut c = match &a.config {
        Some(p) => ServeConfig::from_file(p)?,
        None => ServeConfig::default(),
    };
    set(&mut c.home, a.home);
    set(&mut c.wyoming, a.wyoming);
    set(&mut c.http, a.http);
    if !a.model.is_empty() {
        c.llm = a.model;
    }
    set(&mut c.whisper, a.whisper);
    set(&mut c.api_key, a.api_key);
    set(&mut c.threads, a.threads);
    if let Some(q) = a.queue {
        c.limits.queue = q;
    }
    // Default models when none are named: those scripts/fetch-models puts in place, if there.
    let models = super::hearth_home().join("models");
    let default_llm = models.join("smollm2-135m-instruct.hearth");
    if c.llm.is_empty() && c.http.is_some() && default_llm.exists() {
        c.llm = vec![default_llm.to_string_lossy().into_owned()];
    }
    if c.whisper.is_none() {
        c.whisper = Some(super::transcribe::default_model()).filter(|p| p.exists());
    }
    let llm = (!c.llm.is_empty()).then(|| c.llm.join(", "));
    let whisper = c.whisper.as_ref().map(|p| p.display().to_string());
    for (what, p) in [("LLM", llm), ("Whisper model", whisper)] {
        match p {
            Some(p) => tracing::info!("{what}: {p}"),
            None => eprintln!("hearth serve: no {what} (run scripts/fetch-models, or name one)"),
        }
    }
    let services = Services::load(c).context("starting hearth serve")?;
    serve(services, |at| {
        // Scripts and tests wait for these lines (and read the port when 0 was asked for).
        if let Some(a) = at.http {
            println!("hearth serve: http listening on http://{a}");
        }
        if let Some(a) = at.wyoming {
            println!("hearth serve: wyoming listening on tcp://{a}");
        }
    })?;
    Ok(())
}
