//! The trained intent classifier on the real Home Assistant data and the sample home:
//! held-out accuracy of the quantized model (as the firmware runs it), byte-for-byte
//! reproduction of the model file the firmware includes, the no_std file reader
//! against the runtime's own, and hostile files.
mod intent_common;

use std::path::PathBuf;
use std::sync::OnceLock;

use hearth_quant::classifier::file::{Format, ModelView};
use hearth_quant::classifier::Classifier;
use hearth_quant::{KernelSetName, Kernels};
use hearth_runtime::intent::classifier::sample::SampleOptions;
use hearth_runtime::intent::classifier::train::TrainOptions;
use hearth_runtime::intent::classifier::{
    train_classifier, IntentClassifier, TrainReport, INTENTS,
};
use hearth_runtime::intent::{Home, IntentsFile};
use hearth_runtime::model::format::TensorFormat;
use hearth_runtime::model::reader::read_layout;

/// The model file firmware-demo includes (`hearth intent train` with the defaults).
fn firmware_model() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware-demo/model/intents.hearth"
    ))
}

/// Training with the defaults `hearth intent train` uses, once for all tests.
fn trained() -> &'static (Vec<u8>, TrainReport) {
    static T: OnceLock<(Vec<u8>, TrainReport)> = OnceLock::new();
    T.get_or_init(|| {
        let (data, src) = IntentsFile::load(&intent_common::data_path()).unwrap();
        let (home, _) = Home::load(&intent_common::home_path()).unwrap();
        train_classifier(
            &data,
            &src,
            &home,
            INTENTS,
            &SampleOptions::default(),
            &TrainOptions::default(),
        )
        .unwrap()
    })
}

#[test]
fn heldout_accuracy_is_at_least_95_percent() {
    let (_, r) = trained();
    for (label, acc) in r.labels.iter().zip(&r.per_class) {
        eprintln!("{label:<28} {}/{}", acc.correct, acc.total);
    }
    eprintln!(
        "held-out: {}/{} (clean {}/{}, noisy {}/{})",
        r.heldout.correct,
        r.heldout.total,
        r.heldout_clean.correct,
        r.heldout_clean.total,
        r.heldout_noisy.correct,
        r.heldout_noisy.total
    );
    // Enough held-out sentences for the figure to mean something, from every class
    // that has more than a handful of distinct sentences.
    assert!(r.heldout.total >= 1000, "{}", r.heldout.total);
    assert!(
        r.heldout.rate() >= 0.95,
        "held-out accuracy {}",
        r.heldout.rate()
    );
    assert!(r.heldout_clean.rate() >= 0.95, "{}", r.heldout_clean.rate());
    assert_eq!(r.labels.last().map(String::as_str), Some("none"));
}

#[test]
fn default_training_reproduces_the_firmware_model() {
    let (bytes, _) = trained();
    let committed = std::fs::read(firmware_model()).unwrap();
    assert!(
        *bytes == committed,
        "firmware-demo/model/intents.hearth is not what the default training gives \
         ({} vs {} bytes): regenerate it with `hearth intent train -o firmware-demo/model/intents.hearth`",
        committed.len(),
        bytes.len()
    );
}

