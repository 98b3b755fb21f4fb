//! The key/value cache: a fixed context budget chosen when a session starts.
//!
//! Layout: values `[layer][kv_head][pos][head_dim]`; keys the same in Q8, but in f16
//! **transposed in panels** of 32 positions, `[layer][kv_head][pos / 32][head_dim][32]`
//! ([`key_layout`]): attention multiplies the queries by the keys' transpose and the
//! probabilities by the values, both straight from an f16 cache ([`HeadRef::f16`]), and
//! each 32 positions' keys are one contiguous 4 KiB run for the product to stream (a
//! plain `[head_dim][ctx]` transpose made a decode step read `head_dim` runs far apart
//! per 32 positions). Positions are allocated in multiples of 32. One head's history
//! is one contiguous run either way.
//! Memory is allocated once, up front ([`KvCache::bytes`] says how much); writing
//! past the budget is an error, never a silent overflow.
use crate::llm::team::{Disjoint, Team};
use crate::{Error, Result};
use half::f16;
use half::slice::HalfFloatSliceExt;
use hearth_quant::quantize::quantize_row_q8;
use hearth_quant::{BLayout, BlockQ8, QK};

/// Positions are allocated in multiples of this (the f16 keys' panel width).
const PANEL: usize = 32;

/// Where an f16 cache keeps key `p`'s dimension `d` within its head: value `(d, p)` of
/// the keys' transpose in panels of 32 positions ([`BLayout::panels`]).
pub(crate) fn key_layout(head_dim: usize) -> BLayout {
    BLayout::panels(head_dim)
}

/// Storage type of cached keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// Half precision (llama.cpp's default): 2 bytes per value.
    #[default]
    F16,
    /// 8-bit blocks of 32 with an f16 scale: 1.06 bytes per value.
    Q8,
}

impl std::str::FromStr for KvType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f16" => Ok(KvType::F16),
            "q8" => Ok(KvType::Q8),
            _ => Err(Error::Invalid(format!(
                "unknown KV cache type {s:?} (expected f16 or q8)"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
enum Store {
    F16(Vec<f16>),
    Q8(Vec<BlockQ8>),
}

/// A run of stored values, borrowed (`at` offsets below count values, not blocks).
#[derive(Clone, Copy)]
enum Values<'a> {
    F16(&'a [f16]),
    Q8(&'a [BlockQ8]),
}

/// A run of stored values, borrowed to write.
enum ValuesMut<'a> {
    F16(&'a mut [f16]),
    Q8(&'a mut [BlockQ8]),
}

impl Store {
    fn new(ty: KvType, values: usize) -> Self {
        match ty {
            KvType::F16 => Store::F16(vec![f16::ZERO; values]),
            KvType::Q8 => Store::Q8(vec![
                BlockQ8 {
                    d: f16::ZERO,
                    qs: [0; QK]
                };
                values / QK
            ]),
        }
    }

    fn values(&self) -> Values<'_> {
        match self {
            Store::F16(v) => Values::F16(v),
            Store::Q8(b) => Values::Q8(b),
        }
    }

    /// Values `at..at + len` (`at` and `len` multiples of 32 for Q8).
    fn values_mut(&mut self, at: usize, len: usize) -> ValuesMut<'_> {
        match self {
            Store::F16(v) => ValuesMut::F16(&mut v[at..at + len]),
            Store::Q8(b) => ValuesMut::Q8(&mut b[at / QK..(at + len) / QK]),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Store::F16(v) => v.len() * 2,
            Store::Q8(b) => b.len() * std::mem::size_of::<BlockQ8>(),
        }
    }
}

impl<'a> Values<'a> {
    /// The values from value offset `at` on (a multiple of 32 for Q8).
    fn from(self, at: usize) -> Values<'a> {
        match self {
            Values::F16(v) => Values::F16(&v[at..]),
            Values::Q8(b) => Values::Q8(&b[at / QK..]),
        }
    }

    /// Load `out.len()` values from value offset `at` as f32.
    fn read(self, at: usize, out: &mut [f32]) {
        match self {
            Values::F16(v) => v[at..at + out.len()].convert_to_f32_slice(out),
            Values::Q8(b) => {
                for (blk, o) in b[at / QK..(at + out.len()) / QK]
                    .iter()
                    .zip(out.chunks_exact_mut(QK))
                {
                    let d = blk.d.to_f32();
                    for (x, &q) in o.iter_mut().zip(&blk.qs) {
                        *x = d * q as f32;
                    }
                }
            }
        }
    }

    /// Load values `0..len · hd` (`len` rows of `hd`) with the rows transposed into
    /// `kt` (`[hd][len]`), through `tmp` (`len · hd` f32, overwritten).
    fn read_t(self, hd: usize, len: usize, kt: &mut [f32], tmp: &mut [f32]) {
        // Converted in one slice operation, then transposed.
        self.read(0, &mut tmp[..len * hd]);
        let (k, kt) = (&tmp[..len * hd], &mut kt[..len * hd]);
        // Blocks of 8 keys: 8 contiguous source rows, 8-float runs in each output row.
        for (j0, rows) in (0..len).step_by(8).zip(k.chunks(8 * hd)) {
            for d in 0..hd {
                for (i, row) in rows.chunks_exact(hd).enumerate() {
                    kt[d * len + j0 + i] = row[d];
                }
            }
        }
    }
}

impl ValuesMut<'_> {
    fn as_values(&self) -> Values<'_> {
        match self {
            ValuesMut::F16(v) => Values::F16(v),
            ValuesMut::Q8(b) => Values::Q8(b),
        }
    }

    /// Store `x` at value offset `at` (a multiple of 32 for Q8).
    fn write(&mut self, at: usize, x: &[f32]) {
        match self {
            ValuesMut::F16(v) => v[at..at + x.len()].convert_from_f32_slice(x),
            ValuesMut::Q8(b) => quantize_row_q8(x, &mut b[at / QK..(at + x.len()) / QK]),
        }
    }
}

