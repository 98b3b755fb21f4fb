//! Audio input: every WAV flavour → 16 kHz mono, and bad input → clear errors.
use std::f32::consts::TAU;
use std::io::Cursor;

use hearth_runtime::voice::{decode_wav, load_audio, MAX_AUDIO_SECONDS, SAMPLE_RATE};

/// Writes a WAV (in memory) of a 440 Hz tone at amplitude 0.5, `seconds` long; every
/// channel carries the tone, so the mono mix is the tone too.
fn wav(rate: u32, channels: u16, bits: u16, float: bool, seconds: f32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut buf = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
    let n = (rate as f32 * seconds) as usize;
    let full = ((1i64 << (bits - 1)) - 1) as f32;
    for i in 0..n {
        let v = 0.5 * (TAU * 440.0 * i as f32 / rate as f32).sin();
        for _ in 0..channels {
            if float {
                w.write_sample(v).unwrap();
            } else if bits == 8 {
                w.write_sample((v * full).round() as i8).unwrap();
            } else {
                w.write_sample((v * full).round() as i32).unwrap();
            }
        }
    }
    w.finalize().unwrap();
    buf.into_inner()
}

fn assert_is_tone(samples: &[f32], seconds: f32, tol: f32) {
    let want_len = (seconds * SAMPLE_RATE as f32).round() as usize;
    assert!(
        samples.len().abs_diff(want_len) <= 1,
        "{} samples, want {want_len}",
        samples.len()
    );
    let err = samples[400..samples.len() - 400]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = (i + 400) as f32 / SAMPLE_RATE as f32;
            (v - 0.5 * (TAU * 440.0 * t).sin()).abs()
        })
        .fold(0f32, f32::max);
    assert!(err < tol, "max deviation from the tone {err}");
}

#[test]
fn every_pcm_flavour_decodes_to_16k_mono() {
    let cases = [
        (16_000, 1, 16, false, 2e-3),
        (44_100, 2, 16, false, 3e-3),
        (48_000, 1, 24, false, 3e-3),
        (22_050, 2, 32, false, 3e-3),
        (8_000, 1, 8, false, 2e-2), // 8-bit: quantisation noise ~ 1/256
        (44_100, 2, 32, true, 3e-3),
        (11_025, 6, 16, false, 3e-3),
    ];
    for (rate, ch, bits, float, tol) in cases {
        let a = decode_wav(Cursor::new(wav(rate, ch, bits, float, 1.0)))
            .unwrap_or_else(|e| panic!("{rate} Hz {ch} ch {bits} bit: {e}"));
        assert_eq!((a.source_rate, a.source_channels), (rate, ch));
        assert_is_tone(&a.samples, 1.0, tol);
    }
}

#[test]
fn stereo_is_mixed_not_interleaved() {
    // Left = +0.5, right = -0.5 DC: the mix is silence; interleaving would give ±0.5.
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut buf = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
    for _ in 0..1600 {
        w.write_sample(16_384i16).unwrap();
        w.write_sample(-16_384i16).unwrap();
    }
    w.finalize().unwrap();
    let a = decode_wav(Cursor::new(buf.into_inner())).unwrap();
    assert_eq!(a.samples.len(), 1600);
    assert!(a.samples.iter().all(|v| v.abs() < 1e-6));
}

