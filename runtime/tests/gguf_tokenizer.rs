//! tokenizer.json from GGUF metadata, on synthetic vocabularies: the pre-tokenizer of
//! each supported `tokenizer.ggml.pre`, special tokens, and errors for what is not
//! supported. (The real SmolLM2 tokenizer is tested in `gguf_smollm2.rs`.)
use std::str::FromStr;

use hearth_runtime::gguf::write::GgufBuilder;
use hearth_runtime::gguf::{tokenizer_json, GgufFile, MetaValue};
use tokenizers::Tokenizer;

/// GPT-2's byte-to-character map used by byte-level BPE: printable Latin-1 bytes map
/// to themselves, the others to U+0100 upwards in byte order.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 0x100;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

/// Token types: 1 normal, 3 control, 4 user-defined.
struct Vocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
}

impl Vocab {
    /// All 256 byte tokens, then `<|endoftext|>` and `<|im_start|>` (control) and
    /// `<tool_call>` (user-defined), then one token per merge.
    fn new(merges: &[(&str, &str)]) -> Vocab {
        let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
        let mut types = vec![1; 256];
        for (t, ty) in [
            ("<|endoftext|>", 3),
            ("<|im_start|>", 3),
            ("<tool_call>", 4),
        ] {
            tokens.push(t.to_owned());
            types.push(ty);
        }
        for (a, b) in merges {
            tokens.push(format!("{a}{b}"));
            types.push(1);
        }
        let merges = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
        Vocab {
            tokens,
            types,
            merges,
        }
    }

    fn id(&self, token: &str) -> u32 {
        self.tokens.iter().position(|t| t == token).unwrap() as u32
    }

    fn builder(&self, pre: &str) -> GgufBuilder {
        let strs = |v: &[String]| MetaValue::Array(v.iter().cloned().map(MetaValue::Str).collect());
        GgufBuilder::new()
            .meta("tokenizer.ggml.model", MetaValue::Str("gpt2".into()))
            .meta("tokenizer.ggml.pre", MetaValue::Str(pre.into()))
            .meta("tokenizer.ggml.tokens", strs(&self.tokens))
            .meta(
                "tokenizer.ggml.token_type",
                MetaValue::Array(self.types.iter().map(|&t| MetaValue::I32(t)).collect()),
            )
            .meta("tokenizer.ggml.merges", strs(&self.merges))
            .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(256))
    }

    fn tokenizer(&self, pre: &str) -> Tokenizer {
        let g = GgufFile::from_bytes(self.builder(pre).to_bytes()).unwrap();
        Tokenizer::from_str(&tokenizer_json(&g).unwrap()).unwrap()
    }
}

/// Merges that would join pieces across the boundaries some pre-tokenizers draw.
const MERGES: &[(&str, &str)] = &[
    ("a", "b"),
    ("$", "ab"),
    ("1", "2"),
    ("12", "3"),
    ("4", "5"),
    ("'", "S"),
    ("Ġ", "ab"),
];

fn tokens(tok: &Tokenizer, text: &str) -> Vec<String> {
    tok.encode(text, false).unwrap().get_tokens().to_vec()
}

#[test]
fn qwen2_pre_tokenizer() {
    let v = Vocab::new(MERGES);
    let tok = v.tokenizer("qwen2");
    // A letter run takes one leading punctuation character.
    assert_eq!(tokens(&tok, "$ab"), ["$ab"]);
    // Every digit stands alone.
    assert_eq!(tokens(&tok, "12345"), ["1", "2", "3", "4", "5"]);
    // Contractions are case-insensitive.
    assert_eq!(tokens(&tok, "'S"), ["'S"]);
    assert_eq!(tokens(&tok, " ab"), ["Ġab"]);
    // NFC: a decomposed é encodes like the composed one.
    assert_eq!(
        tok.encode("e\u{301}", false).unwrap().get_ids(),
        tok.encode("é", false).unwrap().get_ids()
    );
}

#[test]
fn smollm_and_gpt2_pre_tokenizers() {
    let v = Vocab::new(MERGES);
    let smollm = v.tokenizer("smollm");
    assert_eq!(tokens(&smollm, "$ab"), ["$", "ab"]);
    assert_eq!(tokens(&smollm, "12345"), ["1", "2", "3", "4", "5"]);
    assert_eq!(tokens(&smollm, "'S"), ["'", "S"]);
    assert_eq!(tokens(&smollm, " ab"), ["Ġab"]);
    // No normalizer: the decomposed form stays as it is.
    assert_ne!(
        smollm.encode("e\u{301}", false).unwrap().get_ids(),
        smollm.encode("é", false).unwrap().get_ids()
    );
    // GPT-2 keeps digit runs together.
    let gpt2 = v.tokenizer("gpt-2");
    assert_eq!(tokens(&gpt2, "12345"), ["123", "45"]);
    assert_eq!(tokens(&gpt2, "$ab"), ["$", "ab"]);
}

