//! The classifier's featurizer: text bytes → a fixed number of hashed feature buckets.
//! No allocation, no string decoding, one pass over the bytes, so the firmware and the
//! host trainer compute the very same vector (same integer hashing, same f32 ops).
//!
//! - Bytes are ASCII-lowercased; ASCII letters and digits and every non-ASCII byte
//!   (UTF-8 or not) are word bytes, `'` is dropped ("what's" = "whats"), anything else
//!   separates words. Only the first [`MAX_INPUT`] bytes are read.
//! - Features: each word (unigram), each pair of adjacent words (bigram), each byte
//!   trigram of every word padded with a space at both ends (" tv", "tv "): the
//!   trigrams make the model robust to the STT slips a word feature would miss.
//! - Each feature is FNV-1a hashed (with a per-kind tag), mixed, and counted in bucket
//!   `hash % buckets`; the counts are scaled by `1/√n` (`n` features), so an utterance
//!   has unit-ish norm whatever its length.

/// Bytes of input the featurizer reads (the firmware's line buffer): a longer line is
/// classified on its first `MAX_INPUT` bytes, on the device and on the host alike.
pub const MAX_INPUT: usize = 160;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;
const TAG_WORD: u32 = 1;
const TAG_BIGRAM: u32 = 2;
const TAG_TRIGRAM: u32 = 3;

fn fnv_byte(h: u32, b: u8) -> u32 {
    (h ^ u32::from(b)).wrapping_mul(FNV_PRIME)
}

/// Murmur3's finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Whether `b` (already lowercased) belongs to a word.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b >= 0x80
}

/// Adds features to `x`, counting them.
struct Sink<'a> {
    x: &'a mut [f32],
    n: u32,
}

impl Sink<'_> {
    fn add(&mut self, tag: u32, h: u32) {
        let h = mix(h ^ tag.wrapping_mul(0x9e37_79b9));
        // `x` is non-empty (checked by `featurize`), so the index is in bounds.
        let i = (h as usize) % self.x.len();
        self.x[i] += 1.0;
        self.n += 1;
    }
}

/// `1/√n` for `n ≥ 1` with f32 arithmetic only (`core` has no `sqrt`): the classic
/// bit-trick estimate and four Newton steps, which converge to within an ulp or two.
/// Deterministic, so host and device agree on every bit.
fn inv_sqrt(n: u32) -> f32 {
    let x = n as f32;
    let mut y = f32::from_bits(0x5f37_59df - (x.to_bits() >> 1));
    for _ in 0..4 {
        y = y * (1.5 - 0.5 * x * y * y);
    }
    y
}

/// Featurize `text` into `x` (zeroed first; every bucket of `x` is a feature). Returns
/// the number of features counted: 0 when the text has no word (empty, only spaces or
/// punctuation), in which case `x` stays all zeros. An empty `x` counts nothing.
pub fn featurize(text: &[u8], x: &mut [f32]) -> u32 {
    x.iter_mut().for_each(|v| *v = 0.0);
    if x.is_empty() {
        return 0;
    }
    let mut sink = Sink { x, n: 0 };
    let text = &text[..text.len().min(MAX_INPUT)];
    let mut prev_word: Option<u32> = None;
    // The current word: its hash, and the last two bytes of " word" for the trigrams.
    let mut word: Option<u32> = None;
    let (mut p2, mut p1, mut seen) = (b' ', b' ', 1u32);
    // A virtual separator after the text ends the last word.
    for &raw in text.iter().chain(core::iter::once(&b' ')) {
        let b = raw.to_ascii_lowercase();
        if b == b'\'' {
            continue;
        }
        if is_word_byte(b) {
            word = Some(fnv_byte(word.unwrap_or(FNV_OFFSET), b));
            if seen >= 2 {
                sink.add(TAG_TRIGRAM, trigram(p2, p1, b));
            }
            (p2, p1, seen) = (p1, b, seen + 1);
        } else if let Some(w) = word.take() {
            // The closing space: the word's last trigram.
            sink.add(TAG_TRIGRAM, trigram(p2, p1, b' '));
            sink.add(TAG_WORD, w);
            if let Some(p) = prev_word {
                sink.add(TAG_BIGRAM, p.rotate_left(13) ^ w);
            }
            prev_word = Some(w);
            (p2, p1, seen) = (b' ', b' ', 1);
        }
    }
    let n = sink.n;
    if n > 0 {
        let s = inv_sqrt(n);
        sink.x.iter_mut().for_each(|v| *v *= s);
    }
    n
}

fn trigram(a: u8, b: u8, c: u8) -> u32 {
    fnv_byte(fnv_byte(fnv_byte(FNV_OFFSET, a), b), c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(s: &[u8]) -> ([f32; 256], u32) {
        let mut x = [0.0; 256];
        let n = featurize(s, &mut x);
        (x, n)
    }

    #[test]
    fn counts_words_bigrams_and_trigrams() {
        // "tv": " tv", "tv " + word; "on": " on", "on " + word + bigram.
        assert_eq!(feats(b"TV on").1, 2 + 1 + 2 + 1 + 1);
        // One-letter word: the trigram " a " and the word.
        assert_eq!(feats(b"a").1, 2);
    }

    #[test]
    fn case_punctuation_and_apostrophes_do_not_matter() {
        assert_eq!(feats(b"What's the time?"), feats(b"whats  the TIME"));
    }

    #[test]
    fn empty_and_wordless_input_has_no_features() {
        for s in [&b""[..], b"   ", b"?!.,"] {
            let (x, n) = feats(s);
            assert_eq!(n, 0);
            assert!(x.iter().all(|&v| v == 0.0));
        }
        assert_eq!(featurize(b"lights on", &mut []), 0);
    }

    #[test]
    fn non_utf8_bytes_are_word_bytes() {
        let (a, n) = feats(b"lights \xff\xfe on");
        assert_eq!(n, feats(b"lights xy on").1);
        assert_ne!(a, feats(b"lights \xff\xfd on").0);
    }

    #[test]
    fn input_is_cut_at_max_input() {
        let long = [b'a'; MAX_INPUT + 40];
        assert_eq!(feats(&long), feats(&long[..MAX_INPUT]));
    }

    #[test]
    fn features_have_unit_norm() {
        let (x, _) = feats(b"turn on the kitchen lights please");
        let norm2: f32 = x.iter().map(|v| v * v).sum();
        // Σcᵢ²/n with Σcᵢ = n: exactly 1 without bucket collisions, more with them.
        assert!(norm2 >= 1.0 - 1e-3, "{norm2}");
        assert!((inv_sqrt(4) - 0.5).abs() < 1e-6);
        assert!((inv_sqrt(300) - 1.0 / 300f32.sqrt()).abs() < 1e-6);
    }
}
