//! Voice activity detection: energy with hysteresis plus zero-crossing rate, frame by frame.
//!
//! A frame is *loud* above `start_db`; speech starts after `min_start_frames` loud frames in a
//! row. It continues while frames stay above the lower `stop_db` (hysteresis) — or are quiet
//! but hiss-like (high zero-crossing rate: fricatives such as "s", "f") — and ends after
//! `hangover_frames` of silence, or at `max_frames`. Each segment includes `pre_roll_frames`
//! before the detected start, so the soft onset of the first word is not cut.
//!
//! [`Segmenter`] does this on a stream (the microphone: samples pushed as they arrive, memory
//! bounded by the longest utterance); [`speech_segments`] on a whole buffer.
use std::collections::VecDeque;
use std::ops::Range;

/// Tuning, in 16 kHz samples and dBFS (RMS relative to a full-scale sine's peak).
#[derive(Clone, Debug)]
pub struct VadConfig {
    /// Samples per analysis frame (320 = 20 ms).
    pub frame: usize,
    pub start_db: f32,
    pub stop_db: f32,
    pub min_start_frames: usize,
    pub hangover_frames: usize,
    pub pre_roll_frames: usize,
    pub max_frames: usize,
    /// Zero crossings per sample above which a quiet frame still counts as (unvoiced) speech.
    pub fricative_zcr: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            frame: 320,
            start_db: -35.0,
            stop_db: -45.0,
            min_start_frames: 3,
            hangover_frames: 25, // 0.5 s
            // 0.3 s: a soft onset ("f" of "fan", "h" of "hey") sits below `start_db` for
            // 100–250 ms before the vowel trips the detector.
            pre_roll_frames: 15,
            max_frames: 750, // 15 s
            fricative_zcr: 0.3,
        }
    }
}

fn frame_db(frame: &[f32]) -> f32 {
    let energy = frame.iter().map(|v| v * v).sum::<f32>() / frame.len().max(1) as f32;
    10.0 * energy.max(1e-12).log10()
}

fn zcr(frame: &[f32]) -> f32 {
    let crossings = frame
        .windows(2)
        .filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0))
        .count();
    crossings as f32 / frame.len().max(1) as f32
}

/// Why a segment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// `hangover_frames` of silence after the speech.
    Silence,
    /// The segment reached `max_frames`.
    MaxLength,
    /// The stream ended (or was interrupted) during speech.
    EndOfStream,
}

/// One stretch of speech found in a stream.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Index in the stream of `samples[0]` (pre-roll included).
    pub start: usize,
    /// The samples, pre-roll and half the hangover included.
    pub samples: Vec<f32>,
    pub cut: Cut,
}

impl Segment {
    /// The segment's place in the stream, as a sample range.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.samples.len()
    }
}

/// Streaming speech segmentation: push samples as they come, take segments as they close.
///
/// Idle, it keeps only the last `pre_roll_frames + min_start_frames` frames (the pre-roll
/// of a segment about to start); in speech, the segment so far (at most `max_frames` plus
/// the pre-roll).
pub struct Segmenter {
    cfg: VadConfig,
    /// Samples of the frame being filled.
    partial: Vec<f32>,
    /// Index of the next whole frame.
    frame_idx: usize,
    /// The most recent frames' samples (ring, bounded).
    recent: VecDeque<f32>,
    loud_run: usize,
    quiet_run: usize,
    /// In speech: first speech frame (before pre-roll), first frame of `current`.
    speech: Option<(usize, usize)>,
    current: Vec<f32>,
}

impl Segmenter {
    pub fn new(cfg: VadConfig) -> Self {
        let cfg = VadConfig {
            frame: cfg.frame.max(1),
            ..cfg
        };
        Self {
            partial: Vec::with_capacity(cfg.frame),
            recent: VecDeque::new(),
            cfg,
            frame_idx: 0,
            loud_run: 0,
            quiet_run: 0,
            speech: None,
            current: Vec::new(),
        }
    }

    /// True while a segment is open (speech detected, not yet cut).
    pub fn in_speech(&self) -> bool {
        self.speech.is_some()
    }

    /// Feeds samples; appends the segments they close to `out`.
    pub fn push(&mut self, mut samples: &[f32], out: &mut Vec<Segment>) {
        let frame = self.cfg.frame;
        while !samples.is_empty() {
            let take = (frame - self.partial.len()).min(samples.len());
            self.partial.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.partial.len() == frame {
                let x = std::mem::take(&mut self.partial);
                if let Some(seg) = self.frame(&x) {
                    out.push(seg);
                }
                self.partial = x;
                self.partial.clear();
            }
        }
    }

    /// Ends the stream: the open segment, if any (the partial last frame is dropped).
    pub fn finish(&mut self) -> Option<Segment> {
        self.partial.clear();
        self.loud_run = 0;
        let (_, first) = self.speech.take()?;
        Some(Segment {
            start: first * self.cfg.frame,
            samples: std::mem::take(&mut self.current),
            cut: Cut::EndOfStream,
        })
    }

