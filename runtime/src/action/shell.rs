//! The shell sink: runs a program per event, with no shell in between. Slots reach it
//! as environment variables (`HEARTH_SLOT_<NAME>`) and, where an argument says
//! `{name}`, as that whole argument's text: a slot value can never become syntax.

use std::process::{Command, Stdio};

use super::Event;
use crate::{Error, Result};

/// A configured program.
#[derive(Debug, Clone)]
pub struct ShellSink {
    command: Vec<String>,
}

impl ShellSink {
    /// `command[0]` is the program, the rest its arguments.
    pub fn new(command: Vec<String>) -> Result<Self> {
        if command.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(Error::Invalid(
                "shell action: `command` needs a program".into(),
            ));
        }
        Ok(ShellSink { command })
    }

    /// Runs the program and waits for it; a non-zero exit is an error. Its stdout goes
    /// to our stderr so it cannot corrupt the JSON lines on stdout.
    pub fn run(&self, event: &Event) -> Result<()> {
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(self.command[1..].iter().map(|a| fill(a, event)));
        cmd.env("HEARTH_INTENT", &event.intent)
            .env("HEARTH_TEXT", &event.text)
            .env("HEARTH_STAGE", event.stage)
            .env("HEARTH_EVENT", event.to_json().to_string())
            .env("HEARTH_ENTITY_ID", event.entity_id.as_deref().unwrap_or(""))
            .env("HEARTH_RESPONSE", event.response.as_deref().unwrap_or(""));
        for (k, v) in &event.slots {
            cmd.env(format!("HEARTH_SLOT_{}", env_name(k)), Event::slot_text(v));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()));
        let status = cmd
            .status()
            .map_err(|e| Error::io(format!("shell action: running {}", self.command[0]), e))?;
        if !status.success() {
            return Err(Error::Invalid(format!(
                "shell action: {} exited with {status}",
                self.command[0]
            )));
        }
        Ok(())
    }
}

/// `{slot}` / `{intent}` / `{text}` / `{entity_id}` in `arg` replaced by their values
/// (unknown names stay as written).
fn fill(arg: &str, event: &Event) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        let key = &rest[open + 1..close];
        let value = match key {
            "intent" => Some(event.intent.clone()),
            "text" => Some(event.text.clone()),
            "entity_id" => Some(event.entity_id.clone().unwrap_or_default()),
            _ => event.slots.get(key).map(Event::slot_text),
        };
        out.push_str(&rest[..open]);
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[open..=close]),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A slot name as an environment variable suffix: upper case, other characters `_`.
fn env_name(slot: &str) -> String {
    slot.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Event {
        Event {
            text: "turn on the lamp".into(),
            intent: "HassTurnOn".into(),
            slots: [
                ("name".to_string(), json!("Lamp; rm -rf /")),
                ("brightness".to_string(), json!(50)),
            ]
            .into(),
            stage: "template",
            entity_id: Some("light.lamp".into()),
            domain: Some("light".into()),
            response: None,
        }
    }

    #[test]
    fn fills_whole_arguments() {
        let e = event();
        assert_eq!(fill("{intent}:{name}", &e), "HassTurnOn:Lamp; rm -rf /");
        assert_eq!(fill("{brightness}%", &e), "50%");
        assert_eq!(fill("{nope} {", &e), "{nope} {");
        assert_eq!(env_name("device-class"), "DEVICE_CLASS");
    }

    #[test]
    fn runs_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let sink = ShellSink::new(vec![
            "/bin/sh".into(),
            "-c".into(),
            r#"printf '%s|%s|%s' "$1" "$HEARTH_SLOT_NAME" "$HEARTH_INTENT" > "$2""#.into(),
            "sh".into(),
            "{name}".into(),
            out.display().to_string(),
        ])
        .unwrap();
        sink.run(&event()).unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        // The `;` stayed data: both copies of the name arrived whole.
        assert_eq!(got, "Lamp; rm -rf /|Lamp; rm -rf /|HassTurnOn");
        let fails = ShellSink::new(vec!["/bin/false".into()]).unwrap();
        assert!(fails.run(&event()).is_err());
        let missing = ShellSink::new(vec!["/nonexistent/program".into()]).unwrap();
        assert!(missing.run(&event()).is_err());
    }
}
