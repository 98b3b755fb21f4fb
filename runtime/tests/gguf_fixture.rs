//! The GGUF reader and dequantizer against `tests/data/gguf/tiny.gguf`, a file written
//! by the reference Python `gguf` package with expected values from its dequantizer
//! (see `tests/data/gguf/make_fixtures.py`).
use std::path::PathBuf;

use hearth_runtime::gguf::{dequantize, GgmlType, GgufFile, MetaValue};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf/tiny.gguf")
}

fn fixture() -> GgufFile {
    GgufFile::open(&fixture_path()).expect("tiny.gguf opens")
}

const DEQUANT_TYPES: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

#[test]
fn header_and_every_metadata_value_type() {
    let g = fixture();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.data_offset() % 32, 0);
    assert_eq!(g.get_str("general.architecture").unwrap(), "hearthtest");
    assert_eq!(g.get("test.u8"), Some(&MetaValue::U8(200)));
    assert_eq!(g.get("test.i8"), Some(&MetaValue::I8(-100)));
    assert_eq!(g.get("test.u16"), Some(&MetaValue::U16(60000)));
    assert_eq!(g.get("test.i16"), Some(&MetaValue::I16(-30000)));
    assert_eq!(g.get("test.u32"), Some(&MetaValue::U32(4_000_000_000)));
    assert_eq!(g.get("test.i32"), Some(&MetaValue::I32(-2_000_000_000)));
    assert_eq!(g.get("test.u64"), Some(&MetaValue::U64(1 << 60)));
    assert_eq!(g.get("test.i64"), Some(&MetaValue::I64(-(1 << 60))));
    assert_eq!(g.get("test.f32"), Some(&MetaValue::F32(1.5)));
    assert_eq!(g.get("test.f64"), Some(&MetaValue::F64(-2.25)));
    assert_eq!(g.get("test.bool"), Some(&MetaValue::Bool(true)));
    assert_eq!(g.get_str("test.str").unwrap(), "héllo wörld ✓");
    assert_eq!(
        g.get("test.arr_i32"),
        Some(&MetaValue::Array(vec![
            MetaValue::I32(1),
            MetaValue::I32(-2),
            MetaValue::I32(3)
        ]))
    );
    assert_eq!(g.get_str_array("test.arr_str").unwrap(), vec!["a", "", "ü"]);
    assert_eq!(
        g.get("test.nested"),
        Some(&MetaValue::Array(vec![
            MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(2)]),
            MetaValue::Array(vec![MetaValue::I32(3)]),
        ]))
    );
    // 1 architecture key + 15 test keys.
    assert_eq!(g.metadata().len(), 16);
}

#[test]
fn typed_getters_convert_and_name_the_key_in_errors() {
    let g = fixture();
    assert_eq!(g.get_u32("test.u8").unwrap(), 200);
    assert_eq!(g.get_u64("test.u64").unwrap(), 1 << 60);
    assert_eq!(g.get_usize("test.u16").unwrap(), 60000);
    assert_eq!(g.get_f32("test.f64").unwrap(), -2.25);
    assert!(g.get_bool("test.bool").unwrap());
    let e = g.get_u32("test.i8").unwrap_err().to_string();
    assert_eq!(
        e,
        "gguf: metadata 'test.i8' is i8 I8(-100), expected an integer in u32 range"
    );
    let e = g.get_u32("test.u64").unwrap_err().to_string();
    assert!(e.contains("'test.u64'") && e.contains("u32 range"), "{e}");
    let e = g.get_str("test.f32").unwrap_err().to_string();
    assert_eq!(
        e,
        "gguf: metadata 'test.f32' is f32 F32(1.5), expected a string"
    );
    let e = g.get_f32("no.such.key").unwrap_err().to_string();
    assert_eq!(e, "gguf: metadata key 'no.such.key' is missing");
    let e = g.get_str_array("test.arr_i32").unwrap_err().to_string();
    assert_eq!(
        e,
        "gguf: metadata 'test.arr_i32'[0] is i32, expected a string"
    );
}

#[test]
fn tensor_infos_match_what_the_writer_wrote() {
    let g = fixture();
    assert_eq!(g.tensors().len(), 2 * DEQUANT_TYPES.len() + 1);
    for ty in DEQUANT_TYPES {
        let t = g.tensor(&format!("{ty:?}")).unwrap();
        assert_eq!(t.ty, ty);
        assert_eq!(t.dims, vec![256, 2]);
        assert_eq!((t.rows(), t.cols(), t.n_elements()), (2, 256, 512));
        let (be, bb) = ty.block_layout().unwrap();
        assert_eq!(t.n_bytes(), 512 / be * bb);
        assert_eq!(g.tensor_bytes(t).unwrap().len(), t.n_bytes());
        assert_eq!(t.offset % g.alignment(), 0);
    }
    let e = g.tensor("missing.weight").unwrap_err().to_string();
    assert_eq!(e, "gguf: tensor 'missing.weight' not found");
}

/// Our dequantizer agrees with the reference package's on random blocks of
/// every supported type. Both compute in f32 with the same operation order, so the
/// results are identical, not merely close.
#[test]
fn dequantize_matches_the_reference_implementation() {
    let g = fixture();
    for ty in DEQUANT_TYPES {
        let name = format!("{ty:?}");
        let t = g.tensor(&name).unwrap();
        let expected = g
            .tensor_f32(g.tensor(&format!("{name}.expected")).unwrap())
            .unwrap();
        let mut got = vec![f32::NAN; t.n_elements()];
        dequantize(ty, g.tensor_bytes(t).unwrap(), &mut got).unwrap();
        let mismatches: Vec<_> = got
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
            .take(5)
            .collect();
        assert!(
            mismatches.is_empty(),
            "{name}: first mismatches (index, (ours, reference)): {mismatches:?}"
        );
        // The fixture is not degenerate: values vary.
        let distinct: std::collections::BTreeSet<u32> = got.iter().map(|v| v.to_bits()).collect();
        assert!(
            distinct.len() > 16,
            "{name}: only {} distinct values",
            distinct.len()
        );
    }
}

#[test]
fn unsupported_types_parse_but_fail_on_use_naming_the_type() {
    let g = fixture();
    let t = g.tensor("q2k").unwrap();
    assert_eq!(t.ty, GgmlType::Q2_K);
    assert_eq!(g.tensor_bytes(t).unwrap().len(), 2 * 84);
    let e = g.tensor_f32(t).unwrap_err().to_string();
    assert!(
        e.starts_with("gguf: tensor 'q2k': gguf: cannot dequantize type Q2_K"),
        "{e}"
    );
}

#[test]
fn version_2_files_read_the_same() {
    let mut bytes = std::fs::read(fixture_path()).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let g = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(g.version(), 2);
    let v3 = fixture();
    assert_eq!(g.metadata(), v3.metadata());
    assert_eq!(g.tensors(), v3.tensors());
}
