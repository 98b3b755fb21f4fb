//! Whisper model import: a faster-whisper (CTranslate2) model directory → whisper.cpp's ggml
//! file, the only format whisper.cpp (and so whisper-rs) loads.
//!
//! The ggml layout follows whisper.cpp's `models/convert-pt-to-ggml.py`, little endian:
//! ```text
//! i32 magic 0x67676d6c ("ggml")
//! i32 × 11 hparams: n_vocab n_audio_ctx n_audio_state n_audio_head n_audio_layer
//!                   n_text_ctx n_text_state n_text_head n_text_layer n_mels ftype
//! i32 n_mel, i32 n_fft_bins, n_mel × n_fft_bins f32   mel filterbank
//! i32 n_tokens, n_tokens × { i32 len, len bytes }     byte-level BPE tokens, by id
//! tensors × { i32 n_dims, i32 name_len, i32 ftype (0 f32, 1 f16),
//!             n_dims × i32 dims (innermost first), name, data }
//! ```
//! Matrices are f16; 1-D tensors, conv biases (stored `[n, 1]`) and positional embeddings f32.
//! whisper.cpp checks every tensor's name, shape and type against what it expects, so the set
//! written here is exactly its set: self-attention q/k/v split out of CTranslate2's fused
//! projection, cross-attention k/v split out of the fused k/v, no key biases.
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use half::f16;

use super::ct2::Ct2Model;
use super::mel::mel_filters;
use crate::{Error, Result};

/// whisper.cpp's file magic, "ggml" as a little-endian i32.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;

/// Whisper's front end: 16 kHz audio, 400-point FFT.
const SAMPLE_RATE: u32 = 16_000;
const N_FFT: usize = 400;

/// The model dimensions stored in a ggml whisper file's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhisperHparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl WhisperHparams {
    fn as_array(&self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }
}

/// Reads the header of a ggml whisper file (magic + hparams), e.g. to validate a ready model.
pub fn read_ggml_hparams(path: &Path) -> Result<WhisperHparams> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut buf = [0u8; 48];
    f.read_exact(&mut buf).map_err(|_| {
        Error::Format(format!(
            "{}: too short for a ggml whisper model header",
            path.display()
        ))
    })?;
    let word =
        |i: usize| i32::from_le_bytes([buf[4 * i], buf[4 * i + 1], buf[4 * i + 2], buf[4 * i + 3]]);
    if word(0) as u32 != GGML_MAGIC {
        return Err(Error::Format(format!(
            "{}: not a ggml whisper model (magic {:#010x}, expected {GGML_MAGIC:#010x})",
            path.display(),
            word(0) as u32
        )));
    }
    let h = WhisperHparams {
        n_vocab: word(1),
        n_audio_ctx: word(2),
        n_audio_state: word(3),
        n_audio_head: word(4),
        n_audio_layer: word(5),
        n_text_ctx: word(6),
        n_text_state: word(7),
        n_text_head: word(8),
        n_text_layer: word(9),
        n_mels: word(10),
        ftype: word(11),
    };
    if h.as_array()[..10].iter().any(|&v| v <= 0) || !(0..=1).contains(&h.ftype) {
        return Err(Error::Format(format!(
            "{}: implausible whisper hparams {h:?}",
            path.display()
        )));
    }
    Ok(h)
}

