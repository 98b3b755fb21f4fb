//! Golden test: SmolLM2-135M-Instruct (Q4_1, imported losslessly) must reproduce
//! llama.cpp's greedy tokens for the reference prompt, and its logits must track
//! llama.cpp's at every step when fed llama.cpp's tokens (teacher forcing).
//!
//! Reference data (copied from the shared golden set): `data/golden/
//! smollm2-135m-greedy.json` (prompt ids, 64 greedy ids) and `margins-q4_1.txt`
//! (llama.cpp's top-2 tokens and logits per step).
use hearth_runtime::convert::{convert_gguf, QuantPolicy};
use hearth_runtime::llm::sampler::argmax;
use hearth_runtime::llm::{ChatMessage, ChatTemplate, Engine, EngineOptions, KvType, Role};
use hearth_runtime::model::ModelFile;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// llama.cpp's top-1/top-2 logit gap below which either token is an honest pick.
const NEAR_TIE: f32 = 0.05;

/// Largest allowed |our top-1 logit − llama.cpp's| at any step, and the mean over
/// the 64 steps. Measured: max 0.41 (step 19), mean 0.14, and our top-1 equals
/// llama.cpp's at every step except the 0.008 near-tie of step 2.
///
/// Why the max cannot be tight: llama.cpp quantizes activations to Q8_1 (f16-rounded
/// block sums), rounds q to f16 before Q·K with an f16 KV cache, and uses
/// approximate exp/silu. Such tiny perturbations move individual Q8 activation codes
/// across rounding boundaries, which 30 layers amplify. Measured on our own engine
/// against llama.cpp: rounding q to f16 (as llama.cpp does) → max 0.60; only
/// changing the float summation order of the attention dot products (AVX2, 16
/// lanes) → max 0.73, mean 0.145. So the max is bounded at 1.0 and the mean — which
/// those variations barely move — at 0.2. A wrong RoPE pairing, theta, norm epsilon
/// or attention scale shifts logits by several units and flips top-1 tokens at
/// large margins.
const LOGIT_TOL_MAX: f32 = 1.0;
const LOGIT_TOL_MEAN: f32 = 0.2;

struct Golden {
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
    /// Per step: (top1 id, top1 logit, top2 id, margin).
    margins: Vec<(u32, f32, u32, f32)>,
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name)
}

fn golden() -> Golden {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("smollm2-135m-greedy.json")).unwrap())
            .unwrap();
    let run = json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["gguf"] == "SmolLM2-135M-Instruct.Q4_1.gguf")
        .expect("Q4_1 run in the golden file");
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let text = std::fs::read_to_string(data("margins-q4_1.txt")).unwrap();
    // "step 0: top1 33 (31.6353) top2 4590 (30.4133) margin 1.2220"
    let margins = text
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let num = |s: &str| {
                s.trim_matches(|c| c == '(' || c == ')')
                    .parse::<f32>()
                    .unwrap()
            };
            (
                w[3].parse().unwrap(),
                num(w[4]),
                w[6].parse().unwrap(),
                num(w[9]),
            )
        })
        .collect();
    Golden {
        prompt_ids: ids(&run["prompt_ids"]),
        ids: ids(&run["ids"]),
        margins,
    }
}

fn hearth_home() -> PathBuf {
    std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth")
        })
}

/// The converted model: `$HEARTH_HOME/models/smollm2-135m-instruct.hearth` if it
/// exists, else converted from the GGUF (QuantPolicy::Keep) into a temp dir; 2 threads.
fn engine() -> Engine {
    engine_with(2)
}

fn engine_with(threads: usize) -> Engine {
    static MODEL: OnceLock<(Arc<ModelFile>, Option<tempfile::TempDir>)> = OnceLock::new();
    let (model, _) = MODEL.get_or_init(|| {
        let home = hearth_home();
        let converted = home.join("models/smollm2-135m-instruct.hearth");
        if converted.exists() {
            return (Arc::new(ModelFile::open(&converted).unwrap()), None);
        }
        let gguf = home.join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            gguf.exists(),
            "{} is missing: run scripts/fetch-models",
            gguf.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("smollm2.hearth");
        convert_gguf(&gguf, &out, QuantPolicy::Keep, &mut |_, _| {}).unwrap();
        (Arc::new(ModelFile::open(&out).unwrap()), Some(dir))
    });
    let opts = EngineOptions {
        threads,
        kv_type: KvType::F16,
        batch: 32,
    };
    Engine::load(model.clone(), opts).unwrap()
}

#[test]
fn chat_template_and_tokenizer_give_the_golden_prompt() {
    let g = golden();
    let e = engine();
    let tpl = ChatTemplate::from_model(e.info().chat_template.as_deref()).unwrap();
    let text = tpl.render(
        &[ChatMessage::new(
            Role::User,
            "Give me three tips for staying healthy.",
        )],
        true,
    );
    assert_eq!(e.tokenize(&text, e.info().add_bos).unwrap(), g.prompt_ids);
}

