//! The byte layout of the fast tokenizer's tables (spec: `docs/model-format.md`,
//! "Tokenizer tables") and [`Bpe`], the tokenizer that reads them in place.
//!
//! Everything is little-endian `u32` words followed by two byte blobs. Opening checks
//! only the header (O(1)); every later read is bounds-checked (`get`), so a corrupt
//! table can give wrong tokens but never a panic or an out-of-bounds read.
use super::pretok::PreTokenizer;
use crate::{Error, Result};

/// First word: `HBPE`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HBPE");
/// Layout version of the tables.
pub const TABLES_VERSION: u32 = 1;
/// Header words before the arrays.
pub const HEADER_WORDS: usize = 24;
/// An empty hash slot / absent id.
pub const NONE: u32 = u32::MAX;
/// Flag: normalize text to NFC (outside added tokens) before pre-tokenizing.
pub const FLAG_NFC: u32 = 1;
/// Flag: a pre-token found whole in the vocabulary is emitted without merging.
pub const FLAG_IGNORE_MERGES: u32 = 2;

/// Largest vocabulary the tables accept.
pub const MAX_TOKENS: u32 = 1 << 24;
/// Largest hash table (slots).
pub const MAX_SLOTS: u32 = 1 << 26;
/// Most added tokens.
pub const MAX_ADDED: u32 = 1 << 20;

/// Header fields (word index).
mod w {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 1;
    pub const PRE: usize = 2;
    pub const FLAGS: usize = 3;
    pub const N_TOKENS: usize = 4;
    pub const TOK_BYTES: usize = 5;
    pub const VOCAB_SLOTS: usize = 6;
    pub const MERGE_SLOTS: usize = 7;
    pub const N_ADDED: usize = 8;
    pub const ADDED_BYTES: usize = 9;
    pub const N_MERGES: usize = 10;
    /// Words 11..16 are reserved (0); 16..24 are the first-byte bitmap of the added
    /// tokens.
    pub const RESERVED: std::ops::Range<usize> = 11..16;
    pub const FIRST_BYTES: usize = 16;
}

