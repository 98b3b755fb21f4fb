//! The fast tokenizer (`hearth_runtime::tokenizer`) against its reference, the
//! `tokenizers` crate, on real data: SmolLM2's tokenizer (rebuilt from the GGUF
//! fetched by `scripts/fetch-models`) on the golden prompt, the whole perplexity
//! text, every string of the Home Assistant intents data, edge cases and random
//! Unicode; the Qwen2 and Llama 3 splitters against fancy-regex with the same
//! patterns; the Unicode classes against regex-syntax's.
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use hearth_runtime::gguf::{tokenizer_json, GgufFile, LLAMA3_REGEX, QWEN2_REGEX};
use hearth_runtime::tokenizer::pretok::{is_letter, is_number, is_space};
use hearth_runtime::tokenizer::{build_tables, Bpe, Built, PreTokenizer};
use proptest::prelude::*;
use serde_json::Value;
use tokenizers::Tokenizer;

fn hearth_home() -> PathBuf {
    std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth")
        })
}

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// SmolLM2's tokenizer.json as the GGUF importer builds it.
fn smollm2_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let path = hearth_home().join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            path.exists(),
            "{} is missing: run scripts/fetch-models",
            path.display()
        );
        tokenizer_json(&GgufFile::open(&path).unwrap()).unwrap()
    })
}

/// A reference tokenizer and the tables built from the same JSON.
struct Pair {
    reference: Tokenizer,
    tables: Vec<u8>,
}

impl Pair {
    fn new(json: &str) -> Pair {
        let tables = match build_tables(json).unwrap() {
            Built::Tables(t) => t,
            Built::Unsupported(why) => panic!("no tables: {why}"),
        };
        Pair {
            reference: Tokenizer::from_str(json).unwrap(),
            tables,
        }
    }

    fn bpe(&self) -> Bpe<'_> {
        Bpe::parse(&self.tables).unwrap()
    }

    fn reference_ids(&self, text: &str) -> Vec<u32> {
        self.reference
            .encode(text, false)
            .unwrap()
            .get_ids()
            .to_vec()
    }

    /// Same ids as the reference, and the same text back from them.
    fn check(&self, text: &str) -> Result<(), TestCaseError> {
        let bpe = self.bpe();
        let ids = bpe.encode(text);
        prop_assert_eq!(&ids, &self.reference_ids(text), "text: {:?}", text);
        let back = bpe.decode(&ids);
        prop_assert_eq!(&back, &self.reference.decode(&ids, false).unwrap());
        Ok(())
    }

    fn assert_same(&self, text: &str) {
        self.check(text).unwrap();
    }
}

fn smollm2() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| Pair::new(smollm2_json()))
}

/// SmolLM2's vocabulary with another GGUF pre-tokenizer's pipeline (as
/// `gguf/tokenizer.rs` writes it for `tokenizer.ggml.pre = name`).
fn smollm2_with(normalizer: Value, pre_tokenizer: Value) -> Pair {
    let mut doc: Value = serde_json::from_str(smollm2_json()).unwrap();
    doc["normalizer"] = normalizer;
    doc["pre_tokenizer"] = pre_tokenizer;
    Pair::new(&doc.to_string())
}

fn split_then_bytes(regex: &str) -> Value {
    serde_json::json!({ "type": "Sequence", "pretokenizers": [
        { "type": "Split", "pattern": { "Regex": regex }, "behavior": "Isolated", "invert": false },
        { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false },
    ]})
}

fn qwen2() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        smollm2_with(
            serde_json::json!({"type": "NFC"}),
            split_then_bytes(QWEN2_REGEX),
        )
    })
}

fn llama3() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| smollm2_with(Value::Null, split_then_bytes(LLAMA3_REGEX)))
}

fn gpt2() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        smollm2_with(
            Value::Null,
            serde_json::json!({ "type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": false, "use_regex": true }),
        )
    })
}

const EDGE_CASES: &[&str] = &[
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "\r\n",
    " \n ",
    "\t\tx",
    "a  b   c    d",
    "trailing   ",
    "   leading",
    "x \u{a0} y\u{3000}z\u{2028}w\u{85}v",
    "I'm you're we've he'll she'd it's don't",
    "I'M YOU'RE WE'VE HE'LL SHE'D IT'S DON'T",
    "it\u{17f} 'ſ 'Ŝ 'K 'k",
    "'s's''s ' s 'ss",
    "12345 1,234.56 3.14159 007 x1y2z3",
    "٣٤٥ ۱۲۳ १२३ ① ½ Ⅻ ²³",
    "2024-12-03T21:53:20Z",
    "héllo wörld ñandú Ελληνικά кириллица",
    "e\u{301} a\u{30a} \u{212b} \u{fb01}",
    "日本語のテキスト、中文文本。한국어 텍스트",
    "🙂👍🏽 👨‍👩‍👧 🇫🇷 emoji🙂mixed",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_start|> <|im_end|>x<|endoftext|>",
    "<|im_start <|im_end| |im_start|> <|",
    "tabs\tand\u{b}vertical\u{c}feeds",
    "\u{0}\u{1}\u{7f}\u{80}\u{9f}\u{ad}",
    "```rust\nfn main() {\n    println!(\"hi\");\n}\n```",
    "    indented\n        more\n\n\n  back",
    "a\r\n\r\nb\r\r\nc \r\n d",
    "!!! ??? ... --- ___ *** ### $$$ %%% ^^^",
    "\u{fffd}\u{feff}\u{200b}\u{200d}",
];

