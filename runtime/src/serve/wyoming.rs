//! The Wyoming protocol server (what Home Assistant uses for local voice services).
//!
//! Framing, as the `wyoming` Python package reads and writes it: one JSON header line
//! `{"type", "data"?, "data_length"?, "payload_length"?}`, then `data_length` bytes of JSON
//! merged into `data`, then `payload_length` bytes of payload (audio). Handled:
//! `describe` → `info`; `transcribe`/`audio-start`/`audio-chunk`/`audio-stop` →
//! `transcript` (after a `transcribe` request also streamed: `transcript-start`,
//! `transcript-chunk`s, `transcript`, `transcript-stop`); `recognize` →
//! `intent`/`not-recognized`; `transcript` (Home Assistant's intent-handling request) →
//! the assistant (actions run, response rendered) → `handled`/`not-handled`;
//! `run-pipeline` from `asr` → after the audio, the transcript and then the intent or the
//! handled reply; `ping` → `pong`. Unknown types are ignored (the protocol says so). Input that
//! breaks the framing or the limits gets an `error` event and closes only that connection.
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::pcm::{Format, Utterance};
use super::{Services, TaskError};
use crate::voice::SAMPLE_RATE;
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
    let mut conn = Conn::default();
    loop {
        let event = match read_event(&mut r, s).await {
            Ok(Some(e)) => e,
            Ok(None) | Err(Fatal::Closed) => return Ok(()),
            Err(Fatal::Protocol(msg)) => return send_error(&mut w, msg).await,
        };
        s.metrics.wyoming_events.fetch_add(1, Relaxed);
        match handle(&event, &mut conn, s).await {
            Ok(replies) => {
                for (kind, data) in replies {
                    if write_event(&mut w, kind, data, &[]).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Err(msg) => return send_error(&mut w, msg).await,
        }
    }
}

/// Tells the client what broke the protocol (best effort), then closes by returning it.
async fn send_error<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: String,
) -> std::result::Result<(), String> {
    let _ = write_event(w, "error", json!({"text": msg, "code": "bad-request"}), &[]).await;
    Err(msg)
}

/// What a connection is in the middle of.
#[derive(Default)]
struct Conn {
    /// The audio since `audio-start`.
    utterance: Option<Utterance>,
    /// A `transcribe` request came first: stream the transcript (Wyoming 1.6+).
    stream: bool,
    /// Words already sent as `transcript-chunk`s; `None` before `transcript-start`.
    sent: Option<Vec<String>>,
    /// The words of the last partial transcript.
    hypothesis: Vec<String>,
    /// Samples (16 kHz) the last partial transcript covered.
    partial_at: usize,
    /// When the utterance's audio began to arrive.
    started: Option<Instant>,
    /// A `run-pipeline` from `asr` asked to go on to `intent` or `handle` after the
    /// transcript.
    then: Option<Stage>,
}

/// Where a `run-pipeline` that starts at `asr` ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Intent,
    Handle,
}

