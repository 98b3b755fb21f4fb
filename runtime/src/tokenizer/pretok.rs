//! Hand-written pre-tokenizers: each is exactly equivalent to the regex (or regex
//! sequence) the `tokenizers` crate runs for that name (see `gguf/tokenizer.rs`), but
//! needs nothing compiled at load.
//!
//! The regexes are matched with backtracking, leftmost-first semantics; each
//! function below walks the alternatives in the same order and returns the length of
//! the first one that matches. Every alternative set covers every character, so the
//! matches tile the text (no gaps, no empty matches).
use super::unicode_tables::{LETTER, NUMBER, WHITE_SPACE};

/// The pre-tokenizers supported by the fast tokenizer (named as `tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's regex (the `ByteLevel` pre-tokenizer with `use_regex`).
    Gpt2,
    /// SmolLM / StarCoder: every digit alone (`Digits`), then the GPT-2 regex.
    SmolLm,
    /// Qwen2: case-insensitive contractions, single digits, newline-aware runs.
    Qwen2,
    /// Llama 3: as Qwen2 with digits in runs of up to three.
    Llama3,
}

impl PreTokenizer {
    /// Code stored in the tokenizer tables.
    pub fn code(self) -> u32 {
        match self {
            PreTokenizer::Gpt2 => 1,
            PreTokenizer::SmolLm => 2,
            PreTokenizer::Qwen2 => 3,
            PreTokenizer::Llama3 => 4,
        }
    }

    /// The pre-tokenizer with table code `code`.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => PreTokenizer::Gpt2,
            2 => PreTokenizer::SmolLm,
            3 => PreTokenizer::Qwen2,
            4 => PreTokenizer::Llama3,
            _ => return None,
        })
    }

    /// The `tokenizer.ggml.pre` name.
    pub fn name(self) -> &'static str {
        match self {
            PreTokenizer::Gpt2 => "gpt-2",
            PreTokenizer::SmolLm => "smollm",
            PreTokenizer::Qwen2 => "qwen2",
            PreTokenizer::Llama3 => "llama-bpe",
        }
    }

    /// Calls `piece` with each pre-token of `text`, in order.
    pub fn split<'t>(self, text: &'t str, mut piece: impl FnMut(&'t str)) {
        match self {
            PreTokenizer::Gpt2 => tile(text, gpt2_match, &mut piece),
            PreTokenizer::SmolLm => {
                // `Digits { individual_digits: true }` isolates every `char::is_numeric`
                // character; the GPT-2 regex then runs on each part separately (so
                // its lookahead never sees past a digit).
                let mut start = 0;
                for (i, c) in text.char_indices() {
                    if c.is_numeric() {
                        tile(&text[start..i], gpt2_match, &mut piece);
                        piece(&text[i..i + c.len_utf8()]);
                        start = i + c.len_utf8();
                    }
                }
                tile(&text[start..], gpt2_match, &mut piece);
            }
            PreTokenizer::Qwen2 => tile(text, |s| qwen_match(s, 1), &mut piece),
            PreTokenizer::Llama3 => tile(text, |s| qwen_match(s, 3), &mut piece),
        }
    }
}

/// Cuts `text` into consecutive matches of `first_match` (which returns the byte
/// length, ≥ 1, of the match at the start of a non-empty string).
fn tile<'t>(text: &'t str, first_match: impl Fn(&str) -> usize, piece: &mut impl FnMut(&'t str)) {
    let mut rest = text;
    while !rest.is_empty() {
        // A zero or out-of-range length would be a bug here; clamp to one char so
        // the loop always ends.
        let n = first_match(rest);
        let n = if n == 0 || n > rest.len() || !rest.is_char_boundary(n) {
            rest.chars().next().map_or(rest.len(), char::len_utf8)
        } else {
            n
        };
        piece(&rest[..n]);
        rest = &rest[n..];
    }
}

fn in_ranges(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// `\p{L}`: Unicode general category Letter.
pub fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        in_ranges(LETTER, c)
    }
}

/// `\p{N}`: Unicode general category Number.
pub fn is_number(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        in_ranges(NUMBER, c)
    }
}