/// Hash of a merge pair (Fibonacci hashing of the two ids).
pub fn pair_hash(left: u32, right: u32) -> u64 {
    ((u64::from(left) << 32) | u64::from(right)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
}

/// Hash of a token's bytes (64-bit FNV-1a).
pub fn bytes_hash(b: &[u8]) -> u64 {
    b.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Where each part of the tables lies, checked once when opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The pre-tokenizer.
    pub pre: PreTokenizer,
    /// [`FLAG_NFC`], [`FLAG_IGNORE_MERGES`].
    pub flags: u32,
    /// Ids are `0..n_tokens`.
    pub n_tokens: usize,
    /// Merges stored (informational).
    pub n_merges: usize,
    /// Added (special and user-defined) tokens.
    pub n_added: usize,
    vocab_slots: usize,
    merge_slots: usize,
    first_bytes: [u32; 8],
    // Word offsets of the arrays.
    byte_ids: usize,
    tok_off: usize,
    vocab: usize,
    merges: usize,
    added: usize,
    words: usize,
    // Byte ranges of the blobs.
    tok_bytes: (usize, usize),
    added_bytes: (usize, usize),
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Format(format!("tokenizer tables: {msg}"))
}

impl Layout {
    /// Check the header of `bytes` against its length. O(1).
    pub fn parse(bytes: &[u8]) -> Result<Layout> {
        let word = |i: usize| -> Result<u32> {
            bytes
                .get(i * 4..i * 4 + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad(format!("truncated: {} bytes", bytes.len())))
        };
        if bytes.len() < HEADER_WORDS * 4 {
            return Err(bad(format!(
                "truncated: {} bytes, the header needs {}",
                bytes.len(),
                HEADER_WORDS * 4
            )));
        }
        if word(w::MAGIC)? != MAGIC {
            return Err(bad("bad magic"));
        }
        let version = word(w::VERSION)?;
        if version != TABLES_VERSION {
            return Err(bad(format!(
                "version {version} is not supported (this hearth reads {TABLES_VERSION})"
            )));
        }
        let pre_code = word(w::PRE)?;
        let pre = PreTokenizer::from_code(pre_code)
            .ok_or_else(|| bad(format!("unknown pre-tokenizer code {pre_code}")))?;
        let flags = word(w::FLAGS)?;
        if flags & !(FLAG_NFC | FLAG_IGNORE_MERGES) != 0 {
            return Err(bad(format!("unknown flags {flags:#x}")));
        }
        for i in w::RESERVED {
            if word(i)? != 0 {
                return Err(bad(format!("reserved word {i} is not 0")));
            }
        }
        let n_tokens = word(w::N_TOKENS)?;
        if n_tokens == 0 || n_tokens > MAX_TOKENS {
            return Err(bad(format!("{n_tokens} tokens (must be 1..={MAX_TOKENS})")));
        }
        let slots = |i: usize, what: &str| -> Result<usize> {
            let s = word(i)?;
            if !s.is_power_of_two() || s > MAX_SLOTS {
                return Err(bad(format!(
                    "{what} hash table has {s} slots (must be a power of two ≤ {MAX_SLOTS})"
                )));
            }
            Ok(s as usize)
        };
        let vocab_slots = slots(w::VOCAB_SLOTS, "vocabulary")?;
        let merge_slots = slots(w::MERGE_SLOTS, "merge")?;
        let n_added = word(w::N_ADDED)?;
        if n_added > MAX_ADDED {
            return Err(bad(format!("{n_added} added tokens (max {MAX_ADDED})")));
        }
        let (n_tokens, n_added) = (n_tokens as usize, n_added as usize);
        let mut first_bytes = [0u32; 8];
        for (i, f) in first_bytes.iter_mut().enumerate() {
            *f = word(w::FIRST_BYTES + i)?;
        }
        // All counts are bounded above, so these sums cannot overflow a 64-bit usize;
        // checked anyway for 32-bit targets.
        let too_big = || bad("sizes overflow");
        let byte_ids = HEADER_WORDS;
        let tok_off = byte_ids + 256;
        let vocab = tok_off + n_tokens + 1;
        let merges = vocab.checked_add(vocab_slots).ok_or_else(too_big)?;
        let added = merge_slots
            .checked_mul(4)
            .and_then(|m| m.checked_add(merges))
            .ok_or_else(too_big)?;
        let words = n_added
            .checked_mul(3)
            .and_then(|a| a.checked_add(added))
            .ok_or_else(too_big)?;
        let tok_start = words.checked_mul(4).ok_or_else(too_big)?;
        let tok_end = tok_start
            .checked_add(word(w::TOK_BYTES)? as usize)
            .ok_or_else(too_big)?;
        let added_end = tok_end
            .checked_add(word(w::ADDED_BYTES)? as usize)
            .ok_or_else(too_big)?;
        if added_end != bytes.len() {
            return Err(bad(format!(
                "the header describes {added_end} bytes, the section has {}",
                bytes.len()
            )));
        }
        let l = Layout {
            pre,
            flags,
            n_tokens,
            n_merges: word(w::N_MERGES)? as usize,
            n_added,
            vocab_slots,
            merge_slots,
            first_bytes,
            byte_ids,
            tok_off,
            vocab,
            merges,
            added,
            words,
            tok_bytes: (tok_start, tok_end),
            added_bytes: (tok_end, added_end),
        };
        // The last token offset must close the token blob (one read).
        if word(tok_off + n_tokens)? as usize != tok_end - tok_start {
            return Err(bad("token offsets do not end at the token bytes' length"));
        }
        Ok(l)
    }

    /// Bytes of the whole tables for this layout.
    pub fn total_len(&self) -> usize {
        self.added_bytes.1
    }
}

/// Byte-level BPE tokenizer reading its tables in place.
#[derive(Clone, Copy, Debug)]
pub struct Bpe<'a> {
    pub(super) layout: Layout,
    words: &'a [u32],
    bytes: &'a [u8],
}

