//! `hearth run`: one prompt in, a streamed completion out. Also the model-loading and
//! prompt helpers the other LLM commands share.
//!
//! Defaults: greedy decoding (`--temp 0`; give a temperature to sample, with
//! llama.cpp's top-k 40 / top-p 0.95 / min-p 0.05), 128 new tokens, a context of
//! min(2048, the model's), all cores, f16 KV cache. `-p` text goes through the
//! model's ChatML template (with its default system prompt) unless `--raw`;
//! `--prompt-ids` is fed exactly as given.
use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_runtime::llm::{
    default_threads, generate, ChatMessage, ChatTemplate, Engine, EngineOptions, GenerateOptions,
    KvType, Role, Sampler, SamplerConfig, StopReason,
};
use hearth_runtime::model::ModelFile;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Options shared by every command that runs the model.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Worker threads (default: all cores).
    #[arg(long, short = 't', default_value_t = default_threads())]
    pub threads: usize,
    /// KV cache type: f16 or q8.
    #[arg(long, default_value = "f16")]
    pub kv: KvType,
}

/// Sampling options (`--temp 0` = greedy).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy (argmax).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens below this fraction of the top token's probability (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty over the last 64 tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The sampler these options describe.
    pub fn sampler(&self) -> Result<Sampler> {
        Ok(Sampler::new(SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
        })?)
    }
}

/// Open a model file and start an engine on it. Returns the engine and the load time.
pub fn load_engine(path: &Path, args: &EngineArgs) -> Result<(Engine, f64)> {
    let t = Instant::now();
    let model =
        ModelFile::open(path).with_context(|| format!("cannot load model {}", path.display()))?;
    let opts = EngineOptions {
        threads: args.threads,
        kv_type: args.kv,
        ..Default::default()
    };
    let engine = Engine::load(Arc::new(model), opts)
        .with_context(|| format!("cannot run model {}", path.display()))?;
    Ok((engine, t.elapsed().as_secs_f64() * 1e3))
}

/// The context budget: `--ctx` if given (must fit the model), else min(2048, model's).
pub fn context(engine: &Engine, ctx: Option<usize>) -> usize {
    ctx.unwrap_or_else(|| engine.hparams().context_length.min(2048))
}

/// Parse `--prompt-ids "1 9690 198"` (spaces and/or commas).
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .with_context(|| format!("--prompt-ids: {t:?} is not a token id"))
        })
        .collect()
}

/// Token ids of a prompt: the chat template around `text` unless `raw`.
pub fn prompt_ids(
    engine: &Engine,
    text: &str,
    raw: bool,
    system: Option<&str>,
) -> Result<Vec<u32>> {
    if text.is_empty() {
        bail!("empty prompt");
    }
    let rendered = if raw {
        text.to_string()
    } else {
        let tpl = ChatTemplate::from_model(engine.info().chat_template.as_deref())?;
        let mut msgs = Vec::new();
        if let Some(s) = system {
            msgs.push(ChatMessage::new(Role::System, s));
        }
        msgs.push(ChatMessage::new(Role::User, text));
        tpl.render(&msgs, true)
    };
    Ok(engine.tokenize(&rendered, engine.info().add_bos)?)
}

