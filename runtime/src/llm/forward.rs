//! The forward pass of a Llama-family transformer, top to bottom.
//!
//! One call runs `n` consecutive tokens (1 when decoding, up to the batch size when
//! prefilling a prompt) through every layer, so each weight matrix is read once per
//! call: decode is a matrix × vector product, prefill a matrix × matrix product.
//! Shapes are written `[a][b]` (row-major, `b` contiguous); `n ≤ B` is the number
//! of tokens in this call, `B` the scratch batch size.
//!
//! Matmul outputs come back from the kernels row-major by weight row (`[rows][n]`)
//! and are transposed to token-major (`[n][rows]`) where a per-token op follows.
use crate::llm::kv::KvCache;
use crate::llm::ops::{self, RopeTable};
use crate::llm::weights::{Hparams, Matrix, Weights};
use crate::{Error, Result};
use hearth_quant::{BlockQ8, Kernels, QK};
use rayon::prelude::*;

/// Rayon tasks per thread and matmul: two, so one slow (or preempted) core does not
/// hold the others up, yet few enough that stealing stays cheap. Measured on the
/// shared 2-core box (SmolLM2, 2 threads): 1–2 tasks per thread gave 85–89 t/s
/// decode, 4 gave 73, 8 gave 66–73.
const TASKS_PER_THREAD: usize = 2;

/// Pre-allocated buffers for one session: nothing is allocated per token.
#[derive(Clone, Debug)]
pub(crate) struct Scratch {
    /// Largest `n` per forward call.
    pub batch: usize,
    /// `[B][dim]` the residual stream.
    x: Vec<f32>,
    /// `[B][max(dim, q_dim)]` normed input of a block / attention output.
    xb: Vec<f32>,
    /// `[B][max(dim, q_dim, ffn) / 32]` the quantized matmul input.
    xq: Vec<BlockQ8>,
    /// `[B][q_dim]` queries, token-major.
    q: Vec<f32>,
    /// `[B][kv_dim]` keys and values of the new tokens, token-major.
    k: Vec<f32>,
    v: Vec<f32>,
    /// `[q_dim][B]`, `[kv_dim][B]`, `[kv_dim][B]` raw matmul outputs.
    qt: Vec<f32>,
    kt: Vec<f32>,
    vt: Vec<f32>,
    /// `[ffn][B]` gate and up projections (then silu(gate)·up in `gate`).
    gate: Vec<f32>,
    up: Vec<f32>,
    /// `[B][ffn]` MLP hidden, token-major.
    hb: Vec<f32>,
    /// `[dim][B]` output of the o / down projections.
    proj: Vec<f32>,
    /// `[n_kv][head_dim][len]` one layer's cached keys, transposed, and
    /// `[n_kv][len][head_dim]` its values, as f32 (`len ≤ ctx` positions).
    kf: Vec<f32>,
    vf: Vec<f32>,
    /// `[n_kv][B·group][head_dim]` scaled queries, grouped by kv head, rows `(t, g)`.
    qh: Vec<f32>,
    /// `[n_kv][B·group][len]` attention scores, then probabilities.
    scores: Vec<f32>,
    /// `[n_kv][B·group][head_dim]` attention outputs, grouped like `qh`.
    att: Vec<f32>,
    /// `[vocab][B']` head output; `[B'][vocab]` logits (`B' = 1` unless all logits
    /// were asked for, then grown once to `B`).
    logits_t: Vec<f32>,
    pub logits: Vec<f32>,
}