#[test]
fn greedy_generation_matches_llama_cpp() {
    let g = golden();
    let e = engine();
    let mut s = e.new_session(256).unwrap();
    let mut logits = s.prefill(&g.prompt_ids).unwrap().to_vec();
    let mut matched = 0;
    for (step, &want) in g.ids.iter().enumerate() {
        let got = argmax(&logits);
        if got != want {
            let (_, _, top2, margin) = g.margins[step];
            assert!(
                margin < NEAR_TIE && got == top2,
                "step {step}: we picked {got}, llama.cpp {want} (its runner-up {top2}, margin {margin})"
            );
            eprintln!("step {step}: near-tie (margin {margin}), picked llama.cpp's runner-up; comparison ends");
            break;
        }
        matched += 1;
        if step + 1 < g.ids.len() {
            logits.copy_from_slice(s.decode(got).unwrap());
        }
    }
    eprintln!(
        "greedy: {matched}/{} tokens identical to llama.cpp",
        g.ids.len()
    );
    let text = e.detokenize(&g.ids[..matched]).unwrap();
    eprintln!("{text}");
}

/// The thread count changes who computes what, never the result: prefill (two
/// batches) and 24 greedy steps give bit-identical logits at 1, 2 and 3 threads.
#[test]
fn output_does_not_depend_on_the_thread_count() {
    let g = golden();
    let run = |threads: usize| {
        let e = engine_with(threads);
        let mut s = e.new_session(256).unwrap();
        let mut logits = s.prefill(&g.prompt_ids).unwrap().to_vec();
        let mut ids = Vec::new();
        let mut bits = Vec::new();
        for _ in 0..24 {
            let id = argmax(&logits);
            ids.push(id);
            bits.extend(logits.iter().map(|v| v.to_bits()));
            logits.copy_from_slice(s.decode(id).unwrap());
        }
        (ids, bits)
    };
    let (ids1, bits1) = run(1);
    for threads in [2, 3] {
        let (ids, bits) = run(threads);
        assert_eq!(ids, ids1, "greedy tokens at {threads} threads");
        assert!(
            bits == bits1,
            "logits at {threads} threads differ from 1 thread's"
        );
    }
}

#[test]
fn teacher_forced_logits_track_llama_cpp() {
    let g = golden();
    let e = engine();
    let mut s = e.new_session(256).unwrap();
    let mut seq = g.prompt_ids.clone();
    seq.extend_from_slice(&g.ids[..g.ids.len() - 1]);
    let first = g.prompt_ids.len() - 1;
    let mut worst = (0.0f32, 0usize);
    let mut sum_dev = 0.0f32;
    let mut disagreements = Vec::new();
    s.eval_logits(&seq, first, |i, logits| {
        let step = i - first;
        let (top1, top1_logit, _, margin) = g.margins[step];
        assert_eq!(
            top1, g.ids[step],
            "margins file and ids disagree at step {step}"
        );
        let ours = argmax(logits);
        if ours != top1 {
            disagreements.push((step, ours, margin));
        }
        let dev = (logits[top1 as usize] - top1_logit).abs();
        if std::env::var_os("GOLDEN_VERBOSE").is_some() {
            eprintln!(
                "step {step}: ours {:.4} llama.cpp {top1_logit:.4} dev {dev:.4}",
                logits[top1 as usize]
            );
        }
        sum_dev += dev;
        if dev > worst.0 {
            worst = (dev, step);
        }
    })
    .unwrap();
    let mean = sum_dev / g.ids.len() as f32;
    eprintln!(
        "teacher forcing: max |Δ top-1 logit| = {:.4} at step {}, mean {mean:.4}; top-1 disagreements {disagreements:?}",
        worst.0, worst.1
    );
    for &(step, ours, margin) in &disagreements {
        assert!(
            margin < NEAR_TIE,
            "step {step}: our top-1 {ours} ≠ llama.cpp's {} (margin {margin})",
            g.ids[step]
        );
    }
    assert!(
        worst.0 < LOGIT_TOL_MAX,
        "logit deviation {} at step {} exceeds {LOGIT_TOL_MAX}",
        worst.0,
        worst.1
    );
    assert!(
        mean < LOGIT_TOL_MEAN,
        "mean logit deviation {mean} exceeds {LOGIT_TOL_MEAN}"
    );
}

#[test]
fn streamed_pieces_are_whole_characters_with_the_real_tokenizer() {
    use hearth_runtime::llm::TextStream;
    let e = engine();
    let text = "Grüße aus Köln 🙂🎉 — 東京タワー, naïve café";
    let ids = e.tokenize(text, false).unwrap();
    let mut stream = TextStream::new();
    let (mut out, mut held) = (String::new(), 0);
    for &id in &ids {
        match stream.step(id, |w| e.detokenize(w)).unwrap() {
            Some(piece) => {
                assert!(
                    !piece.contains('\u{FFFD}'),
                    "partial character in {piece:?}"
                );
                out.push_str(&piece);
            }
            None => held += 1,
        }
    }
    assert_eq!(out, text);
    // Some characters span several byte-level tokens: those tokens were held back.
    assert!(held > 0, "expected multi-token characters in {ids:?}");
}