/// The no_std reader (what the firmware runs) sees the same header sections and
/// tensors as the runtime's model-file reader.
#[test]
fn no_std_reader_agrees_with_the_runtime_reader() {
    let file = IntentClassifier::open(&firmware_model()).unwrap();
    let bytes = file.bytes();
    let (header, infos) = read_layout(bytes).unwrap();
    let view = ModelView::parse(bytes).unwrap();
    let sec = |s: hearth_runtime::model::format::Section| {
        &bytes[s.offset as usize..(s.offset + s.len) as usize]
    };
    assert_eq!(view.version, header.version);
    assert_eq!(view.config(), sec(header.config));
    assert_eq!(view.tokenizer(), sec(header.tokenizer));
    let tensors: Vec<_> = view.tensors().collect();
    assert_eq!(tensors.len(), infos.len());
    assert_eq!(view.len(), infos.len());
    for (t, info) in tensors.iter().zip(&infos) {
        assert_eq!(t.name, info.name.as_bytes());
        let format = match t.format {
            Format::F32 => TensorFormat::F32,
            Format::F16 => TensorFormat::F16,
            Format::Q8x4 => TensorFormat::Q8x4,
            Format::Q4x4 => TensorFormat::Q4x4,
            Format::Q4Ax4 => TensorFormat::Q4Ax4,
        };
        assert_eq!(format, info.format);
        assert_eq!((t.rows, t.cols), (info.rows, info.cols));
        assert_eq!((t.offset, t.bytes.len()), (info.offset, info.len));
        assert_eq!(crc32fast::hash(t.bytes), info.crc32, "{}", info.name);
    }
    let meta = file.meta();
    let c = file.classifier().unwrap();
    assert_eq!(c.classes(), meta.labels.len());
    assert_eq!(c.features(), meta.buckets);
    for (i, l) in meta.labels.iter().enumerate() {
        assert_eq!(c.label(i), l);
    }
}

#[test]
fn commands_get_their_intents() {
    let file = IntentClassifier::open(&firmware_model()).unwrap();
    let k = Kernels::get(KernelSetName::Scalar).unwrap();
    for (text, want) in [
        ("turn on the floor lamp", "HassTurnOn"),
        ("switch off the desk lamp in the office", "HassTurnOff"),
        ("what time is it", "HassGetCurrentTime"),
        ("set a timer for 5 minutes", "HassStartTimer"),
        ("set the bedroom brightness to 20%", "HassLightSet"),
        ("pause the tv", "HassMediaPause"),
        ("tell me about dinosaurs", "none"),
        // STT slips.
        ("turn of the reding lamp", "HassTurnOff"),
        ("whats the wether like", "HassGetWeather"),
    ] {
        let p = file.classify(k, text.as_bytes()).unwrap().unwrap();
        assert_eq!(file.label(p.class), want, "{text}: score {}", p.score);
    }
    assert_eq!(file.classify(k, b" ?! ").unwrap(), None);
    // The best kernels of this CPU agree with the scalar ones on the class.
    let best = Kernels::best();
    for text in ["open the garage door", "what's the weather", "never mind"] {
        let a = file.classify(k, text.as_bytes()).unwrap().unwrap();
        let b = file.classify(best, text.as_bytes()).unwrap().unwrap();
        assert_eq!(a.class, b.class, "{text}");
    }
}

/// Truncated and corrupted files are refused or read, never a panic or an
/// out-of-bounds read, by both readers; whatever parses can classify.
#[test]
fn hostile_files_do_not_panic() {
    let good = std::fs::read(firmware_model()).unwrap();
    let k = Kernels::get(KernelSetName::Scalar).unwrap();
    let check = |bytes: &[u8]| {
        let _ = IntentClassifier::from_bytes(bytes);
        // The firmware's path, on an aligned copy.
        let words: Vec<u64> = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        let aligned = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
        if let Ok(view) = ModelView::parse(aligned) {
            if let Ok(c) = Classifier::from_file(&view) {
                let _ = c.classify(k, b"turn on the lights");
            }
        }
    };
    for len in (0..good.len())
        .step_by(97)
        .chain([127, 128, 129, good.len() - 1])
    {
        check(&good[..len]);
        // The table is last: any truncation loses part of it.
        assert!(ModelView::parse(&good[..len]).is_err(), "{len}");
        assert!(read_layout(&good[..len]).is_err(), "{len}");
    }
    let (header, _) = read_layout(&good).unwrap();
    let table = header.table.offset as usize;
    // Every header byte and every table byte, flipped.
    for i in (0..128).chain(table..good.len()) {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            check(&bad);
        }
    }
}