type Reply = (&'static str, Value);

/// One event → the replies; `Err` = tell the client and close.
async fn handle(e: &Event, c: &mut Conn, s: &Services) -> std::result::Result<Vec<Reply>, String> {
    let text = || {
        e.data
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(match e.kind.as_str() {
        "describe" => vec![("info", info(s))],
        "ping" => vec![("pong", json!({"text": e.data.get("text")}))],
        // The language and name hints change nothing for a single English model.
        "transcribe" => {
            c.stream = true;
            vec![]
        }
        "run-pipeline" => {
            c.then = pipeline_end(&e.data)?;
            vec![]
        }
        "audio-start" => {
            let f = Format::from_data(&e.data).map_err(|e| e.to_string())?;
            c.utterance = Some(Utterance::new(f, s.config.limits.audio_seconds));
            (c.sent, c.partial_at, c.started) = (None, 0, Some(Instant::now()));
            c.hypothesis.clear();
            vec![]
        }
        "audio-chunk" => {
            let f = Format::from_data(&e.data).map_err(|e| e.to_string())?;
            // A chunk without audio-start starts the utterance (some clients skip it).
            if c.utterance.is_none() {
                c.started = Some(Instant::now());
            }
            let u = c
                .utterance
                .get_or_insert_with(|| Utterance::new(f, s.config.limits.audio_seconds));
            if u.format() != f {
                return Err(format!(
                    "audio-chunk format {f:?} differs from the stream's {:?}",
                    u.format()
                ));
            }
            u.push(&e.payload).map_err(|e| e.to_string())?;
            if c.stream {
                partial(c, s).await
            } else {
                vec![]
            }
        }
        "audio-stop" => {
            let Some(u) = c.utterance.take() else {
                return Err("audio-stop without audio".into());
            };
            let asr = s
                .asr
                .as_ref()
                .ok_or("no Whisper model loaded: cannot transcribe")?;
            let text = match asr.transcribe(u.finish()).await {
                Ok(t) => t,
                Err(TaskError::Busy) => return Err("busy: too many transcriptions waiting".into()),
                Err(TaskError::Failed(m)) => return Err(format!("transcription failed: {m}")),
            };
            let mut out = Vec::new();
            let streamed = std::mem::take(&mut c.stream);
            if streamed {
                let words: Vec<String> = text.split_whitespace().map(String::from).collect();
                out.extend(c.stream_words(&words, &s.config.lang));
            }
            out.push((
                "transcript",
                json!({"text": text, "language": s.config.lang}),
            ));
            if streamed {
                out.push(("transcript-stop", json!({})));
            }
            match c.then.take() {
                Some(Stage::Intent) => out.push(recognize(s, text).await?),
                Some(Stage::Handle) => out.push(assist(s, text).await?),
                None => {}
            }
            out
        }
        "recognize" => vec![recognize(s, text()).await?],
        // Home Assistant's "handle" flow: the transcript of a command in, the text to speak
        // out, the home's actions carried out in between.
        "transcript" => vec![assist(s, text()).await?],
        other => {
            tracing::debug!("wyoming: ignoring event type {other:?}");
            vec![]
        }
    })
}

/// `run-pipeline {start_stage, end_stage}`: this server runs the stages from `asr` to
/// `handle` (a `tts` end is answered like `handle`, with the text to speak).
fn pipeline_end(data: &Map<String, Value>) -> std::result::Result<Option<Stage>, String> {
    let stage = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("");
    match (stage("start_stage"), stage("end_stage")) {
        ("asr", "asr") => Ok(None),
        ("asr", "intent") => Ok(Some(Stage::Intent)),
        ("asr", "handle" | "tts") => Ok(Some(Stage::Handle)),
        (start, end) => Err(format!(
            "run-pipeline {start:?} → {end:?}: hearth serve runs pipelines from \"asr\" to \"intent\", \"handle\" or \"tts\" (text goes in with recognize/transcript)"
        )),
    }
}

/// A word as compared between hypotheses: case and punctuation aside.
fn key(w: &str) -> String {
    w.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

impl Conn {
    /// The streamed transcript's next `transcript-chunk` (preceded by `transcript-start`
    /// the first time) for the words `words`: those past the ones already sent, if the
    /// sent ones agree with them. Chunks are never retracted; the final `transcript`
    /// event is the authoritative text.
    fn stream_words(&mut self, words: &[String], lang: &str) -> Vec<Reply> {
        let mut out = Vec::new();
        if self.sent.is_none() {
            out.push(("transcript-start", json!({"language": lang})));
        }
        let sent = self.sent.get_or_insert_with(Vec::new);
        let agrees = words.len() > sent.len()
            && words.iter().zip(sent.iter()).all(|(a, b)| key(a) == key(b));
        if agrees {
            let new = words[sent.len()..].join(" ");
            let piece = if sent.is_empty() {
                new
            } else {
                format!(" {new}")
            };
            *sent = words.to_vec();
            out.push(("transcript-chunk", json!({"text": piece})));
        }
        out
    }

    /// A partial hypothesis: the words it shares with the previous one (local agreement
    /// of two decodes of growing audio: a word both saw the same way rarely changes) go
    /// out.
    fn partial_words(&mut self, text: &str, lang: &str) -> Vec<Reply> {
        let words: Vec<String> = text.split_whitespace().map(String::from).collect();
        let agreed = words
            .iter()
            .zip(&self.hypothesis)
            .take_while(|(a, b)| key(a) == key(b))
            .count();
        self.hypothesis = words.clone();
        if agreed == 0 {
            return vec![];
        }
        self.stream_words(&words[..agreed], lang)
    }
}

/// A partial transcript of the audio so far, every `limits.partial_seconds` of new
/// audio; the words it agrees on with the previous partial become a `transcript-chunk`.
/// Only while the audio arrives live (no faster than real time, so the speaker is still
/// talking and the decode overlaps the speech; audio sent all at once gains nothing) and
/// Whisper has nothing else to do.
async fn partial(c: &mut Conn, s: &Services) -> Vec<Reply> {
    let (Some(asr), Some(u), Some(started)) = (&s.asr, &c.utterance, c.started) else {
        return vec![];
    };
    let every = (s.config.limits.partial_seconds * SAMPLE_RATE as f32) as usize;
    let have = u.samples().len();
    let live = have as f64 / f64::from(SAMPLE_RATE) <= started.elapsed().as_secs_f64() + 0.5;
    if every == 0 || have < c.partial_at + every || !live || !asr.idle(s.config.limits.queue + 1) {
        return vec![];
    }
    let samples = u.samples().to_vec();
    c.partial_at = have;
    let Ok(text) = asr.transcribe(samples).await else {
        return vec![]; // busy after all, or failed: the final transcript will tell
    };
    c.partial_words(&text, &s.config.lang)
}

/// `recognize`: the intent and its slots, or `not-recognized`.
async fn recognize(s: &Services, text: String) -> std::result::Result<Reply, String> {
    let assist = s
        .assist
        .as_ref()
        .ok_or("no home file loaded: cannot recognize intents")?;
    let m = assist.recognize(text).await.map_err(busy)?;
    Ok(match m.intent {
        Some(name) => {
            let entities: Vec<Value> = m
                .slots
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            (
                "intent",
                json!({"name": name, "entities": entities, "text": m.text}),
            )
        }
        None => ("not-recognized", json!({"text": m.text})),
    })
}

/// The handle path (`hearth assist`'s pipeline): `handled {text}` with the rendered
/// response once the home's action sinks ran, or `not-handled {text}` when no intent
/// matched (the text then is the "didn't understand" reply, or the LLM's answer to a
/// question).
async fn assist(s: &Services, text: String) -> std::result::Result<Reply, String> {
    let assist = s
        .assist
        .as_ref()
        .ok_or("no home file loaded: cannot handle commands")?;
    let r = assist.handle(text).await.map_err(busy)?;
    let kind = if r.matched.intent.is_some() {
        "handled"
    } else {
        "not-handled"
    };
    Ok((kind, json!({"text": r.response})))
}

fn busy(e: TaskError) -> String {
    match e {
        TaskError::Busy => "busy: too many requests waiting".into(),
        TaskError::Failed(m) => m,
    }
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
            "supports_transcript_streaming": true,
        }));
    }
    let mut intent = Vec::new();
    let mut handle = Vec::new();
    if s.assist.is_some() {
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
            "description": "Hearth intent handling (actions and spoken response)",
            "version": version, "models": [model], "supports_handled_streaming": false,
            "supports_home_control": true,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(replies: &[Reply]) -> Vec<(&str, String)> {
        replies
            .iter()
            .map(|(k, v)| (*k, v["text"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    fn w(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn streamed_words_extend_and_are_never_retracted() {
        let mut c = Conn::default();
        let r = c.stream_words(&w("And so my"), "en");
        assert_eq!(
            chunks(&r),
            [
                ("transcript-start", String::new()),
                ("transcript-chunk", "And so my".into())
            ]
        );
        // Punctuation and case changes still agree; only the new words go out.
        let r = c.stream_words(&w("And so, my fellow Americans"), "en");
        assert_eq!(
            chunks(&r),
            [("transcript-chunk", " fellow Americans".into())]
        );
        // A revision of sent words cannot be sent: nothing more.
        assert!(c
            .stream_words(&w("And sew my fellow Americans ask"), "en")
            .is_empty());
        assert!(c.stream_words(&w("And so my fellow"), "en").is_empty());
    }

    #[test]
    fn partials_send_what_two_hypotheses_agree_on() {
        let mut c = Conn::default();
        assert!(
            c.partial_words("And so my", "en").is_empty(),
            "nothing to agree with yet"
        );
        let r = c.partial_words("And so my fellow Americans asked", "en");
        assert_eq!(chunks(&r)[1], ("transcript-chunk", "And so my".into()));
        // "asked" → "ask": the disagreeing word and what follows wait for the next one.
        let r = c.partial_words("And so, my fellow Americans, ask not what", "en");
        assert_eq!(
            chunks(&r),
            [("transcript-chunk", " fellow Americans,".into())]
        );
        let r = c.partial_words("And so my fellow Americans ask not what your", "en");
        assert_eq!(chunks(&r), [("transcript-chunk", " ask not what".into())]);
    }
}