/// One kv head of one layer: its keys and values at every position (laid out as the
/// module says), borrowed alone so that the heads of a layer can be filled and read on
/// different threads ([`KvCache::for_each_head`]).
pub(crate) struct KvHead<'a> {
    k: ValuesMut<'a>,
    v: ValuesMut<'a>,
    head_dim: usize,
    ctx: usize,
}

impl KvHead<'_> {
    /// Store the keys and values of positions `pos..pos + m` (`k`, `v`: `[m][head_dim]`).
    pub fn write(&mut self, pos: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let (hd, ctx) = (self.head_dim, self.ctx);
        if k.len() != v.len() || !k.len().is_multiple_of(hd) {
            return Err(Error::Invalid(format!(
                "KV write: {} key values, {} value values, head_dim {hd}",
                k.len(),
                v.len()
            )));
        }
        let m = k.len() / hd;
        if pos + m > ctx {
            return Err(Error::Invalid(format!(
                "context full: position {} is past the {ctx}-token budget",
                pos + m - 1
            )));
        }
        match &mut self.k {
            // Transposed in panels: the keys' dimension `d` at positions `p0..p0 + run`
            // (within one panel) is one run, gathered through a stack buffer (the slice
            // conversion is vectorized).
            ValuesMut::F16(kc) => {
                let lay = key_layout(hd);
                let mut buf = [0.0f32; PANEL];
                let mut t = 0;
                while t < m {
                    let p0 = pos + t;
                    let run = (PANEL - p0 % PANEL).min(m - t);
                    let b = &mut buf[..run];
                    for d in 0..hd {
                        for (i, x) in b.iter_mut().enumerate() {
                            *x = k[(t + i) * hd + d];
                        }
                        let at = lay.at(d, p0);
                        kc[at..at + run].convert_from_f32_slice(b);
                    }
                    t += run;
                }
            }
            ValuesMut::Q8(_) => self.k.write(pos * hd, k),
        }
        self.v.write(pos * hd, v);
        Ok(())
    }

    /// The head, read-only.
    pub fn as_ref(&self) -> HeadRef<'_> {
        HeadRef {
            k: self.k.as_values(),
            v: self.v.as_values(),
            head_dim: self.head_dim,
            ctx: self.ctx,
        }
    }
}

