//! `hearth serve` settings: a TOML file (`--config`), overridden by flags. Keys: docs/serve.md.
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// Everything the server needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Hearth model files for `/v1/chat/completions` and `/v1/completions`: one
    /// `PATH` / `NAME=PATH` string or a list of them (the first is the default model).
    #[serde(default, deserialize_with = "one_or_many")]
    pub llm: Vec<String>,
    /// Whether the Wyoming handle path may ask the (default) LLM when no template
    /// matches, as `hearth assist` does.
    #[serde(default = "yes")]
    pub assist_llm: bool,
    /// whisper.cpp ggml model for Wyoming `transcribe` and `/v1/audio/transcriptions`.
    pub whisper: Option<PathBuf>,
    /// Home file for intent recognition (Wyoming `recognize` and `transcript`).
    pub home: Option<PathBuf>,
    /// Intent templates (`<lang>.json`); default `$HEARTH_HOME/intents/<lang>.json`.
    pub intents: Option<PathBuf>,
    /// Language of speech and intents.
    #[serde(default = "default_lang")]
    pub lang: String,
    /// HTTP bind address, e.g. `127.0.0.1:8080`.
    pub http: Option<String>,
    /// Wyoming bind address, e.g. `tcp://127.0.0.1:10300`.
    pub wyoming: Option<String>,
    /// Bearer token the HTTP side requires (required on non-loopback addresses).
    pub api_key: Option<String>,
    /// Engine threads (default: all cores) and Whisper threads (default: up to 4).
    pub threads: Option<usize>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            llm: Vec::new(),
            assist_llm: true,
            whisper: None,
            home: None,
            intents: None,
            lang: default_lang(),
            http: None,
            wyoming: None,
            api_key: None,
            threads: None,
            limits: Limits::default(),
        }
    }
}

fn default_lang() -> String {
    "en".into()
}

fn yes() -> bool {
    true
}

/// `llm = "a.hearth"` or `llm = ["a.hearth", "b=b.hearth"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// One LLM to serve: the name clients select it by, and its file.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// `model` in requests, `id` in `/v1/models`.
    pub name: String,
    /// The Hearth model file.
    pub path: PathBuf,
}

impl ModelSpec {
    /// `NAME=PATH`, or `PATH` (named by the file's stem).
    pub fn parse(spec: &str) -> Result<ModelSpec> {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) if !n.is_empty() && !n.contains(['/', '\\']) => (n.to_string(), p),
            _ => {
                let stem = Path::new(spec)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned());
                (stem.unwrap_or_default(), spec)
            }
        };
        if name.is_empty() || path.is_empty() {
            return Err(Error::Invalid(format!(
                "model {spec:?}: give PATH or NAME=PATH"
            )));
        }
        Ok(ModelSpec {
            name,
            path: PathBuf::from(path),
        })
    }
}

/// Bounds on what one client may ask for.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Generation requests that may wait for the model; more get 429.
    pub queue: usize,
    /// Most tokens one request may generate.
    pub max_tokens: usize,
    /// Context (KV cache) per generation, tokens (default: min(2048, the model's)).
    pub ctx: Option<usize>,
    /// Largest HTTP request body, bytes.
    pub http_body_bytes: usize,
    /// Longest Wyoming header line, bytes.
    pub wyoming_line_bytes: usize,
    /// Largest Wyoming `data` or payload block, bytes.
    pub wyoming_payload_bytes: usize,
    /// Longest utterance sent over Wyoming, seconds.
    pub audio_seconds: u32,
    /// Seconds to wait for the rest of a Wyoming event once its header has arrived.
    pub wyoming_read_timeout_s: u64,
    /// A streamed transcript decodes the audio so far every this many seconds of new
    /// audio, when Whisper is idle (0: only the final decode).
    pub partial_seconds: f32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queue: 8,
            max_tokens: 512,
            ctx: None,
            http_body_bytes: 25 << 20,
            wyoming_line_bytes: 64 << 10,
            wyoming_payload_bytes: 1 << 20,
            audio_seconds: 120,
            wyoming_read_timeout_s: 30,
            partial_seconds: 2.0,
        }
    }
}

