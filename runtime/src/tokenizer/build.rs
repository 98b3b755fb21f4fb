//! Tokenizer tables from a `tokenizer.json` (conversion time; speed does not matter
//! here, exactness does).
//!
//! Only pipelines the fast tokenizer reproduces exactly get tables; anything else is
//! [`Built::Unsupported`] and the model keeps using the `tokenizers` crate. The
//! vocabulary and the added tokens' ids are taken from the `tokenizers` crate itself
//! (it decides the ids of added tokens), the merges and pipeline from the JSON.
use super::pretok::PreTokenizer;
use super::tables::{TablesWriter, FLAG_IGNORE_MERGES, FLAG_NFC};
use crate::gguf::{LLAMA3_REGEX, QWEN2_REGEX};
use crate::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use tokenizers::models::ModelWrapper;
use tokenizers::Model;

/// Result of [`build_tables`].
#[derive(Debug)]
pub enum Built {
    /// The tables' bytes.
    Tables(Vec<u8>),
    /// Why this tokenizer gets no tables.
    Unsupported(String),
}

/// GPT-2's byte → printable char mapping (the `ByteLevel` alphabet).
pub fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    map
}

/// Decoded bytes of a token string as the `ByteLevel` decoder gives them: every char
/// mapped back to its byte, or the string's own UTF-8 if any char is outside the
/// alphabet. `None` in the second case (the token cannot come out of byte-level BPE).
fn byte_level_decode(s: &str, char_to_byte: &HashMap<char, u8>) -> (Vec<u8>, bool) {
    match s.chars().map(|c| char_to_byte.get(&c).copied()).collect() {
        Some(b) => (b, true),
        None => (s.as_bytes().to_vec(), false),
    }
}