impl Scratch {
    pub fn new(hp: &Hparams, ctx: usize, batch: usize) -> Self {
        let b = batch;
        let wide = hp.dim.max(hp.q_dim());
        let widest = wide.max(hp.ffn_dim);
        let z = |n: usize| vec![0.0f32; n];
        Self {
            batch,
            x: z(b * hp.dim),
            xb: z(b * wide),
            xq: vec![
                BlockQ8 {
                    d: half::f16::ZERO,
                    qs: [0; QK]
                };
                b * widest / QK
            ],
            q: z(b * hp.q_dim()),
            k: z(b * hp.kv_dim()),
            v: z(b * hp.kv_dim()),
            qt: z(b * hp.q_dim()),
            kt: z(b * hp.kv_dim()),
            vt: z(b * hp.kv_dim()),
            gate: z(b * hp.ffn_dim),
            up: z(b * hp.ffn_dim),
            hb: z(b * hp.ffn_dim),
            proj: z(b * hp.dim),
            kf: z(hp.n_kv_heads * ctx * hp.head_dim),
            vf: z(hp.n_kv_heads * ctx * hp.head_dim),
            qh: z(b * hp.q_dim()),
            scores: z(hp.n_heads * b * ctx),
            att: z(b * hp.q_dim()),
            logits_t: z(hp.vocab_size),
            logits: z(hp.vocab_size),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let f = [
            &self.x,
            &self.xb,
            &self.q,
            &self.k,
            &self.v,
            &self.qt,
            &self.kt,
            &self.vt,
            &self.gate,
            &self.up,
            &self.hb,
            &self.proj,
            &self.kf,
            &self.vf,
            &self.qh,
            &self.scores,
            &self.att,
            &self.logits_t,
            &self.logits,
        ];
        f.iter().map(|v| v.len() * 4).sum::<usize>()
            + self.xq.len() * std::mem::size_of::<BlockQ8>()
    }
}

/// How the work is spread: the kernel table and the number of threads of the rayon
/// pool the forward pass runs in (1 = plain serial code, no rayon at all).
#[derive(Clone, Copy)]
pub(crate) struct Exec<'k> {
    pub kernels: &'k Kernels,
    pub threads: usize,
}

/// Which logits a forward call produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Logits {
    /// None (a prefill chunk that is not the last).
    None,
    /// The last token's, in `scratch.logits[..vocab]`.
    Last,
    /// Every token's from index `from` on, in `scratch.logits[(t - from) * vocab..]`.
    From(usize),
}

