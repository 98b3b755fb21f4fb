//! `hearth`: the command-line interface. Argument parsing and printing only; the work
//! is done by `hearth-runtime`.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Hearth: an offline, on-device voice assistant runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show which kernel set this CPU uses (honours HEARTH_KERNELS).
    Kernels,
    /// Convert a GGUF file or a Hugging Face safetensors folder to a Hearth model file.
    Convert(cli::convert::ConvertArgs),
    /// Show what is inside a Hearth model file.
    Inspect(cli::inspect::InspectArgs),
    /// Match sentences (stdin, one per line) to Home Assistant intents; JSON lines out.
    Intent(cli::intent::IntentArgs),
    /// Generate text from a prompt (streams to stdout).
    Run(cli::run::RunArgs),
    /// Chat interactively (one user turn per stdin line).
    Chat(cli::chat::ChatArgs),
    /// Measure prompt and generation speed.
    Bench(cli::bench::BenchArgs),
    /// Perplexity of a text file (llama.cpp's method).
    Perplexity(cli::perplexity::PerplexityArgs),
    #[cfg(feature = "whisper")]
    /// The assistant: spoken commands (audio files or the microphone) or text → intent →
    /// actions → response.
    Assist(cli::assist::AssistArgs),
    /// Speech-to-text of audio files with a Whisper model.
    #[cfg(feature = "whisper")]
    Transcribe(cli::transcribe::Args),
    /// Live speech-to-text from the microphone: prints each utterance as it is recognised.
    #[cfg(feature = "mic")]
    Listen(cli::listen::Args),
    /// List the audio input devices (the default marked with *).
    #[cfg(feature = "mic")]
    Devices(cli::devices::Args),
    /// Whisper model tools (import a faster-whisper model).
    Whisper(cli::whisper::Args),
    #[cfg(feature = "serve")]
    /// Serve speech, intents and the LLM over Wyoming (Home Assistant) and an OpenAI-style HTTP API.
    Serve(cli::serve::ServeArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Kernels => {
            let k = hearth_quant::Kernels::detect()?;
            println!("{}", k.name().as_str());
        }
        Command::Convert(args) => cli::convert::run(args)?,
        Command::Inspect(args) => cli::inspect::run(args)?,
        Command::Intent(args) => cli::intent::run(&args)?,
        Command::Run(a) => cli::run::run(a)?,
        Command::Chat(a) => cli::chat::run(a)?,
        Command::Bench(a) => cli::bench::run(a)?,
        Command::Perplexity(a) => cli::perplexity::run(a)?,
        #[cfg(feature = "whisper")]
        Command::Assist(a) => cli::assist::run(a)?,
        #[cfg(feature = "whisper")]
        Command::Transcribe(args) => cli::transcribe::run(args)?,
        #[cfg(feature = "mic")]
        Command::Listen(args) => cli::listen::run(args)?,
        #[cfg(feature = "mic")]
        Command::Devices(args) => cli::devices::run(args)?,
        Command::Whisper(args) => cli::whisper::run(args)?,
        #[cfg(feature = "serve")]
        Command::Serve(args) => cli::serve::run(args)?,
    }
    Ok(())
}
