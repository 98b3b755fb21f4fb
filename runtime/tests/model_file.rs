//! The Hearth model file: round trip, writer atomicity, and every kind of bad input
//! (each asserting its specific error), plus a mutation fuzz test of the loader.
use hearth_runtime::llm::{Engine, EngineOptions};
use hearth_runtime::model::format::Section;
use hearth_runtime::model::format::{Header, TableEntry, HEADER_LEN, VERSION};
use hearth_runtime::model::pack::dequantize_packed;
use hearth_runtime::model::synth::{
    tiny_bpe_tokenizer_json, tiny_config, tiny_tokenizer_json, write_random_model,
    write_random_model_with, Rng,
};
use hearth_runtime::model::{
    Advice, LoadOptions, ModelConfig, ModelFile, ModelWriter, TensorData, TensorFormat,
};
use proptest::prelude::*;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

fn tiny_model_bytes(dir: &Path, format: TensorFormat) -> Vec<u8> {
    let path = dir.join("tiny.hearth");
    write_random_model(&path, &tiny_config(), format, 7).unwrap();
    std::fs::read(path).unwrap()
}

fn err_of(bytes: Vec<u8>) -> String {
    match ModelFile::from_bytes(bytes) {
        Ok(_) => panic!("corrupt file was accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_err(bytes: Vec<u8>, needle: &str) {
    let e = err_of(bytes);
    assert!(
        e.contains(needle),
        "expected an error containing {needle:?}, got: {e}"
    );
}

/// The pieces of a model file, to reassemble with one part broken.
struct Parts {
    header: Header,
    config: Vec<u8>,
    tokenizer: Vec<u8>,
    /// The tokenizer tables (empty when the file has none).
    tables: Vec<u8>,
    entries: Vec<TableEntry>,
    /// The data section (entries' offsets are absolute into the original file).
    data: Vec<u8>,
}

impl Parts {
    fn split(bytes: &[u8]) -> Parts {
        let header = Header::parse(bytes).unwrap();
        let sec = |s: hearth_runtime::model::format::Section| {
            bytes[s.offset as usize..(s.offset + s.len) as usize].to_vec()
        };
        let entries = TableEntry::parse_table(&sec(header.table), header.n_tensors).unwrap();
        Parts {
            config: sec(header.config),
            tokenizer: sec(header.tokenizer),
            tables: sec(header.tokenizer_tables),
            data: sec(header.data),
            entries,
            header,
        }
    }

    fn config_mut(&mut self, f: impl FnOnce(&mut serde_json::Value)) {
        let mut v: serde_json::Value = serde_json::from_slice(&self.config).unwrap();
        f(&mut v);
        self.config = serde_json::to_vec(&v).unwrap();
    }

    fn entry_mut(&mut self, name: &str) -> &mut TableEntry {
        self.entries.iter_mut().find(|e| e.name == name).unwrap()
    }

    /// Header, config, tokenizer, padding, data at the original data offset (so entry
    /// offsets stay valid), table.
    fn assemble(&self) -> Vec<u8> {
        let mut h = self.header.clone();
        let mut out = vec![0u8; HEADER_LEN];
        h.config.offset = out.len() as u64;
        h.config.len = self.config.len() as u64;
        out.extend_from_slice(&self.config);
        h.tokenizer.offset = out.len() as u64;
        h.tokenizer.len = self.tokenizer.len() as u64;
        out.extend_from_slice(&self.tokenizer);
        h.tokenizer_tables = Section::default();
        if h.version >= 2 && !self.tables.is_empty() {
            out.resize(out.len().next_multiple_of(64), 0);
            h.tokenizer_tables.offset = out.len() as u64;
            h.tokenizer_tables.len = self.tables.len() as u64;
            out.extend_from_slice(&self.tables);
        }
        assert!(
            out.len() as u64 <= h.data.offset,
            "metadata grew past the data section"
        );
        out.resize(h.data.offset as usize, 0);
        out.extend_from_slice(&self.data);
        let mut table = Vec::new();
        for e in &self.entries {
            e.write_to(&mut table);
        }
        h.table.offset = out.len() as u64;
        h.table.len = table.len() as u64;
        h.n_tensors = self.entries.len() as u64;
        out.extend_from_slice(&table);
        out[..HEADER_LEN].copy_from_slice(&h.to_bytes());
        out
    }
}

#[test]
fn round_trip_through_disk_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.hearth");
    let cfg = tiny_config();
    write_random_model(&path, &cfg, TensorFormat::Q4x4, 1).unwrap();
    let opts = LoadOptions {
        mlock: false,
        advise: Advice::WillNeed,
    };
    let m = ModelFile::open_with(&path, &opts).unwrap();
    assert_eq!(m.config(), &cfg);
    assert_eq!(m.tokenizer_json(), tiny_tokenizer_json(cfg.vocab_size));
    let names: Vec<&str> = m.tensor_names().collect();
    let expected = cfg.expected_tensors();
    assert_eq!(
        names,
        expected.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
    );
    for spec in &expected {
        let t = m.tensor(&spec.name).unwrap();
        assert_eq!((t.rows, t.cols), (spec.rows, spec.cols), "{}", spec.name);
        match t.data {
            TensorData::F32(v) => {
                assert!(spec.is_vector());
                assert_eq!(v.len(), spec.cols);
                assert_eq!(v.as_ptr() as usize % 64, 0);
            }
            TensorData::Packed(p) => {
                assert!(!spec.is_vector());
                assert!(matches!(
                    p.data(),
                    hearth_quant::dispatch::PackedData::Q4(_)
                ));
                assert_eq!((p.rows(), p.cols()), (spec.rows, spec.cols));
            }
            TensorData::F16(_) => panic!("no f16 tensors written"),
        }
    }
    assert!(m.verify().is_empty());
    // mlock needs RLIMIT_MEMLOCK room; when the limit refuses, the error must say so.
    let locked = LoadOptions {
        mlock: true,
        advise: Advice::Random,
    };
    match ModelFile::open_with(&path, &locked) {
        Ok(l) => assert_eq!(l.config(), &cfg),
        Err(e) => assert!(e.to_string().contains("mlock of"), "{e}"),
    }
    // Same bytes in memory give the same model.
    let m2 = ModelFile::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(m2.config(), m.config());
    assert_eq!(m2.tensor_infos().len(), m.tensor_infos().len());
    let e = m.tensor("blk.9.attn_q.weight").unwrap_err().to_string();
    assert!(e.contains("no tensor `blk.9.attn_q.weight`"), "{e}");
}

#[test]
fn the_data_written_is_the_data_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.hearth");
    let cfg = tiny_config();
    let mut rng = Rng::new(3);
    let norm = rng.vec(cfg.hidden_size, 1.0);
    let emb = rng.vec(cfg.vocab_size * cfg.hidden_size, 0.5);
    let mut w = ModelWriter::create(&path, &cfg, "{}").unwrap();
    for spec in cfg.expected_tensors() {
        let (fmt, x) = if spec.is_vector() {
            (TensorFormat::F32, norm.clone())
        } else if spec.name == "token_embd.weight" {
            (TensorFormat::Q8x4, emb.clone())
        } else {
            (TensorFormat::Q4Ax4, vec![0.25; spec.rows * spec.cols])
        };
        let t =
            hearth_runtime::model::pack::quantize_matrix(fmt, spec.rows, spec.cols, &x, &spec.name)
                .unwrap();
        w.add_tensor(&spec.name, fmt, spec.rows, spec.cols, t.as_bytes())
            .unwrap();
    }
    w.finish().unwrap();
    let m = ModelFile::open(&path).unwrap();
    match m.tensor("output_norm.weight").unwrap().data {
        TensorData::F32(v) => assert_eq!(v, &norm[..]),
        _ => panic!("norm is not f32"),
    }
    match m.tensor("token_embd.weight").unwrap().data {
        TensorData::Packed(p) => {
            let y = dequantize_packed(&p);
            let max_err = emb
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                max_err <= 0.5 / 127.0 * 1.01,
                "Q8 round trip error {max_err}"
            );
        }
        _ => panic!("embedding is not packed"),
    }
    match m.tensor("blk.0.ffn_up.weight").unwrap().data {
        TensorData::Packed(p) => assert!(dequantize_packed(&p)
            .iter()
            .all(|&v| (v - 0.25).abs() < 1e-3)),
        _ => panic!("ffn_up is not packed"),
    }
}

