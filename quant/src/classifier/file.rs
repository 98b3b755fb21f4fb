//! A no_std, no-alloc reader of the Hearth model file's header and tensor table
//! (spec: `docs/model-format.md`), for reading a model in place: from a memory-mapped
//! file on the host, from flash on a microcontroller (`include_bytes!`, aligned).
//!
//! It checks what reading needs (magic, version, flags, sections and tensors inside
//! the file, tensor lengths equal to their format's size, alignment) and nothing that
//! needs an allocator; the host's full loader (`hearth_runtime::model`) checks more
//! (overlaps, unique names, the LLM config). CRCs are not verified here.
use crate::dispatch::PackedData;
use crate::packed::groups;
use crate::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, PackedMatrix, QK};
use core::fmt;

/// First eight bytes of a Hearth model file.
pub const MAGIC: [u8; 8] = *b"HEARTH\0\0";
/// Newest format version read.
pub const MAX_VERSION: u32 = 2;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 128;
/// Bytes of a tensor-table entry before its name.
const ENTRY_FIXED_LEN: usize = 48;
/// Longest tensor name.
const MAX_NAME_LEN: usize = 256;

/// Why a file cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileError {
    /// Not a Hearth model file.
    BadMagic,
    /// Shorter than its header or than a section it describes.
    Truncated,
    /// A format version this reader does not know.
    Version(u32),
    /// Unknown header flags.
    Flags(u32),
    /// A malformed tensor-table entry (its index).
    BadEntry(usize),
    /// No tensor of the requested name.
    MissingTensor,
    /// A tensor has another format or shape than required.
    WrongTensor,
    /// A tensor's bytes are not aligned for their type.
    Misaligned,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::BadMagic => f.write_str("not a Hearth model file (bad magic)"),
            FileError::Truncated => f.write_str("model file is truncated"),
            FileError::Version(v) => write!(f, "model file version {v} is not supported"),
            FileError::Flags(x) => write!(f, "model file has unknown flags {x:#x}"),
            FileError::BadEntry(i) => write!(f, "tensor table entry {i} is malformed"),
            FileError::MissingTensor => f.write_str("a required tensor is missing"),
            FileError::WrongTensor => f.write_str("a tensor has the wrong format or shape"),
            FileError::Misaligned => f.write_str("tensor data is misaligned"),
        }
    }
}

/// A tensor's storage format (the table's format code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Row-major f32 (code 0).
    F32,
    /// Row-major IEEE half (code 1).
    F16,
    /// [`BlockQ8x4`] packed rows (code 2).
    Q8x4,
    /// [`BlockQ4x4`] packed rows (code 3).
    Q4x4,
    /// [`BlockQ4Ax4`] packed rows (code 4).
    Q4Ax4,
}

impl Format {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Format::F32,
            1 => Format::F16,
            2 => Format::Q8x4,
            3 => Format::Q4x4,
            4 => Format::Q4Ax4,
            _ => return None,
        })
    }

    /// Bytes of a `rows × cols` tensor, `None` if not representable.
    fn byte_len(self, rows: usize, cols: usize) -> Option<usize> {
        let unit = match self {
            Format::F32 => return rows.checked_mul(cols)?.checked_mul(4),
            Format::F16 => return rows.checked_mul(cols)?.checked_mul(2),
            Format::Q8x4 => size_of::<BlockQ8x4>(),
            Format::Q4x4 => size_of::<BlockQ4x4>(),
            Format::Q4Ax4 => size_of::<BlockQ4Ax4>(),
        };
        if !cols.is_multiple_of(QK) {
            return None;
        }
        groups(rows).checked_mul(cols / QK)?.checked_mul(unit)
    }
}

/// One tensor, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Name bytes (UTF-8 in valid files).
    pub name: &'a [u8],
    /// Storage format.
    pub format: Format,
    /// Rows (1 for vectors).
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Absolute offset of the data in the file.
    pub offset: usize,
    /// The data.
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The data as f32 values (an F32 tensor, 4-byte aligned).
    pub fn f32s(&self) -> Result<&'a [f32], FileError> {
        if self.format != Format::F32 {
            return Err(FileError::WrongTensor);
        }
        bytemuck::try_cast_slice(self.bytes).map_err(|_| FileError::Misaligned)
    }

    /// The data as a packed matrix (a Q8x4, Q4x4 or Q4Ax4 tensor).
    pub fn packed(&self) -> Result<PackedMatrix<'a>, FileError> {
        let cast = |_| FileError::Misaligned;
        let data = match self.format {
            Format::Q8x4 => PackedData::Q8(bytemuck::try_cast_slice(self.bytes).map_err(cast)?),
            Format::Q4x4 => PackedData::Q4(bytemuck::try_cast_slice(self.bytes).map_err(cast)?),
            Format::Q4Ax4 => PackedData::Q4A(bytemuck::try_cast_slice(self.bytes).map_err(cast)?),
            Format::F32 | Format::F16 => return Err(FileError::WrongTensor),
        };
        PackedMatrix::new(self.rows, self.cols, data).map_err(|_| FileError::WrongTensor)
    }
}

