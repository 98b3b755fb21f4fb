//! `hearth assist`: the whole pipeline on WAV files or typed text — speech-to-text,
//! intents (templates → fuzzy → LLM), actions, response.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_runtime::action::{self, Actions};
use hearth_runtime::assist::llm::{LlmFallback, LlmOptions};
use hearth_runtime::assist::{AssistResult, Assistant};
use hearth_runtime::intent::{default_data_path, Home, IntentEngine};
use hearth_runtime::llm::{default_threads, Engine, EngineOptions};
use hearth_runtime::model::ModelFile;
use hearth_runtime::voice::{load_audio, Transcriber, TranscriberOptions};

/// Arguments of `hearth assist`.
#[derive(Args)]
pub struct AssistArgs {
    /// Spoken commands (WAV, FLAC or Ogg Vorbis; any rate/channels/depth).
    #[arg(required_unless_present_any = ["text", "mic"])]
    pub files: Vec<PathBuf>,
    /// Listen to the microphone: each utterance the voice activity detector cuts goes
    /// through the pipeline (see `hearth listen --help` for the options below).
    #[arg(long, conflicts_with_all = ["files", "text"])]
    pub mic: bool,
    #[command(flatten)]
    pub mic_opts: super::listen::MicArgs,
    /// Handle this text instead of audio (repeatable; skips speech-to-text).
    #[arg(long, conflicts_with = "files")]
    pub text: Vec<String>,
    /// The home file (default: examples/home.yaml when run from the repository).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Language of the intent templates.
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// The templates (default `$HEARTH_HOME/intents/<lang>.json`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Extra sentences in Home Assistant's YAML shape (repeatable).
    #[arg(long)]
    pub custom: Vec<PathBuf>,
    /// whisper.cpp model (default `$HEARTH_HOME/models/ggml-tiny.en.bin`).
    #[arg(long)]
    pub whisper: Option<PathBuf>,
    /// LLM for the fallback stage (default `$HEARTH_HOME/models/smollm2-135m-instruct.hearth`).
    #[arg(long)]
    pub llm: Option<PathBuf>,
    /// Templates and fuzzy matching only: no LLM stage.
    #[arg(long)]
    pub no_llm: bool,
    /// Let the LLM choose intents but not answer questions.
    #[arg(long)]
    pub no_answers: bool,
    /// CPU threads for speech-to-text and the LLM.
    #[arg(long, default_value_t = default_threads().min(4))]
    pub threads: usize,
    /// One JSON object per input: {"file","transcript","intent","slots","stage","response","timings_ms"}.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(a: AssistArgs) -> Result<()> {
    let home_path = match &a.home {
        Some(h) => h.clone(),
        None if Path::new("examples/home.yaml").exists() => PathBuf::from("examples/home.yaml"),
        None => bail!("give the home file with --home HOME.yaml (see docs/home-file.md)"),
    };
    let data = a.data.clone().unwrap_or_else(|| default_data_path(&a.lang));
    let engine = IntentEngine::load(&data, &a.custom, &home_path).context("loading intents")?;
    for w in engine.warnings() {
        eprintln!("warning: {w}");
    }
    let (home, _) = Home::load(&home_path)?;
    let actions = match action::load_config(&home_path)? {
        Some(cfg) => Actions::new(&cfg)?,
        None => Actions::stdout(),
    };
    // With --json the printed object carries the event; a stdout sink would repeat it.
    let actions = if a.json {
        actions.without_stdout()
    } else {
        actions
    };
    let mut assistant = Assistant::new(engine, home, actions);
    if !a.no_llm {
        assistant = assistant.with_llm(load_llm(&a)?);
    }
    let mut failed = 0;
    if !a.text.is_empty() {
        for t in &a.text {
            let r = assistant.handle_text(t);
            print(&r, None, a.json)?;
        }
        return Ok(());
    }
    let whisper = a
        .whisper
        .clone()
        .unwrap_or_else(super::transcribe::default_model);
    if !whisper.exists() {
        bail!(
            "Whisper model {} not found: run scripts/fetch-models, or pass --whisper",
            whisper.display()
        );
    }
    let opts = TranscriberOptions {
        threads: a.threads,
        ..Default::default()
    };
    let t = Transcriber::load(&whisper, opts)
        .with_context(|| format!("loading {}", whisper.display()))?;
    assistant = assistant.with_transcriber(t);
    if a.mic {
        return super::listen::for_each_utterance(&a.mic_opts, |u| {
            match assistant.handle_audio(&u.samples) {
                Ok(r) => print(&r, None, a.json)?,
                Err(e) => eprintln!("hearth assist: {e:#}"),
            }
            Ok(())
        });
    }
    for file in &a.files {
        let result = load_audio(file)
            .map_err(anyhow::Error::from)
            .and_then(|audio| {
                if audio.samples.is_empty() {
                    bail!("the file holds no audio samples");
                }
                Ok(assistant.handle_audio(&audio.samples)?)
            });
        match result {
            Ok(r) => print(&r, Some(file), a.json)?,
            Err(e) => {
                eprintln!("hearth assist: {}: {e:#}", file.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", a.files.len());
    }
    Ok(())
}

fn load_llm(a: &AssistArgs) -> Result<LlmFallback> {
    let path = a.llm.clone().unwrap_or_else(|| {
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
            threads: a.threads,
            ..Default::default()
        },
    )?;
    let opts = LlmOptions {
        answer_questions: !a.no_answers,
        ..Default::default()
    };
    Ok(LlmFallback::new(engine, opts)?)
}

fn print(r: &AssistResult, file: Option<&Path>, json: bool) -> Result<()> {
    if json {
        let mut v = r.to_json();
        if let Some(f) = file {
            v["file"] = serde_json::json!(f.display().to_string());
        }
        println!("{v}");
        return Ok(());
    }
    if let Some(f) = file {
        eprintln!("{}: heard {:?}", f.display(), r.transcript);
    }
    match (&r.matched.intent, r.matched.stage) {
        (Some(i), Some(s)) => eprintln!(
            "intent {i} ({}) {}",
            s.as_str(),
            serde_json::to_string(&r.matched.slots)?
        ),
        _ => eprintln!("no intent"),
    }
    println!("{}", r.response);
    Ok(())
}
