//! Load time and memory of a Hearth model file: `ModelFile::open` (mmap + full
//! validation) plus touching the config and every tensor's table entry and view, then
//! the process's resident memory.
//!
//! `cargo run --release -p hearth-runtime --example load_bench -- MODEL.hearth [RUNS]`
use hearth_runtime::model::{ModelFile, TensorData};
use std::time::Instant;

/// `VmRSS` / `VmHWM` of this process in KiB (Linux), or 0.
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: load_bench MODEL.hearth [RUNS]")?;
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let rss_before = status_kib("VmRSS:");
    let mut times = Vec::with_capacity(runs);
    let mut keep = None;
    for _ in 0..runs {
        let t = Instant::now();
        let m = ModelFile::open(path.as_ref())?;
        let mut elems = m.config().vocab_size;
        for name in m.tensor_names() {
            elems += match m.tensor(name)?.data {
                TensorData::F32(v) => v.len(),
                TensorData::F16(v) => v.len(),
                TensorData::Packed(p) => p.rows() * p.cols(),
            };
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(elems);
        keep = Some(m);
    }
    let m = keep.ok_or("RUNS must be at least 1")?;
    times.sort_by(f64::total_cmp);
    println!(
        "{path}: {} tensors, {:.1} MiB; open+validate+touch table: min {:.2} ms, median {:.2} ms ({runs} runs)",
        m.tensor_infos().len(),
        m.file_len() as f64 / (1 << 20) as f64,
        times[0],
        times[times.len() / 2]
    );
    println!(
        "RSS before {} KiB, after load {} KiB (delta {} KiB; weights stay on disk until used)",
        rss_before,
        status_kib("VmRSS:"),
        status_kib("VmRSS:").saturating_sub(rss_before)
    );
    Ok(())
}
