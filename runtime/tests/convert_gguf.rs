//! GGUF → Hearth conversion: config extraction, bit-exact carry-over, requantization
//! error bounds, clear errors; on synthetic GGUF files and on the real SmolLM2 file.
use bytemuck::Zeroable;
use hearth_quant::dispatch::PackedData;
use hearth_quant::packed::{packed_row_block, PackedBlock};
use hearth_quant::quantize::{quantize_block_q4, quantize_block_q4a, quantize_row_q8_weights};
use hearth_quant::{BlockQ4, BlockQ4A, BlockQ4Ax4, BlockQ4x4, BlockQ8, BlockQ8x4, QK};
use hearth_runtime::convert::{config_from_gguf, convert_gguf, QuantPolicy};
use hearth_runtime::gguf::write::GgufBuilder;
use hearth_runtime::gguf::{GgmlType, GgufFile, MetaValue};
use hearth_runtime::model::pack::dequantize_packed;
use hearth_runtime::model::synth::Rng;
use hearth_runtime::model::{Arch, ModelFile, RopeStyle, TensorData, TensorFormat};
use std::path::{Path, PathBuf};

const DIM: usize = 64;
const FFN: usize = 96;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const LAYERS: usize = 2;

/// 64 tokens: three specials, then letters and a few merged pairs.
fn vocab() -> (Vec<String>, Vec<String>) {
    let mut toks: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    let letters: Vec<String> = ('a'..='z').map(|c| c.to_string()).collect();
    toks.extend(letters.iter().cloned());
    let mut merges = Vec::new();
    'outer: for a in &letters {
        for b in &letters {
            if toks.len() == 64 {
                break 'outer;
            }
            toks.push(format!("{a}{b}"));
            merges.push(format!("{a} {b}"));
        }
    }
    (toks, merges)
}

fn strs(v: &[String]) -> MetaValue {
    MetaValue::Array(v.iter().map(|s| MetaValue::Str(s.clone())).collect())
}

/// How each kind of matrix is stored in a synthetic GGUF.
#[derive(Clone, Copy)]
struct Types {
    embd: GgmlType,
    attn: GgmlType,
    ffn: GgmlType,
}

fn encode(ty: GgmlType, x: &[f32], cols: usize) -> Vec<u8> {
    match ty {
        GgmlType::F32 => bytemuck::cast_slice(x).to_vec(),
        GgmlType::F16 => x
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => x
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => {
            let mut b = vec![BlockQ8::zeroed(); x.len() / QK];
            for (row, out) in x.chunks(cols).zip(b.chunks_mut(cols / QK)) {
                quantize_row_q8_weights(row, out);
            }
            bytemuck::cast_slice(&b).to_vec()
        }
        GgmlType::Q4_0 => {
            let b: Vec<BlockQ4> = x
                .chunks(QK)
                .map(|c| quantize_block_q4(c.try_into().unwrap()))
                .collect();
            bytemuck::cast_slice(&b).to_vec()
        }
        GgmlType::Q4_1 => {
            let b: Vec<BlockQ4A> = x
                .chunks(QK)
                .map(|c| quantize_block_q4a(c.try_into().unwrap()))
                .collect();
            bytemuck::cast_slice(&b).to_vec()
        }
        t => panic!("test encoder has no {t}"),
    }
}

