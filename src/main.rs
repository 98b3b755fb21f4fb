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
    /// Speech-to-text of audio files with a Whisper model.
    Transcribe(cli::transcribe::Args),
    /// Whisper model tools (import a faster-whisper model).
    Whisper(cli::whisper::Args),
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
        Command::Transcribe(args) => cli::transcribe::run(args)?,
        Command::Whisper(args) => cli::whisper::run(args)?,
    }
    Ok(())
}
