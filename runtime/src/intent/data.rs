//! Intent data in Home Assistant's shape: `home-assistant-intents`' `<lang>.json`, or a
//! user YAML file with the same keys (`intents`, `lists`, `expansion_rules`,
//! `skip_words`, `responses`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::template::{self, Expr};
use crate::{Error, Result};

/// One intents file, as deserialized.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IntentsFile {
    /// Language code (`en`).
    #[serde(default)]
    pub language: Option<String>,
    /// Intent name → its sentence blocks.
    #[serde(default)]
    pub intents: BTreeMap<String, IntentEntry>,
    /// Slot lists by name.
    #[serde(default)]
    pub lists: BTreeMap<String, ListDef>,
    /// `<rule>` bodies by name.
    #[serde(default)]
    pub expansion_rules: BTreeMap<String, String>,
    /// Phrases ignored in the input ("please", "can you").
    #[serde(default)]
    pub skip_words: Vec<String>,
    /// Response templates (`errors`, `intents.<Intent>.<key>`), kept as data.
    #[serde(default)]
    pub responses: Value,
}

/// One intent's sentence blocks.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IntentEntry {
    /// The blocks; each has its own sentences and constraints.
    #[serde(default)]
    pub data: Vec<IntentBlock>,
}

/// Sentences sharing fixed slots, context constraints and a response.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IntentBlock {
    /// Templates.
    pub sentences: Vec<String>,
    /// Slots added to every match (`domain: light`).
    #[serde(default)]
    pub slots: BTreeMap<String, Value>,
    /// Context the match needs (`domain: [light]`, `area: {slot: true}`).
    #[serde(default)]
    pub requires_context: BTreeMap<String, Value>,
    /// Context the match must not have.
    #[serde(default)]
    pub excludes_context: BTreeMap<String, Value>,
    /// Response key.
    #[serde(default)]
    pub response: Option<String>,
    /// Block-local expansion rules.
    #[serde(default)]
    pub expansion_rules: BTreeMap<String, String>,
    /// Block-local lists.
    #[serde(default)]
    pub lists: BTreeMap<String, ListDef>,
}

/// A slot list definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ListDef {
    /// Enumerated values.
    Values {
        /// The values.
        values: Vec<ListValueDef>,
    },
    /// A numeric range.
    Range {
        /// The range.
        range: RangeDef,
    },
    /// Free text.
    Wildcard {
        /// Always `true`.
        wildcard: bool,
    },
}

/// A value of a list: a plain string, or `in` (a template) with `out` and context.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ListValueDef {
    /// `in` = `out` = the string.
    Plain(String),
    /// Full form.
    Full {
        /// What is said (template syntax allowed).
        #[serde(rename = "in")]
        input: String,
        /// What the slot becomes (defaults to the matched text).
        #[serde(default)]
        out: Option<Value>,
        /// Context merged into the match when this value is used.
        #[serde(default)]
        context: BTreeMap<String, Value>,
    },
}

/// A numeric range list.
#[derive(Debug, Clone, Deserialize)]
pub struct RangeDef {
    /// Lowest value.
    pub from: f64,
    /// Highest value.
    pub to: f64,
    /// Step between values (1 by default).
    #[serde(default = "one")]
    pub step: f64,
    /// The output is the spoken number times this.
    #[serde(default = "one")]
    pub multiplier: f64,
    /// `halves`/`tenths`: fractional values are accepted too.
    #[serde(default)]
    pub fractions: Option<String>,
    /// `percentage`, `temperature`… (informational).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// Where a file came from, for error messages.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path (or a label such as `<memory>`).
    pub name: String,
    /// Raw text, to turn a template's position into a file line/column.
    pub text: String,
}

impl IntentsFile {
    /// Parses `<lang>.json`.
    pub fn from_json(src: &Source) -> Result<Self> {
        serde_json::from_str(&src.text).map_err(|e| Error::Format(format!("{}: {e}", src.name)))
    }

    /// Parses a user YAML file in the same shape.
    pub fn from_yaml(src: &Source) -> Result<Self> {
        serde_norway::from_str(&src.text).map_err(|e| Error::Format(format!("{}: {e}", src.name)))
    }

