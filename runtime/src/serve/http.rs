//! The OpenAI-compatible HTTP API (axum): chat and text completions (streamed with SSE or
//! not), models, audio transcriptions, plus `/health` and `/metrics`.
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

use super::queue::{CancelOnDrop, Job, JobEvent, Summary};
use super::{Llm, Services, TaskError};
use crate::llm::{ChatMessage, ChatTemplate, GenerateOptions, Role, SamplerConfig, StopReason};
use crate::{Error, Result};

type AppState = Arc<Services>;

/// Serves HTTP on `listener` until it fails.
pub async fn serve(listener: TcpListener, services: Arc<Services>) -> Result<()> {
    let limit = services.config.limits.http_body_bytes;
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(services.clone(), gatekeeper))
        .with_state(services);
    axum::serve(listener, app)
        .await
        .map_err(|e| Error::io("serving HTTP", e))
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`; the
/// code is the status unless a named one is given (`model_not_found`).
struct ApiError(StatusCode, String, Option<&'static str>);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError(status, msg.into(), None)
    }

    fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.0 {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let code = self.2.map_or_else(|| json!(self.0.as_u16()), |c| json!(c));
        let mut r = (
            self.0,
            Json(json!({"error": {"message": self.1, "type": kind, "param": null, "code": code}})),
        )
            .into_response();
        if self.0 == StatusCode::TOO_MANY_REQUESTS || self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Checks the API key (everything but `/health`), then counts the response by route.
async fn gatekeeper(State(s): State<AppState>, req: Request, next: Next) -> Response {
    const ROUTES: [&str; 6] = [
        "/health",
        "/metrics",
        "/v1/models",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/audio/transcriptions",
    ];
    let route = ROUTES
        .into_iter()
        .find(|r| *r == req.uri().path())
        .unwrap_or("other");
    let resp = match s.config.api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(key) if route != "/health" && !authorized(&req, key) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (Authorization: Bearer …)",
        )
        .into_response(),
        _ => next.run(req).await,
    };
    s.metrics.http_response(route, resp.status().as_u16());
    resp
}

fn authorized(req: &Request, key: &str) -> bool {
    let got = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare every byte whatever the first mismatch, so timing says nothing about the key.
    got.len() == key.len()
        && got
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn health(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "llm": s.llm(None).map(|l| &l.id),
        "models": s.llms.iter().map(|l| &l.id).collect::<Vec<_>>(),
        "asr": s.asr.is_some(),
        "intents": s.assist.is_some(),
    }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn models(State(s): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = s
        .llms
        .iter()
        .map(|l| json!({"id": l.id, "object": "model", "created": 0, "owned_by": "hearth"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// Fields common to both completion endpoints (unknown ones are ignored, as OpenAI's
/// clients send many).
#[derive(Deserialize)]
struct Params {
    /// Which loaded model (absent: the default one).
    model: Option<String>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    stop: Option<Stop>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
    #[serde(flatten)]
    params: Params,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: Prompt,
    #[serde(flatten)]
    params: Params,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad request body: {e}")))
}

/// The model the request names; 404 in OpenAI's shape for one that is not loaded.
fn llm<'a>(s: &'a Services, p: &Params) -> std::result::Result<&'a Llm, ApiError> {
    if s.llms.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no language model loaded (start hearth serve with one)",
        ));
    }
    s.llm(p.model.as_deref()).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "The model `{}` does not exist (loaded: {})",
                p.model.as_deref().unwrap_or(""),
                s.llms
                    .iter()
                    .map(|l| l.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("model_not_found"),
        )
    })
}

async fn chat(State(s): State<AppState>, body: Bytes) -> Response {
    let r = async {
        let req: ChatRequest = parse(&body)?;
        let llm = llm(&s, &req.params)?;
        let msgs = req
            .messages
            .into_iter()
            .map(|m| {
                let role = match m.role.as_str() {
                    "developer" => Role::System,
                    r => r
                        .parse::<Role>()
                        .map_err(|e| ApiError::bad(e.to_string()))?,
                };
                let text = match m.content {
                    None => String::new(),
                    Some(Content::Text(t)) => t,
                    Some(Content::Parts(p)) => p.into_iter().filter_map(|p| p.text).collect(),
                };
                Ok(ChatMessage::new(role, text))
            })
            .collect::<std::result::Result<Vec<_>, ApiError>>()?;
        if msgs.is_empty() {
            return Err(ApiError::bad("messages is empty"));
        }
        let tpl = ChatTemplate::from_model(llm.engine.info().chat_template.as_deref())
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let prompt = tokenize(llm, &tpl.render(&msgs, true))?;
        respond(&s, llm, prompt, &req.params, Kind::Chat, usize::MAX).await
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(s): State<AppState>, body: Bytes) -> Response {
    let r = async {
        let req: CompletionRequest = parse(&body)?;
        let llm = llm(&s, &req.params)?;
        let text = match req.prompt {
            Prompt::One(t) => t,
            Prompt::Many(mut v) if v.len() == 1 => v.remove(0),
            Prompt::Many(_) => return Err(ApiError::bad("give exactly one prompt")),
        };
        let prompt = tokenize(llm, &text)?;
        // OpenAI's default for this endpoint is 16 tokens.
        respond(&s, llm, prompt, &req.params, Kind::Text, 16).await
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

fn tokenize(llm: &Llm, text: &str) -> std::result::Result<Vec<u32>, ApiError> {
    let ids = llm
        .engine
        .tokenize(text, llm.engine.info().add_bos)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    if ids.is_empty() {
        return Err(ApiError::bad("empty prompt"));
    }
    if ids.len() >= llm.ctx {
        return Err(ApiError::bad(format!(
            "the prompt has {} tokens; the context holds {}",
            ids.len(),
            llm.ctx
        )));
    }
    Ok(ids)
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Queues the generation and answers with one JSON object or an SSE stream.
async fn respond(
    s: &Services,
    llm: &Llm,
    prompt: Vec<u32>,
    p: &Params,
    kind: Kind,
    default_max: usize,
) -> std::result::Result<Response, ApiError> {
    let room = llm.ctx - prompt.len();
    let max_tokens = p
        .max_completion_tokens
        .or(p.max_tokens)
        .unwrap_or(default_max)
        .min(s.config.limits.max_tokens)
        .min(room);
    let stop_strings = match &p.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    let seed = p.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let sampler = SamplerConfig {
        // OpenAI's default temperature is 1; 0 is greedy.
        temperature: p.temperature.unwrap_or(1.0),
        top_p: p.top_p.unwrap_or(0.95),
        seed,
        ..SamplerConfig::default()
    };
    let opts = GenerateOptions {
        max_tokens,
        stop_strings,
        stop_ids: None,
    };
    let prompt_tokens = prompt.len();
    let (job, rx, guard) = Job::new(prompt, sampler, opts);
    llm.queue.submit(job).map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the model's queue is full ({} waiting); try again shortly",
                s.config.limits.queue
            ),
        )
    })?;
    let head = Head {
        id: format!(
            "{}-{}",
            match kind {
                Kind::Chat => "chatcmpl",
                Kind::Text => "cmpl",
            },
            NEXT_ID.fetch_add(1, Relaxed)
        ),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: llm.id.clone(),
        kind,
    };
    Ok(if p.stream {
        Sse::new(sse_stream(head, rx, guard)).into_response()
    } else {
        // The guard lives in this future: if the client goes away, hyper drops the
        // future and the generation stops.
        collect(head, rx, guard, prompt_tokens).await
    })
}

struct Head {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

fn finish_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        _ => "stop",
    }
}

async fn collect(
    head: Head,
    mut rx: UnboundedReceiver<JobEvent>,
    _guard: CancelOnDrop,
    prompt_tokens: usize,
) -> Response {
    let mut text = String::new();
    let summary = loop {
        match rx.recv().await {
            Some(JobEvent::Piece(p)) => text.push_str(&p),
            Some(JobEvent::Done(d)) => break d,
            None => break Err("the generation worker stopped".into()),
        }
    };
    let sum = match summary {
        Ok(s) => s,
        Err(e) => return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let choice = match head.kind {
        Kind::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason(&sum.stop),
        }),
        Kind::Text => json!({
            "index": 0, "text": text, "logprobs": null,
            "finish_reason": finish_reason(&sum.stop),
        }),
    };
    Json(json!({
        "id": head.id,
        "object": match head.kind { Kind::Chat => "chat.completion", Kind::Text => "text_completion" },
        "created": head.created,
        "model": head.model,
        "choices": [choice],
        "usage": usage(prompt_tokens, &sum),
    }))
    .into_response()
}

fn usage(prompt_tokens: usize, s: &Summary) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": prompt_tokens + s.completion_tokens,
    })
}

/// The SSE stream: one chunk per text piece, a last chunk with the finish reason, then
/// `[DONE]`. Dropping it (client gone) drops the guard, which stops the generation.
fn sse_stream(
    head: Head,
    rx: UnboundedReceiver<JobEvent>,
    guard: CancelOnDrop,
) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
    // State: (receiver, guard, head, first chunk sent?, finished?)
    stream::unfold(
        (rx, guard, head, false, false),
        move |(mut rx, guard, head, started, done)| async move {
            if done {
                return None;
            }
            if !started {
                let ev = match head.kind {
                    Kind::Chat => chunk(&head, Some(""), None, true),
                    Kind::Text => chunk(&head, Some(""), None, false),
                };
                return Some((Ok(ev), (rx, guard, head, true, false)));
            }
            match rx.recv().await {
                Some(JobEvent::Piece(p)) => {
                    let ev = chunk(&head, Some(&p), None, false);
                    Some((Ok(ev), (rx, guard, head, true, false)))
                }
                Some(JobEvent::Done(Ok(sum))) => {
                    let ev = chunk(&head, None, Some(finish_reason(&sum.stop)), false);
                    Some((Ok(ev), (rx, guard, head, true, true)))
                }
                Some(JobEvent::Done(Err(e))) => {
                    let ev = SseEvent::default()
                        .data(json!({"error": {"message": e, "type": "server_error"}}).to_string());
                    Some((Ok(ev), (rx, guard, head, true, true)))
                }
                None => None,
            }
        },
    )
    .chain(stream::once(async {
        Ok(SseEvent::default().data("[DONE]"))
    }))
}

/// One SSE chunk in OpenAI's shape.
fn chunk(h: &Head, piece: Option<&str>, finish: Option<&str>, first: bool) -> SseEvent {
    let choice = match h.kind {
        Kind::Chat => {
            let mut delta = json!({});
            if first {
                delta["role"] = json!("assistant");
            }
            if let Some(p) = piece {
                delta["content"] = json!(p);
            }
            json!({"index": 0, "delta": delta, "finish_reason": finish})
        }
        Kind::Text => json!({
            "index": 0, "text": piece.unwrap_or(""), "logprobs": null, "finish_reason": finish,
        }),
    };
    let obj = match h.kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Text => "text_completion",
    };
    SseEvent::default().data(
        json!({"id": h.id, "object": obj, "created": h.created, "model": h.model, "choices": [choice]})
            .to_string(),
    )
}

async fn transcriptions(State(s): State<AppState>, mut form: Multipart) -> Response {
    let r = async {
        let asr = s.asr.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no Whisper model loaded (start hearth serve with one)",
            )
        })?;
        let mut audio = None;
        let mut format = String::from("json");
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?
        {
            let name = field.name().unwrap_or("").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
            match name.as_str() {
                "file" => audio = Some(bytes),
                "response_format" => format = String::from_utf8_lossy(&bytes).into_owned(),
                _ => {} // model, language, prompt, temperature: one model, nothing to choose
            }
        }
        let bytes = audio.ok_or_else(|| ApiError::bad("multipart field \"file\" is missing"))?;
        let decoded = crate::voice::decode_wav(std::io::Cursor::new(bytes))
            .map_err(|e| ApiError::bad(format!("file: {e} (send a WAV file)")))?;
        let text = asr.transcribe(decoded.samples).await.map_err(|e| match e {
            TaskError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many transcriptions waiting",
            ),
            TaskError::Failed(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        })?;
        Ok(match format.as_str() {
            "text" => text.into_response(),
            _ => Json(json!({"text": text})).into_response(),
        })
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}