/// Imports a Whisper model to `out` (written to a temporary file, then renamed):
/// `from` is a faster-whisper/CTranslate2 directory (`model.bin` + `tokenizer.json`) or a
/// ready ggml `.bin`, which is validated and copied. Returns the model's hparams.
pub fn import_whisper(from: &Path, out: &Path) -> Result<WhisperHparams> {
    let tmp = temp_path(out);
    let result = if from.is_dir() {
        convert_ct2_dir(from, &tmp)
    } else {
        read_ggml_hparams(from).and_then(|h| {
            std::fs::copy(from, &tmp).map(|_| h).map_err(|e| {
                Error::io(
                    format!("copying {} to {}", from.display(), tmp.display()),
                    e,
                )
            })
        })
    };
    match result {
        Ok(h) => {
            std::fs::rename(&tmp, out).map_err(|e| {
                Error::io(
                    format!("renaming {} to {}", tmp.display(), out.display()),
                    e,
                )
            })?;
            Ok(h)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn temp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    out.with_file_name(name)
}

/// Converts a CTranslate2 Whisper directory into a ggml file at `out`.
pub fn convert_ct2_dir(dir: &Path, out: &Path) -> Result<WhisperHparams> {
    let model = Ct2Model::open(&dir.join("model.bin"))?;
    let tok_path = dir.join("tokenizer.json");
    let tok_json = std::fs::read_to_string(&tok_path)
        .map_err(|e| Error::io(format!("reading {}", tok_path.display()), e))?;
    let tokens = byte_tokens(&tok_json)
        .map_err(|e| Error::Format(format!("{}: {e}", tok_path.display())))?;
    let file =
        File::create(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let h = write_ggml(&model, &tokens, &mut w)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", out.display()), e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", out.display()), e))?;
    Ok(h)
}

/// Counts `{prefix}layer_N/` groups.
fn count_layers(model: &Ct2Model, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            let p = format!("{prefix}/layer_{i}/");
            model.variables().iter().any(|v| v.name.starts_with(&p))
        })
        .count()
}

fn dim_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Format(format!("{what} = {v} is out of range")))
}

/// Reads the hparams a whisper.cpp model needs from the CTranslate2 variables.
pub fn ct2_hparams(model: &Ct2Model) -> Result<WhisperHparams> {
    if model.spec != "WhisperSpec" {
        return Err(Error::Format(format!(
            "CTranslate2 model is a {}, not a WhisperSpec",
            model.spec
        )));
    }
    let shape2 = |name: &str| -> Result<(usize, usize)> {
        let v = model.get(name)?;
        match v.shape[..] {
            [a, b] => Ok((a, b)),
            _ => Err(Error::Format(format!(
                "{name}: expected 2 dims, got {:?}",
                v.shape
            ))),
        }
    };
    let (n_vocab, text_state) = shape2("decoder/embeddings/weight")?;
    let (audio_ctx, audio_state) = shape2("encoder/position_encodings/encodings")?;
    let (text_ctx, text_state2) = shape2("decoder/position_encodings/encodings")?;
    if text_state2 != text_state {
        return Err(Error::Format(format!(
            "decoder widths disagree: embeddings {text_state}, positions {text_state2}"
        )));
    }
    let conv1 = model.get("encoder/conv1/weight")?;
    let n_mels = match conv1.shape[..] {
        [out, mels, 3] if out == audio_state => mels,
        _ => {
            return Err(Error::Format(format!(
                "encoder/conv1/weight: unexpected shape {:?}",
                conv1.shape
            )))
        }
    };
    let head = |name: &str| -> Result<i32> {
        let h = model.scalar_int(name)?;
        i32::try_from(h)
            .ok()
            .filter(|&h| h > 0)
            .ok_or_else(|| Error::Format(format!("{name} = {h} is not a head count")))
    };
    let h = WhisperHparams {
        n_vocab: dim_i32(n_vocab, "n_vocab")?,
        n_audio_ctx: dim_i32(audio_ctx, "n_audio_ctx")?,
        n_audio_state: dim_i32(audio_state, "n_audio_state")?,
        n_audio_head: head("encoder/num_heads")?,
        n_audio_layer: dim_i32(count_layers(model, "encoder"), "n_audio_layer")?,
        n_text_ctx: dim_i32(text_ctx, "n_text_ctx")?,
        n_text_state: dim_i32(text_state, "n_text_state")?,
        n_text_head: head("decoder/num_heads")?,
        n_text_layer: dim_i32(count_layers(model, "decoder"), "n_text_layer")?,
        n_mels: dim_i32(n_mels, "n_mels")?,
        ftype: 1,
    };
    if h.n_audio_layer == 0 || h.n_text_layer == 0 {
        return Err(Error::Format(
            "CTranslate2 Whisper model has no layers".into(),
        ));
    }
    if h.n_audio_state % h.n_audio_head != 0 || h.n_text_state % h.n_text_head != 0 {
        return Err(Error::Format(format!(
            "widths not divisible by head counts: {h:?}"
        )));
    }
    Ok(h)
}

