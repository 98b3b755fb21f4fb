//! Parser for Home Assistant's sentence-template syntax (the `hassil` dialect).
//!
//! Supported constructs: `(a|b)` alternatives, `[optional]`, `<rule>` expansion rules,
//! `{list}` / `{list:slot}` slot references, `(a; b)` permutations and `\x` escapes.
//! Literal text is case-folded and whitespace-collapsed here, once, so the matcher
//! compares against already-normalized text.

use std::fmt;

/// A parsed template expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Literal text, lowercased; runs of whitespace are a single `' '`.
    Text(String),
    /// Items matched one after another (no implicit whitespace: `fan[s]` is `fan` + `[s]`).
    Seq(Vec<Expr>),
    /// Any one of the alternatives. `[x]` is `Alt([x, Seq([])])`.
    Alt(Vec<Expr>),
    /// An expansion rule, `<name>`.
    Rule(String),
    /// A slot list reference, `{list}` or `{list:slot}`.
    List {
        /// The list's name.
        list: String,
        /// The slot the value is stored under (the list's name unless renamed).
        slot: String,
    },
}

impl Expr {
    /// The empty expression (what an omitted optional matches).
    pub fn empty() -> Expr {
        Expr::Seq(Vec::new())
    }
}

/// A template syntax error, positioned within the template text (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based line within the template.
    pub line: usize,
    /// 1-based column (in characters) within that line.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// Parses one template. Errors carry line/column within `text`.
pub fn parse(text: &str) -> Result<Expr, TemplateError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
    };
    let expr = p.parse_group_body(None)?;
    if p.pos < p.chars.len() {
        return Err(p.error_at(p.pos, format!("unexpected '{}'", p.chars[p.pos])));
    }
    Ok(expr)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn error_at(&self, pos: usize, message: String) -> TemplateError {
        let (mut line, mut column) = (1, 1);
        for &c in &self.chars[..pos.min(self.chars.len())] {
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        TemplateError {
            line,
            column,
            message,
        }
    }

    /// Parses alternatives (`|`) and permutation items (`;`) up to `close` (or the end
    /// when `close` is `None`). Does not consume the closing character.
    fn parse_group_body(&mut self, close: Option<(char, usize)>) -> Result<Expr, TemplateError> {
        // perm_items: completed `;`-separated items, each an alternative set.
        let mut perm_items: Vec<Expr> = Vec::new();
        let mut alts: Vec<Expr> = Vec::new();
        let mut seq: Vec<Expr> = Vec::new();
        let mut text = String::new();
        loop {
            let Some(&c) = self.chars.get(self.pos) else {
                if let Some((open, at)) = close {
                    return Err(self.error_at(at, format!("unclosed '{open}'")));
                }
                break;
            };
            match c {
                ')' | ']' | '}' | '>' => {
                    if close.map(|(open, _)| closing(open)) == Some(c) {
                        break;
                    }
                    return Err(self.error_at(self.pos, format!("unexpected '{c}'")));
                }
                '|' => {
                    flush_text(&mut text, &mut seq);
                    alts.push(Expr::Seq(std::mem::take(&mut seq)));
                    self.pos += 1;
                }
                ';' => {
                    if close.is_none_or(|(open, _)| open != '(') {
                        return Err(self.error_at(
                            self.pos,
                            "';' (permutation) is only allowed inside '( )'".into(),
                        ));
                    }
                    flush_text(&mut text, &mut seq);
                    alts.push(Expr::Seq(std::mem::take(&mut seq)));
                    perm_items.push(simplify_alt(std::mem::take(&mut alts)));
                    self.pos += 1;
                }
                '(' | '[' => {
                    flush_text(&mut text, &mut seq);
                    let at = self.pos;
                    self.pos += 1;
                    let inner = self.parse_group_body(Some((c, at)))?;
                    self.pos += 1; // the closing bracket
                    seq.push(if c == '[' {
                        Expr::Alt(vec![inner, Expr::empty()])
                    } else {
                        inner
                    });
                }
                '<' | '{' => {
                    flush_text(&mut text, &mut seq);
                    seq.push(self.parse_reference(c)?);
                }
                '\\' => {
                    let Some(&next) = self.chars.get(self.pos + 1) else {
                        return Err(self.error_at(self.pos, "dangling escape '\\'".into()));
                    };
                    push_text_char(&mut text, next);
                    self.pos += 2;
                }
                _ => {
                    push_text_char(&mut text, c);
                    self.pos += 1;
                }
            }
        }
        flush_text(&mut text, &mut seq);
        alts.push(Expr::Seq(seq));
        if perm_items.is_empty() {
            return Ok(simplify_alt(alts));
        }
        perm_items.push(simplify_alt(alts));
        Ok(permutations(&perm_items))
    }

    /// `<rule>` or `{list[:slot]}` starting at the current position.
    fn parse_reference(&mut self, open: char) -> Result<Expr, TemplateError> {
        let start = self.pos;
        let close = closing(open);
        self.pos += 1;
        let mut name = String::new();
        loop {
            match self.chars.get(self.pos) {
                None => return Err(self.error_at(start, format!("unclosed '{open}'"))),
                Some(&c) if c == close => break,
                Some(&c) if "()[]{}<>|;\\".contains(c) => {
                    return Err(
                        self.error_at(self.pos, format!("unexpected '{c}' in '{open}…{close}'"))
                    )
                }
                Some(&c) => name.push(c),
            }
            self.pos += 1;
        }
        self.pos += 1;
        let name = name.trim();
        if open == '<' {
            if name.is_empty() {
                return Err(self.error_at(start, "empty rule name '<>'".into()));
            }
            return Ok(Expr::Rule(name.to_string()));
        }
        let (list, slot) = match name.split_once(':') {
            Some((l, s)) => (l.trim(), s.trim()),
            None => (name, name),
        };
        if list.is_empty() || slot.is_empty() {
            return Err(self.error_at(start, format!("empty list or slot name in '{{{name}}}'")));
        }
        Ok(Expr::List {
            list: list.to_string(),
            slot: slot.to_string(),
        })
    }
}

