//! Actions: what a recognised intent becomes. Each match is an [`Event`] sent to the
//! sinks the home file's `actions:` list configures (docs/home-file.md):
//!
//! - `stdout`: one JSON line per event (the default when no `actions:` are given);
//! - `webhook`: an HTTP POST of the event's JSON ([`webhook`], plain `http://`);
//! - `mqtt`: an MQTT 3.1.1 publish at QoS 1 ([`mqtt`]), one topic per entity;
//! - `shell`: a program run with the slots in its environment ([`shell`], no shell).
//!
//! A sink that fails does not stop the others; each dispatch reports every sink's outcome.

pub mod mqtt;
pub mod shell;
pub mod webhook;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::intent::{Home, IntentMatch};
use crate::{Error, Result};

/// One recognised intent, as the sinks receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What was said (the transcript or the typed text).
    pub text: String,
    /// The intent.
    pub intent: String,
    /// Slot values, as `hearth intent` prints them.
    pub slots: BTreeMap<String, Value>,
    /// The cascade stage that produced the match.
    pub stage: &'static str,
    /// The targeted entity's Home Assistant id (`light.overhead_light`), when the
    /// `name` slot names one entity of the home.
    pub entity_id: Option<String>,
    /// The entity's domain (from the home, else the match's `domain` slot).
    pub domain: Option<String>,
    /// The response text, if any.
    pub response: Option<String>,
}

impl Event {
    /// The event for a match (`None` when nothing matched).
    pub fn from_match(m: &IntentMatch, home: &Home, response: Option<String>) -> Option<Event> {
        let intent = m.intent.clone()?;
        let name = m.slots.get("name").and_then(Value::as_str);
        let entity = name.and_then(|n| home.entities.iter().find(|e| e.name == n));
        let domain = entity.map(|e| e.domain.clone()).or_else(|| {
            m.slots
                .get("domain")
                .and_then(Value::as_str)
                .map(String::from)
        });
        Some(Event {
            text: m.text.clone(),
            intent,
            slots: m.slots.clone(),
            stage: m.stage.map_or("none", |s| s.as_str()),
            entity_id: entity.map(crate::assist::response::entity_id),
            domain,
            response,
        })
    }

    /// `{"type": "intent", "text", "intent", "slots", "stage", "entity_id", "domain", "response"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "type": "intent",
            "text": self.text,
            "intent": self.intent,
            "slots": self.slots,
            "stage": self.stage,
            "entity_id": self.entity_id,
            "domain": self.domain,
            "response": self.response,
        })
    }

    /// A slot's value as text (strings as they are, numbers and booleans printed).
    pub fn slot_text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

/// One entry of the home file's `actions:` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// JSON lines on standard output.
    Stdout {
        /// Only these intents (all when absent).
        #[serde(default)]
        intents: Option<Vec<String>>,
    },
    /// HTTP POST of the event JSON.
    Webhook {
        /// `http://host[:port]/path`.
        url: String,
        /// Seconds to wait for the server (default 5).
        #[serde(default)]
        timeout_s: Option<f64>,
        /// Only these intents.
        #[serde(default)]
        intents: Option<Vec<String>>,
    },
    /// MQTT publish.
    Mqtt {
        /// Broker host name or address.
        host: String,
        /// Broker port (default 1883).
        #[serde(default)]
        port: Option<u16>,
        /// Topic prefix (default `hearth`).
        #[serde(default)]
        topic_prefix: Option<String>,
        /// MQTT client id (default `hearth`).
        #[serde(default)]
        client_id: Option<String>,
        /// Only these intents.
        #[serde(default)]
        intents: Option<Vec<String>>,
    },
    /// A program run per event: `command: [program, arg…]`, never through a shell.
    Shell {
        /// The program and its arguments; `{slot}` in an argument is replaced by that
        /// slot's value (`{intent}`, `{text}`, `{entity_id}` too), as one argument.
        command: Vec<String>,
        /// Only these intents.
        #[serde(default)]
        intents: Option<Vec<String>>,
    },
}

/// The `actions:` key of a home file (everything else in it is the home).
#[derive(Debug, Default, Deserialize)]
struct ActionsFile {
    #[serde(default)]
    actions: Option<Vec<SinkConfig>>,
}

/// Reads the `actions:` list of a home file. `None` when the file has none.
pub fn load_config(home_file: &Path) -> Result<Option<Vec<SinkConfig>>> {
    let text = std::fs::read_to_string(home_file)
        .map_err(|e| Error::io(format!("reading {}", home_file.display()), e))?;
    parse_config(&text, &home_file.display().to_string())
}

