//! `hearth intent`: sentences on stdin, one JSON match per line on stdout. Also the
//! arguments it shares with `hearth assist` ([`IntentSetup`]).
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hearth_runtime::assist::llm::{LlmAnswer, LlmFallback, LlmOptions};
use hearth_runtime::intent::{default_data_path, Home, IntentEngine};
use hearth_runtime::llm::{default_threads, Engine, EngineOptions};
use hearth_runtime::model::ModelFile;

/// The intent pipeline's inputs: the home, the templates, the LLM stage. Flattened into
/// `hearth intent` and `hearth assist`.
#[derive(Args)]
pub struct IntentSetup {
    /// The home file (floors, areas, entities, actions; see docs/home-file.md).
    /// Default: examples/home.yaml when run from the repository.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Language of the templates.
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// The templates (`<lang>.json` from home-assistant-intents); default
    /// `$HEARTH_HOME/intents/<lang>.json`, which scripts/fetch-models creates.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Extra sentences, lists and responses in Home Assistant's YAML shape (repeatable).
    #[arg(long)]
    pub custom: Vec<PathBuf>,
    /// LLM for the fallback stage (default `$HEARTH_HOME/models/smollm2-135m-instruct.hearth`).
    /// `hearth assist` uses it unless --no-llm; `hearth intent` only when this is given.
    #[arg(long)]
    pub llm: Option<PathBuf>,
    /// Templates and fuzzy matching only: no LLM stage.
    #[arg(long)]
    pub no_llm: bool,
    /// Let the LLM choose intents but not answer questions.
    #[arg(long)]
    pub no_answers: bool,
    /// CPU threads for the LLM (and speech-to-text).
    #[arg(long, default_value_t = default_threads().min(4))]
    pub threads: usize,
}

impl IntentSetup {
    /// The home file: `--home`, else the repository's sample.
    pub fn home_path(&self) -> Result<PathBuf> {
        match &self.home {
            Some(h) => Ok(h.clone()),
            None if Path::new("examples/home.yaml").exists() => {
                Ok(PathBuf::from("examples/home.yaml"))
            }
            None => bail!("give the home file with --home HOME.yaml (see docs/home-file.md)"),
        }
    }

    /// The intent engine and the home, warnings printed.
    pub fn load(&self) -> Result<(IntentEngine, Home)> {
        let home_path = self.home_path()?;
        let data = self
            .data
            .clone()
            .unwrap_or_else(|| default_data_path(&self.lang));
        let engine =
            IntentEngine::load(&data, &self.custom, &home_path).context("loading intents")?;
        for w in engine.warnings() {
            eprintln!("warning: {w}");
        }
        let (home, _) = Home::load(&home_path)?;
        Ok((engine, home))
    }

    /// The LLM stage from `--llm` (or the default model); `answers`: answer questions
    /// that are not commands (unless --no-answers).
    pub fn load_llm(&self, answers: bool) -> Result<LlmFallback> {
        let path = self.llm.clone().unwrap_or_else(|| {
            super::hearth_home()
                .join("models")
                .join("smollm2-135m-instruct.hearth")
        });
        let model = ModelFile::open(&path).with_context(|| {
            format!(
                "cannot load the LLM {} (run scripts/fetch-models, pass --llm, or --no-llm)",
                path.display()
            )
        })?;
        let engine = Engine::load(
            Arc::new(model),
            EngineOptions {
                threads: self.threads,
                ..Default::default()
            },
        )?;
        let opts = LlmOptions {
            answer_questions: answers && !self.no_answers,
            ..Default::default()
        };
        Ok(LlmFallback::new(engine, opts)?)
    }
}

/// Arguments of `hearth intent`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct IntentArgs {
    /// The trained classifier's commands (without one: match stdin lines).
    #[command(subcommand)]
    pub command: Option<IntentCommand>,
    #[command(flatten)]
    pub setup: IntentSetup,
    /// Add the matching time in microseconds ("us") to each line (for benchmarks).
    #[arg(long)]
    pub timings: bool,
}

/// `hearth intent` subcommands.
#[derive(Subcommand)]
pub enum IntentCommand {
    /// Train the small intent classifier (the firmware's model) from the templates.
    Train(super::classifier::TrainArgs),
    /// Classify stdin lines with a trained classifier: `intent=<name> score=<p>` per line.
    Classify(super::classifier::ClassifyArgs),
}

/// Runs the command.
pub fn run(args: &IntentArgs) -> Result<()> {
    match &args.command {
        Some(IntentCommand::Train(a)) => return super::classifier::train(a),
        Some(IntentCommand::Classify(a)) => return super::classifier::classify(a),
        None => {}
    }
    let (engine, home) = args.setup.load()?;
    // The LLM stage (no answers: a line has no room for one) only when asked for.
    let mut llm = match (&args.setup.llm, args.setup.no_llm) {
        (Some(_), false) => Some(args.setup.load_llm(false)?),
        _ => None,
    };
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        let start = std::time::Instant::now();
        let mut m = engine.recognize(&line);
        if let (None, Some(llm)) = (&m.intent, &mut llm) {
            if !line.trim().is_empty() {
                match llm.handle(&line, &home, engine.intent_names()) {
                    Ok(LlmAnswer::Intent(x)) => m = x,
                    Ok(_) => {}
                    Err(e) => tracing::warn!("llm stage: {e}"),
                }
            }
        }
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