/// GPT-2's byte ↔ printable-character table, inverted: character → byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .iter()
        .zip(&chars)
        .map(|(&b, &c)| (char::from_u32(c).expect("table holds valid chars"), b as u8))
        .collect()
}

/// The ordinary (non-special) tokens of a byte-level BPE `tokenizer.json`, as raw bytes by id
/// 0 … n-1 — what whisper.cpp's vocabulary section holds (it names the special tokens itself).
pub fn byte_tokens(tokenizer_json: &str) -> Result<Vec<Vec<u8>>> {
    #[derive(serde::Deserialize)]
    struct Added {
        id: u32,
        special: bool,
    }
    #[derive(serde::Deserialize)]
    struct Model {
        vocab: HashMap<String, u32>,
    }
    #[derive(serde::Deserialize)]
    struct Tok {
        model: Model,
        #[serde(default)]
        added_tokens: Vec<Added>,
    }
    let tok: Tok = serde_json::from_str(tokenizer_json)
        .map_err(|e| Error::Format(format!("not a tokenizer.json with a BPE vocab: {e}")))?;
    let first_special = tok
        .added_tokens
        .iter()
        .filter(|a| a.special)
        .map(|a| a.id)
        .min()
        .unwrap_or(u32::MAX);
    let n = tok
        .model
        .vocab
        .values()
        .filter(|&&id| id < first_special)
        .count();
    let table = unicode_to_byte();
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
    for (text, &id) in &tok.model.vocab {
        if id >= first_special {
            continue;
        }
        let slot = tokens
            .get_mut(id as usize)
            .ok_or_else(|| Error::Format(format!("token ids are not contiguous: {id} ≥ {n}")))?;
        let bytes = text
            .chars()
            .map(|c| table.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| Error::Format(format!("token {id} {text:?} is not byte-level BPE")))?;
        if slot.replace(bytes).is_some() {
            return Err(Error::Format(format!("token id {id} appears twice")));
        }
    }
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| Error::Format(format!("token id {i} is missing"))))
        .collect()
}

/// Writes the whole ggml file for `model` to `w`.
pub fn write_ggml(
    model: &Ct2Model,
    tokens: &[Vec<u8>],
    w: &mut impl Write,
) -> Result<WhisperHparams> {
    let h = ct2_hparams(model)?;
    if tokens.len() > h.n_vocab as usize {
        return Err(Error::Format(format!(
            "tokenizer has {} tokens, model vocabulary only {}",
            tokens.len(),
            h.n_vocab
        )));
    }
    let mut out = GgmlWriter { w };
    out.i32(GGML_MAGIC as i32)?;
    for v in h.as_array() {
        out.i32(v)?;
    }
    let n_bins = N_FFT / 2 + 1;
    out.i32(h.n_mels)?;
    out.i32(n_bins as i32)?;
    for v in mel_filters(SAMPLE_RATE, N_FFT, h.n_mels as usize) {
        out.bytes(&v.to_le_bytes())?;
    }
    out.i32(dim_i32(tokens.len(), "token count")?)?;
    for t in tokens {
        out.i32(dim_i32(t.len(), "token length")?)?;
        out.bytes(t)?;
    }

    let conv = |out: &mut GgmlWriter<_>, n: u32| -> Result<()> {
        let p = format!("encoder/conv{n}");
        out.tensor(
            model,
            &format!("encoder.conv{n}.weight"),
            &format!("{p}/weight"),
            Part::All,
            Kind::Matrix,
        )?;
        out.tensor(
            model,
            &format!("encoder.conv{n}.bias"),
            &format!("{p}/bias"),
            Part::All,
            Kind::ConvBias,
        )
    };
    conv(&mut out, 1)?;
    conv(&mut out, 2)?;
    out.tensor(
        model,
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        Part::All,
        Kind::F32,
    )?;
    for i in 0..h.n_audio_layer {
        let (dst, src) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        out.self_attention(model, &dst, &src)?;
        out.ffn(model, &dst, &src)?;
    }
    out.layer_norm(model, "encoder.ln_post", "encoder/layer_norm")?;

    out.tensor(
        model,
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        Part::All,
        Kind::Matrix,
    )?;
    out.tensor(
        model,
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        Part::All,
        Kind::F32,
    )?;
    for i in 0..h.n_text_layer {
        let (dst, src) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        out.self_attention(model, &dst, &src)?;
        out.layer_norm(
            model,
            &format!("{dst}.cross_attn_ln"),
            &format!("{src}/attention/layer_norm"),
        )?;
        out.linear(
            model,
            &format!("{dst}.cross_attn.query"),
            &format!("{src}/attention/linear_0"),
        )?;
        // Cross-attention k and v are fused as [k; v] in linear_1: split in halves.
        let kv = format!("{src}/attention/linear_1");
        out.tensor(
            model,
            &format!("{dst}.cross_attn.key.weight"),
            &format!("{kv}/weight"),
            Part::Of(0, 2),
            Kind::Matrix,
        )?;
        out.zero_bias(model, &format!("{kv}/bias"), Part::Of(0, 2))?;
        out.tensor(
            model,
            &format!("{dst}.cross_attn.value.weight"),
            &format!("{kv}/weight"),
            Part::Of(1, 2),
            Kind::Matrix,
        )?;
        out.tensor(
            model,
            &format!("{dst}.cross_attn.value.bias"),
            &format!("{kv}/bias"),
            Part::Of(1, 2),
            Kind::F32,
        )?;
        out.linear(
            model,
            &format!("{dst}.cross_attn.out"),
            &format!("{src}/attention/linear_2"),
        )?;
        out.ffn(model, &dst, &src)?;
    }
    out.layer_norm(model, "decoder.ln", "decoder/layer_norm")?;
    out.w
        .flush()
        .map_err(|e| Error::io("writing the ggml model", e))?;
    Ok(h)
}

