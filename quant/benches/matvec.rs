//! Matvec / matmul throughput of the packed kernels next to this machine's measured
//! single-core memory bandwidth, printed as one table.
//!
//! `cargo bench -p hearth-quant` (≈ 1–2 minutes). Without `--bench` (as `cargo test
//! --benches` runs it) it does one quick smoke pass.
//!
//! Method:
//! - A STREAM-like triad `a[i] = b[i] + s·c[i]` over three 64 MiB f32 arrays, single
//!   thread, counts 12 bytes per element (STREAM's convention); a read-only sum over
//!   192 MiB is printed too, since a matvec only reads its weights. Both are timed in
//!   1 MiB-per-array chunks, walking the arrays, so each call is short.
//! - Weights are cold: each shape/format allocates copies of the packed matrix
//!   totalling ≥ 256 MiB (8× this machine's 32 MiB L3) and every call uses the next
//!   copy, so every call streams its weights from DRAM, as a model's layers do.
//! - gemv: GB/s of packed weight bytes per second, GOP/s counting a multiply-add as 2.
//!   gemm (`n` = 32 tokens): "effective GB/s" = weight bytes × tokens / time, i.e. the
//!   throughput per weight byte; `×gemv` is its ratio to the same set's gemv.
//! - gemm is timed per slice of 32 row groups (128 rows; what a thread would be handed),
//!   scaled to the whole matrix; gemv per whole matrix.
//! - Each figure is the 10th percentile of repeated calls over ~0.4 s after a warm-up
//!   (robust to the process being descheduled on a shared machine).
use half::f16;
use hearth_quant::dispatch::PackedData;
use hearth_quant::packed::{groups, pack_matrix};
use hearth_quant::quantize::{quantize_block_q4, quantize_row_q8, quantize_row_q8_weights};
use hearth_quant::{
    BlockQ4, BlockQ4x4, BlockQ8, BlockQ8x4, KernelSetName, Kernels, PackedBlock, PackedMatrix, QK,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Tokens of the gemm (prefill) runs.
const GEMM_TOKENS: usize = 32;
/// Row groups per timed gemm call.
const GEMM_SLICE: usize = 32;
/// Minimum bytes of distinct weight copies per shape, to defeat the caches.
const COLD_BYTES: usize = 256 << 20;

/// Run `f` repeatedly (warm-up first) for about `budget`; seconds per call at the
/// 10th percentile. Being descheduled only ever makes a call slower, so on a machine
/// shared with other processes a low percentile estimates the undisturbed speed far
/// more stably than the median (every figure, bandwidth included, uses the same rule).
fn time_it(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed() < budget && samples.len() < 100_000) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 10]
}

/// Elements per timed bandwidth call (1 MiB of f32 per array): short calls, like the
/// kernels'.
const CHUNK: usize = 1 << 18;

/// Single-core memory bandwidth: (triad GB/s, read-only GB/s). Each timed call
/// handles the next chunk of arrays far larger than the caches.
fn memory_bandwidth(len: usize, budget: Duration) -> (f64, f64) {
    let mut a = vec![0.0f32; len];
    let b = vec![1.0f32; len];
    let c = vec![2.0f32; len];
    let s = black_box(3.0f32);
    let chunk = CHUNK.min(len);
    let chunks = len / chunk;
    let mut i = 0;
    let triad = time_it(budget, || {
        let r = (i % chunks) * chunk..(i % chunks + 1) * chunk;
        i += 1;
        for ((a, &b), &c) in a[r.clone()].iter_mut().zip(&b[r.clone()]).zip(&c[r]) {
            *a = b + s * c;
        }
        black_box(&mut a);
    });
    // Integer sums vectorise freely (no float reassociation), so this is load-bound.
    let words: Vec<u32> = (0..3 * len as u32).collect();
    let read = time_it(budget, || {
        let r = (i % (3 * chunks)) * chunk..(i % (3 * chunks) + 1) * chunk;
        i += 1;
        black_box(words[r].iter().fold(0u32, |acc, &w| acc.wrapping_add(w)));
    });
    let bytes = (chunk * 4) as f64;
    (3.0 * bytes / triad / 1e9, bytes / read / 1e9)
}

