//! `hearth chat`: an interactive conversation on stdin/stdout. The session keeps its
//! KV cache between turns, so each turn only runs its new tokens.
use super::run::{context, load_engine, EngineArgs, SamplingArgs};
use anyhow::{Context, Result};
use clap::Args;
use hearth_runtime::llm::{generate, ChatMessage, ChatTemplate, GenerateOptions, Role, StopReason};
use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;

/// Arguments of `hearth chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Model file (.hearth).
    pub model: PathBuf,
    /// System message (default: the model's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n: usize,
    /// Context budget in tokens for the whole conversation.
    #[arg(long)]
    pub ctx: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Run `hearth chat`: each stdin line is a user turn; replies go to stdout, one
/// per turn, followed by an empty line. EOF ends the chat.
pub fn run(a: ChatArgs) -> Result<()> {
    let mut sampler = a.sampling.sampler()?;
    let (engine, _) = load_engine(&a.model, &a.engine)?;
    let tpl = ChatTemplate::from_model(engine.info().chat_template.as_deref())?;
    let mut session = engine.new_session(context(&engine, a.ctx))?;
    let mut messages: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage::new(Role::System, s.clone()));
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = String::new();
    loop {
        if interactive {
            eprint!("> ");
        }
        line.clear();
        if lines
            .read_line(&mut line)
            .context("reading stdin (it must be UTF-8 text)")?
            == 0
        {
            break;
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        messages.push(ChatMessage::new(Role::User, text));
        let ids = engine.tokenize(&tpl.render(&messages, true), engine.info().add_bos)?;
        let opts = GenerateOptions {
            max_tokens: a.n,
            ..Default::default()
        };
        let g = generate(&mut session, &ids, &mut sampler, &opts, |piece, _| {
            // A closed stdout ends the reply (and the chat, below).
            if out
                .write_all(piece.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        writeln!(out)?;
        writeln!(out)?;
        out.flush()?;
        tracing::info!(
            "turn: {} prompt tokens run ({} cached), {} generated, {:.1} t/s",
            g.prompt_tokens_run,
            ids.len() - g.prompt_tokens_run,
            g.ids.len(),
            g.tokens_per_s()
        );
        match g.stop {
            StopReason::ContextFull => anyhow::bail!(
                "context full: the conversation used all {} tokens (raise --ctx)",
                session.capacity()
            ),
            StopReason::Cancelled => break,
            _ => {}
        }
        messages.push(ChatMessage::new(Role::Assistant, g.text));
    }
    Ok(())
}
