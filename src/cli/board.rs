//! Board profiles (`targets/*.toml`, compiled into the binary so a bundle knows its
//! boards) and the RAM check `hearth run --board NAME` / `--max-ram SIZE` makes before
//! loading anything: weights + KV cache + scratch against what the board leaves free.
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_runtime::llm::{EngineOptions, MemoryEstimate};
use hearth_runtime::model::ModelFile;
use serde::Deserialize;

use super::run::EngineArgs;

/// The profiles, by file name.
const PROFILES: &[(&str, &str)] = &[
    ("pi5", include_str!("../../targets/pi5.toml")),
    ("pi4", include_str!("../../targets/pi4.toml")),
    ("pi-armv7", include_str!("../../targets/pi-armv7.toml")),
    ("pi-zero-2w", include_str!("../../targets/pi-zero-2w.toml")),
    (
        "jetson-orin",
        include_str!("../../targets/jetson-orin.toml"),
    ),
    ("x86-64-v3", include_str!("../../targets/x86-64-v3.toml")),
];

/// The fields of a profile this command uses (targets/README.md describes them all).
#[derive(Debug, Deserialize)]
pub struct Board {
    /// Profile name.
    pub name: String,
    /// Suggested context size.
    pub ctx: usize,
    /// The board's RAM.
    pub ram_mb: u64,
    /// RAM left to the OS and other programs.
    pub reserve_mb: u64,
}

impl Board {
    /// The named profile.
    pub fn named(name: &str) -> Result<Board> {
        let Some((_, text)) = PROFILES.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
            bail!("unknown board {name:?}; known boards: {}", names.join(", "));
        };
        toml::from_str(text).with_context(|| format!("targets/{name}.toml"))
    }

    /// Bytes the runtime may use.
    pub fn budget(&self) -> u64 {
        self.ram_mb.saturating_sub(self.reserve_mb) << 20
    }
}

/// `--board` / `--max-ram`.
#[derive(Args, Debug, Clone)]
pub struct BoardArgs {
    /// Board profile (targets/): its RAM bounds what may be loaded and its context
    /// size is the default. pi5, pi4, pi-armv7, pi-zero-2w, jetson-orin, x86-64-v3.
    #[arg(long)]
    pub board: Option<String>,
    /// Refuse to load when the model would need more RAM than this (e.g. 512M, 2G).
    #[arg(long, value_parser = parse_size)]
    pub max_ram: Option<u64>,
}

impl BoardArgs {
    /// Checks the model at `path` with a context of `ctx` (or the board's) against the
    /// limits given, before it is loaded; returns the context to use.
    pub fn check(
        &self,
        path: &Path,
        ctx: Option<usize>,
        engine: &EngineArgs,
    ) -> Result<Option<usize>> {
        let board = self.board.as_deref().map(Board::named).transpose()?;
        let ctx = ctx.or(board.as_ref().map(|b| b.ctx));
        let mut limits = Vec::new();
        if let Some(b) = &board {
            limits.push((
                b.budget(),
                format!(
                    "board {} ({} MB RAM, {} MB left to the system)",
                    b.name, b.ram_mb, b.reserve_mb
                ),
            ));
        }
        if let Some(m) = self.max_ram {
            limits.push((m, "--max-ram".to_string()));
        }
        if limits.is_empty() {
            return Ok(ctx);
        }
        let model = ModelFile::open(path)
            .with_context(|| format!("cannot load model {}", path.display()))?;
        let opts = EngineOptions {
            threads: engine.threads,
            kv_type: engine.kv,
            ..Default::default()
        };
        let c = ctx.unwrap_or_else(|| model.config().context_length.min(2048));
        let est = MemoryEstimate::for_model(&model, c, &opts)?;
        for (limit, what) in limits {
            est.check(limit, &what)?;
        }
        Ok(ctx)
    }
}

/// `512M`, `2G`, `1.5GiB`, `65536` (bytes).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512M or 2G"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M or G)")),
    };
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses_and_leaves_ram() {
        for (name, _) in PROFILES {
            let b = Board::named(name).unwrap();
            assert_eq!(b.name, *name);
            assert!(b.budget() > 0 && b.ctx > 0, "{name}");
        }
        assert!(Board::named("pi-zero")
            .unwrap_err()
            .to_string()
            .contains("known boards: pi5"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3T").is_err());
    }
}