fn closing(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        _ => '>',
    }
}

fn push_text_char(text: &mut String, c: char) {
    if c.is_whitespace() {
        if !text.ends_with(' ') {
            text.push(' ');
        }
    } else {
        text.extend(c.to_lowercase());
    }
}

fn flush_text(text: &mut String, seq: &mut Vec<Expr>) {
    if !text.is_empty() {
        seq.push(Expr::Text(std::mem::take(text)));
    }
}

fn simplify_alt(mut alts: Vec<Expr>) -> Expr {
    for a in &mut alts {
        if let Expr::Seq(items) = a {
            if items.len() == 1 {
                *a = items.pop().expect("one item");
            }
        }
    }
    if alts.len() == 1 {
        alts.pop().expect("one alternative")
    } else {
        Expr::Alt(alts)
    }
}

/// `(a; b; c)`: every order of the items, separated by whitespace (as hassil does).
fn permutations(items: &[Expr]) -> Expr {
    let mut out = Vec::new();
    let mut idx: Vec<usize> = (0..items.len()).collect();
    permute(&mut idx, 0, &mut |order| {
        let mut seq = Vec::with_capacity(order.len() * 2);
        for (i, &k) in order.iter().enumerate() {
            if i > 0 {
                seq.push(Expr::Text(" ".into()));
            }
            seq.push(items[k].clone());
        }
        out.push(Expr::Seq(seq));
    });
    Expr::Alt(out)
}

fn permute(idx: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
    if k == idx.len() {
        f(idx);
        return;
    }
    for i in k..idx.len() {
        idx.swap(k, i);
        permute(idx, k + 1, f);
        idx.swap(k, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Expr {
        Expr::Text(s.into())
    }

    #[test]
    fn plain_text_is_lowercased_and_collapsed() {
        assert_eq!(parse("Turn  On\tThe").unwrap(), t("turn on the"));
    }

    #[test]
    fn alternatives_and_optional() {
        assert_eq!(
            parse("(a|b)[c]").unwrap(),
            Expr::Seq(vec![
                Expr::Alt(vec![t("a"), t("b")]),
                Expr::Alt(vec![t("c"), Expr::empty()])
            ])
        );
        // Top-level alternatives are allowed too.
        assert_eq!(parse("x|y").unwrap(), Expr::Alt(vec![t("x"), t("y")]));
    }

    #[test]
    fn rules_and_lists() {
        assert_eq!(
            parse("<turn> {name} {brightness:level}").unwrap(),
            Expr::Seq(vec![
                Expr::Rule("turn".into()),
                t(" "),
                Expr::List {
                    list: "name".into(),
                    slot: "name".into()
                },
                t(" "),
                Expr::List {
                    list: "brightness".into(),
                    slot: "level".into()
                },
            ])
        );
    }

    #[test]
    fn permutation_expands_every_order() {
        let Expr::Alt(alts) = parse("(a;b;c)").unwrap() else {
            panic!("expected alternatives")
        };
        assert_eq!(alts.len(), 6);
        assert_eq!(
            alts[0],
            Expr::Seq(vec![t("a"), t(" "), t("b"), t(" "), t("c")])
        );
    }

    #[test]
    fn escapes_are_literal() {
        assert_eq!(parse(r"a\(b\)\|").unwrap(), t("a(b)|"));
    }

    fn err(s: &str) -> TemplateError {
        parse(s).expect_err(s)
    }

    #[test]
    fn syntax_errors_have_positions() {
        assert_eq!((err("turn (on").line, err("turn (on").column), (1, 6));
        assert!(err("turn (on").message.contains("unclosed '('"));
        assert_eq!(err("turn on]").column, 8);
        assert!(err("a [b").message.contains("unclosed '['"));
        assert!(err("a {name").message.contains("unclosed '{'"));
        assert!(err("a <rule").message.contains("unclosed '<'"));
        assert!(err("a <>").message.contains("empty rule"));
        assert!(err("a {:x}").message.contains("empty list"));
        assert!(err("a {x:}").message.contains("empty list"));
        assert!(err("a {x(y}").message.contains("unexpected '('"));
        assert!(err("a;b").message.contains("permutation"));
        assert!(err("[a;b]").message.contains("permutation"));
        assert!(err("a\\").message.contains("dangling escape"));
        let e = err("line one\nline (two");
        assert_eq!((e.line, e.column), (2, 6));
        assert_eq!(e.to_string(), "2:6: unclosed '('");
    }
}