#[test]
fn failed_write_leaves_no_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.hearth");
    std::fs::write(&path, b"previous model").unwrap();
    let cfg = tiny_config();
    let mut w = ModelWriter::create(&path, &cfg, "{}").unwrap();
    let tmp = dir
        .path()
        .join(format!("m.hearth.tmp-{}", std::process::id()));
    assert!(tmp.exists(), "writes go to the temporary file");
    let t = vec![0.0f32; cfg.hidden_size];
    w.add_f32("blk.0.attn_norm.weight", 1, cfg.hidden_size, &t)
        .unwrap();
    // Simulated failure mid-write: a tensor with the wrong number of bytes.
    let e = w
        .add_f32("blk.0.ffn_norm.weight", 1, cfg.hidden_size, &t[1..])
        .unwrap_err()
        .to_string();
    assert!(e.contains("252 bytes given"), "{e}");
    drop(w);
    assert!(!tmp.exists(), "the temporary file is removed");
    assert_eq!(std::fs::read(&path).unwrap(), b"previous model");

    // Finishing an incomplete model fails validation and renames nothing either.
    let mut w = ModelWriter::create(&path, &cfg, "{}").unwrap();
    w.add_f32("blk.0.attn_norm.weight", 1, cfg.hidden_size, &t)
        .unwrap();
    let e = w.finish().unwrap_err().to_string();
    assert!(
        e.contains("does not validate") && e.contains("no tensor `token_embd.weight`"),
        "{e}"
    );
    assert!(!tmp.exists());
    assert_eq!(std::fs::read(&path).unwrap(), b"previous model");
}

