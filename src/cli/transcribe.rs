//! `hearth transcribe FILE…`: speech-to-text of audio files.
#[cfg(feature = "whisper")]
use std::path::Path;
use std::path::PathBuf;

#[cfg(feature = "whisper")]
use anyhow::{Context, Result};
use clap::Args as ClapArgs;
#[cfg(feature = "whisper")]
use hearth_runtime::voice::{load_audio, Transcriber, TranscriberOptions, Transcript};

/// Transcribe audio files (WAV, FLAC, Ogg Vorbis; any rate, channels, bit depth) with a
/// Whisper model.
#[derive(ClapArgs)]
pub struct Args {
    /// Audio files (WAV, FLAC or Ogg Vorbis, told apart by content).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// whisper.cpp ggml model (default: $HEARTH_HOME/models/ggml-tiny.en.bin).
    #[arg(long)]
    model: Option<PathBuf>,
    /// CPU threads (default: up to 4).
    #[arg(long)]
    threads: Option<usize>,
    /// Beam search of this width instead of greedy decoding.
    #[arg(long)]
    beam: Option<usize>,
    /// Encoder context in frames of 20 ms (0 = full 30 s window; default: sized to the audio).
    #[arg(long)]
    audio_ctx: Option<usize>,
    /// Device/area names to bias recognition towards (comma separated).
    #[arg(long, value_delimiter = ',')]
    prompt: Vec<String>,
    /// One JSON object per file: {"file","text","audio_s","ms","audio_ctx"}.
    #[arg(long)]
    json: bool,
}

/// Where `scripts/fetch-models` puts the default Whisper model.
pub fn default_model() -> PathBuf {
    super::hearth_home().join("models").join("ggml-tiny.en.bin")
}

/// The Whisper model given by `flag` (e.g. `--model`), or the default one; an error naming
/// both ways out when it is missing.
pub fn whisper_model(given: Option<PathBuf>, flag: &str) -> anyhow::Result<PathBuf> {
    let model = given.unwrap_or_else(default_model);
    if !model.exists() {
        anyhow::bail!(
            "Whisper model {} not found: run scripts/fetch-models, or pass {flag}",
            model.display()
        );
    }
    Ok(model)
}

#[cfg(feature = "whisper")]
pub fn run(args: Args) -> Result<()> {
    let model = whisper_model(args.model, "--model")?;
    let mut opts = TranscriberOptions::default();
    if let Some(t) = args.threads {
        opts.threads = t;
    }
    opts.beam_size = args.beam;
    opts.audio_ctx = args.audio_ctx;
    let mut transcriber = Transcriber::load(&model, opts)
        .with_context(|| format!("loading {}", model.display()))?
        .with_prompt(&args.prompt);
    let mut failed = 0;
    for file in &args.files {
        match transcribe_one(&mut transcriber, file) {
            Ok(r) => {
                let text = r.text;
                if args.json {
                    let audio_s = (f64::from(r.audio_seconds) * 1000.0).round() / 1000.0;
                    let obj = serde_json::json!({
                        "file": file.display().to_string(),
                        "text": text,
                        "audio_s": audio_s,
                        "ms": r.elapsed.as_millis() as u64,
                        // The encoder context used (frames; scripts/bench/stt gives
                        // whisper-cli the same).
                        "audio_ctx": r.audio_ctx,
                    });
                    println!("{obj}");
                } else if args.files.len() > 1 {
                    println!("{}: {text}", file.display());
                } else {
                    println!("{text}");
                }
            }
            Err(e) => {
                // Keep going: one bad file in a batch should not hide the others' results.
                eprintln!("hearth transcribe: {}: {e:#}", file.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files failed", args.files.len());
    }
    Ok(())
}

#[cfg(feature = "whisper")]
fn transcribe_one(t: &mut Transcriber, file: &Path) -> Result<Transcript> {
    let audio = load_audio(file)?;
    if audio.samples.is_empty() {
        anyhow::bail!("the file holds no audio samples");
    }
    Ok(t.transcribe(&audio.samples)?)
}
