//! Response text: Home Assistant's response templates (Jinja, in the intents data's
//! `responses`) rendered with the match's slots.
//!
//! HA renders them with Python's Jinja2 and a live state machine. Hearth has no state
//! store, so `state` describes the targeted entity from the home file (its domain,
//! name, entity id) with the state `unknown`; the time and date intents get the clock.
//! Templates go through MiniJinja with Python-method compatibility (`dict.get`,
//! `str.replace`, `str.format`), after one syntax fix: Jinja2 accepts a colon before
//! `%}` (`{% if x: %}`, used throughout HA's data) and MiniJinja does not.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Value};

use crate::intent::{Home, IntentMatch};

/// Instructions one template may spend: HA's templates take a few hundred; this
/// bounds a hostile user template.
const FUEL: u64 = 50_000;

/// Renders response templates for matches.
pub struct Responses {
    env: Environment<'static>,
    /// `intents.<Intent>.<key>` → template source (syntax-fixed).
    intents: BTreeMap<String, BTreeMap<String, String>>,
    /// `errors.no_intent`, shown when nothing matched.
    no_intent: String,
}

impl Responses {
    /// From the data's `responses` value (`IntentEngine::responses`).
    pub fn new(responses: &Value) -> Self {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_fuel(Some(FUEL));
        let mut intents = BTreeMap::new();
        if let Some(map) = responses.get("intents").and_then(Value::as_object) {
            for (intent, keys) in map {
                let Some(keys) = keys.as_object() else {
                    continue;
                };
                let keys = keys
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), jinja2_colons(v.as_str()?))))
                    .collect();
                intents.insert(intent.clone(), keys);
            }
        }
        let no_intent = responses
            .pointer("/errors/no_intent")
            .and_then(Value::as_str)
            .unwrap_or("Sorry, I couldn't understand that")
            .to_string();
        Responses {
            env,
            intents,
            no_intent,
        }
    }

    /// What to say when nothing matched.
    pub fn no_intent(&self) -> &str {
        &self.no_intent
    }

    /// The response for `m`: its block's response key (or `default`) of its intent,
    /// rendered. `None` when the data has no template for it or the template fails
    /// (logged); `Some("")` for intents that answer with silence (`HassNevermind`).
    pub fn render(&self, m: &IntentMatch, home: &Home) -> Option<String> {
        let intent = m.intent.as_deref()?;
        let keys = self.intents.get(intent)?;
        let key = m.response.as_deref().unwrap_or("default");
        let src = keys.get(key).or_else(|| keys.get("default"))?;
        let ctx = context(m, home);
        match self.env.render_str(src, &ctx) {
            Ok(text) => Some(tidy(&text)),
            Err(e) => {
                tracing::warn!("response template {intent}/{key}: {e}");
                None
            }
        }
    }
}

/// The template context: `slots`, `state` (the named entity, as far as the home file
/// knows it) and an empty `query`.
fn context(m: &IntentMatch, home: &Home) -> Value {
    let mut slots: serde_json::Map<String, Value> = m
        .slots
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let now = utc_now();
    slots.insert(
        "time".into(),
        json!({"hour": now.hour, "minute": now.minute, "second": now.second}),
    );
    slots.insert(
        "date".into(),
        json!({"year": now.year, "month": now.month, "day": now.day}),
    );
    let name = m.slots.get("name").and_then(Value::as_str);
    let entity = name.and_then(|n| home.entities.iter().find(|e| e.name == n));
    let domain = entity.map(|e| e.domain.clone()).or_else(|| {
        m.slots
            .get("domain")
            .and_then(Value::as_str)
            .map(String::from)
    });
    let state = json!({
        "domain": domain,
        "name": name,
        "entity_id": entity.map(entity_id),
        "state": "unknown",
        "state_with_unit": "unknown",
        "attributes": {},
    });
    json!({"slots": slots, "state": state, "query": {"matched": [], "unmatched": []}})
}

/// Home Assistant's entity id for a home-file entity: `domain.object_id`, the object
/// id being the name in lower case with runs of other characters as one `_`.
pub fn entity_id(e: &crate::intent::home::Entity) -> String {
    let mut id = String::new();
    for c in e.name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            id.push(c);
        } else if !id.is_empty() && !id.ends_with('_') {
            id.push('_');
        }
    }
    while id.ends_with('_') {
        id.pop();
    }
    format!("{}.{id}", e.domain)
}

/// `{% if x: %}` → `{% if x %}`: Jinja2's parser skips a colon before the end of a
/// block tag; MiniJinja's does not.
fn jinja2_colons(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("%}") {
        let head = rest[..i].trim_end();
        match head.strip_suffix(':') {
            Some(h) => {
                out.push_str(h);
                out.push(' ');
            }
            None => out.push_str(&rest[..i]),
        }
        out.push_str("%}");
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}

/// Collapses the whitespace the templates' tags leave behind.
fn tidy(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A UTC clock reading (Hearth keeps no time-zone database; the time intents say UTC
/// unless `TZ`-aware local time is added later).
struct Clock {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

fn utc_now() -> Clock {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Clock {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colons_before_block_ends_are_dropped() {
        assert_eq!(
            jinja2_colons("{% if a == 1: %}x{% else: %}y{% endif %}"),
            "{% if a == 1 %}x{% else %}y{% endif %}"
        );
        assert_eq!(
            jinja2_colons("{% set d = {1: 'a'} %}"),
            "{% set d = {1: 'a'} %}"
        );
    }

    #[test]
    fn entity_ids_follow_home_assistant() {
        let e = crate::intent::home::Entity {
            name: "Overhead Light (2)".into(),
            domain: "light".into(),
            device_class: None,
            area: None,
            aliases: vec![],
            exposed: true,
        };
        assert_eq!(entity_id(&e), "light.overhead_light_2");
    }
}
