//! Voice activity detection: energy with hysteresis plus zero-crossing rate, frame by frame.
//!
//! A frame is *loud* above `start_db`; speech starts after `min_start_frames` loud frames in a
//! row. It continues while frames stay above the lower `stop_db` (hysteresis) — or are quiet
//! but hiss-like (high zero-crossing rate: fricatives such as "s", "f") — and ends after
//! `hangover_frames` of silence, or at `max_frames`. Each segment includes `pre_roll_frames`
//! before the detected start, so the soft onset of the first word is not cut.
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
            pre_roll_frames: 10, // 0.2 s
            max_frames: 750,     // 15 s
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

/// The speech segments of `samples`, as sample ranges (frame-aligned).
pub fn speech_segments(samples: &[f32], cfg: &VadConfig) -> Vec<Range<usize>> {
    let frame = cfg.frame.max(1);
    let n_frames = samples.len() / frame;
    let mut out = Vec::new();
    let (mut loud_run, mut quiet_run) = (0usize, 0usize);
    let mut start: Option<usize> = None; // first speech frame (before pre-roll)
    for f in 0..n_frames {
        let x = &samples[f * frame..(f + 1) * frame];
        let db = frame_db(x);
        match start {
            None => {
                loud_run = if db > cfg.start_db { loud_run + 1 } else { 0 };
                if loud_run >= cfg.min_start_frames {
                    start = Some(f + 1 - loud_run);
                    quiet_run = 0;
                }
            }
            Some(s) => {
                let active =
                    db > cfg.stop_db || (db > cfg.stop_db - 15.0 && zcr(x) > cfg.fricative_zcr);
                quiet_run = if active { 0 } else { quiet_run + 1 };
                let ended = quiet_run >= cfg.hangover_frames;
                let too_long = f + 1 - s >= cfg.max_frames;
                if ended || too_long {
                    let end = if ended {
                        f + 1 - quiet_run + cfg.hangover_frames / 2
                    } else {
                        f + 1
                    };
                    out.push(
                        s.saturating_sub(cfg.pre_roll_frames) * frame..end.min(n_frames) * frame,
                    );
                    start = None;
                    loud_run = 0;
                }
            }
        }
    }
    if let Some(s) = start {
        out.push(s.saturating_sub(cfg.pre_roll_frames) * frame..n_frames * frame);
    }
    out
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
        // Starts 0.2 s (pre-roll) before the burst at 1.0 s; ends after it (2.5 s) within the hangover.
        assert!((s - 0.8).abs() <= 0.03, "start {s}");
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
}
