//! [`ModelFile`]: map a Hearth model file and validate everything once, so that handing
//! out tensors afterwards is a bounds-free, copy-free cast.
use super::config::ModelConfig;
use super::format::{
    Header, Section, TableEntry, TensorFormat, DATA_ALIGN, HEADER_LEN, TABLES_ALIGN, TENSOR_ALIGN,
};
use crate::tokenizer::{Bpe, Layout};
use crate::{Error, Result};
use bytemuck::{Pod, Zeroable};
use hearth_quant::dispatch::PackedData;
use hearth_quant::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, PackedMatrix};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::Path;

/// Page-cache hint for the mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Advice {
    /// Let the OS decide (default read-ahead).
    #[default]
    Normal,
    /// Start reading the whole file in now (faster first token, more I/O up front).
    WillNeed,
    /// Random access: no read-ahead (saves page cache on tight boards).
    Random,
}

/// How to map the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `mlock` the mapping so weights are never paged out (needs `RLIMIT_MEMLOCK`).
    pub mlock: bool,
    /// Page-cache hint.
    pub advise: Advice,
}

/// One tensor, borrowed from the mapping.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    /// Name.
    pub name: &'a str,
    /// Rows (1 for vectors).
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// The data.
    pub data: TensorData<'a>,
}

/// A tensor's data, typed by format.
#[derive(Clone, Copy, Debug)]
pub enum TensorData<'a> {
    /// Row-major f32.
    F32(&'a [f32]),
    /// Row-major f16.
    F16(&'a [half::f16]),
    /// Row-interleaved quantized blocks.
    Packed(PackedMatrix<'a>),
}

/// A 64-byte aligned chunk: the unit of the heap buffer behind [`ModelFile::from_bytes`],
/// so in-memory files get the same alignment guarantees as mapped ones.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

enum Backing {
    Mmap(Mmap),
    Heap { chunks: Vec<Chunk>, len: usize },
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Heap { chunks, len } => &bytemuck::cast_slice::<Chunk, u8>(chunks)[..*len],
        }
    }
}

/// Validated table entry, with offsets already converted to `usize`.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Name.
    pub name: String,
    /// Storage format.
    pub format: TensorFormat,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Absolute file offset.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
    /// Stored CRC-32 of the data.
    pub crc32: u32,
}

/// A memory-mapped, validated Hearth model file.
pub struct ModelFile {
    backing: Backing,
    header: Header,
    config: ModelConfig,
    tokenizer: Section,
    /// The fast tokenizer's tables, header-checked at open.
    tables: Option<(Section, Layout)>,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFile")
            .field("config", &self.config)
            .field("tensors", &self.tensors.len())
            .field("bytes", &self.backing.bytes().len())
            .finish()
    }
}

fn fmt_err(msg: String) -> Error {
    Error::Format(msg)
}

/// The bytes of `s`, checked against the file length.
fn section<'a>(bytes: &'a [u8], s: Section, what: &str) -> Result<&'a [u8]> {
    let end = s
        .end()
        .ok_or_else(|| fmt_err(format!("{what} section offset + length overflows")))?;
    if s.offset < HEADER_LEN as u64 || end > bytes.len() as u64 {
        return Err(fmt_err(format!(
            "{what} section {}..{end} lies outside the file (header {HEADER_LEN} bytes, file {} bytes); \
             the file is truncated or corrupt",
            s.offset,
            bytes.len()
        )));
    }
    // Both bounds are ≤ bytes.len(), so they fit usize.
    Ok(&bytes[s.offset as usize..end as usize])
}

impl ModelFile {
    /// Map and validate `path` with default options.
    pub fn open(path: &Path) -> Result<ModelFile> {
        Self::open_with(path, &LoadOptions::default())
    }

