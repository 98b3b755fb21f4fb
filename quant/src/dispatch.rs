//! The one dispatch point: a [`Kernels`] table per instruction set, picked once from
//! the CPU's features, and the safe API that checks every length before a kernel runs.
use crate::block::{BlockQ8, QK};
use crate::error::QuantError;
use crate::generic;
use crate::packed::{groups, BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};
use half::f16;

/// Activation quantizer: `x.len() == 32 * y.len()`.
pub type QuantizeFn = unsafe fn(x: &[f32], y: &mut [BlockQ8]);
/// Packed matrix × vector. Safety: the table's CPU features are present,
/// `x.len() == nb`, `w.len() == y.len() / 4 * nb`, `y.len() % 4 == 0`.
pub type GemvFn<P> = unsafe fn(w: &[P], nb: usize, x: &[BlockQ8], y: &mut [f32]);
/// Packed matrix × `n` activation rows (token-major `x`), output `y[row * n + t]`.
/// Safety: the table's CPU features are present, `x.len() == n * nb`,
/// `w.len() == y.len() / (4 * n) * nb`, `y.len() % (4 * n) == 0`, `n > 0`.
pub type GemmFn<P> = unsafe fn(w: &[P], nb: usize, x: &[BlockQ8], n: usize, y: &mut [f32]);
/// f32 matrix product `c = a · b` (row-major `m × k` times `k × n`, `b` laid out as
/// the [`BLayout`] says). Safety: the table's CPU features are present,
/// `a.len() == m * k`, `lay.is_valid()`, `Some(b.len()) == lay.span(k, n)`,
/// `c.len() == m * n`.
pub type GemmF32Fn =
    unsafe fn(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], lay: BLayout, c: &mut [f32]);
/// [`GemmF32Fn`] with `b` in f16, widened exactly to f32 as it is read.
pub type GemmF16bFn =
    unsafe fn(m: usize, k: usize, n: usize, a: &[f32], b: &[f16], lay: BLayout, c: &mut [f32]);

/// Where the float products find `b`'s value `(p, j)` (row `p < k`, column `j < n`):
/// at `(j / 32)·panel + p·row + j % 32`, i.e. in panels of 32 columns.
///
/// Row-major with rows `ldb` apart is [`BLayout::rows`]; the panels stored one after
/// another, each `k` rows of 32 values, is [`BLayout::panels`] — what attention keeps
/// its keys in (transposed), so that a product reads each panel as one contiguous run
/// instead of `k` runs far apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BLayout {
    /// Elements between rows `p` and `p + 1` of a panel.
    pub row: usize,
    /// Elements between panels `q` and `q + 1` (columns `32q..` and `32(q + 1)..`).
    pub panel: usize,
}

impl BLayout {
    /// Row-major, rows `ldb` apart.
    pub const fn rows(ldb: usize) -> Self {
        Self {
            row: ldb,
            panel: 32,
        }
    }

    /// Panels of `rows` rows × 32 values, one after another (`32 · rows` apart).
    pub const fn panels(rows: usize) -> Self {
        Self {
            row: 32,
            panel: 32 * rows,
        }
    }

    /// Whether the layout is one the kernels take: panels at least 32 apart (then the
    /// offsets never shrink as `p` or `j` grow, so [`BLayout::span`] bounds them).
    pub fn is_valid(&self) -> bool {
        self.panel >= 32
    }

    /// Offset of value `(p, j)`.
    #[inline(always)]
    pub fn at(&self, p: usize, j: usize) -> usize {
        (j / 32) * self.panel + p * self.row + j % 32
    }

    /// Elements a `k × n` matrix spans: up to its last value `(k - 1, n - 1)`, or row
    /// `k - 1`'s start when `n == 0` (`None` on overflow).
    pub fn span(&self, k: usize, n: usize) -> Option<usize> {
        if k == 0 {
            return Some(0);
        }
        let last_row = (k - 1).checked_mul(self.row)?;
        match n {
            0 => Some(last_row),
            _ => ((n - 1) / 32)
                .checked_mul(self.panel)?
                .checked_add(last_row)?
                .checked_add((n - 1) % 32 + 1),
        }
    }
}

