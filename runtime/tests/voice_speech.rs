//! Real speech through the imported tiny.en model: jfk.wav, pocketsphinx's LibriVox clips
//! (word error rate), an espeak-ng command, silence.
//! Needs `scripts/fetch-models` (model, jfk.wav) and `scripts/setup-deps` (clips, espeak-ng).
use std::path::Path;

use hearth_runtime::voice::{load_audio, Transcriber, TranscriberOptions, SAMPLE_RATE};

#[path = "../../tests/common/paths.rs"]
#[allow(dead_code)]
mod paths;

use paths::{espeak, fetched, temp_dir};

fn transcriber() -> Transcriber {
    let opts = TranscriberOptions {
        threads: 2,
        ..Default::default()
    };
    Transcriber::load(&fetched("models/ggml-tiny.en.bin"), opts).expect("load tiny.en")
}

fn transcribe(t: &mut Transcriber, wav: &Path) -> String {
    let audio = load_audio(wav).unwrap_or_else(|e| panic!("{e}"));
    t.transcribe(&audio.samples).unwrap().text
}

/// Lower case, punctuation and hyphens to spaces, "mr" → "mister": transcripts compared by words.
fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(|w| {
            if w == "mr" {
                "mister".to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

/// Word-level Levenshtein distance.
fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(r != h))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

#[test]
fn wer_helper_counts_edits() {
    let w = |s: &str| words(s);
    assert_eq!(word_errors(&w("a b c"), &w("a b c")), 0);
    assert_eq!(word_errors(&w("a b c"), &w("a x c d")), 2);
    assert_eq!(
        word_errors(
            &w("Mr. Dashwood's cold-hearted"),
            &w("mister dashwood's cold hearted")
        ),
        0
    );
}

#[test]
fn jfk_ask_not() {
    let mut t = transcriber();
    let text = transcribe(&mut t, &fetched("audio/jfk.wav"));
    let got = words(&text).join(" ");
    assert!(
        got.contains("ask not what your country can do for you"),
        "jfk.wav transcribed as {text:?}"
    );
    assert!(
        got.contains("ask what you can do for your country"),
        "{text:?}"
    );
}

/// Word error rate bound over the five LibriVox clips shipped in Debian's
/// pocketsphinx-testdata (70 words of read speech). tiny.en makes 4–6 errors there
/// ("ill disposed" → "old-sposed" twice, a dropped disfluency).
const LIBRIVOX_MAX_WER: f64 = 0.15;

#[test]
fn librivox_word_error_rate() {
    let dir = Path::new("/usr/share/pocketsphinx/test/data/librivox");
    let transcripts = std::fs::read_to_string(dir.join("transcription")).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run scripts/setup-deps (apt pocketsphinx-testdata)",
            dir.display()
        )
    });
    let mut t = transcriber();
    let (mut errors, mut total) = (0, 0);
    for line in transcripts.lines().filter(|l| !l.trim().is_empty()) {
        // "<s> words </s> (clip-id)"
        let (text, id) = line.rsplit_once('(').expect("transcript line");
        let id = id.trim_end_matches(')').trim();
        let reference = words(&text.replace("<s>", "").replace("</s>", ""));
        let hyp = words(&transcribe(&mut t, &dir.join(format!("{id}.wav"))));
        let e = word_errors(&reference, &hyp);
        eprintln!(
            "{id}: {e} errors / {} words: {}",
            reference.len(),
            hyp.join(" ")
        );
        errors += e;
        total += reference.len();
    }
    assert!(total >= 60, "only {total} reference words");
    let wer = errors as f64 / total as f64;
    eprintln!("LibriVox WER {wer:.3} ({errors}/{total})");
    assert!(
        wer <= LIBRIVOX_MAX_WER,
        "WER {wer:.3} ({errors}/{total}) above {LIBRIVOX_MAX_WER}"
    );
}

#[test]
fn espeak_command_with_and_without_home_prompt() {
    let dir = temp_dir("voice-speech");
    // espeak-ng writes 22050 Hz mono: exercises the resampler on real speech.
    let wav = espeak(&dir, "kitchen.wav", "turn on the kitchen light");
    let mut t = transcriber();
    assert_eq!(
        words(&transcribe(&mut t, &wav)),
        words("turn on the kitchen light")
    );
    let mut t = t.with_prompt(&["kitchen light", "living room lamp", "hallway"]);
    assert_eq!(
        words(&transcribe(&mut t, &wav)),
        words("turn on the kitchen light")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ten_minutes_of_silence_is_empty_text() {
    let mut t = transcriber();
    let silence = vec![0f32; 600 * SAMPLE_RATE as usize];
    let r = t.transcribe(&silence).unwrap();
    assert_eq!(r.text, "");
    assert_eq!(r.audio_seconds, 600.0);
    // And non-finite input is an error, not garbage.
    assert!(t.transcribe(&[0.1, f32::NAN]).is_err());
}
