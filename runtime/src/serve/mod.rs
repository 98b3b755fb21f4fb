//! `hearth serve`: one process, each model loaded once, two front doors — Home Assistant's
//! Wyoming protocol (TCP) and an OpenAI-compatible HTTP API. Endpoints, config keys and
//! metric names: docs/serve.md.
pub mod config;
pub mod http;
pub mod metrics;
pub mod pcm;
pub mod queue;
pub mod wyoming;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

pub use config::{Limits, ModelSpec, ServeConfig};
use metrics::{LlmMetrics, Metrics};
use queue::LlmQueue;

use crate::action::{self, Actions};
use crate::assist::llm::{LlmFallback, LlmOptions};
use crate::assist::{AssistResult, Assistant};
use crate::intent::{default_data_path, Home, IntentEngine, IntentMatch};
use crate::llm::{Engine, EngineOptions};
use crate::model::ModelFile;
use crate::voice::{Transcriber, TranscriberOptions};
use crate::{Error, Result};

/// One loaded LLM and its own queue.
pub struct Llm {
    /// Name clients see in `/v1/models` and select with `model`.
    pub id: String,
    /// The engine (tokenizer, chat template).
    pub engine: Engine,
    /// Context per request.
    pub ctx: usize,
    /// The request queue.
    pub queue: LlmQueue,
    /// This model's series in `/metrics`.
    pub metrics: Arc<LlmMetrics>,
}

/// Why blocking work (speech-to-text, the assistant) was not done.
#[derive(Debug)]
pub enum TaskError {
    /// Too many requests waiting.
    Busy,
    /// The work failed.
    Failed(String),
}

/// Runs `f` on a blocking thread with `shared` locked, admitted by `gate` (refused at once
/// when the gate has no permit left: a bounded wait, never an unbounded pile-up).
async fn on_blocking_thread<S, T>(
    gate: &Arc<Semaphore>,
    shared: &Arc<Mutex<S>>,
    f: impl FnOnce(&mut S) -> T + Send + 'static,
) -> std::result::Result<T, TaskError>
where
    S: Send + 'static,
    T: Send + 'static,
{
    let _permit = gate
        .clone()
        .try_acquire_owned()
        .map_err(|_| TaskError::Busy)?;
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    })
    .await
    .map_err(|e| TaskError::Failed(format!("worker task failed: {e}")))
}

/// Speech-to-text, shared by both front doors. whisper.cpp keeps one decoding state, so
/// requests take turns; at most `limits.queue` may wait.
pub struct Asr {
    transcriber: Arc<Mutex<Transcriber>>,
    gate: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Asr {
    /// Transcribes 16 kHz mono samples on a blocking thread.
    pub async fn transcribe(&self, samples: Vec<f32>) -> std::result::Result<String, TaskError> {
        let start = Instant::now();
        let r = on_blocking_thread(&self.gate, &self.transcriber, move |t| {
            t.transcribe(&samples)
        })
        .await?
        .map_err(|e| TaskError::Failed(e.to_string()))?;
        self.metrics.asr.observe(start.elapsed());
        self.metrics.asr_audio(r.audio_seconds);
        Ok(r.text)
    }

    /// Whether nothing is being transcribed or waiting (partial transcripts run only then,
    /// so they never delay a final one).
    pub fn idle(&self, capacity: usize) -> bool {
        self.gate.available_permits() == capacity
    }
}

/// The assistant (`hearth assist`'s pipeline: intents → the home's action sinks → the
/// rendered response), one instance shared by every connection; calls take turns.
pub struct Assist {
    assistant: Arc<Mutex<Assistant>>,
    gate: Arc<Semaphore>,
}

impl Assist {
    /// Text → intent → actions → response.
    pub async fn handle(&self, text: String) -> std::result::Result<AssistResult, TaskError> {
        on_blocking_thread(&self.gate, &self.assistant, move |a| a.handle_text(&text)).await
    }

