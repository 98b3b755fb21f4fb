//! Audio files → what Whisper eats: 16 kHz mono f32 in [-1, 1].
//!
//! WAV of any rate, channel count and PCM depth (8/16/24/32-bit integer, 32-bit float) is
//! decoded with `hound`, down-mixed to mono while reading and resampled in a stream, so
//! memory stays proportional to the 16 kHz output. Input longer than
//! [`MAX_AUDIO_SECONDS`] is refused (counted from the samples actually read, not the header,
//! which may lie). A header that promises more data than the file holds is tolerated: the
//! samples present are used, as recorders killed mid-write leave exactly such files.
use std::io::{BufReader, Read};
use std::path::Path;

use super::resample::Resampler;
use crate::{Error, Result};

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Longest input accepted (10 minutes): bounds memory and time for one request.
pub const MAX_AUDIO_SECONDS: u32 = 600;

/// Decoded audio, ready for the transcriber.
#[derive(Clone, Debug)]
pub struct Audio {
    /// 16 kHz mono samples.
    pub samples: Vec<f32>,
    /// The source's sample rate and channel count (for reports).
    pub source_rate: u32,
    pub source_channels: u16,
}

impl Audio {
    /// Length in seconds.
    pub fn seconds(&self) -> f32 {
        self.samples.len() as f32 / SAMPLE_RATE as f32
    }
}

/// Reads an audio file (WAV) into 16 kHz mono.
pub fn load_audio(path: &Path) -> Result<Audio> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    decode_wav(BufReader::new(file)).map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Decodes a WAV stream into 16 kHz mono.
pub fn decode_wav(reader: impl Read) -> Result<Audio> {
    let wav = hound::WavReader::new(reader)
        .map_err(|e| Error::Format(format!("not a readable WAV file: {e}")))?;
    let spec = wav.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(Error::Format(format!(
            "WAV header has {} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => mix(wav, |v: f32| v),
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            // Full scale of a `bits`-bit signed sample; hound widens 8-bit unsigned to signed.
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            mix(wav, move |v: i32| v as f32 * scale)
        }
        (fmt, bits) => Err(Error::Format(format!(
            "unsupported WAV sample format: {bits}-bit {fmt:?}"
        ))),
    }
}

/// Down-mixes frames as they are read, resamples them in blocks.
fn mix<R: Read, S: hound::Sample>(
    mut wav: hound::WavReader<R>,
    to_f32: impl Fn(S) -> f32,
) -> Result<Audio> {
    let spec = wav.spec();
    let channels = usize::from(spec.channels);
    let max_frames = u64::from(MAX_AUDIO_SECONDS) * u64::from(spec.sample_rate);
    let mut resampler = Resampler::new(spec.sample_rate, SAMPLE_RATE);
    let mut out = Vec::new();
    let mut block = Vec::with_capacity(4096);
    let (mut frame_sum, mut in_frame, mut frames) = (0f32, 0usize, 0u64);
    for sample in wav.samples::<S>() {
        let v = match sample {
            Ok(v) => v,
            // Data shorter than the header claims (hound reports it as an I/O error, "failed
            // to read enough bytes"): keep what is there.
            Err(hound::Error::IoError(e)) => {
                tracing::warn!("WAV data ends early ({e}); using the {frames} frames read");
                break;
            }
            Err(e) => return Err(Error::Format(format!("bad WAV data: {e}"))),
        };
        frame_sum += to_f32(v);
        in_frame += 1;
        if in_frame == channels {
            frames += 1;
            if frames > max_frames {
                return Err(Error::Invalid(format!(
                    "audio is longer than the {MAX_AUDIO_SECONDS} s limit"
                )));
            }
            block.push(frame_sum / channels as f32);
            frame_sum = 0.0;
            in_frame = 0;
            if block.len() == block.capacity() {
                resampler.push(&block, &mut out);
                block.clear();
            }
        }
    }
    resampler.push(&block, &mut out);
    resampler.finish(&mut out);
    Ok(Audio {
        samples: out,
        source_rate: spec.sample_rate,
        source_channels: spec.channels,
    })
}
