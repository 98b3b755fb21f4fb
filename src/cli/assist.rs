//! `hearth assist`: the whole pipeline on WAV files or typed text — speech-to-text,
//! intents (templates → fuzzy → LLM), actions, response.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_runtime::action::{self, Actions};
use hearth_runtime::assist::{AssistResult, Assistant};
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
    #[command(flatten)]
    pub setup: super::intent::IntentSetup,
    /// whisper.cpp model (default `$HEARTH_HOME/models/ggml-tiny.en.bin`).
    #[arg(long)]
    pub whisper: Option<PathBuf>,
    /// One JSON object per input: {"file","transcript","intent","slots","stage","response","timings_ms"}.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(a: AssistArgs) -> Result<()> {
    let home_path = a.setup.home_path()?;
    let (engine, home) = a.setup.load()?;
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
    if !a.setup.no_llm {
        assistant = assistant.with_llm(a.setup.load_llm(true)?);
    }
    let mut failed = 0;
    if !a.text.is_empty() {
        for t in &a.text {
            let r = assistant.handle_text(t);
            print(&r, None, a.json)?;
        }
        return Ok(());
    }
    let whisper = super::transcribe::whisper_model(a.whisper.clone(), "--whisper")?;
    let opts = TranscriberOptions {
        threads: a.setup.threads,
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
