//! The on-disk layout of a Hearth model file (spec: `docs/model-format.md`).
//!
//! ```text
//! 0        header (HEADER_LEN bytes, little-endian)
//!          config JSON | tokenizer.json | tokenizer tables (v2) | tensor table
//!                                               (any order, in bounds, no overlap)
//! data_off tensor data (data_off page-aligned, every tensor 64-byte aligned)
//! ```
//! Only plain byte parsing lives here; the checks that need the whole file are in
//! the reader.
use crate::{Error, Result};
use hearth_quant::packed::groups;
use hearth_quant::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, QK};

/// First eight bytes of every Hearth model file.
pub const MAGIC: [u8; 8] = *b"HEARTH\0\0";
/// The format version this code writes and the newest it reads. Version 2 added the
/// tokenizer tables section; version 1 files still load (tokenized by the
/// `tokenizers` crate from their tokenizer.json).
pub const VERSION: u32 = 2;
/// Alignment of the tokenizer tables section (read in place as `u32` words).
pub const TABLES_ALIGN: u64 = 64;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 128;
/// Alignment of each tensor's data (a cache line, and enough for any SIMD load).
pub const TENSOR_ALIGN: u64 = 64;
/// Alignment of the data section (a page, so the OS can map it lazily).
pub const DATA_ALIGN: u64 = 4096;
/// Longest tensor name.
pub const MAX_NAME_LEN: usize = 256;
/// Most tensors in one file.
pub const MAX_TENSORS: usize = 1 << 16;
/// Fixed part of one tensor-table entry (the name follows it).
pub const ENTRY_FIXED_LEN: usize = 48;

/// Storage format of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorFormat {
    /// Little-endian f32, row-major.
    F32,
    /// Little-endian IEEE f16, row-major.
    F16,
    /// [`BlockQ8x4`] packed rows.
    Q8x4,
    /// [`BlockQ4x4`] packed rows.
    Q4x4,
    /// [`BlockQ4Ax4`] packed rows.
    Q4Ax4,
}

impl TensorFormat {
    /// The code stored in the tensor table.
    pub fn code(self) -> u32 {
        match self {
            TensorFormat::F32 => 0,
            TensorFormat::F16 => 1,
            TensorFormat::Q8x4 => 2,
            TensorFormat::Q4x4 => 3,
            TensorFormat::Q4Ax4 => 4,
        }
    }

    /// The format for a table code.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => TensorFormat::F32,
            1 => TensorFormat::F16,
            2 => TensorFormat::Q8x4,
            3 => TensorFormat::Q4x4,
            4 => TensorFormat::Q4Ax4,
            _ => return None,
        })
    }

    /// Short display name.
    pub fn name(self) -> &'static str {
        match self {
            TensorFormat::F32 => "F32",
            TensorFormat::F16 => "F16",
            TensorFormat::Q8x4 => "Q8x4",
            TensorFormat::Q4x4 => "Q4x4",
            TensorFormat::Q4Ax4 => "Q4Ax4",
        }
    }

    /// One of the row-interleaved block formats.
    pub fn is_packed(self) -> bool {
        matches!(
            self,
            TensorFormat::Q8x4 | TensorFormat::Q4x4 | TensorFormat::Q4Ax4
        )
    }

    /// Size of one packed block (four rows × 32 columns), or of one element.
    fn unit_bytes(self) -> usize {
        match self {
            TensorFormat::F32 => 4,
            TensorFormat::F16 => 2,
            TensorFormat::Q8x4 => size_of::<BlockQ8x4>(),
            TensorFormat::Q4x4 => size_of::<BlockQ4x4>(),
            TensorFormat::Q4Ax4 => size_of::<BlockQ4Ax4>(),
        }
    }

    /// Bytes a `rows × cols` tensor takes in this format; `None` on overflow or when
    /// `cols` is not a multiple of 32 for a packed format.
    pub fn byte_len(self, rows: usize, cols: usize) -> Option<usize> {
        if self.is_packed() {
            if !cols.is_multiple_of(QK) {
                return None;
            }
            groups(rows)
                .checked_mul(cols / QK)?
                .checked_mul(self.unit_bytes())
        } else {
            rows.checked_mul(cols)?.checked_mul(self.unit_bytes())
        }
    }
}

