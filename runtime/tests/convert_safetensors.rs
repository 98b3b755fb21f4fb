//! Hugging Face safetensors folder → Hearth, on tiny synthetic folders made here.
use hearth_runtime::convert::{convert, convert_safetensors, default_output, QuantPolicy};
use hearth_runtime::model::pack::dequantize_packed;
use hearth_runtime::model::synth::{tiny_tokenizer_json, Rng};
use hearth_runtime::model::{Arch, ModelFile, RopeStyle, TensorData, TensorFormat};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::Path;

const VOCAB: usize = 64;
const DIM: usize = 64;
const FFN: usize = 128;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV: usize = 2;

struct Weights {
    /// HF name → (shape, f32 values, stored dtype).
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>, Dtype)>,
}

/// One serialized tensor: name, shape, dtype, bytes.
type Encoded = (String, Vec<usize>, Dtype, Vec<u8>);

fn encode(x: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => x
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => x
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        d => panic!("no encoder for {d:?}"),
    }
}

/// Values as the converter will see them (rounded through the stored dtype).
fn rounded(x: &[f32], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F32 => x.to_vec(),
        Dtype::F16 => x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
        Dtype::BF16 => x
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32())
            .collect(),
        d => panic!("no encoder for {d:?}"),
    }
}

/// Write a tiny HF model folder; qwen2 gets biases and an untied `lm_head`, and its
/// weights are split over two shards.
fn hf_folder(dir: &Path, model_type: &str, seed: u64) -> Weights {
    let qwen = model_type == "qwen2";
    let hd = DIM / HEADS;
    let mut rng = Rng::new(seed);
    let mut tensors = BTreeMap::new();
    let mut add = |name: String, shape: Vec<usize>, dtype: Dtype| {
        let n = shape.iter().product();
        let x = rounded(&rng.vec(n, 0.5), dtype);
        tensors.insert(name, (shape, x, dtype));
    };
    add(
        "model.embed_tokens.weight".into(),
        vec![VOCAB, DIM],
        Dtype::F32,
    );
    add("model.norm.weight".into(), vec![DIM], Dtype::F32);
    if qwen {
        add("lm_head.weight".into(), vec![VOCAB, DIM], Dtype::BF16);
    }
    for i in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        add(p("input_layernorm.weight"), vec![DIM], Dtype::F32);
        add(p("post_attention_layernorm.weight"), vec![DIM], Dtype::BF16);
        add(
            p("self_attn.q_proj.weight"),
            vec![HEADS * hd, DIM],
            Dtype::F16,
        );
        add(p("self_attn.k_proj.weight"), vec![KV * hd, DIM], Dtype::F16);
        add(
            p("self_attn.v_proj.weight"),
            vec![KV * hd, DIM],
            Dtype::BF16,
        );
        add(
            p("self_attn.o_proj.weight"),
            vec![DIM, HEADS * hd],
            Dtype::F32,
        );
        if qwen {
            add(p("self_attn.q_proj.bias"), vec![HEADS * hd], Dtype::F32);
            add(p("self_attn.k_proj.bias"), vec![KV * hd], Dtype::F16);
            add(p("self_attn.v_proj.bias"), vec![KV * hd], Dtype::BF16);
        }
        add(p("mlp.gate_proj.weight"), vec![FFN, DIM], Dtype::BF16);
        add(p("mlp.up_proj.weight"), vec![FFN, DIM], Dtype::F16);
        add(p("mlp.down_proj.weight"), vec![DIM, FFN], Dtype::F32);
    }
    let encoded: Vec<Encoded> = tensors
        .iter()
        .map(|(n, (s, x, d))| (n.clone(), s.clone(), *d, encode(x, *d)))
        .collect();
    let shards: Vec<Vec<&Encoded>> = if qwen {
        let (a, b): (Vec<_>, Vec<_>) = encoded.iter().partition(|t| t.0.contains("layers.0."));
        vec![a, b]
    } else {
        vec![encoded.iter().collect()]
    };
    for (k, shard) in shards.iter().enumerate() {
        let views: Vec<(String, TensorView<'_>)> = shard
            .iter()
            .map(|(n, s, d, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let bytes = safetensors::serialize(views, None).unwrap();
        std::fs::write(
            dir.join(format!(
                "model-0000{}-of-0000{}.safetensors",
                k + 1,
                shards.len()
            )),
            bytes,
        )
        .unwrap();
    }
    let config = serde_json::json!({
        "model_type": model_type,
        "vocab_size": VOCAB,
        "hidden_size": DIM,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": !qwen,
        "rope_scaling": null,
        "bos_token_id": 1,
        "eos_token_id": if qwen { serde_json::json!([2, 0]) } else { serde_json::json!(2) },
        "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tiny_tokenizer_json(VOCAB)).unwrap();
    let tok_cfg = serde_json::json!({ "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}" });
    std::fs::write(dir.join("tokenizer_config.json"), tok_cfg.to_string()).unwrap();
    Weights { tensors }
}

fn rel_rms(x: &[f32], y: &[f32]) -> f32 {
    let num: f32 = x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f32 = x.iter().map(|a| a * a).sum();
    (num / den).sqrt()
}

#[test]
fn llama_folder_converts_and_loads_with_the_right_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-llama");
    std::fs::create_dir(&dir).unwrap();
    let w = hf_folder(&dir, "llama", 11);
    let out = default_output(&dir);
    assert_eq!(out, tmp.path().join("tiny-llama.hearth"));
    let report = convert(&dir, &out, QuantPolicy::Mixed, &mut |_, _| {}).unwrap();
    assert_eq!(report.carried, 0);
    let m = ModelFile::open(&out).unwrap();
    let c = m.config();
    assert_eq!((c.arch, c.rope_style), (Arch::Llama, RopeStyle::Neox));
    assert_eq!(
        (c.vocab_size, c.hidden_size, c.n_layers, c.ffn_dim),
        (VOCAB, DIM, LAYERS, FFN)
    );
    assert_eq!(
        (c.n_heads, c.n_kv_heads, c.head_dim),
        (HEADS, KV, DIM / HEADS)
    );
    assert_eq!(
        (c.rope_theta, c.norm_eps, c.context_length),
        (1e6, 1e-6, 4096)
    );
    assert!(c.tied_embeddings && !c.qkv_bias && c.add_bos);
    assert_eq!(
        (c.bos_id, c.eos_id, c.stop_ids.clone()),
        (Some(1), 2, vec![2])
    );
    assert!(c.chat_template.as_deref().unwrap().contains("m.content"));
    assert_eq!(m.tokenizer_json(), tiny_tokenizer_json(VOCAB));
    for spec in c.expected_tensors() {
        let t = m.tensor(&spec.name).unwrap();
        assert_eq!((t.rows, t.cols), (spec.rows, spec.cols), "{}", spec.name);
    }
    // Norms are copied exactly (F32 and BF16 sources alike).
    let TensorData::F32(v) = m.tensor("blk.1.ffn_norm.weight").unwrap().data else {
        panic!()
    };
    assert_eq!(
        v,
        &w.tensors["model.layers.1.post_attention_layernorm.weight"].1[..]
    );
    // Matrices: Mixed → 8-bit embedding, 4-bit layers, both close to the source.
    for (name, hf, fmt, bound) in [
        (
            "token_embd.weight",
            "model.embed_tokens.weight",
            TensorFormat::Q8x4,
            0.01,
        ),
        (
            "blk.0.attn_v.weight",
            "model.layers.0.self_attn.v_proj.weight",
            TensorFormat::Q4x4,
            0.1,
        ),
        (
            "blk.1.ffn_down.weight",
            "model.layers.1.mlp.down_proj.weight",
            TensorFormat::Q4x4,
            0.1,
        ),
    ] {
        assert_eq!(m.info(name).unwrap().format, fmt, "{name}");
        let TensorData::Packed(p) = m.tensor(name).unwrap().data else {
            panic!("{name}")
        };
        let e = rel_rms(&w.tensors[hf].1, &dequantize_packed(&p));
        assert!(e > 0.0 && e < bound, "{name}: relative RMS error {e}");
    }
}

#[test]
fn qwen2_sharded_folder_keeps_biases_and_head() {
    let tmp = tempfile::tempdir().unwrap();
    let w = hf_folder(tmp.path(), "qwen2", 12);
    let out = tmp.path().join("q.hearth");
    convert_safetensors(tmp.path(), &out, QuantPolicy::Q8, &mut |_, _| {}).unwrap();
    let m = ModelFile::open(&out).unwrap();
    let c = m.config();
    assert_eq!((c.arch, c.rope_style), (Arch::Qwen2, RopeStyle::Neox));
    assert!(c.qkv_bias && !c.tied_embeddings && !c.add_bos);
    assert_eq!(c.stop_ids, vec![2, 0]);
    for (name, hf) in [
        ("blk.0.attn_q.bias", "model.layers.0.self_attn.q_proj.bias"),
        ("blk.1.attn_k.bias", "model.layers.1.self_attn.k_proj.bias"),
        ("blk.1.attn_v.bias", "model.layers.1.self_attn.v_proj.bias"),
    ] {
        let TensorData::F32(v) = m.tensor(name).unwrap().data else {
            panic!("{name}")
        };
        assert_eq!(v, &w.tensors[hf].1[..], "{name}");
    }
    let TensorData::Packed(p) = m.tensor("output.weight").unwrap().data else {
        panic!()
    };
    assert_eq!((p.rows(), p.cols()), (VOCAB, DIM));
    assert!(rel_rms(&w.tensors["lm_head.weight"].1, &dequantize_packed(&p)) < 0.01);
}

#[test]
fn missing_pieces_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    hf_folder(tmp.path(), "llama", 13);
    let out = tmp.path().join("x.hearth");
    // No tokenizer.
    std::fs::rename(tmp.path().join("tokenizer.json"), tmp.path().join("t.bak")).unwrap();
    let e = convert_safetensors(tmp.path(), &out, QuantPolicy::Mixed, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no tokenizer.json"), "{e}");
    std::fs::rename(tmp.path().join("t.bak"), tmp.path().join("tokenizer.json")).unwrap();
    // A config that disagrees with the weights.
    let cfg_path = tmp.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["intermediate_size"] = serde_json::json!(160);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = convert_safetensors(tmp.path(), &out, QuantPolicy::Mixed, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("[128, 64]"),
        "{e}"
    );
    cfg["intermediate_size"] = serde_json::json!(FFN);
    cfg["model_type"] = serde_json::json!("mistral");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = convert_safetensors(tmp.path(), &out, QuantPolicy::Mixed, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("model_type `mistral` is not supported"), "{e}");
    assert!(!out.exists());
}
