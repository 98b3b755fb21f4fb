//! The trained intent classifier (`hearth intent train`): a small network on hashed
//! word and character n-grams, trained on the host from the intent templates and run
//! by `hearth_quant::classifier`, the same no_std code the firmware runs from flash.
//!
//! - [`sample`]: the training set (template expansions with the home's names, "none"
//!   chatter, noise) and its held-out split.
//! - [`train`]: the f32 network and its training.
//! - [`file`]: the Hearth model file it is stored in (Q8 weights).
//! - `vocab`: wildcard phrases and the "none" class's chit-chat.
//! - [`IntentClassifier`]: a model file opened on the host.
pub mod file;
pub mod sample;
pub mod train;
mod vocab;

use std::path::Path;

use hearth_quant::classifier::features::MAX_INPUT;
use hearth_quant::classifier::file::ModelView;
use hearth_quant::classifier::{Classifier, Prediction};
use hearth_quant::Kernels;
use serde::{Deserialize, Serialize};

use crate::intent::{Home, IntentsFile, Source};
use crate::model::reader::read_layout;
use crate::{Error, Result};
use sample::{SampleOptions, SampleSet};
use train::TrainOptions;

/// The intents the classifier learns (plus [`sample::NONE_LABEL`]): those the assistant
/// handles (the LLM stage's list, `assist::llm::llm_intents`, when this was written), in
/// that order. Kept here, not taken from there, because the committed firmware model must
/// be reproducible: changing this list means retraining it
/// (`hearth intent train -o firmware-demo/model/intents.hearth`).
pub const INTENTS: &[&str] = &[
    "HassTurnOn",
    "HassTurnOff",
    "HassToggle",
    "HassGetState",
    "HassLightSet",
    "HassClimateSetTemperature",
    "HassSetVolume",
    "HassSetPosition",
    "HassStartTimer",
    "HassGetCurrentTime",
    "HassGetCurrentDate",
    "HassGetWeather",
    "HassMediaPause",
    "HassMediaUnpause",
    "HassMediaNext",
    "HassMediaPrevious",
    "HassNevermind",
];

/// The `kind` of a classifier file's metadata.
pub const KIND: &str = "intent-classifier";
/// The featurizer's name (`hearth_quant::classifier::features`); a change to its
/// hashing or scaling must change this name.
pub const FEATURIZER: &str = "hearth-ngram-v1";

/// The config section of a classifier file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`FEATURIZER`].
    pub featurizer: String,
    /// Input bytes the featurizer reads.
    pub max_input: usize,
    /// Feature buckets.
    pub buckets: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Class names (also in the tokenizer section, one per line, for no_std readers).
    pub labels: Vec<String>,
    /// Training seed.
    pub seed: u64,
    /// Training samples.
    pub train_samples: usize,
}

/// SplitMix64: a small, fast, fixed-seed generator (the training must be the same on
/// every run and every machine, so no OS randomness).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; 0 for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`, 24 bits.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Accuracy on a set of samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accuracy {
    /// Correctly classified.
    pub correct: usize,
    /// Samples.
    pub total: usize,
}

impl Accuracy {
    /// `correct / total` (0 for no samples).
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

/// What training produced, measured on the held-out split with the quantized model
/// run exactly as the device runs it (scalar kernels).
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Class names.
    pub labels: Vec<String>,
    /// Training samples.
    pub train_samples: usize,
    /// All held-out samples.
    pub heldout: Accuracy,
    /// Held-out samples as expanded.
    pub heldout_clean: Accuracy,
    /// Held-out samples with noise.
    pub heldout_noisy: Accuracy,
    /// Per class (same order as `labels`).
    pub per_class: Vec<Accuracy>,
    /// Model file size in bytes.
    pub file_bytes: usize,
}