/// Little-endian reads that fail instead of panicking.
fn u32_at(b: &[u8], at: usize) -> Result<u32, FileError> {
    let s = b.get(at..at + 4).ok_or(FileError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, FileError> {
    let s = b.get(at..at + 8).ok_or(FileError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// `bytes[offset..offset + len]` from a header section, checked.
fn section(bytes: &[u8], at: usize) -> Result<&[u8], FileError> {
    let (off, len) = (u64_at(bytes, at)?, u64_at(bytes, at + 8)?);
    let off = usize::try_from(off).map_err(|_| FileError::Truncated)?;
    let len = usize::try_from(len).map_err(|_| FileError::Truncated)?;
    let end = off.checked_add(len).ok_or(FileError::Truncated)?;
    if len > 0 && off < HEADER_LEN {
        return Err(FileError::Truncated);
    }
    bytes.get(off..end).ok_or(FileError::Truncated)
}

/// A Hearth model file read in place.
#[derive(Debug, Clone, Copy)]
pub struct ModelView<'a> {
    bytes: &'a [u8],
    /// Format version.
    pub version: u32,
    config: &'a [u8],
    tokenizer: &'a [u8],
    table: &'a [u8],
    data: &'a [u8],
    data_offset: usize,
    n_tensors: usize,
}

impl<'a> ModelView<'a> {
    /// Check the header and every tensor-table entry of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FileError> {
        if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(FileError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(FileError::Truncated);
        }
        let version = u32_at(bytes, 8)?;
        if version == 0 || version > MAX_VERSION {
            return Err(FileError::Version(version));
        }
        let flags = u32_at(bytes, 12)?;
        if flags != 0 {
            return Err(FileError::Flags(flags));
        }
        let n_tensors = usize::try_from(u64_at(bytes, 80)?).map_err(|_| FileError::Truncated)?;
        let me = ModelView {
            bytes,
            version,
            config: section(bytes, 16)?,
            tokenizer: section(bytes, 32)?,
            table: section(bytes, 48)?,
            data: section(bytes, 64)?,
            data_offset: u64_at(bytes, 64)? as usize,
            n_tensors,
        };
        // Walk the table once: every entry must parse and lie in the data section.
        let mut at = 0;
        for i in 0..n_tensors {
            at = me.entry(i, at)?.1;
        }
        if at != me.table.len() {
            return Err(FileError::BadEntry(n_tensors));
        }
        Ok(me)
    }

    /// The config section (JSON).
    pub fn config(&self) -> &'a [u8] {
        self.config
    }

    /// The tokenizer section (for a classifier: its class names, one per line).
    pub fn tokenizer(&self) -> &'a [u8] {
        self.tokenizer
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.n_tensors
    }

    /// Whether the file has no tensors.
    pub fn is_empty(&self) -> bool {
        self.n_tensors == 0
    }

    /// Entry `i` starting at table byte `at`; returns it and the next entry's offset.
    fn entry(&self, i: usize, at: usize) -> Result<(TensorView<'a>, usize), FileError> {
        let bad = FileError::BadEntry(i);
        let t = self.table;
        let name_len = u32_at(t, at).map_err(|_| bad)? as usize;
        let code = u32_at(t, at + 4).map_err(|_| bad)?;
        let reserved = u32_at(t, at + 12).map_err(|_| bad)?;
        let field = |k: usize| -> Result<usize, FileError> {
            let v = u64_at(t, at + 16 + 8 * k).map_err(|_| bad)?;
            usize::try_from(v).map_err(|_| bad)
        };
        let (rows, cols, offset, len) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let name_at = at + ENTRY_FIXED_LEN;
        let end = name_at.checked_add(name_len).ok_or(bad)?;
        let name = t.get(name_at..end).ok_or(bad)?;
        let format = Format::from_code(code).ok_or(bad)?;
        if name_len == 0 || name_len > MAX_NAME_LEN || reserved != 0 || rows == 0 || cols == 0 {
            return Err(bad);
        }
        if format.byte_len(rows, cols) != Some(len) || offset % 64 != 0 {
            return Err(bad);
        }
        let rel = offset.checked_sub(self.data_offset).ok_or(bad)?;
        let bytes = self
            .data
            .get(rel..rel.checked_add(len).ok_or(bad)?)
            .ok_or(bad)?;
        let view = TensorView {
            name,
            format,
            rows,
            cols,
            offset,
            bytes,
        };
        Ok((view, end))
    }

    /// The tensors in table order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'a>> + '_ {
        let mut at = 0;
        // Every entry parsed in `parse`, so this cannot fail.
        (0..self.n_tensors).filter_map(move |i| {
            let (t, next) = self.entry(i, at).ok()?;
            at = next;
            Some(t)
        })
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'a>, FileError> {
        self.tensors()
            .find(|t| t.name == name.as_bytes())
            .ok_or(FileError::MissingTensor)
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}