#[test]
fn empty_and_non_audio_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("hearth-voice-audio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let e = load_audio(&empty).unwrap_err().to_string();
    assert!(
        e.contains("empty.wav") && e.contains("not a readable WAV"),
        "{e}"
    );
    let text = dir.join("notes.wav");
    std::fs::write(&text, b"these are not the samples you are looking for").unwrap();
    let e = load_audio(&text).unwrap_err().to_string();
    assert!(e.contains("not a readable WAV"), "{e}");
    let e = load_audio(&dir.join("missing.wav"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.wav"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zero_length_audio_is_empty() {
    let a = decode_wav(Cursor::new(wav(44_100, 2, 16, false, 0.0))).unwrap();
    assert!(a.samples.is_empty());
}

#[test]
fn a_header_longer_than_the_data_uses_the_data_present() {
    let mut bytes = wav(16_000, 1, 16, false, 1.0);
    bytes.truncate(bytes.len() - 8_000); // drop the last 4000 samples
    let a = decode_wav(Cursor::new(bytes)).unwrap();
    assert_eq!(a.samples.len(), 12_000);
    // And a half sample at the end is dropped, not misread.
    let mut bytes = wav(16_000, 1, 16, false, 0.5);
    bytes.pop();
    assert_eq!(decode_wav(Cursor::new(bytes)).unwrap().samples.len(), 7_999);
}

#[test]
fn audio_over_the_limit_is_refused() {
    // 8 kHz 8-bit: the cheapest file just over the limit.
    let rate = 8_000;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 8,
        sample_format: hound::SampleFormat::Int,
    };
    let mut buf = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
    for _ in 0..(MAX_AUDIO_SECONDS + 1) * rate {
        w.write_sample(0i8).unwrap();
    }
    w.finalize().unwrap();
    let e = decode_wav(Cursor::new(buf.into_inner()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than the 600 s limit"), "{e}");
}

#[test]
fn unsupported_formats_are_errors() {
    // A valid RIFF/WAVE header with format tag 0x55 (MP3 in WAV).
    let mut bytes = wav(16_000, 1, 16, false, 0.1);
    bytes[20] = 0x55;
    bytes[21] = 0;
    assert!(decode_wav(Cursor::new(bytes)).is_err());
}

/// Converts `from` to `to` with sox (scripts/setup-deps installs it); extra args go
/// before the output.
fn sox(from: &std::path::Path, args: &[&str], to: &std::path::Path) {
    let ok = std::process::Command::new("sox")
        .arg(from)
        .args(args)
        .arg(to)
        .status()
        .expect("sox (scripts/setup-deps installs it)")
        .success();
    assert!(ok, "sox {} → {}", from.display(), to.display());
}

#[test]
fn flac_and_ogg_vorbis_decode_like_the_wav() {
    let dir = tempfile::tempdir().unwrap();
    let wav_path = dir.path().join("tone.wav");
    std::fs::write(&wav_path, wav(44_100, 2, 24, false, 1.0)).unwrap();
    let want = load_audio(&wav_path).unwrap();

    // FLAC is lossless: the same samples as the WAV it was made from.
    let flac = dir.path().join("tone.flac");
    sox(&wav_path, &[], &flac);
    let got = load_audio(&flac).unwrap();
    assert_eq!((got.source_rate, got.source_channels), (44_100, 2));
    assert_eq!(got.samples.len(), want.samples.len());
    let diff = got
        .samples
        .iter()
        .zip(&want.samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "FLAC differs from the WAV by {diff}");
    assert_is_tone(&got.samples, 1.0, 1e-3);

    // Vorbis is lossy: the tone, within the codec's error.
    let ogg = dir.path().join("tone.ogg");
    sox(&wav_path, &[], &ogg);
    let got = load_audio(&ogg).unwrap();
    assert_eq!((got.source_rate, got.source_channels), (44_100, 2));
    assert_is_tone(&got.samples, 1.0, 0.05);

    // The content decides, not the name: FLAC named .wav.
    let disguised = dir.path().join("really-flac.wav");
    std::fs::copy(&flac, &disguised).unwrap();
    assert_eq!(load_audio(&disguised).unwrap().samples.len(), 16_000);
}

#[test]
fn cut_and_corrupt_flac_and_ogg_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let wav_path = dir.path().join("tone.wav");
    // Long enough that half the file is well past the headers (Vorbis's are ~4 KB).
    std::fs::write(&wav_path, wav(16_000, 1, 16, false, 20.0)).unwrap();
    for ext in ["flac", "ogg"] {
        let whole = dir.path().join(format!("tone.{ext}"));
        sox(&wav_path, &[], &whole);
        let bytes = std::fs::read(&whole).unwrap();

        // Cut in half (a recorder killed mid-write): the audio before the cut, no error.
        let cut = dir.path().join(format!("cut.{ext}"));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let a = load_audio(&cut).unwrap();
        assert!(
            (5 * 16_000..15 * 16_000).contains(&a.samples.len()),
            "{ext}: {} samples",
            a.samples.len()
        );

        // The right magic, then noise: an error (or no audio), never a panic.
        let mut junk = bytes[..4].to_vec();
        let mut seed = 7u32;
        junk.extend((0..20_000).map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        }));
        let bad = dir.path().join(format!("junk.{ext}"));
        std::fs::write(&bad, junk).unwrap();
        match load_audio(&bad) {
            Err(e) => assert!(e.to_string().contains("junk"), "{ext}: {e}"),
            Ok(a) => assert!(a.samples.is_empty(), "{ext}: {} samples", a.samples.len()),
        }
    }
}
