//! Speech-to-text with whisper.cpp (through `whisper-rs`), tuned for short voice commands.
use std::path::Path;
use std::time::{Duration, Instant};

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::audio::SAMPLE_RATE;
use crate::{Error, Result};

/// Encoder frames per second of audio (1500 frames per 30 s window).
const FRAMES_PER_SECOND: f64 = 50.0;
/// The encoder's full context (30 s).
const FULL_AUDIO_CTX: usize = 1500;
/// Peak level below which input is treated as digital silence and not decoded at all
/// (−80 dBFS): Whisper invents text ("Thank you.") for silence.
const SILENCE_PEAK: f32 = 1e-4;

/// How to decode.
#[derive(Clone, Debug)]
pub struct TranscriberOptions {
    /// CPU threads for whisper.cpp.
    pub threads: usize,
    /// `Some(n)`: beam search of width n; `None`: greedy (fastest).
    pub beam_size: Option<usize>,
    /// Spoken language (the English-only models need "en").
    pub language: String,
    /// Encoder context override in frames (0 = the full 1500); `None`: sized to the audio
    /// by [`audio_ctx_for`].
    pub audio_ctx: Option<usize>,
}

impl Default for TranscriberOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            beam_size: None,
            language: "en".into(),
            audio_ctx: None,
        }
    }
}

/// The result of one transcription.
#[derive(Clone, Debug, PartialEq)]
pub struct Transcript {
    /// The recognised text, trimmed (empty for silence).
    pub text: String,
    /// Length of the audio, seconds.
    pub audio_seconds: f32,
    /// Wall time spent in whisper.cpp (mel + encoder + decoder).
    pub elapsed: Duration,
    /// The encoder context used (frames; 1500 = a full 30 s window).
    pub audio_ctx: usize,
}

/// A loaded Whisper model plus its decoding state, reused across calls.
pub struct Transcriber {
    state: WhisperState,
    opts: TranscriberOptions,
    prompt: Option<String>,
}

/// Smallest encoder context used (10.2 s). Measured with tiny.en on 1–7 s clips (pocketsphinx's
/// cards and LibriVox clips, espeak-ng commands): at 128–384 frames the decoder loops on a
/// 1.1 s clip ("10 of clubs 10 of clubs …" until the token budget); from 512 it stops cleanly,
/// with the same words as at 768 on every clip, for ~37 % less CPU time than 768 (the
/// encoder's cost grows with the context; BENCHMARKS.md "Speech to text").
const MIN_AUDIO_CTX: usize = 512;

/// The encoder context for `n_samples` of 16 kHz audio: the audio plus a 4 s margin (Whisper
/// degrades when the window cuts near the speech's end), at least [`MIN_AUDIO_CTX`], in
/// multiples of 64, at most the full 30 s window.
pub fn audio_ctx_for(n_samples: usize) -> usize {
    let frames = (n_samples as f64 / f64::from(SAMPLE_RATE) * FRAMES_PER_SECOND).ceil() as usize;
    let with_margin = (frames + 4 * FRAMES_PER_SECOND as usize).div_ceil(64) * 64;
    with_margin.clamp(MIN_AUDIO_CTX, FULL_AUDIO_CTX)
}

/// Decoder token budget per segment for `n_samples` of audio: 10 tokens/s plus 16.
pub fn max_tokens_for(n_samples: usize) -> usize {
    (n_samples as f64 / f64::from(SAMPLE_RATE) * 10.0).ceil() as usize + 16
}

