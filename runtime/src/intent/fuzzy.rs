//! The fuzzy stage's pieces: filler words and edit distance with a length-scaled
//! threshold, to tolerate speech-to-text slips in names.

/// Words dropped from the input in the fuzzy stage (hesitations, politeness,
/// articles an STT adds or a speaker drops).
pub const FILLERS: &[&str] = &[
    "please", "uh", "uhm", "um", "umm", "er", "erm", "hmm", "ah", "oh", "like", "just", "hey",
    "okay", "ok", "so", "well", "now", "the", "a", "an", "my", "our", "kindly", "thanks", "thank",
    "you",
];

/// Levenshtein distance over bytes, capped: returns `None` once it exceeds `max`.
pub fn bounded_levenshtein(a: &[u8], b: &[u8], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        let mut row_min = cur[0];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
            row_min = row_min.min(cur[j + 1]);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[b.len()] <= max).then_some(prev[b.len()])
}

/// Edits tolerated in a name of `len` bytes: none for very short names (too easy to
/// confuse), then about one per four characters, at most three.
pub fn max_edits(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        8..=12 => 2,
        _ => 3,
    }
}

/// Below this the fuzzy stage reports no match rather than a guess.
pub const MIN_SCORE: f32 = 0.6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(bounded_levenshtein(b"kitchen", b"kitchen", 0), Some(0));
        assert_eq!(bounded_levenshtein(b"kitchen", b"kitchin", 1), Some(1));
        assert_eq!(
            bounded_levenshtein(b"overhead light", b"over head light", 2),
            Some(1)
        );
        assert_eq!(bounded_levenshtein(b"garage", b"bedroom", 2), None);
        assert_eq!(bounded_levenshtein(b"", b"abc", 3), Some(3));
    }

    #[test]
    fn threshold_scales_with_length() {
        assert_eq!(max_edits(3), 0);
        assert_eq!(max_edits(7), 1);
        assert_eq!(max_edits(14), 3);
    }
}
