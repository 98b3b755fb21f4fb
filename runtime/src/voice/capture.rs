//! Live capture: an [`AudioSource`] (a microphone, or a file standing in for one) →
//! resampled to 16 kHz → cut into utterances by the VAD ([`super::vad::Segmenter`]).
//!
//! ```text
//! AudioSource ── chunks at the device rate ── Resampler ── 16 kHz ── Segmenter ── Utterance
//!      └── Lost ── log, reopen with backoff ──┘
//! ```
//!
//! The source owns the buffering between the device's real-time thread and this loop (see
//! [`super::ring::SampleRing`]), so the consumer may take its time (speech-to-text) between
//! utterances without losing audio.
use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use super::audio::SAMPLE_RATE;
use super::resample::Resampler;
use super::vad::{Cut, Segmenter, VadConfig};

/// What can go wrong with audio input.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No input device (none at all, or none with the name asked for).
    #[error("{0}")]
    NoDevice(String),
    /// The device offers no format this program can read.
    #[error("{0}")]
    Unsupported(String),
    /// The device went away mid-stream (unplugged, driver reset): worth reopening.
    #[error("audio input lost: {0}")]
    Lost(String),
    /// Anything else (reading a file, a backend failure).
    #[error(transparent)]
    Other(#[from] crate::Error),
}

/// A stream of mono audio: a microphone or a stand-in for one.
pub trait AudioSource {
    /// Sample rate (Hz) of the chunks [`AudioSource::read`] yields; may change after a reopen.
    fn sample_rate(&self) -> u32;
    /// Waits for the next chunk of mono samples in [-1, 1]. `Ok(None)`: the stream has
    /// ended for good. `Err(CaptureError::Lost)`: [`AudioSource::reopen`] may bring it back.
    fn read(&mut self) -> Result<Option<Vec<f32>>, CaptureError>;
    /// Opens the device again after a loss.
    fn reopen(&mut self) -> Result<(), CaptureError>;
}

impl<S: AudioSource + ?Sized> AudioSource for Box<S> {
    fn sample_rate(&self) -> u32 {
        (**self).sample_rate()
    }
    fn read(&mut self) -> Result<Option<Vec<f32>>, CaptureError> {
        (**self).read()
    }
    fn reopen(&mut self) -> Result<(), CaptureError> {
        (**self).reopen()
    }
}

/// An audio file played as a microphone (at its own rate, in device-sized chunks, as fast
/// as it is read): tests and benchmarks of the capture path without a sound card.
pub struct FileSource {
    rate: u32,
    samples: Vec<f32>,
    pos: usize,
    chunk: usize,
}

impl FileSource {
    /// Frames per chunk: a typical ALSA period.
    pub const CHUNK: usize = 1024;

    /// An audio file (WAV, FLAC, Ogg Vorbis: what [`super::load_audio`] reads), mixed to mono.
    pub fn open(path: &Path) -> crate::Result<Self> {
        let (rate, samples) = super::audio::load_audio_native(path)?;
        if rate == 0 {
            return Err(crate::Error::Format(format!(
                "{}: holds no audio",
                path.display()
            )));
        }
        Ok(Self::new(rate, samples))
    }

    /// Mono samples at `rate` Hz (non-zero).
    pub fn new(rate: u32, samples: Vec<f32>) -> Self {
        Self {
            rate: rate.max(1),
            samples,
            pos: 0,
            chunk: Self::CHUNK,
        }
    }
}

impl AudioSource for FileSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn read(&mut self) -> Result<Option<Vec<f32>>, CaptureError> {
        if self.pos >= self.samples.len() {
            return Ok(None);
        }
        let end = (self.pos + self.chunk).min(self.samples.len());
        let chunk = self.samples[self.pos..end].to_vec();
        self.pos = end;
        Ok(Some(chunk))
    }
    fn reopen(&mut self) -> Result<(), CaptureError> {
        Ok(())
    }
}

/// How the capture loop cuts and recovers.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// Utterance detection (pre-roll, hangover, maximum length).
    pub vad: VadConfig,
    /// Stop after this many seconds of audio (`None`: until the source ends).
    pub max_seconds: Option<f64>,
    /// First wait before reopening a lost source; doubled after each failed attempt…
    pub backoff: Duration,
    /// … up to this.
    pub backoff_max: Duration,
    /// Give up after this many failed reopen attempts in a row (`None`: never, so a
    /// long-running listener survives an unplugged microphone until it is plugged back).
    pub max_reopen_attempts: Option<u32>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            vad: VadConfig::default(),
            max_seconds: None,
            backoff: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            max_reopen_attempts: None,
        }
    }
}