impl Transcriber {
    /// Loads a whisper.cpp ggml model (see [`super::import_whisper`]).
    pub fn load(model: &Path, opts: TranscriberOptions) -> Result<Self> {
        // Validate the header first: whisper.cpp answers a bad file with a bare failure.
        super::read_ggml_hparams(model)?;
        route_whisper_logs();
        let path = model.to_str().ok_or_else(|| {
            Error::Invalid(format!("model path {} is not UTF-8", model.display()))
        })?;
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| {
                Error::Format(format!("whisper.cpp cannot load {}: {e}", model.display()))
            })?;
        let state = ctx
            .create_state()
            .map_err(|e| Error::Invalid(format!("whisper.cpp state: {e}")))?;
        if opts.threads == 0 {
            return Err(Error::Invalid("threads must be at least 1".into()));
        }
        Ok(Self {
            state,
            opts,
            prompt: None,
        })
    }

    /// Biases recognition towards the home's vocabulary (device and area names): they are
    /// given to the decoder as preceding text.
    pub fn with_prompt<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        let names: Vec<&str> = names
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| !s.trim().is_empty())
            .collect();
        self.prompt = (!names.is_empty()).then(|| format!("{}.", names.join(", ")));
        self
    }

    /// Transcribes 16 kHz mono audio.
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript> {
        let audio_seconds = samples.len() as f32 / SAMPLE_RATE as f32;
        // (f32::max skips NaN, so check finiteness separately.)
        if samples.iter().any(|v| !v.is_finite()) {
            return Err(Error::Invalid(
                "audio contains NaN or infinite samples".into(),
            ));
        }
        let peak = samples.iter().fold(0f32, |m, v| m.max(v.abs()));
        if peak < SILENCE_PEAK {
            return Ok(Transcript {
                text: String::new(),
                audio_seconds,
                elapsed: Duration::ZERO,
                audio_ctx: 0,
            });
        }
        let strategy = match self.opts.beam_size {
            Some(n) => SamplingStrategy::BeamSearch {
                beam_size: n.max(1) as i32,
                patience: -1.0,
            },
            None => SamplingStrategy::Greedy { best_of: 1 },
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(self.opts.threads as i32);
        params.set_language(Some(&self.opts.language));
        params.set_translate(false);
        params.set_no_timestamps(true);
        params.set_no_context(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        // No temperature fallback: on hard audio whisper.cpp would re-decode up to 5 times
        // (minutes on a small board); a command gets one greedy/beam pass.
        params.set_temperature_inc(0.0);
        // Bound a runaway decode (repetition loops): fast speech is ~5 tokens/s.
        params.set_max_tokens(max_tokens_for(samples.len().min(30 * SAMPLE_RATE as usize)) as i32);
        // One window's worth of audio → one segment, decoded with a shortened encoder.
        let audio_ctx = match self.opts.audio_ctx {
            Some(0) => FULL_AUDIO_CTX,
            Some(c) => c.min(FULL_AUDIO_CTX),
            None if samples.len() <= 30 * SAMPLE_RATE as usize => audio_ctx_for(samples.len()),
            None => FULL_AUDIO_CTX,
        };
        params.set_audio_ctx(audio_ctx as i32);
        if let Some(p) = &self.prompt {
            params.set_initial_prompt(p);
        }
        let start = Instant::now();
        self.state
            .full(params, samples)
            .map_err(|e| Error::Invalid(format!("whisper.cpp transcription failed: {e}")))?;
        let elapsed = start.elapsed();
        let mut text = String::new();
        for segment in self.state.as_iter() {
            let piece = segment
                .to_str_lossy()
                .map_err(|e| Error::Invalid(format!("whisper.cpp segment text: {e}")))?;
            text.push_str(&piece);
        }
        Ok(Transcript {
            text: text.trim().to_string(),
            audio_seconds,
            elapsed,
            audio_ctx,
        })
    }
}

/// Sends whisper.cpp's and ggml's log lines to `tracing` instead of stderr (once).
fn route_whisper_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(whisper_rs::install_logging_hooks);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_fits_the_utterance() {
        // Short commands get the floor; 7 s → 350 + 200 frames → 576; 14 s → 700 + 200 → 960.
        assert_eq!(audio_ctx_for(3 * 16_000), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx_for(7 * 16_000), 576);
        assert_eq!(audio_ctx_for(1), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx_for(14 * 16_000), 960);
        assert_eq!(audio_ctx_for(27 * 16_000), FULL_AUDIO_CTX);
        assert_eq!(audio_ctx_for(30 * 16_000), FULL_AUDIO_CTX);
        assert_eq!(max_tokens_for(3 * 16_000), 46);
    }
}