impl ServeConfig {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        toml::from_str(&text).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
    }

    /// The LLMs to serve, in order (the first is the default); names are unique.
    pub fn models(&self) -> Result<Vec<ModelSpec>> {
        let specs = self
            .llm
            .iter()
            .map(|s| ModelSpec::parse(s))
            .collect::<Result<Vec<_>>>()?;
        for (i, m) in specs.iter().enumerate() {
            if specs[..i].iter().any(|o| o.name == m.name) {
                return Err(Error::Invalid(format!(
                    "two models are named {:?}: name one NAME=PATH",
                    m.name
                )));
            }
        }
        Ok(specs)
    }

    /// The HTTP address, resolved.
    pub fn http_addr(&self) -> Result<Option<SocketAddr>> {
        self.http.as_deref().map(|a| resolve(a, "http")).transpose()
    }

    /// The Wyoming address (`tcp://host:port` or `host:port`), resolved.
    pub fn wyoming_addr(&self) -> Result<Option<SocketAddr>> {
        self.wyoming
            .as_deref()
            .map(|a| {
                if a.contains("://") && !a.starts_with("tcp://") {
                    return Err(Error::Invalid(format!(
                        "wyoming address {a:?}: only tcp:// is supported"
                    )));
                }
                resolve(a.trim_start_matches("tcp://"), "wyoming")
            })
            .transpose()
    }

    /// Checks the combination before anything is loaded: at least one service, sane
    /// limits, and no unauthenticated HTTP on a non-loopback address.
    pub fn validate(&self) -> Result<()> {
        self.models()?;
        let http = self.http_addr()?;
        let wyoming = self.wyoming_addr()?;
        if http.is_none() && wyoming.is_none() {
            return Err(Error::Invalid(
                "nothing to serve: give --http ADDR and/or --wyoming tcp://ADDR".into(),
            ));
        }
        if let Some(a) = http {
            let keyed = self.api_key.as_deref().is_some_and(|k| !k.is_empty());
            if !a.ip().is_loopback() && !keyed {
                return Err(Error::Invalid(format!(
                    "refusing to serve HTTP on non-loopback {a} without an API key \
                     (--api-key or HEARTH_API_KEY)"
                )));
            }
        }
        let l = &self.limits;
        if l.queue == 0 || l.max_tokens == 0 || l.http_body_bytes == 0 {
            return Err(Error::Invalid(
                "limits.queue, limits.max_tokens and limits.http_body_bytes must be > 0".into(),
            ));
        }
        if !(l.partial_seconds >= 0.0 && l.partial_seconds.is_finite()) {
            return Err(Error::Invalid("limits.partial_seconds must be ≥ 0".into()));
        }
        if l.wyoming_line_bytes < 256 || l.wyoming_payload_bytes < 1024 {
            return Err(Error::Invalid(
                "limits.wyoming_line_bytes must be ≥ 256 and limits.wyoming_payload_bytes ≥ 1024"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn resolve(addr: &str, what: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| Error::Invalid(format!("{what} address {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| Error::Invalid(format!("{what} address {addr:?} resolves to nothing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_and_loopback_rule() {
        let c: ServeConfig = toml::from_str(
            "http = \"0.0.0.0:8080\"\nwyoming = \"tcp://127.0.0.1:10300\"\n[limits]\nqueue = 2\n",
        )
        .unwrap();
        assert_eq!(c.limits.queue, 2);
        assert_eq!(c.limits.max_tokens, 512);
        assert_eq!(c.wyoming_addr().unwrap().unwrap().port(), 10300);
        assert!(c.validate().unwrap_err().to_string().contains("API key"));
        let keyed = ServeConfig {
            api_key: Some("k".into()),
            ..c
        };
        keyed.validate().unwrap();
        assert!(toml::from_str::<ServeConfig>("htp = \"x\"").is_err());
        assert!(ServeConfig::default().validate().is_err());
    }

    #[test]
    fn one_or_several_models() {
        let c: ServeConfig = toml::from_str("llm = \"m/a.hearth\"").unwrap();
        assert_eq!(c.models().unwrap()[0].name, "a");
        let c: ServeConfig = toml::from_str("llm = [\"m/a.hearth\", \"b=m/a.hearth\"]").unwrap();
        let m = c.models().unwrap();
        assert_eq!(
            (m[1].name.as_str(), m[1].path.as_path()),
            ("b", Path::new("m/a.hearth"))
        );
        let c: ServeConfig = toml::from_str("llm = [\"m/a.hearth\", \"x/a.hearth\"]").unwrap();
        assert!(c.models().unwrap_err().to_string().contains("two models"));
        assert!(ModelSpec::parse("a=").is_err() && ModelSpec::parse("").is_err());
    }
}
