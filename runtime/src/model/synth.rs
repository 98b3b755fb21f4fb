//! Small synthetic models with random weights: for tests of the loader, the engine and
//! the CLI, where a real model would be too big or too slow.
use super::config::{Arch, ModelConfig, RopeStyle};
use super::format::TensorFormat;
use super::pack::quantize_matrix;
use super::writer::ModelWriter;
use crate::Result;
use std::path::{Path, PathBuf};

/// A tiny, valid config (2 layers, width 64, GQA 4:2, vocab 64).
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        name: "tiny-synthetic".into(),
        arch: Arch::Llama,
        vocab_size: 64,
        hidden_size: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        ffn_dim: 96,
        rope_theta: 10000.0,
        rope_style: RopeStyle::Neox,
        norm_eps: 1e-5,
        context_length: 128,
        tied_embeddings: true,
        qkv_bias: false,
        bos_id: Some(1),
        eos_id: 2,
        stop_ids: vec![2],
        add_bos: true,
        chat_template: None,
    }
}

/// A word-level tokenizer.json with `vocab` tokens: `<unk>`, `<s>`, `</s>`, then `w3`…
pub fn tiny_tokenizer_json(vocab: usize) -> String {
    let mut words = serde_json::Map::new();
    for i in 0..vocab {
        let w = match i {
            0 => "<unk>".to_string(),
            1 => "<s>".to_string(),
            2 => "</s>".to_string(),
            _ => format!("w{i}"),
        };
        words.insert(w, i.into());
    }
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": words, "unk_token": "<unk>" }
    })
    .to_string()
}

/// A small byte-level BPE tokenizer.json (SmolLM's pipeline): the 256 byte tokens,
/// a few merges spelling `hello`, ` world` and `12`, and two added tokens — enough
/// for the fast tokenizer's tables to be built and exercised without a real model.
pub fn tiny_bpe_tokenizer_json() -> String {
    let chars = crate::tokenizer::build::byte_to_char();
    let mut vocab = serde_json::Map::new();
    let mut add = |t: String| {
        let id = vocab.len();
        vocab.insert(t, id.into());
        id
    };
    for c in chars {
        add(c.to_string());
    }
    let merges = [
        ("h", "e"),
        ("l", "l"),
        ("he", "ll"),
        ("hell", "o"),
        ("Ġ", "w"),
        ("o", "r"),
        ("Ġw", "or"),
        ("Ġwor", "l"),
        ("Ġworl", "d"),
        ("l", "o"),
    ];
    for (a, b) in merges {
        add(format!("{a}{b}"));
    }
    let specials = ["<|im_start|>", "<|im_end|>"];
    let added: Vec<_> = specials
        .iter()
        .map(|&t| {
            let id = add(t.to_owned());
            serde_json::json!({
                "id": id, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            })
        })
        .collect();
    let byte_level = |regex: bool| {
        serde_json::json!({ "type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": false, "use_regex": regex })
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": { "type": "Sequence", "pretokenizers": [
            { "type": "Digits", "individual_digits": true }, byte_level(true),
        ]},
        "post_processor": byte_level(false),
        "decoder": byte_level(false),
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab,
            "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>(),
        },
    })
    .to_string()
}

/// Deterministic pseudo-random numbers (xorshift64*), uniform in [-1, 1).
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (any seed, 0 included).
    pub fn new(seed: u64) -> Self {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next value in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// `n` values scaled by `scale`.
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32() * scale).collect()
    }
}

/// Write a model for `config` with random weights (matrices in `matrix_format`, norms
/// near 1, biases small) to `path`.
pub fn write_random_model(
    path: &Path,
    config: &ModelConfig,
    matrix_format: TensorFormat,
    seed: u64,
) -> Result<PathBuf> {
    let tokenizer = tiny_tokenizer_json(config.vocab_size);
    write_random_model_with(path, config, matrix_format, seed, &tokenizer)
}

/// [`write_random_model`] with the given tokenizer.json.
pub fn write_random_model_with(
    path: &Path,
    config: &ModelConfig,
    matrix_format: TensorFormat,
    seed: u64,
    tokenizer_json: &str,
) -> Result<PathBuf> {
    let mut rng = Rng::new(seed);
    let mut w = ModelWriter::create(path, config, tokenizer_json)?;
    for spec in config.expected_tensors() {
        let n = spec.rows * spec.cols;
        let (fmt, x) = if spec.is_vector() {
            let x = if spec.name.ends_with("norm.weight") {
                rng.vec(n, 0.1).into_iter().map(|v| 1.0 + v).collect()
            } else {
                rng.vec(n, 0.05)
            };
            (TensorFormat::F32, x)
        } else {
            (matrix_format, rng.vec(n, 1.0 / (spec.cols as f32).sqrt()))
        };
        let t = quantize_matrix(fmt, spec.rows, spec.cols, &x, &spec.name)?;
        w.add_tensor(&spec.name, fmt, spec.rows, spec.cols, t.as_bytes())?;
    }
    w.finish()
}
