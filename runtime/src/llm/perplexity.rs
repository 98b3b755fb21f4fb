//! Perplexity the way llama.cpp's `llama-perplexity` computes it, so the figures
//! compare: split the tokenized text into non-overlapping windows of `ctx`
//! tokens, run each window from an empty cache (its first token replaced by BOS
//! when the model adds one), and score only the second half of each window —
//! every token there has at least `ctx / 2` tokens of context.
use crate::llm::engine::Engine;
use crate::{Error, Result};

/// The result: `ppl ± stderr` as llama.cpp prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Standard error of `ppl` (delta method, as llama.cpp).
    pub stderr: f64,
    /// Windows evaluated.
    pub chunks: usize,
    /// Tokens scored.
    pub tokens: usize,
}

/// `log softmax(logits)[tok]`, accumulated in f64.
pub fn log_prob(logits: &[f32], tok: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    (logits[tok as usize] - max) as f64 - sum.ln()
}

/// Perplexity of `tokens` (already tokenized, with BOS if the model adds one) over
/// windows of `ctx` tokens; at most `max_chunks` windows. `progress(i, ppl_so_far)`
/// is called after each window.
pub fn perplexity(
    engine: &Engine,
    tokens: &[u32],
    ctx: usize,
    max_chunks: Option<usize>,
    mut progress: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    if ctx < 4 {
        return Err(Error::Invalid(format!(
            "perplexity context {ctx} is too small (at least 4)"
        )));
    }
    let available = tokens.len() / ctx;
    let chunks = max_chunks.map_or(available, |m| m.min(available));
    if chunks == 0 {
        return Err(Error::Invalid(format!(
            "the text has {} tokens, fewer than one {ctx}-token window",
            tokens.len()
        )));
    }
    let bos = engine.info().bos_id.filter(|_| engine.info().add_bos);
    let first = ctx / 2;
    let mut session = engine.new_session(ctx)?;
    let mut window = vec![0u32; ctx];
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    for c in 0..chunks {
        window.copy_from_slice(&tokens[c * ctx..(c + 1) * ctx]);
        if let Some(b) = bos {
            window[0] = b;
        }
        session.reset();
        // logits after position j predict tokens[j + 1]; score j in first..ctx-1
        let mut err = None;
        session.eval_logits(&window, first, |j, logits| {
            if j + 1 < ctx {
                let next = tokens[c * ctx + j + 1];
                if (next as usize) < logits.len() {
                    let lp = log_prob(logits, next);
                    nll -= lp;
                    nll2 += lp * lp;
                    count += 1;
                } else {
                    err = Some(next);
                }
            }
        })?;
        if let Some(t) = err {
            return Err(Error::Invalid(format!(
                "token id {t} is outside the vocabulary"
            )));
        }
        progress(c, (nll / count as f64).exp());
    }
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let stderr = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        stderr,
        chunks,
        tokens: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prob_of_uniform_and_peaked() {
        let l = vec![0.0f32; 8];
        assert!((log_prob(&l, 3) - (1.0f64 / 8.0).ln()).abs() < 1e-9);
        let mut p = vec![0.0f32; 4];
        p[1] = 100.0;
        assert!(log_prob(&p, 1).abs() < 1e-9);
        assert!(log_prob(&p, 0) < -99.0);
    }
}