/// A tiny deterministic generator of N(0, 1)-ish values (sum of uniforms).
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut uni = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| (uni() + uni() + uni() + uni() - 2.0) * 1.7)
        .collect()
}

/// A packed format under test.
trait Format: PackedBlock<Row: Copy> + Copy {
    const NAME: &'static str;
    fn quantize_row(x: &[f32], out: &mut [Self::Row]);
    fn data(b: &[Self]) -> PackedData<'_>;
}

impl Format for BlockQ4x4 {
    const NAME: &'static str = "Q4";
    fn quantize_row(x: &[f32], out: &mut [BlockQ4]) {
        for (o, c) in out.iter_mut().zip(x.chunks_exact(QK)) {
            *o = quantize_block_q4(c.try_into().expect("block"));
        }
    }
    fn data(b: &[Self]) -> PackedData<'_> {
        PackedData::Q4(b)
    }
}

impl Format for BlockQ8x4 {
    const NAME: &'static str = "Q8";
    fn quantize_row(x: &[f32], out: &mut [BlockQ8]) {
        quantize_row_q8_weights(x, out)
    }
    fn data(b: &[Self]) -> PackedData<'_> {
        PackedData::Q8(b)
    }
}

/// One result line.
struct Row {
    shape: (usize, usize),
    format: &'static str,
    set: &'static str,
    kernel: String,
    seconds: f64,
    weight_bytes: usize,
    tokens: usize,
    gemv_eff: Option<f64>,
}

impl Row {
    fn eff_gbs(&self) -> f64 {
        (self.weight_bytes * self.tokens) as f64 / self.seconds / 1e9
    }
    fn gops(&self) -> f64 {
        (2 * self.shape.0 * self.shape.1 * self.tokens) as f64 / self.seconds / 1e9
    }
}

