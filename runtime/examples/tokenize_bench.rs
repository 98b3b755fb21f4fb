//! Tokenization speed: the fast tokenizer (tables read in place from a v2 model file)
//! against the `tokenizers` crate parsing the same file's tokenizer.json, on a text
//! file; checks both give the same ids.
//!
//! `cargo run --release -p hearth-runtime --example tokenize_bench -- MODEL.hearth TEXT [RUNS]`
use hearth_runtime::model::ModelFile;
use std::str::FromStr;
use std::time::Instant;

fn median_ms(mut f: impl FnMut(), runs: usize) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, text) = match &args[..] {
        [m, t, ..] => (m, t),
        _ => return Err("usage: tokenize_bench MODEL.hearth TEXT [RUNS]".into()),
    };
    let runs: usize = args.get(2).map(|r| r.parse()).transpose()?.unwrap_or(5);
    let m = ModelFile::open(model.as_ref())?;
    let text = std::fs::read_to_string(text)?;
    let fast = m
        .tokenizer_tables()
        .ok_or("the model file has no tokenizer tables (format v1?)")?;
    let t = Instant::now();
    let reference = tokenizers::Tokenizer::from_str(m.tokenizer_json())?;
    let parse_ms = t.elapsed().as_secs_f64() * 1e3;
    let ids = fast.encode(&text);
    let ref_ids = reference.encode(text.as_str(), false)?.get_ids().to_vec();
    if ids != ref_ids {
        return Err("the fast tokenizer and the tokenizers crate disagree".into());
    }
    let fast_ms = median_ms(|| drop(std::hint::black_box(fast.encode(&text))), runs);
    let ref_ms = median_ms(
        || drop(std::hint::black_box(reference.encode(text.as_str(), false))),
        runs,
    );
    let dec_fast = median_ms(|| drop(std::hint::black_box(fast.decode(&ids))), runs);
    let dec_ref = median_ms(
        || drop(std::hint::black_box(reference.decode(&ids, false))),
        runs,
    );
    let v = serde_json::json!({
        "text_bytes": text.len(), "tokens": ids.len(),
        "fast_encode_ms": fast_ms, "tokenizers_encode_ms": ref_ms,
        "fast_decode_ms": dec_fast, "tokenizers_decode_ms": dec_ref,
        "tokenizers_parse_ms": parse_ms,
    });
    println!("{v}");
    Ok(())
}