#[test]
fn unicode_classes_match_regex_syntax() {
    use regex_syntax::hir::{Class, HirKind};
    let class = |p: &str| match regex_syntax::Parser::new().parse(p).unwrap().into_kind() {
        HirKind::Class(Class::Unicode(c)) => c,
        k => panic!("{k:?}"),
    };
    let (l, n, s) = (class(r"\p{L}"), class(r"\p{N}"), class(r"\s"));
    let has = |c: &regex_syntax::hir::ClassUnicode, ch: char| {
        c.ranges().iter().any(|r| r.start() <= ch && ch <= r.end())
    };
    for ch in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        assert_eq!(is_letter(ch), has(&l, ch), "\\p{{L}} at {:#x}", ch as u32);
        assert_eq!(is_number(ch), has(&n, ch), "\\p{{N}} at {:#x}", ch as u32);
        assert_eq!(is_space(ch), has(&s, ch), "\\s at {:#x}", ch as u32);
    }
}

#[test]
fn golden_prompt_gives_llama_cpp_ids() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file(
            "runtime/tests/data/golden/smollm2-135m-greedy.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let ids: Vec<u32> = golden["runs"][0]["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let p = smollm2();
    let text = p.bpe().decode(&ids);
    assert!(text.starts_with("<|im_start|>"), "{text:?}");
    assert_eq!(p.bpe().encode(&text), ids);
    p.assert_same(&text);
}

#[test]
fn whole_perplexity_text() {
    let text =
        std::fs::read_to_string(repo_file("scripts/bench/data/perplexity-text.txt")).unwrap();
    let p = smollm2();
    p.assert_same(&text);
    for line in text.lines() {
        p.assert_same(line);
    }
    // The other pipelines on a long real text too.
    let part = &text[..40_000];
    for other in [gpt2(), qwen2(), llama3()] {
        other.assert_same(part);
    }
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

#[test]
fn every_string_of_the_intents_data() {
    let path = hearth_home().join("intents/en.json");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-models",
        path.display()
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    strings(&doc, &mut all);
    assert!(all.len() > 3000, "only {} strings", all.len());
    let p = smollm2();
    for s in &all {
        p.assert_same(s);
    }
}

#[test]
fn edge_cases_in_every_pipeline() {
    for p in [smollm2(), gpt2(), qwen2(), llama3()] {
        for s in EDGE_CASES {
            p.assert_same(s);
        }
        p.assert_same(&EDGE_CASES.concat());
    }
}

#[test]
fn decode_round_trips_and_skips_unknown_ids() {
    let bpe = smollm2().bpe();
    for s in EDGE_CASES {
        assert_eq!(bpe.decode(&bpe.encode(s)), *s);
    }
    let n = bpe.layout().n_tokens as u32;
    let ids = bpe.encode("hello");
    let mut with_junk = ids.clone();
    with_junk.insert(0, n);
    with_junk.push(u32::MAX);
    assert_eq!(bpe.decode(&with_junk), "hello");
    // A lone byte of a multi-byte char decodes to U+FFFD, as the reference does.
    let emoji = bpe.encode("🙂");
    assert!(emoji.len() > 1, "{emoji:?}");
    assert_eq!(
        bpe.decode(&emoji[..1]),
        smollm2().reference.decode(&emoji[..1], false).unwrap()
    );
}

/// Chars that stress the splitters: ASCII classes, contractions, Unicode spaces,
/// letters and numbers from several scripts, combining marks, emoji.
fn tricky_text() -> impl Strategy<Value = String> {
    prop::string::string_regex(
        "([ a-zA-Z0-9'\\n\\r\\t.,!?_\\-ſŜK\\u{a0}\\u{3000}\\u{2028}\\u{85}éü日本語٣①½\\u{301}🙂<|>]|<\\|im_start\\|>|<\\|im_end\\|>|'s|'LL| {2,4}|\\r\\n){0,40}",
    )
    .unwrap()
}

fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

#[test]
fn random_text_gives_the_reference_ids() {
    let strategy = prop_oneof![tricky_text(), any::<String>()];
    for p in [smollm2(), gpt2(), qwen2(), llama3()] {
        runner(400).run(&strategy, |s| p.check(&s)).unwrap();
    }
}

/// Pieces fancy-regex finds for `pattern` (what the `Split` pre-tokenizer uses).
fn regex_pieces(re: &fancy_regex::Regex, text: &str) -> Vec<String> {
    re.find_iter(text)
        .map(|m| m.unwrap().as_str().to_owned())
        .collect()
}

fn our_pieces(pre: PreTokenizer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    pre.split(text, |p| out.push(p.to_owned()));
    out
}

#[test]
fn qwen2_and_llama3_splitters_match_fancy_regex() {
    for (pre, pattern) in [
        (PreTokenizer::Qwen2, QWEN2_REGEX),
        (PreTokenizer::Llama3, LLAMA3_REGEX),
    ] {
        let re = fancy_regex::Regex::new(pattern).unwrap();
        for s in EDGE_CASES {
            assert_eq!(our_pieces(pre, s), regex_pieces(&re, s), "{pre:?} on {s:?}");
        }
        let strategy = prop_oneof![tricky_text(), any::<String>()];
        runner(2000)
            .run(&strategy, |s| {
                prop_assert_eq!(our_pieces(pre, &s), regex_pieces(&re, &s), "{:?}", s);
                Ok(())
            })
            .unwrap();
    }
}