fn bench_format<P: Format>(
    rows: usize,
    cols: usize,
    sets: &[&'static Kernels],
    budget: Duration,
    cold_bytes: usize,
    out: &mut Vec<Row>,
) {
    let nb = cols / QK;
    // Quantize and pack one matrix, then replicate it into enough distinct copies.
    let w = weights(rows * cols, (rows * 31 + cols) as u64);
    let mut blocks = vec![bytemuck::Zeroable::zeroed(); rows * nb];
    for (r, row) in w.chunks_exact(cols).enumerate() {
        P::quantize_row(row, &mut blocks[r * nb..(r + 1) * nb]);
    }
    let per = groups(rows) * nb;
    let mut one = vec![P::zeroed(); per];
    pack_matrix::<P>(&blocks, rows, nb, &mut one).expect("pack");
    let bytes = std::mem::size_of_val(&one[..]);
    let copies = cold_bytes.div_ceil(bytes).max(1);
    let all: Vec<P> = (0..copies).flat_map(|_| one.iter().copied()).collect();
    drop(one);
    let mats: Vec<PackedMatrix<'_>> = all
        .chunks_exact(per)
        .map(|b| PackedMatrix::new(rows, cols, P::data(b)).expect("matrix"))
        .collect();

    // Activations for GEMM_TOKENS tokens.
    let xf = weights(GEMM_TOKENS * cols, 7);
    let mut x = vec![
        BlockQ8 {
            d: f16::ZERO,
            qs: [0; QK]
        };
        GEMM_TOKENS * nb
    ];
    quantize_row_q8(&xf, &mut x);
    let mut y = vec![0.0f32; rows * GEMM_TOKENS];

    for k in sets {
        let set = k.name().as_str();
        // The scalar gemm is only a curiosity and slow: skip it.
        let mut i = 0;
        let gemv = time_it(budget, || {
            let m = &mats[i % mats.len()];
            i += 1;
            k.gemv(m, &x[..nb], &mut y[..rows]).expect("gemv");
            black_box(&mut y);
        });
        let gemv_row = Row {
            shape: (rows, cols),
            format: P::NAME,
            set,
            kernel: "gemv".into(),
            seconds: gemv,
            weight_bytes: bytes,
            tokens: 1,
            gemv_eff: None,
        };
        let gemv_eff = gemv_row.eff_gbs();
        out.push(gemv_row);
        if k.name() == KernelSetName::Scalar {
            continue;
        }
        // Timed per slice of GEMM_SLICE row groups (the unit a thread pool hands
        // out), walking the full slices of all copies in turn (a last, partial slice
        // is skipped so every timed call does the same work).
        let slice = GEMM_SLICE.min(groups(rows));
        let slices = groups(rows) / slice;
        let gemm_slice = time_it(budget, || {
            let m = &mats[(i / slices) % mats.len()];
            let s = m.row_groups((i % slices) * slice, (i % slices + 1) * slice);
            i += 1;
            k.gemm(&s, &x, GEMM_TOKENS, &mut y[..s.rows() * GEMM_TOKENS])
                .expect("gemm");
            black_box(&mut y);
        });
        // Scale a slice's time to the whole matrix.
        let gemm = gemm_slice * groups(rows) as f64 / slice as f64;
        out.push(Row {
            shape: (rows, cols),
            format: P::NAME,
            set,
            kernel: format!("gemm n={GEMM_TOKENS}"),
            seconds: gemm,
            weight_bytes: bytes,
            tokens: GEMM_TOKENS,
            gemv_eff: Some(gemv_eff),
        });
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // Smoke mode (under `cargo test`): tiny budget, small working sets.
    let (budget, stream_len, cold, shapes): (_, _, _, &[(usize, usize)]) = if full {
        (
            Duration::from_millis(400),
            16 << 20,
            COLD_BYTES,
            &[(576, 1536), (2048, 8192)],
        )
    } else {
        (Duration::from_millis(1), 1 << 16, 1 << 20, &[(576, 1536)])
    };

    // Diagnostic: HEARTH_BENCH_HOT=1 uses one copy per matrix (cache-resident when it
    // fits), i.e. the kernels' compute speed rather than the memory's.
    let cold = if std::env::var_os("HEARTH_BENCH_HOT").is_some() {
        0
    } else {
        cold
    };
    let mut sets: Vec<&'static Kernels> = hearth_quant::arch::available().to_vec();
    sets.push(Kernels::get(KernelSetName::Scalar).expect("scalar"));

    let (triad, read) = memory_bandwidth(stream_len, budget * 3);
    println!(
        "single-core memory bandwidth: triad {triad:.1} GB/s, read-only {read:.1} GB/s \
         (3 arrays of {} MiB)",
        (stream_len * 4) >> 20
    );

    // HEARTH_BENCH_SHAPES=ROWSxCOLS,… replaces the default shapes.
    let custom: Vec<(usize, usize)> = std::env::var("HEARTH_BENCH_SHAPES")
        .map(|v| {
            v.split(',')
                .filter_map(|s| {
                    let (r, c) = s.trim().split_once('x')?;
                    Some((r.parse().ok()?, c.parse().ok()?))
                })
                .filter(|&(_, c): &(usize, usize)| c > 0 && c % QK == 0)
                .collect()
        })
        .unwrap_or_default();
    let shapes = if custom.is_empty() {
        shapes
    } else {
        &custom[..]
    };
    let mut rows = Vec::new();
    for &(r, c) in shapes {
        bench_format::<BlockQ4x4>(r, c, &sets, budget, cold, &mut rows);
        bench_format::<BlockQ8x4>(r, c, &sets, budget, cold, &mut rows);
    }

    println!();
    println!(
        "{:<11} {:<3} {:<11} {:<10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>6}",
        "shape", "fmt", "set", "kernel", "µs/call", "eff GB/s", "GOP/s", "%triad", "%read", "×gemv"
    );
    for r in &rows {
        let eff = r.eff_gbs();
        let ratio = r
            .gemv_eff
            .map(|g| format!("{:.1}", eff / g))
            .unwrap_or_default();
        println!(
            "{:<11} {:<3} {:<11} {:<10} {:>10.1} {:>9.1} {:>8.1} {:>7.0}% {:>7.0}% {:>6}",
            format!("{}×{}", r.shape.0, r.shape.1),
            r.format,
            r.set,
            r.kernel,
            r.seconds * 1e6,
            eff,
            r.gops(),
            100.0 * eff / triad,
            100.0 * eff / read,
            ratio
        );
    }
}
