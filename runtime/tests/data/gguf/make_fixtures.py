#!/usr/bin/env python3
"""Generates tiny.gguf, the fixture for runtime/tests/gguf_fixture.rs.

The file is written by the reference Python `gguf` package (GGUFWriter), and the
expected f32 values come from that package's own dequantizer, so the Rust reader
and dequantizer are checked against an independent implementation. Run once and
commit the output; the Rust tests do not need Python:

    python3 -m venv /tmp/v && /tmp/v/bin/pip install gguf numpy
    /tmp/v/bin/python runtime/tests/data/gguf/make_fixtures.py

Contents:
  - metadata of every value type, including a nested array and a non-ASCII string;
  - for each type T in F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K:
    tensor `T` (random blocks, shape [256, 2] in ggml order) and `T.expected`
    (F32, gguf.quants.dequantize of the same bytes);
  - tensor `q2k` of type Q2_K, which hearth parses but cannot dequantize.
"""
import os

import numpy as np
from gguf import GGUFWriter, GGUFValueType
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.gguf")
rng = np.random.default_rng(20261129)
ROWS, COLS = 2, 256

# Byte offsets of the f16 scale fields inside one block of each quantized type,
# overwritten with sane finite values so the random payload decodes to numbers.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.Q2_K: [80, 82],
}


def random_blocks(ty):
    block_elems, block_bytes = GGML_QUANT_SIZES[ty]
    n_blocks = ROWS * COLS // block_elems
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in F16_FIELDS[ty]:
        vals = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(ROWS, -1)


w = GGUFWriter(OUT, arch="hearthtest")
w.add_uint8("test.u8", 200)
w.add_int8("test.i8", -100)
w.add_uint16("test.u16", 60000)
w.add_int16("test.i16", -30000)
w.add_uint32("test.u32", 4000000000)
w.add_int32("test.i32", -2000000000)
w.add_uint64("test.u64", 1 << 60)
w.add_int64("test.i64", -(1 << 60))
w.add_float32("test.f32", 1.5)
w.add_float64("test.f64", -2.25)
w.add_bool("test.bool", True)
w.add_string("test.str", "héllo wörld ✓")
w.add_array("test.arr_i32", [1, -2, 3])
w.add_array("test.arr_str", ["a", "", "ü"])
w.add_key_value("test.nested", [[1, 2], [3]], GGUFValueType.ARRAY)

for ty in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
    if ty == T.F32:
        raw = rng.normal(size=(ROWS, COLS)).astype(np.float32).view(np.uint8)
    elif ty == T.F16:
        raw = rng.normal(size=(ROWS, COLS)).astype(np.float16).view(np.uint8)
    elif ty == T.BF16:
        # Truncated f32 bit patterns: always finite bf16 values.
        f = rng.normal(size=(ROWS, COLS)).astype(np.float32)
        raw = (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    else:
        raw = random_blocks(ty)
    expected = dequantize(raw, ty).astype(np.float32).reshape(ROWS, COLS)
    assert np.all(np.isfinite(expected)), ty.name
    w.add_tensor(ty.name, raw, raw_dtype=ty)
    w.add_tensor(ty.name + ".expected", expected)

w.add_tensor("q2k", random_blocks(T.Q2_K), raw_dtype=T.Q2_K)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(OUT, os.path.getsize(OUT), "bytes")
