//! `hearth whisper import`: a faster-whisper (CTranslate2) model → whisper.cpp's ggml file.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Subcommand};

/// Whisper (speech-to-text) model tools.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: WhisperCommand,
}

#[derive(Subcommand)]
enum WhisperCommand {
    /// Convert a faster-whisper/CTranslate2 model directory (model.bin + tokenizer.json),
    /// or copy a ready ggml .bin after checking it, into a whisper.cpp model file.
    Import {
        /// CTranslate2 model directory, or a ggml whisper .bin.
        #[arg(long)]
        from: PathBuf,
        /// Output file (default: $HEARTH_HOME/models/ggml-tiny.en.bin).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        WhisperCommand::Import { from, output } => {
            let out = output.unwrap_or_else(super::transcribe::default_model);
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let h = hearth_runtime::voice::import_whisper(&from, &out)
                .with_context(|| format!("importing {}", from.display()))?;
            eprintln!(
                "whisper model: {} audio layers × {}, {} text layers, vocab {}",
                h.n_audio_layer, h.n_audio_state, h.n_text_layer, h.n_vocab
            );
            println!("{}", out.display());
            Ok(())
        }
    }
}
