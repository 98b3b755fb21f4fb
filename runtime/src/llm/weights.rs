//! The engine's view of a model: hyper-parameters and borrowed weight tensors.
//!
//! Everything here borrows from the memory-mapped model file (or from test data);
//! nothing is copied at load.
use crate::llm::ops::RopeStyle;
use crate::{Error, Result};
use half::f16;
use hearth_quant::dispatch::PackedData;
use hearth_quant::packed::{packed_row_block, BlockQ4Ax4, BlockQ4x4, BlockQ8x4};
use hearth_quant::{PackedMatrix, QK};

/// The hyper-parameters the forward pass needs (a subset of the model config).
#[derive(Clone, Debug, PartialEq)]
pub struct Hparams {
    /// Vocabulary size (rows of the embedding and of the output head).
    pub vocab_size: usize,
    /// Model width.
    pub dim: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Dimensions per head.
    pub head_dim: usize,
    /// Hidden width of the MLP.
    pub ffn_dim: usize,
    /// RoPE base.
    pub rope_theta: f32,
    /// RoPE pairing.
    pub rope_style: RopeStyle,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Longest context the model was trained for.
    pub context_length: usize,
}

impl Hparams {
    /// Width of all query heads.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    /// Width of all key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Reject shapes the forward pass cannot run (instead of panicking later).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("unsupported model shape: {m}")));
        if self.vocab_size == 0
            || self.dim == 0
            || self.n_layers == 0
            || self.n_heads == 0
            || self.n_kv_heads == 0
        {
            return bad(format!("{self:?}"));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even and > 0", self.head_dim));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        for (what, v) in [
            ("dim", self.dim),
            ("ffn_dim", self.ffn_dim),
            ("q_dim", self.q_dim()),
        ] {
            if !v.is_multiple_of(QK) {
                return bad(format!("{what} {v} is not a multiple of {QK}"));
            }
        }
        if !self.norm_eps.is_finite()
            || self.norm_eps < 0.0
            || !self.rope_theta.is_finite()
            || self.rope_theta <= 0.0
        {
            return bad(format!(
                "norm_eps {} / rope_theta {}",
                self.norm_eps, self.rope_theta
            ));
        }
        Ok(())
    }
}

/// A weight matrix (`rows × cols`, `y = W·x`), in whatever form the file holds it.
#[derive(Clone, Copy, Debug)]
pub enum Matrix<'a> {
    /// Block-quantized, row-interleaved: multiplied by Q8 activations.
    Packed(PackedMatrix<'a>),
    /// Row-major f32.
    F32 {
        rows: usize,
        cols: usize,
        data: &'a [f32],
    },
    /// Row-major f16.
    F16 {
        rows: usize,
        cols: usize,
        data: &'a [f16],
    },
}

impl<'a> Matrix<'a> {
    /// Rows (outputs).
    pub fn rows(&self) -> usize {
        match self {
            Matrix::Packed(p) => p.rows(),
            Matrix::F32 { rows, .. } | Matrix::F16 { rows, .. } => *rows,
        }
    }
    /// Columns (inputs).
    pub fn cols(&self) -> usize {
        match self {
            Matrix::Packed(p) => p.cols(),
            Matrix::F32 { cols, .. } | Matrix::F16 { cols, .. } => *cols,
        }
    }