#[test]
fn writer_rejects_duplicates_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.hearth");
    let mut cfg = tiny_config();
    let mut w = ModelWriter::create(&path, &cfg, "{}").unwrap();
    w.add_f32("x", 1, 4, &[0.0; 4]).unwrap();
    assert!(w
        .add_f32("x", 1, 4, &[0.0; 4])
        .unwrap_err()
        .to_string()
        .contains("written twice"));
    drop(w);
    cfg.n_layers = 0;
    let e = ModelWriter::create(&path, &cfg, "{}")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("n_layers = 0"), "{e}");
    assert!(!path.exists());
}

#[test]
fn truncated_files_are_rejected_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model_bytes(dir.path(), TensorFormat::Q8x4);
    let mut cuts: Vec<usize> = (0..bytes.len()).step_by(97).collect();
    cuts.extend([0, 1, 7, 8, 12, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1]);
    for cut in cuts {
        let e = err_of(bytes[..cut].to_vec());
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
}

#[test]
fn wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = tiny_model_bytes(dir.path(), TensorFormat::Q8x4);
    bytes[0] = b'G';
    assert_err(bytes, "bad magic");
    assert_err(b"GGUF\x03\0\0\0".to_vec(), "not a Hearth model file");
}

#[test]
fn future_and_zero_version() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model_bytes(dir.path(), TensorFormat::Q8x4);
    let mut b = bytes.clone();
    b[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
    assert_err(
        b,
        &format!(
            "model file version {} is newer than this hearth (max {VERSION}); upgrade hearth",
            VERSION + 1
        ),
    );
    let mut b = bytes;
    b[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert_err(b, "version 0 is invalid");
}

#[test]
fn tensor_offset_past_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Parts::split(&tiny_model_bytes(dir.path(), TensorFormat::Q8x4));
    p.entry_mut("blk.1.ffn_down.weight").offset = 1 << 40;
    assert_err(
        p.assemble(),
        "tensor `blk.1.ffn_down.weight` at 1099511627776+",
    );
    p.entry_mut("blk.1.ffn_down.weight").offset = u64::MAX - 63;
    assert_err(p.assemble(), "lies outside the data section");
}