/// One utterance cut from the stream.
#[derive(Clone, Debug)]
pub struct Utterance {
    /// 16 kHz mono, pre-roll included.
    pub samples: Vec<f32>,
    /// Where it starts in the stream, seconds of audio since capture began.
    pub start_s: f64,
    /// Why it ended.
    pub cut: Cut,
    /// When the VAD cut it (end-of-speech → text latency is measured from here).
    pub cut_at: Instant,
}

impl Utterance {
    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(SAMPLE_RATE)
    }
}

/// The capture loop: pulls audio from a source and hands out utterances.
pub struct Capture<S: AudioSource> {
    source: S,
    cfg: CaptureConfig,
    resampler: Option<Resampler>,
    segmenter: Segmenter,
    /// 16 kHz samples fed to segmenters before the current one (it restarts after a loss).
    base: usize,
    /// 16 kHz samples fed so far, and source frames read (for `max_seconds`).
    fed: usize,
    source_seconds: f64,
    ready: VecDeque<Utterance>,
    ended: bool,
    reopens: u32,
    scratch: Vec<f32>,
}

impl<S: AudioSource> Capture<S> {
    pub fn new(source: S, cfg: CaptureConfig) -> Self {
        Self {
            segmenter: Segmenter::new(cfg.vad.clone()),
            source,
            cfg,
            resampler: None,
            base: 0,
            fed: 0,
            source_seconds: 0.0,
            ready: VecDeque::new(),
            ended: false,
            reopens: 0,
            scratch: Vec::new(),
        }
    }

    /// Times the source was reopened after a loss.
    pub fn reopens(&self) -> u32 {
        self.reopens
    }

    /// Seconds of audio read from the source so far.
    pub fn seconds(&self) -> f64 {
        self.source_seconds
    }

