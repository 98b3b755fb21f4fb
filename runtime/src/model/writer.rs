//! [`ModelWriter`]: streams a Hearth model file to disk one tensor at a time.
//!
//! Layout written: header | config | tokenizer | (pad to 64) tokenizer tables |
//! (pad to a page) | tensor data | table.
//! The table goes last so tensors can be streamed without knowing them up front.
//! Everything is written to `OUT.tmp-<pid>` next to `OUT`, validated by opening it as a
//! [`ModelFile`], and only then renamed over `OUT`: an interrupted or failed
//! conversion never leaves a half-written model under the final name.
use super::config::ModelConfig;
use super::format::{
    align_up, Header, Section, TableEntry, TensorFormat, DATA_ALIGN, HEADER_LEN, MAX_NAME_LEN,
    TABLES_ALIGN, TENSOR_ALIGN, VERSION,
};
use super::reader::ModelFile;
use crate::tokenizer::{build_tables, Built};
use crate::{Error, Result};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Streaming writer of a model file. Dropping it before [`finish`](Self::finish)
/// deletes the temporary file.
pub struct ModelWriter {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    pos: u64,
    header: Header,
    meta_crc: crc32fast::Hasher,
    entries: Vec<TableEntry>,
    names: HashSet<String>,
    current: Option<Pending>,
}

/// A tensor being streamed.
struct Pending {
    entry: TableEntry,
    crc: crc32fast::Hasher,
    written: u64,
}

impl ModelWriter {
    /// Start writing `dest` (via a temporary file in the same directory). The fast
    /// tokenizer's tables are built from `tokenizer_json` when its pipeline is
    /// supported (see [`crate::tokenizer::build`]).
    pub fn create(dest: &Path, config: &ModelConfig, tokenizer_json: &str) -> Result<ModelWriter> {
        config.validate()?;
        let tables = match build_tables(tokenizer_json)? {
            Built::Tables(t) => Some(t),
            Built::Unsupported(why) => {
                tracing::info!(
                    "no fast tokenizer tables ({why}): the tokenizers crate will be used"
                );
                None
            }
        };
        let file_name = dest.file_name().ok_or_else(|| {
            Error::Invalid(format!("output path {} has no file name", dest.display()))
        })?;
        let mut tmp_name = file_name.to_owned();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let file =
            File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let mut w = ModelWriter {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            dest: dest.to_owned(),
            pos: 0,
            header: Header {
                version: VERSION,
                ..Header::default()
            },
            meta_crc: crc32fast::Hasher::new(),
            entries: Vec::new(),
            names: HashSet::new(),
            current: None,
        };
        let config_json = serde_json::to_vec_pretty(config)
            .map_err(|e| Error::Invalid(format!("serializing the model config: {e}")))?;
        w.write(&[0u8; HEADER_LEN])?; // placeholder, rewritten by `finish`
        w.header.config = w.write(&config_json)?;
        w.meta_crc.update(&config_json);
        w.header.tokenizer = w.write(tokenizer_json.as_bytes())?;
        w.meta_crc.update(tokenizer_json.as_bytes());
        if let Some(t) = tables {
            w.pad_to(align_up(w.pos, TABLES_ALIGN).expect("small offset"))?;
            w.header.tokenizer_tables = w.write(&t)?;
            w.meta_crc.update(&t);
        }
        let data_start = align_up(w.pos, DATA_ALIGN).expect("small offset");
        w.pad_to(data_start)?;
        w.header.data.offset = data_start;
        Ok(w)
    }