/// One kv head of one layer, read-only.
#[derive(Clone, Copy)]
pub(crate) struct HeadRef<'a> {
    k: Values<'a>,
    v: Values<'a>,
    head_dim: usize,
    ctx: usize,
}

impl<'a> HeadRef<'a> {
    /// An f16 cache's keys, transposed in panels ([`key_layout`]), and values
    /// (`[·][head_dim]`) as stored; `None` for Q8.
    pub fn f16(&self) -> Option<(&'a [f16], &'a [f16])> {
        match (self.k, self.v) {
            (Values::F16(k), Values::F16(v)) => Some((k, v)),
            _ => None,
        }
    }

    /// Positions `0..len` as f32: keys **transposed** into `kt` (`[head_dim][len]`),
    /// values into `v` (`[len][head_dim]`).
    pub fn read_t(&self, len: usize, kt: &mut [f32], v: &mut [f32]) {
        let (hd, ctx) = (self.head_dim, self.ctx);
        assert!(len <= ctx, "KV read out of bounds");
        match self.k {
            Values::F16(k) => {
                let lay = key_layout(hd);
                for (d, row) in kt[..hd * len].chunks_exact_mut(len.max(1)).enumerate() {
                    for (q, out) in row.chunks_mut(PANEL).enumerate() {
                        let at = lay.at(d, q * PANEL);
                        k[at..at + out.len()].convert_to_f32_slice(out);
                    }
                }
            }
            // Keys go through `v`, then are transposed.
            Values::Q8(_) => self.k.read_t(hd, len, kt, v),
        }
        self.v.read(0, &mut v[..len * hd]);
    }

    /// Positions `0..len` as f32, keys and values both `[len][head_dim]`.
    pub fn read(&self, len: usize, k: &mut [f32], v: &mut [f32]) {
        let (hd, ctx) = (self.head_dim, self.ctx);
        assert!(len <= ctx, "KV read out of bounds");
        match self.k {
            Values::F16(kc) => {
                let lay = key_layout(hd);
                for d in 0..hd {
                    for j in 0..len {
                        k[j * hd + d] = kc[lay.at(d, j)].to_f32();
                    }
                }
            }
            Values::Q8(_) => self.k.read(0, &mut k[..len * hd]),
        }
        self.v.read(0, &mut v[..len * hd]);
    }
}

/// Keys and values of every layer for up to `ctx` positions.
#[derive(Clone, Debug)]
pub struct KvCache {
    ty: KvType,
    n_layers: usize,
    n_kv: usize,
    head_dim: usize,
    ctx: usize,
    /// Positions allocated per head: `ctx` rounded up to [`PANEL`].
    slots: usize,
    k: Store,
    v: Store,
}

impl KvCache {
    /// Allocate the whole budget now. Q8 needs `head_dim` to be a multiple of 32.
    pub fn new(
        ty: KvType,
        n_layers: usize,
        n_kv: usize,
        head_dim: usize,
        ctx: usize,
    ) -> Result<Self> {
        if ctx == 0 {
            return Err(Error::Invalid("context length must be at least 1".into()));
        }
        if ty == KvType::Q8 && !head_dim.is_multiple_of(QK) {
            return Err(Error::Invalid(format!(
                "q8 KV cache needs head_dim a multiple of {QK}, got {head_dim}"
            )));
        }
        let slots = ctx.next_multiple_of(PANEL);
        let values = n_layers
            .checked_mul(n_kv)
            .and_then(|v| v.checked_mul(slots))
            .and_then(|v| v.checked_mul(head_dim))
            .ok_or_else(|| Error::Invalid(format!("context {ctx} is too large")))?;
        Ok(Self {
            ty,
            n_layers,
            n_kv,
            head_dim,
            ctx,
            slots,
            k: Store::new(ty, values),
            v: Store::new(ty, values),
        })
    }

