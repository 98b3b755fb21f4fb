//! Hostile and malformed GGUF input: each case fails fast with a specific error.
use hearth_runtime::gguf::write::GgufBuilder;
use hearth_runtime::gguf::{dequantize, GgmlType, GgufFile, MetaValue};
use hearth_runtime::Error;

/// Raw GGUF pieces, for files the builder cannot (or should not) express.
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&n_tensors.to_le_bytes());
        v.extend_from_slice(&n_kv.to_le_bytes());
        Raw(v)
    }
    fn u32(mut self, x: u32) -> Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &[u8]) -> Raw {
        self.u64(s.len() as u64).bytes(s)
    }
    fn padding(mut self, n: usize) -> Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

fn parse_err(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes) {
        Ok(g) => panic!("expected an error, parsed {g:?}"),
        Err(Error::Format(m)) => m,
        Err(other) => panic!("expected Error::Format, got {other:?}"),
    }
}

fn assert_err(bytes: Vec<u8>, expected: &str) {
    let m = parse_err(bytes);
    assert!(
        m.contains(expected),
        "error {m:?} does not contain {expected:?}"
    );
}

#[test]
fn rejects_wrong_magic_and_versions() {
    assert_err(b"GGML\x03\0\0\0".to_vec(), "gguf: not a GGUF file");
    assert_err(
        Raw::header(1, 0, 0).0,
        "gguf: version 1 files are not supported",
    );
    assert_err(Raw::header(4, 0, 0).0, "gguf: unsupported version 4");
    assert_err(
        Raw::header(3u32.swap_bytes(), 0, 0).0,
        "gguf: big-endian GGUF files are not supported",
    );
    assert_err(
        b"GG".to_vec(),
        "gguf: magic needs 4 bytes at offset 0 but the file ends at 2",
    );
    assert_err(Vec::new(), "gguf: magic needs 4 bytes");
}

#[test]
fn empty_v2_and_v3_files_are_valid() {
    for v in [2, 3] {
        let g = GgufFile::from_bytes(Raw::header(v, 0, 0).0).unwrap();
        assert_eq!(g.version(), v);
        assert!(g.tensors().is_empty() && g.metadata().is_empty());
    }
}

#[test]
fn truncated_header_names_the_field() {
    let mut bytes = Raw::header(3, 0, 1)
        .str(b"general.name")
        .u32(8)
        .str(b"smol")
        .0;
    bytes.truncate(bytes.len() - 2);
    assert_err(
        bytes,
        "gguf: metadata 'general.name' has length 4, but only 2 bytes remain",
    );
    // Header (24 bytes) + key (8 + 20) + half of the value type.
    let bytes = Raw::header(3, 0, 1)
        .str(b"general.architecture")
        .bytes(&[8, 0])
        .0;
    assert_err(
        bytes,
        "gguf: metadata 'general.architecture' type needs 4 bytes at offset 52 but the file ends at 54",
    );
}

#[test]
fn huge_counts_fail_before_allocating() {
    assert_err(
        Raw::header(3, u64::MAX, 0).0,
        &format!(
            "gguf: tensor count claims {} entries, but only 8 bytes remain",
            u64::MAX
        ),
    );
    assert_err(
        Raw::header(3, 0, 1 << 40).0,
        "gguf: metadata count claims 1099511627776 entries",
    );
    // A billion-entry array of u32 with almost no bytes behind it.
    let bytes = Raw::header(3, 0, 1)
        .str(b"big")
        .u32(9)
        .u32(4)
        .u64(1_000_000_000)
        .padding(64)
        .0;
    assert_err(
        bytes,
        "gguf: metadata 'big': array claims 1000000000 entries, but only 64 bytes remain (at most 16 entries fit)",
    );
    // Strings take at least 8 bytes each (their length prefix).
    let bytes = Raw::header(3, 0, 1)
        .str(b"toks")
        .u32(9)
        .u32(8)
        .u64(9)
        .padding(64)
        .0;
    assert_err(
        bytes,
        "array claims 9 entries, but only 64 bytes remain (at most 8 entries fit)",
    );
}

#[test]
fn huge_string_lengths_fail_before_allocating() {
    let bytes = Raw::header(3, 0, 1)
        .str(b"general.name")
        .u32(8)
        .u64(1 << 60)
        .padding(16)
        .0;
    assert_err(
        bytes,
        "gguf: metadata 'general.name' has length 1152921504606846976, but only 16 bytes remain",
    );
    let bytes = Raw::header(3, 0, 1).u64(u64::MAX).padding(16).0;
    assert_err(
        bytes,
        &format!(
            "gguf: metadata key #0 has length {}, but only 16 bytes remain",
            u64::MAX
        ),
    );
    let bytes = Raw::header(3, 1, 0).u64(1 << 62).padding(32).0;
    assert_err(bytes, "gguf: tensor #0 name has length 4611686018427387904");
}

