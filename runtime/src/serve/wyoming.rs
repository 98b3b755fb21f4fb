//! The Wyoming protocol server (what Home Assistant uses for local voice services).
//!
//! Framing, as the `wyoming` Python package reads and writes it: one JSON header line
//! `{"type", "data"?, "data_length"?, "payload_length"?}`, then `data_length` bytes of JSON
//! merged into `data`, then `payload_length` bytes of payload (audio). Handled:
//! `describe` → `info`; `transcribe`/`audio-start`/`audio-chunk`/`audio-stop` →
//! `transcript`; `recognize` → `intent`/`not-recognized`; `transcript` (Home Assistant's
//! intent-handling request) → `handled`/`not-handled`, spoken text = the matched intent's
//! response; `ping` → `pong`. Unknown types are ignored (the protocol says so). Input that
//! breaks the framing or the limits gets an `error` event and closes only that connection.
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::pcm::{Format, Utterance};
use super::{AsrError, Services};
use crate::Result;

/// One event.
#[derive(Debug)]
pub struct Event {
    /// The event type, e.g. `audio-chunk`.
    pub kind: String,
    /// Header `data` merged with the extra data block.
    pub data: Map<String, Value>,
    /// Binary payload (audio).
    pub payload: Vec<u8>,
}

/// Why a connection is dropped.
#[derive(Debug)]
enum Fatal {
    /// The peer closed (or reset) the connection.
    Closed,
    /// The peer broke the protocol or a limit: tell it, then close.
    Protocol(String),
}

impl From<std::io::Error> for Fatal {
    fn from(_: std::io::Error) -> Self {
        Fatal::Closed
    }
}

/// Accepts connections until the listener fails; each connection is its own task.
pub async fn serve(listener: TcpListener, services: Arc<Services>) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("wyoming: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let s = services.clone();
        tokio::spawn(async move {
            s.metrics.wyoming_connections.fetch_add(1, Relaxed);
            tracing::debug!("wyoming: {peer} connected");
            if let Err(e) = connection(stream, &s).await {
                tracing::info!("wyoming: {peer}: {e}");
            }
            s.metrics.wyoming_connections.fetch_sub(1, Relaxed);
        });
    }
}

/// Serves one connection; returns the protocol error that closed it, if any.
async fn connection(stream: TcpStream, s: &Services) -> std::result::Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut utterance: Option<Utterance> = None;
    loop {
        let event = match read_event(&mut r, s).await {
            Ok(Some(e)) => e,
            Ok(None) | Err(Fatal::Closed) => return Ok(()),
            Err(Fatal::Protocol(msg)) => {
                let _ = write_event(
                    &mut w,
                    "error",
                    json!({"text": msg, "code": "bad-request"}),
                    &[],
                )
                .await;
                return Err(msg);
            }
        };
        s.metrics.wyoming_events.fetch_add(1, Relaxed);
        match handle(&event, &mut utterance, s).await {
            Ok(Some((kind, data))) => {
                if write_event(&mut w, kind, data, &[]).await.is_err() {
                    return Ok(());
                }
            }
            Ok(None) => {}
            Err(msg) => {
                let _ = write_event(
                    &mut w,
                    "error",
                    json!({"text": msg, "code": "bad-request"}),
                    &[],
                )
                .await;
                return Err(msg);
            }
        }
    }
}

