"""Shared helpers of the side-by-side benchmarks against llama.cpp (scripts/bench/*).

Builds hearth and the peer, makes the model pairs (cached under $HEARTH_HOME/bench),
runs commands under /usr/bin/time for their peak RSS, and prints tables.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("HEARTH_HOME", Path.home() / ".cache" / "hearth"))
SRC_GGUF = HOME / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE = HOME / "bench"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
HEARTH = TARGET / "release" / "hearth"
UTIL = TARGET / "release" / "examples" / "bench_util"

# Equal-bits-per-weight pairs: (label, hearth conversion policy, llama.cpp file stem).
# llama-quantize keeps the (tied) embedding at Q8_0 unless --pure, so the Q4 pair
# uses --pure (4.50 bpw on both sides) and `mixed` pairs with llama.cpp's default Q4_0
# (Q4 matrices + Q8_0 embedding, 5.34 bpw on both sides).
PAIRS = [
    ("Q4 (4.50 bpw)", "q4", "Q4_0-pure"),
    ("Q8 (8.50 bpw)", "q8", "Q8_0"),
    ("Q4A/Q4_1 (5.74 bpw)", "keep", "Q4_1"),
]
MIXED_PAIR = ("Q4+Q8 embd (5.34 bpw)", "mixed", "Q4_0")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Run a command, return stdout; fail loudly with its stderr."""
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout or "")[-3000:]
        raise SystemExit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return p.stdout


def build():
    """Release hearth + the bench helper, and the llama.cpp peer. Returns its bin dir.
    HEARTH_BENCH_NO_BUILD=1 uses the binaries already in $CARGO_TARGET_DIR as they are."""
    if os.environ.get("HEARTH_BENCH_NO_BUILD") == "1":
        missing = [str(b) for b in (HEARTH, UTIL) if not b.exists()]
        if missing:
            raise SystemExit(f"HEARTH_BENCH_NO_BUILD=1 but missing: {', '.join(missing)}")
    else:
        log("building hearth (release) ...")
        run(["cargo", "build", "--release", "-q", "-p", "hearth"], cwd=REPO)
        run(["cargo", "build", "--release", "-q", "-p", "hearth-runtime", "--example", "bench_util"],
            cwd=REPO)
    peer = run([REPO / "scripts" / "bench" / "build-llamacpp"]).strip().splitlines()[-1]
    return Path(peer)


def hearth_model(policy):
    """SmolLM2 converted with `hearth convert --quant policy` (cached; re-converted when
    this hearth writes a newer format version than the cached file's)."""
    out = CACHE / f"smollm2-{policy}.hearth"
    if out.exists() and json.loads(run([HEARTH, "inspect", "--json", out])).get("outdated"):
        out.unlink()
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        log(f"converting {SRC_GGUF.name} --quant {policy} ...")
        tmp = out.with_name(out.stem + ".part.hearth")
        run([HEARTH, "convert", SRC_GGUF, "-o", tmp, "--quant", policy])
        tmp.rename(out)
    return out


def drop_page_cache(*paths):
    """Evict files from the page cache (POSIX_FADV_DONTNEED), so that the next run reads
    them afresh, as it would a just-converted model. hearth maps its models with
    MADV_HUGEPAGE, and what it faults in from disk lands in 2 MiB pages; pages that plain
    reads cached earlier (`hearth inspect`, a copy) stay 4 KiB ones, and a decode step
    over those ran 25-30% slower (BENCHMARKS.md, "2 MiB pages"). Both sides' files are
    dropped, so both start from disk; each bench warms up before it times anything."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def llama_model(peer, stem):
    """SmolLM2 for llama.cpp: the shipped Q4_1 file, or a requantization of it (cached)."""
    if stem == "Q4_1":
        return SRC_GGUF
    out = CACHE / f"smollm2-{stem}.gguf"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        ty, pure = stem.split("-")[0], stem.endswith("-pure")
        log(f"llama-quantize {stem} ...")
        tmp = out.with_suffix(".tmp")
        run([peer / "llama-quantize", "--allow-requantize"] + (["--pure"] if pure else [])
            + [SRC_GGUF, tmp, ty])
        tmp.rename(out)
    return out


def weight_info(path):
    """bits per weight and bytes read per generated token (bench_util weight-bytes)."""
    return json.loads(run([UTIL, "weight-bytes", path]))


def bandwidth():
    """Single-core triad and read-only bandwidth, GB/s."""
    return json.loads(run([UTIL, "bandwidth"]))


def timed(cmd, env=None):
    """Run under /usr/bin/time; returns (stdout, stderr, peak RSS in KiB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%M", "-o", tf.name] + [str(c) for c in cmd]
        p = subprocess.run(full, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(full)}\n{p.stderr[-3000:]}")
        rss = int(tf.read().strip().splitlines()[-1])
    return p.stdout, p.stderr, rss


def llama_json(stdout):
    """llama-bench -o json output → {(n_prompt, n_gen): (avg t/s, avg ns)}."""
    return {(t["n_prompt"], t["n_gen"]): (t["avg_ts"], t["avg_ns"]) for t in json.loads(stdout)}


def final_ppl(text):
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", text)
    return (float(m.group(1)), float(m.group(2))) if m else None


def table(headers, rows):
    """A Markdown table (also readable on a terminal)."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
    out = [fmt(cells[0]), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    out += [fmt(r) for r in cells[1:]]
    return "\n".join(out)


def machine():
    model = "?"
    for line in run(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    load = open("/proc/loadavg").read().split()[:3]
    return f"{model}, {os.cpu_count()} cores, load average {' '.join(load)}"
