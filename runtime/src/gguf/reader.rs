//! Parsing of the GGUF header, metadata and tensor infos.
//!
//! The input is untrusted. Every count or length read from the file is checked
//! against the bytes that remain *before* anything is allocated for it, so a
//! hostile header claiming a billion-entry array or a 2^60-byte string fails at
//! once with a clear error instead of exhausting memory. Nesting depth is capped so
//! arrays of arrays cannot overflow the stack.
use std::collections::{BTreeMap, HashMap};

use super::types::{GgmlType, GgufTensorInfo, MetaValue};
use crate::{Error, Result};

/// `GGUF` read as a little-endian u32.
const MAGIC: &[u8; 4] = b"GGUF";
/// The alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a ggml tensor may have.
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of arrays accepted. Real files use one level (arrays of strings
/// or numbers); a few levels leave room without risking the stack.
const MAX_ARRAY_DEPTH: usize = 8;

/// Everything the header describes, with the data section located.
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<GgufTensorInfo>,
    /// Tensor name → position in `tensors`.
    pub index: HashMap<String, usize>,
    pub alignment: u64,
    /// File offset of the (aligned) start of the tensor data section.
    pub data_start: usize,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Format(format!("gguf: {}", msg.into()))
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes; `what` names the field for the error message.
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(err(format!(
                "{} needs {n} bytes at offset {} but the file ends at {} (truncated?)",
                what(),
                self.pos,
                self.bytes.len()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        // The slice has exactly N bytes.
        Ok(s.try_into().expect("take returned N bytes"))
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items that each occupy at least `min_item_size` bytes in the file:
    /// rejected unless that many items could possibly fit in what remains.
    fn count(&mut self, min_item_size: usize, what: &dyn Fn() -> String) -> Result<usize> {
        let n = self.u64(what)?;
        let max = (self.remaining() / min_item_size.max(1)) as u64;
        if n > max {
            return Err(err(format!(
                "{} claims {n} entries, but only {} bytes remain (at most {max} entries fit)",
                what(),
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    /// A length-prefixed UTF-8 string; the raw bytes are returned for UTF-8 checking
    /// by the caller, which knows what to name in the error.
    fn raw_string(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(err(format!(
                "{} has length {len}, but only {} bytes remain",
                what(),
                self.remaining()
            )));
        }
        self.take(len as usize, what)
    }
}

/// Metadata value type ids.
mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// The fewest bytes one value of type `ty` can occupy in the file; `None` for
/// unknown types.
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        vt::U8 | vt::I8 | vt::BOOL => 1,
        vt::U16 | vt::I16 => 2,
        vt::U32 | vt::I32 | vt::F32 => 4,
        vt::U64 | vt::I64 | vt::F64 => 8,
        vt::STRING => 8,    // the length prefix
        vt::ARRAY => 4 + 8, // element type + count
        _ => return None,
    })
}

/// Reads one value of type `ty` for metadata key `key`.
fn read_value(c: &mut Cursor<'_>, ty: u32, key: &str, depth: usize) -> Result<MetaValue> {
    let what = || format!("metadata '{key}'");
    Ok(match ty {
        vt::U8 => MetaValue::U8(c.u8(&what)?),
        vt::I8 => MetaValue::I8(c.u8(&what)? as i8),
        vt::U16 => MetaValue::U16(c.u16(&what)?),
        vt::I16 => MetaValue::I16(c.u16(&what)? as i16),
        vt::U32 => MetaValue::U32(c.u32(&what)?),
        vt::I32 => MetaValue::I32(c.u32(&what)? as i32),
        vt::U64 => MetaValue::U64(c.u64(&what)?),
        vt::I64 => MetaValue::I64(c.u64(&what)? as i64),
        vt::F32 => MetaValue::F32(f32::from_bits(c.u32(&what)?)),
        vt::F64 => MetaValue::F64(f64::from_bits(c.u64(&what)?)),
        vt::BOOL => match c.u8(&what)? {
            0 => MetaValue::Bool(false),
            1 => MetaValue::Bool(true),
            b => return Err(err(format!("metadata '{key}': bool has invalid value {b}"))),
        },
        vt::STRING => {
            let raw = c.raw_string(&what)?;
            let s = std::str::from_utf8(raw)
                .map_err(|e| err(format!("metadata '{key}': string is not valid UTF-8 ({e})")))?;
            MetaValue::Str(s.to_owned())
        }
        vt::ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(err(format!(
                    "metadata '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH} levels"
                )));
            }
            let elem_ty = c.u32(&what)?;
            let min = min_value_size(elem_ty).ok_or_else(|| {
                err(format!(
                    "metadata '{key}': array of unknown value type {elem_ty}"
                ))
            })?;
            let n = c.count(min, &|| format!("metadata '{key}': array"))?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(c, elem_ty, key, depth + 1)?);
            }
            MetaValue::Array(items)
        }
        other => {
            return Err(err(format!(
                "metadata '{key}' has unknown value type {other}"
            )))
        }
    })
}