/// Run `tokens` (at positions `pos..pos + n`) through the model, appending their keys
/// and values to `kv`. The caller checks `n ≤ B` and `pos + n ≤ kv.capacity()`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    w: &Weights<'_>,
    ex: Exec<'_>,
    kv: &mut KvCache,
    rope: &RopeTable,
    s: &mut Scratch,
    tokens: &[u32],
    pos: usize,
    want: Logits,
) -> Result<()> {
    let hp = &w.hp;
    let n = tokens.len();
    let (dim, qd, kvd, ffn, hd) = (hp.dim, hp.q_dim(), hp.kv_dim(), hp.ffn_dim, hp.head_dim);
    debug_assert!(n > 0 && n <= s.batch && pos + n <= kv.capacity());

    // Embedding: x[t] = token_embd[token t]  (one row dequantized per token)
    for (t, &tok) in tokens.iter().enumerate() {
        if tok as usize >= hp.vocab_size {
            return Err(Error::Invalid(format!(
                "token id {tok} is outside the vocabulary ({})",
                hp.vocab_size
            )));
        }
        w.token_embd
            .row_into(tok as usize, &mut s.x[t * dim..(t + 1) * dim]);
    }

    for (li, l) in w.layers.iter().enumerate() {
        // ---- attention block ----
        // xb[t] = rmsnorm(x[t]) · attn_norm        [n][dim]
        for t in 0..n {
            ops::rmsnorm(
                &mut s.xb[t * dim..(t + 1) * dim],
                &s.x[t * dim..(t + 1) * dim],
                l.attn_norm,
                hp.norm_eps,
            );
        }
        let xb = &s.xb[..n * dim];
        let xq = quantize(ex, xb, &mut s.xq[..n * dim / QK])?;
        // qt = Wq·xb  [q_dim][n],  kt = Wk·xb, vt = Wv·xb  [kv_dim][n]
        let (qt, kt, vt) = (
            &mut s.qt[..qd * n],
            &mut s.kt[..kvd * n],
            &mut s.vt[..kvd * n],
        );
        join3(
            ex,
            || matmul(ex, &l.wq, xq, xb, n, qt),
            || matmul(ex, &l.wk, xq, xb, n, kt),
            || matmul(ex, &l.wv, xq, xb, n, vt),
        )?;
        // q/k/v token-major [n][..], plus the Qwen2 biases
        transpose(&s.qt[..qd * n], n, &mut s.q[..n * qd]);
        transpose(&s.kt[..kvd * n], n, &mut s.k[..n * kvd]);
        transpose(&s.vt[..kvd * n], n, &mut s.v[..n * kvd]);
        add_bias(&mut s.q[..n * qd], l.bq);
        add_bias(&mut s.k[..n * kvd], l.bk);
        add_bias(&mut s.v[..n * kvd], l.bv);
        // RoPE on q and k, then append k and v to the cache at pos + t
        for t in 0..n {
            rope.apply(&mut s.q[t * qd..(t + 1) * qd], hd, pos + t, hp.rope_style);
            rope.apply(&mut s.k[t * kvd..(t + 1) * kvd], hd, pos + t, hp.rope_style);
            kv.write(
                li,
                pos + t,
                &s.k[t * kvd..(t + 1) * kvd],
                &s.v[t * kvd..(t + 1) * kvd],
            )?;
        }
        // xb = attention(q, cache)  [n][q_dim]
        attention(hp, ex, kv, li, pos, n, s)?;
        let att = &s.xb[..n * qd];
        let xq = quantize(ex, att, &mut s.xq[..n * qd / QK])?;
        // x += Wo·att
        matmul(ex, &l.wo, xq, att, n, &mut s.proj[..dim * n])?;
        add_transposed(&mut s.x[..n * dim], &s.proj[..dim * n], n);

        // ---- MLP block ----
        for t in 0..n {
            ops::rmsnorm(
                &mut s.xb[t * dim..(t + 1) * dim],
                &s.x[t * dim..(t + 1) * dim],
                l.ffn_norm,
                hp.norm_eps,
            );
        }
        let xb = &s.xb[..n * dim];
        let xq = quantize(ex, xb, &mut s.xq[..n * dim / QK])?;
        // gate = Wg·xb, up = Wu·xb  [ffn][n];  gate = silu(gate)·up (elementwise, any layout)
        let (gate, up) = (&mut s.gate[..ffn * n], &mut s.up[..ffn * n]);
        join2(
            ex,
            || matmul(ex, &l.w_gate, xq, xb, n, gate),
            || matmul(ex, &l.w_up, xq, xb, n, up),
        )?;
        ops::swiglu(&mut s.gate[..ffn * n], &s.up[..ffn * n]);
        // hb = gateᵀ  [n][ffn];  x += Wd·hb
        transpose(&s.gate[..ffn * n], n, &mut s.hb[..n * ffn]);
        let hb = &s.hb[..n * ffn];
        let xq = quantize(ex, hb, &mut s.xq[..n * ffn / QK])?;
        matmul(ex, &l.w_down, xq, hb, n, &mut s.proj[..dim * n])?;
        add_transposed(&mut s.x[..n * dim], &s.proj[..dim * n], n);
    }

    // ---- output head, only for the tokens whose logits are wanted ----
    let from = match want {
        Logits::None => return Ok(()),
        Logits::Last => n - 1,
        Logits::From(f) => f.min(n),
    };
    let m = n - from;
    if m == 0 {
        return Ok(());
    }
    for i in 0..m {
        let t = from + i;
        ops::rmsnorm(
            &mut s.xb[i * dim..(i + 1) * dim],
            &s.x[t * dim..(t + 1) * dim],
            w.output_norm,
            hp.norm_eps,
        );
    }
    let xb = &s.xb[..m * dim];
    let xq = quantize(ex, xb, &mut s.xq[..m * dim / QK])?;
    let vocab = hp.vocab_size;
    if m == 1 {
        // [vocab] directly
        matmul(ex, &w.output, xq, xb, 1, &mut s.logits[..vocab])?;
    } else {
        // [vocab][m] then [m][vocab]
        if s.logits.len() < m * vocab {
            s.logits.resize(s.batch * vocab, 0.0);
            s.logits_t.resize(s.batch * vocab, 0.0);
        }
        matmul(ex, &w.output, xq, xb, m, &mut s.logits_t[..vocab * m])?;
        transpose(&s.logits_t[..vocab * m], m, &mut s.logits[..m * vocab]);
    }
    Ok(())
}

/// Query tokens per attention work unit (with `group` query heads per kv head, a unit
/// is `group · ATT_TOKENS` rows of scores): small enough that 2–4 threads get several
/// units even for one kv head, large enough that each unit's matrix products stay
/// efficient.
const ATT_TOKENS: usize = 8;

