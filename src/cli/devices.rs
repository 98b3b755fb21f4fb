//! `hearth devices`: the audio input devices.
use anyhow::Result;
use clap::Args as ClapArgs;
use hearth_runtime::voice::input_devices;

/// List the audio input devices `--device` can name; `*` marks the default.
///
/// On Linux these are ALSA PCMs: `default`, the cards (`hw:`/`plughw:CARD=…,DEV=…`) and
/// the virtual devices the ALSA configuration describes with a hint.
#[derive(ClapArgs)]
pub struct Args {
    /// One JSON object per device: {"id","name","default"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let devices = input_devices()?;
    if devices.is_empty() {
        eprintln!("no audio input devices found");
    }
    for d in &devices {
        if args.json {
            let obj = serde_json::json!({"id": d.id, "name": d.name, "default": d.is_default});
            println!("{obj}");
        } else {
            let mark = if d.is_default { '*' } else { ' ' };
            println!("{mark} {}  ({})", d.id, d.name);
        }
    }
    Ok(())
}
