//! Audio files → what Whisper eats: 16 kHz mono f32 in [-1, 1].
//!
//! WAV of any rate, channel count and PCM depth (8/16/24/32-bit integer, 32-bit float) is
//! decoded with `hound`, FLAC and Ogg Vorbis with `symphonia` (told apart by their first
//! bytes, not the file name); either way the audio is down-mixed to mono while reading and
//! resampled in a stream, so memory stays proportional to the 16 kHz output. Input longer than
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

/// Reads an audio file (WAV, FLAC or Ogg Vorbis) into 16 kHz mono.
pub fn load_audio(path: &Path) -> Result<Audio> {
    let mut sink = To16k::default();
    decode_file(path, &mut sink)?;
    Ok(sink.into_audio())
}

/// Reads an audio file as mono at its own sample rate (for [`super::capture::FileSource`]):
/// `(rate, samples)`.
pub fn load_audio_native(path: &Path) -> Result<(u32, Vec<f32>)> {
    let mut sink = Native::default();
    decode_file(path, &mut sink)?;
    Ok((sink.rate, sink.samples))
}

/// Decodes a WAV stream into 16 kHz mono.
pub fn decode_wav(reader: impl Read) -> Result<Audio> {
    let mut sink = To16k::default();
    wav_mono(reader, &mut sink)?;
    Ok(sink.into_audio())
}

fn decode_file(path: &Path, sink: &mut dyn MonoSink) -> Result<()> {
    let open = || {
        std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))
    };
    // The container is told by its first bytes, not by the file name.
    let mut magic = Vec::with_capacity(4);
    open()?
        .take(4)
        .read_to_end(&mut magic)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let decoded = match magic.as_slice() {
        b"RIFF" => wav_mono(BufReader::new(open()?), sink),
        b"fLaC" | b"OggS" => symphonia_mono(open()?, sink),
        [] => Err(Error::Format(
            "not a readable WAV, FLAC or Ogg Vorbis file: the file is empty".into(),
        )),
        other => Err(Error::Format(format!(
            "not a readable WAV, FLAC or Ogg Vorbis file (it starts with {:?})",
            String::from_utf8_lossy(other)
        ))),
    };
    decoded.map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Decodes FLAC or Ogg Vorbis (symphonia), handing mono blocks to `sink`. A file cut short
/// keeps the audio before the cut; a corrupt packet is skipped.
fn symphonia_mono(file: std::fs::File, sink: &mut dyn MonoSink) -> Result<()> {
    use symphonia::core::codecs::audio::AudioDecoderOptions;
    use symphonia::core::errors::Error as DecodeError;
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::formats::{FormatOptions, TrackType};
    use symphonia::core::io::{MediaSourceStream, ReadOnlySource};
    use symphonia::core::meta::MetadataOptions;

    let bad = |what: &str, e: DecodeError| Error::Format(format!("{what}: {e}"));
    // Read front to back, never seeking: a seekable source makes the Ogg reader look for the
    // last page first, and a file cut short then fails outright.
    let source = ReadOnlySource::new(BufReader::new(file));
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| bad("not a readable FLAC or Ogg Vorbis file", e))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| Error::Format("the file has no audio track".into()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| Error::Format("the audio track has no codec parameters".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| bad("unsupported audio codec (FLAC and Vorbis are read)", e))?;
    let mut mixer: Option<Mixer> = None;
    let mut interleaved: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(DecodeError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::warn!("audio data ends early; using what was read");
                break;
            }
            Err(e) => return Err(bad("bad audio data", e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(DecodeError::DecodeError(e)) => {
                tracing::warn!("skipping a corrupt audio packet: {e}");
                continue;
            }
            Err(e) => return Err(bad("cannot decode the audio", e)),
        };
        let (rate, channels) = (buf.spec().rate(), buf.spec().channels().count());
        let channels = u16::try_from(channels).unwrap_or(0);
        if rate == 0 || channels == 0 {
            return Err(Error::Format(format!(
                "audio has {channels} channels at {rate} Hz"
            )));
        }
        let m = match &mut mixer {
            Some(m) if (m.rate, m.channels) == (rate, usize::from(channels)) => m,
            Some(_) => {
                return Err(Error::Format(
                    "the sample rate or channel count changes mid-stream".into(),
                ))
            }
            None => {
                sink.format(rate, channels);
                mixer.insert(Mixer::new(rate, channels))
            }
        };
        buf.copy_to_vec_interleaved(&mut interleaved);
        for &v in &interleaved {
            m.sample(v, sink)?;
        }
    }
    if let Some(m) = &mut mixer {
        m.flush(sink);
    }
    Ok(())
}