/// Which slice of a variable's outermost dimension to take.
#[derive(Clone, Copy)]
enum Part {
    All,
    /// Part `i` of `n` equal parts (a fused projection).
    Of(usize, usize),
}

/// How a tensor is stored in the ggml file.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// f16 (2-D/3-D weights).
    Matrix,
    /// f32 as is (1-D tensors, positional embeddings).
    F32,
    /// f32, reshaped `[n] → [n, 1]` as whisper.cpp expects for conv biases.
    ConvBias,
}

struct GgmlWriter<'w, W: Write> {
    w: &'w mut W,
}

impl<W: Write> GgmlWriter<'_, W> {
    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.w
            .write_all(b)
            .map_err(|e| Error::io("writing the ggml model", e))
    }
    fn i32(&mut self, v: i32) -> Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    /// Takes `part` of CTranslate2 variable `src` and writes it as ggml tensor `name`.
    fn tensor(
        &mut self,
        model: &Ct2Model,
        name: &str,
        src: &str,
        part: Part,
        kind: Kind,
    ) -> Result<()> {
        let (shape, data) = slice(model, src, part)?;
        let shape = if kind == Kind::ConvBias {
            match shape[..] {
                [n] => vec![n, 1],
                _ => {
                    return Err(Error::Format(format!(
                        "{src}: conv bias must be 1-D, got {shape:?}"
                    )))
                }
            }
        } else {
            shape
        };
        let f16_out = kind == Kind::Matrix;
        self.i32(dim_i32(shape.len(), "rank")?)?;
        self.i32(dim_i32(name.len(), "name length")?)?;
        self.i32(i32::from(f16_out))?;
        for &d in shape.iter().rev() {
            self.i32(dim_i32(d, name)?)?;
        }
        self.bytes(name.as_bytes())?;
        let mut buf = Vec::with_capacity(data.len() * if f16_out { 2 } else { 4 });
        for v in data {
            if f16_out {
                buf.extend_from_slice(&f16::from_f32(v).to_le_bytes());
            } else {
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.bytes(&buf)
    }

    fn linear(&mut self, model: &Ct2Model, dst: &str, src: &str) -> Result<()> {
        self.tensor(
            model,
            &format!("{dst}.weight"),
            &format!("{src}/weight"),
            Part::All,
            Kind::Matrix,
        )?;
        self.tensor(
            model,
            &format!("{dst}.bias"),
            &format!("{src}/bias"),
            Part::All,
            Kind::F32,
        )
    }

    fn layer_norm(&mut self, model: &Ct2Model, dst: &str, src: &str) -> Result<()> {
        self.tensor(
            model,
            &format!("{dst}.weight"),
            &format!("{src}/gamma"),
            Part::All,
            Kind::F32,
        )?;
        self.tensor(
            model,
            &format!("{dst}.bias"),
            &format!("{src}/beta"),
            Part::All,
            Kind::F32,
        )
    }

    /// A block's self-attention (same layout in the encoder and the decoder).
    fn self_attention(&mut self, model: &Ct2Model, dst: &str, src: &str) -> Result<()> {
        self.layer_norm(
            model,
            &format!("{dst}.attn_ln"),
            &format!("{src}/self_attention/layer_norm"),
        )?;
        self.fused_qkv(
            model,
            &format!("{dst}.attn"),
            &format!("{src}/self_attention"),
        )?;
        self.linear(
            model,
            &format!("{dst}.attn.out"),
            &format!("{src}/self_attention/linear_1"),
        )
    }

    fn ffn(&mut self, model: &Ct2Model, dst: &str, src: &str) -> Result<()> {
        self.layer_norm(
            model,
            &format!("{dst}.mlp_ln"),
            &format!("{src}/ffn/layer_norm"),
        )?;
        self.linear(
            model,
            &format!("{dst}.mlp.0"),
            &format!("{src}/ffn/linear_0"),
        )?;
        self.linear(
            model,
            &format!("{dst}.mlp.2"),
            &format!("{src}/ffn/linear_1"),
        )
    }

    /// Self-attention: CTranslate2 stores `[q; k; v]` in `linear_0`; Whisper has no key bias.
    fn fused_qkv(&mut self, model: &Ct2Model, dst: &str, src: &str) -> Result<()> {
        let (w, b) = (
            format!("{src}/linear_0/weight"),
            format!("{src}/linear_0/bias"),
        );
        self.tensor(
            model,
            &format!("{dst}.query.weight"),
            &w,
            Part::Of(0, 3),
            Kind::Matrix,
        )?;
        self.tensor(
            model,
            &format!("{dst}.query.bias"),
            &b,
            Part::Of(0, 3),
            Kind::F32,
        )?;
        self.tensor(
            model,
            &format!("{dst}.key.weight"),
            &w,
            Part::Of(1, 3),
            Kind::Matrix,
        )?;
        self.zero_bias(model, &b, Part::Of(1, 3))?;
        self.tensor(
            model,
            &format!("{dst}.value.weight"),
            &w,
            Part::Of(2, 3),
            Kind::Matrix,
        )?;
        self.tensor(
            model,
            &format!("{dst}.value.bias"),
            &b,
            Part::Of(2, 3),
            Kind::F32,
        )
    }

    /// Checks that a key bias CTranslate2 padded in is zero: dropping it is then exact.
    fn zero_bias(&mut self, model: &Ct2Model, src: &str, part: Part) -> Result<()> {
        let (_, data) = slice(model, src, part)?;
        match data.iter().find(|v| **v != 0.0) {
            Some(v) => Err(Error::Format(format!(
                "{src}: key bias has non-zero value {v}; whisper.cpp has no key bias, so this is not a Whisper model"
            ))),
            None => Ok(()),
        }
    }
}

/// Part of a variable's outermost dimension, as f32, with its shape.
fn slice(model: &Ct2Model, src: &str, part: Part) -> Result<(Vec<usize>, Vec<f32>)> {
    let v = model.get(src)?;
    let data = model.to_f32(v)?;
    match part {
        Part::All => Ok((v.shape.clone(), data)),
        Part::Of(i, n) => {
            let outer = *v
                .shape
                .first()
                .ok_or_else(|| Error::Format(format!("{src} is a scalar")))?;
            if outer % n != 0 {
                return Err(Error::Format(format!(
                    "{src}: fused dimension {outer} is not divisible into {n} parts"
                )));
            }
            let per = data.len() / n;
            let mut shape = v.shape.clone();
            shape[0] = outer / n;
            Ok((shape, data[i * per..(i + 1) * per].to_vec()))
        }
    }
}