    /// Map and validate `path`, applying `opts`.
    pub fn open_with(path: &Path, opts: &LoadOptions) -> Result<ModelFile> {
        let ctx = || format!("opening model file {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| Error::io(ctx(), e))?;
        // SAFETY: the mapping is read-only and private to this process. Another process
        // truncating or rewriting the file while mapped would break Rust's aliasing
        // guarantees (or raise SIGBUS); the converter never rewrites in place (it
        // writes a temporary file and renames it), which is the documented contract.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(ctx(), e))?;
        #[cfg(unix)]
        {
            let advice = match opts.advise {
                Advice::Normal => memmap2::Advice::Normal,
                Advice::WillNeed => memmap2::Advice::WillNeed,
                Advice::Random => memmap2::Advice::Random,
            };
            mmap.advise(advice)
                .map_err(|e| Error::io(format!("madvise on {}", path.display()), e))?;
        }
        // 2 MiB pages for the weights where the kernel offers them: a decode step
        // streams every weight once, and with 4 KiB pages every page is a TLB miss and
        // a stop for the hardware prefetchers (measured: SmolLM2-135M Q4 generation
        // +25–30%, BENCHMARKS.md "2 MiB pages"). Pages this mapping faults in are read
        // into 2 MiB page-cache folios and mapped whole; pages already cached in small
        // folios stay small, which is why the converter drops its output from the page
        // cache ([`super::writer`]). Refused (THP off) only costs speed.
        #[cfg(target_os = "linux")]
        if let Err(e) = mmap.advise(memmap2::Advice::HugePage) {
            tracing::debug!("madvise(MADV_HUGEPAGE) on {}: {e}", path.display());
        }
        if opts.mlock {
            mmap.lock().map_err(|e| {
                Error::io(
                    format!("mlock of {} (raise `ulimit -l`?)", path.display()),
                    e,
                )
            })?;
        }
        Self::from_backing(Backing::Mmap(mmap)).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Validate an in-memory file (tests, fuzzing). The bytes are copied into a
    /// 64-byte aligned buffer.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<ModelFile> {
        let mut chunks = vec![Chunk([0; 64]); bytes.len().div_ceil(64)];
        bytemuck::cast_slice_mut::<Chunk, u8>(&mut chunks)[..bytes.len()].copy_from_slice(&bytes);
        Self::from_backing(Backing::Heap {
            chunks,
            len: bytes.len(),
        })
    }

    fn from_backing(backing: Backing) -> Result<ModelFile> {
        let bytes = backing.bytes();
        let (header, tensors) = read_layout(bytes)?;
        // Every section was bounds-checked by `read_layout`.
        let config_bytes = section(bytes, header.config, "config")?;
        let tok_bytes = section(bytes, header.tokenizer, "tokenizer")?;
        let tables = if header.tokenizer_tables != Section::default() {
            let t = header.tokenizer_tables;
            Some((t, Layout::parse(section(bytes, t, "tokenizer tables")?)?))
        } else {
            None
        };

        let config_str = std::str::from_utf8(config_bytes)
            .map_err(|e| fmt_err(format!("model config is not valid UTF-8: {e}")))?;
        let config: ModelConfig = serde_json::from_str(config_str).map_err(|e| {
            fmt_err(format!(
                "model config is not valid JSON for this hearth: {e}"
            ))
        })?;
        config.validate()?;
        // With tables the JSON is only read on demand (`tokenizer_json` checks it
        // then), so opening does not page in its ~1.5 MiB.
        if tables.is_none() {
            std::str::from_utf8(tok_bytes)
                .map_err(|e| fmt_err(format!("tokenizer.json is not valid UTF-8: {e}")))?;
        }
        let mut index = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            index.insert(t.name.clone(), i);
        }
        let me = ModelFile {
            tokenizer: header.tokenizer,
            tables,
            backing,
            header,
            config,
            tensors,
            index,
        };
        me.check_expected_tensors()?;
        Ok(me)
    }