/// Where decoders put their output: the source format once, then mono blocks.
trait MonoSink {
    fn format(&mut self, rate: u32, channels: u16);
    fn block(&mut self, mono: &[f32]);
}

/// Resamples to 16 kHz as blocks arrive: memory follows the output, not the source rate.
#[derive(Default)]
struct To16k {
    resampler: Option<Resampler>,
    out: Vec<f32>,
    rate: u32,
    channels: u16,
}

impl MonoSink for To16k {
    fn format(&mut self, rate: u32, channels: u16) {
        self.resampler = Some(Resampler::new(rate, SAMPLE_RATE));
        (self.rate, self.channels) = (rate, channels);
    }
    fn block(&mut self, mono: &[f32]) {
        if let Some(r) = &mut self.resampler {
            r.push(mono, &mut self.out);
        }
    }
}

impl To16k {
    fn into_audio(mut self) -> Audio {
        if let Some(r) = self.resampler.take() {
            r.finish(&mut self.out);
        }
        Audio {
            samples: self.out,
            source_rate: self.rate,
            source_channels: self.channels,
        }
    }
}

/// Keeps the source rate.
#[derive(Default)]
struct Native {
    rate: u32,
    samples: Vec<f32>,
}

impl MonoSink for Native {
    fn format(&mut self, rate: u32, _channels: u16) {
        self.rate = rate;
    }
    fn block(&mut self, mono: &[f32]) {
        self.samples.extend_from_slice(mono);
    }
}

/// Decodes a WAV stream, handing mono blocks to `sink`.
fn wav_mono(reader: impl Read, sink: &mut dyn MonoSink) -> Result<()> {
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
        (hound::SampleFormat::Float, 32) => mix(wav, |v: f32| v, sink),
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            // Full scale of a `bits`-bit signed sample; hound widens 8-bit unsigned to signed.
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            mix(wav, move |v: i32| v as f32 * scale, sink)
        }
        (fmt, bits) => Err(Error::Format(format!(
            "unsupported WAV sample format: {bits}-bit {fmt:?}"
        ))),
    }
}

/// Down-mixes frames as they are read, hands them on in blocks.
fn mix<R: Read, S: hound::Sample>(
    mut wav: hound::WavReader<R>,
    to_f32: impl Fn(S) -> f32,
    sink: &mut dyn MonoSink,
) -> Result<()> {
    let spec = wav.spec();
    sink.format(spec.sample_rate, spec.channels);
    let mut mixer = Mixer::new(spec.sample_rate, spec.channels);
    for sample in wav.samples::<S>() {
        let v = match sample {
            Ok(v) => v,
            // Data shorter than the header claims (hound reports it as an I/O error, "failed
            // to read enough bytes"): keep what is there.
            Err(hound::Error::IoError(e)) => {
                tracing::warn!(
                    "WAV data ends early ({e}); using the {} frames read",
                    mixer.frames
                );
                break;
            }
            Err(e) => return Err(Error::Format(format!("bad WAV data: {e}"))),
        };
        mixer.sample(to_f32(v), sink)?;
    }
    mixer.flush(sink);
    Ok(())
}

/// Interleaved samples → mono blocks, counting frames against [`MAX_AUDIO_SECONDS`].
struct Mixer {
    rate: u32,
    channels: usize,
    max_frames: u64,
    block: Vec<f32>,
    frame_sum: f32,
    in_frame: usize,
    frames: u64,
}

impl Mixer {
    fn new(rate: u32, channels: u16) -> Self {
        Self {
            rate,
            channels: usize::from(channels.max(1)),
            max_frames: u64::from(MAX_AUDIO_SECONDS) * u64::from(rate),
            block: Vec::with_capacity(4096),
            frame_sum: 0.0,
            in_frame: 0,
            frames: 0,
        }
    }

    fn sample(&mut self, v: f32, sink: &mut dyn MonoSink) -> Result<()> {
        self.frame_sum += v;
        self.in_frame += 1;
        if self.in_frame == self.channels {
            self.frames += 1;
            if self.frames > self.max_frames {
                return Err(Error::Invalid(format!(
                    "audio is longer than the {MAX_AUDIO_SECONDS} s limit"
                )));
            }
            self.block.push(self.frame_sum / self.channels as f32);
            self.frame_sum = 0.0;
            self.in_frame = 0;
            if self.block.len() == self.block.capacity() {
                sink.block(&self.block);
                self.block.clear();
            }
        }
        Ok(())
    }

    fn flush(&mut self, sink: &mut dyn MonoSink) {
        sink.block(&self.block);
        self.block.clear();
    }
}