/// Samples the templates of `intents`, trains, quantizes: the model file's bytes and
/// the held-out report.
pub fn train_classifier(
    data: &IntentsFile,
    src: &Source,
    home: &Home,
    intents: &[&str],
    sample_opts: &SampleOptions,
    train_opts: &TrainOptions,
) -> Result<(Vec<u8>, TrainReport)> {
    let set: SampleSet = sample::build(data, src, home, intents, sample_opts)?;
    let net = train::train(&set.train, set.labels.len(), train_opts);
    let meta = Meta {
        kind: KIND.into(),
        featurizer: FEATURIZER.into(),
        max_input: MAX_INPUT,
        buckets: train_opts.buckets,
        hidden: train_opts.hidden,
        labels: set.labels.clone(),
        seed: train_opts.seed,
        train_samples: set.train.len(),
    };
    let json = serde_json::to_value(&meta)
        .map_err(|e| Error::Invalid(format!("classifier metadata: {e}")))?;
    let bytes = file::to_bytes(&net, &set.labels, &json)?;
    let model = IntentClassifier::from_bytes(&bytes)?;
    // Read in place once for the whole held-out set.
    let classifier = model.classifier()?;
    let scalar = Kernels::get(hearth_quant::KernelSetName::Scalar)?;
    let mut report = TrainReport {
        labels: set.labels.clone(),
        train_samples: set.train.len(),
        heldout: Accuracy::default(),
        heldout_clean: Accuracy::default(),
        heldout_noisy: Accuracy::default(),
        per_class: vec![Accuracy::default(); set.labels.len()],
        file_bytes: bytes.len(),
    };
    for s in &set.heldout {
        let predicted = classifier.classify(scalar, s.text.as_bytes())?;
        let ok = predicted.map(|p| p.class) == Some(s.label);
        let part = if s.noisy {
            &mut report.heldout_noisy
        } else {
            &mut report.heldout_clean
        };
        for acc in [&mut report.heldout, part, &mut report.per_class[s.label]] {
            acc.total += 1;
            acc.correct += usize::from(ok);
        }
    }
    Ok((bytes, report))
}

/// An 8-byte aligned copy of a file (f32 biases and f16 scales are read in place).
struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Aligned {
            words,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

/// A classifier model file opened on the host: validated by the runtime's own model
/// file checks, then run by the same code as the firmware.
pub struct IntentClassifier {
    file: Aligned,
    meta: Meta,
}

impl std::fmt::Debug for IntentClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntentClassifier")
            .field("meta", &self.meta)
            .finish()
    }
}

impl IntentClassifier {
    /// Reads and checks `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Checks a classifier file held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let file = Aligned::new(bytes);
        let (header, _) = read_layout(file.bytes())?;
        let config = &file.bytes()[header.config.offset as usize..][..header.config.len as usize];
        let meta: Meta = serde_json::from_slice(config)
            .map_err(|e| Error::Format(format!("not an intent classifier file (config: {e})")))?;
        if meta.kind != KIND || meta.featurizer != FEATURIZER || meta.max_input != MAX_INPUT {
            return Err(Error::Format(format!(
                "classifier file is `{}` with featurizer `{}` ({} bytes); this hearth reads `{KIND}` with `{FEATURIZER}` ({MAX_INPUT} bytes)",
                meta.kind, meta.featurizer, meta.max_input
            )));
        }
        let me = IntentClassifier { file, meta };
        let c = me.classifier()?;
        let labels: Vec<&str> = (0..c.classes()).map(|i| c.label(i)).collect();
        if labels != me.meta.labels || c.features() != me.meta.buckets {
            return Err(Error::Format(
                "classifier file: the metadata disagrees with the tensors and class names".into(),
            ));
        }
        Ok(me)
    }

    /// The network, read in place from the file (cheap: four table lookups).
    pub fn classifier(&self) -> Result<Classifier<'_>> {
        let view = ModelView::parse(self.file.bytes()).map_err(|e| Error::Format(e.to_string()))?;
        Classifier::from_file(&view).map_err(|e| Error::Format(format!("classifier file: {e}")))
    }

    /// The metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.file.bytes()
    }

    /// The best class of `text` and its probability (`None`: no words in the text).
    /// Reads the network from the file on each call; to classify many texts, take
    /// [`IntentClassifier::classifier`] once.
    pub fn classify(&self, k: &Kernels, text: &[u8]) -> Result<Option<Prediction>> {
        Ok(self.classifier()?.classify(k, text)?)
    }

    /// Class `i`'s name.
    pub fn label(&self, i: usize) -> &str {
        self.meta.labels.get(i).map_or("", String::as_str)
    }
}