/// A synthetic GGUF model. Returns the builder so tests can add or break things.
fn synthetic(arch: &str, types: Types, dim: usize, seed: u64, skip: &[&str]) -> GgufBuilder {
    let (toks, merges) = vocab();
    let n_vocab = toks.len() as u64;
    let mut token_type = vec![MetaValue::I32(1); toks.len()];
    for t in token_type.iter_mut().take(3) {
        *t = MetaValue::I32(3);
    }
    let k = |s: &str| format!("{arch}.{s}");
    let mut b = GgufBuilder::new()
        .meta("general.architecture", MetaValue::Str(arch.into()))
        .meta("general.name", MetaValue::Str("synthetic".into()))
        .meta(k("embedding_length"), MetaValue::U32(dim as u32))
        .meta(k("block_count"), MetaValue::U32(LAYERS as u32))
        .meta(k("attention.head_count"), MetaValue::U32(HEADS as u32))
        .meta(
            k("attention.head_count_kv"),
            MetaValue::U32(KV_HEADS as u32),
        )
        .meta(k("feed_forward_length"), MetaValue::U32(FFN as u32))
        .meta(k("rope.freq_base"), MetaValue::F32(100000.0))
        .meta(k("attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-5))
        .meta(k("context_length"), MetaValue::U32(2048))
        .meta(
            k("rope.dimension_count"),
            MetaValue::U32((dim / HEADS) as u32),
        )
        .meta("tokenizer.ggml.model", MetaValue::Str("gpt2".into()))
        .meta("tokenizer.ggml.pre", MetaValue::Str("smollm".into()))
        .meta("tokenizer.ggml.tokens", strs(&toks))
        .meta("tokenizer.ggml.token_type", MetaValue::Array(token_type))
        .meta("tokenizer.ggml.merges", strs(&merges))
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(1))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(2))
        .meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(false))
        .meta(
            "tokenizer.chat_template",
            MetaValue::Str("{{ messages }}".into()),
        );
    let mut rng = Rng::new(seed);
    let hd = dim / HEADS;
    let mut add = |b: GgufBuilder, name: String, rows: usize, cols: usize, ty: GgmlType| {
        if skip.contains(&name.as_str()) {
            return b;
        }
        let x = rng.vec(rows * cols, 1.0);
        let dims: Vec<u64> = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        };
        b.tensor(name, &dims, ty, encode(ty, &x, cols))
    };
    b = add(
        b,
        "token_embd.weight".into(),
        n_vocab as usize,
        dim,
        types.embd,
    );
    for i in 0..LAYERS {
        let p = |s: &str| format!("blk.{i}.{s}");
        b = add(b, p("attn_norm.weight"), 1, dim, GgmlType::F32);
        b = add(b, p("attn_q.weight"), HEADS * hd, dim, types.attn);
        b = add(b, p("attn_k.weight"), KV_HEADS * hd, dim, types.attn);
        b = add(b, p("attn_v.weight"), KV_HEADS * hd, dim, types.attn);
        if arch == "qwen2" {
            b = add(b, p("attn_q.bias"), 1, HEADS * hd, GgmlType::F32);
            b = add(b, p("attn_k.bias"), 1, KV_HEADS * hd, GgmlType::F32);
            b = add(b, p("attn_v.bias"), 1, KV_HEADS * hd, GgmlType::F32);
        }
        b = add(b, p("attn_output.weight"), dim, HEADS * hd, types.attn);
        b = add(b, p("ffn_norm.weight"), 1, dim, GgmlType::F32);
        b = add(b, p("ffn_gate.weight"), FFN, dim, types.ffn);
        b = add(b, p("ffn_up.weight"), FFN, dim, types.ffn);
        b = add(b, p("ffn_down.weight"), dim, FFN, types.ffn);
    }
    b = add(b, "output_norm.weight".into(), 1, dim, GgmlType::F32);
    if arch == "qwen2" {
        b = add(b, "output.weight".into(), n_vocab as usize, dim, types.embd);
    }
    b
}