fn ty(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

/// `ByteLevel` with no prefix space and the given `use_regex`.
fn is_byte_level(v: &Value, use_regex: bool) -> bool {
    ty(v) == "ByteLevel"
        && v.get("add_prefix_space").and_then(Value::as_bool) == Some(false)
        && v.get("use_regex").and_then(Value::as_bool) == Some(use_regex)
}

/// The pre-tokenizer a `pre_tokenizer` JSON value is equivalent to.
fn pre_tokenizer(v: &Value) -> Option<PreTokenizer> {
    if is_byte_level(v, true) {
        return Some(PreTokenizer::Gpt2);
    }
    let seq = match (ty(v), v.get("pretokenizers").and_then(Value::as_array)) {
        ("Sequence", Some(s)) if s.len() == 2 => s,
        _ => return None,
    };
    let (first, second) = (&seq[0], &seq[1]);
    if ty(first) == "Digits"
        && first.get("individual_digits").and_then(Value::as_bool) == Some(true)
        && is_byte_level(second, true)
    {
        return Some(PreTokenizer::SmolLm);
    }
    let regex = first
        .get("pattern")
        .and_then(|p| p.get("Regex"))
        .and_then(Value::as_str);
    let split_ok = ty(first) == "Split"
        && first.get("behavior").and_then(Value::as_str) == Some("Isolated")
        && first.get("invert").and_then(Value::as_bool) == Some(false)
        && is_byte_level(second, false);
    match regex {
        Some(r) if split_ok && r == QWEN2_REGEX => Some(PreTokenizer::Qwen2),
        Some(r) if split_ok && r == LLAMA3_REGEX => Some(PreTokenizer::Llama3),
        _ => None,
    }
}

/// Merges as `(left, right)` strings, as the `tokenizers` crate reads them.
fn merges(model: &Value) -> Option<Vec<(String, String)>> {
    let list = model.get("merges")?.as_array()?;
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        match m {
            Value::String(s) if s.starts_with("#version") => {}
            Value::String(s) => {
                let parts: Vec<&str> = s.split(' ').collect();
                if parts.len() != 2 {
                    return None;
                }
                out.push((parts[0].to_owned(), parts[1].to_owned()));
            }
            Value::Array(p) if p.len() == 2 => {
                out.push((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned()));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Tables for `json`, or why there are none. Errors only on tables too large for
/// the format.
pub fn build_tables(json: &str) -> Result<Built> {
    let unsupported = |why: &str| Ok(Built::Unsupported(why.to_owned()));
    let Ok(doc) = serde_json::from_str::<Value>(json) else {
        return unsupported("not JSON");
    };
    let model = &doc["model"];
    if ty(model) != "BPE" {
        return unsupported("not a BPE model");
    }
    let Some(pre) = pre_tokenizer(&doc["pre_tokenizer"]) else {
        return unsupported("pre-tokenizer not one of gpt-2, smollm, qwen2, llama-bpe");
    };
    let flags_nfc = match &doc["normalizer"] {
        Value::Null => 0,
        n if ty(n) == "NFC" => FLAG_NFC,
        _ => return unsupported("normalizer other than none or NFC"),
    };
    if ty(&doc["decoder"]) != "ByteLevel" {
        return unsupported("decoder is not ByteLevel");
    }
    let Some(merge_list) = merges(model) else {
        return unsupported("merges in an unknown form");
    };

    // A JSON the reference rejects gets no tables (the engine then reports the
    // tokenizers crate's error at load, as for any file without tables).
    let tok = match tokenizers::Tokenizer::from_str(json) {
        Ok(t) => t,
        Err(e) => {
            return Ok(Built::Unsupported(format!(
                "the tokenizers crate rejects it: {e}"
            )))
        }
    };
    let ModelWrapper::BPE(bpe) = tok.get_model() else {
        return unsupported("not a BPE model");
    };
    let plain = bpe.dropout.is_none_or(|d| d == 0.0)
        && bpe.unk_token.is_none()
        && bpe.continuing_subword_prefix.is_none()
        && bpe.end_of_word_suffix.is_none()
        && !bpe.byte_fallback;
    if !plain {
        return unsupported("BPE with dropout, unknown token, affixes or byte fallback");
    }
    let flags = flags_nfc
        | if bpe.ignore_merges {
            FLAG_IGNORE_MERGES
        } else {
            0
        };

    let vocab = bpe.get_vocab();
    let added = tok.get_added_tokens_decoder();
    let n = vocab
        .values()
        .chain(added.keys())
        .map(|&id| id as usize + 1)
        .max()
        .unwrap_or(0);
    let byte_char = byte_to_char();
    let char_to_byte: HashMap<char, u8> = byte_char
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect();

    let mut token_bytes = vec![Vec::new(); n];
    let mut vocab_ids = Vec::with_capacity(vocab.len());
    for (s, &id) in &vocab {
        let (b, byte_level) = byte_level_decode(s, &char_to_byte);
        token_bytes[id as usize] = b;
        if byte_level {
            vocab_ids.push(id);
        }
    }
    vocab_ids.sort_unstable();
    let mut added_tokens = Vec::with_capacity(added.len());
    for (&id, t) in &added {
        if t.single_word || t.lstrip || t.rstrip || t.normalized {
            return unsupported("added token with single_word, lstrip, rstrip or normalized");
        }
        if let Some(v) = bpe.id_to_token(id) {
            if v != t.content {
                return unsupported("added token shares an id with a different vocabulary token");
            }
        }
        // Decoding an added token gives its content through the ByteLevel decoder.
        token_bytes[id as usize] = byte_level_decode(&t.content, &char_to_byte).0;
        if !t.content.is_empty() {
            added_tokens.push((id, t.content.as_bytes().to_vec()));
        }
    }

    let mut byte_ids = [u32::MAX; 256];
    for (b, c) in byte_char.iter().enumerate() {
        if let Some(&id) = vocab.get(&c.to_string()) {
            byte_ids[b] = id;
        }
    }
    let mut merge_rows = Vec::with_capacity(merge_list.len());
    for (rank, (a, b)) in merge_list.iter().enumerate() {
        // The tokenizers crate accepted these merges, so all three tokens exist.
        let id = |s: &str| {
            vocab
                .get(s)
                .copied()
                .ok_or_else(|| Error::Format(format!("merge token {s:?} is not in the vocabulary")))
        };
        merge_rows.push((id(a)?, id(b)?, rank as u32, id(&format!("{a}{b}"))?));
    }
    TablesWriter {
        pre,
        flags,
        token_bytes,
        vocab_ids,
        merges: merge_rows,
        added: added_tokens,
        byte_ids,
    }
    .to_bytes()
    .map(Built::Tables)
}