    /// Reads JSON or YAML by extension.
    pub fn load(path: &Path) -> Result<(Self, Source)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let src = Source {
            name: path.display().to_string(),
            text,
        };
        let file = if path.extension().is_some_and(|e| e == "json") {
            Self::from_json(&src)?
        } else {
            Self::from_yaml(&src)?
        };
        Ok((file, src))
    }

    /// Parses every template (sentences, rules, list values) so syntax errors are
    /// reported before use, as `file:line:col: message`.
    pub fn validate(&self, src: &Source) -> Result<()> {
        for entry in self.intents.values() {
            for block in &entry.data {
                for s in &block.sentences {
                    parse_at(s, src)?;
                }
                for r in block.expansion_rules.values() {
                    parse_at(r, src)?;
                }
            }
        }
        for r in self.expansion_rules.values() {
            parse_at(r, src)?;
        }
        for list in self.lists.values() {
            if let ListDef::Values { values } = list {
                for v in values {
                    if let ListValueDef::Full { input, .. } = v {
                        parse_at(input, src)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds `other` (a user file) on top of `self`: sentences are appended, lists,
    /// rules and skip words added (same-named lists and rules replaced), responses
    /// merged key by key (a user `responses.intents.<Intent>.<key>` or
    /// `responses.errors.<key>` replaces the package's). Intents must
    /// exist in `self` or be one of [`EXTRA_HA_INTENTS`]: an unknown intent name is an
    /// error (most likely a typo, and nothing downstream could handle it).
    pub fn merge_user(&mut self, other: IntentsFile, src: &Source) -> Result<()> {
        for name in other.intents.keys() {
            if !self.intents.contains_key(name) && !EXTRA_HA_INTENTS.contains(&name.as_str()) {
                let known: Vec<&str> = self.intents.keys().map(String::as_str).collect();
                return Err(Error::Invalid(format!(
                    "{}: unknown intent '{name}' (known: {})",
                    src.name,
                    known.join(", ")
                )));
            }
        }
        for (name, entry) in other.intents {
            self.intents
                .entry(name)
                .or_default()
                .data
                .extend(entry.data);
        }
        self.lists.extend(other.lists);
        self.expansion_rules.extend(other.expansion_rules);
        self.skip_words.extend(other.skip_words);
        merge_values(&mut self.responses, other.responses);
        Ok(())
    }
}

/// Merges `other` into `base`: objects key by key, recursively; anything else in
/// `other` (except `null`, an absent section) replaces what `base` had.
fn merge_values(base: &mut Value, other: Value) {
    match (base, other) {
        (_, Value::Null) => {}
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge_values(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// Home Assistant intents that a language's data may have no sentences for (English has
/// none for `HassToggle` in home-assistant-intents 2026.11.25) but user YAML may target.
pub const EXTRA_HA_INTENTS: &[&str] = &["HassToggle", "HassStopMoving"];

/// Parses a template, turning its position into one in the source file.
pub fn parse_at(template: &str, src: &Source) -> Result<Expr> {
    template::parse(template).map_err(|e| {
        let (line, column) = locate(&src.text, template)
            .map(|(l, c)| {
                if e.line == 1 {
                    (l, c + e.column - 1)
                } else {
                    (l + e.line - 1, e.column)
                }
            })
            .unwrap_or((e.line, e.column));
        Error::Format(format!(
            "{}:{line}:{column}: template error: {} in {template:?}",
            src.name, e.message
        ))
    })
}

/// 1-based line/column of the first occurrence of `needle` in `text`.
fn locate(text: &str, needle: &str) -> Option<(usize, usize)> {
    let at = text.find(needle)?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source {
            name: "custom.yaml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn yaml_in_ha_shape() {
        let s = src("language: en\nintents:\n  HassTurnOn:\n    data:\n      - sentences:\n          - \"engage {name}\"\n        slots:\n          domain: light\nlists:\n  speed:\n    range:\n      from: 1\n      to: 3\n  mood:\n    values:\n      - calm\n      - in: \"(happy|glad)\"\n        out: happy\n  anything:\n    wildcard: true\n");
        let f = IntentsFile::from_yaml(&s).unwrap();
        f.validate(&s).unwrap();
        assert_eq!(f.intents["HassTurnOn"].data[0].sentences, ["engage {name}"]);
        assert!(
            matches!(f.lists["speed"], ListDef::Range { ref range } if range.to == 3.0 && range.step == 1.0)
        );
        assert!(matches!(
            f.lists["anything"],
            ListDef::Wildcard { wildcard: true }
        ));
        let ListDef::Values { values } = &f.lists["mood"] else {
            panic!()
        };
        assert!(matches!(&values[0], ListValueDef::Plain(s) if s == "calm"));
    }

    #[test]
    fn template_error_has_file_line_column() {
        let s = src("intents:\n  HassTurnOn:\n    data:\n      - sentences:\n          - \"engage (the {name}\"\n");
        let f = IntentsFile::from_yaml(&s).unwrap();
        let e = f.validate(&s).unwrap_err().to_string();
        // The template starts at column 14 of line 5; '(' is its 8th character.
        assert!(
            e.starts_with("custom.yaml:5:21: template error: unclosed '('"),
            "{e}"
        );
    }

    #[test]
    fn user_responses_override_per_key() {
        let mut base = IntentsFile::default();
        base.intents
            .insert("HassTurnOn".into(), IntentEntry::default());
        base.responses = serde_json::json!({
            "errors": {"no_intent": "Sorry", "no_area": "No area"},
            "intents": {
                "HassTurnOn": {"default": "Turned on", "lights_area": "Lights on"},
                "HassTurnOff": {"default": "Turned off"},
            },
        });
        let s = src("responses:\n  errors:\n    no_intent: \"Pardon?\"\n  intents:\n    HassTurnOn:\n      default: \"On it\"\n    HassNevermind:\n      default: \"OK\"\n");
        let user = IntentsFile::from_yaml(&s).unwrap();
        base.merge_user(user, &s).unwrap();
        assert_eq!(
            base.responses,
            serde_json::json!({
                "errors": {"no_intent": "Pardon?", "no_area": "No area"},
                "intents": {
                    "HassTurnOn": {"default": "On it", "lights_area": "Lights on"},
                    "HassTurnOff": {"default": "Turned off"},
                    "HassNevermind": {"default": "OK"},
                },
            })
        );
    }

    #[test]
    fn unknown_intent_is_an_error() {
        let mut base = IntentsFile::default();
        base.intents
            .insert("HassTurnOn".into(), IntentEntry::default());
        let s = src("intents:\n  HassTurnOnn:\n    data:\n      - sentences: [\"x\"]\n");
        let user = IntentsFile::from_yaml(&s).unwrap();
        let e = base.merge_user(user, &s).unwrap_err().to_string();
        assert!(e.contains("unknown intent 'HassTurnOnn'"), "{e}");
    }
}