/// The shapes of a float matrix product ([`Kernels::gemm_f32_ldb`],
/// [`Kernels::gemm_f16b`]): `a` is `m × k`, `b` spans a `k × n` matrix in a valid
/// layout, `c` is `m × n`.
fn check_gemm_shapes(
    m: usize,
    k: usize,
    n: usize,
    a: usize,
    b: usize,
    lay: BLayout,
    c: usize,
) -> Result<(), QuantError> {
    fn check(what: &'static str, expected: Option<usize>, got: usize) -> Result<(), QuantError> {
        match expected {
            Some(e) if e == got => Ok(()),
            e => Err(QuantError::LengthMismatch {
                what,
                expected: e.unwrap_or(usize::MAX),
                got,
            }),
        }
    }
    if !lay.is_valid() {
        return Err(QuantError::LengthMismatch {
            what: "panel stride of b (at least 32)",
            expected: 32,
            got: lay.panel,
        });
    }
    check("matrix a (m × k)", m.checked_mul(k), a)?;
    check("matrix b (k × n in its layout)", lay.span(k, n), b)?;
    check("matrix c (m × n)", m.checked_mul(n), c)
}

/// Names of the kernel sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelSetName {
    /// Portable scalar code.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 (F, BW, VL) with VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// aarch64 base NEON (Cortex-A72, Pi 4).
    Neon,
    /// aarch64 NEON with `sdot` (Cortex-A76/A78: Pi 5, Jetson Orin).
    Dotprod,
}

impl KernelSetName {
    /// The name used by `HEARTH_KERNELS`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KernelSetName::Scalar => "scalar",
            KernelSetName::Avx2 => "avx2",
            KernelSetName::Avx512Vnni => "avx512vnni",
            KernelSetName::Neon => "neon",
            KernelSetName::Dotprod => "dotprod",
        }
    }

    /// Parse a `HEARTH_KERNELS` value.
    pub fn parse(s: &str) -> Result<Self, QuantError> {
        Ok(match s.trim() {
            "scalar" => KernelSetName::Scalar,
            "avx2" => KernelSetName::Avx2,
            "avx512vnni" => KernelSetName::Avx512Vnni,
            "neon" => KernelSetName::Neon,
            "dotprod" => KernelSetName::Dotprod,
            _ => return Err(QuantError::UnknownKernelSet),
        })
    }
}

/// One instruction set's kernels. Obtain one with [`Kernels::detect`] or
/// [`Kernels::get`]; the fields are private so a table can only be had for a CPU
/// that supports it.
pub struct Kernels {
    pub(crate) name: KernelSetName,
    pub(crate) quantize_q8: QuantizeFn,
    pub(crate) gemv_q8: GemvFn<BlockQ8x4>,
    pub(crate) gemv_q4: GemvFn<BlockQ4x4>,
    pub(crate) gemv_q4a: GemvFn<BlockQ4Ax4>,
    pub(crate) gemm_q8: GemmFn<BlockQ8x4>,
    pub(crate) gemm_q4: GemmFn<BlockQ4x4>,
    pub(crate) gemm_q4a: GemmFn<BlockQ4Ax4>,
    pub(crate) gemm_f32: GemmF32Fn,
    pub(crate) gemm_f16b: GemmF16bFn,
}

/// The scalar kernel set (always available).
pub static SCALAR: Kernels = Kernels {
    name: KernelSetName::Scalar,
    quantize_q8: generic::quantize_row_q8_generic,
    gemv_q8: generic::gemv_q8_generic,
    gemv_q4: generic::gemv_q4_generic,
    gemv_q4a: generic::gemv_q4a_generic,
    gemm_q8: generic::gemm_q8_generic,
    gemm_q4: generic::gemm_q4_generic,
    gemm_q4a: generic::gemm_q4a_generic,
    gemm_f32: generic::gemm_f32_generic,
    gemm_f16b: generic::gemm_f16b_generic,
};

