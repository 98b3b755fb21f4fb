//! Rebuilds a Hugging Face `tokenizer.json` from GGUF tokenizer metadata.
//!
//! GGUF stores the vocabulary (`tokenizer.ggml.tokens`), the BPE merges, per-token
//! types and the special ids, plus the *name* of the pre-tokenizer
//! (`tokenizer.ggml.pre`) rather than its definition. The pre-tokenizer for each
//! supported name is written out here to match what the original model's
//! tokenizer.json (and llama.cpp) do for that name.
//!
//! The BOS token is deliberately not added by the tokenizer: whether to add it is
//! model configuration (`tokenizer.ggml.add_bos_token`), handled by the engine.
use std::collections::HashMap;

use serde_json::{json, Value};

use super::GgufFile;
use crate::{Error, Result};

/// `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The GPT-2 split regex with single digits (Qwen2): a letter run may take one
/// leading non-letter, non-digit character; every digit is its own piece.
pub const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Llama 3's split regex: as Qwen2's, with digits grouped in runs of up to three.
pub const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn err(msg: impl Into<String>) -> Error {
    Error::Format(format!("gguf tokenizer: {}", msg.into()))
}

/// The pre-tokenizer names this module knows.
const SUPPORTED_PRE: &[&str] = &["smollm", "qwen2", "llama-bpe", "gpt-2"];

/// Normalizer, pre-tokenizer and decoder for a `tokenizer.ggml.pre` name.
fn pipeline(pre: &str) -> Result<(Value, Value, Value)> {
    // ByteLevel with its built-in GPT-2 regex.
    let byte_level_regex = json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true
    });
    // ByteLevel after an explicit Split: maps bytes to the printable alphabet only.
    let byte_level_plain = json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false
    });
    let split = |regex: &str| {
        json!({
            "type": "Split", "pattern": { "Regex": regex },
            "behavior": "Isolated", "invert": false
        })
    };
    let decoder = byte_level_plain.clone();
    Ok(match pre {
        // SmolLM / StarCoder family: every digit alone, then the GPT-2 regex.
        "smollm" => (
            Value::Null,
            json!({ "type": "Sequence", "pretokenizers": [
                { "type": "Digits", "individual_digits": true },
                byte_level_regex,
            ]}),
            decoder,
        ),
        "gpt-2" => (Value::Null, byte_level_regex, decoder),
        // Qwen2 normalizes to NFC before splitting.
        "qwen2" => (
            json!({ "type": "NFC" }),
            json!({ "type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level_plain] }),
            decoder,
        ),
        "llama-bpe" => (
            Value::Null,
            json!({ "type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level_plain] }),
            decoder,
        ),
        other => {
            return Err(err(format!(
                "pre-tokenizer '{other}' (tokenizer.ggml.pre) is not supported; supported: {}",
                SUPPORTED_PRE.join(", ")
            )))
        }
    })
}

/// Builds a `tokenizers`-crate tokenizer.json for the file's tokenizer.
///
/// Supports `tokenizer.ggml.model = "gpt2"` (byte-level BPE) with the pre-tokenizers
/// `smollm`, `qwen2`, `llama-bpe` and `gpt-2`. Control tokens (`token_type` 3) become
/// special added tokens, user-defined ones (4) non-special added tokens, so both are
/// matched whole in input text.
pub fn tokenizer_json(gguf: &GgufFile) -> Result<String> {
    let model = gguf.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(err(format!(
            "tokenizer model '{model}' is not supported (only 'gpt2' byte-level BPE)"
        )));
    }
    let pre = gguf.get_str("tokenizer.ggml.pre")?;
    let (normalizer, pre_tokenizer, decoder) = pipeline(pre)?;

    let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let mut vocab = serde_json::Map::with_capacity(n);
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (id, &tok) in tokens.iter().enumerate() {
        if let Some(first) = seen.insert(tok, id) {
            return Err(err(format!(
                "token {tok:?} appears twice (ids {first} and {id})"
            )));
        }
        vocab.insert(tok.to_owned(), json!(id));
    }

    let merges = gguf
        .get_str_array("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            split_merge(m).map(|(a, b)| json!([a, b])).ok_or_else(|| {
                err(format!(
                    "merge #{i} {m:?} is not two tokens separated by a space"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let types: Vec<i64> = match gguf.get("tokenizer.ggml.token_type") {
        None => vec![1; n],
        Some(v) => {
            let a = v
                .as_array()
                .ok_or_else(|| err("tokenizer.ggml.token_type is not an array"))?;
            if a.len() != n {
                return Err(err(format!(
                    "tokenizer.ggml.token_type has {} entries for {n} tokens",
                    a.len()
                )));
            }
            a.iter()
                .map(|t| {
                    t.as_i64()
                        .ok_or_else(|| err("tokenizer.ggml.token_type holds a non-integer"))
                })
                .collect::<Result<_>>()?
        }
    };
    let added_tokens: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED)
        .map(|(id, (&tok, &ty))| {
            json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == TOKEN_TYPE_CONTROL
            })
        })
        .collect();

    // Special ids must name real tokens, so a bad file fails here, not at run time.
    for key in ["bos", "eos", "padding", "unknown"] {
        let key = format!("tokenizer.ggml.{key}_token_id");
        if let Some(v) = gguf.get(&key) {
            match v.as_u64() {
                Some(id) if (id as usize) < n => {}
                _ => {
                    return Err(err(format!(
                        "{key} = {v:?} is not a token id (vocab size {n})"
                    )))
                }
            }
        }
    }
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false
        },
        "decoder": decoder,
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges,
        },
    });
    serde_json::to_string(&doc).map_err(|e| err(format!("serializing tokenizer.json: {e}")))
}

/// Splits a GGUF merge `"a b"` into its two tokens. The separator is the first
/// space after the first character, so a merge whose left token is itself a space
/// still splits correctly (as llama.cpp does).
fn split_merge(m: &str) -> Option<(&str, &str)> {
    let first = m.chars().next()?;
    let at = m[first.len_utf8()..].find(' ')? + first.len_utf8();
    let (a, b) = (&m[..at], &m[at + 1..]);
    (!b.is_empty()).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::split_merge;

    #[test]
    fn merges_split_at_the_first_space_after_the_first_char() {
        assert_eq!(split_merge("Ġ t"), Some(("Ġ", "t")));
        assert_eq!(split_merge("  x"), Some((" ", "x")));
        assert_eq!(split_merge("ab cd ef"), Some(("ab", "cd ef")));
        assert_eq!(split_merge("abc"), None);
        assert_eq!(split_merge("ab "), None);
        assert_eq!(split_merge(""), None);
    }
}
