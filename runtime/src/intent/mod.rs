//! The intent engine: Home Assistant sentence templates (`home-assistant-intents`
//! data plus user YAML in the same shape) matched against utterances, with a home
//! file filling the `{name}`, `{area}` and `{floor}` lists.
//!
//! Recognition is a cascade of stages, each tried only if the previous one found
//! nothing: exact template matching ([`Stage::Template`], what hassil does), then a
//! fuzzy pass for speech-to-text slips ([`Stage::Fuzzy`]). Later stages (an LLM
//! fallback) can be added as new [`Stage`] variants without changing the result type.

pub mod classifier;
pub mod data;
pub mod fuzzy;
pub mod home;
mod matcher;
pub mod normalize;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub use data::{IntentsFile, Source};
pub use home::Home;
use matcher::{Hit, Matcher};
use normalize::{normalize, Normalized};

use crate::Result;

/// Longest utterance considered (bytes). Longer input is no match, in bounded time:
/// no spoken command is this long, and it keeps hostile input cheap.
pub const MAX_UTTERANCE_BYTES: usize = 1024;

/// Which stage of the cascade produced a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A template matched exactly (after normalization and skip words).
    Template,
    /// Matched after dropping filler words and/or with near-miss home names.
    Fuzzy,
    /// Picked by the LLM under constrained decoding (`assist::llm`), after the
    /// template and fuzzy stages found nothing.
    Llm,
}

impl Stage {
    /// The name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Template => "template",
            Stage::Fuzzy => "fuzzy",
            Stage::Llm => "llm",
        }
    }
}

/// The result of recognizing one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentMatch {
    /// The input, as given.
    pub text: String,
    /// The intent (`HassTurnOn`…), `None` when nothing matched.
    pub intent: Option<String>,
    /// Slot values: home names as written, list outputs as the data defines, range
    /// values as numbers, wildcards as spoken; plus the block's fixed slots.
    pub slots: BTreeMap<String, Value>,
    /// The stage that matched, `None` for no match.
    pub stage: Option<Stage>,
    /// Confidence in 0..=1: 1 for a template match, less for fuzzy ones, 0 for none.
    pub score: f32,
    /// The response key of the matched block, for the response stage.
    pub response: Option<String>,
}

impl IntentMatch {
    /// No match for `text`.
    pub fn none(text: &str) -> Self {
        IntentMatch {
            text: text.to_string(),
            intent: None,
            slots: BTreeMap::new(),
            stage: None,
            score: 0.0,
            response: None,
        }
    }

    /// `{"text", "intent", "slots", "stage", "score"}` (the CLI's line format).
    pub fn to_json(&self) -> Value {
        json!({
            "text": self.text,
            "intent": self.intent,
            "slots": self.slots,
            "stage": self.stage.map(Stage::as_str),
            "score": (f64::from(self.score) * 1000.0).round() / 1000.0,
        })
    }
}

/// Compiled templates for one language and one home.
pub struct IntentEngine {
    matcher: Matcher,
    warnings: Vec<String>,
    /// The data's `responses` (`errors`, `intents.<Intent>.<key>`), for the response stage.
    responses: Value,
    /// Every intent with sentences, sorted.
    intents: Vec<String>,
}

/// Where `scripts/fetch-models` puts `<lang>.json`: `$HEARTH_HOME/intents/<lang>.json`.
pub fn default_data_path(lang: &str) -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let mut p = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            p.push(".cache/hearth");
            p
        });
    home.join("intents").join(format!("{lang}.json"))
}

impl IntentEngine {
    /// Compiles `data` (already merged with any user files) for `home`.
    pub fn new(data: &IntentsFile, src: &Source, home: &Home) -> Result<Self> {
        data.validate(src)?;
        let mut warnings = home.validate().map_err(crate::Error::Invalid)?;
        let matcher = Matcher::compile(data, src, home)?;
        warnings.extend(matcher.warnings.iter().cloned());
        Ok(IntentEngine {
            matcher,
            warnings,
            responses: data.responses.clone(),
            intents: data.intents.keys().cloned().collect(),
        })
    }