/// Token ids of a conversation read from a JSON file, ending with the assistant prompt.
fn conversation_ids(engine: &Engine, path: &Path) -> Result<Vec<u32>> {
    #[derive(serde::Deserialize)]
    struct Msg {
        role: String,
        content: String,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let msgs: Vec<Msg> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected [{{\"role\": …, \"content\": …}}]",
            path.display()
        )
    })?;
    if msgs.is_empty() {
        bail!("empty prompt: {} holds no messages", path.display());
    }
    let msgs = msgs
        .into_iter()
        .map(|m| Ok(ChatMessage::new(m.role.parse::<Role>()?, m.content)))
        .collect::<Result<Vec<_>>>()?;
    let tpl = ChatTemplate::from_model(engine.info().chat_template.as_deref())?;
    Ok(engine.tokenize(&tpl.render(&msgs, true), engine.info().add_bos)?)
}

/// Arguments of `hearth run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Model file (.hearth).
    pub model: PathBuf,
    /// Prompt text (wrapped in the chat template unless --raw).
    #[arg(
        short = 'p',
        long = "prompt",
        conflicts_with_all = ["prompt_ids", "messages"],
        required_unless_present_any = ["prompt_ids", "messages"]
    )]
    pub prompt: Option<String>,
    /// Prompt as token ids, e.g. "1 9690 198" (fed as is).
    #[arg(long, conflicts_with = "messages")]
    pub prompt_ids: Option<String>,
    /// A conversation to continue: JSON file with `[{"role": "user", "content": "…"}, …]`
    /// (roles: system, user, assistant).
    #[arg(long)]
    pub messages: Option<PathBuf>,
    /// Skip the chat template.
    #[arg(long)]
    pub raw: bool,
    /// System message for the chat template (default: the model's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n: usize,
    /// Context budget in tokens (default: min(2048, the model's)).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Stop when this text appears (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub board: super::board::BoardArgs,
}

/// Run `hearth run`.
pub fn run(a: RunArgs) -> Result<()> {
    let mut sampler = a.sampling.sampler()?;
    // Before anything is loaded: a board too small for this model and context fails here.
    let ctx = a.board.check(&a.model, a.ctx, &a.engine)?;
    let (engine, _) = load_engine(&a.model, &a.engine)?;
    let prompt = match (&a.prompt, &a.prompt_ids, &a.messages) {
        (_, Some(ids), _) => parse_ids(ids)?,
        (Some(text), None, _) => prompt_ids(&engine, text, a.raw, a.system.as_deref())?,
        (None, None, Some(path)) => conversation_ids(&engine, path)?,
        (None, None, None) => {
            bail!("give a prompt with -p TEXT, --prompt-ids \"…\" or --messages FILE")
        }
    };
    if prompt.is_empty() {
        bail!("empty prompt");
    }
    let mut session = engine.new_session(context(&engine, ctx))?;
    let opts = GenerateOptions {
        max_tokens: a.n,
        stop_strings: a.stop.clone(),
        stop_ids: a.ignore_eos.then(Vec::new),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut io_err = None;
    let g = generate(&mut session, &prompt, &mut sampler, &opts, |piece, _| {
        if a.json {
            return ControlFlow::Continue(());
        }
        match out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                io_err = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = io_err {
        return Err(e).context("writing to stdout");
    }
    if a.json {
        let v = serde_json::json!({
            "prompt_ids": prompt,
            "ids": g.ids,
            "text": g.text,
            "prompt_ms": g.prompt_ms,
            "gen_ms": g.gen_ms,
            "tokens_per_s": g.tokens_per_s(),
            "stop": format!("{:?}", g.stop),
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out)?;
        let prompt_tps = prompt.len() as f64 / (g.prompt_ms / 1e3);
        eprintln!(
            "prompt: {} tokens, {:.1} ms ({prompt_tps:.1} t/s); generated: {} tokens, {:.1} ms ({:.1} t/s); stop: {:?}",
            prompt.len(),
            g.prompt_ms,
            g.ids.len(),
            g.gen_ms,
            g.tokens_per_s(),
            g.stop
        );
        eprintln!(
            "session: {}-token context, {:.1} MiB KV cache + scratch (allocated up front), {} threads, {} kernels",
            session.capacity(),
            session.memory_bytes() as f64 / (1024.0 * 1024.0),
            engine.options().threads,
            engine.kernels().name().as_str()
        );
    }
    if g.stop == StopReason::ContextFull {
        eprintln!(
            "warning: the {}-token context is full; the output was cut (raise --ctx)",
            session.capacity()
        );
    }
    Ok(())
}