    /// Bytes the cache occupies (fixed for its lifetime).
    pub fn bytes(&self) -> usize {
        self.k.bytes() + self.v.bytes()
    }

    /// Bytes a cache of these dimensions would take, without allocating it.
    pub fn bytes_for(
        ty: KvType,
        n_layers: usize,
        n_kv: usize,
        head_dim: usize,
        ctx: usize,
    ) -> usize {
        let values = n_layers * n_kv * head_dim * ctx.next_multiple_of(PANEL);
        match ty {
            KvType::F16 => 2 * values * 2,
            KvType::Q8 => 2 * (values / QK) * std::mem::size_of::<BlockQ8>(),
        }
    }

    /// Positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.ctx
    }

    /// Storage type.
    pub fn ty(&self) -> KvType {
        self.ty
    }

    #[inline]
    fn offset(&self, layer: usize, head: usize, pos: usize) -> usize {
        ((layer * self.n_kv + head) * self.slots + pos) * self.head_dim
    }

    /// Head `head` of `layer` (asserted in range).
    fn head(&mut self, layer: usize, head: usize) -> KvHead<'_> {
        assert!(
            layer < self.n_layers && head < self.n_kv,
            "KV head out of range"
        );
        let (at, len) = (self.offset(layer, head, 0), self.slots * self.head_dim);
        KvHead {
            k: self.k.values_mut(at, len),
            v: self.v.values_mut(at, len),
            head_dim: self.head_dim,
            ctx: self.ctx,
        }
    }

    /// `f(h, head h)` for every kv head of `layer`, each head borrowed alone, as one
    /// job on `team` when given (else in order on this thread): the heads' storage is
    /// disjoint, so they are written and read in parallel.
    pub(crate) fn for_each_head(
        &mut self,
        layer: usize,
        team: Option<&Team>,
        f: &(dyn Fn(usize, KvHead<'_>) -> Result<()> + Sync),
    ) -> Result<()> {
        assert!(layer < self.n_layers, "KV layer out of range");
        let (n_kv, hd, ctx, slots) = (self.n_kv, self.head_dim, self.ctx, self.slots);
        let (at, len) = (self.offset(layer, 0, 0), n_kv * slots * hd);
        fn parts(s: &mut Store, at: usize, len: usize) -> Parts<'_> {
            match s.values_mut(at, len) {
                ValuesMut::F16(v) => Parts::F16(Disjoint::new(v)),
                ValuesMut::Q8(b) => Parts::Q8(Disjoint::new(b)),
            }
        }
        let (k, v) = (parts(&mut self.k, at, len), parts(&mut self.v, at, len));
        let task = |h: usize| {
            // SAFETY: a job runs each task number once, and task `h` alone takes head
            // `h`'s values (`h·slots·hd..(h + 1)·slots·hd` of the layer).
            let (k, v) = unsafe {
                (
                    k.part(h * slots * hd, slots * hd),
                    v.part(h * slots * hd, slots * hd),
                )
            };
            let head = KvHead {
                k,
                v,
                head_dim: hd,
                ctx,
            };
            f(h, head)
        };
        match team {
            Some(team) => team.run(n_kv, &task),
            None => (0..n_kv).try_for_each(task),
        }
    }

    /// Store one position's keys and values (`n_kv × head_dim` each, head-major).
    pub fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) -> Result<()> {
        if pos >= self.ctx {
            return Err(Error::Invalid(format!(
                "context full: position {pos} is past the {}-token budget",
                self.ctx
            )));
        }
        if layer >= self.n_layers || k.len() != self.n_kv * self.head_dim || v.len() != k.len() {
            return Err(Error::Invalid(format!(
                "KV write: layer {layer}, {} key values, {} value values",
                k.len(),
                v.len()
            )));
        }
        let hd = self.head_dim;
        for h in 0..self.n_kv {
            let (k, v) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            self.head(layer, h).write(pos, k, v)?;
        }
        Ok(())
    }

    /// Head `head` of `layer`, read-only (asserted in range).
    pub(crate) fn head_ref(&self, layer: usize, head: usize) -> HeadRef<'_> {
        assert!(
            layer < self.n_layers && head < self.n_kv,
            "KV read out of bounds"
        );
        let at = self.offset(layer, head, 0);
        HeadRef {
            k: self.k.values().from(at),
            v: self.v.values().from(at),
            head_dim: self.head_dim,
            ctx: self.ctx,
        }
    }

    /// Load positions `0..len` of one head's keys, **transposed**, and values as f32:
    /// `kt` is `[head_dim][len]` (`kt[d * len + j]` = key `j`, dimension `d`), `v` is
    /// `[len][head_dim]`. `len` must not exceed the capacity.
    pub fn read_head_t(
        &self,
        layer: usize,
        head: usize,
        len: usize,
        kt: &mut [f32],
        v: &mut [f32],
    ) {
        self.head_ref(layer, head).read_t(len, kt, v);
    }

    /// Load positions `0..len` of one head's keys and values as f32
    /// (`len × head_dim` each). `len` must not exceed the capacity.
    pub fn read_head(&self, layer: usize, head: usize, len: usize, k: &mut [f32], v: &mut [f32]) {
        self.head_ref(layer, head).read(len, k, v);
    }
}

