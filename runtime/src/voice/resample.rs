//! A streaming windowed-sinc resampler (band-limited interpolation) for any rate pair.
//!
//! Each output sample at input time `t` is `Σ x[k]·h(t − k)` with `h` a low-pass sinc cut at
//! the lower of the two Nyquist frequencies, tapered by a Blackman window over
//! [`ZERO_CROSSINGS`] lobes each side. `h` is tabulated at [`PHASES`] points per input
//! sample and linearly interpolated, so no trigonometry runs per sample. Input may be pushed
//! in blocks of any size; memory stays bounded by the filter length.

/// Sinc lobes each side of the centre (filter quality vs. cost).
const ZERO_CROSSINGS: usize = 16;
/// Table resolution: kernel values per unit of (cutoff-scaled) time.
const PHASES: usize = 512;
/// Keep the pass band a little inside Nyquist, so the transition band aliases nothing.
const ROLLOFF: f64 = 0.95;

/// Converts a stream of mono samples from `from` Hz to `to` Hz.
pub struct Resampler {
    from: u64,
    to: u64,
    /// Cut-off as a fraction of the input Nyquist: min(1, to/from)·ROLLOFF.
    cutoff: f64,
    /// Half-length of the filter, in input samples.
    half: usize,
    /// Kernel table over 0 … ZERO_CROSSINGS (cutoff-scaled), `PHASES` points per unit.
    table: Vec<f32>,
    /// Pending input; `buf[0]` is input sample number `buf_start` (may be negative: zeros before the start).
    buf: Vec<f32>,
    buf_start: i64,
    /// Input samples pushed so far, and output samples produced.
    n_in: u64,
    n_out: u64,
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz (both non-zero).
    pub fn new(from: u32, to: u32) -> Self {
        assert!(from > 0 && to > 0, "sample rates must be positive");
        let cutoff = (f64::from(to) / f64::from(from)).min(1.0) * ROLLOFF;
        let half = (ZERO_CROSSINGS as f64 / cutoff).ceil() as usize;
        let table = (0..=ZERO_CROSSINGS * PHASES + 1)
            .map(|i| {
                let x = i as f64 / PHASES as f64; // in cutoff-scaled samples
                let sinc = if x == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                // Blackman window over |x| ≤ ZERO_CROSSINGS.
                let r = (x / ZERO_CROSSINGS as f64).min(1.0);
                let w = 0.42
                    + 0.5 * (std::f64::consts::PI * r).cos()
                    + 0.08 * (2.0 * std::f64::consts::PI * r).cos();
                (sinc * w.max(0.0)) as f32
            })
            .collect();
        Self {
            from: u64::from(from),
            to: u64::from(to),
            cutoff,
            half,
            table,
            buf: vec![0.0; half],
            buf_start: -(half as i64),
            n_in: 0,
            n_out: 0,
        }
    }

    /// Kernel value at `dt` input samples from the centre.
    fn kernel(&self, dt: f64) -> f32 {
        let x = (dt * self.cutoff).abs() * PHASES as f64;
        let i = x as usize;
        if i >= ZERO_CROSSINGS * PHASES {
            return 0.0;
        }
        let frac = (x - i as f64) as f32;
        self.table[i] + (self.table[i + 1] - self.table[i]) * frac
    }

    /// Produces every output sample whose filter window lies within the input seen so far.
    fn drain(&mut self, out: &mut Vec<f32>, limit: u64) {
        let buf_end = self.buf_start + self.buf.len() as i64;
        while self.n_out < limit {
            // Output n sits at input time n·from/to; exact integer part, fractional rest.
            let num = self.n_out * self.from;
            let centre = (num / self.to) as i64;
            let frac = (num % self.to) as f64 / self.to as f64;
            let hi = centre + self.half as i64;
            if hi >= buf_end {
                break;
            }
            let lo = centre - self.half as i64 + 1;
            let mut acc = 0f32;
            for k in lo..=hi {
                let x = self.buf[(k - self.buf_start) as usize];
                acc += x * self.kernel((k - centre) as f64 - frac);
            }
            out.push(acc * self.cutoff as f32);
            self.n_out += 1;
        }
        // Forget input no future output needs.
        let next_lo = (self.n_out * self.from / self.to) as i64 - self.half as i64 + 1;
        let drop = (next_lo - self.buf_start).clamp(0, self.buf.len() as i64) as usize;
        self.buf.drain(..drop);
        self.buf_start += drop as i64;
    }

    /// Pushes input samples, appending the output samples now computable to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if self.from == self.to {
            out.extend_from_slice(input);
            self.n_in += input.len() as u64;
            self.n_out = self.n_in;
            return;
        }
        self.buf.extend_from_slice(input);
        self.n_in += input.len() as u64;
        self.drain(out, u64::MAX);
    }

    /// Flushes the tail (the input is taken to be silent after its end): in total
    /// ⌈n_in · to / from⌉ samples come out.
    pub fn finish(mut self, out: &mut Vec<f32>) {
        if self.from == self.to {
            return;
        }
        let total = (self.n_in * self.to).div_ceil(self.from);
        self.buf.extend(std::iter::repeat_n(0.0, self.half + 1));
        self.drain(out, total);
    }
}

/// Resamples a whole mono buffer.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    let mut r = Resampler::new(from, to);
    let mut out =
        Vec::with_capacity((input.len() as u64 * u64::from(to) / u64::from(from)) as usize + 1);
    r.push(input, &mut out);
    r.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    fn tone(freq: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (TAU * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn in_band_tone_survives_exactly() {
        for from in [44_100, 48_000, 22_050, 8_000, 11_025] {
            let input = tone(1000.0, from, from as usize); // 1 s
            let out = resample(&input, from, 16_000);
            assert_eq!(out.len(), 16_000, "{from} Hz");
            let want = tone(1000.0, 16_000, 16_000);
            // Away from the edges (where the input stops), the result is the same tone.
            let err = out[200..15_800]
                .iter()
                .zip(&want[200..15_800])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 2e-3, "{from} Hz: max error {err}");
        }
    }

    #[test]
    fn above_nyquist_is_removed() {
        // 11 kHz cannot exist at 16 kHz: it must not alias down to 5 kHz.
        let input = tone(11_000.0, 44_100, 44_100);
        let out = resample(&input, 44_100, 16_000);
        let level = rms(&out[200..15_800]);
        assert!(level < 0.01, "aliased energy rms {level} (input rms 0.707)");
    }

    #[test]
    fn streaming_in_blocks_equals_one_shot() {
        let input = tone(440.0, 44_100, 10_000);
        let whole = resample(&input, 44_100, 16_000);
        let mut r = Resampler::new(44_100, 16_000);
        let mut out = Vec::new();
        for block in input.chunks(333) {
            r.push(block, &mut out);
        }
        r.finish(&mut out);
        assert_eq!(out.len(), whole.len());
        assert!(out.iter().zip(&whole).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn upsampling_and_identity() {
        let input = tone(1000.0, 8_000, 8_000);
        let out = resample(&input, 8_000, 16_000);
        assert_eq!(out.len(), 16_000);
        let want = tone(1000.0, 16_000, 16_000);
        let err = out[400..15_600]
            .iter()
            .zip(&want[400..15_600])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 2e-3, "max error {err}");
        assert_eq!(resample(&input, 8_000, 8_000), input);
        assert!(resample(&[], 44_100, 16_000).is_empty());
    }
}
