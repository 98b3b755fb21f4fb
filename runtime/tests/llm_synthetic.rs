//! The engine on small synthetic models, against a naive f32 reference written
//! independently here (full recomputation, no cache, no activation quantization).
use hearth_quant::dispatch::PackedData;
use hearth_quant::packed::{pack_matrix, BlockQ4Ax4, BlockQ4x4, BlockQ8x4, PackedBlock};
use hearth_quant::quantize::{
    dequantize_block_q4, dequantize_block_q4a, dequantize_row_q8, quantize_block_q4,
    quantize_block_q4a, quantize_row_q8_weights,
};
use hearth_quant::{BlockQ4, BlockQ4A, BlockQ8, PackedMatrix, QK};
use hearth_runtime::llm::*;
use hearth_runtime::Result;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Deterministic pseudo-random floats in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

#[derive(Clone, Copy)]
enum Fmt {
    Q8,
    Q4,
    Q4A,
}

/// A packed matrix and its exact dequantization (what the reference multiplies by).
enum Packed {
    Q8(Vec<BlockQ8x4>),
    Q4(Vec<BlockQ4x4>),
    Q4A(Vec<BlockQ4Ax4>),
}
struct Mat {
    rows: usize,
    cols: usize,
    packed: Packed,
    dense: Vec<f32>,
}

impl Mat {
    fn new(rng: &mut Lcg, rows: usize, cols: usize, fmt: Fmt) -> Mat {
        let x = rng.vec(rows * cols, 1.0 / (cols as f32).sqrt() * 1.7);
        let nb = cols / QK;
        let mut dense = vec![0.0f32; rows * cols];
        let blocks = |f: &mut dyn FnMut(&[f32; QK], &mut [f32; QK])| {
            for (i, c) in x.chunks_exact(QK).enumerate() {
                let mut out = [0.0f32; QK];
                f(c.try_into().unwrap(), &mut out);
                dense[i * QK..(i + 1) * QK].copy_from_slice(&out);
            }
        };
        let mut blocks = blocks;
        let packed = match fmt {
            Fmt::Q8 => {
                let mut b = vec![
                    BlockQ8 {
                        d: half::f16::ZERO,
                        qs: [0; QK]
                    };
                    rows * nb
                ];
                quantize_row_q8_weights(&x, &mut b);
                let mut it = b.iter();
                blocks(&mut |_, out| {
                    dequantize_row_q8(std::slice::from_ref(it.next().unwrap()), out)
                });
                Packed::Q8(pack(&b, rows, nb))
            }
            Fmt::Q4 => {
                let b: Vec<BlockQ4> = x
                    .chunks_exact(QK)
                    .map(|c| quantize_block_q4(c.try_into().unwrap()))
                    .collect();
                let mut it = b.iter();
                blocks(&mut |_, out| dequantize_block_q4(it.next().unwrap(), out));
                Packed::Q4(pack(&b, rows, nb))
            }
            Fmt::Q4A => {
                let b: Vec<BlockQ4A> = x
                    .chunks_exact(QK)
                    .map(|c| quantize_block_q4a(c.try_into().unwrap()))
                    .collect();
                let mut it = b.iter();
                blocks(&mut |_, out| dequantize_block_q4a(it.next().unwrap(), out));
                Packed::Q4A(pack(&b, rows, nb))
            }
        };
        Mat {
            rows,
            cols,
            packed,
            dense,
        }
    }