    fn file(&mut self) -> &mut BufWriter<File> {
        self.out.as_mut().expect("writer used after finish")
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(format!("writing {}", self.tmp.display()), e)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<Section> {
        let offset = self.pos;
        let r = self.file().write_all(bytes);
        r.map_err(|e| self.io(e))?;
        self.pos += bytes.len() as u64;
        Ok(Section {
            offset,
            len: bytes.len() as u64,
        })
    }

    fn pad_to(&mut self, target: u64) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.pos < target {
            let n = (target - self.pos).min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }

    /// Append one tensor: `data` must be exactly `format`'s bytes for `rows × cols`
    /// (for packed formats: the packed blocks as bytes, see `hearth_quant::packed`).
    pub fn add_tensor(
        &mut self,
        name: &str,
        format: TensorFormat,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<()> {
        self.begin_tensor(name, format, rows, cols)?;
        self.write_tensor_data(data)?;
        self.end_tensor()
    }

    /// Start a tensor whose data will follow in pieces ([`write_tensor_data`](Self::write_tensor_data),
    /// then [`end_tensor`](Self::end_tensor)), so big tensors never sit in memory whole.
    pub fn begin_tensor(
        &mut self,
        name: &str,
        format: TensorFormat,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        if self.current.is_some() {
            return Err(Error::Invalid(format!(
                "tensor `{name}` started before the previous one ended"
            )));
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::Invalid(format!(
                "tensor name `{name}` must be 1..={MAX_NAME_LEN} bytes"
            )));
        }
        if self.names.contains(name) {
            return Err(Error::Invalid(format!("tensor `{name}` written twice")));
        }
        let need = format
            .byte_len(rows, cols)
            .filter(|_| rows > 0 && cols > 0)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "tensor `{name}`: {format} {rows}×{cols} is not representable"
                ))
            })?;
        let offset = align_up(self.pos, TENSOR_ALIGN).expect("small offset");
        self.pad_to(offset)?;
        self.current = Some(Pending {
            entry: TableEntry {
                name: name.to_owned(),
                format,
                rows: rows as u64,
                cols: cols as u64,
                offset,
                len: need as u64,
                crc32: 0,
            },
            crc: crc32fast::Hasher::new(),
            written: 0,
        });
        Ok(())
    }

    /// Append bytes to the tensor begun with [`begin_tensor`](Self::begin_tensor).
    pub fn write_tensor_data(&mut self, data: &[u8]) -> Result<()> {
        let cur = self
            .current
            .as_mut()
            .ok_or_else(|| Error::Invalid("tensor data written outside a tensor".into()))?;
        if cur.written + data.len() as u64 > cur.entry.len {
            return Err(Error::Invalid(format!(
                "tensor `{}`: {} bytes given, {} {}×{} needs {}",
                cur.entry.name,
                cur.written + data.len() as u64,
                cur.entry.format,
                cur.entry.rows,
                cur.entry.cols,
                cur.entry.len
            )));
        }
        cur.crc.update(data);
        cur.written += data.len() as u64;
        self.write(data)?;
        Ok(())
    }

    /// Finish the current tensor; its data must be complete.
    pub fn end_tensor(&mut self) -> Result<()> {
        let cur = self
            .current
            .take()
            .ok_or_else(|| Error::Invalid("end_tensor without begin_tensor".into()))?;
        let e = cur.entry;
        if cur.written != e.len {
            return Err(Error::Invalid(format!(
                "tensor `{}`: {} bytes given, {} {}×{} needs {}",
                e.name, cur.written, e.format, e.rows, e.cols, e.len
            )));
        }
        self.names.insert(e.name.clone());
        self.entries.push(TableEntry {
            crc32: cur.crc.finalize(),
            ..e
        });
        Ok(())
    }

    /// Append an f32 tensor.
    pub fn add_f32(&mut self, name: &str, rows: usize, cols: usize, data: &[f32]) -> Result<()> {
        self.add_tensor(
            name,
            TensorFormat::F32,
            rows,
            cols,
            bytemuck::cast_slice(data),
        )
    }

    /// Tensors written so far.
    pub fn tensor_count(&self) -> usize {
        self.entries.len()
    }

    /// Write the table and header, check the file loads, and rename it to its final
    /// name. Returns the final path.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(cur) = &self.current {
            return Err(Error::Invalid(format!(
                "tensor `{}` was not ended",
                cur.entry.name
            )));
        }
        let data_end = align_up(self.pos, TENSOR_ALIGN).expect("small offset");
        self.pad_to(data_end)?;
        self.header.data.len = data_end - self.header.data.offset;
        let mut table = Vec::new();
        for e in &self.entries {
            e.write_to(&mut table);
        }
        self.header.table = self.write(&table)?;
        self.meta_crc.update(&table);
        self.header.n_tensors = self.entries.len() as u64;
        self.header.meta_crc32 = self.meta_crc.clone().finalize();
        let header = self.header.to_bytes();
        let mut file = self.out.take().expect("finish called once");
        let result = (|| {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&header)?;
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop_from_page_cache(&file);
            Ok(())
        })();
        result.map_err(|e| self.io(e))?;
        // The final check: exactly what the engine will do.
        ModelFile::open(&self.tmp).map_err(|e| match e {
            Error::Format(m) => Error::Invalid(format!("the written model does not validate: {m}")),
            e => e,
        })?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", self.tmp.display(), self.dest.display()),
                e,
            )
        })?;
        Ok(std::mem::take(&mut self.dest))
    }
}

/// Drop a written (and synced, so clean) file's pages from the page cache. What a write
/// leaves cached is in small folios, and a mapping can only use 2 MiB pages for data
/// read in afresh (see `ModelFile::open_with`); so the engine's first load reads the
/// file again, in 2 MiB folios, and every later load maps them. A hint: if it fails,
/// the file is only slower to run.
fn drop_from_page_cache(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `posix_fadvise` only reads its integer arguments; `file` is open, so
        // its descriptor is valid for the call.
        let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r != 0 {
            tracing::debug!("posix_fadvise(DONTNEED) on the written model: error {r}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

impl Drop for ModelWriter {
    fn drop(&mut self) {
        // After a successful `finish` the temp file has been renamed away; otherwise
        // (error, panic, early return) it is garbage.
        if self.tmp.exists() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