type Reply = Option<(&'static str, Value)>;

/// One event → at most one reply; `Err` = tell the client and close.
async fn handle(
    e: &Event,
    utterance: &mut Option<Utterance>,
    s: &Services,
) -> std::result::Result<Reply, String> {
    let text = || e.data.get("text").and_then(Value::as_str).unwrap_or("");
    Ok(match e.kind.as_str() {
        "describe" => Some(("info", info(s))),
        "ping" => Some(("pong", json!({"text": e.data.get("text")}))),
        // The language and name hints change nothing for a single English model.
        "transcribe" => None,
        "audio-start" => {
            let f = Format::from_data(&e.data).map_err(|e| e.to_string())?;
            *utterance = Some(Utterance::new(f, s.config.limits.audio_seconds));
            None
        }
        "audio-chunk" => {
            let f = Format::from_data(&e.data).map_err(|e| e.to_string())?;
            // A chunk without audio-start starts the utterance (some clients skip it).
            let u =
                utterance.get_or_insert_with(|| Utterance::new(f, s.config.limits.audio_seconds));
            if u.format() != f {
                return Err(format!(
                    "audio-chunk format {f:?} differs from the stream's {:?}",
                    u.format()
                ));
            }
            u.push(&e.payload).map_err(|e| e.to_string())?;
            None
        }
        "audio-stop" => {
            let Some(u) = utterance.take() else {
                return Err("audio-stop without audio".into());
            };
            let asr = s
                .asr
                .as_ref()
                .ok_or("no Whisper model loaded: cannot transcribe")?;
            let text = match asr.transcribe(u.finish()).await {
                Ok(t) => t,
                Err(AsrError::Busy) => return Err("busy: too many transcriptions waiting".into()),
                Err(AsrError::Failed(m)) => return Err(format!("transcription failed: {m}")),
            };
            Some((
                "transcript",
                json!({"text": text, "language": s.config.lang}),
            ))
        }
        "recognize" => {
            let intents = s
                .intents
                .as_ref()
                .ok_or("no home file loaded: cannot recognize intents")?;
            let m = intents.recognize(text());
            match m.intent {
                Some(name) => {
                    let entities: Vec<Value> = m
                        .slots
                        .iter()
                        .map(|(k, v)| json!({"name": k, "value": v}))
                        .collect();
                    Some((
                        "intent",
                        json!({"name": name, "entities": entities, "text": m.text}),
                    ))
                }
                None => Some(("not-recognized", json!({"text": m.text}))),
            }
        }
        // Home Assistant's "handle" flow: the transcript of a command in, the text to speak
        // out. Carrying out the action is `hearth assist`'s job (built separately); this
        // answers with the intent's response sentence (see `Responses`).
        "transcript" => {
            let intents = s
                .intents
                .as_ref()
                .ok_or("no home file loaded: cannot handle commands")?;
            let m = intents.recognize(text());
            let kind = if m.intent.is_some() {
                "handled"
            } else {
                "not-handled"
            };
            Some((kind, json!({"text": s.responses.speak(&m)})))
        }
        other => {
            tracing::debug!("wyoming: ignoring event type {other:?}");
            None
        }
    })
}

/// The `info` reply: what the `wyoming` package's `Info.from_event` parses.
fn info(s: &Services) -> Value {
    // Attribution names the upstream projects whose models/data Hearth runs.
    let whisper = json!({"name": "OpenAI Whisper via whisper.cpp", "url": "https://github.com/ggml-org/whisper.cpp"});
    let intents = json!({"name": "Home Assistant intents", "url": "https://github.com/home-assistant/intents"});
    let version = env!("CARGO_PKG_VERSION");
    let lang = &s.config.lang;
    let mut asr = Vec::new();
    if s.asr.is_some() {
        let model = s
            .config
            .whisper
            .as_deref()
            .and_then(|p| p.file_stem())
            .map_or_else(
                || "whisper".to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
        asr.push(json!({
            "name": "hearth-whisper", "attribution": whisper, "installed": true,
            "description": "Hearth speech-to-text (whisper.cpp)", "version": version,
            "models": [{
                "name": model, "attribution": whisper, "installed": true,
                "description": "Whisper", "version": version, "languages": [lang],
            }],
            "supports_transcript_streaming": false,
        }));
    }
    let mut intent = Vec::new();
    let mut handle = Vec::new();
    if s.intents.is_some() {
        let model = json!({
            "name": "hearth-intents", "attribution": intents, "installed": true,
            "description": "Home Assistant sentence templates", "version": version,
            "languages": [lang],
        });
        intent.push(json!({
            "name": "hearth-intent", "attribution": intents, "installed": true,
            "description": "Hearth intent recognition", "version": version, "models": [model],
        }));
        handle.push(json!({
            "name": "hearth-handle", "attribution": intents, "installed": true,
            "description": "Hearth intent handling (spoken response)", "version": version,
            "models": [model], "supports_handled_streaming": false,
        }));
    }
    json!({"asr": asr, "tts": [], "handle": handle, "intent": intent, "wake": [], "mic": [], "snd": []})
}

/// Reads one event; `None` at a clean end of stream.
async fn read_event<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    s: &Services,
) -> std::result::Result<Option<Event>, Fatal> {
    let limits = &s.config.limits;
    let mut line = Vec::new();
    // Never buffer more than the limit: a 100 MB "line" is refused after 64 KiB.
    let n = (&mut *r)
        .take(limits.wyoming_line_bytes as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if line.len() > limits.wyoming_line_bytes {
            return Err(Fatal::Protocol(format!(
                "header line longer than {} bytes",
                limits.wyoming_line_bytes
            )));
        }
        return Err(Fatal::Closed); // EOF in the middle of a line
    }
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        data: Option<Map<String, Value>>,
        #[serde(default)]
        data_length: Option<u64>,
        #[serde(default)]
        payload_length: Option<u64>,
    }
    let h: Header = serde_json::from_slice(&line)
        .map_err(|e| Fatal::Protocol(format!("malformed event header: {e}")))?;
    let mut data = h.data.unwrap_or_default();
    let timeout = Duration::from_secs(limits.wyoming_read_timeout_s);
    if let Some(len) = h.data_length.filter(|&l| l > 0) {
        let bytes = read_block(r, len, limits.wyoming_payload_bytes, timeout, "data").await?;
        let extra: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|e| Fatal::Protocol(format!("malformed event data: {e}")))?;
        data.extend(extra);
    }
    let payload = match h.payload_length.filter(|&l| l > 0) {
        Some(len) => read_block(r, len, limits.wyoming_payload_bytes, timeout, "payload").await?,
        None => Vec::new(),
    };
    Ok(Some(Event {
        kind: h.kind,
        data,
        payload,
    }))
}

/// Reads exactly `len` bytes (≤ `max`), within `timeout`: a length that lies and then
/// stalls must not pin the connection forever.
async fn read_block<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    len: u64,
    max: usize,
    timeout: Duration,
    what: &str,
) -> std::result::Result<Vec<u8>, Fatal> {
    if len > max as u64 {
        return Err(Fatal::Protocol(format!(
            "{what} length {len} is over the {max}-byte limit"
        )));
    }
    let mut buf = vec![0; len as usize];
    match tokio::time::timeout(timeout, r.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Ok(buf),
        Ok(Err(_)) => Err(Fatal::Closed),
        Err(_) => Err(Fatal::Protocol(format!(
            "{what}: {len} bytes announced, not all sent within {} s",
            timeout.as_secs()
        ))),
    }
}

/// Writes one event the way the Python package does (data as a separate block).
async fn write_event<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: &str,
    data: Value,
    payload: &[u8],
) -> std::io::Result<()> {
    let data = serde_json::to_vec(&data)?;
    let mut header = json!({"type": kind, "data_length": data.len()});
    if !payload.is_empty() {
        header["payload_length"] = json!(payload.len());
    }
    let mut out = serde_json::to_vec(&header)?;
    out.push(b'\n');
    out.extend_from_slice(&data);
    out.extend_from_slice(payload);
    w.write_all(&out).await?;
    w.flush().await
}
