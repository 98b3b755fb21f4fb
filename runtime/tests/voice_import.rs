//! CTranslate2 parser (hostile input) and Whisper → ggml conversion, on synthetic models.
use std::collections::BTreeMap;

use half::f16;
use hearth_runtime::voice::ct2::Ct2Model;
use hearth_runtime::voice::import::{byte_tokens, write_ggml, GGML_MAGIC};

/// Builds a CTranslate2 `model.bin` (binary version 6).
struct Ct2Builder {
    vars: Vec<(String, Vec<u32>, u8, Vec<u8>)>,
    aliases: Vec<(String, String)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

impl Ct2Builder {
    fn new() -> Self {
        Self {
            vars: Vec::new(),
            aliases: Vec::new(),
        }
    }
    /// An f16 variable whose element i is `base + i/1000` (so slices are recognisable).
    fn f16(&mut self, name: &str, shape: &[u32], base: f32) {
        let n: u32 = shape.iter().product();
        let data = (0..n)
            .flat_map(|i| f16::from_f32(base + i as f32 / 1000.0).to_le_bytes())
            .collect();
        self.vars.push((name.into(), shape.to_vec(), 4, data));
    }
    fn f16_values(&mut self, name: &str, shape: &[u32], values: &[f32]) {
        let data = values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        self.vars.push((name.into(), shape.to_vec(), 4, data));
    }
    fn i16(&mut self, name: &str, v: i16) {
        self.vars
            .push((name.into(), vec![], 2, v.to_le_bytes().to_vec()));
    }
    fn bytes(&self, spec: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&6u32.to_le_bytes());
        put_str(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
        for (name, shape, dtype, data) in &self.vars {
            put_str(&mut out, name);
            out.push(shape.len() as u8);
            for d in shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (a, t) in &self.aliases {
            put_str(&mut out, a);
            put_str(&mut out, t);
        }
        out
    }
}

const D: u32 = 8; // model width
const FF: u32 = 16;
const VOCAB: u32 = 6;

/// A 1-encoder-layer, 1-decoder-layer Whisper spec with tiny dimensions.
fn tiny_whisper(key_bias: f32) -> Ct2Builder {
    let mut b = Ct2Builder::new();
    b.f16("encoder/conv1/weight", &[D, 2, 3], 0.1);
    b.f16("encoder/conv1/bias", &[D], 0.2);
    b.f16("encoder/conv2/weight", &[D, D, 3], 0.3);
    b.f16("encoder/conv2/bias", &[D], 0.4);
    b.f16("encoder/position_encodings/encodings", &[5, D], 0.5);
    b.i16("encoder/num_heads", 2);
    b.i16("decoder/num_heads", 2);
    b.f16("decoder/embeddings/weight", &[VOCAB, D], 0.6);
    b.f16("decoder/position_encodings/encodings", &[4, D], 0.7);
    for ln in ["encoder/layer_norm", "decoder/layer_norm"] {
        b.f16(&format!("{ln}/gamma"), &[D], 1.0);
        b.f16(&format!("{ln}/beta"), &[D], 0.0);
    }
    for side in ["encoder", "decoder"] {
        let l = format!("{side}/layer_0");
        let mut attn = |p: &str| {
            b.f16(&format!("{l}/{p}/layer_norm/gamma"), &[D], 1.0);
            b.f16(&format!("{l}/{p}/layer_norm/beta"), &[D], 0.0);
        };
        attn("self_attention");
        attn("ffn");
        // Fused [q; k; v]: q rows start at 1.0, k at 2.0, v at 3.0 (f16 keeps these exact-ish).
        let mut w = Vec::new();
        for base in [1.0f32, 2.0, 3.0] {
            w.extend((0..D * D).map(|i| base + i as f32 / 1024.0));
        }
        b.f16_values(
            &format!("{l}/self_attention/linear_0/weight"),
            &[3 * D, D],
            &w,
        );
        let mut bias = vec![0.5f32; D as usize];
        bias.extend(vec![key_bias; D as usize]);
        bias.extend(vec![-0.5f32; D as usize]);
        b.f16_values(
            &format!("{l}/self_attention/linear_0/bias"),
            &[3 * D],
            &bias,
        );
        b.f16(&format!("{l}/self_attention/linear_1/weight"), &[D, D], 0.8);
        b.f16(&format!("{l}/self_attention/linear_1/bias"), &[D], 0.9);
        b.f16(&format!("{l}/ffn/linear_0/weight"), &[FF, D], 0.1);
        b.f16(&format!("{l}/ffn/linear_0/bias"), &[FF], 0.1);
        b.f16(&format!("{l}/ffn/linear_1/weight"), &[D, FF], 0.1);
        b.f16(&format!("{l}/ffn/linear_1/bias"), &[D], 0.1);
        if side == "decoder" {
            b.f16(&format!("{l}/attention/layer_norm/gamma"), &[D], 1.0);
            b.f16(&format!("{l}/attention/layer_norm/beta"), &[D], 0.0);
            b.f16(&format!("{l}/attention/linear_0/weight"), &[D, D], 0.2);
            b.f16(&format!("{l}/attention/linear_0/bias"), &[D], 0.2);
            let mut kv: Vec<f32> = (0..D * D).map(|_| 4.0).collect();
            kv.extend((0..D * D).map(|_| 5.0));
            b.f16_values(&format!("{l}/attention/linear_1/weight"), &[2 * D, D], &kv);
            let mut kvb = vec![0.0f32; D as usize];
            kvb.extend(vec![0.25f32; D as usize]);
            b.f16_values(&format!("{l}/attention/linear_1/bias"), &[2 * D], &kvb);
            b.f16(&format!("{l}/attention/linear_2/weight"), &[D, D], 0.3);
            b.f16(&format!("{l}/attention/linear_2/bias"), &[D], 0.3);
        }
    }
    b.aliases.push((
        "decoder/projection/weight".into(),
        "decoder/embeddings/weight".into(),
    ));
    b
}

/// Byte-level BPE: "Ġ" is the space byte, "Ā" byte 0, "Ã©" the UTF-8 bytes of "é".
const TOKENIZER: &str = r#"{"model":{"type":"BPE","vocab":{"a":0,"Ġb":1,"Ā":2,"hÃ©":3,"!":4,"<|endoftext|>":5}},
  "added_tokens":[{"id":5,"content":"<|endoftext|>","special":true}]}"#;

/// A parsed ggml whisper file: hparams, mel rows × cols, tokens, tensors (dims ggml order, f32 values).
struct Ggml {
    hparams: Vec<i32>,
    mel: (i32, i32),
    tokens: Vec<Vec<u8>>,
    tensors: BTreeMap<String, (Vec<i32>, i32, Vec<f32>)>,
}

fn parse_ggml(b: &[u8]) -> Ggml {
    let mut pos = 0;
    let i32_at = |pos: &mut usize| {
        let v = i32::from_le_bytes(b[*pos..*pos + 4].try_into().unwrap());
        *pos += 4;
        v
    };
    assert_eq!(i32_at(&mut pos) as u32, GGML_MAGIC);
    let hparams: Vec<i32> = (0..11).map(|_| i32_at(&mut pos)).collect();
    let mel = (i32_at(&mut pos), i32_at(&mut pos));
    pos += (mel.0 * mel.1) as usize * 4;
    let n_tok = i32_at(&mut pos);
    let tokens = (0..n_tok)
        .map(|_| {
            let n = i32_at(&mut pos) as usize;
            pos += n;
            b[pos - n..pos].to_vec()
        })
        .collect();
    let mut tensors = BTreeMap::new();
    while pos < b.len() {
        let n_dims = i32_at(&mut pos);
        let name_len = i32_at(&mut pos) as usize;
        let ftype = i32_at(&mut pos);
        let dims: Vec<i32> = (0..n_dims).map(|_| i32_at(&mut pos)).collect();
        let name = String::from_utf8(b[pos..pos + name_len].to_vec()).unwrap();
        pos += name_len;
        let n: usize = dims.iter().map(|&d| d as usize).product();
        let values = if ftype == 1 {
            let v = b[pos..pos + 2 * n]
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect();
            pos += 2 * n;
            v
        } else {
            let v = b[pos..pos + 4 * n]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            pos += 4 * n;
            v
        };
        assert!(
            tensors
                .insert(name.clone(), (dims, ftype, values))
                .is_none(),
            "{name} twice"
        );
    }
    Ggml {
        hparams,
        mel,
        tokens,
        tensors,
    }
}

#[test]
fn converts_a_tiny_whisper_spec_to_the_ggml_layout() {
    let model = Ct2Model::from_bytes(tiny_whisper(0.0).bytes("WhisperSpec")).unwrap();
    assert_eq!(
        model.get("decoder/projection/weight").unwrap().name,
        "decoder/embeddings/weight"
    );
    let tokens = byte_tokens(TOKENIZER).unwrap();
    assert_eq!(
        tokens,
        vec![
            b"a".to_vec(),
            b" b".to_vec(),
            vec![0],
            "hé".as_bytes().to_vec(),
            b"!".to_vec()
        ]
    );
    let mut out = Vec::new();
    let h = write_ggml(&model, &tokens, &mut out).unwrap();
    let g = parse_ggml(&out);
    // n_vocab n_audio_ctx n_audio_state n_audio_head n_audio_layer n_text_ctx n_text_state n_text_head n_text_layer n_mels ftype
    assert_eq!(g.hparams, vec![6, 5, 8, 2, 1, 4, 8, 2, 1, 2, 1]);
    assert_eq!(h.n_vocab, 6);
    assert_eq!(g.mel, (2, 201));
    assert_eq!(g.tokens, tokens);

    // Exactly whisper.cpp's tensor set: 7 encoder globals + 15 per encoder layer,
    // 4 decoder globals + 24 per decoder layer; no key biases.
    assert_eq!(
        g.tensors.len(),
        7 + 15 + 4 + 24,
        "{:?}",
        g.tensors.keys().collect::<Vec<_>>()
    );
    assert!(!g.tensors.keys().any(|k| k.contains("key.bias")));
    let t = |name: &str| {
        g.tensors
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
    };

    // Self-attention split: q rows start at 1.0, k at 2.0, v at 3.0; dims innermost first.
    for side in ["encoder", "decoder"] {
        for (proj, base) in [("query", 1.0f32), ("key", 2.0), ("value", 3.0)] {
            let (dims, ftype, v) = t(&format!("{side}.blocks.0.attn.{proj}.weight"));
            assert_eq!((dims.as_slice(), *ftype), (&[8, 8][..], 1));
            assert!(
                (v[0] - base).abs() < 1e-3 && (v[63] - (base + 63.0 / 1024.0)).abs() < 2e-3,
                "{side} {proj}"
            );
        }
        assert_eq!(
            t(&format!("{side}.blocks.0.attn.query.bias")).2,
            vec![0.5; 8]
        );
        assert_eq!(
            t(&format!("{side}.blocks.0.attn.value.bias")).2,
            vec![-0.5; 8]
        );
    }
    // Cross-attention [k; v] split.
    assert!(t("decoder.blocks.0.cross_attn.key.weight")
        .2
        .iter()
        .all(|&x| x == 4.0));
    assert!(t("decoder.blocks.0.cross_attn.value.weight")
        .2
        .iter()
        .all(|&x| x == 5.0));
    assert_eq!(t("decoder.blocks.0.cross_attn.value.bias").2, vec![0.25; 8]);
    // Conv biases as [n, 1] f32, conv weights f16 with reversed dims, embeddings f32.
    assert_eq!(
        (
            t("encoder.conv1.bias").0.as_slice(),
            t("encoder.conv1.bias").1
        ),
        (&[1, 8][..], 0)
    );
    assert_eq!(t("encoder.conv1.weight").0, vec![3, 2, 8]);
    assert_eq!(t("encoder.positional_embedding").1, 0);
    assert_eq!(t("decoder.token_embedding.weight").0, vec![8, 6]);
    assert_eq!(t("decoder.ln.weight").1, 0);
}

#[test]
fn nonzero_key_bias_is_refused() {
    let model = Ct2Model::from_bytes(tiny_whisper(0.125).bytes("WhisperSpec")).unwrap();
    let err = write_ggml(&model, &byte_tokens(TOKENIZER).unwrap(), &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("key bias"), "{err}");
}

#[test]
fn other_specs_are_refused() {
    let model = Ct2Model::from_bytes(tiny_whisper(0.0).bytes("TransformerSpec")).unwrap();
    let err = write_ggml(&model, &[], &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("not a WhisperSpec"), "{err}");
}

#[test]
fn every_truncation_is_a_clean_error() {
    let mut b = Ct2Builder::new();
    b.f16("a/b", &[2, 3], 0.0);
    b.i16("n", 4);
    b.aliases.push(("c".into(), "a/b".into()));
    let bytes = b.bytes("WhisperSpec");
    let full = Ct2Model::from_bytes(bytes.clone()).unwrap();
    assert_eq!(full.variables().len(), 2);
    assert_eq!(full.scalar_int("n").unwrap(), 4);
    assert_eq!(full.to_f32(full.get("c").unwrap()).unwrap().len(), 6);
    for len in 0..bytes.len() {
        let err = Ct2Model::from_bytes(bytes[..len].to_vec())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("truncated") || err.contains("version"),
            "at {len}: {err}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Ct2Model::from_bytes(longer)
        .unwrap_err()
        .to_string()
        .contains("trailing"));
}

#[test]
fn bad_headers_counts_and_sizes_are_errors() {
    let mut b = Ct2Builder::new();
    b.f16("w", &[2, 2], 0.0);
    let good = b.bytes("WhisperSpec");
    let err = |bytes: Vec<u8>| Ct2Model::from_bytes(bytes).unwrap_err().to_string();

    let mut v = good.clone();
    v[0] = 5;
    assert!(err(v).contains("version 5"));

    // Variable count far beyond the file (offset: 4 version + 2+12 name + 4 revision).
    let mut v = good.clone();
    v[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(err(v).contains("variables"));

    // Variable layout: name at 26 (2 + 2 bytes), rank at 30, dims 31..39, dtype 39, size 40..44.
    let mut v = good.clone();
    v[39] = 9;
    assert!(err(v).contains("unknown dtype"));
    let mut v = good.clone();
    v[40..44].copy_from_slice(&7u32.to_le_bytes());
    assert!(err(v).contains("bytes stored"));
    let mut v = good.clone();
    v[31..35].copy_from_slice(&u32::MAX.to_le_bytes());
    v[35..39].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = err(v);
    assert!(e.contains("bytes stored") || e.contains("overflows"), "{e}");
    // Name not NUL-terminated.
    let mut v = good.clone();
    v[29] = b'x';
    assert!(err(v).contains("NUL"));
    // Alias count beyond the file.
    let mut v = good.clone();
    let n = v.len();
    v[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(err(v).contains("aliases"));
}

#[test]
fn hostile_bytes_never_panic() {
    // A cheap deterministic fuzz: flip bytes of a valid file, parse, convert.
    let good = tiny_whisper(0.0).bytes("WhisperSpec");
    let tokens = byte_tokens(TOKENIZER).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        let mut v = good.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % v.len() as u64) as usize;
            v[i] = (state >> 32) as u8;
        }
        if let Ok(m) = Ct2Model::from_bytes(v) {
            let _ = write_ggml(&m, &tokens, &mut Vec::new());
        }
    }
}

#[test]
fn bad_tokenizers_are_errors() {
    assert!(byte_tokens("not json").is_err());
    let gap = r#"{"model":{"vocab":{"a":0,"b":2}},"added_tokens":[]}"#;
    assert!(byte_tokens(gap)
        .unwrap_err()
        .to_string()
        .contains("contiguous"));
    let not_bytes = r#"{"model":{"vocab":{"a":0,"☃":1}},"added_tokens":[]}"#;
    assert!(byte_tokens(not_bytes)
        .unwrap_err()
        .to_string()
        .contains("byte-level"));
}