/// Causal grouped-query attention of the `n` new tokens over the cache.
///
/// Per kv head `h`, which serves the `group = n_heads / n_kv` query heads
/// `h·group..(h+1)·group`: its history is converted to f32 once per call, keys
/// transposed (`kt = [hd][len]`), values as they are (`vf = [len][hd]`). The queries of
/// the group are gathered, rounded to f16 (llama.cpp multiplies f16 keys by f16 queries;
/// doing the same keeps us closer to its logits), as rows `(t, g)` of `qh = [n·group][hd]`.
/// Then, per block of [`ATT_TOKENS`] tokens (the unit of parallel work):
/// `scores = qh · kt / √hd` (`[rows][len]`), a causal softmax per row (token `t` sees
/// positions `0..=pos + t`; later ones get probability 0), `out = scores · vf` (`[rows][hd]`),
/// both products through hearth-quant's f32 kernel. Output: `s.xb[..n][..q_dim]`.
fn attention(
    hp: &Hparams,
    ex: Exec<'_>,
    kv: &KvCache,
    li: usize,
    pos: usize,
    n: usize,
    s: &mut Scratch,
) -> Result<()> {
    let (hd, qd, nkv) = (hp.head_dim, hp.q_dim(), hp.n_kv_heads);
    let group = hp.n_heads / nkv;
    let len = pos + n;
    let rows = n * group;
    let scale = 1.0 / (hd as f32).sqrt();
    let kern = ex.kernels;
    // Parallel only when there is enough work to pay for waking the threads.
    let par = ex.threads > 1 && len * n * hp.n_heads * hd > 1 << 16;

    // qh[h][(t, g)][..] = f16(q[t][(h·group + g)·hd..])
    for h in 0..nkv {
        for t in 0..n {
            for g in 0..group {
                let src = &s.q[t * qd + (h * group + g) * hd..][..hd];
                let dst = &mut s.qh[((h * n + t) * group + g) * hd..][..hd];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = half::f16::from_f32(v).to_f32();
                }
            }
        }
    }
    let (kt, vf) = (&mut s.kf[..nkv * len * hd], &mut s.vf[..nkv * len * hd]);
    let load =
        |(h, (kt, vf)): (usize, (&mut [f32], &mut [f32]))| kv.read_head_t(li, h, len, kt, vf);
    if par {
        kt.par_chunks_mut(len * hd)
            .zip(vf.par_chunks_mut(len * hd))
            .enumerate()
            .for_each(load);
    } else {
        kt.chunks_mut(len * hd)
            .zip(vf.chunks_mut(len * hd))
            .enumerate()
            .for_each(load);
    }
    let (kt, vf) = (&s.kf[..nkv * len * hd], &s.vf[..nkv * len * hd]);

    // One unit: `tb` tokens from `t0` of kv head `h`; `sc` = `[tb·group][len]`,
    // `q` and `out` = `[tb·group][hd]`.
    let unit = |h: usize, t0: usize, q: &[f32], sc: &mut [f32], out: &mut [f32]| -> Result<()> {
        let r = q.len() / hd;
        let (kt, vf) = (
            &kt[h * len * hd..][..len * hd],
            &vf[h * len * hd..][..len * hd],
        );
        kern.gemm_f32(r, hd, len, q, kt, sc)?;
        for (i, row) in sc.chunks_exact_mut(len).enumerate() {
            let seen = pos + t0 + i / group + 1;
            for x in &mut row[..seen] {
                *x *= scale;
            }
            ops::softmax(&mut row[..seen]);
            row[seen..].fill(0.0);
        }
        kern.gemm_f32(r, len, hd, sc, vf, out)?;
        Ok(())
    };
    let ub = ATT_TOKENS * group;
    let (qh, sc, att) = (
        &s.qh[..nkv * rows * hd],
        &mut s.scores[..nkv * rows * len],
        &mut s.att[..nkv * rows * hd],
    );
    if par {
        qh.par_chunks(rows * hd)
            .zip(sc.par_chunks_mut(rows * len))
            .zip(att.par_chunks_mut(rows * hd))
            .enumerate()
            .try_for_each(|(h, ((q, sc), out))| {
                q.par_chunks(ub * hd)
                    .zip(sc.par_chunks_mut(ub * len))
                    .zip(out.par_chunks_mut(ub * hd))
                    .enumerate()
                    .try_for_each(|(b, ((q, sc), out))| unit(h, b * ATT_TOKENS, q, sc, out))
            })?;
    } else {
        for (h, ((q, sc), out)) in qh
            .chunks(rows * hd)
            .zip(sc.chunks_mut(rows * len))
            .zip(att.chunks_mut(rows * hd))
            .enumerate()
        {
            unit(h, 0, q, sc, out)?;
        }
    }
    // [n_kv][n][group][hd] → [n][n_heads·hd]  (head = h·group + g)
    for h in 0..nkv {
        for t in 0..n {
            let src = &s.att[(h * n + t) * group * hd..][..group * hd];
            s.xb[t * qd + h * group * hd..][..group * hd].copy_from_slice(src);
        }
    }
    Ok(())
}