/// The packed blocks of a matrix, by format.
#[derive(Clone, Copy, Debug)]
pub enum PackedData<'a> {
    /// 8-bit.
    Q8(&'a [BlockQ8x4]),
    /// 4-bit symmetric.
    Q4(&'a [BlockQ4x4]),
    /// 4-bit asymmetric.
    Q4A(&'a [BlockQ4Ax4]),
}

/// A packed weight matrix of `rows × cols` (`cols` a multiple of 32).
#[derive(Clone, Copy, Debug)]
pub struct PackedMatrix<'a> {
    rows: usize,
    cols: usize,
    data: PackedData<'a>,
}

impl<'a> PackedMatrix<'a> {
    /// Wrap packed blocks, checking that their number fits `rows × cols`.
    pub fn new(rows: usize, cols: usize, data: PackedData<'a>) -> Result<Self, QuantError> {
        if !cols.is_multiple_of(QK) {
            return Err(QuantError::NotBlockMultiple {
                what: "columns",
                len: cols,
            });
        }
        let expected = groups(rows)
            .checked_mul(cols / QK)
            .ok_or(QuantError::LengthMismatch {
                what: "packed blocks",
                expected: usize::MAX,
                got: 0,
            })?;
        let got = match data {
            PackedData::Q8(b) => b.len(),
            PackedData::Q4(b) => b.len(),
            PackedData::Q4A(b) => b.len(),
        };
        if got != expected {
            return Err(QuantError::LengthMismatch {
                what: "packed blocks",
                expected,
                got,
            });
        }
        Ok(Self { rows, cols, data })
    }
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }
    /// The packed data.
    pub fn data(&self) -> PackedData<'a> {
        self.data
    }
    /// Row groups `start..end` (of [`ROWS`] rows each) as a matrix of their own: the
    /// unit of work for splitting a matmul across threads. `end` is clamped.
    pub fn row_groups(&self, start: usize, end: usize) -> Self {
        let end = end.min(groups(self.rows));
        let start = start.min(end);
        let nb = self.blocks_per_row();
        let rows = (end * ROWS).min(self.rows) - (start * ROWS).min(self.rows);
        let data = match self.data {
            PackedData::Q8(b) => PackedData::Q8(&b[start * nb..end * nb]),
            PackedData::Q4(b) => PackedData::Q4(&b[start * nb..end * nb]),
            PackedData::Q4A(b) => PackedData::Q4A(&b[start * nb..end * nb]),
        };
        Self {
            rows,
            cols: self.cols,
            data,
        }
    }
}

/// Tokens per call when the last, partial row group goes through a stack buffer.
const TAIL_TOKENS: usize = 16;

impl Kernels {
    /// Which set this is.
    pub fn name(&self) -> KernelSetName {
        self.name
    }

    /// Quantize activations: `x.len() == 32 * y.len()`.
    pub fn quantize_row_q8(&self, x: &[f32], y: &mut [BlockQ8]) -> Result<(), QuantError> {
        if !x.len().is_multiple_of(QK) {
            return Err(QuantError::NotBlockMultiple {
                what: "activation length",
                len: x.len(),
            });
        }
        if x.len() / QK != y.len() {
            return Err(QuantError::LengthMismatch {
                what: "activation blocks",
                expected: x.len() / QK,
                got: y.len(),
            });
        }
        // SAFETY: lengths checked above; this table exists only on CPUs that run it.
        unsafe { (self.quantize_q8)(x, y) };
        Ok(())
    }