impl<'a> Bpe<'a> {
    /// View `bytes` (4-byte aligned, checked by [`Layout::parse`] to be `layout`'s).
    pub fn new(bytes: &'a [u8], layout: Layout) -> Result<Bpe<'a>> {
        if bytes.len() != layout.total_len() {
            return Err(bad("layout does not match the bytes"));
        }
        let words = bytemuck::try_cast_slice(&bytes[..layout.words * 4])
            .map_err(|e| bad(format!("cannot be read in place: {e:?}")))?;
        Ok(Bpe {
            layout,
            words,
            bytes,
        })
    }

    /// Check and view `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Bpe<'a>> {
        Bpe::new(bytes, Layout::parse(bytes)?)
    }

    /// The checked layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn word(&self, i: usize) -> u32 {
        self.words.get(i).copied().unwrap_or(NONE)
    }

    /// Id of the single byte `b` (`None` if the vocabulary lacks it: the byte is
    /// dropped, as the `tokenizers` crate does without an unknown token).
    pub(super) fn byte_id(&self, b: u8) -> Option<u32> {
        let id = self.word(self.layout.byte_ids + b as usize);
        (id < self.layout.n_tokens as u32).then_some(id)
    }

    /// The raw bytes of token `id` (what decoding it produces); empty for ids
    /// without text.
    pub fn token_bytes(&self, id: u32) -> &'a [u8] {
        let n = self.layout.n_tokens;
        if id as usize >= n {
            return &[];
        }
        let i = self.layout.tok_off + id as usize;
        let (a, b) = (self.word(i) as usize, self.word(i + 1) as usize);
        let (s, e) = self.layout.tok_bytes;
        self.bytes[s..e].get(a..b).unwrap_or(&[])
    }

    /// The id of the vocabulary token whose bytes are exactly `b`.
    pub fn token_id(&self, b: &[u8]) -> Option<u32> {
        let mask = self.layout.vocab_slots - 1;
        let mut slot = bytes_hash(b) as usize & mask;
        for _ in 0..self.layout.vocab_slots {
            let id = self.word(self.layout.vocab + slot);
            if id == NONE {
                return None;
            }
            if self.token_bytes(id) == b {
                return Some(id);
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// `(rank, merged id)` of the pair `(left, right)`.
    pub(super) fn merge(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        let mask = self.layout.merge_slots - 1;
        let mut slot = pair_hash(left, right) as usize & mask;
        for _ in 0..self.layout.merge_slots {
            let at = self.layout.merges + 4 * slot;
            let l = self.word(at);
            if l == NONE {
                return None;
            }
            if l == left && self.word(at + 1) == right {
                let (rank, id) = (self.word(at + 2), self.word(at + 3));
                return (id < self.layout.n_tokens as u32).then_some((rank, id));
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// Added token `i` (sorted by content): `(id, content)`.
    fn added(&self, i: usize) -> (u32, &'a [u8]) {
        let at = self.layout.added + 3 * i;
        let (id, off, len) = (
            self.word(at),
            self.word(at + 1) as usize,
            self.word(at + 2) as usize,
        );
        let (s, e) = self.layout.added_bytes;
        let content = self.bytes[s..e]
            .get(off..off.saturating_add(len))
            .unwrap_or(&[]);
        (id, content)
    }

    /// The longest added token at the start of `text`: `(id, byte length)`.
    pub(super) fn added_at(&self, text: &[u8]) -> Option<(u32, usize)> {
        let &b = text.first()?;
        if self.layout.first_bytes[b as usize / 32] & (1 << (b % 32)) == 0 {
            return None;
        }
        // Sorted by content, so the candidates starting with `b` are contiguous.
        let n = self.layout.n_added;
        let start = partition_point(n, |i| self.added(i).1.first().is_some_and(|&f| f < b));
        let mut best: Option<(u32, usize)> = None;
        for i in start..n {
            let (id, content) = self.added(i);
            if content.first() != Some(&b) {
                break;
            }
            if !content.is_empty()
                && text.starts_with(content)
                && best.is_none_or(|(_, len)| content.len() > len)
                && (id as usize) < self.layout.n_tokens
            {
                best = Some((id, content.len()));
            }
        }
        best
    }
}

/// First index in `0..n` where `is_before` is false (it must be monotone).
fn partition_point(n: usize, is_before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if is_before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Builds the tables' bytes (used by the converter, see `build.rs`).
pub(super) struct TablesWriter {
    pub pre: PreTokenizer,
    pub flags: u32,
    /// Raw bytes of every id `0..n` (empty for ids without text).
    pub token_bytes: Vec<Vec<u8>>,
    /// Ids that go in the bytes → id table.
    pub vocab_ids: Vec<u32>,
    /// `(left, right, rank, merged)`, later entries replacing earlier ones.
    pub merges: Vec<(u32, u32, u32, u32)>,
    /// `(id, content)` of the added tokens.
    pub added: Vec<(u32, Vec<u8>)>,
    /// Id of each single byte.
    pub byte_ids: [u32; 256],
}

fn slots_for(n: usize) -> usize {
    // Load factor ≤ 1/2 keeps linear probing short (misses are the common case in
    // the merge loop).
    (n.max(1) * 2).next_power_of_two()
}

impl TablesWriter {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.token_bytes.len();
        if n == 0 || n > MAX_TOKENS as usize || self.added.len() > MAX_ADDED as usize {
            return Err(bad(format!("{n} tokens is out of range")));
        }
        let vocab_slots = slots_for(self.vocab_ids.len());
        let merge_slots = slots_for(self.merges.len());
        let mut header = [0u32; HEADER_WORDS];
        header[w::MAGIC] = MAGIC;
        header[w::VERSION] = TABLES_VERSION;
        header[w::PRE] = self.pre.code();
        header[w::FLAGS] = self.flags;
        header[w::N_TOKENS] = n as u32;
        header[w::VOCAB_SLOTS] = vocab_slots as u32;
        header[w::MERGE_SLOTS] = merge_slots as u32;
        header[w::N_ADDED] = self.added.len() as u32;

        let mut tok_off = Vec::with_capacity(n + 1);
        let mut tok_bytes = Vec::new();
        for t in &self.token_bytes {
            tok_off.push(tok_bytes.len() as u32);
            tok_bytes.extend_from_slice(t);
        }
        tok_off.push(tok_bytes.len() as u32);
        header[w::TOK_BYTES] = u32::try_from(tok_bytes.len()).map_err(|_| bad("too large"))?;

        let mut vocab = vec![NONE; vocab_slots];
        for &id in &self.vocab_ids {
            let b = &self.token_bytes[id as usize];
            let mut slot = bytes_hash(b) as usize & (vocab_slots - 1);
            while vocab[slot] != NONE {
                slot = (slot + 1) & (vocab_slots - 1);
            }
            vocab[slot] = id;
        }

        let mut merges = vec![NONE; 4 * merge_slots];
        let mut n_merges = 0u32;
        for &(l, r, rank, id) in &self.merges {
            let mut slot = pair_hash(l, r) as usize & (merge_slots - 1);
            loop {
                let at = 4 * slot;
                if merges[at] == NONE {
                    n_merges += 1;
                } else if merges[at] != l || merges[at + 1] != r {
                    slot = (slot + 1) & (merge_slots - 1);
                    continue;
                }
                merges[at..at + 4].copy_from_slice(&[l, r, rank, id]);
                break;
            }
        }
        header[w::N_MERGES] = n_merges;

        let mut added: Vec<&(u32, Vec<u8>)> = self.added.iter().collect();
        added.sort_by(|a, b| a.1.cmp(&b.1));
        let mut added_words = Vec::with_capacity(3 * added.len());
        let mut added_bytes = Vec::new();
        for (id, content) in added {
            added_words.extend_from_slice(&[*id, added_bytes.len() as u32, content.len() as u32]);
            added_bytes.extend_from_slice(content);
            if let Some(&f) = content.first() {
                header[w::FIRST_BYTES + f as usize / 32] |= 1 << (f % 32);
            }
        }
        header[w::ADDED_BYTES] = added_bytes.len() as u32;

        let mut out = Vec::new();
        for part in [
            &header[..],
            &self.byte_ids[..],
            &tok_off,
            &vocab,
            &merges,
            &added_words,
        ] {
            for x in part {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.extend_from_slice(&tok_bytes);
        out.extend_from_slice(&added_bytes);
        Ok(out)
    }
}
