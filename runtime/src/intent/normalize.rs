//! Input normalization (case, punctuation, whitespace) and English number words.

/// Normalized text plus the same text with the original case, byte-aligned, so a
/// wildcard can return what was said rather than its lowercased form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// Lowercased, punctuation removed, single spaces, trimmed.
    pub text: String,
    /// Same bytes positions as `text`, original case where lowercasing kept the length.
    pub cased: String,
}

/// Punctuation removed from input (hassil's set, minus `'` which templates use).
fn is_punct(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | '?'
            | '!'
            | ';'
            | ':'
            | '¿'
            | '¡'
            | '"'
            | '“'
            | '”'
            | '…'
            | '。'
            | '，'
            | '？'
            | '！'
            | '-'
            | '–'
            | '—'
            | '('
            | ')'
    )
}

/// Normalizes an utterance for matching.
pub fn normalize(input: &str) -> Normalized {
    let mut text = String::with_capacity(input.len());
    let mut cased = String::with_capacity(input.len());
    let chars: Vec<char> = input.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let c = if c == '’' { '\'' } else { c };
        // A '.' between digits is a decimal point ("21.5"), not punctuation.
        let decimal = c == '.'
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
        if c.is_whitespace() || (is_punct(c) && !decimal) {
            if !text.is_empty() && !text.ends_with(' ') {
                text.push(' ');
                cased.push(' ');
            }
            continue;
        }
        let before = text.len();
        text.extend(c.to_lowercase());
        if text.len() - before == c.len_utf8() {
            cased.push(c);
        } else {
            cased.push_str(&text[before..]);
        }
    }
    while text.ends_with(' ') {
        text.pop();
        cased.pop();
    }
    Normalized { text, cased }
}

/// Normalizes a name or phrase (home names, list values, skip words) the same way.
pub fn normalize_phrase(s: &str) -> String {
    normalize(s).text
}

fn unit(w: &str) -> Option<u64> {
    Some(match w {
        "zero" | "oh" => 0,
        "one" | "a" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        _ => return None,
    })
}

fn tens(w: &str) -> Option<u64> {
    Some(match w {
        "twenty" => 20,
        "thirty" => 30,
        "forty" | "fourty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        _ => return None,
    })
}

/// Parses an English number spoken as words, for every prefix of `words` that forms
/// one: returns `(value, words_used)` pairs, shortest first. Covers 0..=999_999
/// ("twenty five", "one hundred and five", "two thousand three hundred").
pub fn parse_number_words(words: &[&str]) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    let mut total: u64 = 0; // completed thousands
    let mut current: u64 = 0; // below one thousand
    let mut last: Option<&str> = None; // what the previous word was: "unit", "tens", "hundred", "thousand", "and"
    for (i, &w) in words.iter().enumerate().take(10) {
        let kind;
        if let Some(u) = unit(w) {
            // "a" only counts as one before "hundred"/"thousand" ("a hundred").
            if w == "a" && !matches!(words.get(i + 1), Some(&"hundred") | Some(&"thousand")) {
                break;
            }
            if matches!(last, Some("unit")) {
                break;
            }
            if matches!(last, Some("tens")) && u >= 10 {
                break;
            }
            current += u;
            kind = "unit";
        } else if let Some(t) = tens(w) {
            if matches!(last, Some("unit") | Some("tens")) {
                break;
            }
            current += t;
            kind = "tens";
        } else if w == "hundred" {
            if !matches!(last, Some("unit")) || current == 0 || current >= 10 && current % 100 >= 10
            {
                break;
            }
            current *= 100;
            kind = "hundred";
        } else if w == "thousand" {
            if current == 0 || total > 0 || last == Some("and") {
                break;
            }
            total = current * 1000;
            current = 0;
            kind = "thousand";
        } else if w == "and" && matches!(last, Some("hundred") | Some("thousand")) {
            last = Some("and");
            continue;
        } else {
            break;
        }
        last = Some(kind);
        out.push((total + current, i + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        let n = normalize("  Turn ON the Kitchen-Light, please!  ");
        assert_eq!(n.text, "turn on the kitchen light please");
        assert_eq!(n.cased, "Turn ON the Kitchen Light please");
        assert_eq!(normalize("set it to 21.5.").text, "set it to 21.5");
        assert_eq!(normalize("what’s up?").text, "what's up");
    }

    fn best(s: &str) -> Option<(u64, usize)> {
        let words: Vec<&str> = s.split(' ').collect();
        parse_number_words(&words).last().copied()
    }

    #[test]
    fn number_words() {
        assert_eq!(best("five"), Some((5, 1)));
        assert_eq!(best("fifty"), Some((50, 1)));
        assert_eq!(best("twenty five minutes"), Some((25, 2)));
        assert_eq!(best("one hundred"), Some((100, 2)));
        assert_eq!(best("a hundred"), Some((100, 2)));
        assert_eq!(best("one hundred and five"), Some((105, 4)));
        assert_eq!(best("two thousand three hundred"), Some((2300, 4)));
        assert_eq!(best("a light"), None);
        assert_eq!(best("five five"), Some((5, 1)));
        assert_eq!(best("twenty twelve"), Some((20, 1)));
        assert_eq!(best("kitchen"), None);
    }
}
