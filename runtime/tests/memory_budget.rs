//! The up-front memory estimate (`llm::MemoryEstimate`) against what a session really
//! allocates, on the real SmolLM2-135M model, and its refusal with the numbers.
use std::path::PathBuf;
use std::sync::Arc;

use hearth_runtime::llm::{Engine, EngineOptions, KvType, MemoryEstimate};
use hearth_runtime::model::ModelFile;

fn model_path() -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth")
        });
    let p = home.join("models/smollm2-135m-instruct.hearth");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models",
        p.display()
    );
    p
}

#[test]
fn estimate_matches_the_sessions_allocation() {
    let model = Arc::new(ModelFile::open(&model_path()).unwrap());
    for kv_type in [KvType::F16, KvType::Q8] {
        let opts = EngineOptions {
            threads: 1,
            kv_type,
            ..Default::default()
        };
        let engine = Engine::load(model.clone(), opts.clone()).unwrap();
        for ctx in [1, 31, 256, 2048] {
            let est = MemoryEstimate::for_model(&model, ctx, &opts).unwrap();
            let session = engine.new_session(ctx).unwrap();
            assert_eq!(
                (est.kv_cache + est.scratch) as usize,
                session.memory_bytes(),
                "ctx {ctx}, {kv_type:?}"
            );
            assert_eq!(est.weights, model.file_len() as u64);
        }
    }
}

#[test]
fn too_little_ram_is_refused_with_the_numbers() {
    let model = ModelFile::open(&model_path()).unwrap();
    let opts = EngineOptions {
        threads: 1,
        ..Default::default()
    };
    let est = MemoryEstimate::for_model(&model, 8192, &opts).unwrap();
    // SmolLM2-135M: 30 layers × 3 KV heads × 64 dims × 8192 positions × (K + V) × f16.
    assert_eq!(est.kv_cache, 30 * 3 * 64 * 8192 * 2 * 2);
    let err = est
        .check(256 << 20, "board pi-zero-2w")
        .unwrap_err()
        .to_string();
    for part in [
        "not enough RAM",
        "8192-token context",
        "KV cache 180.0 MiB",
        "board pi-zero-2w allows 256.0 MiB",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    est.check(est.total(), "exactly enough").unwrap();
    // A context the model was not trained for is its own error.
    let e = MemoryEstimate::for_model(&model, 1 << 20, &opts).unwrap_err();
    assert!(
        e.to_string()
            .contains("8192 tokens the model was trained for"),
        "{e}"
    );
}
