//! Training: a two-layer network on hashed n-gram features, in plain f32, single
//! thread, fixed seed, IEEE operations only (no libm): the same weights on every run
//! and every machine. The first layer is sparse (an
//! utterance sets ~50 of ~1000 buckets), so an epoch over ~30k samples takes well
//! under a second.
use hearth_quant::classifier::exp_nonpositive;
use hearth_quant::classifier::features::featurize;

use super::sample::Sample;
use super::Rng;

/// Network and optimizer settings.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Feature buckets (a multiple of 32).
    pub buckets: usize,
    /// Hidden units (a multiple of 32).
    pub hidden: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Initial SGD learning rate (decays linearly to a tenth).
    pub lr: f32,
    /// Seed of the initial weights and the sample order.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            buckets: 1024,
            hidden: 32,
            epochs: 12,
            lr: 0.1,
            seed: 8,
        }
    }
}

/// The trained f32 network. `w1` is stored feature-major (`w1[j * hidden + i]`:
/// feature `j` → hidden unit `i`) so a sparse input touches contiguous weights;
/// [`Net::w1_rows`] gives the row-major matrix the kernels want.
#[derive(Debug, Clone)]
pub struct Net {
    /// Feature buckets.
    pub buckets: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Classes.
    pub classes: usize,
    /// First layer, feature-major.
    pub w1: Vec<f32>,
    /// First layer's bias.
    pub b1: Vec<f32>,
    /// Second layer, row-major (`classes × hidden`).
    pub w2: Vec<f32>,
    /// Second layer's bias.
    pub b2: Vec<f32>,
}

impl Net {
    /// The first layer as `hidden × buckets`, row-major.
    pub fn w1_rows(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.hidden * self.buckets];
        for j in 0..self.buckets {
            for i in 0..self.hidden {
                out[i * self.buckets + j] = self.w1[j * self.hidden + i];
            }
        }
        out
    }
}

/// The non-zero features of `text`.
pub fn sparse_features(text: &str, buckets: usize) -> Vec<(u32, f32)> {
    let mut x = vec![0.0f32; buckets];
    featurize(text.as_bytes(), &mut x);
    x.iter()
        .enumerate()
        .filter(|(_, &v)| v != 0.0)
        .map(|(j, &v)| (j as u32, v))
        .collect()
}

/// Trains on `samples` (labels below `classes`) with softmax cross-entropy and SGD.
pub fn train(samples: &[Sample], classes: usize, opts: &TrainOptions) -> Net {
    let (nf, nh) = (opts.buckets, opts.hidden);
    let mut rng = Rng::new(opts.seed);
    let mut uniform = |scale: f32, n: usize| -> Vec<f32> {
        (0..n).map(|_| (rng.unit() * 2.0 - 1.0) * scale).collect()
    };
    let mut net = Net {
        buckets: nf,
        hidden: nh,
        classes,
        // Inputs have unit norm: ±0.5 gives pre-activations of a few tenths.
        w1: uniform(0.5, nf * nh),
        b1: vec![0.0; nh],
        w2: uniform((6.0 / (nh + classes) as f32).sqrt(), classes * nh),
        b2: vec![0.0; classes],
    };
    let data: Vec<(Vec<(u32, f32)>, usize)> = samples
        .iter()
        .map(|s| (sparse_features(&s.text, nf), s.label))
        .collect();
    let mut order: Vec<usize> = (0..data.len()).collect();
    let (mut h, mut pre, mut p, mut dh) = (
        vec![0.0f32; nh],
        vec![0.0f32; nh],
        vec![0.0f32; classes],
        vec![0.0f32; nh],
    );
    for epoch in 0..opts.epochs {
        rng.shuffle(&mut order);
        let lr = opts.lr * (1.0 - 0.9 * epoch as f32 / opts.epochs.max(1) as f32);
        for &n in &order {
            let (x, label) = (&data[n].0, data[n].1);
            if x.is_empty() {
                continue;
            }
            // Forward.
            pre.copy_from_slice(&net.b1);
            for &(j, v) in x {
                let col = &net.w1[j as usize * nh..][..nh];
                for (a, w) in pre.iter_mut().zip(col) {
                    *a += v * w;
                }
            }
            for (hi, &a) in h.iter_mut().zip(&pre) {
                *hi = a.max(0.0);
            }
            for (c, pc) in p.iter_mut().enumerate() {
                let row = &net.w2[c * nh..][..nh];
                *pc = net.b2[c] + row.iter().zip(&h).map(|(w, x)| w * x).sum::<f32>();
            }
            let top = p.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0.0;
            for v in p.iter_mut() {
                // Not `f32::exp`: the platform's libm may differ in the last bit, and
                // the model file must come out the same everywhere (it is committed).
                *v = exp_nonpositive(*v - top);
                sum += *v;
            }
            // Backward: dz = softmax − one-hot.
            dh.iter_mut().for_each(|v| *v = 0.0);
            for (c, pc) in p.iter().enumerate() {
                let dz = pc / sum - if c == label { 1.0 } else { 0.0 };
                let row = &mut net.w2[c * nh..][..nh];
                for ((w, d), &hi) in row.iter_mut().zip(dh.iter_mut()).zip(&h) {
                    *d += dz * *w;
                    *w -= lr * dz * hi;
                }
                net.b2[c] -= lr * dz;
            }
            for (d, &a) in dh.iter_mut().zip(&pre) {
                if a <= 0.0 {
                    *d = 0.0;
                }
            }
            for &(j, v) in x {
                let col = &mut net.w1[j as usize * nh..][..nh];
                for (w, d) in col.iter_mut().zip(&dh) {
                    *w -= lr * v * d;
                }
            }
            for (b, d) in net.b1.iter_mut().zip(&dh) {
                *b -= lr * d;
            }
        }
    }
    net
}
