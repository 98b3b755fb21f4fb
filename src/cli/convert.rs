//! `hearth convert IN [-o OUT] [--quant POLICY]`: GGUF file or HF safetensors folder → Hearth model.
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use hearth_runtime::convert::{self, QuantPolicy};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// How to store the weight matrices.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Quant {
    /// Carry Q8_0/Q4_0/Q4_1 blocks over bit for bit; other matrices as `mixed`.
    Keep,
    /// All matrices 4-bit symmetric.
    Q4,
    /// All matrices 4-bit asymmetric.
    Q4a,
    /// All matrices 8-bit.
    Q8,
    /// 4-bit attention/FFN, 8-bit embedding and output head.
    Mixed,
}

impl From<Quant> for QuantPolicy {
    fn from(q: Quant) -> Self {
        match q {
            Quant::Keep => QuantPolicy::Keep,
            Quant::Q4 => QuantPolicy::Q4,
            Quant::Q4a => QuantPolicy::Q4A,
            Quant::Q8 => QuantPolicy::Q8,
            Quant::Mixed => QuantPolicy::Mixed,
        }
    }
}

/// Arguments of `hearth convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// A GGUF file, or a Hugging Face folder with config.json, tokenizer.json and *.safetensors.
    pub input: PathBuf,
    /// Output file [default: the input with the extension `.hearth`].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Quantization of the weight matrices (norms and biases always stay f32).
    #[arg(long, value_enum, default_value = "mixed")]
    pub quant: Quant,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let output = args
        .output
        .unwrap_or_else(|| convert::default_output(&args.input));
    let policy = QuantPolicy::from(args.quant);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} converting [{bar:40}] {percent:>3}% {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let report = convert::convert(&args.input, &output, policy, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("converting {}", args.input.display()))?;
    bar.finish_and_clear();
    println!(
        "{} -> {} ({policy}): {} tensors ({} carried bit-exactly, {} quantized), {:.1} MiB in {:.1} s",
        args.input.display(),
        report.output.display(),
        report.tensors,
        report.carried,
        report.requantized,
        report.bytes as f64 / (1024.0 * 1024.0),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
