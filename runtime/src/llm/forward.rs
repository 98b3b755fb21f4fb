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
use crate::llm::kv::{key_layout, KvCache, KvType};
use crate::llm::ops::{self, RopeTable};
use crate::llm::team::{Disjoint, Team};
use crate::llm::weights::{Hparams, LayerWeights, Matrix, Weights};
use crate::{Error, Result};
use half::slice::HalfFloatSliceExt;
use hearth_quant::{BLayout, BlockQ8, Kernels, PackedMatrix, QK, ROWS};

/// Tasks per thread of a matrix × vector: one, so each thread streams one long run of
/// rows (a decode step is bound by the weights' reading, and every new stream starts
/// cold for the hardware prefetchers): at 2 threads, 4 tasks per thread decoded at
/// 158–180 (Q8) and 295–339 t/s (Q4), 2 at 159–200 and 318–368, 1 at 168–222 and
/// 385–411 (BENCHMARKS.md, "… one decode task per thread"). A thread that is late still
/// has its task taken by another (tasks are handed out one at a time), just not a
/// part of one.
const TASKS_PER_THREAD: usize = 1;
/// Tasks per thread of a matrix × matrix (prefill): fewer, as each task costs more there
/// (its own activation preparation and tile sweeps): a 512-token prefill cut into the
/// 2-thread tasks but run on one thread took 12% longer with 4 tasks per thread, 4% with
/// 2, 1–2% with 1 (BENCHMARKS.md "2 MiB pages; fewer prefill tasks").
const MATMUL_TASKS_PER_THREAD: usize = 2;
/// Fewest row groups (of 4 rows) per matmul task.
const MIN_TASK_GROUPS: usize = 4;
/// A task's row groups are a multiple of this, so the kernels' widest row tiles fill
/// up (AVX-512 Q4/Q8: 4 groups; AVX2 Q4/Q4A, AVX-512 Q4A: 2); the groups a tile
/// cannot take are done one at a time, more slowly.
const TASK_GROUP_MULTIPLE: usize = 4;

/// Pre-allocated buffers for one session: nothing is allocated per token.
#[derive(Clone, Debug)]
pub(crate) struct Scratch {
    /// Largest `n` per forward call.
    pub batch: usize,
    /// `[B][dim]` the residual stream.
    x: Vec<f32>,
    /// `[B][max(dim, q_dim)]` normed input of a block / attention output, in f32: written
    /// only when a float matrix reads it (packed ones read `xq`).
    xb: Vec<f32>,
    /// `[B][max(dim, q_dim, ffn) / 32]` the quantized matmul input.
    xq: Vec<BlockQ8>,
    /// `[n_kv][B][head_dim]` keys and values of the new tokens, by kv head, token-major.
    k: Vec<f32>,
    v: Vec<f32>,
    /// `[q_dim][B]`, `[kv_dim][B]`, `[kv_dim][B]` raw matmul outputs.
    qt: Vec<f32>,
    kt: Vec<f32>,
    vt: Vec<f32>,
    /// `[ffn][B]` gate and up projections (then silu(gate)·up in `gate`).
    gate: Vec<f32>,
    up: Vec<f32>,
    /// `[B][max(ffn, q_dim)]` MLP hidden, token-major; its bytes also hold Q8 rows
    /// ([`hb_blocks`]): the attention output's, then the MLP hidden's.
    hb: Vec<f32>,
    /// `[dim][B]` output of the o / down projections (cut by tokens: each token range's
    /// `[dim][t1 - t0]` block at `t0·dim`).
    proj: Vec<f32>,
    /// `[n_kv][head_dim][len]` one layer's cached keys, transposed, and
    /// `[n_kv][len][head_dim]` its values, as f32 (`len ≤ ctx` positions): a Q8 cache's
    /// only (an f16 one is read as it is; then these are empty).
    kf: Vec<f32>,
    vf: Vec<f32>,
    /// The attention units' scratch, `[n_kv][B·group]` rows in all (rows `(t, g)` of a
    /// unit; a slot of `ATT_TOKENS·group` rows per thread when they fit): f16-rounded
    /// queries (`[·][head_dim]`), scores then probabilities (`[·][len]`), outputs
    /// (`[·][head_dim]`).
    qh: Vec<f32>,
    scores: Vec<f32>,
    att: Vec<f32>,
    /// `[vocab][B']` head output; `[B'][vocab]` logits (`B' = 1` unless all logits
    /// were asked for, then grown once to `B`).
    logits_t: Vec<f32>,
    pub logits: Vec<f32>,
}

/// Lengths (in elements) of every [`Scratch`] buffer: the one place their sizes are
/// decided; [`Scratch::new`] allocates them and the memory budget adds them up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScratchLens {
    x: usize,
    xb: usize,
    xq: usize,
    q: usize,
    kv: usize,
    ffn: usize,
    hb: usize,
    proj: usize,
    kvf: usize,
    scores: usize,
    vocab: usize,
}

impl ScratchLens {
    pub fn new(hp: &Hparams, ctx: usize, batch: usize, kv: KvType) -> Self {
        let b = batch;
        let wide = hp.dim.max(hp.q_dim());
        let widest = wide.max(hp.ffn_dim);
        Self {
            x: b * hp.dim,
            xb: b * wide,
            xq: b * widest / QK,
            q: b * hp.q_dim(),
            kv: b * hp.kv_dim(),
            ffn: b * hp.ffn_dim,
            hb: b * hp.ffn_dim.max(hp.q_dim()),
            proj: b * hp.dim,
            kvf: match kv {
                KvType::F16 => 0,
                KvType::Q8 => hp.n_kv_heads * ctx * hp.head_dim,
            },
            scores: hp.n_heads * b * ctx,
            vocab: hp.vocab_size,
        }
    }