    /// Every tensor the config implies must be there with its shape, in the format
    /// class the engine reads (matrices packed, vectors f32), and castable.
    fn check_expected_tensors(&self) -> Result<()> {
        for spec in self.config.expected_tensors() {
            let t = self.info(&spec.name)?;
            if (t.rows, t.cols) != (spec.rows, spec.cols) {
                return Err(fmt_err(format!(
                    "tensor `{}` has shape {}×{}, the config needs {}×{}",
                    spec.name, t.rows, t.cols, spec.rows, spec.cols
                )));
            }
            let ok = if spec.is_vector() {
                t.format == TensorFormat::F32
            } else {
                t.format.is_packed()
            };
            if !ok {
                let need = if spec.is_vector() {
                    "F32"
                } else {
                    "a packed format (Q8x4, Q4x4, Q4Ax4)"
                };
                return Err(fmt_err(format!(
                    "tensor `{}` is {}, the engine needs {need}",
                    spec.name, t.format
                )));
            }
        }
        // Casting every tensor once proves alignment and lengths (cheap: no data read).
        for t in &self.tensors {
            self.tensor_at(t)?;
        }
        Ok(())
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The `tokenizer.json` text (empty if it is not UTF-8, which opening checks only
    /// for files without tokenizer tables).
    pub fn tokenizer_json(&self) -> &str {
        let b =
            &self.backing.bytes()[self.tokenizer.offset as usize..][..self.tokenizer.len as usize];
        std::str::from_utf8(b).unwrap_or("")
    }

    /// The fast tokenizer, read in place, if the file has its tables (version 2
    /// files converted from a supported tokenizer).
    pub fn tokenizer_tables(&self) -> Option<Bpe<'_>> {
        let (s, layout) = self.tables?;
        let b = &self.backing.bytes()[s.offset as usize..][..s.len as usize];
        // Checked at open; `new` re-checks the length and alignment cheaply.
        Bpe::new(b, layout).ok()
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>> {
        self.tensor_at(self.info(name)?)
    }

    /// Names of all tensors, in file order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// Table entries of all tensors, in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Total file size in bytes.
    pub fn file_len(&self) -> usize {
        self.backing.bytes().len()
    }

    /// The table entry of `name`.
    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| Error::Format(format!("model file has no tensor `{name}`")))
    }

    fn tensor_at<'a>(&'a self, t: &'a TensorInfo) -> Result<Tensor<'a>> {
        let raw = &self.backing.bytes()[t.offset..t.offset + t.len];
        let cast_err = |e: bytemuck::PodCastError| {
            Error::Format(format!(
                "tensor `{}` cannot be viewed in place: {e:?}",
                t.name
            ))
        };
        let data = match t.format {
            TensorFormat::F32 => TensorData::F32(bytemuck::try_cast_slice(raw).map_err(cast_err)?),
            TensorFormat::F16 => TensorData::F16(bytemuck::try_cast_slice(raw).map_err(cast_err)?),
            TensorFormat::Q8x4 => packed(
                t,
                PackedData::Q8(bytemuck::try_cast_slice::<u8, BlockQ8x4>(raw).map_err(cast_err)?),
            )?,
            TensorFormat::Q4x4 => packed(
                t,
                PackedData::Q4(bytemuck::try_cast_slice::<u8, BlockQ4x4>(raw).map_err(cast_err)?),
            )?,
            TensorFormat::Q4Ax4 => packed(
                t,
                PackedData::Q4A(bytemuck::try_cast_slice::<u8, BlockQ4Ax4>(raw).map_err(cast_err)?),
            )?,
        };
        Ok(Tensor {
            name: &t.name,
            rows: t.rows,
            cols: t.cols,
            data,
        })
    }

    /// Check the stored CRC-32 of the metadata and of every tensor; returns the names
    /// of the parts that do not match (empty: all good). Reads the whole file.
    pub fn verify(&self) -> Vec<String> {
        let bytes = self.backing.bytes();
        let mut bad = Vec::new();
        let mut h = crc32fast::Hasher::new();
        for s in self.header.meta_sections() {
            h.update(&bytes[s.offset as usize..(s.offset + s.len) as usize]);
        }
        if h.finalize() != self.header.meta_crc32 {
            bad.push("(metadata: config, tokenizer, tokenizer tables, tensor table)".to_owned());
        }
        for t in &self.tensors {
            if crc32fast::hash(&bytes[t.offset..t.offset + t.len]) != t.crc32 {
                bad.push(t.name.clone());
            }
        }
        bad
    }
}