/// `\s`: the Unicode `White_Space` property.
pub fn is_space(c: char) -> bool {
    if c.is_ascii() {
        matches!(c, '\t'..='\r' | ' ')
    } else {
        in_ranges(WHITE_SPACE, c)
    }
}

/// `[^\s\p{L}\p{N}]`.
fn is_other(c: char) -> bool {
    !is_space(c) && !is_letter(c) && !is_number(c)
}

fn is_newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// Byte length of the longest prefix of `s` whose chars are all in `class`.
fn run(s: &str, class: impl Fn(char) -> bool) -> usize {
    s.char_indices()
        .find(|&(_, c)| !class(c))
        .map_or(s.len(), |(i, _)| i)
}

/// Byte length of at most `max` leading chars of `s` in `class`.
fn run_max(s: &str, class: impl Fn(char) -> bool, max: usize) -> usize {
    let mut n = 0;
    for c in s.chars().take(max) {
        if !class(c) {
            break;
        }
        n += c.len_utf8();
    }
    n
}

/// `\s+(?!\S)|\s+` at a whitespace char: the whole run if it ends the text; else the
/// run minus its last char (which then joins the next word), unless that is its only
/// char.
fn spaces(s: &str) -> usize {
    let n = run(s, is_space);
    if n == s.len() {
        return n;
    }
    let last = s[..n].chars().next_back().map_or(0, char::len_utf8);
    if n > last {
        n - last
    } else {
        n
    }
}

/// ` ?X+` for a class X: an optional ASCII space, then a run of X.
fn space_then_run(s: &str, c0: char, c1: Option<char>, class: fn(char) -> bool) -> Option<usize> {
    if c0 == ' ' && c1.is_some_and(class) {
        Some(1 + run(&s[1..], class))
    } else if class(c0) {
        Some(run(s, class))
    } else {
        None
    }
}

/// First two chars of a non-empty string.
fn head(s: &str) -> (char, Option<char>) {
    let mut it = s.chars();
    (it.next().unwrap_or('\0'), it.next())
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn gpt2_match(s: &str) -> usize {
    let (c0, c1) = head(s);
    if c0 == '\'' {
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            if s[1..].starts_with(suffix) {
                return 1 + suffix.len();
            }
        }
    }
    space_then_run(s, c0, c1, is_letter)
        .or_else(|| space_then_run(s, c0, c1, is_number))
        .or_else(|| space_then_run(s, c0, c1, is_other))
        .unwrap_or_else(|| spaces(s))
}

/// Case-insensitive match of an ASCII-lowercase `suffix` at the start of `s`, with
/// Unicode simple case folding as the regex crate applies it (`s` also matches
/// U+017F LATIN SMALL LETTER LONG S). Returns the matched byte length.
fn contraction_ci(s: &str, suffix: &str) -> Option<usize> {
    let mut n = 0;
    let mut chars = s.chars();
    for want in suffix.chars() {
        let c = chars.next()?;
        let ok = c.to_ascii_lowercase() == want || (want == 's' && c == '\u{17F}');
        if !ok {
            return None;
        }
        n += c.len_utf8();
    }
    Some(n)
}

/// Qwen2's regex (`max_digits` = 1) and Llama 3's (`max_digits` = 3):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn qwen_match(s: &str, max_digits: usize) -> usize {
    let (c0, c1) = head(s);
    if c0 == '\'' {
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            if let Some(n) = contraction_ci(&s[1..], suffix) {
                return 1 + n;
            }
        }
    }
    // `[^\r\n\p{L}\p{N}]?\p{L}+`
    if !is_newline(c0) && !is_letter(c0) && !is_number(c0) && c1.is_some_and(is_letter) {
        let n = c0.len_utf8();
        return n + run(&s[n..], is_letter);
    }
    if is_letter(c0) {
        return run(s, is_letter);
    }
    if is_number(c0) {
        return run_max(s, is_number, max_digits);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    if let Some(n) = space_then_run(s, c0, c1, is_other) {
        return n + run(&s[n..], is_newline);
    }
    // Only whitespace is left. `\s*[\r\n]+`: backtracking gives the run up to and
    // including its last newline.
    let ws = &s[..run(s, is_space)];
    if let Some(k) = ws.rfind(is_newline) {
        return k + 1;
    }
    spaces(s)
}