#[test]
fn overlapping_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Parts::split(&tiny_model_bytes(dir.path(), TensorFormat::Q8x4));
    let off = p.entry_mut("blk.0.attn_k.weight").offset;
    p.entry_mut("blk.0.attn_v.weight").offset = off + 64;
    let e = err_of(p.assemble());
    assert!(
        e.contains("overlap")
            && e.contains("blk.0.attn_k.weight")
            && e.contains("blk.0.attn_v.weight"),
        "{e}"
    );
}

#[test]
fn misaligned_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Parts::split(&tiny_model_bytes(dir.path(), TensorFormat::Q8x4));
    p.entry_mut("output_norm.weight").offset += 4;
    assert_err(p.assemble(), "tensor `output_norm.weight` offset");
    let mut p = Parts::split(&tiny_model_bytes(dir.path(), TensorFormat::Q8x4));
    p.header.data.offset += 64;
    p.data.drain(..64);
    assert_err(p.assemble(), "not a multiple of 4096");
}

#[test]
fn absurd_dims_do_not_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model_bytes(dir.path(), TensorFormat::Q8x4);
    let mut p = Parts::split(&bytes);
    let e = p.entry_mut("token_embd.weight");
    e.rows = u64::MAX / 2;
    e.cols = 1 << 40;
    assert_err(p.assemble(), "overflows");
    let mut p = Parts::split(&bytes);
    p.entry_mut("token_embd.weight").cols = 33;
    assert_err(p.assemble(), "33 columns, not a multiple of 32");
    let mut p = Parts::split(&bytes);
    p.config_mut(|c| c["hidden_size"] = serde_json::json!(1u64 << 62));
    assert_err(
        p.assemble(),
        "hidden_size = 4611686018427387904 is out of range",
    );
    let mut p = Parts::split(&bytes);
    p.config_mut(|c| c["vocab_size"] = serde_json::json!(-1));
    assert_err(p.assemble(), "model config is not valid JSON");
    let mut p = Parts::split(&bytes);
    p.header.n_tensors = u64::MAX;
    let b = {
        // Keep the table as is but claim an absurd count.
        let mut b = p.assemble();
        b[80..88].copy_from_slice(&u64::MAX.to_le_bytes());
        b
    };
    assert_err(b, "tensor table claims");
}

#[test]
fn shape_inconsistent_with_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Parts::split(&tiny_model_bytes(dir.path(), TensorFormat::Q8x4));
    p.config_mut(|c| c["ffn_dim"] = serde_json::json!(128));
    assert_err(
        p.assemble(),
        "tensor `blk.0.ffn_gate.weight` has shape 96×64, the config needs 128×64",
    );
    // A length that does not match the shape.
    let mut p = Parts::split(&tiny_model_bytes(dir.path(), TensorFormat::Q8x4));
    p.entry_mut("blk.0.attn_q.weight").len -= 136;
    assert_err(
        p.assemble(),
        "tensor `blk.0.attn_q.weight`: 4216 bytes stored, Q8x4 64×64 needs 4352",
    );
    // A norm stored as a matrix format.
    let mut p = Parts::split(&tiny_model_bytes(dir.path(), TensorFormat::Q8x4));
    let e = p.entry_mut("output_norm.weight");
    e.format = TensorFormat::F16;
    e.len /= 2;
    assert_err(
        p.assemble(),
        "tensor `output_norm.weight` is F16, the engine needs F32",
    );
}

#[test]
fn bad_config_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model_bytes(dir.path(), TensorFormat::Q8x4);
    let mut p = Parts::split(&bytes);
    p.config[3] = 0xFF;
    assert_err(p.assemble(), "model config is not valid UTF-8");
    let mut p = Parts::split(&bytes);
    p.config.truncate(p.config.len() - 2);
    assert_err(p.assemble(), "model config is not valid JSON");
    let mut p = Parts::split(&bytes);
    p.config_mut(|c| c["arch"] = serde_json::json!("gpt2"));
    assert_err(p.assemble(), "unknown variant `gpt2`");
    let mut p = Parts::split(&bytes);
    p.tokenizer[0] = 0xC3;
    p.tokenizer[1] = 0x28;
    assert_err(p.assemble(), "tokenizer.json is not valid UTF-8");
}

