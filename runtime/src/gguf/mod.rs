//! GGUF importer: a reader of our own for GGUF v2/v3 files (llama.cpp's model
//! format), f32 dequantization of its common tensor types, and a `tokenizers`
//! tokenizer.json rebuilt from the file's tokenizer metadata.
//!
//! Files are memory-mapped and treated as hostile: every count, length and tensor
//! range is checked before use (see `reader.rs`), so a malformed or malicious file
//! gets a clear [`Error::Format`], never a panic or an absurd allocation.
mod dequant;
mod reader;
mod tokenizer;
mod types;
pub mod write;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

pub use dequant::dequantize;
pub use reader::{DEFAULT_ALIGNMENT, MAX_DIMS};
pub use tokenizer::{tokenizer_json, LLAMA3_REGEX, QWEN2_REGEX};
pub use types::{GgmlType, GgufTensorInfo, MetaValue};

use crate::{Error, Result};

/// The bytes behind a [`GgufFile`].
enum Storage {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// An open, validated GGUF file.
///
/// Opening parses and checks the whole header; tensor data is not touched until
/// asked for, so opening a large mapped file is cheap.
pub struct GgufFile {
    storage: Storage,
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
    alignment: u64,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("size", &self.storage.bytes().len())
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn err(msg: impl Into<String>) -> Error {
    Error::Format(format!("gguf: {}", msg.into()))
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // SAFETY: the mapping is read-only and lives inside `GgufFile`, which hands
        // out slices borrowed from it. As with every mmap-based loader, the file must
        // not be truncated or rewritten while open; model files are written to a
        // temporary name and renamed into place, so a live file is never modified.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
        Self::from_storage(Storage::Mmap(map)).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{m} (in {})", path.display())),
            other => other,
        })
    }

    /// Parses a GGUF file held in memory (tests, fuzzing, small files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::from_storage(Storage::Owned(bytes))
    }

    fn from_storage(storage: Storage) -> Result<GgufFile> {
        let p = reader::parse(storage.bytes())?;
        Ok(GgufFile {
            storage,
            version: p.version,
            metadata: p.metadata,
            tensors: p.tensors,
            index: p.index,
            alignment: p.alignment,
            data_start: p.data_start,
        })
    }

    /// The GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset where the tensor data section starts.
    pub fn data_offset(&self) -> usize {
        self.data_start
    }

    /// All metadata, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.get(key)
            .ok_or_else(|| err(format!("metadata key '{key}' is missing")))
    }

    fn typed<'s, T>(
        &'s self,
        key: &str,
        expected: &str,
        f: impl FnOnce(&'s MetaValue) -> Option<T>,
    ) -> Result<T> {
        let v = self.require(key)?;
        f(v).ok_or_else(|| {
            err(format!(
                "metadata '{key}' is {} {}, expected {expected}",
                v.type_name(),
                short(v)
            ))
        })
    }

    /// A string value; error naming the key if missing or not a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.typed(key, "a string", MetaValue::as_str)
    }

    /// An integer value that fits in `u32` (any integer type is accepted).
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.typed(key, "an integer in u32 range", MetaValue::as_u32)
    }

    /// A non-negative integer value (any integer type is accepted).
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.typed(key, "a non-negative integer", MetaValue::as_u64)
    }

    /// A non-negative integer value as `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.get_u64(key)?;
        usize::try_from(v).map_err(|_| err(format!("metadata '{key}' = {v} is too large")))
    }

    /// A float value (f32 or f64).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.typed(key, "a float", MetaValue::as_f32)
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.typed(key, "a bool", MetaValue::as_bool)
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<&[MetaValue]> {
        self.typed(key, "an array", MetaValue::as_array)
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().ok_or_else(|| {
                    err(format!(
                        "metadata '{key}'[{i}] is {}, expected a string",
                        v.type_name()
                    ))
                })
            })
            .collect()
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of the tensor called `name`; error naming it if absent.
    pub fn tensor(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| err(format!("tensor '{name}' not found")))
    }

    /// The raw bytes of a tensor's data.
    ///
    /// Errors if the type's size is unknown or (for infos not from this file) the
    /// range lies outside the data section.
    pub fn tensor_bytes(&self, t: &GgufTensorInfo) -> Result<&[u8]> {
        let name = &t.name;
        if t.ty.block_layout().is_none() {
            return Err(err(format!(
                "tensor '{name}' has type {}, whose size hearth does not know",
                t.ty
            )));
        }
        let bytes = self.storage.bytes();
        let start = usize::try_from(t.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start));
        let end = start.and_then(|s| s.checked_add(t.n_bytes()));
        match (start, end) {
            (Some(s), Some(e)) if e <= bytes.len() => Ok(&bytes[s..e]),
            _ => Err(err(format!(
                "tensor '{name}' data at offset {} (+{} bytes) lies past the end of the file (size {})",
                t.offset,
                t.n_bytes(),
                bytes.len()
            ))),
        }
    }

    /// Dequantizes a whole tensor to f32.
    pub fn tensor_f32(&self, t: &GgufTensorInfo) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(t)?;
        let mut out = vec![0f32; t.n_elements()];
        dequantize(t.ty, bytes, &mut out).map_err(|e| err(format!("tensor '{}': {e}", t.name)))?;
        Ok(out)
    }
}

/// A short rendering of a value for error messages (arrays and long strings are
/// summarized).
fn short(v: &MetaValue) -> String {
    match v {
        MetaValue::Array(a) => format!("of {} elements", a.len()),
        MetaValue::Str(s) if s.chars().count() > 40 => {
            format!("{:?}…", s.chars().take(40).collect::<String>())
        }
        other => format!("{other:?}"),
    }
}