/// Quantize `n` token rows of activations to Q8 (per-32 blocks; rows are multiples of 32).
fn quantize<'q>(ex: Exec<'_>, x: &[f32], out: &'q mut [BlockQ8]) -> Result<&'q [BlockQ8]> {
    ex.kernels.quantize_row_q8(x, out)?;
    Ok(out)
}

/// `y = W·X` for `n` tokens, `y[row * n + t]`. `xq` (quantized) feeds packed
/// matrices, `xf` (`[n][cols]` f32) float ones. Split over row groups when threaded.
fn matmul(
    ex: Exec<'_>,
    w: &Matrix<'_>,
    xq: &[BlockQ8],
    xf: &[f32],
    n: usize,
    y: &mut [f32],
) -> Result<()> {
    match w {
        Matrix::Packed(p) => {
            let groups = p.rows().div_ceil(hearth_quant::ROWS);
            if ex.threads <= 1 || groups < 2 {
                if n == 1 {
                    ex.kernels.gemv(p, xq, y)?;
                } else {
                    ex.kernels.gemm(p, xq, n, y)?;
                }
                return Ok(());
            }
            let per_task = groups.div_ceil(ex.threads * TASKS_PER_THREAD).max(1);
            y.par_chunks_mut(per_task * hearth_quant::ROWS * n)
                .enumerate()
                .try_for_each(|(i, yc)| {
                    let sub = p.row_groups(i * per_task, (i + 1) * per_task);
                    if n == 1 {
                        ex.kernels.gemv(&sub, xq, yc)
                    } else {
                        ex.kernels.gemm(&sub, xq, n, yc)
                    }
                })?;
            Ok(())
        }
        Matrix::F32 { cols, data, .. } => {
            float_matmul(ex, *cols, n, xf, y, |r, x| {
                ops::dot(&data[r * cols..(r + 1) * cols], x)
            });
            Ok(())
        }
        Matrix::F16 { cols, data, .. } => {
            float_matmul(ex, *cols, n, xf, y, |r, x| {
                data[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a.to_f32() * b)
                    .sum()
            });
            Ok(())
        }
    }
}

/// The float fallback: `y[r * n + t] = row_dot(r, x[t])`.
fn float_matmul(
    ex: Exec<'_>,
    cols: usize,
    n: usize,
    xf: &[f32],
    y: &mut [f32],
    row_dot: impl Fn(usize, &[f32]) -> f32 + Sync,
) {
    let one = |r: usize, yr: &mut [f32]| {
        for (t, o) in yr.iter_mut().enumerate() {
            *o = row_dot(r, &xf[t * cols..(t + 1) * cols]);
        }
    };
    if ex.threads > 1 {
        y.par_chunks_mut(n)
            .enumerate()
            .for_each(|(r, yr)| one(r, yr));
    } else {
        y.chunks_mut(n).enumerate().for_each(|(r, yr)| one(r, yr));
    }
}

fn join2(
    ex: Exec<'_>,
    a: impl FnOnce() -> Result<()> + Send,
    b: impl FnOnce() -> Result<()> + Send,
) -> Result<()> {
    if ex.threads > 1 {
        let (ra, rb) = rayon::join(a, b);
        ra.and(rb)
    } else {
        a()?;
        b()
    }
}

fn join3(
    ex: Exec<'_>,
    a: impl FnOnce() -> Result<()> + Send,
    b: impl FnOnce() -> Result<()> + Send,
    c: impl FnOnce() -> Result<()> + Send,
) -> Result<()> {
    join2(ex, a, || join2(ex, b, c))
}

/// `dst[t][r] = src[r][t]` for `src` = `[rows][n]`.
fn transpose(src: &[f32], n: usize, dst: &mut [f32]) {
    if n == 1 {
        dst.copy_from_slice(src);
        return;
    }
    let rows = src.len() / n;
    for (r, row) in src.chunks_exact(n).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            dst[t * rows + r] = v;
        }
    }
}

/// `x[t][r] += y[r][t]` (residual add of a `[rows][n]` matmul output).
fn add_transposed(x: &mut [f32], y: &[f32], n: usize) {
    let rows = y.len() / n;
    for (r, row) in y.chunks_exact(n).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            x[t * rows + r] += v;
        }
    }
}

/// Add a bias to every token row (no-op without one).
fn add_bias(x: &mut [f32], b: Option<&[f32]>) {
    if let Some(b) = b {
        for row in x.chunks_exact_mut(b.len()) {
            for (v, &c) in row.iter_mut().zip(b) {
                *v += c;
            }
        }
    }
}