fn write(dir: &Path, b: &GgufBuilder) -> PathBuf {
    let p = dir.join("in.gguf");
    std::fs::write(&p, b.to_bytes()).unwrap();
    p
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

/// Every row of a packed tensor unpacks to exactly the GGUF tensor's bytes.
fn assert_bit_exact<P: PackedBlock>(
    packed: &[P],
    gguf_bytes: &[u8],
    rows: usize,
    cols: usize,
    name: &str,
) {
    let nb = cols / QK;
    let block = size_of::<P::Row>();
    assert_eq!(gguf_bytes.len(), rows * nb * block, "{name}");
    for r in 0..rows {
        for kb in 0..nb {
            let b = packed_row_block(packed, nb, r, kb);
            let want = &gguf_bytes[(r * nb + kb) * block..][..block];
            assert_eq!(bytemuck::bytes_of(&b), want, "{name}: row {r} block {kb}");
        }
    }
}

fn check_carried(m: &ModelFile, g: &GgufFile) -> usize {
    let mut carried = 0;
    for info in g.tensors() {
        let Ok(t) = m.tensor(&info.name) else {
            continue;
        };
        let bytes = g.tensor_bytes(info).unwrap();
        match (info.ty, t.data) {
            (GgmlType::Q8_0, TensorData::Packed(p)) => {
                let PackedData::Q8(p) = p.data() else {
                    panic!("{} not Q8x4", info.name)
                };
                assert_bit_exact::<BlockQ8x4>(p, bytes, t.rows, t.cols, &info.name);
            }
            (GgmlType::Q4_0, TensorData::Packed(p)) => {
                let PackedData::Q4(p) = p.data() else {
                    panic!("{} not Q4x4", info.name)
                };
                assert_bit_exact::<BlockQ4x4>(p, bytes, t.rows, t.cols, &info.name);
            }
            (GgmlType::Q4_1, TensorData::Packed(p)) => {
                let PackedData::Q4A(p) = p.data() else {
                    panic!("{} not Q4Ax4", info.name)
                };
                assert_bit_exact::<BlockQ4Ax4>(p, bytes, t.rows, t.cols, &info.name);
            }
            (GgmlType::F32, TensorData::F32(v)) => {
                assert_eq!(bytemuck::cast_slice::<f32, u8>(v), bytes, "{}", info.name);
            }
            (ty, _) => panic!("{}: {ty} was not carried", info.name),
        }
        carried += 1;
    }
    carried
}

#[test]
fn keep_carries_q8_0_q4_0_q4_1_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let types = Types {
        embd: GgmlType::Q8_0,
        attn: GgmlType::Q4_0,
        ffn: GgmlType::Q4_1,
    };
    let input = write(dir.path(), &synthetic("llama", types, DIM, 1, &[]));
    let out = dir.path().join("out.hearth");
    let report = convert_gguf(&input, &out, QuantPolicy::Keep, &mut no_progress()).unwrap();
    assert_eq!(report.tensors, 1 + LAYERS * 9 + 1);
    assert_eq!(
        report.carried,
        report.tensors - (2 * LAYERS + 1),
        "matrices carried, vectors requantized"
    );
    let m = ModelFile::open(&out).unwrap();
    let g = GgufFile::open(&input).unwrap();
    assert_eq!(check_carried(&m, &g), report.tensors);
    assert!(m.verify().is_empty());
}

#[test]
fn llama_config_is_extracted() {
    let dir = tempfile::tempdir().unwrap();
    let types = Types {
        embd: GgmlType::F32,
        attn: GgmlType::F16,
        ffn: GgmlType::BF16,
    };
    let input = write(dir.path(), &synthetic("llama", types, DIM, 2, &[]));
    let c = config_from_gguf(&GgufFile::open(&input).unwrap()).unwrap();
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(c.rope_style, RopeStyle::Norm);
    assert_eq!((c.vocab_size, c.hidden_size, c.n_layers), (64, DIM, LAYERS));
    assert_eq!(
        (c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim),
        (HEADS, KV_HEADS, DIM / HEADS, FFN)
    );
    assert_eq!(
        (c.rope_theta, c.norm_eps, c.context_length),
        (100000.0, 1e-5, 2048)
    );
    assert!(c.tied_embeddings && !c.qkv_bias && !c.add_bos);
    assert_eq!((c.bos_id, c.eos_id), (Some(1), 2));
    assert_eq!(c.stop_ids, vec![2, 0], "eos, then <|endoftext|>");
    assert_eq!(c.chat_template.as_deref(), Some("{{ messages }}"));
    assert_eq!(c.name, "synthetic");
}