/// A layer's values of one store, shared between the tasks of [`KvCache::for_each_head`].
enum Parts<'a> {
    F16(Disjoint<'a, f16>),
    Q8(Disjoint<'a, BlockQ8>),
}

impl Parts<'_> {
    /// Values `at..at + len` (multiples of 32 for Q8).
    ///
    /// # Safety
    /// As [`Disjoint::part`]: no two live results overlap.
    unsafe fn part(&self, at: usize, len: usize) -> ValuesMut<'_> {
        // SAFETY: forwarded to the caller.
        unsafe {
            match self {
                Parts::F16(d) => ValuesMut::F16(d.part(at, len)),
                Parts::Q8(d) => ValuesMut::Q8(d.part(at / QK, len / QK)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(ty: KvType, tol: f32) {
        let (layers, heads, hd, ctx) = (2, 3, 32, 5);
        let mut kv = KvCache::new(ty, layers, heads, hd, ctx).unwrap();
        assert_eq!(kv.bytes(), KvCache::bytes_for(ty, layers, heads, hd, ctx));
        let row = |l: usize, p: usize, s: f32| -> Vec<f32> {
            (0..heads * hd)
                .map(|i| s * ((l * 100 + p * 10 + i) as f32 * 0.1).sin())
                .collect()
        };
        for l in 0..layers {
            for p in 0..ctx {
                kv.write(l, p, &row(l, p, 1.0), &row(l, p, -2.0)).unwrap();
            }
        }
        let (mut k, mut v) = (vec![0.0; ctx * hd], vec![0.0; ctx * hd]);
        for l in 0..layers {
            for h in 0..heads {
                kv.read_head(l, h, ctx, &mut k, &mut v);
                for p in 0..ctx {
                    let (ek, ev) = (row(l, p, 1.0), row(l, p, -2.0));
                    for d in 0..hd {
                        assert!((k[p * hd + d] - ek[h * hd + d]).abs() <= tol * 1.0);
                        assert!((v[p * hd + d] - ev[h * hd + d]).abs() <= tol * 2.0);
                    }
                }
            }
        }
    }

    /// The transposed read holds the same values as the plain one, for both stores and
    /// a key count that is not a multiple of the 8-key blocks.
    #[test]
    fn transposed_read_matches() {
        for (ty, hd) in [(KvType::F16, 32), (KvType::Q8, 64)] {
            let (layers, heads, ctx) = (2, 3, 19);
            let mut kv = KvCache::new(ty, layers, heads, hd, ctx).unwrap();
            for p in 0..ctx {
                let k: Vec<f32> = (0..heads * hd).map(|i| ((p * 7 + i) % 50) as f32).collect();
                let v: Vec<f32> = k.iter().map(|x| -x).collect();
                kv.write(1, p, &k, &v).unwrap();
            }
            let len = 11;
            let (mut k, mut v) = (vec![0.0; len * hd], vec![0.0; len * hd]);
            let (mut kt, mut v2) = (vec![f32::NAN; len * hd], vec![f32::NAN; len * hd]);
            kv.read_head(1, 2, len, &mut k, &mut v);
            kv.read_head_t(1, 2, len, &mut kt, &mut v2);
            assert_eq!(v, v2, "{ty:?}");
            for j in 0..len {
                for d in 0..hd {
                    assert_eq!(kt[d * len + j], k[j * hd + d], "{ty:?}");
                }
            }
        }
    }

    /// Heads filled as one team job through `for_each_head` (a run of positions each)
    /// hold what position-by-position writes hold, for both stores, and read back the
    /// same through `KvHead::read_t`; a run past the budget is an error.
    #[test]
    fn heads_written_in_parallel_match_row_writes() {
        let (layers, heads, hd, ctx) = (2, 3, 32, 9);
        let val = |p: usize, i: usize| ((p * 13 + i * 7) % 29) as f32 - 14.0;
        let team = Team::new(2).unwrap();
        for ty in [KvType::F16, KvType::Q8] {
            let mut rows = KvCache::new(ty, layers, heads, hd, ctx).unwrap();
            let mut runs = rows.clone();
            for p in 2..7 {
                let k: Vec<f32> = (0..heads * hd).map(|i| val(p, i)).collect();
                let v: Vec<f32> = k.iter().map(|x| x * 0.5).collect();
                rows.write(1, p, &k, &v).unwrap();
            }
            let len = 7;
            let read = std::sync::Mutex::new(vec![Vec::new(); heads]);
            runs.for_each_head(1, Some(&team), &|h, mut head| {
                let k: Vec<f32> = (2..7)
                    .flat_map(|p| (0..hd).map(move |d| val(p, h * hd + d)))
                    .collect();
                let v: Vec<f32> = k.iter().map(|x| x * 0.5).collect();
                head.write(2, &k, &v)?;
                let (mut kt, mut vf) = (vec![f32::NAN; len * hd], vec![f32::NAN; len * hd]);
                head.as_ref().read_t(len, &mut kt, &mut vf);
                read.lock().unwrap()[h] = [kt, vf].concat();
                Ok(())
            })
            .unwrap();
            let read = read.into_inner().unwrap();
            for (h, got) in read.iter().enumerate() {
                let (mut kt, mut vf) = (vec![0.0; len * hd], vec![0.0; len * hd]);
                rows.read_head_t(1, h, len, &mut kt, &mut vf);
                assert_eq!(got, &[kt.clone(), vf.clone()].concat(), "{ty:?} head {h}");
                let (mut kt2, mut vf2) = (vec![0.0; len * hd], vec![0.0; len * hd]);
                runs.read_head_t(1, h, len, &mut kt2, &mut vf2);
                assert_eq!((kt, vf), (kt2, vf2), "{ty:?} head {h}");
            }
            let err = runs
                .for_each_head(0, None, &|_, mut head| {
                    head.write(ctx - 1, &vec![0.0; 2 * hd], &vec![0.0; 2 * hd])
                })
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("context full"), "{err}");
        }
    }

    #[test]
    fn f16_roundtrip() {
        roundtrip(KvType::F16, 1e-3);
    }

    #[test]
    fn q8_roundtrip() {
        roundtrip(KvType::Q8, 1.0 / 127.0);
    }

    #[test]
    fn full_context_is_an_error() {
        let mut kv = KvCache::new(KvType::F16, 1, 1, 32, 4).unwrap();
        let x = vec![0.5; 32];
        for p in 0..4 {
            kv.write(0, p, &x, &x).unwrap();
        }
        let err = kv.write(0, 4, &x, &x).unwrap_err().to_string();
        assert!(err.starts_with("context full"), "{err}");
        assert!(KvCache::new(KvType::F16, 1, 1, 32, 0).is_err());
        assert!(KvCache::new(KvType::Q8, 1, 1, 48, 4).is_err());
        assert_eq!("q8".parse::<KvType>().unwrap(), KvType::Q8);
        assert!("f32".parse::<KvType>().is_err());
    }
}
