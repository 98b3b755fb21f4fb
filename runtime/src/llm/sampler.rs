//! Picking the next token from logits: greedy, or temperature sampling with top-k,
//! top-p, min-p and a repetition penalty, driven by a seeded RNG (same seed, same
//! logits → same tokens).
//!
//! Order of the steps (llama.cpp's default chain): repetition penalty → top-k →
//! top-p → min-p → temperature → draw.
use crate::{Error, Result};

/// Sampling settings. `temperature <= 0` means greedy (argmax), whatever the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0` = greedy.
    pub temperature: f32,
    /// Keep the `k` most likely tokens (`0` = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `p` (`1` = all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p ×` the most likely one (`0` = none).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recently seen tokens by
    /// this (`1` = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Reject values that make no sense (NaN, negative, p outside 0..=1).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(format!("sampler: {m}")));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(&format!("temperature {} must be ≥ 0", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad(&format!("top-p {} must be in 0..=1", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(&format!("min-p {} must be in 0..=1", self.min_p));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return bad(&format!(
                "repeat penalty {} must be > 0",
                self.repeat_penalty
            ));
        }
        Ok(())
    }
}

/// A small, fast, seedable RNG (xoshiro256**, seeded through splitmix64).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The index of the largest logit (the first one on a tie).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// A stateful sampler (its RNG advances with every draw).
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// Candidate (logit or probability, id) pairs; reused between calls.
    cand: Vec<(f32, u32)>,
    /// Logits after the penalty; reused between calls.
    work: Vec<f32>,
}

impl Sampler {
    /// A sampler with these settings (validated).
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            rng: Rng::new(cfg.seed),
            cfg,
            cand: Vec::new(),
            work: Vec::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Pick the next token given the logits and the tokens so far (for the penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let cfg = &self.cfg;
        let penalize = cfg.repeat_penalty != 1.0 && cfg.repeat_last_n > 0 && !history.is_empty();
        let logits = if penalize {
            self.work.clear();
            self.work.extend_from_slice(logits);
            let recent = &history[history.len().saturating_sub(cfg.repeat_last_n)..];
            // Each distinct token is penalized once, however often it appeared.
            for (i, &t) in recent.iter().enumerate() {
                if recent[..i].contains(&t) {
                    continue;
                }
                if let Some(l) = self.work.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / cfg.repeat_penalty
                    } else {
                        *l * cfg.repeat_penalty
                    };
                }
            }
            &self.work[..]
        } else {
            logits
        };
        if cfg.temperature <= 0.0 {
            return argmax(logits);
        }

        // top-k: keep the k largest, sorted descending
        let cand = &mut self.cand;
        cand.clear();
        cand.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let k = if cfg.top_k == 0 {
            cand.len()
        } else {
            cfg.top_k.min(cand.len())
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, desc);
            cand.truncate(k);
        }
        cand.sort_unstable_by(desc);

        // probabilities at temperature 1 for top-p / min-p
        let max = cand[0].0;
        let mut sum = 0.0f32;
        for c in cand.iter_mut() {
            c.0 = (c.0 - max).exp();
            sum += c.0;
        }
        // top-p: smallest prefix reaching p (at least one token)
        if cfg.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = cand.len();
            for (i, c) in cand.iter().enumerate() {
                acc += c.0 / sum;
                if acc >= cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
        }
        // min-p: relative to the top probability (cand[0].0 == 1 after the shift)
        if cfg.min_p > 0.0 {
            let keep = cand.iter().take_while(|c| c.0 >= cfg.min_p).count().max(1);
            cand.truncate(keep);
        }
        // temperature: p^(1/T) renormalized is softmax(logit / T)
        let inv_t = 1.0 / cfg.temperature;
        let mut total = 0.0f32;
        for c in cand.iter_mut() {
            c.0 = c.0.powf(inv_t);
            total += c.0;
        }
        let r = self.rng.next_f32() * total;
        let mut acc = 0.0;
        for c in cand.iter() {
            acc += c.0;
            if r < acc {
                return c.1;
            }
        }
        cand.last().map(|c| c.1).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| ((i * 37 % 101) as f32) * 0.05).collect()
    }

    #[test]
    fn greedy_is_argmax() {
        let l = logits();
        let best = argmax(&l);
        assert!(l.iter().all(|&v| v <= l[best as usize]));
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&l, &[]), best);
    }

    #[test]
    fn same_seed_same_tokens() {
        let l = logits();
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 42,
            ..Default::default()
        };
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone()).unwrap();
            (0..50).map(|_| s.sample(&l, &[])).collect::<Vec<_>>()
        };
        let a = draw(&cfg);
        assert_eq!(a, draw(&cfg));
        assert_ne!(
            a,
            draw(&SamplerConfig {
                seed: 43,
                ..cfg.clone()
            })
        );
        // Not degenerate: several distinct tokens at T = 1 over a flat-ish distribution.
        let mut u = a.clone();
        u.sort();
        u.dedup();
        assert!(u.len() > 5);
    }

    #[test]
    fn top_k_limits_the_choice() {
        let l = logits();
        let mut sorted: Vec<u32> = (0..l.len() as u32).collect();
        sorted.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
        let cfg = SamplerConfig {
            temperature: 5.0,
            top_k: 3,
            top_p: 1.0,
            min_p: 0.0,
            seed: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg).unwrap();
        for _ in 0..200 {
            assert!(sorted[..3].contains(&s.sample(&l, &[])));
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // One dominant token (p ≈ 0.88) and many small ones.
        let mut l = vec![0.0f32; 50];
        l[7] = 6.0;
        for (name, cfg) in [
            (
                "top-p",
                SamplerConfig {
                    temperature: 1.0,
                    top_k: 0,
                    top_p: 0.5,
                    min_p: 0.0,
                    ..Default::default()
                },
            ),
            (
                "min-p",
                SamplerConfig {
                    temperature: 1.0,
                    top_k: 0,
                    top_p: 1.0,
                    min_p: 0.1,
                    ..Default::default()
                },
            ),
        ] {
            let mut s = Sampler::new(cfg).unwrap();
            for _ in 0..100 {
                assert_eq!(s.sample(&l, &[]), 7, "{name}");
            }
        }
    }

    #[test]
    fn repetition_penalty_changes_the_winner() {
        let mut l = vec![0.0f32; 10];
        l[3] = 2.0;
        l[4] = 1.5;
        let cfg = SamplerConfig {
            repeat_penalty: 1.5,
            ..SamplerConfig::greedy()
        };
        let mut s = Sampler::new(cfg).unwrap();
        assert_eq!(s.sample(&l, &[]), 3);
        assert_eq!(s.sample(&l, &[3, 3]), 4); // 2.0 / 1.5 < 1.5
                                              // A negative logit gets more negative.
        l[4] = -1.0;
        l[3] = -0.9;
        l[0] = -1.2;
        for v in l.iter_mut().skip(5) {
            *v = -5.0;
        }
        l[1] = -5.0;
        l[2] = -5.0;
        assert_eq!(s.sample(&l, &[3]), 4); // -0.9 · 1.5 = -1.35 < -1.0
    }

    #[test]
    fn invalid_settings_are_rejected() {
        for cfg in [
            SamplerConfig {
                temperature: -1.0,
                ..Default::default()
            },
            SamplerConfig {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplerConfig {
                top_p: 1.5,
                ..Default::default()
            },
            SamplerConfig {
                min_p: -0.1,
                ..Default::default()
            },
            SamplerConfig {
                repeat_penalty: 0.0,
                ..Default::default()
            },
        ] {
            assert!(Sampler::new(cfg).is_err());
        }
    }
}