#[test]
fn qwen2_gets_biases_neox_and_an_untied_head() {
    let dir = tempfile::tempdir().unwrap();
    let types = Types {
        embd: GgmlType::Q8_0,
        attn: GgmlType::Q8_0,
        ffn: GgmlType::Q8_0,
    };
    let input = write(dir.path(), &synthetic("qwen2", types, DIM, 3, &[]));
    let out = dir.path().join("q.hearth");
    convert_gguf(&input, &out, QuantPolicy::Mixed, &mut no_progress()).unwrap();
    let m = ModelFile::open(&out).unwrap();
    let c = m.config();
    assert_eq!((c.arch, c.rope_style), (Arch::Qwen2, RopeStyle::Neox));
    assert!(c.qkv_bias && !c.tied_embeddings);
    let g = GgufFile::open(&input).unwrap();
    let bias = g
        .tensor_f32(g.tensor("blk.1.attn_k.bias").unwrap())
        .unwrap();
    match m.tensor("blk.1.attn_k.bias").unwrap().data {
        TensorData::F32(v) => assert_eq!(v, &bias[..]),
        _ => panic!("bias not f32"),
    }
    // Mixed: the head stays 8-bit (carried from Q8_0), attention goes 4-bit.
    assert_eq!(m.info("output.weight").unwrap().format, TensorFormat::Q8x4);
    assert_eq!(
        m.info("blk.0.attn_q.weight").unwrap().format,
        TensorFormat::Q4x4
    );
}

fn rel_rms(x: &[f32], y: &[f32]) -> f32 {
    let num: f32 = x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f32 = x.iter().map(|a| a * a).sum();
    (num / den).sqrt()
}

#[test]
fn requantized_error_is_bounded_for_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let types = Types {
        embd: GgmlType::F32,
        attn: GgmlType::F16,
        ffn: GgmlType::BF16,
    };
    let input = write(dir.path(), &synthetic("llama", types, DIM, 4, &[]));
    let g = GgufFile::open(&input).unwrap();
    // (policy, attention format, relative RMS bound). Uniform data: 8-bit ≈ 0.5%,
    // 4-bit ≈ 6-8% relative RMS error.
    let cases = [
        (QuantPolicy::Q8, TensorFormat::Q8x4, 0.01),
        (QuantPolicy::Q4, TensorFormat::Q4x4, 0.10),
        (QuantPolicy::Q4A, TensorFormat::Q4Ax4, 0.10),
        (QuantPolicy::Mixed, TensorFormat::Q4x4, 0.10),
        (QuantPolicy::Keep, TensorFormat::Q4x4, 0.10),
    ];
    for (policy, fmt, bound) in cases {
        let out = dir.path().join(format!("{policy}.hearth"));
        convert_gguf(&input, &out, policy, &mut no_progress()).unwrap();
        let m = ModelFile::open(&out).unwrap();
        for name in [
            "blk.0.attn_q.weight",
            "blk.1.ffn_down.weight",
            "token_embd.weight",
        ] {
            let t = m.tensor(name).unwrap();
            let TensorData::Packed(p) = t.data else {
                panic!("{name} not packed")
            };
            let x = g.tensor_f32(g.tensor(name).unwrap()).unwrap();
            let e = rel_rms(&x, &dequantize_packed(&p));
            let bound = if name == "token_embd.weight"
                && matches!(policy, QuantPolicy::Mixed | QuantPolicy::Keep)
            {
                assert_eq!(m.info(name).unwrap().format, TensorFormat::Q8x4);
                0.01
            } else {
                if name != "token_embd.weight" {
                    assert_eq!(m.info(name).unwrap().format, fmt, "{policy} {name}");
                }
                bound
            };
            assert!(
                e < bound && e > 0.0,
                "{policy} {name}: relative RMS error {e} (bound {bound})"
            );
        }
    }
}

#[test]
fn progress_counts_every_weight() {
    let dir = tempfile::tempdir().unwrap();
    let types = Types {
        embd: GgmlType::Q8_0,
        attn: GgmlType::Q4_1,
        ffn: GgmlType::Q4_1,
    };
    let input = write(dir.path(), &synthetic("llama", types, DIM, 5, &[]));
    let mut seen = Vec::new();
    convert_gguf(
        &input,
        &dir.path().join("o.hearth"),
        QuantPolicy::Keep,
        &mut |d, t| seen.push((d, t)),
    )
    .unwrap();
    let total = seen[0].1;
    let c = config_from_gguf(&GgufFile::open(&input).unwrap()).unwrap();
    let expect: u64 = c
        .expected_tensors()
        .iter()
        .map(|s| (s.rows * s.cols) as u64)
        .sum();
    assert_eq!(total, expect);
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(seen.last().unwrap().0, total);
}

