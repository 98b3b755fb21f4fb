//! `hearth intent train` and `hearth intent classify`: the trained intent classifier
//! (runtime/src/intent/classifier; the firmware in firmware-demo/ runs the same model).
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hearth_quant::classifier::{write_result, MAX_FEATURES, MAX_HIDDEN};
use hearth_quant::{Kernels, QK};
use hearth_runtime::intent::classifier::sample::SampleOptions;
use hearth_runtime::intent::classifier::train::TrainOptions;
use hearth_runtime::intent::classifier::{train_classifier, IntentClassifier, INTENTS};
use hearth_runtime::intent::{default_data_path, Home, IntentsFile};

/// Arguments of `hearth intent train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Where to write the model file.
    #[arg(short, long)]
    pub out: PathBuf,
    /// The home file whose names fill the templates (default: examples/home.yaml).
    #[arg(long, default_value = "examples/home.yaml")]
    pub home: PathBuf,
    /// Language of the templates.
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// The templates (default `$HEARTH_HOME/intents/<lang>.json`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seed of the sampling, the initial weights and the sample order.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u64,
    /// Feature buckets (a multiple of 32, at most 2048).
    #[arg(long, default_value_t = TrainOptions::default().buckets)]
    pub buckets: usize,
    /// Hidden units (a multiple of 32, at most 128).
    #[arg(long, default_value_t = TrainOptions::default().hidden)]
    pub hidden: usize,
    /// Passes over the training set.
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    pub epochs: usize,
    /// Random template expansions per intent.
    #[arg(long, default_value_t = SampleOptions::default().draws)]
    pub draws: usize,
}

/// Runs `hearth intent train`.
pub fn train(args: &TrainArgs) -> Result<()> {
    let data_path = args
        .data
        .clone()
        .unwrap_or_else(|| default_data_path(&args.lang));
    let (data, src) = IntentsFile::load(&data_path)
        .with_context(|| format!("loading {} (run scripts/fetch-models)", data_path.display()))?;
    let (home, _) = Home::load(&args.home)?;
    // The sampling seed is the training seed (one `--seed`).
    let sample_opts = SampleOptions {
        seed: args.seed,
        draws: args.draws,
        ..SampleOptions::default()
    };
    let train_opts = TrainOptions {
        buckets: args.buckets,
        hidden: args.hidden,
        epochs: args.epochs,
        seed: args.seed,
        ..TrainOptions::default()
    };
    anyhow::ensure!(
        args.buckets.is_multiple_of(QK) && (QK..=MAX_FEATURES).contains(&args.buckets),
        "--buckets must be a multiple of {QK} in {QK}..={MAX_FEATURES}"
    );
    anyhow::ensure!(
        args.hidden.is_multiple_of(QK) && (QK..=MAX_HIDDEN).contains(&args.hidden),
        "--hidden must be a multiple of {QK} in {QK}..={MAX_HIDDEN}"
    );
    let start = std::time::Instant::now();
    let (bytes, report) = train_classifier(&data, &src, &home, INTENTS, &sample_opts, &train_opts)?;
    let tmp = args.out.with_extension("tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), args.out.display()))?;
    let pct = |a: &hearth_runtime::intent::classifier::Accuracy| {
        format!("{:.2}% ({}/{})", a.rate() * 100.0, a.correct, a.total)
    };
    println!(
        "wrote {} ({} bytes): {} classes, {} training samples, {:.1} s",
        args.out.display(),
        report.file_bytes,
        report.labels.len(),
        report.train_samples,
        start.elapsed().as_secs_f64()
    );
    println!(
        "held-out accuracy (Q8 model, scalar kernels): {} — clean {}, noisy {}",
        pct(&report.heldout),
        pct(&report.heldout_clean),
        pct(&report.heldout_noisy)
    );
    for (label, acc) in report.labels.iter().zip(&report.per_class) {
        println!("  {label:<28} {}", pct(acc));
    }
    Ok(())
}

/// Arguments of `hearth intent classify`.
#[derive(Args)]
pub struct ClassifyArgs {
    /// The classifier model file (from `hearth intent train`).
    #[arg(short, long)]
    pub model: PathBuf,
}

/// Runs `hearth intent classify`: one stdin line in (any bytes), one result line out,
/// in the firmware's format.
pub fn classify(args: &ClassifyArgs) -> Result<()> {
    let model = IntentClassifier::open(&args.model)?;
    let c = model.classifier()?;
    let k = Kernels::detect()?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut line = Vec::new();
    let mut text = String::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        let raw = line.strip_suffix(b"\n").unwrap_or(&line);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let p = c.classify(k, raw)?;
        text.clear();
        write_result(&mut text, &c, p, raw.len())?;
        writeln!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}
