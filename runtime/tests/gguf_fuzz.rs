//! Mutation fuzzing of the GGUF reader: random byte flips, overwritten length
//! fields, insertions, deletions and truncations of a valid file must give `Ok` or
//! `Err`, never a panic, never an allocation out of proportion to the input, and
//! never take long.
//!
//! This test binary has a counting global allocator, so it holds a single test: the
//! peak it measures is then this test's alone.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hearth_runtime::gguf::write::GgufBuilder;
use hearth_runtime::gguf::{dequantize, tokenizer_json, GgmlType, GgufFile, MetaValue};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to the system allocator with the caller's arguments
// unchanged; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A small valid file exercising every part of the format the reader handles.
fn seed() -> Vec<u8> {
    let s = |x: &str| MetaValue::Str(x.to_owned());
    let tokens: Vec<MetaValue> = ["a", "b", "ab", "Ġ", "Ġa", "<|im_start|>", "1", "2"]
        .into_iter()
        .map(s)
        .collect();
    let q4_0: Vec<u8> = (0..2 * 18).map(|i| (i * 7) as u8).collect();
    let q8_0: Vec<u8> = (0..34).map(|i| (i * 13 + 1) as u8).collect();
    let q4_k: Vec<u8> = (0..144).map(|i| (i * 31 + 5) as u8).collect();
    GgufBuilder::new()
        .meta("general.architecture", s("llama"))
        .meta("general.alignment", MetaValue::U32(32))
        .meta("llama.block_count", MetaValue::U32(1))
        .meta("llama.rope.freq_base", MetaValue::F32(10000.0))
        .meta("flag", MetaValue::Bool(true))
        .meta("wide", MetaValue::I64(-5))
        .meta(
            "nested",
            MetaValue::Array(vec![MetaValue::Array(vec![
                MetaValue::U16(1),
                MetaValue::U16(2),
            ])]),
        )
        .meta("tokenizer.ggml.model", s("gpt2"))
        .meta("tokenizer.ggml.pre", s("smollm"))
        .meta("tokenizer.ggml.tokens", MetaValue::Array(tokens))
        .meta(
            "tokenizer.ggml.token_type",
            MetaValue::Array([1, 1, 1, 1, 1, 3, 1, 1].map(MetaValue::I32).to_vec()),
        )
        .meta(
            "tokenizer.ggml.merges",
            MetaValue::Array(vec![s("a b"), s("Ġ a")]),
        )
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(5))
        .tensor_f32("norm.weight", &[4], &[1.0, 2.0, 3.0, 4.0])
        .tensor("q4_0", &[32, 2], GgmlType::Q4_0, q4_0)
        .tensor("q8_0", &[32], GgmlType::Q8_0, q8_0)
        .tensor("q4_k", &[256], GgmlType::Q4_K, q4_k)
        .tensor("odd", &[8], GgmlType::Unknown(200), vec![0; 8])
        .to_bytes()
}

#[derive(Clone, Debug)]
enum Mutation {
    Xor(Index, u8),
    /// Overwrite 8 bytes, aimed at length and count fields.
    Set64(Index, u64),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let big = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(1 << 32),
        Just(1 << 60),
        Just(0x8000_0000_0000_0000),
        any::<u64>(),
        0u64..4096,
    ];
    prop_oneof![
        4 => (any::<Index>(), 1u8..).prop_map(|(i, x)| Mutation::Xor(i, x)),
        3 => (any::<Index>(), big).prop_map(|(i, v)| Mutation::Set64(i, v)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Xor(i, x) => {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        Mutation::Set64(i, v) => {
            let i = i.index(bytes.len());
            let end = (i + 8).min(bytes.len());
            bytes[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
        }
        Mutation::Insert(i, b) => {
            let i = i.index(bytes.len());
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = i.index(bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
    }
}

/// Everything a consumer might do with a file that opened.
fn exercise(g: &GgufFile) {
    for t in g.tensors() {
        let _ = (t.rows(), t.cols(), t.n_elements(), t.n_bytes());
        if let Ok(bytes) = g.tensor_bytes(t) {
            if t.ty.can_dequantize() {
                let mut out = vec![0f32; t.n_elements()];
                dequantize(t.ty, bytes, &mut out).expect("a tensor that opened dequantizes");
            }
        }
    }
    for key in g.metadata().keys() {
        let _ = (
            g.get_str(key),
            g.get_u32(key),
            g.get_f32(key),
            g.get_str_array(key),
        );
    }
    if let Ok(json) = tokenizer_json(g) {
        let _: serde_json::Value = serde_json::from_str(&json).expect("tokenizer.json is JSON");
    }
}

/// The one test of this binary (see the module docs for why there is only one).
#[test]
fn mutated_files_never_panic_or_blow_up() {
    let g = GgufFile::from_bytes(seed()).expect("the seed is valid");
    assert_eq!(g.tensors().len(), 5);
    exercise(&g);
    assert!(tokenizer_json(&g).unwrap().contains("<|im_start|>"));
    drop(g);

    let config = ProptestConfig {
        cases: 20_000,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let (opened, total) = (Cell::new(0usize), Cell::new(0usize));
    let strategy = prop::collection::vec(mutation(), 1..6);
    let result = runner.run(&strategy, |muts| {
        let mut bytes = seed();
        for m in &muts {
            apply(&mut bytes, m);
        }
        let len = bytes.len();
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let start = Instant::now();
        total.set(total.get() + 1);
        if let Ok(g) = GgufFile::from_bytes(bytes) {
            opened.set(opened.get() + 1);
            exercise(&g);
        }
        let elapsed = start.elapsed();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        // The parsed form may be a few dozen times the size of what it describes
        // (a 1-byte u8 element becomes a MetaValue), never more.
        prop_assert!(
            peak <= 64 * len + (1 << 20),
            "peak allocation {peak} bytes for a {len}-byte file"
        );
        prop_assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (opened, total) = (opened.get(), total.get());
    eprintln!("{opened} of {total} mutated files opened");
    // Mutations must not all be caught by the first check: many files still open
    // and get their tensors and tokenizer exercised.
    assert!(
        opened * 20 > total,
        "only {opened} of {total} mutated files opened"
    );
}
