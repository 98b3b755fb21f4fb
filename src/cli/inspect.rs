//! `hearth inspect FILE [--json] [--verify]`: what is inside a Hearth model file.
use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_runtime::model::format::VERSION;
use hearth_runtime::model::ModelFile;
use hearth_runtime::tokenizer::tables::{FLAG_IGNORE_MERGES, FLAG_NFC};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `hearth inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A Hearth model file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also check every checksum (reads the whole file); fails if any is wrong.
    #[arg(long)]
    pub verify: bool,
}

/// Number of tokens in a tokenizer.json (model vocabulary plus added tokens not in it).
fn token_count(json: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let vocab = v.get("model")?.get("vocab")?;
    let n = match vocab {
        serde_json::Value::Object(m) => m.len(),
        serde_json::Value::Array(a) => a.len(),
        _ => return None,
    };
    let added = v
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .map_or(0, |a| {
            a.iter()
                .filter(|t| {
                    t.get("id")
                        .and_then(|i| i.as_u64())
                        .is_some_and(|i| i as usize >= n)
                })
                .count()
        });
    Some(n + added)
}

pub fn run(args: InspectArgs) -> Result<()> {
    let m = ModelFile::open(&args.file)
        .with_context(|| format!("inspecting {}", args.file.display()))?;
    let c = m.config();
    let tok = m.tokenizer_json();
    let tokens = token_count(tok);
    let tables = m.tokenizer_tables().map(|t| *t.layout());
    let tables_json = tables.map(|t| {
        json!({
            "pre_tokenizer": t.pre.name(), "tokens": t.n_tokens, "merges": t.n_merges,
            "added_tokens": t.n_added, "nfc": t.flags & FLAG_NFC != 0,
            "ignore_merges": t.flags & FLAG_IGNORE_MERGES != 0,
            "bytes": m.header().tokenizer_tables.len,
        })
    });
    let weights: u64 = m
        .tensor_infos()
        .iter()
        .map(|t| (t.rows * t.cols) as u64)
        .sum();
    let tensor_bytes: u64 = m.tensor_infos().iter().map(|t| t.len as u64).sum();
    let bpw = |bytes: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            bytes as f64 * 8.0 / n as f64
        }
    };
    let bad = args.verify.then(|| m.verify());
    if args.json {
        let tensors: Vec<_> = m
            .tensor_infos()
            .iter()
            .map(|t| {
                json!({
                    "name": t.name, "format": t.format.name(), "rows": t.rows, "cols": t.cols,
                    "bytes": t.len, "offset": t.offset,
                    "bits_per_weight": bpw(t.len as u64, (t.rows * t.cols) as u64),
                })
            })
            .collect();
        let mut out = json!({
            "file": args.file,
            "format_version": m.header().version,
            "file_bytes": m.file_len(),
            "config": c,
            "tokenizer": { "bytes": tok.len(), "tokens": tokens, "tables": tables_json },
            // Older than what this hearth writes: re-converting gives a newer file
            // (scripts/fetch-models re-converts such models).
            "outdated": m.header().version < VERSION,
            "tensors": tensors,
            "totals": {
                "tensors": m.tensor_infos().len(),
                "weights": weights,
                "tensor_bytes": tensor_bytes,
                "bits_per_weight": bpw(tensor_bytes, weights),
                "file_bits_per_weight": bpw(m.file_len() as u64, weights),
            },
        });
        if let Some(bad) = &bad {
            out["verify"] = json!({ "ok": bad.is_empty(), "mismatches": bad });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} (Hearth model file v{})",
            args.file.display(),
            m.header().version
        );
        println!(
            "model      {} ({:?}), vocab {}, dim {}, {} layers, {} heads / {} kv heads × {}, ffn {}",
            c.name, c.arch, c.vocab_size, c.hidden_size, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim
        );
        println!(
            "           rope θ {} ({:?}), norm ε {:e}, context {}, tied embeddings {}, qkv bias {}",
            c.rope_theta, c.rope_style, c.norm_eps, c.context_length, c.tied_embeddings, c.qkv_bias
        );
        println!(
            "tokens     bos {:?}, eos {}, stop {:?}, add bos {}, chat template {}",
            c.bos_id,
            c.eos_id,
            c.stop_ids,
            c.add_bos,
            if c.chat_template.is_some() {
                "yes"
            } else {
                "no"
            }
        );
        let tokens = tokens.map_or("?".to_string(), |n| n.to_string());
        println!("tokenizer  {} tokens, {} bytes of JSON", tokens, tok.len());
        match &tables {
            Some(t) => println!(
                "           fast tables: pre-tokenizer {}, {} tokens, {} merges, {} added tokens{}{}, {} bytes",
                t.pre.name(),
                t.n_tokens,
                t.n_merges,
                t.n_added,
                if t.flags & FLAG_NFC != 0 { ", NFC" } else { "" },
                if t.flags & FLAG_IGNORE_MERGES != 0 { ", ignore merges" } else { "" },
                m.header().tokenizer_tables.len
            ),
            None => println!("           no fast tables (tokenized by the tokenizers crate)"),
        }
        println!();
        println!(
            "{:<28} {:<6} {:>14} {:>12} {:>6}",
            "tensor", "format", "shape", "bytes", "bpw"
        );
        for t in m.tensor_infos() {
            println!(
                "{:<28} {:<6} {:>14} {:>12} {:>6.2}",
                t.name,
                t.format.name(),
                format!("{}×{}", t.rows, t.cols),
                t.len,
                bpw(t.len as u64, (t.rows * t.cols) as u64)
            );
        }
        println!();
        println!(
            "total      {} tensors, {} weights, {} tensor bytes ({:.2} bpw); file {} bytes ({:.1} MiB, {:.2} bpw)",
            m.tensor_infos().len(),
            weights,
            tensor_bytes,
            bpw(tensor_bytes, weights),
            m.file_len(),
            m.file_len() as f64 / (1024.0 * 1024.0),
            bpw(m.file_len() as u64, weights)
        );
        if let Some(bad) = &bad {
            if bad.is_empty() {
                println!("verify     all checksums match");
            }
        }
    }
    if let Some(bad) = bad {
        if !bad.is_empty() {
            bail!(
                "checksum mismatch in {}: {}",
                args.file.display(),
                bad.join(", ")
            );
        }
    }
    Ok(())
}