/// Parses the header of a GGUF file held in `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.array::<4>(&|| "magic".to_owned())?;
    if &magic != MAGIC {
        return Err(err(format!(
            "not a GGUF file (magic {:02x?}, expected \"GGUF\")",
            magic
        )));
    }
    let version = c.u32(&|| "version".to_owned())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(err(
                "version 1 files are not supported (32-bit counts; only GGUF v2 and v3 are read)",
            ))
        }
        v if v.swap_bytes() <= 3 => {
            return Err(err("big-endian GGUF files are not supported"));
        }
        v => {
            return Err(err(format!(
                "unsupported version {v} (only v2 and v3 are read)"
            )))
        }
    }

    // Minimum encoded sizes: a tensor info is name length + n_dims + type + offset;
    // a metadata entry is key length + value type + at least one value byte.
    let n_tensors = c.count(8 + 4 + 4 + 8, &|| "tensor count".to_owned())?;
    let n_kv = c.count(8 + 4 + 1, &|| "metadata count".to_owned())?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let raw = c.raw_string(&|| format!("metadata key #{i}"))?;
        let key = std::str::from_utf8(raw)
            .map_err(|e| err(format!("metadata key #{i} is not valid UTF-8 ({e})")))?
            .to_owned();
        let ty = c.u32(&|| format!("metadata '{key}' type"))?;
        let value = read_value(&mut c, ty, &key, 0)?;
        if metadata.contains_key(&key) {
            return Err(err(format!("duplicate metadata key '{key}'")));
        }
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(MetaValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(v) => {
            return Err(err(format!(
                "general.alignment must be a power-of-two u32, got {v:?}"
            )))
        }
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut index = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let raw = c.raw_string(&|| format!("tensor #{i} name"))?;
        let name = std::str::from_utf8(raw)
            .map_err(|e| err(format!("tensor #{i} name is not valid UTF-8 ({e})")))?
            .to_owned();
        let what = || format!("tensor '{name}' info");
        let n_dims = c.u32(&what)? as usize;
        if n_dims > MAX_DIMS {
            return Err(err(format!(
                "tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS} allowed)"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64(&what)?);
        }
        let ty = GgmlType::from_id(c.u32(&what)?);
        let offset = c.u64(&what)?;
        if index.insert(name.clone(), tensors.len()).is_some() {
            return Err(err(format!("duplicate tensor name '{name}'")));
        }
        tensors.push(GgufTensorInfo {
            name,
            dims,
            ty,
            offset,
        });
    }

    // The data section starts at the next multiple of the alignment. If the file
    // ends first there is no data; any tensor with bytes is caught below.
    let data_start = align_up(c.pos as u64, alignment)
        .filter(|&s| s <= bytes.len() as u64)
        .unwrap_or(bytes.len() as u64) as usize;
    let data_len = (bytes.len() - data_start) as u64;

    for t in &tensors {
        check_tensor(t, alignment, data_start as u64, data_len, bytes.len())?;
    }

    Ok(Parsed {
        version,
        metadata,
        tensors,
        index,
        alignment,
        data_start,
    })
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    Some(x.checked_add(a - 1)? & !(a - 1))
}

/// Validates one tensor's shape and data range.
fn check_tensor(
    t: &GgufTensorInfo,
    alignment: u64,
    data_start: u64,
    data_len: u64,
    file_len: usize,
) -> Result<()> {
    let name = &t.name;
    // The element count must fit in usize (and in i64, as ggml uses signed sizes).
    let mut n: u64 = 1;
    for &d in &t.dims {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64 && usize::try_from(n).is_ok())
            .ok_or_else(|| {
                err(format!(
                    "tensor '{name}' dimensions {:?} overflow the element count",
                    t.dims
                ))
            })?;
    }
    if !t.offset.is_multiple_of(alignment) {
        return Err(err(format!(
            "tensor '{name}' offset {} is not a multiple of the alignment {alignment}",
            t.offset
        )));
    }
    let Some((block_elems, block_bytes)) = t.ty.block_layout() else {
        // Size unknown: the range can only be checked for its start. Using the
        // tensor fails later with an error naming the type.
        if t.offset > data_len {
            return Err(err(format!(
                "tensor '{name}' data starts at {} past the end of the file (size {file_len})",
                // Widened: a hostile offset may not fit u64 once the data start is added.
                data_start as u128 + t.offset as u128
            )));
        }
        return Ok(());
    };
    let cols = t.dims.first().copied().unwrap_or(1);
    if !cols.is_multiple_of(block_elems as u64) {
        return Err(err(format!(
            "tensor '{name}' of type {} has row length {cols}, not a multiple of its block size {block_elems}",
            t.ty
        )));
    }
    let size = (n / block_elems as u64)
        .checked_mul(block_bytes as u64)
        .ok_or_else(|| err(format!("tensor '{name}' byte size overflows")))?;
    let start = data_start.checked_add(t.offset);
    let end = start.and_then(|s| s.checked_add(size));
    match (start, end) {
        (Some(_), Some(e)) if e <= file_len as u64 => Ok(()),
        _ => Err(err(format!(
            "tensor '{name}' data [{}..{}) lies past the end of the file (size {file_len})",
            data_start as u128 + t.offset as u128,
            data_start as u128 + t.offset as u128 + size as u128
        ))),
    }
}
