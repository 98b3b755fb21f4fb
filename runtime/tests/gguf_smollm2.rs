//! The GGUF importer on the real SmolLM2-135M-Instruct Q4_1 file (fetched by
//! `scripts/fetch-models`): metadata, every tensor, bit-compatibility of GGUF's Q4_1 /
//! Q8_0 blocks with hearth-quant's `BlockQ4A` / `BlockQ8`, and the rebuilt tokenizer
//! against llama.cpp's tokenization of the golden prompt.
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use hearth_quant::quantize::{dequantize_block_q4a, dequantize_row_q8};
use hearth_quant::{BlockQ4A, BlockQ8, QK};
use hearth_runtime::gguf::{dequantize, tokenizer_json, GgmlType, GgufFile};
use serde_json::Value;
use tokenizers::Tokenizer;

fn model_path() -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/hearth")
        });
    home.join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn model() -> &'static GgufFile {
    static MODEL: OnceLock<GgufFile> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = model_path();
        assert!(
            path.exists(),
            "{} is missing: run scripts/fetch-models first",
            path.display()
        );
        GgufFile::open(&path).expect("SmolLM2 GGUF opens")
    })
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let json = tokenizer_json(model()).expect("tokenizer.json builds");
        Tokenizer::from_str(&json).expect("tokenizers accepts the tokenizer.json")
    })
}

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden/smollm2-135m-greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn metadata_describes_smollm2() {
    let g = model();
    assert_eq!(g.version(), 3);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(g.get_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(g.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(
        g.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(g.tensors().len(), 272);
    let emb = g.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (emb.ty, emb.rows(), emb.cols()),
        (GgmlType::Q8_0, 49152, 576)
    );
    let q = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!((q.ty, q.rows(), q.cols()), (GgmlType::Q4_1, 576, 576));
    let k = g.tensor("blk.29.attn_k.weight").unwrap();
    assert_eq!((k.ty, k.rows(), k.cols()), (GgmlType::Q4_1, 192, 576));
    assert!(
        g.tensor("output.weight").is_err(),
        "the head is tied to the embedding"
    );
}

/// Every tensor dequantizes to finite values; Q4_1 and Q8_0 tensors agree bit for
/// bit with hearth-quant's own dequantizers applied to the same bytes reinterpreted
/// as `BlockQ4A` / `BlockQ8` (the layouts are the same by design).
#[test]
fn every_tensor_dequantizes_and_matches_hearth_quant_blocks() {
    let g = model();
    let (mut n_q4_1, mut n_q8_0) = (0, 0);
    for t in g.tensors() {
        let bytes = g.tensor_bytes(t).unwrap();
        let mut ours = vec![0f32; t.n_elements()];
        dequantize(t.ty, bytes, &mut ours).unwrap();
        assert!(
            ours.iter().all(|v| v.is_finite()),
            "{}: non-finite value",
            t.name
        );
        let mut theirs = vec![0f32; t.n_elements()];
        match t.ty {
            GgmlType::Q4_1 => {
                n_q4_1 += 1;
                let blocks: &[BlockQ4A] = bytemuck::try_cast_slice(bytes)
                    .unwrap_or_else(|e| panic!("{}: cannot view as BlockQ4A: {e}", t.name));
                for (b, y) in blocks.iter().zip(theirs.chunks_exact_mut(QK)) {
                    dequantize_block_q4a(b, y.try_into().unwrap());
                }
            }
            GgmlType::Q8_0 => {
                n_q8_0 += 1;
                let blocks: &[BlockQ8] = bytemuck::try_cast_slice(bytes)
                    .unwrap_or_else(|e| panic!("{}: cannot view as BlockQ8: {e}", t.name));
                dequantize_row_q8(blocks, &mut theirs);
            }
            GgmlType::F32 => continue,
            other => panic!("{}: unexpected type {other} in this file", t.name),
        }
        let same = ours
            .iter()
            .zip(&theirs)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{} ({}): GGUF and hearth-quant dequantization differ",
            t.name, t.ty
        );
    }
    assert_eq!((n_q4_1, n_q8_0), (210, 1));
}

/// F32 tensors read at the right offsets: the first and last values agree with what
/// the reference Python `gguf` reader returns for the same file.
#[test]
fn f32_tensors_match_the_reference_reader() {
    let g = model();
    let cases: [(&str, [f32; 4], [f32; 2]); 2] = [
        (
            "blk.0.attn_norm.weight",
            [0.013977051, 0.023803711, -0.01977539, -0.030273438],
            [0.050048828, -0.038330078],
        ),
        (
            "output_norm.weight",
            [1.7578125, 1.8203125, 1.78125, 1.6015625],
            [1.921875, 1.984375],
        ),
    ];
    for (name, head, tail) in cases {
        let v = g.tensor_f32(g.tensor(name).unwrap()).unwrap();
        assert_eq!(v.len(), 576);
        assert_eq!(v[..4], head, "{name}");
        assert_eq!(v[574..], tail, "{name}");
    }
}

#[test]
fn golden_prompt_tokenizes_exactly_like_llama_cpp() {
    let golden = golden();
    let prompt = golden["prompt"].as_str().unwrap();
    let expected: Vec<u32> = golden["runs"][0]["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let tok = tokenizer();
    let enc = tok.encode(prompt, false).unwrap();
    assert_eq!(enc.get_ids(), expected.as_slice());
    assert_eq!(tok.decode(&expected, false).unwrap(), prompt);
}

/// The pieces llama.cpp printed for the prompt are what our vocabulary decodes.
#[test]
fn golden_pieces_match_the_vocabulary() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/tokens-of-prompt.txt");
    let text = std::fs::read_to_string(path).unwrap();
    // Lines are `  id -> 'piece'`; a piece holding a newline continues on the next line.
    let ids: Vec<u32> = text
        .lines()
        .filter_map(|l| {
            l.split_once(" -> ")
                .map(|(id, _)| id.trim().parse().unwrap())
        })
        .collect();
    let golden_ids: Vec<u32> = golden()["runs"][0]["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, golden_ids);
    let tok = tokenizer();
    let joined: String = ids
        .iter()
        .map(|&id| tok.decode(&[id], false).unwrap())
        .collect();
    let expected = golden()["prompt"].as_str().unwrap().to_owned();
    assert_eq!(joined, expected);
}

#[test]
fn digits_are_split_individually_and_specials_are_single_tokens() {
    let tok = tokenizer();
    let enc = tok.encode("2024", false).unwrap();
    assert_eq!(enc.get_tokens(), ["2", "0", "2", "4"]);
    let enc = tok.encode("<|im_start|>user<|im_end|>", false).unwrap();
    assert_eq!(enc.get_ids()[0], 1);
    assert_eq!(*enc.get_ids().last().unwrap(), 2);
    assert_eq!(enc.get_ids().len(), 3);
    // No BOS is added even when special tokens are requested: that is the engine's job.
    assert_eq!(
        tok.encode("hi", true).unwrap().get_ids(),
        tok.encode("hi", false).unwrap().get_ids()
    );
}

#[test]
fn decode_round_trips_varied_text() {
    let tok = tokenizer();
    let texts = [
        "Call 911 or +1 (555) 010-9999 before 3.14159 o'clock; it's 2026!",
        "Ünïcödé café naïve — “quotes” «guillemets» 日本語のテキスト, Ελληνικά, русский",
        "emoji 🔥🏠 family: 👨‍👩‍👧 flags 🇫🇷 skin 👍🏽",
        "fn main() {\n    let x = vec![1, 2, 3];\n\tprintln!(\"{x:?}\");\n}\n",
        "a  b   c\n\n\n  d \t\r\n e    \n",
        "   leading and trailing   ",
        "<|im_start|>user\nTurn on the lights<|im_end|>\n<|im_start|>assistant\n",
        "",
    ];
    for text in texts {
        let enc = tok.encode(text, false).unwrap();
        let back = tok.decode(enc.get_ids(), false).unwrap();
        assert_eq!(back, text, "ids {:?}", enc.get_ids());
        // Byte-level BPE never needs an unknown token.
        assert!(!enc.get_ids().contains(&0) || text.contains("<|endoftext|>"));
    }
}

/// Every truncation of the real header fails cleanly, naming what was cut.
#[test]
fn truncated_real_headers_fail_cleanly() {
    let g = model();
    let bytes = std::fs::read(model_path()).unwrap();
    let header_len = g.data_offset();
    // Cut points spread over the whole header, plus the first few bytes one by one.
    let cuts = (0..64).chain((0..120).map(|i| 64 + i * (header_len - 64) / 120));
    for cut in cuts {
        match GgufFile::from_bytes(bytes[..cut].to_vec()) {
            Ok(_) => panic!("a {cut}-byte prefix of the header parsed"),
            Err(e) => assert!(e.to_string().starts_with("gguf: "), "cut {cut}: {e}"),
        }
    }
    // Cutting into tensor data is caught by the range checks, naming the tensor.
    let e = GgufFile::from_bytes(bytes[..bytes.len() - 1].to_vec())
        .unwrap_err()
        .to_string();
    let last = g.tensors().iter().max_by_key(|t| t.offset).unwrap();
    assert!(
        e.starts_with(&format!("gguf: tensor '{}' data [", last.name))
            && e.ends_with(&format!(
                "lies past the end of the file (size {})",
                bytes.len() - 1
            )),
        "{e}"
    );
}