    /// A float matrix, checking its length.
    pub fn f32(rows: usize, cols: usize, data: &'a [f32]) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::Format(format!(
                "f32 matrix {rows}×{cols} has {} values",
                data.len()
            )));
        }
        Ok(Matrix::F32 { rows, cols, data })
    }

    /// Row `row` as f32 (the embedding lookup). `out.len() == cols`.
    pub fn row_into(&self, row: usize, out: &mut [f32]) {
        match self {
            Matrix::F32 { cols, data, .. } => {
                out.copy_from_slice(&data[row * cols..(row + 1) * cols])
            }
            Matrix::F16 { cols, data, .. } => {
                for (o, v) in out.iter_mut().zip(&data[row * cols..(row + 1) * cols]) {
                    *o = v.to_f32();
                }
            }
            Matrix::Packed(p) => {
                let nb = p.blocks_per_row();
                for (kb, o) in out.chunks_exact_mut(QK).enumerate() {
                    match p.data() {
                        PackedData::Q8(b) => {
                            let blk = packed_row_block::<BlockQ8x4>(b, nb, row, kb);
                            let d = blk.d.to_f32();
                            for (x, &q) in o.iter_mut().zip(&blk.qs) {
                                *x = d * q as f32;
                            }
                        }
                        PackedData::Q4(b) => {
                            let blk = packed_row_block::<BlockQ4x4>(b, nb, row, kb);
                            let d = blk.d.to_f32();
                            for (i, x) in o.iter_mut().enumerate() {
                                *x = d * (blk.nibble(i) as f32 - 8.0);
                            }
                        }
                        PackedData::Q4A(b) => {
                            let blk = packed_row_block::<BlockQ4Ax4>(b, nb, row, kb);
                            let (d, m) = (blk.d.to_f32(), blk.m.to_f32());
                            for (i, x) in o.iter_mut().enumerate() {
                                *x = d * blk.nibble(i) as f32 + m;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One transformer block's weights.
#[derive(Clone, Debug)]
pub struct LayerWeights<'a> {
    /// `[dim]`
    pub attn_norm: &'a [f32],
    /// `[q_dim × dim]`
    pub wq: Matrix<'a>,
    /// `[kv_dim × dim]`
    pub wk: Matrix<'a>,
    /// `[kv_dim × dim]`
    pub wv: Matrix<'a>,
    /// Qwen2 biases: `[q_dim]`, `[kv_dim]`, `[kv_dim]`.
    pub bq: Option<&'a [f32]>,
    /// See `bq`.
    pub bk: Option<&'a [f32]>,
    /// See `bq`.
    pub bv: Option<&'a [f32]>,
    /// `[dim × q_dim]`
    pub wo: Matrix<'a>,
    /// `[dim]`
    pub ffn_norm: &'a [f32],
    /// `[ffn × dim]`
    pub w_gate: Matrix<'a>,
    /// `[ffn × dim]`
    pub w_up: Matrix<'a>,
    /// `[dim × ffn]`
    pub w_down: Matrix<'a>,
}

/// All weights of a Llama-family model.
#[derive(Clone, Debug)]
pub struct Weights<'a> {
    /// Shapes and constants.
    pub hp: Hparams,
    /// `[vocab × dim]`
    pub token_embd: Matrix<'a>,
    /// Transformer blocks.
    pub layers: Vec<LayerWeights<'a>>,
    /// `[dim]`
    pub output_norm: &'a [f32],
    /// `[vocab × dim]`; the embedding itself when tied.
    pub output: Matrix<'a>,
}

impl Weights<'_> {
    /// Check every tensor's shape against the hyper-parameters, so a malformed file
    /// is an error at load instead of a panic mid-generation.
    pub fn validate(&self) -> Result<()> {
        let hp = &self.hp;
        hp.validate()?;
        let mat = |name: &str, m: &Matrix<'_>, rows: usize, cols: usize| -> Result<()> {
            if m.rows() != rows || m.cols() != cols {
                return Err(Error::Format(format!(
                    "tensor {name}: shape {}×{}, expected {rows}×{cols}",
                    m.rows(),
                    m.cols()
                )));
            }
            Ok(())
        };
        let vec = |name: &str, v: Option<&[f32]>, len: usize| -> Result<()> {
            match v {
                Some(v) if v.len() != len => Err(Error::Format(format!(
                    "tensor {name}: {} values, expected {len}",
                    v.len()
                ))),
                _ => Ok(()),
            }
        };
        if self.layers.len() != hp.n_layers {
            return Err(Error::Format(format!(
                "{} layers, expected {}",
                self.layers.len(),
                hp.n_layers
            )));
        }
        mat("token_embd.weight", &self.token_embd, hp.vocab_size, hp.dim)?;
        mat("output.weight", &self.output, hp.vocab_size, hp.dim)?;
        vec("output_norm.weight", Some(self.output_norm), hp.dim)?;
        for (i, l) in self.layers.iter().enumerate() {
            let n = |s: &str| format!("blk.{i}.{s}");
            vec(&n("attn_norm.weight"), Some(l.attn_norm), hp.dim)?;
            vec(&n("ffn_norm.weight"), Some(l.ffn_norm), hp.dim)?;
            mat(&n("attn_q.weight"), &l.wq, hp.q_dim(), hp.dim)?;
            mat(&n("attn_k.weight"), &l.wk, hp.kv_dim(), hp.dim)?;
            mat(&n("attn_v.weight"), &l.wv, hp.kv_dim(), hp.dim)?;
            mat(&n("attn_output.weight"), &l.wo, hp.dim, hp.q_dim())?;
            mat(&n("ffn_gate.weight"), &l.w_gate, hp.ffn_dim, hp.dim)?;
            mat(&n("ffn_up.weight"), &l.w_up, hp.ffn_dim, hp.dim)?;
            mat(&n("ffn_down.weight"), &l.w_down, hp.dim, hp.ffn_dim)?;
            vec(&n("attn_q.bias"), l.bq, hp.q_dim())?;
            vec(&n("attn_k.bias"), l.bk, hp.kv_dim())?;
            vec(&n("attn_v.bias"), l.bv, hp.kv_dim())?;
        }
        Ok(())
    }
}