#[test]
fn missing_and_duplicate_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model_bytes(dir.path(), TensorFormat::Q8x4);
    let mut p = Parts::split(&bytes);
    p.entries.retain(|e| e.name != "blk.1.ffn_up.weight");
    assert_err(
        p.assemble(),
        "model file has no tensor `blk.1.ffn_up.weight`",
    );
    let mut p = Parts::split(&bytes);
    let dup = p.entries[0].clone();
    p.entries.push(dup);
    assert_err(p.assemble(), "overlap");
    let mut p = Parts::split(&bytes);
    p.entries[1].name = p.entries[0].name.clone();
    assert_err(p.assemble(), "appears twice");
    // An untied config needs output.weight.
    let mut p = Parts::split(&bytes);
    p.config_mut(|c| c["tied_embeddings"] = serde_json::json!(false));
    assert_err(p.assemble(), "no tensor `output.weight`");
}

#[test]
fn checksums_catch_flipped_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = tiny_model_bytes(dir.path(), TensorFormat::Q8x4);
    let p = Parts::split(&bytes);
    let e = p
        .entries
        .iter()
        .find(|e| e.name == "blk.0.attn_v.weight")
        .unwrap();
    bytes[e.offset as usize + 5] ^= 0x10;
    let m = ModelFile::from_bytes(bytes).unwrap(); // not checked at load
    assert_eq!(m.verify(), vec!["blk.0.attn_v.weight".to_string()]);
}

#[test]
fn config_validation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model_bytes(dir.path(), TensorFormat::Q8x4);
    let mut p = Parts::split(&bytes);
    p.config_mut(|c| c["n_kv_heads"] = serde_json::json!(3));
    assert_err(
        p.assemble(),
        "n_heads = 4 is not a multiple of n_kv_heads = 3",
    );
    let cfg: ModelConfig = serde_json::from_slice(&Parts::split(&bytes).config).unwrap();
    assert_eq!(cfg, tiny_config());
}

/// Mutations biased towards the metadata (flips in tensor data are valid files).
#[derive(Debug, Clone)]
enum Mutation {
    Flip { pos: usize, mask: u8 },
    Set { pos: usize, byte: u8 },
    Truncate { len: usize },
}

fn mutation(meta_end: usize, len: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0..meta_end, 1u8..=255).prop_map(|(pos, mask)| Mutation::Flip { pos, mask }),
        2 => (0..len, 1u8..=255).prop_map(|(pos, mask)| Mutation::Flip { pos, mask }),
        2 => (0..meta_end, any::<u8>()).prop_map(|(pos, byte)| Mutation::Set { pos, byte }),
        1 => (0..len).prop_map(|len| Mutation::Truncate { len }),
    ]
}

#[test]
fn fuzz_loader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model_bytes(dir.path(), TensorFormat::Q4Ax4);
    let h = Header::parse(&bytes).unwrap();
    // Header, config, tokenizer and the table (at the end) are the interesting bytes.
    let meta_end = (h.tokenizer.offset + h.tokenizer.len) as usize;
    let table = (h.table.offset as usize, bytes.len());
    let len = bytes.len();
    let strategy = prop::collection::vec(
        prop_oneof![
            3 => mutation(meta_end, len),
            2 => (table.0..table.1, 1u8..=255).prop_map(|(pos, mask)| Mutation::Flip { pos, mask }),
        ],
        1..6,
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let start = std::time::Instant::now();
    let (loaded, rejected) = (AtomicUsize::new(0), AtomicUsize::new(0));
    runner
        .run(&strategy, |muts| {
            let mut b = bytes.clone();
            for m in muts {
                match m {
                    Mutation::Flip { pos, mask } if pos < b.len() => b[pos] ^= mask,
                    Mutation::Set { pos, byte } if pos < b.len() => b[pos] = byte,
                    Mutation::Truncate { len } => b.truncate(len),
                    _ => {}
                }
            }
            let Ok(m) = ModelFile::from_bytes(b) else {
                rejected.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            };
            loaded.fetch_add(1, Ordering::Relaxed);
            {
                // Whatever loads must be fully usable.
                let names: Vec<String> = m.tensor_names().map(str::to_owned).collect();
                for n in names {
                    match m.tensor(&n).unwrap().data {
                        TensorData::F32(v) => std::hint::black_box(v.last()),
                        TensorData::F16(v) => std::hint::black_box(v.last().map(|_| &0.0f32)),
                        TensorData::Packed(p) => {
                            std::hint::black_box(Some(&dequantize_packed(&p)[0]))
                        }
                    };
                }
                let _ = m.tokenizer_json().len();
                let _ = m.verify();
            }
            Ok(())
        })
        .unwrap();
    assert!(
        start.elapsed().as_secs_f32() < 20.0,
        "fuzzing took {:?}",
        start.elapsed()
    );
    // Both outcomes must be exercised, or the mutations are not reaching the parser.
    let (loaded, rejected) = (loaded.into_inner(), rejected.into_inner());
    assert!(
        loaded > 50 && rejected > 500,
        "loaded {loaded}, rejected {rejected}"
    );
}