/// The checks of a model file's structure that do not depend on what it holds: the
/// header, every section inside the file and not overlapping, the page-aligned data
/// section, and the tensor table (names unique, shapes, lengths, alignment, bounds).
/// [`ModelFile`] adds the LLM config and tokenizer on top; other files in the format
/// (an intent classifier) use this alone.
pub fn read_layout(bytes: &[u8]) -> Result<(Header, Vec<TensorInfo>)> {
    let header = Header::parse(bytes)?;
    section(bytes, header.config, "config")?;
    section(bytes, header.tokenizer, "tokenizer")?;
    let table_bytes = section(bytes, header.table, "tensor table")?;
    section(bytes, header.data, "tensor data")?;
    let has_tables = header.tokenizer_tables != Section::default();
    if has_tables {
        let t = header.tokenizer_tables;
        section(bytes, t, "tokenizer tables")?;
        if t.offset % TABLES_ALIGN != 0 {
            return Err(fmt_err(format!(
                "tokenizer tables section starts at {}, not a multiple of {TABLES_ALIGN}",
                t.offset
            )));
        }
    }
    if header.data.offset % DATA_ALIGN != 0 {
        return Err(fmt_err(format!(
            "tensor data section starts at {}, not a multiple of {DATA_ALIGN}",
            header.data.offset
        )));
    }
    // Metadata sections must not overlap each other or the data.
    let mut secs = [
        ("config", header.config),
        ("tokenizer", header.tokenizer),
        ("tensor table", header.table),
        ("tensor data", header.data),
        ("tokenizer tables", header.tokenizer_tables),
    ];
    let secs = &mut secs[..if has_tables { 5 } else { 4 }];
    secs.sort_by_key(|(_, s)| s.offset);
    for w in secs.windows(2) {
        // `end()` cannot overflow: checked by `section` above.
        if w[0].1.end().unwrap_or(u64::MAX) > w[1].1.offset {
            return Err(fmt_err(format!(
                "{} and {} sections overlap",
                w[0].0, w[1].0
            )));
        }
    }
    let entries = TableEntry::parse_table(table_bytes, header.n_tensors)?;
    let tensors = validate_table(entries, header.data)?;
    let mut names = std::collections::HashSet::with_capacity(tensors.len());
    for t in &tensors {
        if !names.insert(t.name.as_str()) {
            return Err(fmt_err(format!(
                "tensor `{}` appears twice in the table",
                t.name
            )));
        }
    }
    Ok((header, tensors))
}

fn packed<'a>(t: &TensorInfo, d: PackedData<'a>) -> Result<TensorData<'a>> {
    PackedMatrix::new(t.rows, t.cols, d)
        .map(TensorData::Packed)
        .map_err(|e| Error::Format(format!("tensor `{}`: {e}", t.name)))
}

/// Bounds, alignment, length and overlap checks of the table against the data section.
fn validate_table(entries: Vec<TableEntry>, data: Section) -> Result<Vec<TensorInfo>> {
    let data_end = data.end().unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let name = &e.name;
        let (rows, cols) = match (usize::try_from(e.rows), usize::try_from(e.cols)) {
            (Ok(r), Ok(c)) if r > 0 && c > 0 => (r, c),
            _ => {
                return Err(fmt_err(format!(
                    "tensor `{name}` has invalid shape {}×{}",
                    e.rows, e.cols
                )))
            }
        };
        if e.format.is_packed() && cols % hearth_quant::QK != 0 {
            return Err(fmt_err(format!(
                "tensor `{name}` is {} with {cols} columns, not a multiple of {}",
                e.format,
                hearth_quant::QK
            )));
        }
        let expected = e.format.byte_len(rows, cols).ok_or_else(|| {
            fmt_err(format!(
                "tensor `{name}`: size of {} {rows}×{cols} overflows",
                e.format
            ))
        })?;
        if e.len != expected as u64 {
            return Err(fmt_err(format!(
                "tensor `{name}`: {} bytes stored, {} {rows}×{cols} needs {expected}",
                e.len, e.format
            )));
        }
        if e.offset % TENSOR_ALIGN != 0 {
            return Err(fmt_err(format!(
                "tensor `{name}` offset {} is not {TENSOR_ALIGN}-byte aligned",
                e.offset
            )));
        }
        let end = e.offset.checked_add(e.len);
        if e.offset < data.offset || end.is_none_or(|end| end > data_end) {
            return Err(fmt_err(format!(
                "tensor `{name}` at {}+{} lies outside the data section {}..{data_end}",
                e.offset, e.len, data.offset
            )));
        }
        // Within the data section, which is within the file: fits usize.
        out.push(TensorInfo {
            name: e.name,
            format: e.format,
            rows,
            cols,
            offset: e.offset as usize,
            len: e.len as usize,
            crc32: e.crc32,
        });
    }
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by_key(|&i| out[i].offset);
    for w in order.windows(2) {
        let (a, b) = (&out[w[0]], &out[w[1]]);
        if a.offset + a.len > b.offset {
            return Err(fmt_err(format!(
                "tensors `{}` and `{}` overlap",
                a.name, b.name
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// The engine shares one `ModelFile` between threads (`Arc<ModelFile>`).
    #[test]
    fn model_file_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::ModelFile>();
    }
}