impl std::fmt::Display for TensorFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A byte range of the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// Absolute file offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Section {
    /// End offset, `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }
}

/// The fixed header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// Reserved flags (0).
    pub flags: u32,
    /// `ModelConfig` as JSON.
    pub config: Section,
    /// `tokenizer.json` text.
    pub tokenizer: Section,
    /// Binary tensor table.
    pub table: Section,
    /// The fast tokenizer's tables (version 2; empty when the tokenizer has none).
    pub tokenizer_tables: Section,
    /// Tensor data.
    pub data: Section,
    /// Number of entries in the table.
    pub n_tensors: u64,
    /// CRC-32 of the config, tokenizer.json, tokenizer tables (version 2) and table
    /// bytes, in that order.
    pub meta_crc32: u32,
}

/// Reads little-endian integers from a byte slice, failing instead of panicking.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            pos: 0,
            what,
        }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                Error::Format(format!(
                    "{} is truncated (needs {n} bytes at offset {})",
                    self.what, self.pos
                ))
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

impl Header {
    /// Serialize to exactly [`HEADER_LEN`] bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = Vec::with_capacity(HEADER_LEN);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        for s in [self.config, self.tokenizer, self.table, self.data] {
            b.extend_from_slice(&s.offset.to_le_bytes());
            b.extend_from_slice(&s.len.to_le_bytes());
        }
        b.extend_from_slice(&self.n_tensors.to_le_bytes());
        b.extend_from_slice(&self.meta_crc32.to_le_bytes());
        if self.version >= 2 {
            b.extend_from_slice(&self.tokenizer_tables.offset.to_le_bytes());
            b.extend_from_slice(&self.tokenizer_tables.len.to_le_bytes());
        }
        b.resize(HEADER_LEN, 0);
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(&b);
        out
    }

    /// Parse and check magic and version. Section bounds are checked by the reader.
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        let n = bytes.len().min(MAGIC.len());
        if bytes[..n] != MAGIC[..n] {
            return Err(Error::Format(
                "not a Hearth model file (bad magic; convert GGUF/safetensors models with `hearth convert`)".into(),
            ));
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Format(format!(
                "model file is truncated: {} bytes, the header alone needs {HEADER_LEN}",
                bytes.len()
            )));
        }
        let mut c = Cursor::new(bytes, "model file header");
        c.take(MAGIC.len())?;
        let version = c.u32()?;
        if version > VERSION {
            return Err(Error::Format(format!(
                "model file version {version} is newer than this hearth (max {VERSION}); upgrade hearth"
            )));
        }
        if version == 0 {
            return Err(Error::Format("model file version 0 is invalid".into()));
        }
        let flags = c.u32()?;
        let mut sec = || -> Result<Section> {
            Ok(Section {
                offset: c.u64()?,
                len: c.u64()?,
            })
        };
        let (config, tokenizer, table, data) = (sec()?, sec()?, sec()?, sec()?);
        let n_tensors = c.u64()?;
        let meta_crc32 = c.u32()?;
        // Version 1 headers end here (the rest is zero padding).
        let tokenizer_tables = if version >= 2 {
            Section {
                offset: c.u64()?,
                len: c.u64()?,
            }
        } else {
            Section::default()
        };
        if flags != 0 {
            return Err(Error::Format(format!(
                "model file header has unknown flags {flags:#x}"
            )));
        }
        Ok(Header {
            version,
            flags,
            config,
            tokenizer,
            table,
            data,
            n_tensors,
            meta_crc32,
            tokenizer_tables,
        })
    }

    /// The metadata sections covered by `meta_crc32`, in checksum order.
    pub fn meta_sections(&self) -> Vec<Section> {
        if self.version >= 2 {
            vec![
                self.config,
                self.tokenizer,
                self.tokenizer_tables,
                self.table,
            ]
        } else {
            vec![self.config, self.tokenizer, self.table]
        }
    }
}

/// One tensor-table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// Tensor name (UTF-8, at most [`MAX_NAME_LEN`] bytes).
    pub name: String,
    /// Storage format.
    pub format: TensorFormat,
    /// Rows (1 for vectors).
    pub rows: u64,
    /// Columns.
    pub cols: u64,
    /// Absolute file offset of the data.
    pub offset: u64,
    /// Data length in bytes.
    pub len: u64,
    /// CRC-32 of the data.
    pub crc32: u32,
}