fn convert_err(b: &GgufBuilder) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), b);
    let out = dir.path().join("bad.hearth");
    let e = convert_gguf(&input, &out, QuantPolicy::Mixed, &mut no_progress())
        .unwrap_err()
        .to_string();
    assert!(!out.exists(), "no output after a failed conversion");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(leftovers.len(), 1, "only the input remains: {leftovers:?}");
    e
}

#[test]
fn clear_errors_for_bad_inputs() {
    let types = Types {
        embd: GgmlType::F32,
        attn: GgmlType::F32,
        ffn: GgmlType::F32,
    };
    let e = convert_err(&synthetic("llama", types, 48, 6, &[]));
    assert!(
        e.contains("tensor `token_embd.weight` has 48 columns, not a multiple of 32"),
        "{e}"
    );
    let e = convert_err(&synthetic("llama", types, DIM, 6, &["blk.1.ffn_up.weight"]));
    assert!(
        e.contains("blk.1.ffn_up.weight") && e.contains("not found"),
        "{e}"
    );
    let e = convert_err(&synthetic("gpt2", types, DIM, 6, &[]));
    assert!(e.contains("architecture `gpt2` is not supported"), "{e}");
    let e = convert_err(
        &synthetic("llama", types, DIM, 6, &[])
            .meta("llama.rope.scaling.type", MetaValue::Str("yarn".into())),
    );
    assert!(e.contains("RoPE scaling `yarn` is not supported"), "{e}");
    // A tensor whose shape disagrees with the metadata.
    let b = synthetic("llama", types, DIM, 6, &["blk.0.ffn_gate.weight"]).tensor_f32(
        "blk.0.ffn_gate.weight",
        &[DIM as u64, 80],
        &vec![0.0; DIM * 80],
    );
    let e = convert_err(&b);
    assert!(
        e.contains("tensor `blk.0.ffn_gate.weight` has dims [64, 80], the config needs 96×64"),
        "{e}"
    );
}

/// The real model: `scripts/fetch-models` puts it there.
fn smollm2_path() -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/hearth"));
    let p = home.join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models",
        p.display()
    );
    p
}

#[test]
fn smollm2_keep_is_bit_exact_with_the_right_config() {
    let input = smollm2_path();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2.hearth");
    let report = convert_gguf(&input, &out, QuantPolicy::Keep, &mut no_progress()).unwrap();
    let m = ModelFile::open(&out).unwrap();
    let g = GgufFile::open(&input).unwrap();
    let c = m.config();
    // Cross-checked against the file's metadata with the Python gguf package.
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!((c.vocab_size, c.hidden_size, c.n_layers), (49152, 576, 30));
    assert_eq!(
        (c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim),
        (9, 3, 64, 1536)
    );
    assert_eq!(
        (c.rope_theta, c.context_length, c.rope_style),
        (100000.0, 8192, RopeStyle::Norm)
    );
    assert!(c.tied_embeddings && !c.qkv_bias && !c.add_bos);
    assert_eq!((c.bos_id, c.eos_id), (Some(1), 2));
    assert!(c.stop_ids.contains(&2) && c.chat_template.as_deref().unwrap().contains("im_start"));
    assert_eq!(
        m.tokenizer_json(),
        hearth_runtime::gguf::tokenizer_json(&g).unwrap()
    );
    // 210 Q4_1 matrices + the Q8_0 embedding carried as blocks, 61 f32 vectors copied.
    assert_eq!((report.tensors, report.carried), (272, 211));
    assert_eq!(check_carried(&m, &g), 272);
    assert_eq!(
        m.info("blk.7.ffn_down.weight").unwrap().format,
        TensorFormat::Q4Ax4
    );
    assert_eq!(
        m.info("token_embd.weight").unwrap().format,
        TensorFormat::Q8x4
    );
}
