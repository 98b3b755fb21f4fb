//! [`QuantPolicy`]: which format each tensor gets in the converted model.
use crate::model::TensorFormat;
use crate::{Error, Result};

/// How to store the weight matrices of a converted model. Norm weights and biases are
/// always f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuantPolicy {
    /// Carry GGUF blocks over bit for bit where a Hearth format has the same block
    /// (`Q8_0`→Q8x4, `Q4_0`→Q4x4, `Q4_1`→Q4Ax4); anything else (F32/F16/BF16
    /// matrices, K-quants…) gets the [`Mixed`](Self::Mixed) choice for that tensor.
    Keep,
    /// Every matrix 4-bit symmetric.
    Q4,
    /// Every matrix 4-bit asymmetric.
    Q4A,
    /// Every matrix 8-bit.
    Q8,
    /// 4-bit symmetric for attention and FFN matrices, 8-bit for the embedding and the
    /// output head (the tensors most sensitive to quantization).
    #[default]
    Mixed,
}

/// Block type of a source tensor, as far as carrying it over is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceBlocks {
    /// GGUF `Q8_0` (same block as [`hearth_quant::BlockQ8`]).
    Q8_0,
    /// GGUF `Q4_0` (same block as [`hearth_quant::BlockQ4`]).
    Q4_0,
    /// GGUF `Q4_1` (same block as [`hearth_quant::BlockQ4A`]).
    Q4_1,
    /// Anything else: floats, other quantizations.
    Other,
}

impl SourceBlocks {
    /// The Hearth format holding this block type unchanged.
    pub fn carry_format(self) -> Option<TensorFormat> {
        match self {
            SourceBlocks::Q8_0 => Some(TensorFormat::Q8x4),
            SourceBlocks::Q4_0 => Some(TensorFormat::Q4x4),
            SourceBlocks::Q4_1 => Some(TensorFormat::Q4Ax4),
            SourceBlocks::Other => None,
        }
    }
}

/// The embedding table and the output head.
fn is_head_or_embedding(name: &str) -> bool {
    name == "token_embd.weight" || name == "output.weight"
}

impl QuantPolicy {
    /// Format of tensor `name` (a vector when `is_vector`) stored as `source` in the
    /// input. When the result equals `source.carry_format()`, the converter copies
    /// the blocks bit for bit instead of requantizing.
    pub fn format_for(self, name: &str, is_vector: bool, source: SourceBlocks) -> TensorFormat {
        if is_vector {
            return TensorFormat::F32;
        }
        let mixed = if is_head_or_embedding(name) {
            TensorFormat::Q8x4
        } else {
            TensorFormat::Q4x4
        };
        match self {
            QuantPolicy::Keep => source.carry_format().unwrap_or(mixed),
            QuantPolicy::Q4 => TensorFormat::Q4x4,
            QuantPolicy::Q4A => TensorFormat::Q4Ax4,
            QuantPolicy::Q8 => TensorFormat::Q8x4,
            QuantPolicy::Mixed => mixed,
        }
    }

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            QuantPolicy::Keep => "keep",
            QuantPolicy::Q4 => "q4",
            QuantPolicy::Q4A => "q4a",
            QuantPolicy::Q8 => "q8",
            QuantPolicy::Mixed => "mixed",
        }
    }
}

impl std::fmt::Display for QuantPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QuantPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "keep" => QuantPolicy::Keep,
            "q4" => QuantPolicy::Q4,
            "q4a" => QuantPolicy::Q4A,
            "q8" => QuantPolicy::Q8,
            "mixed" => QuantPolicy::Mixed,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown quantization policy `{s}` (keep, q4, q4a, q8, mixed)"
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SourceBlocks::*;

    #[test]
    fn formats_by_policy() {
        let f = |p: QuantPolicy, n: &str, s| p.format_for(n, false, s);
        assert_eq!(
            f(QuantPolicy::Keep, "blk.0.attn_q.weight", Q4_1),
            TensorFormat::Q4Ax4
        );
        assert_eq!(
            f(QuantPolicy::Keep, "blk.0.attn_q.weight", Q4_0),
            TensorFormat::Q4x4
        );
        assert_eq!(
            f(QuantPolicy::Keep, "token_embd.weight", Q8_0),
            TensorFormat::Q8x4
        );
        assert_eq!(
            f(QuantPolicy::Keep, "token_embd.weight", Other),
            TensorFormat::Q8x4
        );
        assert_eq!(
            f(QuantPolicy::Keep, "blk.0.ffn_up.weight", Other),
            TensorFormat::Q4x4
        );
        assert_eq!(
            f(QuantPolicy::Mixed, "output.weight", Q4_1),
            TensorFormat::Q8x4
        );
        assert_eq!(
            f(QuantPolicy::Mixed, "blk.3.ffn_down.weight", Q8_0),
            TensorFormat::Q4x4
        );
        assert_eq!(
            f(QuantPolicy::Q4A, "token_embd.weight", Q8_0),
            TensorFormat::Q4Ax4
        );
        assert_eq!(
            QuantPolicy::Q8.format_for("blk.0.attn_norm.weight", true, Other),
            TensorFormat::F32
        );
    }

    #[test]
    fn parses_and_prints() {
        for p in [
            QuantPolicy::Keep,
            QuantPolicy::Q4,
            QuantPolicy::Q4A,
            QuantPolicy::Q8,
            QuantPolicy::Mixed,
        ] {
            assert_eq!(p.as_str().parse::<QuantPolicy>().unwrap(), p);
        }
        assert!("q5"
            .parse::<QuantPolicy>()
            .unwrap_err()
            .to_string()
            .contains("unknown quantization policy `q5`"));
    }
}