    /// `y = W · x` for one activation row: `x.len() == cols / 32`, `y.len() == rows`.
    pub fn gemv(
        &self,
        w: &PackedMatrix<'_>,
        x: &[BlockQ8],
        y: &mut [f32],
    ) -> Result<(), QuantError> {
        let nb = w.blocks_per_row();
        if x.len() != nb {
            return Err(QuantError::LengthMismatch {
                what: "activation blocks",
                expected: nb,
                got: x.len(),
            });
        }
        if y.len() != w.rows {
            return Err(QuantError::LengthMismatch {
                what: "output rows",
                expected: w.rows,
                got: y.len(),
            });
        }
        let full = w.rows / ROWS;
        let (head, tail) = y.split_at_mut(full * ROWS);
        let head_w = w.row_groups(0, full);
        // SAFETY: `head` has `full * 4` rows and `head_w` exactly `full * nb` blocks;
        // `x` has `nb` blocks (checked above); the table matches this CPU.
        unsafe { self.call_gemv(&head_w, x, head) };
        if !tail.is_empty() {
            let mut buf = [0.0f32; ROWS];
            let tail_w = w.row_groups(full, full + 1);
            // SAFETY: one group of `nb` blocks into a 4-row buffer.
            unsafe { self.call_gemv(&tail_w, x, &mut buf) };
            tail.copy_from_slice(&buf[..tail.len()]);
        }
        Ok(())
    }

    /// `y = W · Xᵀ` for `n` activation rows (token-major: `x[t * nb + kb]`), output
    /// row-major by weight row: `y[row * n + t]`, `y.len() == rows * n`.
    pub fn gemm(
        &self,
        w: &PackedMatrix<'_>,
        x: &[BlockQ8],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), QuantError> {
        let nb = w.blocks_per_row();
        let xn = n.checked_mul(nb).ok_or(QuantError::LengthMismatch {
            what: "activation blocks",
            expected: usize::MAX,
            got: x.len(),
        })?;
        if x.len() != xn {
            return Err(QuantError::LengthMismatch {
                what: "activation blocks",
                expected: xn,
                got: x.len(),
            });
        }
        let yn = w.rows.checked_mul(n).ok_or(QuantError::LengthMismatch {
            what: "output",
            expected: usize::MAX,
            got: y.len(),
        })?;
        if y.len() != yn {
            return Err(QuantError::LengthMismatch {
                what: "output",
                expected: yn,
                got: y.len(),
            });
        }
        if n == 0 || w.rows == 0 {
            return Ok(());
        }
        let full = w.rows / ROWS;
        let (head, tail) = y.split_at_mut(full * ROWS * n);
        if full > 0 {
            // SAFETY: `head` holds `full * 4 * n` outputs for `full * nb` blocks; `x`
            // holds `n * nb` blocks (checked); the table matches this CPU.
            unsafe { self.call_gemm(&w.row_groups(0, full), x, n, head) };
        }
        if !tail.is_empty() {
            let tail_w = w.row_groups(full, full + 1);
            let live = tail.len() / n;
            let mut buf = [0.0f32; ROWS * TAIL_TOKENS];
            let mut t0 = 0;
            while t0 < n {
                let c = TAIL_TOKENS.min(n - t0);
                let out = &mut buf[..ROWS * c];
                // SAFETY: one group, `c` tokens of `nb` blocks, `4 * c` outputs.
                unsafe { self.call_gemm(&tail_w, &x[t0 * nb..(t0 + c) * nb], c, out) };
                for r in 0..live {
                    tail[r * n + t0..r * n + t0 + c].copy_from_slice(&out[r * c..(r + 1) * c]);
                }
                t0 += c;
            }
        }
        Ok(())
    }

    /// `c = a · b` in f32, all row-major: `a` is `m × k`, `b` is `k × n`, `c` is
    /// `m × n` (overwritten). The float matrix products of attention (scores and the
    /// weighted sum of values) go through this; sums may be ordered differently from
    /// [`generic::gemm_f32_generic`] (and use FMA), so results agree to a float
    /// tolerance.
    pub fn gemm_f32(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<(), QuantError> {
        self.gemm_f32_ldb(m, k, n, a, b, n, c)
    }

    /// [`Kernels::gemm_f32`] with `b` the first `n` columns of a matrix whose rows are
    /// `ldb ≥ n` apart: `b[p][j]` is `b[p * ldb + j]`, and `b` ends with row `k - 1`'s
    /// `n` values (`(k - 1) · ldb + n` elements; none when `k == 0`). Attention
    /// multiplies a block of queries by the keys it can see, a leading part of every
    /// row of the transposed keys. Each output is computed as by [`Kernels::gemm_f32`]
    /// on the same values, whatever `n` and `ldb`.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_f32_ldb(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
    ) -> Result<(), QuantError> {
        if ldb < n {
            return Err(QuantError::LengthMismatch {
                what: "row stride of b (at least n)",
                expected: n,
                got: ldb,
            });
        }
        let lay = BLayout::rows(ldb);
        check_gemm_shapes(m, k, n, a.len(), b.len(), lay, c.len())?;
        // SAFETY: shapes checked above; this table exists only on CPUs that run it.
        unsafe { (self.gemm_f32)(m, k, n, a, b, lay, c) };
        Ok(())
    }