    fn matrix(&self) -> Matrix<'_> {
        let data = match &self.packed {
            Packed::Q8(b) => PackedData::Q8(b),
            Packed::Q4(b) => PackedData::Q4(b),
            Packed::Q4A(b) => PackedData::Q4A(b),
        };
        Matrix::Packed(PackedMatrix::new(self.rows, self.cols, data).unwrap())
    }

    /// y = W x
    fn mul(&self, x: &[f32]) -> Vec<f32> {
        (0..self.rows)
            .map(|r| {
                self.dense[r * self.cols..(r + 1) * self.cols]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    }
}

fn pack<P: PackedBlock>(b: &[P::Row], rows: usize, nb: usize) -> Vec<P> {
    let mut out = vec![P::zeroed(); rows.div_ceil(4) * nb];
    pack_matrix(b, rows, nb, &mut out).unwrap();
    out
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Mat,
    wk: Mat,
    wv: Mat,
    bias: Option<[Vec<f32>; 3]>,
    wo: Mat,
    ffn_norm: Vec<f32>,
    gate: Mat,
    up: Mat,
    down: Mat,
}

struct Synth {
    hp: Hparams,
    embd: Mat,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    tokenizer: String,
}

const VOCAB: usize = 70; // not a multiple of 4: the head's last row group is partial

fn synth(
    n_heads: usize,
    n_kv: usize,
    head_dim: usize,
    style: RopeStyle,
    bias: bool,
    seed: u64,
) -> Synth {
    let mut rng = Lcg(seed);
    let dim = 64;
    let ffn = 96;
    let hp = Hparams {
        vocab_size: VOCAB,
        dim,
        n_layers: 2,
        n_heads,
        n_kv_heads: n_kv,
        head_dim,
        ffn_dim: ffn,
        rope_theta: 10000.0,
        rope_style: style,
        norm_eps: 1e-5,
        context_length: 64,
    };
    let (qd, kvd) = (n_heads * head_dim, n_kv * head_dim);
    let norm = |rng: &mut Lcg| {
        rng.vec(dim, 0.3)
            .iter()
            .map(|v| 1.0 + v)
            .collect::<Vec<_>>()
    };
    let layers = (0..2)
        .map(|_| Layer {
            attn_norm: norm(&mut rng),
            wq: Mat::new(&mut rng, qd, dim, Fmt::Q4A),
            wk: Mat::new(&mut rng, kvd, dim, Fmt::Q4),
            wv: Mat::new(&mut rng, kvd, dim, Fmt::Q8),
            bias: bias.then(|| [rng.vec(qd, 0.5), rng.vec(kvd, 0.5), rng.vec(kvd, 0.5)]),
            wo: Mat::new(&mut rng, dim, qd, Fmt::Q4A),
            ffn_norm: norm(&mut rng),
            gate: Mat::new(&mut rng, ffn, dim, Fmt::Q4A),
            up: Mat::new(&mut rng, ffn, dim, Fmt::Q4),
            down: Mat::new(&mut rng, dim, ffn, Fmt::Q8),
        })
        .collect();
    // Embedding scaled up so logits (tied head) spread over a few units.
    let mut embd = Mat::new(&mut rng, VOCAB, dim, Fmt::Q8);
    let _ = &mut embd;
    let vocab: Vec<String> = (0..VOCAB).map(|i| format!("\"t{i}\": {i}")).collect();
    let tokenizer = format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
        "pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,"decoder":null,
        "model":{{"type":"WordLevel","vocab":{{{}}},"unk_token":"t0"}}}}"#,
        vocab.join(",")
    );
    Synth {
        hp,
        embd,
        layers,
        out_norm: norm(&mut rng),
        tokenizer,
    }
}

impl WeightSource for Synth {
    fn weights(&self) -> Result<Weights<'_>> {
        Ok(Weights {
            hp: self.hp.clone(),
            token_embd: self.embd.matrix(),
            layers: self
                .layers
                .iter()
                .map(|l| LayerWeights {
                    attn_norm: &l.attn_norm,
                    wq: l.wq.matrix(),
                    wk: l.wk.matrix(),
                    wv: l.wv.matrix(),
                    bq: l.bias.as_ref().map(|b| &b[0][..]),
                    bk: l.bias.as_ref().map(|b| &b[1][..]),
                    bv: l.bias.as_ref().map(|b| &b[2][..]),
                    wo: l.wo.matrix(),
                    ffn_norm: &l.ffn_norm,
                    w_gate: l.gate.matrix(),
                    w_up: l.up.matrix(),
                    w_down: l.down.matrix(),
                })
                .collect(),
            output_norm: &self.out_norm,
            output: self.embd.matrix(),
        })
    }
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "synthetic".into(),
            bos_id: Some(1),
            eos_id: 2,
            stop_ids: vec![2],
            add_bos: false,
            chat_template: None,
        }
    }
    fn tokenizer_json(&self) -> Option<&str> {
        Some(&self.tokenizer)
    }
}