#[test]
fn invalid_utf8_names_the_key_or_tensor() {
    let bytes = Raw::header(3, 0, 1).str(b"bad\xff").u32(0).bytes(&[1]).0;
    assert_err(bytes, "gguf: metadata key #0 is not valid UTF-8");
    let bytes = Raw::header(3, 0, 1)
        .str(b"general.name")
        .u32(8)
        .str(b"\xc3\x28")
        .0;
    assert_err(
        bytes,
        "gguf: metadata 'general.name': string is not valid UTF-8",
    );
    let bytes = Raw::header(3, 0, 1)
        .str(b"toks")
        .u32(9)
        .u32(8)
        .u64(2)
        .str(b"ok")
        .str(b"\xe2\x82")
        .0;
    assert_err(bytes, "gguf: metadata 'toks': string is not valid UTF-8");
    let bytes = Raw::header(3, 1, 0)
        .str(b"\x80x")
        .u32(1)
        .u64(1)
        .u32(0)
        .u64(0)
        .0;
    assert_err(bytes, "gguf: tensor #0 name is not valid UTF-8");
}

#[test]
fn bad_metadata_values() {
    let bytes = Raw::header(3, 0, 1).str(b"k").u32(99).padding(8).0;
    assert_err(bytes, "gguf: metadata 'k' has unknown value type 99");
    let bytes = Raw::header(3, 0, 1)
        .str(b"k")
        .u32(9)
        .u32(42)
        .u64(1)
        .padding(8)
        .0;
    assert_err(bytes, "gguf: metadata 'k': array of unknown value type 42");
    let bytes = Raw::header(3, 0, 1).str(b"flag").u32(7).bytes(&[2]).0;
    assert_err(bytes, "gguf: metadata 'flag': bool has invalid value 2");
    let b = GgufBuilder::new()
        .meta("a", MetaValue::U32(1))
        .meta("a", MetaValue::U32(2))
        .to_bytes();
    assert_err(b, "gguf: duplicate metadata key 'a'");
    for bad in [MetaValue::U32(3), MetaValue::U32(0), MetaValue::U64(32)] {
        let b = GgufBuilder::new().meta("general.alignment", bad).to_bytes();
        assert_err(b, "gguf: general.alignment must be a power-of-two u32");
    }
}

#[test]
fn deeply_nested_arrays_are_rejected_without_recursing_forever() {
    // 100 000 levels of one-element arrays would overflow the stack if followed.
    let mut raw = Raw::header(3, 0, 1).str(b"deep").u32(9);
    for _ in 0..100_000 {
        raw = raw.u32(9).u64(1);
    }
    assert_err(
        raw.u32(0).u64(1).bytes(&[7]).0,
        "gguf: metadata 'deep': arrays nested deeper than 8 levels",
    );
}