    /// `c = a · b` in f32 with `b` in f16, laid out as `lay` says ([`BLayout`]): what
    /// attention multiplies its keys and values by, read straight from an f16 cache.
    /// Each value is widened exactly to f32 as it is loaded, so the result is bit for
    /// bit [`Kernels::gemm_f32`]'s on the widened values (in row-major order).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_f16b(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        b: &[f16],
        lay: BLayout,
        c: &mut [f32],
    ) -> Result<(), QuantError> {
        check_gemm_shapes(m, k, n, a.len(), b.len(), lay, c.len())?;
        // SAFETY: shapes checked above; this table exists only on CPUs that run it.
        unsafe { (self.gemm_f16b)(m, k, n, a, b, lay, c) };
        Ok(())
    }

    /// # Safety
    /// `y.len() == groups(w) * 4` and `x.len() == w.blocks_per_row()`.
    unsafe fn call_gemv(&self, w: &PackedMatrix<'_>, x: &[BlockQ8], y: &mut [f32]) {
        let nb = w.blocks_per_row();
        // SAFETY: forwarded from the caller.
        unsafe {
            match w.data {
                PackedData::Q8(b) => (self.gemv_q8)(b, nb, x, y),
                PackedData::Q4(b) => (self.gemv_q4)(b, nb, x, y),
                PackedData::Q4A(b) => (self.gemv_q4a)(b, nb, x, y),
            }
        }
    }

    /// # Safety
    /// `y.len() == groups(w) * 4 * n`, `x.len() == n * w.blocks_per_row()`, `n > 0`.
    unsafe fn call_gemm(&self, w: &PackedMatrix<'_>, x: &[BlockQ8], n: usize, y: &mut [f32]) {
        let nb = w.blocks_per_row();
        // SAFETY: forwarded from the caller.
        unsafe {
            match w.data {
                PackedData::Q8(b) => (self.gemm_q8)(b, nb, x, n, y),
                PackedData::Q4(b) => (self.gemm_q4)(b, nb, x, n, y),
                PackedData::Q4A(b) => (self.gemm_q4a)(b, nb, x, n, y),
            }
        }
    }

    /// The kernel set `name`, if this CPU (and build) supports it.
    pub fn get(name: KernelSetName) -> Result<&'static Kernels, QuantError> {
        if name == KernelSetName::Scalar {
            return Ok(&SCALAR);
        }
        crate::arch::available()
            .iter()
            .find(|k| k.name == name)
            .copied()
            .ok_or(QuantError::Unsupported {
                requested: name.as_str(),
            })
    }

    /// The best kernel set this CPU supports (no override).
    pub fn best() -> &'static Kernels {
        // `available()` lists the supported sets best first.
        crate::arch::available().first().copied().unwrap_or(&SCALAR)
    }

    /// The kernel set to use: `HEARTH_KERNELS` if set (an error if this CPU lacks it or
    /// the name is unknown), else [`Kernels::best`]. Without `std`, always `best()`.
    pub fn detect() -> Result<&'static Kernels, QuantError> {
        #[cfg(feature = "std")]
        if let Ok(v) = std::env::var("HEARTH_KERNELS") {
            if !v.trim().is_empty() {
                return Kernels::get(KernelSetName::parse(&v)?);
            }
        }
        Ok(Kernels::best())
    }
}

impl core::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Kernels").field("name", &self.name).finish()
    }
}