    /// Text → intent only (templates and fuzzy matching; no actions).
    pub async fn recognize(&self, text: String) -> std::result::Result<IntentMatch, TaskError> {
        on_blocking_thread(&self.gate, &self.assistant, move |a| {
            a.intents().recognize(&text)
        })
        .await
    }
}

/// Everything a request handler may use.
pub struct Services {
    /// The LLMs, in the config's order (the first is the default).
    pub llms: Vec<Llm>,
    /// Speech-to-text, when a Whisper model is loaded.
    pub asr: Option<Asr>,
    /// Intent recognition and handling, when a home file was given.
    pub assist: Option<Assist>,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    /// The settings served with.
    pub config: ServeConfig,
}

/// Where the services listen (port 0 in the config becomes the real port here).
#[derive(Clone, Copy, Debug)]
pub struct Listening {
    /// The HTTP address.
    pub http: Option<SocketAddr>,
    /// The Wyoming address.
    pub wyoming: Option<SocketAddr>,
}

impl Services {
    /// Loads the models the config names. A path that is named must load.
    pub fn load(config: ServeConfig) -> Result<Services> {
        config.validate()?;
        let llms = config
            .models()?
            .iter()
            .map(|m| load_llm(m, &config))
            .collect::<Result<Vec<_>>>()?;
        let metrics = Arc::new(Metrics::new(
            llms.iter().map(|l| l.metrics.clone()).collect(),
        ));
        let asr = match &config.whisper {
            Some(path) => {
                let mut opts = TranscriberOptions {
                    language: config.lang.clone(),
                    ..Default::default()
                };
                if let Some(t) = config.threads {
                    opts.threads = t;
                }
                let t = Transcriber::load(path, opts)?;
                Some(Asr {
                    transcriber: Arc::new(Mutex::new(t)),
                    gate: Arc::new(Semaphore::new(config.limits.queue + 1)),
                    metrics: metrics.clone(),
                })
            }
            None => None,
        };
        let assist = match &config.home {
            Some(home) => Some(load_assistant(home, &config, llms.first())?),
            None => None,
        };
        Ok(Services {
            llms,
            asr,
            assist,
            metrics,
            config,
        })
    }

    /// The model a request names (`None` or empty: the default, the first loaded).
    pub fn llm(&self, name: Option<&str>) -> Option<&Llm> {
        match name.filter(|n| !n.is_empty()) {
            None => self.llms.first(),
            Some(n) => self.llms.iter().find(|l| l.id == n),
        }
    }
}

fn load_llm(spec: &ModelSpec, config: &ServeConfig) -> Result<Llm> {
    let model = ModelFile::open(&spec.path)?;
    let mut opts = EngineOptions::default();
    if let Some(t) = config.threads {
        opts.threads = t;
    }
    let engine = Engine::load(Arc::new(model), opts)?;
    let ctx = config
        .limits
        .ctx
        .unwrap_or(2048)
        .min(engine.hparams().context_length);
    let metrics = Arc::new(LlmMetrics::new(&spec.name));
    let queue = LlmQueue::start(engine.clone(), ctx, config.limits.queue, metrics.clone())?;
    Ok(Llm {
        id: spec.name.clone(),
        engine,
        ctx,
        queue,
        metrics,
    })
}

/// The home's intents, its `actions:` sinks (stdout JSON lines when it names none, as
/// `hearth assist`), and the LLM stage on the default model unless `assist_llm = false`.
fn load_assistant(home_path: &Path, config: &ServeConfig, llm: Option<&Llm>) -> Result<Assist> {
    let data: PathBuf = config
        .intents
        .clone()
        .unwrap_or_else(|| default_data_path(&config.lang));
    let engine = IntentEngine::load(&data, &[], home_path)?;
    for w in engine.warnings() {
        tracing::warn!("intents: {w}");
    }
    let (home, _) = Home::load(home_path)?;
    let actions = match action::load_config(home_path)? {
        Some(cfg) => Actions::new(&cfg)?,
        None => Actions::stdout(),
    };
    let mut assistant = Assistant::new(engine, home, actions);
    if let Some(l) = llm.filter(|_| config.assist_llm) {
        assistant = assistant.with_llm(LlmFallback::new(l.engine.clone(), LlmOptions::default())?);
    }
    Ok(Assist {
        assistant: Arc::new(Mutex::new(assistant)),
        gate: Arc::new(Semaphore::new(config.limits.queue + 1)),
    })
}

/// Binds the listeners, calls `ready` with their addresses, then serves until an I/O
/// error on a listener (runs its own tokio runtime; blocks).
pub fn run(services: Services, ready: impl FnOnce(Listening)) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    rt.block_on(async move {
        let services = Arc::new(services);
        let http = match services.config.http_addr()? {
            Some(a) => Some(bind(a, "http").await?),
            None => None,
        };
        let wyoming = match services.config.wyoming_addr()? {
            Some(a) => Some(bind(a, "wyoming").await?),
            None => None,
        };
        ready(Listening {
            http: http.as_ref().and_then(|l| l.local_addr().ok()),
            wyoming: wyoming.as_ref().and_then(|l| l.local_addr().ok()),
        });
        let http_task = http.map(|l| tokio::spawn(http::serve(l, services.clone())));
        let wyoming_task = wyoming.map(|l| tokio::spawn(wyoming::serve(l, services.clone())));
        for task in [http_task, wyoming_task].into_iter().flatten() {
            task.await
                .map_err(|e| Error::Invalid(format!("server task failed: {e}")))??;
        }
        Ok::<(), Error>(())
    })
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("binding {what} to {addr}"), e))
}