/// A tiny model whose tokenizer (byte-level BPE) gets fast tables.
fn bpe_model_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("bpe.hearth");
    let json = tiny_bpe_tokenizer_json();
    write_random_model_with(&path, &tiny_config(), TensorFormat::Q4Ax4, 3, &json).unwrap();
    std::fs::read(path).unwrap()
}

const SAMPLES: &[&str] = &[
    "",
    "hello world",
    "<|im_start|>hello 12 world<|im_end|>\n",
    "héllo  wörld 1234 'll <|im_end <|im_start|><|im_end|>",
];

fn one_thread() -> EngineOptions {
    EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    }
}

#[test]
fn tokenizer_tables_are_stored_and_read_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let m = ModelFile::from_bytes(bpe_model_bytes(dir.path())).unwrap();
    let t = m.header().tokenizer_tables;
    assert_eq!(m.header().version, VERSION);
    assert!(t.len > 0 && t.offset.is_multiple_of(64), "{t:?}");
    assert!(m.verify().is_empty());
    let reference = tokenizers::Tokenizer::from_str(m.tokenizer_json()).unwrap();
    let bpe = m.tokenizer_tables().expect("tables");
    assert_eq!(bpe.encode("hello world").len(), 2, "merges applied");
    for s in SAMPLES {
        let ids = bpe.encode(s);
        assert_eq!(ids, reference.encode(*s, false).unwrap().get_ids(), "{s:?}");
        assert_eq!(bpe.decode(&ids), *s);
    }
    // The engine tokenizes with the tables; the tokenizers crate (parsed on demand)
    // agrees.
    let e = Engine::load(std::sync::Arc::new(m), one_thread()).unwrap();
    assert!(e.fast_tokenizer().is_some() && e.has_tokenizer());
    for s in SAMPLES {
        let ids = e.tokenize(s, false).unwrap();
        assert_eq!(
            ids,
            e.tokenizer().unwrap().encode(*s, false).unwrap().get_ids()
        );
        assert_eq!(e.detokenize(&ids).unwrap(), *s);
    }
    assert_eq!(e.tokenize("hello", true).unwrap()[0], 1, "BOS first");
}

#[test]
fn version_1_files_load_and_use_the_tokenizers_crate() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = bpe_model_bytes(dir.path());
    let fast = Engine::load(
        std::sync::Arc::new(ModelFile::from_bytes(v2.clone()).unwrap()),
        one_thread(),
    )
    .unwrap();
    let mut parts = Parts::split(&v2);
    parts.header.version = 1;
    let m = ModelFile::from_bytes(parts.assemble()).unwrap();
    assert_eq!(m.header().version, 1);
    assert!(m.tokenizer_tables().is_none());
    let e = Engine::load(std::sync::Arc::new(m), one_thread()).unwrap();
    assert!(e.fast_tokenizer().is_none() && e.has_tokenizer());
    for s in SAMPLES {
        let ids = e.tokenize(s, false).unwrap();
        assert_eq!(ids, fast.tokenize(s, false).unwrap(), "{s:?}");
        assert_eq!(e.detokenize(&ids).unwrap(), fast.detokenize(&ids).unwrap());
    }
}

