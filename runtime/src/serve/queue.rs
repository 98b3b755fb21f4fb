//! One bounded FIFO queue in front of each LLM. Generation is CPU-bound and the engine
//! already spreads one request over every core, so one worker thread runs requests one at
//! a time, in arrival order (fair); a full queue refuses at once instead of growing.
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::metrics::LlmMetrics;
use crate::llm::{generate, Engine, GenerateOptions, Sampler, SamplerConfig, StopReason};
use crate::{Error, Result};

/// A generation request.
pub struct Job {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Sampling settings.
    pub sampler: SamplerConfig,
    /// Token budget and stop strings.
    pub opts: GenerateOptions,
    /// Where text pieces and the final summary go.
    pub events: mpsc::UnboundedSender<JobEvent>,
    /// Set when the client went away: the job is skipped or stopped at the next token.
    pub cancel: Arc<AtomicBool>,
    enqueued: Instant,
}

impl Job {
    /// A job and the receiver of its events.
    pub fn new(
        prompt: Vec<u32>,
        sampler: SamplerConfig,
        opts: GenerateOptions,
    ) -> (Self, mpsc::UnboundedReceiver<JobEvent>, CancelOnDrop) {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            prompt,
            sampler,
            opts,
            events: tx,
            cancel: cancel.clone(),
            enqueued: Instant::now(),
        };
        (job, rx, CancelOnDrop(cancel))
    }
}

/// Cancels its job when dropped: held by whatever serves the client (a handler future or
/// a response stream), so a client that disconnects stops its generation.
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// What a job reports.
pub enum JobEvent {
    /// Text that became final.
    Piece(String),
    /// The end: token counts and why it stopped, or the error.
    Done(std::result::Result<Summary, String>),
}

/// Outcome of a generation.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Prompt length, tokens.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Why it stopped.
    pub stop: StopReason,
}

/// The queue was full.
#[derive(Debug)]
pub struct QueueFull;

/// Handle to the worker.
#[derive(Clone)]
pub struct LlmQueue {
    tx: mpsc::Sender<Job>,
    metrics: Arc<LlmMetrics>,
}

impl LlmQueue {
    /// Starts the worker thread with one session of `ctx` tokens, re-used by every job.
    pub fn start(
        engine: Engine,
        ctx: usize,
        capacity: usize,
        metrics: Arc<LlmMetrics>,
    ) -> Result<Self> {
        let session = engine.new_session(ctx)?;
        let (tx, rx) = mpsc::channel(capacity);
        metrics.queue_capacity.store(capacity as i64, Relaxed);
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("hearth-llm".into())
            .spawn(move || worker(session, rx, m))
            .map_err(|e| Error::io("starting the LLM worker thread", e))?;
        Ok(Self { tx, metrics })
    }

    /// Queues a job, or refuses at once when the queue is full.
    pub fn submit(&self, job: Job) -> std::result::Result<(), QueueFull> {
        self.metrics.queue_depth.fetch_add(1, Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.metrics.queue_depth.fetch_sub(1, Relaxed);
                self.metrics.rejected.fetch_add(1, Relaxed);
                Err(QueueFull)
            }
        }
    }
}

fn worker(mut session: crate::llm::Session, mut rx: mpsc::Receiver<Job>, m: Arc<LlmMetrics>) {
    while let Some(job) = rx.blocking_recv() {
        m.queue_depth.fetch_sub(1, Relaxed);
        m.queue_wait.observe(job.enqueued.elapsed());
        if job.cancel.load(Relaxed) || job.events.is_closed() {
            m.cancelled.fetch_add(1, Relaxed);
            continue;
        }
        // Every request starts from an empty cache, so its output does not depend on
        // what ran before (greedy output equals `hearth run`'s).
        session.reset();
        let t = Instant::now();
        let result = Sampler::new(job.sampler.clone()).and_then(|mut sampler| {
            generate(
                &mut session,
                &job.prompt,
                &mut sampler,
                &job.opts,
                |piece, _| {
                    if job.cancel.load(Relaxed)
                        || job.events.send(JobEvent::Piece(piece.into())).is_err()
                    {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
        });
        m.generation.observe(t.elapsed());
        let done = match result {
            Ok(g) => {
                m.prompt_tokens
                    .fetch_add(g.prompt_tokens_run as u64, Relaxed);
                m.completion_tokens.fetch_add(g.ids.len() as u64, Relaxed);
                if g.stop == StopReason::Cancelled {
                    m.cancelled.fetch_add(1, Relaxed);
                } else {
                    m.completed.fetch_add(1, Relaxed);
                    m.set_tokens_per_s(g.tokens_per_s());
                }
                Ok(Summary {
                    prompt_tokens: job.prompt.len(),
                    completion_tokens: g.ids.len(),
                    stop: g.stop,
                })
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = job.events.send(JobEvent::Done(done));
    }
}