    /// Loads the language data, user YAML files (merged on top) and the home file.
    pub fn load(data: &Path, custom: &[PathBuf], home: &Path) -> Result<Self> {
        if !data.exists() {
            return Err(crate::Error::Invalid(format!(
                "{} not found: run scripts/fetch-models (it extracts home-assistant-intents' data)",
                data.display()
            )));
        }
        let (mut file, src) = IntentsFile::load(data)?;
        file.validate(&src)?;
        for path in custom {
            let (user, usrc) = IntentsFile::load(path)?;
            user.validate(&usrc)?;
            file.merge_user(user, &usrc)?;
        }
        let (home, mut warnings) = Home::load(home)?;
        let matcher = Matcher::compile(&file, &src, &home)?;
        warnings.extend(matcher.warnings.iter().cloned());
        Ok(IntentEngine {
            matcher,
            warnings,
            responses: std::mem::take(&mut file.responses),
            intents: file.intents.keys().cloned().collect(),
        })
    }

    /// The data's response templates (`{"errors": {…}, "intents": {"HassTurnOn": {"default": …}}}`).
    pub fn responses(&self) -> &Value {
        &self.responses
    }

    /// The names of the intents the data defines sentences for, sorted.
    pub fn intent_names(&self) -> &[String] {
        &self.intents
    }

    /// Non-fatal findings (duplicate entity names, lists HA would fill at run time).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Recognizes one utterance.
    pub fn recognize(&self, text: &str) -> IntentMatch {
        if text.len() > MAX_UTTERANCE_BYTES {
            return IntentMatch::none(text);
        }
        let input = normalize(text);
        if input.text.is_empty() {
            return IntentMatch::none(text);
        }
        // hassil tries the text with skip words first, then without them.
        let mut variants = vec![input.clone()];
        let skipped = remove_phrases(&input, &self.matcher.skip_words);
        if skipped.text != input.text && !skipped.text.is_empty() {
            variants.push(skipped);
        }
        if let Some(hit) = self.best_of(&variants, false) {
            return finish(text, hit, Stage::Template, 1.0);
        }
        // Fuzzy: filler words skipped where they get in the way, and home names
        // that are near misses.
        let mut best: Option<(f32, Hit)> = None;
        for v in &variants {
            if let Some(hit) = self.matcher.best(v, true) {
                let name_score = if hit.fuzzy_len == 0 {
                    1.0
                } else {
                    1.0 - hit.edits as f32 / hit.fuzzy_len as f32
                };
                // Each skipped filler costs a little: the parse needed more help.
                let score = name_score * 0.95 * (1.0 - 0.03 * hit.fillers as f32).max(0.7);
                if best.as_ref().is_none_or(|(s, _)| score > *s) {
                    best = Some((score, hit));
                }
            }
        }
        match best {
            Some((score, hit)) if score >= fuzzy::MIN_SCORE => {
                finish(text, hit, Stage::Fuzzy, score)
            }
            _ => IntentMatch::none(text),
        }
    }

    fn best_of(&self, variants: &[Normalized], fuzzy: bool) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        for v in variants {
            if let Some(hit) = self.matcher.best(v, fuzzy) {
                if best
                    .as_ref()
                    .is_none_or(|b| (&hit.key, &*hit.intent) < (&b.key, &*b.intent))
                {
                    best = Some(hit);
                }
            }
        }
        best
    }
}

fn finish(text: &str, hit: Hit, stage: Stage, score: f32) -> IntentMatch {
    IntentMatch {
        text: text.to_string(),
        intent: Some(hit.intent.to_string()),
        slots: hit.slots,
        stage: Some(stage),
        score,
        response: hit.response,
    }
}

/// Removes whole-word occurrences of `phrases` (each a word list), keeping `text` and
/// `cased` aligned.
fn remove_phrases(input: &Normalized, phrases: &[Vec<String>]) -> Normalized {
    let words: Vec<&str> = input.text.split(' ').collect();
    let cased: Vec<&str> = input.cased.split(' ').collect();
    let (mut text, mut out_cased) = (Vec::new(), Vec::new());
    let mut i = 0;
    'outer: while i < words.len() {
        for p in phrases {
            if words.len() - i >= p.len()
                && words[i..i + p.len()].iter().zip(p).all(|(a, b)| *a == b)
            {
                i += p.len();
                continue 'outer;
            }
        }
        text.push(words[i]);
        out_cased.push(cased.get(i).copied().unwrap_or(words[i]));
        i += 1;
    }
    Normalized {
        text: text.join(" "),
        cased: out_cased.join(" "),
    }
}