fn one_tensor(dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Vec<u8> {
    GgufBuilder::new()
        .tensor("blk.0.attn_q.weight", dims, ty, data)
        .to_bytes()
}

#[test]
fn tensor_shape_errors() {
    let b = Raw::header(3, 1, 0)
        .str(b"t")
        .u32(5)
        .u64(1)
        .u64(1)
        .u64(1)
        .u64(1)
        .u64(1)
        .u32(0)
        .u64(0)
        .0;
    assert_err(b, "gguf: tensor 't' has 5 dimensions (at most 4 allowed)");
    let b = one_tensor(&[1 << 32, 1 << 32], GgmlType::F32, vec![]);
    assert_err(
        b,
        "gguf: tensor 'blk.0.attn_q.weight' dimensions [4294967296, 4294967296] overflow the element count",
    );
    let b = one_tensor(&[u64::MAX], GgmlType::I8, vec![]);
    assert_err(b, "overflow the element count");
    let b = one_tensor(&[48, 2], GgmlType::Q4_0, vec![0; 54]);
    assert_err(
        b,
        "gguf: tensor 'blk.0.attn_q.weight' of type Q4_0 has row length 48, not a multiple of its block size 32",
    );
    // 2^59 Q8_0 blocks: the element count fits, the byte count does not.
    let b = one_tensor(&[1 << 62, 4], GgmlType::Q8_0, vec![]);
    assert_err(b, "overflow");
}

#[test]
fn tensor_data_must_lie_inside_the_file() {
    let b = one_tensor(&[32, 4], GgmlType::F32, vec![0; 100]);
    let len = b.len();
    let data_start = len - 100;
    let m = parse_err(b);
    assert_eq!(
        m,
        format!(
            "gguf: tensor 'blk.0.attn_q.weight' data [{data_start}..{}) lies past the end of the file (size {len})",
            data_start + 512
        )
    );
    // An offset far past the end, and one whose end overflows u64. (Header 24 bytes,
    // tensor info 33: the data section starts at 64; 8 bytes of padding make the file 65.)
    let b = Raw::header(3, 1, 0)
        .str(b"w")
        .u32(1)
        .u64(8)
        .u32(0)
        .u64(1 << 40)
        .padding(8)
        .0;
    assert_err(
        b,
        "gguf: tensor 'w' data [1099511627840..1099511627872) lies past the end of the file (size 65)",
    );
    let b = Raw::header(3, 1, 0)
        .str(b"w")
        .u32(1)
        .u64(8)
        .u32(0)
        .u64(u64::MAX - 31)
        .padding(8)
        .0;
    assert_err(b, "gguf: tensor 'w' data [");
    // Offsets must respect the alignment.
    let b = Raw::header(3, 1, 0)
        .str(b"w")
        .u32(1)
        .u64(1)
        .u32(0)
        .u64(4)
        .padding(64)
        .0;
    assert_err(
        b,
        "gguf: tensor 'w' offset 4 is not a multiple of the alignment 32",
    );
}

#[test]
fn duplicate_tensor_names_are_rejected() {
    let b = GgufBuilder::new()
        .tensor_f32("a", &[1], &[1.0])
        .tensor_f32("a", &[1], &[2.0])
        .to_bytes();
    assert_err(b, "gguf: duplicate tensor name 'a'");
}

#[test]
fn unknown_tensor_types_parse_but_fail_on_use() {
    let b = one_tensor(&[4], GgmlType::Unknown(1234), vec![0; 16]);
    let g = GgufFile::from_bytes(b).unwrap();
    let t = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(t.ty, GgmlType::Unknown(1234));
    assert_eq!(t.ty.id(), 1234);
    let e = g.tensor_bytes(t).unwrap_err().to_string();
    assert_eq!(
        e,
        "gguf: tensor 'blk.0.attn_q.weight' has type unknown ggml type id 1234, whose size hearth does not know"
    );
    let e = dequantize(t.ty, &[0; 16], &mut [0.0; 4])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("gguf: cannot dequantize type unknown ggml type id 1234"),
        "{e}"
    );
    // Even an unknown type's data must start inside the file.
    let b = Raw::header(3, 1, 0)
        .str(b"w")
        .u32(1)
        .u64(8)
        .u32(1234)
        .u64(1 << 20)
        .padding(8)
        .0;
    assert_err(
        b,
        "gguf: tensor 'w' data starts at 1048640 past the end of the file (size 65)",
    );
    // An offset so large that adding the data start overflows u64 (found by the fuzz test):
    // still a clear error, not an arithmetic overflow.
    let huge = u64::MAX - 31; // aligned to 32
    let b = Raw::header(3, 1, 0)
        .str(b"w")
        .u32(1)
        .u64(8)
        .u32(1234)
        .u64(huge)
        .padding(8)
        .0;
    assert_err(
        b,
        &format!(
            "gguf: tensor 'w' data starts at {} past the end of the file (size 65)",
            huge as u128 + 64
        ),
    );
}

#[test]
fn tensor_bytes_checks_hand_made_infos() {
    let g = GgufFile::from_bytes(
        GgufBuilder::new()
            .tensor_f32("w", &[2], &[1.0, 2.0])
            .to_bytes(),
    )
    .unwrap();
    let mut t = g.tensor("w").unwrap().clone();
    assert_eq!(g.tensor_f32(&t).unwrap(), vec![1.0, 2.0]);
    t.offset = u64::MAX;
    let e = g.tensor_bytes(&t).unwrap_err().to_string();
    assert!(
        e.contains("tensor 'w' data at offset 18446744073709551615")
            && e.contains("lies past the end"),
        "{e}"
    );
}

#[test]
fn open_reports_missing_files_and_names_the_path_on_format_errors() {
    let e = GgufFile::open(std::path::Path::new("/nonexistent/x.gguf")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("opening /nonexistent/x.gguf"),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("hearth-gguf-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v1.gguf");
    std::fs::write(&path, Raw::header(1, 0, 0).0).unwrap();
    let e = GgufFile::open(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        e.starts_with("gguf: version 1") && e.ends_with(&format!("(in {})", path.display())),
        "{e}"
    );
}