#[test]
fn llama_bpe_groups_digits_by_three() {
    let v = Vocab::new(MERGES);
    let tok = v.tokenizer("llama-bpe");
    assert_eq!(tokens(&tok, "12345"), ["123", "45"]);
    assert_eq!(tokens(&tok, "$ab"), ["$ab"]);
    assert_eq!(tokens(&tok, "'S"), ["'S"]);
}

#[test]
fn control_and_user_defined_tokens() {
    let v = Vocab::new(MERGES);
    for pre in ["smollm", "qwen2", "llama-bpe", "gpt-2"] {
        let tok = v.tokenizer(pre);
        let text = "<|im_start|>ab<tool_call>12<|endoftext|>";
        let enc = tok.encode(text, false).unwrap();
        let im_start = v.id("<|im_start|>");
        assert_eq!(enc.get_ids()[0], im_start, "{pre}");
        assert!(enc.get_ids().contains(&v.id("<tool_call>")), "{pre}");
        assert_eq!(
            *enc.get_ids().last().unwrap(),
            v.id("<|endoftext|>"),
            "{pre}"
        );
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text, "{pre}");
        // Control tokens are special (skippable); user-defined ones are not.
        assert_eq!(
            tok.decode(enc.get_ids(), true).unwrap(),
            "ab<tool_call>12",
            "{pre}"
        );
        // Every byte round-trips.
        let all: String = (1u8..128).map(char::from).collect::<String>() + "ü€😀\u{0}";
        let enc = tok.encode(all.as_str(), false).unwrap();
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), all, "{pre}");
    }
}

fn build_err(b: GgufBuilder) -> String {
    let g = GgufFile::from_bytes(b.to_bytes()).unwrap();
    tokenizer_json(&g).unwrap_err().to_string()
}

#[test]
fn unsupported_or_broken_tokenizers_are_clear_errors() {
    let v = Vocab::new(MERGES);
    assert_eq!(
        build_err(v.builder("deepseek-llm")),
        "gguf tokenizer: pre-tokenizer 'deepseek-llm' (tokenizer.ggml.pre) is not supported; \
         supported: smollm, qwen2, llama-bpe, gpt-2"
    );
    let b = v
        .builder("qwen2")
        .meta("tokenizer.ggml.model", MetaValue::Str("llama".into()));
    // The builder writes both keys; the reader rejects the duplicate first.
    let e = GgufFile::from_bytes(b.to_bytes()).unwrap_err().to_string();
    assert_eq!(e, "gguf: duplicate metadata key 'tokenizer.ggml.model'");
    let b = GgufBuilder::new()
        .meta("tokenizer.ggml.model", MetaValue::Str("llama".into()))
        .meta("tokenizer.ggml.pre", MetaValue::Str("default".into()));
    assert_eq!(
        build_err(b),
        "gguf tokenizer: tokenizer model 'llama' is not supported (only 'gpt2' byte-level BPE)"
    );
    let b = GgufBuilder::new()
        .meta("tokenizer.ggml.model", MetaValue::Str("gpt2".into()))
        .meta("tokenizer.ggml.pre", MetaValue::Str("qwen2".into()));
    assert_eq!(
        build_err(b),
        "gguf: metadata key 'tokenizer.ggml.tokens' is missing"
    );

    let mut dup = Vocab::new(MERGES);
    let last = dup.tokens.len() - 1;
    dup.tokens[last] = "ab".into();
    let e = build_err(dup.builder("qwen2"));
    assert!(
        e.starts_with("gguf tokenizer: token \"ab\" appears twice (ids "),
        "{e}"
    );

    let mut bad = Vocab::new(MERGES);
    bad.merges[1] = "$ab".into();
    assert_eq!(
        build_err(bad.builder("qwen2")),
        "gguf tokenizer: merge #1 \"$ab\" is not two tokens separated by a space"
    );

    let mut short = Vocab::new(MERGES);
    short.types.pop();
    let e = build_err(short.builder("qwen2"));
    assert_eq!(
        e,
        format!(
            "gguf tokenizer: tokenizer.ggml.token_type has {} entries for {} tokens",
            v.tokens.len() - 1,
            v.tokens.len()
        )
    );

    let b = v
        .builder("qwen2")
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(99_999));
    assert_eq!(
        build_err(b),
        format!("gguf tokenizer: tokenizer.ggml.bos_token_id = U32(99999) is not a token id (vocab size {})", v.tokens.len())
    );
}