    /// Bytes of a scratch allocated with these lengths.
    pub fn bytes(&self) -> usize {
        // x, xb, qt, qh, att; k, v, kt, vt; gate, up, hb; proj; kf, vf; scores;
        // logits_t, logits (as in `Scratch::new`).
        let f32s = self.x
            + self.xb
            + 3 * self.q
            + 4 * self.kv
            + 2 * self.ffn
            + self.hb
            + self.proj
            + 2 * self.kvf
            + self.scores
            + 2 * self.vocab;
        4 * f32s + self.xq * std::mem::size_of::<BlockQ8>()
    }
}

impl Scratch {
    pub fn new(hp: &Hparams, ctx: usize, batch: usize, kv: KvType) -> Self {
        let l = ScratchLens::new(hp, ctx, batch, kv);
        let z = |n: usize| vec![0.0f32; n];
        Self {
            batch,
            x: z(l.x),
            xb: z(l.xb),
            xq: vec![
                BlockQ8 {
                    d: half::f16::ZERO,
                    qs: [0; QK]
                };
                l.xq
            ],
            k: z(l.kv),
            v: z(l.kv),
            qt: z(l.q),
            kt: z(l.kv),
            vt: z(l.kv),
            gate: z(l.ffn),
            up: z(l.ffn),
            hb: z(l.hb),
            proj: z(l.proj),
            kf: z(l.kvf),
            vf: z(l.kvf),
            qh: z(l.q),
            scores: z(l.scores),
            att: z(l.q),
            logits_t: z(l.vocab),
            logits: z(l.vocab),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let f = [
            &self.x,
            &self.xb,
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

/// How the work is spread: the kernel table and the thread team (none = plain serial
/// code on the calling thread).
#[derive(Clone, Copy)]
pub(crate) struct Exec<'k> {
    pub kernels: &'k Kernels,
    pub team: Option<&'k Team>,
}

impl Exec<'_> {
    fn threads(&self) -> usize {
        self.team.map_or(1, Team::threads)
    }

    /// `f(0..n)`, on the team when there is one.
    fn run(&self, n: usize, f: &(dyn Fn(usize) -> Result<()> + Sync)) -> Result<()> {
        self.run_members(n, &|i, _| f(i))
    }

    /// `f(i, m)` for `i` in `0..n`, `m` the team member running task `i` (0 without a
    /// team): a member runs one task at a time, so `m` may pick per-member scratch.
    fn run_members(&self, n: usize, f: &(dyn Fn(usize, usize) -> Result<()> + Sync)) -> Result<()> {
        match self.team {
            Some(team) => team.run_members(n, f),
            None => (0..n).try_for_each(|i| f(i, 0)),
        }
    }
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
    let (dim, qd, kvd, ffn) = (hp.dim, hp.q_dim(), hp.kv_dim(), hp.ffn_dim);
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

    // Whether the output projections (Wo, Wd) run fused with the residual add and the
    // next norm, cut by tokens (see `Residual::Product`): for every packed model once
    // each thread has a run of tokens to itself.
    let fused = n >= FUSE_TOKENS * ex.threads()
        && w.layers.iter().all(|l| {
            [&l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .all(|m| matches!(m, Matrix::Packed(_)))
        });
    // Whether `proj` holds the previous layer's MLP output, not yet added to `x`.
    let mut pending = false;
    for (li, l) in w.layers.iter().enumerate() {
        // ---- attention block ----
        // x[t] += proj[·][t] (the previous MLP's output);
        // xb[t] = rmsnorm(x[t]) · attn_norm  [n][dim];  xq = Q8(xb)
        // (fused: the previous layer's last job did this)
        if li == 0 || !fused {
            let add = match pending {
                true => Residual::Cols(&s.proj[..dim * n]),
                false => Residual::None,
            };
            residual_norm(
                ex,
                &mut s.x[..n * dim],
                n,
                add,
                Some((l.attn_norm, hp.norm_eps)),
                any_float(&[&l.wq, &l.wk, &l.wv]).then_some(&mut s.xb[..n * dim]),
                &mut s.xq[..n * dim / QK],
            )?;
        }
        let (xb, xq) = (&s.xb[..n * dim], &s.xq[..n * dim / QK]);
        // qt = Wq·xb  [q_dim][n],  kt = Wk·xb, vt = Wv·xb  [kv_dim][n]
        let (qt, kt, vt) = (
            &mut s.qt[..qd * n],
            &mut s.kt[..kvd * n],
            &mut s.vt[..kvd * n],
        );
        matmuls(ex, [(&l.wq, qt), (&l.wk, kt), (&l.wv, vt)], xq, xb, n)?;
        // k, v (+ biases, RoPE on k) appended to the cache at pos + t;
        // att = attention(q (+ bias, RoPE), cache)  [n][q_dim]: its Q8 in hb's storage
        // (ahq), the f32 rows in xb when Wo takes them
        attention(hp, l, ex, kv, rope, li, pos, n, s)?;
        let (att, ahq) = (&s.xb[..n * qd], &hb_blocks(&mut s.hb, n * qd / QK)[..]);

        // ---- MLP block ----
        // x[t] += Wo·att[t];  xb[t] = rmsnorm(x[t]) · ffn_norm  [n][dim];  xq = Q8(xb)
        let add = if fused {
            let y = &mut s.proj[..dim * n];
            Residual::Product {
                w: &l.wo,
                h: ahq,
                y,
            }
        } else {
            // proj = Wo·att  [dim][n]
            matmuls(ex, [(&l.wo, &mut s.proj[..dim * n])], ahq, att, n)?;
            Residual::Cols(&s.proj[..dim * n])
        };
        residual_norm(
            ex,
            &mut s.x[..n * dim],
            n,
            add,
            Some((l.ffn_norm, hp.norm_eps)),
            any_float(&[&l.w_gate, &l.w_up]).then_some(&mut s.xb[..n * dim]),
            &mut s.xq[..n * dim / QK],
        )?;
        let (xb, xq) = (&s.xb[..n * dim], &s.xq[..n * dim / QK]);
        if let (Matrix::Packed(_), Matrix::Packed(_), Matrix::Packed(_)) =
            (&l.w_gate, &l.w_up, &l.w_down)
        {
            // hq = Q8(silu(Wg·xb)·(Wu·xb))  [n][ffn / 32], in hb's storage (the f32
            // hidden is not needed); x += Wd·hq
            let hq = hb_blocks(&mut s.hb, n * ffn / QK);
            let (gate, up) = (&mut s.gate[..ffn * n], &mut s.up[..ffn * n]);
            mlp_hidden(ex, &l.w_gate, &l.w_up, xq, n, gate, up, hq)?;
            let hq = &*hq;
            if fused {
                // x[t] += Wd·hq[t], then the next layer's attention norm into xb/xq
                let next = w.layers.get(li + 1);
                let norm = next.map(|nl| (nl.attn_norm, hp.norm_eps));
                let keep = next.is_some_and(|nl| any_float(&[&nl.wq, &nl.wk, &nl.wv]));
                let y = &mut s.proj[..dim * n];
                residual_norm(
                    ex,
                    &mut s.x[..n * dim],
                    n,
                    Residual::Product {
                        w: &l.w_down,
                        h: hq,
                        y,
                    },
                    norm,
                    keep.then_some(&mut s.xb[..n * dim]),
                    &mut s.xq[..n * dim / QK],
                )?;
                continue;
            }
            matmuls(ex, [(&l.w_down, &mut s.proj[..dim * n])], hq, &[], n)?;
        } else {
            // gate = Wg·xb, up = Wu·xb  [ffn][n];  gate = silu(gate)·up (elementwise)
            let (gate, up) = (&mut s.gate[..ffn * n], &mut s.up[..ffn * n]);
            matmuls(ex, [(&l.w_gate, gate), (&l.w_up, up)], xq, xb, n)?;
            ops::swiglu(&mut s.gate[..ffn * n], &s.up[..ffn * n]);
            // hb = gateᵀ  [n][ffn];  x += Wd·hb
            transpose(&s.gate[..ffn * n], n, &mut s.hb[..n * ffn]);
            let hb = &s.hb[..n * ffn];
            let xq = quantize(ex, hb, &mut s.xq[..n * ffn / QK])?;
            matmuls(ex, [(&l.w_down, &mut s.proj[..dim * n])], xq, hb, n)?;
        }
        // proj = Wd·h  [dim][n], added to x by the next layer (or below)
        pending = true;
    }
    if pending {
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
        matmuls(ex, [(&w.output, &mut s.logits[..vocab])], xq, xb, 1)?;
    } else {
        // [vocab][m] then [m][vocab]
        if s.logits.len() < m * vocab {
            s.logits.resize(s.batch * vocab, 0.0);
            s.logits_t.resize(s.batch * vocab, 0.0);
        }
        matmuls(ex, [(&w.output, &mut s.logits_t[..vocab * m])], xq, xb, m)?;
        transpose(&s.logits_t[..vocab * m], m, &mut s.logits[..m * vocab]);
    }
    Ok(())
}

/// Query tokens per attention work unit (with `group` query heads per kv head, a unit
/// is `group · ATT_TOKENS` rows of scores): small enough that 2–4 threads get several
/// units even for one kv head, large enough that each unit's matrix products stay
/// efficient.
const ATT_TOKENS: usize = 8;

/// Causal grouped-query attention of the `n` new tokens over the cache, from the raw
/// q/k/v projections (`s.qt` = `[q_dim][n]`, `s.kt`, `s.vt` = `[kv_dim][n]`).
///
/// Two jobs, with no serial work between or after them:
/// 1. Per kv head `h` (which serves the `group = n_heads / n_kv` query heads
///    `h·group..(h+1)·group`): its keys and values of the new tokens, token-major (`+`
///    bias, RoPE on the keys), appended to the cache at `pos..pos + n`. An f16 cache is
///    then read as it is (its keys are stored transposed); a Q8 one has its whole history
///    converted to f32 once: keys transposed (`kf[h]` = `[hd][len]`), values as they are
///    (`vf[h]` = `[len][hd]`).
/// 2. Per kv head and block of [`ATT_TOKENS`] tokens `t0..t0 + tb` (the unit of parallel
///    work): the group's queries of those tokens (`+` bias, RoPE, rounded to f16 — llama.cpp
///    multiplies f16 keys by f16 queries; doing the same keeps us closer to its logits) as
///    rows `(t, g)` of `qh` (`[tb·group][hd]`); over the `lu = pos + t0 + tb` positions its
///    last token sees: `scores = qh · Kᵀ[.., ..lu] / √hd` (`[tb·group][lu]`), a causal
///    softmax per row (token `t` sees positions `0..=pos + t`; later ones get probability
///    0), `out = scores · V[..lu]` (`[tb·group][hd]`), both products through
///    hearth-quant's float kernels (f16 operands widened as they are loaded); `out`'s
///    rows of token `t` are the heads `h·group..` of its output row, quantized there
///    when they are whole Q8 blocks.
///
/// Output: the Q8 of the output rows (`[n][q_dim / 32]`) in `s.hb`'s bytes
/// ([`hb_blocks`]: the next step's norm writes `s.xq`, so it must not be Wo's input),
/// and the f32 rows in `s.xb[..n][..q_dim]` only when Wo takes f32 input (or the rows'
/// parts are not whole blocks, so they are quantized afterwards).
#[allow(clippy::too_many_arguments)]
fn attention(
    hp: &Hparams,
    l: &LayerWeights<'_>,
    ex: Exec<'_>,
    kv: &mut KvCache,
    rope: &RopeTable,
    li: usize,
    pos: usize,
    n: usize,
    s: &mut Scratch,
) -> Result<()> {
    let (hd, qd, kvd, nkv) = (hp.head_dim, hp.q_dim(), hp.kv_dim(), hp.n_kv_heads);
    let group = hp.n_heads / nkv;
    let len = pos + n;
    let rows = n * group;
    let scale = 1.0 / (hd as f32).sqrt();
    let kern = ex.kernels;
    // On the team only when there is enough work to pay for waking it.
    let on_team = len * n * hp.n_heads * hd > 1 << 16;
    let serial = Exec { team: None, ..ex };
    let ex = if on_team { ex } else { serial };

    // 1. Per kv head: k[h], v[h] = [n][hd] (the new tokens) into the cache. An f16 cache
    // is read as it is by the units; a Q8 one is converted once here: kf[h], vf[h].
    let hist = match kv.ty() {
        KvType::F16 => 0,
        KvType::Q8 => len * hd,
    };
    let (kn, vn) = (
        Disjoint::new(&mut s.k[..n * kvd]),
        Disjoint::new(&mut s.v[..n * kvd]),
    );
    let (kf, vf) = (
        Disjoint::new(&mut s.kf[..nkv * hist]),
        Disjoint::new(&mut s.vf[..nkv * hist]),
    );
    let (kt, vt) = (&s.kt[..kvd * n], &s.vt[..kvd * n]);
    kv.for_each_head(li, ex.team, &|h, mut head| {
        // SAFETY: task `h` alone writes head `h`'s part of each buffer.
        let (kn, vn, kf, vf) = unsafe {
            (
                kn.part(h * n * hd, n * hd),
                vn.part(h * n * hd, n * hd),
                kf.part(h * hist, hist),
                vf.part(h * hist, hist),
            )
        };
        // Head h's rows of kt/vt are [hd][n]: transposed to [n][hd].
        transpose(&kt[h * hd * n..(h + 1) * hd * n], n, kn);
        transpose(&vt[h * hd * n..(h + 1) * hd * n], n, vn);
        add_bias(kn, l.bk.map(|b| &b[h * hd..(h + 1) * hd]));
        add_bias(vn, l.bv.map(|b| &b[h * hd..(h + 1) * hd]));
        for (t, k) in kn.chunks_exact_mut(hd).enumerate() {
            rope.apply(k, hd, pos + t, hp.rope_style);
        }
        head.write(pos, kn, vn)?;
        if hist > 0 {
            head.as_ref().read_t(len, kf, vf);
        }
        Ok(())
    })?;
    let (kv, key_lay) = (&*kv, key_layout(hd));
    let (kf, vf) = (&s.kf[..nkv * hist], &s.vf[..nkv * hist]);

    // 2. Units of work: kv head `h`, tokens `t0..t0 + tb` (tb ≤ ATT_TOKENS): `tb·group`
    // rows of `qh`, `scores` and `att`. The same units run with or without a team, so
    // results do not depend on it.
    let units = n.div_ceil(ATT_TOKENS);
    // A unit's queries, scores and outputs (scratch it alone reads) go to its member's
    // slot when every member's slot fits, so they stay in that core's cache (see
    // `mlp_hidden`); else to the unit's own rows.
    let rmax = ATT_TOKENS * group;
    let by_member = ex.threads() * rmax <= nkv * rows;
    let (sc, att) = (
        Disjoint::new(&mut s.scores[..nkv * rows * len]),
        Disjoint::new(&mut s.att[..nkv * rows * hd]),
    );
    let qh = Disjoint::new(&mut s.qh[..nkv * rows * hd]);
    // A unit quantizes its part of a token's row when that part is whole Q8 blocks; it
    // writes the f32 row to `xb` only when Wo reads it (a float matrix) or the rows are
    // quantized afterwards.
    let blocks = (group * hd).is_multiple_of(QK);
    let keep_f32 = any_float(&[&l.wo]) || !blocks;
    let (xb, xq) = (
        Disjoint::new(&mut s.xb[..n * qd]),
        Disjoint::new(hb_blocks(&mut s.hb, n * qd / QK)),
    );
    let qt = &s.qt[..qd * n];
    ex.run_members(nkv * units, &|u, m| {
        let (h, t0) = (u / units, (u % units) * ATT_TOKENS);
        let tb = ATT_TOKENS.min(n - t0);
        let r = tb * group;
        let r0 = if by_member {
            m * rmax
        } else {
            h * rows + t0 * group
        };
        // SAFETY: rows `r0..r0 + r` of `qh`, the scores and the outputs are member `m`'s
        // slot (it runs one unit at a time) or unit `u`'s own rows.
        let (qh, sc, out) = unsafe {
            (
                qh.part(r0 * hd, r * hd),
                sc.part(r0 * len, r * len),
                att.part(r0 * hd, r * hd),
            )
        };
        // qh[(i, g)][d] = qt[(h·group + g)·hd + d][t0 + i] (+ bias): a column of qt.
        for g in 0..group {
            let c = (h * group + g) * hd;
            for d in 0..hd {
                let src = &qt[(c + d) * n + t0..][..tb];
                let b = l.bq.map(|b| b[c + d]);
                for (i, &v) in src.iter().enumerate() {
                    qh[(i * group + g) * hd + d] = match b {
                        Some(b) => v + b,
                        None => v,
                    };
                }
            }
        }
        for (i, q) in qh.chunks_exact_mut(hd).enumerate() {
            rope.apply(q, hd, pos + t0 + i / group, hp.rope_style);
            // Rounded to f16 like the keys, through a stack buffer: the slice
            // conversions are vectorized (F16C), a per-value round trip is two calls.
            let mut buf = [half::f16::ZERO; 64];
            for d in q.chunks_mut(64) {
                let b = &mut buf[..d.len()];
                b.convert_from_f32_slice(d);
                b.convert_to_f32_slice(d);
            }
        }
        // Causal: the unit's last token sees positions `0..lu`, so only those columns
        // of the keys' transpose and rows of the values take part; the scores are
        // `[r][lu]`.
        let (q, lu) = (&*qh, pos + t0 + tb);
        let sc = &mut sc[..r * lu];
        // The keys' transpose is `[hd][·]`, in panels (f16 cache) or with rows `len`
        // apart (f32 copy), the values `[·][hd]`; both are read up to position `lu`.
        let f16 = kv.head_ref(li, h).f16();
        match f16 {
            Some((kc, _)) => {
                let span = key_lay.span(hd, lu).expect("the keys fit in memory");
                kern.gemm_f16b(r, hd, lu, q, &kc[..span], key_lay, sc)?
            }
            None => {
                let kf = &kf[h * len * hd..][..(hd - 1) * len + lu];
                kern.gemm_f32_ldb(r, hd, lu, q, kf, len, sc)?
            }
        }
        for (i, row) in sc.chunks_exact_mut(lu).enumerate() {
            let seen = pos + t0 + i / group + 1;
            ops::softmax_scaled(&mut row[..seen], scale);
            row[seen..].fill(0.0);
        }
        match f16 {
            Some((_, vc)) => {
                kern.gemm_f16b(r, lu, hd, sc, &vc[..lu * hd], BLayout::rows(hd), out)?
            }
            None => kern.gemm_f32(r, lu, hd, sc, &vf[h * len * hd..][..lu * hd], out)?,
        }
        // Token t0 + i's rows (i, 0..group) are heads h·group.. of its output row.
        let w = group * hd;
        for (i, o) in out.chunks_exact(w).enumerate() {
            let t = t0 + i;
            if keep_f32 {
                // SAFETY: unit `u` alone has token `t`'s values of heads
                // `h·group..(h + 1)·group`.
                unsafe { xb.part(t * qd + h * w, w) }.copy_from_slice(o);
            }
            if blocks {
                // SAFETY: as above, for the blocks of those values (`w` and `t·qd + h·w`
                // are multiples of QK).
                let q = unsafe { xq.part((t * qd + h * w) / QK, w / QK) };
                kern.quantize_row_q8(o, q)?;
            }
        }
        Ok(())
    })?;
    if !blocks {
        kern.quantize_row_q8(&s.xb[..n * qd], hb_blocks(&mut s.hb, n * qd / QK))?;
    }
    Ok(())
}

/// Fewest tokens per task of [`residual_norm`].
const NORM_TOKENS: usize = 4;
/// Values per piece of a normed row that is only quantized (a stack buffer; a multiple
/// of QK).
const NORM_PIECE: usize = 1024;
/// Fewest tokens per thread for [`Residual::Product`] (below, the output projections are
/// cut by rows as usual: a decode step has one token).
const FUSE_TOKENS: usize = 16;

/// Whether any of these matrices takes f32 input (then the normed rows are kept).
fn any_float(ms: &[&Matrix<'_>]) -> bool {
    ms.iter().any(|m| !matches!(m, Matrix::Packed(_)))
}

/// The first `len` Q8 blocks of `hb`'s bytes.
fn hb_blocks(hb: &mut [f32], len: usize) -> &mut [BlockQ8] {
    bytemuck::cast_slice_mut(
        &mut bytemuck::cast_slice_mut::<f32, u8>(hb)[..len * std::mem::size_of::<BlockQ8>()],
    )
}

/// A norm step: the weights and epsilon, the f32 normed rows (when kept) and their Q8.
type Norm<'a> = ((&'a [f32], f32), Option<&'a mut [f32]>, &'a mut [BlockQ8]);

/// For a run of tokens' rows of `x` (`[nt][dim]`): `x[j] += p[·][c0 + j]` when `p` (a
/// `[dim][stride]` matrix, given with its stride and first column) is given, then the
/// norm when given: `xq[j] = Q8(rmsnorm(x[j]) · w)` and `xb[j]` the f32 row when kept.
/// Without `xb` the normed row goes through a stack buffer in pieces (rmsnorm's own
/// steps, so the same bits).
fn add_norm(
    k: &Kernels,
    x: &mut [f32],
    dim: usize,
    p: Option<(&[f32], usize, usize)>,
    norm: Option<Norm<'_>>,
) -> Result<()> {
    if let Some((p, stride, c0)) = p {
        let nt = x.len() / dim;
        // Row by row of `p` (a contiguous run of these tokens each), into the tokens'
        // rows of `x` (a few KiB: they stay in L1).
        for (r, p) in p.chunks_exact(stride).enumerate() {
            for (j, &v) in p[c0..c0 + nt].iter().enumerate() {
                x[j * dim + r] += v;
            }
        }
    }
    let Some(((w, eps), xb, xq)) = norm else {
        return Ok(());
    };
    match xb {
        Some(xb) => {
            for (x, xb) in x.chunks_exact(dim).zip(xb.chunks_exact_mut(dim)) {
                ops::rmsnorm(xb, x, w, eps);
            }
            k.quantize_row_q8(xb, xq)?;
        }
        None => {
            let mut buf = [0.0f32; NORM_PIECE];
            for (x, xq) in x.chunks_exact(dim).zip(xq.chunks_exact_mut(dim / QK)) {
                let scale = ops::rms_scale(x, eps);
                for ((x, w), xq) in x
                    .chunks(NORM_PIECE)
                    .zip(w.chunks(NORM_PIECE))
                    .zip(xq.chunks_mut(NORM_PIECE / QK))
                {
                    let b = &mut buf[..x.len()];
                    for ((o, &v), &g) in b.iter_mut().zip(x).zip(w) {
                        *o = v * scale * g;
                    }
                    k.quantize_row_q8(b, xq)?;
                }
            }
        }
    }
    Ok(())
}

/// What [`residual_norm`] adds to `x` before the norm.
enum Residual<'a> {
    /// Nothing (the first layer's input).
    None,
    /// The columns of a `[dim][n]` projection computed by a row-cut matmul.
    Cols(&'a [f32]),
    /// `W·h[t]`, computed here by each task for its own tokens (`h`: Q8 rows of `W`'s
    /// input) into `y`'s columns `[dim][t1 - t0]` at `y[t0·dim..]`: a prefill's output
    /// projection (Wo, Wd) cut by tokens. The product, the add and the norm of a token
    /// then run on one core with no job in between — cut by rows, the product's rows
    /// were split between the cores and every token's norm read half of them from the
    /// other core, and every task prepared every token's activations. Each output is
    /// the same kernel code on the same values whatever tokens share its call, so the
    /// bits equal the row cut's.
    Product {
        w: &'a Matrix<'a>,
        h: &'a [BlockQ8],
        y: &'a mut [f32],
    },
}

/// For every token `t` of `n`: `x[t] += r[t]` (the residual add, `r` as [`Residual`]
/// says), then, when `norm` is given, `xq[t] = Q8(rmsnorm(x[t]) · w)` and the f32
/// normed row in `xb[t]` when `xb` is given (float matrices read it; packed ones only
/// `xq`).
///
/// One team job over token ranges, one range per thread (a token's values depend on
/// that token alone and are computed by the same code in any range, so the bits do not
/// depend on the thread count): these per-token steps ran serially on the caller
/// between two matmul jobs. One range per thread rather than a few: the caller takes
/// the first, a worker the next, layer after layer, so each core keeps updating the
/// same rows of `x` (with 4 ranges per thread they wandered between the cores and the
/// step took 3.8× its 1-thread time at 2 threads, against 2.2× now). Without `xb` the
/// normed rows go through a stack buffer: writing them to `xb` made the cores trade
/// `xb`'s lines every layer, for nothing when no float matrix reads it.
fn residual_norm(
    ex: Exec<'_>,
    x: &mut [f32],
    n: usize,
    add: Residual<'_>,
    norm: Option<(&[f32], f32)>,
    xb: Option<&mut [f32]>,
    xq: &mut [BlockQ8],
) -> Result<()> {
    let dim = x.len() / n;
    let nb = dim / QK;
    let (cols, product) = match add {
        Residual::None => (None, None),
        Residual::Cols(p) => (Some(p), None),
        Residual::Product { w, h, y } => (None, Some((w, h, y))),
    };
    assert!(
        x.len() == n * dim
            && xb.as_ref().is_none_or(|xb| xb.len() == n * dim)
            && xq.len() == n * nb
            && norm.is_none_or(|(w, _)| w.len() == dim)
            && cols.is_none_or(|p| p.len() == dim * n)
            && product
                .as_ref()
                .is_none_or(|(w, h, y)| w.rows() == dim && h.len() % n == 0 && y.len() == dim * n),
        "residual_norm: shapes"
    );
    let per = n.div_ceil(ex.threads()).max(NORM_TOKENS);
    let (xs, xqs) = (Disjoint::new(x), Disjoint::new(xq));
    let xbs = xb.map(Disjoint::new);
    let product = product.map(|(w, h, y)| (w, h, Disjoint::new(y)));
    ex.run(n.div_ceil(per), &|i| {
        let (t0, t1) = (i * per, ((i + 1) * per).min(n));
        let nt = t1 - t0;
        // SAFETY: task `i` alone writes tokens `t0..t1` of `x`, `xb` and `xq`, and
        // `y[t0·dim..t1·dim]`.
        let (x, xb, xq) = unsafe {
            (
                xs.part(t0 * dim, nt * dim),
                xbs.as_ref().map(|d| d.part(t0 * dim, nt * dim)),
                xqs.part(t0 * nb, nt * nb),
            )
        };
        let p = match &product {
            Some((w, h, ys)) => {
                // SAFETY: as above.
                let y = unsafe { ys.part(t0 * dim, nt * dim) };
                let hn = h.len() / n;
                matmul_rows(ex.kernels, w, 0, dim, &h[t0 * hn..t1 * hn], &[], nt, y)?;
                Some((&*y, nt, 0))
            }
            None => cols.map(|p| (p, n, t0)),
        };
        add_norm(ex.kernels, x, dim, p, norm.map(|wn| (wn, xb, xq)))
    })
}

/// Quantize `n` token rows of activations to Q8 (per-32 blocks; rows are multiples of 32).
fn quantize<'q>(ex: Exec<'_>, x: &[f32], out: &'q mut [BlockQ8]) -> Result<&'q [BlockQ8]> {
    ex.kernels.quantize_row_q8(x, out)?;
    Ok(out)
}

/// `y = W·X` for `n` tokens and each of the `M` matrices, `y[row * n + t]`. `xq`
/// (quantized) feeds packed matrices, `xf` (`[n][cols]` f32) float ones.
///
/// On a team, the matrices' row groups, side by side, are cut into ranges of one size
/// (a range may take the end of one matrix and the start of the next), all in one job
/// (so q, k and v share one wake-up). Each row is computed by the same kernel code
/// whatever the range it falls in, so results do not depend on the thread count.
fn matmuls<const M: usize>(
    ex: Exec<'_>,
    mats: [(&Matrix<'_>, &mut [f32]); M],
    xq: &[BlockQ8],
    xf: &[f32],
    n: usize,
) -> Result<()> {
    let threads = ex.threads();
    if threads == 1 {
        for (w, y) in mats {
            matmul_rows(ex.kernels, w, 0, w.rows(), xq, xf, n, y)?;
        }
        return Ok(());
    }
    let ws: [&Matrix<'_>; M] = std::array::from_fn(|i| mats[i].0);
    let groups = ws.map(|w| w.rows().div_ceil(ROWS));
    // The matrices' row groups side by side in one index space, each matrix starting at
    // a multiple of TASK_GROUP_MULTIPLE, cut into equal ranges: so the tasks are even
    // whatever the matrices' sizes (cut matrix by matrix, q/k/v made 60+60+24+48+48
    // groups for two threads), and every cut inside a matrix still falls on a multiple
    // of the widest tile.
    let mut start = [0; M];
    for m in 1..M {
        start[m] = start[m - 1] + groups[m - 1].next_multiple_of(TASK_GROUP_MULTIPLE);
    }
    let total = start[M - 1] + groups[M - 1];
    let per = groups_per_task(threads, n, total, TASK_GROUP_MULTIPLE);
    let ys = mats.map(|(_, y)| Disjoint::new(y));
    ex.run(total.div_ceil(per), &|i| {
        let (a, b) = (i * per, ((i + 1) * per).min(total));
        for m in 0..M {
            let (s, e) = (start[m], start[m] + groups[m]);
            if a >= e || b <= s {
                continue;
            }
            let (g0, g1) = (a.max(s) - s, b.min(e) - s);
            let rows = ws[m].rows();
            let (r0, r1) = (g0 * ROWS, (g1 * ROWS).min(rows));
            // SAFETY: the ranges `a..b` of the tasks are disjoint, so task `i` is the only
            // one writing rows `r0..r1` of output `m`.
            let y = unsafe { ys[m].part(r0 * n, (r1 - r0) * n) };
            matmul_rows(ex.kernels, ws[m], r0, r1, xq, xf, n, y)?;
        }
        Ok(())
    })
}

/// Row groups per task when `total` row groups are cut for `threads` threads and `n`
/// tokens: a few tasks per thread (see [`TASKS_PER_THREAD`] and
/// [`MATMUL_TASKS_PER_THREAD`]), at least [`MIN_TASK_GROUPS`], a multiple of `multiple`.
fn groups_per_task(threads: usize, n: usize, total: usize, multiple: usize) -> usize {
    let tasks = if n > 1 {
        MATMUL_TASKS_PER_THREAD
    } else {
        TASKS_PER_THREAD
    };
    total
        .div_ceil(threads * tasks)
        .max(MIN_TASK_GROUPS)
        .next_multiple_of(multiple)
}

/// Rows of the MLP hidden per quantization step of [`mlp_hidden`] (a stack buffer).
const HIDDEN_CHUNK: usize = 1024;

/// The MLP's hidden activations, quantized for the down projection:
/// `hq[t]` = Q8 of `silu(Wg·x[t]) · (Wu·x[t])` (`[n][ffn / 32]` blocks), with `gate`
/// and `up` (`[ffn][n]`) as scratch.
///
/// One job: each task takes a range of hidden rows (whole 32-row blocks), computes
/// those rows of both projections, applies SwiGLU and quantizes its blocks of every
/// token. So the SwiGLU, the transpose to token-major and the quantization run on the
/// whole team instead of between two jobs on the calling thread. A Q8 block depends
/// only on its own 32 values and the row ranges are whole blocks and whole matmul
/// tiles (see [`TASK_GROUP_MULTIPLE`]), so the bits do not depend on the thread count
/// and equal the unfused path's.
#[allow(clippy::too_many_arguments)]
fn mlp_hidden(
    ex: Exec<'_>,
    w_gate: &Matrix<'_>,
    w_up: &Matrix<'_>,
    xq: &[BlockQ8],
    n: usize,
    gate: &mut [f32],
    up: &mut [f32],
    hq: &mut [BlockQ8],
) -> Result<()> {
    let ffn = w_gate.rows();
    let nbf = ffn / QK;
    assert!(
        w_up.rows() == ffn
            && ffn.is_multiple_of(QK)
            && gate.len() == ffn * n
            && up.len() == ffn * n
            && hq.len() == n * nbf,
        "mlp_hidden: shapes"
    );
    // Row groups per task: a multiple of the widest tile and of a Q8 block (8 groups).
    let groups = ffn / ROWS;
    let per = match ex.threads() {
        1 => groups,
        t => groups_per_task(t, n, groups, TASK_GROUP_MULTIPLE.max(QK / ROWS)),
    };
    let tasks = groups.div_ceil(per);
    // A task's gate/up rows go to its member's slot when every member's slot fits: the
    // rows then stay in that core's cache from one layer to the next, instead of being
    // pulled over from whichever core ran the task last time (at 2 threads these
    // transfers cost more than the SwiGLU itself); else to the task's own rows.
    let span = per * ROWS * n;
    let by_member = ex.threads() * per * ROWS <= ffn;
    let (g, u, h) = (Disjoint::new(gate), Disjoint::new(up), Disjoint::new(hq));
    ex.run_members(tasks, &|i, m| {
        let (r0, r1) = ((i * per * ROWS).min(ffn), ((i + 1) * per * ROWS).min(ffn));
        let at = if by_member { m * span } else { r0 * n };
        // SAFETY: the slot at `at` is member `m`'s (which runs one task at a time) or
        // task `i`'s (rows `r0..r1`), and no other task of this job uses it meanwhile.
        let (gate, up) = unsafe { (g.part(at, (r1 - r0) * n), u.part(at, (r1 - r0) * n)) };
        matmul_rows(ex.kernels, w_gate, r0, r1, xq, &[], n, gate)?;
        matmul_rows(ex.kernels, w_up, r0, r1, xq, &[], n, up)?;
        ops::swiglu(gate, up);
        // Token `t`'s hidden values `r0..r1` are column `t` of `gate` ([r1 - r0][n]).
        let mut buf = [0.0f32; HIDDEN_CHUNK];
        for c0 in (r0..r1).step_by(HIDDEN_CHUNK) {
            let c1 = (c0 + HIDDEN_CHUNK).min(r1);
            let vals = &mut buf[..c1 - c0];
            for t in 0..n {
                for (v, r) in vals.iter_mut().zip(c0..c1) {
                    *v = gate[(r - r0) * n + t];
                }
                // SAFETY: blocks `c0/32..c1/32` of token `t` lie in rows `r0..r1`,
                // which task `i` alone owns.
                let out = unsafe { h.part(t * nbf + c0 / QK, (c1 - c0) / QK) };
                ex.kernels.quantize_row_q8(vals, out)?;
            }
        }
        Ok(())
    })
}

/// Rows `r0..r1` of `y = W·X` (`r0` a multiple of [`ROWS`]) into `y` = `[r1 - r0][n]`.
#[allow(clippy::too_many_arguments)]
fn matmul_rows(
    k: &Kernels,
    w: &Matrix<'_>,
    r0: usize,
    r1: usize,
    xq: &[BlockQ8],
    xf: &[f32],
    n: usize,
    y: &mut [f32],
) -> Result<()> {
    match w {
        Matrix::Packed(p) => {
            let sub: PackedMatrix<'_> = p.row_groups(r0 / ROWS, r1.div_ceil(ROWS));
            if n == 1 {
                k.gemv(&sub, xq, y)?;
            } else {
                k.gemm(&sub, xq, n, y)?;
            }
        }
        Matrix::F32 { cols, data, .. } => {
            float_rows(*cols, r0, n, xf, y, |r, x| {
                ops::dot(&data[r * cols..(r + 1) * cols], x)
            });
        }
        Matrix::F16 { cols, data, .. } => {
            float_rows(*cols, r0, n, xf, y, |r, x| {
                data[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a.to_f32() * b)
                    .sum()
            });
        }
    }
    Ok(())
}

/// The float fallback: `y[(r - r0) * n + t] = row_dot(r, x[t])`.
fn float_rows(
    cols: usize,
    r0: usize,
    n: usize,
    xf: &[f32],
    y: &mut [f32],
    row_dot: impl Fn(usize, &[f32]) -> f32,
) {
    for (i, yr) in y.chunks_mut(n).enumerate() {
        for (t, o) in yr.iter_mut().enumerate() {
            *o = row_dot(r0 + i, &xf[t * cols..(t + 1) * cols]);
        }
    }
}

/// Source rows per tile of [`transposed`]: each token's 8 values are one contiguous run
/// of the output, and the 8 source rows stay in L1 while every token is visited.
const TILE_ROWS: usize = 8;

/// `f(&mut dst[t][r], src[r][t])` for every row `r` and token `t` of `src` = `[rows][n]`
/// (`dst` = `[n][rows]`), in tiles of [`TILE_ROWS`] source rows.
#[inline(always)]
fn transposed(src: &[f32], n: usize, dst: &mut [f32], f: impl Fn(&mut f32, f32)) {
    let rows = src.len() / n;
    assert_eq!(dst.len(), rows * n, "transpose: lengths");
    let mut r0 = 0;
    for tile in src.chunks_exact(TILE_ROWS * n) {
        let s: [&[f32]; TILE_ROWS] = std::array::from_fn(|i| &tile[i * n..][..n]);
        for (t, d) in dst.chunks_exact_mut(rows).enumerate() {
            for (o, row) in d[r0..r0 + TILE_ROWS].iter_mut().zip(&s) {
                f(o, row[t]);
            }
        }
        r0 += TILE_ROWS;
    }
    for (r, row) in src.chunks_exact(n).enumerate().skip(r0) {
        for (d, &v) in dst.chunks_exact_mut(rows).zip(row) {
            f(&mut d[r], v);
        }
    }
}

/// `dst[t][r] = src[r][t]` for `src` = `[rows][n]`.
fn transpose(src: &[f32], n: usize, dst: &mut [f32]) {
    if n == 1 {
        dst.copy_from_slice(src);
        return;
    }
    transposed(src, n, dst, |o, v| *o = v);
}

/// `x[t][r] += y[r][t]` (residual add of a `[rows][n]` matmul output).
fn add_transposed(x: &mut [f32], y: &[f32], n: usize) {
    transposed(y, n, x, |o, v| *o += v);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiled transposes against the definition, with row counts that leave a
    /// partial tile (and none at all).
    #[test]
    fn tiled_transposes_match_the_definition() {
        for (rows, n) in [(13, 5), (8, 3), (3, 7), (24, 2), (17, 1)] {
            let src: Vec<f32> = (0..rows * n).map(|i| i as f32 * 0.5 - 7.0).collect();
            let mut dst = vec![0.0f32; rows * n];
            transpose(&src, n, &mut dst);
            let mut acc: Vec<f32> = (0..rows * n).map(|i| i as f32).collect();
            let before = acc.clone();
            add_transposed(&mut acc, &src, n);
            for r in 0..rows {
                for t in 0..n {
                    assert_eq!(dst[t * rows + r], src[r * n + t], "{rows}×{n} ({r}, {t})");
                    assert_eq!(acc[t * rows + r], before[t * rows + r] + src[r * n + t]);
                }
            }
        }
    }
}