#[test]
fn bad_tokenizer_tables_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let good = Parts::split(&bpe_model_bytes(dir.path()));
    let broken = |f: &dyn Fn(&mut Vec<u8>), needle: &str| {
        let mut p = Parts::split(&good.assemble());
        f(&mut p.tables);
        assert_err(p.assemble(), needle);
    };
    let set = |i: usize, v: u32| {
        move |t: &mut Vec<u8>| t[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes())
    };
    broken(&|t| t.truncate(t.len() - 1), "the header describes");
    broken(&|t| t.truncate(40), "tokenizer tables: truncated");
    broken(&|t| t.push(0), "the header describes");
    broken(&set(0, 0), "tokenizer tables: bad magic");
    broken(&set(1, 9), "version 9 is not supported");
    broken(&set(2, 77), "unknown pre-tokenizer code 77");
    broken(&set(3, 8), "unknown flags");
    broken(&set(4, 0), "0 tokens");
    broken(&set(4, u32::MAX), "tokens (must be");
    broken(&set(6, 3), "vocabulary hash table has 3 slots");
    broken(&set(7, 1 << 31), "merge hash table has");
    broken(&set(8, u32::MAX), "added tokens (max");
    broken(&set(12, 1), "reserved word 12");
    broken(&set(5, 1 << 30), "the header describes");

    // Section placement: misaligned, outside the file, overlapping another section.
    let bytes = good.assemble();
    let h = Header::parse(&bytes).unwrap();
    let with = |t: Section| {
        let mut b = bytes.clone();
        let mut h = h.clone();
        h.tokenizer_tables = t;
        b[..HEADER_LEN].copy_from_slice(&h.to_bytes());
        b
    };
    let t = h.tokenizer_tables;
    assert_err(
        with(Section {
            offset: t.offset + 4,
            ..t
        }),
        "not a multiple of 64",
    );
    assert_err(
        with(Section {
            offset: bytes.len() as u64,
            ..t
        }),
        "tokenizer tables section",
    );
    assert_err(
        with(Section {
            offset: h.tokenizer.offset & !63,
            ..t
        }),
        "overlap",
    );
}

#[test]
fn fuzz_tokenizer_tables_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = bpe_model_bytes(dir.path());
    let t = Header::parse(&bytes).unwrap().tokenizer_tables;
    let (start, end) = (t.offset as usize, (t.offset + t.len) as usize);
    // Mostly the header words and the merge / added-token arrays, where a change
    // reaches the most code; anywhere in the section otherwise.
    let pos = prop_oneof![
        3 => start..start + 24 * 4,
        3 => end - 400..end,
        4 => start..end,
    ];
    let strategy = (
        prop::collection::vec((pos, any::<u8>()), 1..6),
        "[ a-z0-9<|>_\\n]{0,24}|<\\|im_start\\|>hello",
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let (loaded, rejected) = (AtomicUsize::new(0), AtomicUsize::new(0));
    runner
        .run(&strategy, |(muts, text)| {
            let mut b = bytes.clone();
            for (p, v) in muts {
                b[p] = v;
            }
            let Ok(m) = ModelFile::from_bytes(b) else {
                rejected.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            };
            loaded.fetch_add(1, Ordering::Relaxed);
            // Whatever loads must tokenize and decode without panicking.
            if let Some(bpe) = m.tokenizer_tables() {
                let ids = bpe.encode(&text);
                std::hint::black_box(bpe.decode(&ids));
                std::hint::black_box(bpe.decode(&[0, 1, 255, 300, u32::MAX]));
                std::hint::black_box(bpe.token_id(b"hello"));
            }
            Ok(())
        })
        .unwrap();
    let (loaded, rejected) = (loaded.into_inner(), rejected.into_inner());
    assert!(
        loaded > 500 && rejected > 200,
        "loaded {loaded}, rejected {rejected}"
    );
}
