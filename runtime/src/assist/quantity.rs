//! Numbers said in an utterance, with their units: "30 percent", "twenty two degrees",
//! "half an hour", "halfway", "ten minutes".
//!
//! The LLM stage reads these deterministically instead of asking the model: a 135M
//! model copies a number badly and confuses which intent takes it, while the words
//! around a number say exactly which kind it is. Rules (all of them):
//! - digits ("30", "30%", "21°") or English number words ("twenty five");
//! - a unit word right after it: percent / per cent / % → [`Unit::Percent`],
//!   degree(s) / ° → [`Unit::Degrees`], hour(s), minute(s) / min(s), second(s) / sec(s);
//! - "a"/"an" before a time unit is one ("an hour"), "and a half" after a time adds half
//!   of it in the next smaller unit ("an hour and a half" = 1 h + 30 min);
//! - "half an hour" = 30 minutes, "half a minute" = 30 seconds, otherwise "half" and
//!   "halfway" are 50 percent;
//! - "one" and "oh" without a unit are not numbers ("this one", "oh forget it");
//!   decimals ("21.5") are dropped: the LLM stage's number slots take whole numbers.

use crate::intent::normalize::{normalize, parse_number_words};

/// What a number is said in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Percent,
    Degrees,
    Hours,
    Minutes,
    Seconds,
}

/// A whole number said in the utterance, and its unit when one follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub value: u32,
    pub unit: Option<Unit>,
}

/// Every number in `text`, in order.
pub fn quantities(text: &str) -> Vec<Quantity> {
    let norm = normalize(text);
    let words: Vec<&str> = norm.text.split(' ').filter(|w| !w.is_empty()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let Some((value, mut used, sign)) = number_at(&words[i..]) else {
            i += 1;
            continue;
        };
        let mut unit = sign;
        if unit.is_none() {
            if let Some((u, n)) = unit_at(&words[i + used..]) {
                unit = Some(u);
                used += n;
            }
        }
        let next = words.get(i + used).copied();
        let lone_word = unit.is_none() && used == 1 && matches!(words[i], "one" | "oh");
        if let (Some(value), false) = (value, lone_word) {
            out.push(Quantity { value, unit });
            // "… and a half": half of a time unit, in the next smaller one.
            if next == Some("and")
                && words.get(i + used + 1..i + used + 3) == Some(&["a", "half"][..])
            {
                let smaller = match unit {
                    Some(Unit::Hours) => Some(Unit::Minutes),
                    Some(Unit::Minutes) => Some(Unit::Seconds),
                    _ => None,
                };
                if let Some(u) = smaller {
                    out.push(Quantity {
                        value: 30,
                        unit: Some(u),
                    });
                    used += 3;
                }
            }
        }
        i += used;
    }
    out
}

/// The number starting `words`: its value (None for a decimal), the words it uses,
/// and a unit written into the word itself ("30%", "21°").
fn number_at(words: &[&str]) -> Option<(Option<u32>, usize, Option<Unit>)> {
    let w = words[0];
    // "half an hour", "half a minute"; else "half"/"halfway" is 50 percent.
    if w == "half" || w == "halfway" {
        if w == "half" && matches!(words.get(1), Some(&"a") | Some(&"an")) {
            match words.get(2).and_then(|u| time_unit(u)) {
                Some(Unit::Hours) => return Some((Some(30), 3, Some(Unit::Minutes))),
                Some(Unit::Minutes) => return Some((Some(30), 3, Some(Unit::Seconds))),
                _ => {}
            }
        }
        return Some((Some(50), 1, Some(Unit::Percent)));
    }
    // "a minute", "an hour".
    if matches!(w, "a" | "an") {
        if let Some(u) = words.get(1).and_then(|u| time_unit(u)) {
            return Some((Some(1), 2, Some(u)));
        }
    }
    let (digits, sign) = if let Some(d) = w.strip_suffix('%') {
        (d, Some(Unit::Percent))
    } else if let Some(d) = w
        .strip_suffix("°c")
        .or_else(|| w.strip_suffix("°f"))
        .or_else(|| w.strip_suffix('°'))
    {
        (d, Some(Unit::Degrees))
    } else {
        (w, None)
    };
    if digits.starts_with(|c: char| c.is_ascii_digit()) {
        if let Ok(v) = digits.parse::<u32>() {
            return Some((Some(v), 1, sign));
        }
        if digits.parse::<f64>().is_ok() {
            return Some((None, 1, sign));
        }
        return None;
    }
    let &(v, used) = parse_number_words(words).last()?;
    Some((u32::try_from(v).ok(), used, None))
}

/// A unit word (or two: "per cent") at the start of `words`.
fn unit_at(words: &[&str]) -> Option<(Unit, usize)> {
    let w = *words.first()?;
    match w {
        "percent" | "%" | "pct" => Some((Unit::Percent, 1)),
        "per" if words.get(1) == Some(&"cent") => Some((Unit::Percent, 2)),
        "degrees" | "degree" | "°" => Some((Unit::Degrees, 1)),
        _ => time_unit(w).map(|u| (u, 1)),
    }
}

fn time_unit(w: &str) -> Option<Unit> {
    match w {
        "hours" | "hour" | "hrs" | "hr" => Some(Unit::Hours),
        "minutes" | "minute" | "mins" | "min" => Some(Unit::Minutes),
        "seconds" | "second" | "secs" | "sec" => Some(Unit::Seconds),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(value: u32, unit: Option<Unit>) -> Quantity {
        Quantity { value, unit }
    }

    #[test]
    fn digits_and_words_with_units() {
        use Unit::*;
        assert_eq!(quantities("dim it to 30%"), [q(30, Some(Percent))]);
        assert_eq!(
            quantities("the lamp at fifty per cent"),
            [q(50, Some(Percent))]
        );
        assert_eq!(
            quantities("twenty two degrees please"),
            [q(22, Some(Degrees))]
        );
        assert_eq!(quantities("make it 21°"), [q(21, Some(Degrees))]);
        assert_eq!(
            quantities("twenty five minutes and 10 seconds"),
            [q(25, Some(Minutes)), q(10, Some(Seconds))]
        );
        assert_eq!(quantities("volume 60"), [q(60, None)]);
    }

    #[test]
    fn halves_and_articles() {
        use Unit::*;
        assert_eq!(quantities("in half an hour"), [q(30, Some(Minutes))]);
        assert_eq!(quantities("half a minute"), [q(30, Some(Seconds))]);
        assert_eq!(
            quantities("open the blinds halfway"),
            [q(50, Some(Percent))]
        );
        assert_eq!(quantities("down to half"), [q(50, Some(Percent))]);
        assert_eq!(quantities("in an hour"), [q(1, Some(Hours))]);
        assert_eq!(
            quantities("an hour and a half"),
            [q(1, Some(Hours)), q(30, Some(Minutes))]
        );
        assert_eq!(
            quantities("two minutes and a half"),
            [q(2, Some(Minutes)), q(30, Some(Seconds))]
        );
    }

    #[test]
    fn not_numbers() {
        assert!(quantities("turn on the lamp").is_empty());
        assert!(quantities("play the song before this one").is_empty());
        assert!(quantities("oh forget about it").is_empty());
        assert!(quantities("a lamp").is_empty());
        assert_eq!(
            quantities("a hundred percent"),
            [q(100, Some(Unit::Percent))]
        );
        // A decimal is a number, but not a whole one.
        assert!(quantities("set it to 21.5 degrees").is_empty());
        assert_eq!(quantities("one minute"), [q(1, Some(Unit::Minutes))]);
    }
}