/// [`load_config`] on YAML text.
pub fn parse_config(yaml: &str, origin: &str) -> Result<Option<Vec<SinkConfig>>> {
    let f: ActionsFile = serde_norway::from_str(yaml)
        .map_err(|e| Error::Format(format!("{origin}: actions: {e}")))?;
    Ok(f.actions)
}

/// A configured destination.
enum Sink {
    Stdout,
    Webhook(webhook::Webhook),
    Mqtt(mqtt::MqttSink),
    Shell(shell::ShellSink),
}

/// What happened at one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `stdout`, `webhook`, `mqtt`, `shell`.
    pub sink: &'static str,
    /// `None` when delivered; else why not.
    pub error: Option<String>,
}

/// The configured sinks.
pub struct Actions {
    sinks: Vec<(Sink, Option<Vec<String>>)>,
}

impl Actions {
    /// Sinks from their configuration (no connection is made yet).
    pub fn new(config: &[SinkConfig]) -> Result<Self> {
        let mut sinks = Vec::new();
        for c in config {
            let (sink, only) = match c {
                SinkConfig::Stdout { intents } => (Sink::Stdout, intents),
                SinkConfig::Webhook {
                    url,
                    timeout_s,
                    intents,
                } => (
                    Sink::Webhook(webhook::Webhook::new(url, timeout_s.unwrap_or(5.0))?),
                    intents,
                ),
                SinkConfig::Mqtt {
                    host,
                    port,
                    topic_prefix,
                    client_id,
                    intents,
                } => (
                    Sink::Mqtt(mqtt::MqttSink::new(mqtt::MqttOptions {
                        host: host.clone(),
                        port: port.unwrap_or(1883),
                        topic_prefix: topic_prefix.clone().unwrap_or_else(|| "hearth".into()),
                        client_id: client_id.clone().unwrap_or_else(|| "hearth".into()),
                    })?),
                    intents,
                ),
                SinkConfig::Shell { command, intents } => (
                    Sink::Shell(shell::ShellSink::new(command.clone())?),
                    intents,
                ),
            };
            sinks.push((sink, only.clone()));
        }
        Ok(Actions { sinks })
    }

    /// The default: JSON lines on stdout.
    pub fn stdout() -> Self {
        Actions {
            sinks: vec![(Sink::Stdout, None)],
        }
    }

    /// No sinks at all.
    pub fn none() -> Self {
        Actions { sinks: Vec::new() }
    }

    /// Drops the stdout sinks (for callers that print the event themselves).
    pub fn without_stdout(mut self) -> Self {
        self.sinks.retain(|(s, _)| !matches!(s, Sink::Stdout));
        self
    }

    /// How many sinks are configured.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether no sink is configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Sends `event` to every sink whose intent filter admits it.
    pub fn dispatch(&mut self, event: &Event) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for (sink, only) in &mut self.sinks {
            if only.as_ref().is_some_and(|o| !o.contains(&event.intent)) {
                continue;
            }
            let (name, result) = match sink {
                Sink::Stdout => ("stdout", write_stdout(event)),
                Sink::Webhook(w) => ("webhook", w.post(event)),
                Sink::Mqtt(m) => ("mqtt", m.publish(event)),
                Sink::Shell(s) => ("shell", s.run(event)),
            };
            if let Err(e) = &result {
                tracing::warn!("action {name}: {e}");
            }
            outcomes.push(Outcome {
                sink: name,
                error: result.err().map(|e| e.to_string()),
            });
        }
        outcomes
    }
}

fn write_stdout(event: &Event) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", event.to_json())
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("writing the event to stdout", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_actions_list() {
        let cfg = parse_config(
            "areas: [{name: K}]\nactions:\n  - type: stdout\n  - {type: webhook, url: 'http://127.0.0.1:9/x'}\n  - {type: mqtt, host: localhost, port: 1884, intents: [HassTurnOn]}\n  - {type: shell, command: [echo, '{name}']}\n",
            "h.yaml",
        )
        .unwrap()
        .unwrap();
        assert_eq!(cfg.len(), 4);
        assert!(Actions::new(&cfg).is_ok());
        assert!(parse_config("areas: []", "h").unwrap().is_none());
        let bad = parse_config("actions: [{type: telegraph}]", "h.yaml").unwrap_err();
        assert!(bad.to_string().contains("h.yaml"), "{bad}");
        let cfg = parse_config("actions: [{type: shell, command: []}]", "h").unwrap();
        assert!(Actions::new(&cfg.unwrap()).is_err());
    }
}
