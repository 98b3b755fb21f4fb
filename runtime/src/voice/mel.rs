//! The mel filterbank Whisper's front end uses, computed rather than shipped.
//!
//! Whisper's `assets/mel_filters.npz` is `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`
//! with librosa's defaults: the Slaney mel scale (linear below 1 kHz, logarithmic above) and
//! Slaney area normalisation (each triangle scaled by 2 / its width in Hz). This is the same
//! algorithm, in f64, so the ggml model file we write carries the filters whisper.cpp expects.

/// Hz → mel on the Slaney scale (librosa `hz_to_mel(htk=False)`).
pub fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    if hz >= MIN_LOG_HZ {
        let logstep = 6.4f64.ln() / 27.0;
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

/// Mel → Hz on the Slaney scale (inverse of [`hz_to_mel`]).
pub fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    if mel >= MIN_LOG_MEL {
        let logstep = 6.4f64.ln() / 27.0;
        MIN_LOG_HZ * (logstep * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// The `n_mels × (n_fft/2 + 1)` filterbank, row-major, for frequencies 0 … `sample_rate`/2.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let sr = f64::from(sample_rate);
    let fft_freqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * sr / n_fft as f64).collect();
    // n_mels + 2 band edges, evenly spaced in mel between 0 Hz and Nyquist.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = vec![0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (right - left);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let rising = (f - left) / (centre - left);
            let falling = (right - f) / (right - centre);
            let w = rising.min(falling).max(0.0);
            out[m * n_bins + k] = (w * norm) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values read from openai-whisper's `whisper/assets/mel_filters.npz` (`mel_80`).
    #[test]
    fn matches_whisper_reference_values() {
        let m = mel_filters(16_000, 400, 80);
        let at = |i: usize, j: usize| m[i * 201 + j];
        let reference = [
            (0, 1, 0.024_862_595),
            (1, 1, 0.001_990_822),
            (1, 2, 0.022_871_772),
            (10, 10, 0.019_908_218),
            (10, 11, 0.004_954_375),
            (40, 42, 0.005_411_105),
            (40, 43, 0.014_735_566),
            (40, 44, 0.006_518_19),
            (79, 186, 0.000_366_741_67),
            (79, 192, 0.003_164_711_9),
            (79, 199, 0.000_448_759),
        ];
        for (i, j, want) in reference {
            let got = at(i, j);
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "filter[{i}][{j}] = {got}, reference {want}"
            );
        }
        // The reference has exactly 391 non-zero weights summing to 1.9990242.
        assert_eq!(m.iter().filter(|&&w| w != 0.0).count(), 391);
        let sum: f64 = m.iter().map(|&w| f64::from(w)).sum();
        assert!((sum - 1.999_024_2).abs() < 1e-5, "sum {sum}");
        // Zero outside the rows' supports: row 0 is a single bin.
        assert_eq!(at(0, 0), 0.0);
        assert_eq!(at(0, 2), 0.0);
    }

    #[test]
    fn mel_scale_round_trips() {
        for hz in [0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    }
}