    /// One whole frame.
    fn frame(&mut self, x: &[f32]) -> Option<Segment> {
        let cfg = &self.cfg;
        let f = self.frame_idx;
        self.frame_idx += 1;
        let ring = (cfg.pre_roll_frames + cfg.min_start_frames) * cfg.frame;
        self.recent.extend(x);
        let excess = self.recent.len().saturating_sub(ring);
        self.recent.drain(..excess);
        let db = frame_db(x);
        match self.speech {
            None => {
                self.loud_run = if db > cfg.start_db {
                    self.loud_run + 1
                } else {
                    0
                };
                if self.loud_run >= cfg.min_start_frames {
                    let s = f + 1 - self.loud_run;
                    let first = s.saturating_sub(cfg.pre_roll_frames);
                    // `recent` ends with frame f and holds enough frames for the pre-roll.
                    let n = (f + 1 - first) * cfg.frame;
                    let skip = self.recent.len().saturating_sub(n);
                    self.current.clear();
                    self.current.extend(self.recent.iter().skip(skip));
                    self.speech = Some((s, first));
                    self.quiet_run = 0;
                }
                None
            }
            Some((s, first)) => {
                self.current.extend_from_slice(x);
                let active =
                    db > cfg.stop_db || (db > cfg.stop_db - 15.0 && zcr(x) > cfg.fricative_zcr);
                self.quiet_run = if active { 0 } else { self.quiet_run + 1 };
                let ended = self.quiet_run >= cfg.hangover_frames;
                let too_long = f + 1 - s >= cfg.max_frames;
                if !(ended || too_long) {
                    return None;
                }
                // Keep half the hangover: the word's tail, without a long silence.
                let (end, cut) = if ended {
                    (
                        f + 1 - self.quiet_run + cfg.hangover_frames / 2,
                        Cut::Silence,
                    )
                } else {
                    (f + 1, Cut::MaxLength)
                };
                let mut samples = std::mem::take(&mut self.current);
                samples.truncate((end - first) * cfg.frame);
                self.speech = None;
                self.loud_run = 0;
                Some(Segment {
                    start: first * cfg.frame,
                    samples,
                    cut,
                })
            }
        }
    }
}

/// The speech segments of `samples`, as sample ranges (frame-aligned).
pub fn speech_segments(samples: &[f32], cfg: &VadConfig) -> Vec<Range<usize>> {
    let mut seg = Segmenter::new(cfg.clone());
    let mut out = Vec::new();
    seg.push(samples, &mut out);
    out.extend(seg.finish());
    out.iter().map(Segment::range).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    /// A speech-like burst: 150 Hz voice with syllable-rate (4 Hz) amplitude modulation.
    fn burst(seconds: f32) -> Vec<f32> {
        let n = (seconds * 16_000.0) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                0.3 * (0.6 + 0.4 * (TAU * 4.0 * t).sin()) * (TAU * 150.0 * t).sin()
            })
            .collect()
    }

    fn noise(n: usize, amp: f32, seed: &mut u32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 * amp - amp
            })
            .collect()
    }

    #[test]
    fn one_utterance_in_silence_is_one_cut_at_the_right_place() {
        let mut seed = 1;
        let mut audio = noise(16_000, 0.001, &mut seed); // 1 s of -63 dB hiss
        audio.extend(burst(1.5));
        audio.extend(noise(32_000, 0.001, &mut seed));
        let segs = speech_segments(&audio, &VadConfig::default());
        assert_eq!(segs.len(), 1, "{segs:?}");
        let (s, e) = (
            segs[0].start as f32 / 16_000.0,
            segs[0].end as f32 / 16_000.0,
        );
        // Starts 0.3 s (pre-roll) before the burst at 1.0 s; ends after it (2.5 s) within the hangover.
        assert!((s - 0.7).abs() <= 0.03, "start {s}");
        assert!((2.5..=3.0).contains(&e), "end {e}");
    }

    #[test]
    fn two_utterances_and_a_long_one_split_at_max() {
        let mut audio = vec![0.0; 8_000];
        audio.extend(burst(1.0));
        audio.extend(vec![0.0; 24_000]); // 1.5 s gap > hangover
        audio.extend(burst(1.0));
        audio.extend(vec![0.0; 16_000]);
        assert_eq!(speech_segments(&audio, &VadConfig::default()).len(), 2);

        let long = burst(20.0);
        let segs = speech_segments(&long, &VadConfig::default());
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert_eq!(segs[0].len(), 750 * 320);
    }

    #[test]
    fn silence_and_quiet_hiss_have_no_speech() {
        let mut seed = 7;
        assert!(speech_segments(&vec![0.0; 160_000], &VadConfig::default()).is_empty());
        assert!(
            speech_segments(&noise(160_000, 0.003, &mut seed), &VadConfig::default()).is_empty()
        );
        assert!(speech_segments(&[], &VadConfig::default()).is_empty());
    }

    #[test]
    fn streaming_in_any_blocks_equals_the_whole_buffer() {
        let mut seed = 3;
        let mut audio = noise(12_345, 0.001, &mut seed);
        audio.extend(burst(1.2));
        audio.extend(noise(20_000, 0.001, &mut seed));
        audio.extend(burst(17.0)); // cut at max length, then continues
        audio.extend(noise(3_000, 0.001, &mut seed)); // ends in speech's hangover
        let whole = speech_segments(&audio, &VadConfig::default());
        assert_eq!(whole.len(), 3, "{whole:?}");
        for block in [1, 317, 320, 4_096] {
            let mut seg = Segmenter::new(VadConfig::default());
            let mut out = Vec::new();
            for chunk in audio.chunks(block) {
                seg.push(chunk, &mut out);
            }
            out.extend(seg.finish());
            let cuts: Vec<Cut> = out.iter().map(|s| s.cut).collect();
            assert_eq!(cuts, [Cut::Silence, Cut::MaxLength, Cut::EndOfStream]);
            for (s, r) in out.iter().zip(&whole) {
                assert_eq!(s.range(), *r, "block {block}");
                assert_eq!(s.samples[..], audio[r.clone()], "block {block}");
            }
        }
    }
}
