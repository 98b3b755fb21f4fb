//! The key/value cache: a fixed context budget chosen when a session starts.
//!
//! Layout per tensor (K and V alike): `[layer][kv_head][pos][head_dim]`, so one
//! head's history is contiguous and converts to f32 in one slice operation.
//! Memory is allocated once, up front ([`KvCache::bytes`] says how much); writing
//! past the budget is an error, never a silent overflow.
use crate::{Error, Result};
use half::f16;
use half::slice::HalfFloatSliceExt;
use hearth_quant::quantize::quantize_row_q8;
use hearth_quant::{BlockQ8, QK};

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

    /// Store `x` at value offset `at` (a multiple of 32 for Q8).
    fn write(&mut self, at: usize, x: &[f32]) {
        match self {
            Store::F16(v) => v[at..at + x.len()].convert_from_f32_slice(x),
            Store::Q8(b) => quantize_row_q8(x, &mut b[at / QK..(at + x.len()) / QK]),
        }
    }

    /// Load `out.len()` values from value offset `at` as f32.
    fn read(&self, at: usize, out: &mut [f32]) {
        match self {
            Store::F16(v) => v[at..at + out.len()].convert_to_f32_slice(out),
            Store::Q8(b) => {
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

    fn bytes(&self) -> usize {
        match self {
            Store::F16(v) => v.len() * 2,
            Store::Q8(b) => b.len() * std::mem::size_of::<BlockQ8>(),
        }
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
        let values = n_layers
            .checked_mul(n_kv)
            .and_then(|v| v.checked_mul(ctx))
            .and_then(|v| v.checked_mul(head_dim))
            .ok_or_else(|| Error::Invalid(format!("context {ctx} is too large")))?;
        Ok(Self {
            ty,
            n_layers,
            n_kv,
            head_dim,
            ctx,
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
        let values = n_layers * n_kv * head_dim * ctx;
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
        ((layer * self.n_kv + head) * self.ctx + pos) * self.head_dim
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
            let at = self.offset(layer, h, pos);
            self.k.write(at, &k[h * hd..(h + 1) * hd]);
            self.v.write(at, &v[h * hd..(h + 1) * hd]);
        }
        Ok(())
    }

    /// Load positions `0..len` of one head's keys, **transposed**, and values as f32:
    /// `kt` is `[head_dim][len]` (`kt[d * len + j]` = key `j`, dimension `d`), `v` is
    /// `[len][head_dim]`. Attention multiplies queries by `kt` and probabilities by
    /// `v` as plain row-major matrix products. `len` must not exceed the capacity.
    pub fn read_head_t(
        &self,
        layer: usize,
        head: usize,
        len: usize,
        kt: &mut [f32],
        v: &mut [f32],
    ) {
        assert!(
            len <= self.ctx && layer < self.n_layers && head < self.n_kv,
            "KV read out of bounds"
        );
        let (hd, at) = (self.head_dim, self.offset(layer, head, 0));
        // Keys go through `v` (converted in one slice operation), then are transposed.
        self.k.read(at, &mut v[..len * hd]);
        let (k, kt) = (&v[..len * hd], &mut kt[..len * hd]);
        // Blocks of 8 keys: 8 contiguous source rows, 8-float runs in each output row.
        for (j0, rows) in (0..len).step_by(8).zip(k.chunks(8 * hd)) {
            for d in 0..hd {
                for (i, row) in rows.chunks_exact(hd).enumerate() {
                    kt[d * len + j0 + i] = row[d];
                }
            }
        }
        self.v.read(at, &mut v[..len * hd]);
    }

    /// Load positions `0..len` of one head's keys and values as f32
    /// (`len × head_dim` each). `len` must not exceed the capacity.
    pub fn read_head(&self, layer: usize, head: usize, len: usize, k: &mut [f32], v: &mut [f32]) {
        assert!(
            len <= self.ctx && layer < self.n_layers && head < self.n_kv,
            "KV read out of bounds"
        );
        let at = self.offset(layer, head, 0);
        let n = len * self.head_dim;
        self.k.read(at, &mut k[..n]);
        self.v.read(at, &mut v[..n]);
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