// ---------- the reference: plain f32, whole sequence recomputed ----------

fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(a, b)| a * s * b).collect()
}

fn rope(x: &mut [f32], hd: usize, pos: usize, theta: f32, style: RopeStyle) {
    for head in x.chunks_exact_mut(hd) {
        for i in 0..hd / 2 {
            let ang = pos as f64 / (theta as f64).powf(2.0 * i as f64 / hd as f64);
            let (c, s) = (ang.cos() as f32, ang.sin() as f32);
            let (a, b) = match style {
                RopeStyle::Norm => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + hd / 2),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

/// Logits after every token of `tokens`.
fn reference(m: &Synth, tokens: &[u32]) -> Vec<Vec<f32>> {
    let hp = &m.hp;
    let (hd, nh, nkv) = (hp.head_dim, hp.n_heads, hp.n_kv_heads);
    let mut x: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| m.embd.dense[t as usize * hp.dim..(t as usize + 1) * hp.dim].to_vec())
        .collect();
    for l in &m.layers {
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (p, xt) in x.iter().enumerate() {
            let h = rmsnorm(xt, &l.attn_norm, hp.norm_eps);
            let (mut q, mut k, mut v) = (l.wq.mul(&h), l.wk.mul(&h), l.wv.mul(&h));
            if let Some([bq, bk, bv]) = &l.bias {
                q.iter_mut().zip(bq).for_each(|(a, b)| *a += b);
                k.iter_mut().zip(bk).for_each(|(a, b)| *a += b);
                v.iter_mut().zip(bv).for_each(|(a, b)| *a += b);
            }
            rope(&mut q, hd, p, hp.rope_theta, hp.rope_style);
            rope(&mut k, hd, p, hp.rope_theta, hp.rope_style);
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for p in 0..x.len() {
            let mut att = vec![0.0f32; nh * hd];
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let q = &qs[p][h * hd..(h + 1) * hd];
                let mut sc: Vec<f32> = (0..=p)
                    .map(|j| {
                        q.iter()
                            .zip(&ks[j][kvh * hd..(kvh + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                let mx = sc.iter().copied().fold(f32::MIN, f32::max);
                sc.iter_mut().for_each(|s| *s = (*s - mx).exp());
                let sum: f32 = sc.iter().sum();
                for (j, s) in sc.iter().enumerate() {
                    for d in 0..hd {
                        att[h * hd + d] += s / sum * vs[j][kvh * hd + d];
                    }
                }
            }
            let o = l.wo.mul(&att);
            x[p].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let h = rmsnorm(&x[p], &l.ffn_norm, hp.norm_eps);
            let (g, u) = (l.gate.mul(&h), l.up.mul(&h));
            let act: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = l.down.mul(&act);
            x[p].iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
    }
    x.iter()
        .map(|xt| m.embd.mul(&rmsnorm(xt, &m.out_norm, hp.norm_eps)))
        .collect()
}

fn engine(m: Synth, threads: usize, kv: KvType, batch: usize) -> Engine {
    Engine::from_source(
        Arc::new(m),
        EngineOptions {
            threads,
            kv_type: kv,
            batch,
        },
    )
    .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const TOKENS: [u32; 9] = [5, 17, 3, 69, 42, 8, 8, 30, 1];

/// Q8 activations against exact f32: the logits (spread ±3 or so) agree to 0.08.
const TOL_REF: f32 = 0.08;

fn check_against_reference(m: Synth, threads: usize, batch: usize) {
    let want = reference(&m, &TOKENS);
    let spread = want[0].iter().copied().fold(f32::MIN, f32::max)
        - want[0].iter().copied().fold(f32::MAX, f32::min);
    assert!(spread > 1.0, "degenerate test model, logit spread {spread}");
    let e = engine(m, threads, KvType::F16, batch);
    let mut s = e.new_session(32).unwrap();
    // Prompt of 5 (batched), then one token at a time.
    let got = s.prefill(&TOKENS[..5]).unwrap().to_vec();
    let d = max_diff(&got, &want[4]);
    eprintln!("prefill: max logit difference {d} (spread {spread})");
    assert!(d < TOL_REF, "prefill logits differ by {d}");
    for p in 5..TOKENS.len() {
        let got = s.decode(TOKENS[p]).unwrap();
        let d = max_diff(got, &want[p]);
        assert!(d < TOL_REF, "decode at {p}: logits differ by {d}");
    }
    assert_eq!(s.tokens(), &TOKENS);
}

#[test]
fn gqa_norm_rope_matches_reference() {
    check_against_reference(synth(4, 2, 16, RopeStyle::Norm, false, 1), 1, 32);
}

#[test]
fn neox_rope_with_qkv_bias_matches_reference() {
    check_against_reference(synth(2, 1, 32, RopeStyle::Neox, true, 2), 1, 32);
}

#[test]
fn multi_head_attention_threaded_small_batches_matches_reference() {
    check_against_reference(synth(4, 4, 16, RopeStyle::Norm, false, 3), 2, 2);
}

#[test]
fn batched_prefill_equals_token_by_token_and_threads_agree() {
    let mk = || synth(4, 2, 16, RopeStyle::Norm, true, 4);
    let e1 = engine(mk(), 1, KvType::F16, 32);
    let mut all = Vec::new();
    e1.new_session(16)
        .unwrap()
        .eval_logits(&TOKENS, 0, |i, l| all.push((i, l.to_vec())))
        .unwrap();
    assert_eq!(
        all.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..TOKENS.len()).collect::<Vec<_>>()
    );
    let mut s = e1.new_session(16).unwrap();
    for (i, &t) in TOKENS.iter().enumerate() {
        let l = s.decode(t).unwrap();
        assert!(max_diff(l, &all[i].1) < 1e-4, "token {i}");
    }
    let e2 = engine(mk(), 2, KvType::F16, 3);
    let mut s2 = e2.new_session(16).unwrap();
    let mut from5 = Vec::new();
    s2.eval_logits(&TOKENS, 5, |i, l| from5.push((i, l.to_vec())))
        .unwrap();
    assert_eq!(from5.len(), TOKENS.len() - 5);
    for (i, l) in from5 {
        assert!(max_diff(&l, &all[i].1) < 1e-4, "threaded token {i}");
    }
}

#[test]
fn q8_kv_cache_is_close_to_f16() {
    let mk = || synth(2, 1, 32, RopeStyle::Norm, false, 5);
    let a = engine(mk(), 1, KvType::F16, 32)
        .new_session(16)
        .unwrap()
        .prefill(&TOKENS)
        .unwrap()
        .to_vec();
    let e = engine(mk(), 1, KvType::Q8, 32);
    let mut s = e.new_session(16).unwrap();
    let b = s.prefill(&TOKENS).unwrap().to_vec();
    let d = max_diff(&a, &b);
    let spread =
        a.iter().copied().fold(f32::MIN, f32::max) - a.iter().copied().fold(f32::MAX, f32::min);
    eprintln!("q8 vs f16 KV: max logit difference {d}, logit spread {spread}");
    // 8-bit keys/values cost a little precision, of the order of the Q8 activations.
    assert!(
        d > 0.0 && d < 0.03 * spread,
        "q8 vs f16 KV: {d} (spread {spread})"
    );
    assert!(s.memory_bytes() > 0);
}

#[test]
fn context_budget_is_enforced() {
    let e = engine(
        synth(4, 2, 16, RopeStyle::Norm, false, 6),
        1,
        KvType::F16,
        32,
    );
    let mut s = e.new_session(8).unwrap();
    let err = s.prefill(&TOKENS).unwrap_err().to_string();
    assert!(err.starts_with("context full"), "{err}");
    assert_eq!(s.len(), 0, "a rejected prompt leaves the session unchanged");
    s.prefill(&TOKENS[..8]).unwrap();
    let err = s.decode(3).unwrap_err().to_string();
    assert!(err.starts_with("context full"), "{err}");
    assert_eq!(s.len(), 8);
    assert!(s.prefill(&[]).is_err());
    assert!(s.decode(VOCAB as u32).is_err(), "out-of-vocabulary id");
    assert!(e.new_session(0).is_err());
    assert!(e.new_session(65).is_err(), "beyond the trained context");
    for threads in [0, 10_000] {
        let r = Engine::from_source(
            Arc::new(synth(4, 2, 16, RopeStyle::Norm, false, 6)),
            EngineOptions {
                threads,
                ..Default::default()
            },
        );
        assert!(r.is_err());
    }
}

#[test]
fn prefix_reuse_and_forked_sessions_match_fresh_runs() {
    let e = engine(
        synth(4, 2, 16, RopeStyle::Norm, false, 7),
        1,
        KvType::F16,
        32,
    );
    let fresh = |ids: &[u32]| e.new_session(32).unwrap().prefill(ids).unwrap().to_vec();
    // A "system prompt" prefilled once…
    let mut sys = e.new_session(32).unwrap();
    sys.prefill(&TOKENS[..4]).unwrap();
    // …forked into two conversations.
    let mut a = sys.clone();
    let mut b = sys.clone();
    let la = a.prefill(&TOKENS[4..7]).unwrap().to_vec();
    let lb = b.prefill(&[9, 10]).unwrap().to_vec();
    assert!(max_diff(&la, &fresh(&TOKENS[..7])) < 1e-4);
    assert!(max_diff(&lb, &fresh(&[5, 17, 3, 69, 9, 10])) < 1e-4);
    assert_eq!(sys.len(), 4, "forks do not touch the original");
    // sync re-uses the common prefix and replaces a diverging tail.
    let l = a.sync(&[5, 17, 3, 69, 9, 10, 11]).unwrap().to_vec();
    assert_eq!(a.tokens(), &[5, 17, 3, 69, 9, 10, 11]);
    assert!(max_diff(&l, &fresh(&[5, 17, 3, 69, 9, 10, 11])) < 1e-4);
    // A sync that cannot fit is rejected without touching the cache.
    let long: Vec<u32> = (0..40).map(|i| i % VOCAB as u32).collect();
    assert!(a
        .sync(&long)
        .unwrap_err()
        .to_string()
        .starts_with("context full"));
    assert_eq!(a.tokens(), &[5, 17, 3, 69, 9, 10, 11]);
    // Syncing to the same tokens re-runs only the last one and gives the same logits.
    let again = a.sync(&[5, 17, 3, 69, 9, 10, 11]).unwrap().to_vec();
    assert!(max_diff(&l, &again) < 1e-6);
}

#[test]
fn greedy_generation_follows_argmax_and_stops() {
    let e = engine(
        synth(4, 2, 16, RopeStyle::Norm, false, 8),
        1,
        KvType::F16,
        32,
    );
    let prompt = &TOKENS[..4];
    // The argmax chain, by hand.
    let mut s = e.new_session(32).unwrap();
    let mut l = s.prefill(prompt).unwrap().to_vec();
    let mut chain = Vec::new();
    for _ in 0..6 {
        let t = hearth_runtime::llm::sampler::argmax(&l);
        chain.push(t);
        l = s.decode(t).unwrap().to_vec();
    }
    let mut sampler = Sampler::new(SamplerConfig::greedy()).unwrap();
    let mut s = e.new_session(32).unwrap();
    let mut pieces = String::new();
    let g = generate(
        &mut s,
        prompt,
        &mut sampler,
        &GenerateOptions {
            max_tokens: 6,
            stop_strings: vec![],
            stop_ids: Some(vec![]),
        },
        |p, _| {
            pieces.push_str(p);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(g.ids, chain);
    assert_eq!(g.stop, StopReason::MaxTokens);
    assert_eq!(g.prompt_tokens_run, 4);
    assert_eq!(pieces, g.text);
    assert_eq!(g.text, e.detokenize(&chain).unwrap());

    // The chain's third token as a stop id: two tokens come out.
    let mut s = e.new_session(32).unwrap();
    let opts = GenerateOptions {
        max_tokens: 6,
        stop_strings: vec![],
        stop_ids: Some(vec![chain[2]]),
    };
    if !chain[..2].contains(&chain[2]) {
        let g = generate(&mut s, prompt, &mut sampler, &opts, |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(g.ids, &chain[..2]);
        assert_eq!(g.stop, StopReason::StopToken(chain[2]));
    }

    // Cancellation after the first piece.
    let mut s = e.new_session(32).unwrap();
    let opts = GenerateOptions {
        max_tokens: 6,
        stop_strings: vec![],
        stop_ids: Some(vec![]),
    };
    let g = generate(&mut s, prompt, &mut sampler, &opts, |_, _| {
        ControlFlow::Break(())
    })
    .unwrap();
    assert_eq!(g.stop, StopReason::Cancelled);
    assert_eq!(g.ids.len(), 1);

    // Context full during generation: stops cleanly, reported.
    let mut s = e.new_session(6).unwrap();
    let g = generate(&mut s, prompt, &mut sampler, &opts, |_, _| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(g.stop, StopReason::ContextFull);
    assert_eq!(g.ids, &chain[..3]);

    // A prompt that does not fit is an error.
    let mut s = e.new_session(4).unwrap();
    let err = generate(&mut s, prompt, &mut sampler, &opts, |_, _| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(err.to_string().starts_with("context full"), "{err}");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let e = engine(
        synth(4, 2, 16, RopeStyle::Norm, false, 9),
        1,
        KvType::F16,
        32,
    );
    let run = |seed: u64| {
        let cfg = SamplerConfig {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..Default::default()
        };
        let mut sampler = Sampler::new(cfg).unwrap();
        let mut s = e.new_session(40).unwrap();
        let opts = GenerateOptions {
            max_tokens: 20,
            stop_strings: vec![],
            stop_ids: Some(vec![]),
        };
        generate(&mut s, &TOKENS[..3], &mut sampler, &opts, |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap()
        .ids
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn perplexity_matches_a_direct_computation() {
    let e = engine(
        synth(4, 2, 16, RopeStyle::Norm, false, 10),
        1,
        KvType::F16,
        32,
    );
    let text: Vec<u32> = (0..20).map(|i| (i * 7 % VOCAB) as u32).collect();
    let p = perplexity(&e, &text, 8, None, |_, _| {}).unwrap();
    assert_eq!(p.chunks, 2);
    assert_eq!(p.tokens, 2 * 3); // positions 4, 5, 6 of each window predict 5, 6, 7
    let mut nll = 0.0;
    for c in 0..2 {
        let w = &text[c * 8..(c + 1) * 8];
        let mut s = e.new_session(8).unwrap();
        for j in 0..7 {
            let l = s.decode(w[j]).unwrap();
            if j >= 4 {
                nll -= hearth_runtime::llm::perplexity::log_prob(l, w[j + 1]);
            }
        }
    }
    let want = (nll / 6.0).exp();
    assert!((p.ppl - want).abs() / want < 1e-4, "{} vs {want}", p.ppl);
    assert!(p.stderr > 0.0);
    assert!(perplexity(&e, &text[..7], 8, None, |_, _| {}).is_err());
}

#[test]
fn engine_and_session_can_move_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Engine>();
    send_sync::<Session>();
    // A session built on one thread runs on another.
    let e = engine(
        synth(4, 2, 16, RopeStyle::Norm, false, 11),
        2,
        KvType::F16,
        32,
    );
    let mut s = e.new_session(16).unwrap();
    let want = e
        .new_session(16)
        .unwrap()
        .prefill(&TOKENS[..3])
        .unwrap()
        .to_vec();
    let got = std::thread::spawn(move || s.prefill(&TOKENS[..3]).unwrap().to_vec())
        .join()
        .unwrap();
    assert!(max_diff(&got, &want) < 1e-6);
}
