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

pub use config::{Limits, ServeConfig};
use metrics::Metrics;
use queue::LlmQueue;

use crate::intent::{default_data_path, IntentEngine};
use crate::llm::{Engine, EngineOptions};
use crate::model::ModelFile;
use crate::voice::{Transcriber, TranscriberOptions};
use crate::{Error, Result};

/// The loaded LLM and its queue.
pub struct Llm {
    /// Name clients see in `/v1/models` (the model file's stem).
    pub id: String,
    /// The engine (tokenizer, chat template).
    pub engine: Engine,
    /// Context per request.
    pub ctx: usize,
    /// The request queue.
    pub queue: LlmQueue,
}

/// Speech-to-text, shared by both front doors. whisper.cpp keeps one decoding state, so
/// requests take turns; at most `limits.queue` may wait.
pub struct Asr {
    transcriber: Arc<Mutex<Transcriber>>,
    gate: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// Why a transcription was not done.
#[derive(Debug)]
pub enum AsrError {
    /// Too many requests waiting.
    Busy,
    /// whisper.cpp failed.
    Failed(String),
}

impl Asr {
    /// Transcribes 16 kHz mono samples on a blocking thread.
    pub async fn transcribe(&self, samples: Vec<f32>) -> std::result::Result<String, AsrError> {
        let _permit = self
            .gate
            .clone()
            .try_acquire_owned()
            .map_err(|_| AsrError::Busy)?;
        let t = self.transcriber.clone();
        let start = Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            t.transcribe(&samples)
        })
        .await
        .map_err(|e| AsrError::Failed(format!("transcription task failed: {e}")))?
        .map_err(|e| AsrError::Failed(e.to_string()))?;
        self.metrics.asr.observe(start.elapsed());
        self.metrics.asr_audio(r.audio_seconds);
        Ok(r.text)
    }
}

/// Everything a request handler may use.
pub struct Services {
    /// The LLM, when one is loaded.
    pub llm: Option<Llm>,
    /// Speech-to-text, when a Whisper model is loaded.
    pub asr: Option<Asr>,
    /// Intent recognition, when a home file was given.
    pub intents: Option<Arc<IntentEngine>>,
    /// Spoken replies for matched intents.
    pub responses: Responses,
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
        let llm_id = config
            .llm
            .as_deref()
            .and_then(Path::file_stem)
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let metrics = Arc::new(Metrics::new(&llm_id));
        let llm = match &config.llm {
            Some(path) => Some(load_llm(path, llm_id, &config, metrics.clone())?),
            None => None,
        };
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
        let (intents, responses) = match &config.home {
            Some(home) => {
                let data: PathBuf = config
                    .intents
                    .clone()
                    .unwrap_or_else(|| default_data_path(&config.lang));
                let e = IntentEngine::load(&data, &[], home)?;
                for w in e.warnings() {
                    tracing::warn!("intents: {w}");
                }
                (Some(Arc::new(e)), Responses::load(&data)?)
            }
            None => (None, Responses::default()),
        };
        Ok(Services {
            llm,
            asr,
            intents,
            responses,
            metrics,
            config,
        })
    }
}

fn load_llm(path: &Path, id: String, config: &ServeConfig, metrics: Arc<Metrics>) -> Result<Llm> {
    let model = ModelFile::open(path)?;
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
    let queue = LlmQueue::start(engine.clone(), ctx, config.limits.queue, metrics)?;
    Ok(Llm {
        id,
        engine,
        ctx,
        queue,
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

/// The spoken replies of Home Assistant's intents (`responses.intents.<Intent>.<key>` in
/// the templates file). They are Jinja templates; rendering them properly belongs to
/// `hearth assist`. Here only plain text and `{{ slots.x }}` are filled in, anything
/// else falls back to a plain acknowledgement.
#[derive(Default)]
pub struct Responses(std::collections::HashMap<(String, String), String>);

impl Responses {
    /// Reads the responses of a `<lang>.json` templates file (none if it has none).
    pub fn load(data: &Path) -> Result<Responses> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            responses: Option<R>,
        }
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(default)]
            intents: std::collections::HashMap<String, std::collections::HashMap<String, String>>,
        }
        let text =
            std::fs::read(data).map_err(|e| Error::io(format!("reading {}", data.display()), e))?;
        let f: File = serde_json::from_slice(&text)
            .map_err(|e| Error::Format(format!("{}: {e}", data.display())))?;
        let mut map = std::collections::HashMap::new();
        for (intent, keys) in f.responses.map(|r| r.intents).unwrap_or_default() {
            for (key, tpl) in keys {
                map.insert((intent.clone(), key), tpl);
            }
        }
        Ok(Responses(map))
    }

    /// What to say for a matched intent.
    pub fn speak(&self, m: &crate::intent::IntentMatch) -> String {
        let Some(intent) = &m.intent else {
            return "Sorry, I couldn't understand that.".into();
        };
        let key = m.response.as_deref().unwrap_or("default");
        let Some(tpl) = self.0.get(&(intent.clone(), key.to_string())) else {
            return "Done.".into();
        };
        let mut out = tpl.clone();
        for (name, v) in &m.slots {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            for pat in [
                format!("{{{{ slots.{name} }}}}"),
                format!("{{{{slots.{name}}}}}"),
            ] {
                out = out.replace(&pat, &v);
            }
        }
        if out.contains("{{") || out.contains("{%") {
            "Done.".into()
        } else {
            out.trim().to_string()
        }
    }
}