    /// Waits for the next utterance. `Ok(None)`: the source ended (or `max_seconds` passed)
    /// and every utterance has been handed out. Errors: the source failed in a way a reopen
    /// does not fix (no device, unsupported format), or reopening gave up.
    pub fn next_utterance(&mut self) -> Result<Option<Utterance>, CaptureError> {
        loop {
            if let Some(u) = self.ready.pop_front() {
                return Ok(Some(u));
            }
            if self.ended {
                return Ok(None);
            }
            match self.source.read() {
                Ok(Some(chunk)) => self.feed(&chunk),
                Ok(None) => {
                    self.flush();
                    self.ended = true;
                }
                Err(CaptureError::Lost(why)) => {
                    // At error level so the CLI's default log filter shows it.
                    tracing::error!("audio input lost ({why}); reopening");
                    // Speech in progress is handed out as it stands; the next stream
                    // starts a fresh resampler and VAD (its rate may differ).
                    self.flush();
                    self.reopen()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Resamples a chunk and runs the VAD over it.
    fn feed(&mut self, chunk: &[f32]) {
        let rate = self.source.sample_rate().max(1);
        let mut chunk = chunk;
        if let Some(max) = self.cfg.max_seconds {
            // Rounded: the running sum of chunk lengths carries float error, not whole samples.
            let left = ((max - self.source_seconds) * f64::from(rate))
                .round()
                .max(0.0) as usize;
            if left <= chunk.len() {
                chunk = &chunk[..left];
                self.ended = true;
            }
        }
        self.source_seconds += chunk.len() as f64 / f64::from(rate);
        let resampler = self
            .resampler
            .get_or_insert_with(|| Resampler::new(rate, SAMPLE_RATE));
        self.scratch.clear();
        resampler.push(chunk, &mut self.scratch);
        self.segment();
        if self.ended {
            self.flush();
        }
    }

    /// Pushes `scratch` (16 kHz) through the VAD, queueing the utterances it closes.
    fn segment(&mut self) {
        let mut segments = Vec::new();
        self.segmenter.push(&self.scratch, &mut segments);
        self.fed += self.scratch.len();
        for s in segments {
            self.queue(s);
        }
    }

    fn queue(&mut self, s: super::vad::Segment) {
        tracing::debug!(
            "utterance: {:.2} s, cut by {:?}",
            s.samples.len() as f64 / f64::from(SAMPLE_RATE),
            s.cut
        );
        self.ready.push_back(Utterance {
            start_s: (self.base + s.start) as f64 / f64::from(SAMPLE_RATE),
            samples: s.samples,
            cut: s.cut,
            cut_at: Instant::now(),
        });
    }

    /// Ends the current stream: the resampler's tail, then any open utterance.
    fn flush(&mut self) {
        if let Some(r) = self.resampler.take() {
            self.scratch.clear();
            r.finish(&mut self.scratch);
            self.segment();
        }
        if let Some(s) = self.segmenter.finish() {
            self.queue(s);
        }
        self.segmenter = Segmenter::new(self.cfg.vad.clone());
        self.base = self.fed;
    }

    /// Reopens the source, waiting longer after each failure.
    fn reopen(&mut self) -> Result<(), CaptureError> {
        let mut wait = self.cfg.backoff;
        let mut failures = 0u32;
        loop {
            std::thread::sleep(wait);
            match self.source.reopen() {
                Ok(()) => {
                    self.reopens += 1;
                    tracing::info!("audio input reopened ({} Hz)", self.source.sample_rate());
                    return Ok(());
                }
                Err(e) => {
                    failures += 1;
                    if self.cfg.max_reopen_attempts.is_some_and(|m| failures >= m) {
                        tracing::error!("audio input: giving up after {failures} attempts");
                        return Err(e);
                    }
                    wait = (wait * 2).min(self.cfg.backoff_max.max(self.cfg.backoff));
                    tracing::warn!("reopening audio input failed ({e}); next try in {wait:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::resample::resample;

    /// The shipped recording ("turn on the kitchen lights", 16 kHz, 1.9 s; speech from 0.04 s).
    fn kitchen() -> Vec<f32> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/audio/turn-on-kitchen-lights.wav");
        crate::voice::load_audio(&path).unwrap().samples
    }

    fn silence(seconds: f64) -> Vec<f32> {
        vec![0.0; (seconds * 16_000.0) as usize]
    }

    /// 1 s silence, the command, 1.5 s silence, the command, 1 s silence — as a 48 kHz
    /// microphone would deliver it.
    fn two_commands_48k() -> FileSource {
        let k = kitchen();
        let mut a = silence(1.0);
        a.extend(&k);
        a.extend(silence(1.5));
        a.extend(&k);
        a.extend(silence(1.0));
        FileSource::new(48_000, resample(&a, 16_000, 48_000))
    }

    fn all<S: AudioSource>(c: &mut Capture<S>) -> Vec<Utterance> {
        std::iter::from_fn(|| c.next_utterance().unwrap()).collect()
    }

    #[test]
    fn two_commands_two_utterances_and_the_pre_roll_keeps_the_onset() {
        let onset = 1.04; // the first audible frame (−40 dB, below the VAD's start level)
        let mut c = Capture::new(two_commands_48k(), CaptureConfig::default());
        let u = all(&mut c);
        assert_eq!(u.len(), 2, "{u:?}");
        for (u, at) in u.iter().zip([onset, onset + 1.89 + 1.5]) {
            assert_eq!(u.cut, Cut::Silence);
            // 0.3 s pre-roll before the detector fired (at the −33 dB frames after the onset).
            assert!(
                u.start_s <= at - 0.2 && u.start_s >= at - 0.35,
                "start {} for onset {at}",
                u.start_s
            );
            // The whole command and at most the half hangover after it.
            let end = u.start_s + u.seconds();
            assert!(end >= at + 1.46 && end <= at + 1.46 + 0.3, "end {end}");
        }
        assert!((c.seconds() - 7.28).abs() < 0.01, "{}", c.seconds());

        // Without pre-roll the VAD starts after the onset: the soft first frame is lost.
        let cfg = CaptureConfig {
            vad: VadConfig {
                pre_roll_frames: 0,
                ..VadConfig::default()
            },
            ..CaptureConfig::default()
        };
        let u = all(&mut Capture::new(two_commands_48k(), cfg));
        assert!(u[0].start_s > onset, "{}", u[0].start_s);
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum_length() {
        // Six commands back to back (their pauses, ≤ 0.44 s, are under the 0.5 s hangover):
        // one 11.3 s stretch of speech.
        let k = kitchen();
        let a: Vec<f32> = (0..6).flat_map(|_| k.iter().copied()).collect();
        let cfg = CaptureConfig {
            vad: VadConfig {
                max_frames: 150, // 3 s
                ..VadConfig::default()
            },
            ..CaptureConfig::default()
        };
        let u = all(&mut Capture::new(FileSource::new(16_000, a), cfg));
        assert!(u.len() >= 3, "{u:?}");
        assert!(u[..u.len() - 1].iter().all(|u| u.cut == Cut::MaxLength));
        // 3 s of speech plus at most the pre-roll.
        assert!(u.iter().all(|u| u.seconds() <= 3.3 + 1e-6));
        assert!(u.iter().map(Utterance::seconds).sum::<f64>() >= 6.0 * 1.89 - 0.5);
        assert_eq!(u.last().unwrap().cut, Cut::EndOfStream);
    }

    #[test]
    fn speech_running_into_the_end_and_the_duration_limit() {
        // The stream ends mid-command: what was heard is still handed out.
        let mut a = silence(0.5);
        a.extend(&kitchen()[..16_000]);
        let u = all(&mut Capture::new(
            FileSource::new(16_000, a.clone()),
            CaptureConfig::default(),
        ));
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].cut, Cut::EndOfStream);

        // max_seconds stops the capture even though the source goes on.
        let cfg = CaptureConfig {
            max_seconds: Some(2.0),
            ..CaptureConfig::default()
        };
        let mut c = Capture::new(two_commands_48k(), cfg);
        let u = all(&mut c);
        assert_eq!(u.len(), 1, "{u:?}");
        assert!((c.seconds() - 2.0).abs() < 1e-6, "{}", c.seconds());
    }

    /// A microphone that is unplugged once after `fail_after` chunks, and stays away for
    /// `down_for` reopen attempts.
    struct Unplugged {
        inner: FileSource,
        chunks: usize,
        fail_after: usize,
        down_for: u32,
        attempts: u32,
        lost: bool,
    }

    impl AudioSource for Unplugged {
        fn sample_rate(&self) -> u32 {
            self.inner.sample_rate()
        }
        fn read(&mut self) -> Result<Option<Vec<f32>>, CaptureError> {
            if self.lost {
                return Err(CaptureError::Lost("read after loss".into()));
            }
            self.chunks += 1;
            if self.chunks == self.fail_after + 1 {
                self.lost = true;
                return Err(CaptureError::Lost("device unplugged".into()));
            }
            self.inner.read()
        }
        fn reopen(&mut self) -> Result<(), CaptureError> {
            self.attempts += 1;
            if self.attempts <= self.down_for {
                return Err(CaptureError::NoDevice("no such device".into()));
            }
            self.lost = false;
            Ok(())
        }
    }

    fn quick_retries(max: Option<u32>) -> CaptureConfig {
        CaptureConfig {
            backoff: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            max_reopen_attempts: max,
            ..CaptureConfig::default()
        }
    }

    #[test]
    fn an_unplugged_device_is_reopened_and_capture_goes_on() {
        let clean = all(&mut Capture::new(
            two_commands_48k(),
            CaptureConfig::default(),
        ));
        // Lost in the silence between the commands (3.4 s at 48 kHz ≈ chunk 159); the device
        // is back on the third attempt.
        let src = Unplugged {
            inner: two_commands_48k(),
            chunks: 0,
            fail_after: 159,
            down_for: 2,
            attempts: 0,
            lost: false,
        };
        let mut c = Capture::new(src, quick_retries(None));
        let u = all(&mut c);
        assert_eq!(c.reopens(), 1);
        assert_eq!(c.source.attempts, 3);
        assert_eq!(u.len(), 2, "{u:?}");
        for (a, b) in u.iter().zip(&clean) {
            assert!(
                (a.start_s - b.start_s).abs() < 0.03,
                "{} vs {}",
                a.start_s,
                b.start_s
            );
            assert!((a.seconds() - b.seconds()).abs() < 0.03);
            assert_eq!(a.cut, Cut::Silence);
        }
    }

    #[test]
    fn a_device_that_never_comes_back_is_an_error_after_the_attempts() {
        let src = Unplugged {
            inner: two_commands_48k(),
            chunks: 0,
            fail_after: 10,
            down_for: u32::MAX,
            attempts: 0,
            lost: false,
        };
        let mut c = Capture::new(src, quick_retries(Some(4)));
        let e = c.next_utterance().unwrap_err();
        assert!(matches!(e, CaptureError::NoDevice(_)), "{e}");
        assert_eq!(c.source.attempts, 4);
    }
}