impl TableEntry {
    /// Append this entry's bytes.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.format.code().to_le_bytes());
        out.extend_from_slice(&self.crc32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for v in [self.rows, self.cols, self.offset, self.len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(self.name.as_bytes());
    }

    /// Parse `n` entries; fails on any malformed byte (without allocating more than
    /// the table's own size).
    pub fn parse_table(bytes: &[u8], n: u64) -> Result<Vec<TableEntry>> {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_TENSORS)
            .ok_or_else(|| {
                Error::Format(format!(
                    "tensor table claims {n} tensors (max {MAX_TENSORS})"
                ))
            })?;
        // Every entry takes at least ENTRY_FIXED_LEN bytes: bounds the allocation.
        if n > bytes.len() / ENTRY_FIXED_LEN {
            return Err(Error::Format(format!(
                "tensor table of {} bytes cannot hold {n} tensors",
                bytes.len()
            )));
        }
        let mut c = Cursor::new(bytes, "tensor table");
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let name_len = c.u32()? as usize;
            let code = c.u32()?;
            let crc32 = c.u32()?;
            let reserved = c.u32()?;
            let (rows, cols, offset, len) = (c.u64()?, c.u64()?, c.u64()?, c.u64()?);
            if name_len == 0 || name_len > MAX_NAME_LEN {
                return Err(Error::Format(format!(
                    "tensor table entry {i}: name length {name_len} out of range (1..={MAX_NAME_LEN})"
                )));
            }
            let name = std::str::from_utf8(c.take(name_len)?)
                .map_err(|_| Error::Format(format!("tensor table entry {i}: name is not UTF-8")))?
                .to_owned();
            let format = TensorFormat::from_code(code).ok_or_else(|| {
                Error::Format(format!("tensor `{name}`: unknown format code {code}"))
            })?;
            if reserved != 0 {
                return Err(Error::Format(format!(
                    "tensor `{name}`: reserved field is {reserved}, not 0"
                )));
            }
            out.push(TableEntry {
                name,
                format,
                rows,
                cols,
                offset,
                len,
                crc32,
            });
        }
        if c.pos() != bytes.len() {
            return Err(Error::Format(format!(
                "tensor table has {} trailing bytes",
                bytes.len() - c.pos()
            )));
        }
        Ok(out)
    }
}

/// Round `v` up to a multiple of `align` (a power of two); `None` on overflow.
pub fn align_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            version: VERSION,
            flags: 0,
            config: Section {
                offset: 128,
                len: 10,
            },
            tokenizer: Section {
                offset: 138,
                len: 20,
            },
            table: Section {
                offset: 158,
                len: 30,
            },
            data: Section {
                offset: 4096,
                len: 64,
            },
            n_tensors: 1,
            meta_crc32: 0xDEAD_BEEF,
            tokenizer_tables: Section {
                offset: 192,
                len: 100,
            },
        };
        assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
        // A version-1 header has no tables section, whatever its padding holds.
        let v1 = Header {
            version: 1,
            tokenizer_tables: Section::default(),
            ..h
        };
        assert_eq!(Header::parse(&v1.to_bytes()).unwrap(), v1);
    }

    #[test]
    fn entry_round_trips() {
        let e = TableEntry {
            name: "blk.0.attn_q.weight".into(),
            format: TensorFormat::Q4Ax4,
            rows: 8,
            cols: 64,
            offset: 4096,
            len: 2 * 2 * 80,
            crc32: 7,
        };
        let mut b = Vec::new();
        e.write_to(&mut b);
        e.write_to(&mut b);
        assert_eq!(TableEntry::parse_table(&b, 2).unwrap(), vec![e.clone(), e]);
    }

    #[test]
    fn byte_lengths() {
        assert_eq!(TensorFormat::Q8x4.byte_len(5, 64), Some(2 * 2 * 136));
        assert_eq!(TensorFormat::Q4x4.byte_len(4, 32), Some(72));
        assert_eq!(TensorFormat::F32.byte_len(1, 10), Some(40));
        assert_eq!(TensorFormat::Q4x4.byte_len(4, 33), None);
        assert_eq!(TensorFormat::F32.byte_len(usize::MAX, 2), None);
    }
}
