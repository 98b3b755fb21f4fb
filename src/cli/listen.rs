//! `hearth listen`: live speech-to-text from the microphone, and the capture options it
//! shares with `hearth assist --mic`.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use hearth_runtime::voice::Utterance;

/// Microphone options (`hearth listen`, `hearth assist --mic`).
#[derive(ClapArgs, Clone, Debug)]
pub struct MicArgs {
    /// Input device: an id or (part of) a name from `hearth devices` (default: the
    /// system's default input).
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// Stop after this many utterances (default: run until interrupted).
    #[arg(long, value_name = "N")]
    pub max_utterances: Option<usize>,
    /// Stop after this many seconds of captured audio (default: run until interrupted).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Longest utterance: speech running on longer is cut there and the rest starts a
    /// new utterance (at most 30, Whisper's window).
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    pub max_utterance: f64,
}

/// Transcribe speech from the microphone as it is heard.
///
/// The voice activity detector cuts the input into utterances (speech followed by half a
/// second of silence, with 0.3 s of audio before the speech kept so the first syllable is
/// not lost); each utterance's text is printed as soon as Whisper has it. If the device
/// goes away (unplugged), it is reopened when it comes back.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub mic: MicArgs,
    /// whisper.cpp ggml model (default: $HEARTH_HOME/models/ggml-tiny.en.bin).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// CPU threads for speech-to-text (default: up to 4).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Device/area names to bias recognition towards (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub prompt: Vec<String>,
    /// One JSON object per utterance: {"text","start_s","audio_s","cut","ms","latency_ms"}
    /// (ms: speech-to-text time; latency_ms: from the VAD's cut to the text).
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "mic")]
pub fn run(args: Args) -> Result<()> {
    use anyhow::Context;
    use hearth_runtime::voice::{Transcriber, TranscriberOptions};

    let model = super::transcribe::whisper_model(args.model.clone(), "--model")?;
    let mut opts = TranscriberOptions::default();
    if let Some(t) = args.threads {
        opts.threads = t;
    }
    let mut transcriber = Transcriber::load(&model, opts)
        .with_context(|| format!("loading {}", model.display()))?
        .with_prompt(&args.prompt);
    for_each_utterance(&args.mic, |u| {
        let t = match transcriber.transcribe(&u.samples) {
            Ok(t) => t,
            Err(e) => {
                // One bad utterance does not stop the listener.
                eprintln!("hearth listen: {e:#}");
                return Ok(());
            }
        };
        let latency = u.cut_at.elapsed();
        if args.json {
            let round = |x: f64| (x * 1000.0).round() / 1000.0;
            let obj = serde_json::json!({
                "text": t.text,
                "start_s": round(u.start_s),
                "audio_s": round(u.seconds()),
                "cut": cut_name(&u),
                "ms": t.elapsed.as_millis() as u64,
                "latency_ms": latency.as_millis() as u64,
            });
            println!("{obj}");
        } else if !t.text.is_empty() {
            println!("{}", t.text);
        }
        Ok(())
    })
}

#[cfg(feature = "mic")]
fn cut_name(u: &Utterance) -> &'static str {
    use hearth_runtime::voice::vad::Cut;
    match u.cut {
        Cut::Silence => "silence",
        Cut::MaxLength => "max_length",
        Cut::EndOfStream => "end_of_stream",
    }
}

/// Opens the microphone and hands each utterance to `f` until a limit in `m` is reached
/// or the input ends.
#[cfg(feature = "mic")]
pub fn for_each_utterance(m: &MicArgs, mut f: impl FnMut(Utterance) -> Result<()>) -> Result<()> {
    use anyhow::Context;
    use hearth_runtime::voice::vad::VadConfig;
    use hearth_runtime::voice::{Capture, CaptureConfig, MicSource};

    if !(m.max_utterance > 0.0 && m.max_utterance <= 30.0) {
        bail!("--max-utterance must be in (0, 30] seconds");
    }
    if m.duration.is_some_and(|d| d.is_nan() || d < 0.0) {
        bail!("--duration must be a number of seconds ≥ 0");
    }
    let vad = VadConfig::default();
    let cfg = CaptureConfig {
        vad: VadConfig {
            max_frames: (m.max_utterance * 16_000.0 / vad.frame as f64).ceil() as usize,
            ..vad
        },
        max_seconds: m.duration,
        ..CaptureConfig::default()
    };
    let source = MicSource::open(m.device.as_deref()).with_context(|| {
        format!(
            "opening the microphone{}",
            m.device
                .as_deref()
                .map(|d| format!(" {d:?}"))
                .unwrap_or_default()
        )
    })?;
    eprintln!("listening (Ctrl-C to stop)…");
    let mut capture = Capture::new(source, cfg);
    let mut heard = 0;
    while m.max_utterances.is_none_or(|max| heard < max) {
        let Some(u) = capture.next_utterance()? else {
            break;
        };
        heard += 1;
        f(u)?;
    }
    Ok(())
}

/// Without the `mic` feature there is no microphone to open.
#[cfg(not(feature = "mic"))]
pub fn for_each_utterance(_: &MicArgs, _: impl FnMut(Utterance) -> Result<()>) -> Result<()> {
    bail!("this hearth was built without microphone support (cargo feature `mic`)")
}
