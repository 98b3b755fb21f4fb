//! Hearth's own byte-level BPE tokenizer: its tables are built once by the converter
//! and stored in the model file, then read in place from the mapping, so a model is
//! ready to tokenize without parsing or hashing its vocabulary at load.
//!
//! It reproduces the `tokenizers` crate (which stays the reference, and the fallback
//! for files without tables) for the pipelines `gguf/tokenizer.rs` writes:
//! added tokens matched whole first (leftmost-longest), optional NFC, one of the
//! [`PreTokenizer`]s, byte-level BPE (lowest rank first, leftmost on ties), and
//! decoding by concatenating each token's bytes.
//!
//! - [`pretok`]: the hand-written pre-tokenizers and Unicode classes.
//! - [`tables`]: the stored layout and [`Bpe`], which reads it.
//! - [`build`]: tables from a `tokenizer.json` (conversion time).
pub mod build;
mod merge;
pub mod pretok;
pub mod tables;
mod unicode_tables;

pub use build::{build_tables, Built};
pub use pretok::PreTokenizer;
pub use tables::{Bpe, Layout};

use unicode_normalization_alignments::UnicodeNormalization;

impl Bpe<'_> {
    /// Token ids of `text`; added tokens (`<|im_start|>`, …) are recognised.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut scratch = merge::Scratch::default();
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            match self.added_at(&bytes[i..]) {
                Some((id, len)) => {
                    self.encode_plain(&text[start..i], &mut scratch, &mut out);
                    out.push(id);
                    i += len;
                    start = i;
                }
                None => i += 1,
            }
        }
        self.encode_plain(&text[start..], &mut scratch, &mut out);
        out
    }

    /// Text between added tokens: normalize, pre-tokenize, merge.
    fn encode_plain(&self, text: &str, scratch: &mut merge::Scratch, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let nfc;
        let text = if self.layout.flags & tables::FLAG_NFC != 0 {
            nfc = text.nfc().map(|(c, _)| c).collect::<String>();
            nfc.as_str()
        } else {
            text
        };
        let ignore_merges = self.layout.flags & tables::FLAG_IGNORE_MERGES != 0;
        self.layout.pre.split(text, |piece| {
            if ignore_merges {
                if let Some(id) = self.token_id(piece.as_bytes()) {
                    out.push(id);
                    return;
                }
            }
            merge::merge_word(self, piece.as_bytes(), scratch, out);
        });
    }

    /// Text of `ids`: their bytes concatenated, invalid UTF-8 replaced by U+FFFD;
    /// ids outside the vocabulary are skipped (as the `tokenizers` crate does).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut b = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            b.extend_from_slice(self.token_bytes(id));
        }
        match String::from_utf8(b) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}
