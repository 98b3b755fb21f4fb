//! Reader for CTranslate2's `model.bin` (binary version 6), the format faster-whisper ships.
//!
//! Layout (CTranslate2 `python/ctranslate2/specs/model_spec.py`, `_serialize`), little endian:
//! ```text
//! u32 binary_version (6)
//! str spec_name            str = u16 length (incl. trailing NUL) + bytes + NUL
//! u32 spec_revision
//! u32 n_variables
//!   n_variables × { str name; u8 rank; rank × u32 dim; u8 dtype; u32 n_bytes; n_bytes data }
//! u32 n_aliases
//!   n_aliases × { str alias; str variable_name }
//! ```
//! Every count and size is checked against the bytes actually present, so a truncated or
//! hostile file gives an [`Error::Format`] naming what is wrong, never a panic or a huge
//! allocation.
use std::ops::Range;
use std::path::Path;

use half::{bf16, f16};

use crate::{Error, Result};

/// The only binary version we read (CTranslate2 ≥ 3.x writes 6).
pub const SUPPORTED_VERSION: u32 = 6;

/// Element type of a variable (CTranslate2's `DataType` enum order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ct2DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl Ct2DType {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One named variable: its shape (row-major, outermost first) and where its data lies.
#[derive(Clone, Debug)]
pub struct Ct2Variable {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Ct2DType,
    data: Range<usize>,
}

impl Ct2Variable {
    /// Number of elements (1 for a scalar).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed `model.bin`. Owns the file's bytes; variables point into them.
pub struct Ct2Model {
    bytes: Vec<u8>,
    pub spec: String,
    pub revision: u32,
    variables: Vec<Ct2Variable>,
    aliases: Vec<(String, String)>,
}

impl std::fmt::Debug for Ct2Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ct2Model")
            .field("spec", &self.spec)
            .field("revision", &self.revision)
            .field("variables", &self.variables.len())
            .field("aliases", &self.aliases)
            .finish()
    }
}

/// A bounds-checked little-endian cursor.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            Error::Format(format!(
                "CTranslate2 model truncated: {what} needs {n} bytes at offset {}, file has {}",
                self.pos,
                self.bytes.len()
            ))
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u16(what)? as usize;
        let raw = self.take(n, what)?;
        // The stored length counts a trailing NUL.
        let raw = raw.strip_suffix(&[0]).ok_or_else(|| {
            Error::Format(format!("CTranslate2 model: {what} is not NUL-terminated"))
        })?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| Error::Format(format!("CTranslate2 model: {what} is not UTF-8")))
    }
}

impl Ct2Model {
    /// Reads and parses a `model.bin`.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::from_bytes(bytes).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
    }

    /// Parses a `model.bin` held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let mut c = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        let version = c.u32("binary version")?;
        if version != SUPPORTED_VERSION {
            return Err(Error::Format(format!(
                "unsupported CTranslate2 binary version {version} (expected {SUPPORTED_VERSION})"
            )));
        }
        let spec = c.string("spec name")?;
        let revision = c.u32("spec revision")?;
        let n_vars = c.u32("variable count")? as usize;
        // Each variable takes at least 9 bytes (empty name, rank 0, dtype, size): a count the
        // file cannot hold is rejected before anything is allocated for it.
        if n_vars > bytes.len() / 9 {
            return Err(Error::Format(format!(
                "CTranslate2 model claims {n_vars} variables, more than its {} bytes can hold",
                bytes.len()
            )));
        }
        let mut variables = Vec::with_capacity(n_vars);
        for i in 0..n_vars {
            let name = c.string(&format!("name of variable {i}"))?;
            let rank = c.u8(&format!("rank of {name}"))? as usize;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(c.u32(&format!("shape of {name}"))? as usize);
            }
            let dtype_id = c.u8(&format!("dtype of {name}"))?;
            let dtype = Ct2DType::from_id(dtype_id).ok_or_else(|| {
                Error::Format(format!("variable {name}: unknown dtype id {dtype_id}"))
            })?;
            let n_bytes = c.u32(&format!("size of {name}"))? as usize;
            let expected = shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    Error::Format(format!("variable {name}: shape {shape:?} overflows"))
                })?;
            if n_bytes != expected {
                return Err(Error::Format(format!(
                    "variable {name}: {n_bytes} bytes stored, shape {shape:?} of {dtype:?} needs {expected}"
                )));
            }
            let start = c.pos;
            c.take(n_bytes, &format!("data of {name}"))?;
            variables.push(Ct2Variable {
                name,
                shape,
                dtype,
                data: start..start + n_bytes,
            });
        }
        let n_aliases = c.u32("alias count")? as usize;
        if n_aliases > bytes.len() / 6 {
            return Err(Error::Format(format!(
                "CTranslate2 model claims {n_aliases} aliases, more than the file can hold"
            )));
        }
        let mut aliases = Vec::with_capacity(n_aliases);
        for i in 0..n_aliases {
            let alias = c.string(&format!("alias {i}"))?;
            let target = c.string(&format!("target of alias {alias}"))?;
            aliases.push((alias, target));
        }
        if c.pos != bytes.len() {
            return Err(Error::Format(format!(
                "CTranslate2 model has {} trailing bytes after the alias table",
                bytes.len() - c.pos
            )));
        }
        Ok(Self {
            bytes,
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// All variables, in file order.
    pub fn variables(&self) -> &[Ct2Variable] {
        &self.variables
    }

    /// `(alias, variable)` pairs (e.g. a tied output projection).
    pub fn aliases(&self) -> &[(String, String)] {
        &self.aliases
    }

    /// The variable called `name` (aliases resolved); the error names it.
    pub fn get(&self, name: &str) -> Result<&Ct2Variable> {
        let target = self
            .aliases
            .iter()
            .find(|(a, _)| a == name)
            .map_or(name, |(_, t)| t.as_str());
        self.variables
            .iter()
            .find(|v| v.name == target)
            .ok_or_else(|| Error::Format(format!("CTranslate2 model has no variable {name}")))
    }

    /// The raw bytes of a variable.
    pub fn raw(&self, v: &Ct2Variable) -> &[u8] {
        &self.bytes[v.data.clone()]
    }

    /// A float variable's values as f32 (from f32, f16 or bf16 storage).
    pub fn to_f32(&self, v: &Ct2Variable) -> Result<Vec<f32>> {
        let raw = self.raw(v);
        Ok(match v.dtype {
            Ct2DType::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Ct2DType::F16 => raw
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Ct2DType::BF16 => raw
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Format(format!(
                    "variable {} is {other:?}, expected floating point (quantized CTranslate2 models are not supported)",
                    v.name
                )))
            }
        })
    }

    /// An integer scalar (e.g. `encoder/num_heads`), whatever its integer width.
    pub fn scalar_int(&self, name: &str) -> Result<i64> {
        let v = self.get(name)?;
        if v.n_elements() != 1 {
            return Err(Error::Format(format!(
                "variable {name}: expected a scalar, got shape {:?}",
                v.shape
            )));
        }
        let raw = self.raw(v);
        Ok(match v.dtype {
            Ct2DType::I8 => i64::from(raw[0] as i8),
            Ct2DType::I16 => i64::from(i16::from_le_bytes([raw[0], raw[1]])),
            Ct2DType::I32 => i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
            other => {
                return Err(Error::Format(format!(
                    "variable {name}: expected an integer, got {other:?}"
                )))
            }
        })
    }
}
