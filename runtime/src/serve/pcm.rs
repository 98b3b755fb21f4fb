//! Raw PCM as Wyoming sends it (little-endian, interleaved, `rate`/`width`/`channels` per
//! chunk) → 16 kHz mono f32 for Whisper, resampled as chunks arrive.
use crate::voice::resample::Resampler;
use crate::voice::SAMPLE_RATE;
use crate::{Error, Result};

/// Sample rates accepted (telephone to studio).
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=96_000;
/// Most interleaved channels accepted.
pub const MAX_CHANNELS: u16 = 8;

/// The format of a PCM stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// Frames per second.
    pub rate: u32,
    /// Bytes per sample: 1 (unsigned), 2, 3 or 4 (signed).
    pub width: u16,
    /// Interleaved channels.
    pub channels: u16,
}

impl Format {
    /// Reads `rate`/`width`/`channels` from an event's data and checks them.
    pub fn from_data(data: &serde_json::Map<String, serde_json::Value>) -> Result<Format> {
        let field = |k: &str| {
            data.get(k)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| Error::Invalid(format!("audio event without a numeric {k:?}")))
        };
        let (rate, width, channels) = (field("rate")?, field("width")?, field("channels")?);
        if !RATES.contains(&u32::try_from(rate).unwrap_or(0)) {
            return Err(Error::Invalid(format!(
                "unsupported audio rate {rate} Hz (supported: {}–{} Hz)",
                RATES.start(),
                RATES.end()
            )));
        }
        if !(1..=4).contains(&width) {
            return Err(Error::Invalid(format!(
                "unsupported sample width {width} bytes (supported: 1–4)"
            )));
        }
        if channels == 0 || channels > u64::from(MAX_CHANNELS) {
            return Err(Error::Invalid(format!(
                "unsupported channel count {channels} (supported: 1–{MAX_CHANNELS})"
            )));
        }
        Ok(Format {
            rate: rate as u32,
            width: width as u16,
            channels: channels as u16,
        })
    }
}

/// Accumulates one utterance.
pub struct Utterance {
    format: Format,
    resampler: Resampler,
    samples: Vec<f32>,
    frames: u64,
    max_frames: u64,
}

impl Utterance {
    /// Starts an utterance in `format`, at most `max_seconds` long.
    pub fn new(format: Format, max_seconds: u32) -> Self {
        Self {
            format,
            resampler: Resampler::new(format.rate, SAMPLE_RATE),
            samples: Vec::new(),
            frames: 0,
            max_frames: u64::from(max_seconds) * u64::from(format.rate),
        }
    }

    /// The stream's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Adds one chunk of interleaved PCM (whole frames only).
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let Format {
            width, channels, ..
        } = self.format;
        let frame = usize::from(width) * usize::from(channels);
        if !bytes.len().is_multiple_of(frame) {
            return Err(Error::Invalid(format!(
                "audio chunk of {} bytes is not whole {frame}-byte frames",
                bytes.len()
            )));
        }
        self.frames += (bytes.len() / frame) as u64;
        if self.frames > self.max_frames {
            return Err(Error::Invalid(format!(
                "utterance longer than {} s",
                self.max_frames / u64::from(self.format.rate)
            )));
        }
        let mono: Vec<f32> = bytes
            .chunks_exact(frame)
            .map(|f| {
                let sum: f32 = f.chunks_exact(usize::from(width)).map(sample).sum();
                sum / f32::from(channels)
            })
            .collect();
        self.resampler.push(&mono, &mut self.samples);
        Ok(())
    }

    /// The audio so far at 16 kHz mono (less the resampler's few samples of lookahead).
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    /// The utterance at 16 kHz mono.
    pub fn finish(mut self) -> Vec<f32> {
        self.resampler.finish(&mut self.samples);
        self.samples
    }
}

/// One little-endian sample → [-1, 1). 8-bit PCM is unsigned, wider PCM signed.
fn sample(b: &[u8]) -> f32 {
    match *b {
        [u] => (f32::from(u) - 128.0) / 128.0,
        [a, b] => f32::from(i16::from_le_bytes([a, b])) / 32768.0,
        // Put the 24 bits in the top of an i32 so the sign extends.
        [a, b, c] => i32::from_le_bytes([0, a, b, c]) as f32 / 2_147_483_648.0,
        [a, b, c, d] => i32::from_le_bytes([a, b, c, d]) as f32 / 2_147_483_648.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fmt(v: serde_json::Value) -> Result<Format> {
        Format::from_data(v.as_object().unwrap())
    }

    #[test]
    fn formats_checked() {
        assert!(fmt(json!({"rate": 16000, "width": 2, "channels": 1})).is_ok());
        let e = fmt(json!({"rate": 1000, "width": 2, "channels": 1})).unwrap_err();
        assert!(e.to_string().contains("unsupported audio rate 1000"), "{e}");
        assert!(fmt(json!({"rate": 16000, "width": 5, "channels": 1})).is_err());
        assert!(fmt(json!({"rate": 16000, "width": 2, "channels": 0})).is_err());
        assert!(fmt(json!({"rate": 16000, "width": 2})).is_err());
    }

    #[test]
    fn stereo_48k_becomes_16k_mono_of_the_same_length() {
        let f = Format {
            rate: 48_000,
            width: 2,
            channels: 2,
        };
        let mut u = Utterance::new(f, 10);
        // 1 s of a 440 Hz tone, left = right.
        let mut bytes = Vec::new();
        for i in 0..48_000 {
            let v = ((i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 16000.0) as i16;
            bytes.extend_from_slice(&v.to_le_bytes());
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        for c in bytes.chunks(4 * 1000) {
            u.push(c).unwrap();
        }
        assert!(u.push(&[0, 0, 0]).is_err(), "partial frame");
        let s = u.finish();
        assert!((s.len() as i64 - 16_000).abs() <= 2, "{}", s.len());
        let peak = s.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((peak - 16000.0 / 32768.0).abs() < 0.02, "{peak}");
    }

    #[test]
    fn widths_decode_to_full_scale() {
        assert_eq!(sample(&[0]), -1.0);
        assert_eq!(sample(&[0x00, 0x80]), -1.0);
        assert_eq!(sample(&[0x00, 0x00, 0x80]), -1.0);
        assert_eq!(sample(&[0, 0, 0, 0x80]), -1.0);
        assert!((sample(&[0xff, 0x7f]) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn length_limit() {
        let f = Format {
            rate: 8_000,
            width: 1,
            channels: 1,
        };
        let mut u = Utterance::new(f, 1);
        u.push(&[128; 8_000]).unwrap();
        assert!(u.push(&[128; 1]).is_err());
    }
}
