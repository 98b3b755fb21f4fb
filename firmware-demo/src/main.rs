//! Hearth on a Cortex-M4F: featurize → quantize → gemv → argmax on a few fixed
//! commands, with hearth-quant's kernels, no heap (stack and `heapless` only), the
//! weights in flash. Output goes to the semihosting console under QEMU.
//!
//! The same file builds for the host (`cargo run -p firmware-demo`) and prints the
//! same lines with `std`: scripts/test-firmware compares the two runs bit for bit.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod featurize;
mod model;

use core::fmt::{self, Write};
use featurize::Command;
use hearth_quant::{Kernels, QuantError};
use model::{Format, CLASSES, FEATURES};

/// The demo's input: the kinds of lines a serial console or a speech front end hands
/// over, including the awkward ones.
const COMMANDS: [&[u8]; 6] = [
    b"turn on the kitchen lights",
    b"what's the weather tomorrow",
    // Not UTF-8: a corrupted byte from the serial line.
    b"set a timer for \xff\xfe ten minutes",
    // Empty line.
    b"",
    // Longer than the device's input buffer (featurize::MAX_INPUT bytes): truncated.
    b"play some music in the living room and then turn the volume up a little bit please",
    b"STOP",
];

/// Outputs printed per format (as f32 bit patterns, so a comparison is exact).
const SHOWN: usize = 4;

/// Why a run stopped.
#[derive(Debug)]
enum DemoError {
    Quant(QuantError),
    Fmt,
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Quant(e) => write!(f, "quant: {e}"),
            DemoError::Fmt => f.write_str("output failed"),
        }
    }
}

impl From<QuantError> for DemoError {
    fn from(e: QuantError) -> Self {
        DemoError::Quant(e)
    }
}

impl From<fmt::Error> for DemoError {
    fn from(_: fmt::Error) -> Self {
        DemoError::Fmt
    }
}

/// Run every command through the pipeline and write one line each to `out`.
fn run(out: &mut impl Write, k: &Kernels) -> Result<(), DemoError> {
    writeln!(
        out,
        "firmware-demo kernels={} classes={CLASSES} features={FEATURES}",
        k.name().as_str()
    )?;
    for (i, raw) in COMMANDS.iter().enumerate() {
        let cmd = Command::new(raw);
        let x = model::quantize(k, &cmd.features())?;
        write!(
            out,
            "cmd={i} len={} trunc={} utf8={}",
            cmd.bytes().len(),
            u8::from(cmd.truncated()),
            u8::from(cmd.is_utf8())
        )?;
        for format in Format::ALL {
            let y = model::scores(k, format, &x)?;
            let name = format.name();
            match model::argmax(&y) {
                Some(r) => write!(out, " {name}.argmax={r}")?,
                None => write!(out, " {name}.argmax=none")?,
            }
            write!(out, " {name}.y=")?;
            for (j, v) in y.iter().take(SHOWN).enumerate() {
                let sep = if j == 0 { "" } else { "," };
                write!(out, "{sep}{:08x}", v.to_bits())?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(target_os = "none")]
mod firmware {
    use cortex_m_rt::entry;
    use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
    use cortex_m_semihosting::hio;
    // Panics print through semihosting and exit QEMU with status 1.
    use panic_semihosting as _;

    #[entry]
    fn main() -> ! {
        let status = match (hio::hstdout(), hearth_quant::Kernels::detect()) {
            (Ok(mut out), Ok(k)) => match super::run(&mut out, k) {
                Ok(()) => EXIT_SUCCESS,
                Err(e) => {
                    if let Ok(mut err) = hio::hstderr() {
                        let _ = core::fmt::Write::write_fmt(&mut err, format_args!("error: {e}\n"));
                    }
                    EXIT_FAILURE
                }
            },
            _ => EXIT_FAILURE,
        };
        // On stderr, so stdout stays comparable with the host run.
        if let Ok(mut err) = hio::hstderr() {
            let _ = core::fmt::Write::write_fmt(
                &mut err,
                format_args!("stack_used={}\n", stack_used()),
            );
        }
        debug::exit(status);
        // `exit` returns only without a debugger/QEMU attached: park the core.
        loop {
            cortex_m::asm::wfi();
        }
    }

    /// Bytes of stack touched so far: cortex-m-rt painted `_stack_end.._stack_start`
    /// with `STACK_PAINT_VALUE` at reset; the lowest overwritten word is the high-water mark.
    fn stack_used() -> usize {
        extern "C" {
            static _stack_end: u32;
            static _stack_start: u32;
        }
        let bottom = core::ptr::addr_of!(_stack_end);
        let top = core::ptr::addr_of!(_stack_start);
        let mut p = bottom;
        while p < top {
            // SAFETY: `_stack_end.._stack_start` is the word-aligned RAM the linker
            // script reserves for the stack; reading any word of it is valid, and the
            // words below the stack pointer are not being written concurrently.
            if unsafe { core::ptr::read_volatile(p) } != cortex_m_rt::STACK_PAINT_VALUE {
                break;
            }
            // SAFETY: `p < top`, so `p + 1` is at most `top`, within the same region.
            p = unsafe { p.add(1) };
        }
        top as usize - p as usize
    }
}

#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    /// `fmt::Write` onto stdout.
    struct Stdout(std::io::Stdout);
    impl Write for Stdout {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            std::io::Write::write_all(&mut self.0, s.as_bytes()).map_err(|_| fmt::Error)
        }
    }
    let result = Kernels::detect()
        .map_err(DemoError::from)
        .and_then(|k| run(&mut Stdout(std::io::stdout()), k));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_quant::KernelSetName;

    fn output() -> String {
        let mut s = String::new();
        run(&mut s, Kernels::get(KernelSetName::Scalar).unwrap()).unwrap();
        s
    }

    #[test]
    fn one_line_per_command_and_deterministic() {
        let s = output();
        assert_eq!(s, output());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 1 + COMMANDS.len());
        assert!(lines[0].contains("kernels=scalar"));
        for (i, line) in lines[1..].iter().enumerate() {
            assert!(line.starts_with(&format!("cmd={i} ")), "{line}");
        }
    }

    #[test]
    fn awkward_commands_are_reported() {
        let s = output();
        let line = |i: usize| s.lines().nth(1 + i).unwrap().to_owned();
        assert!(line(2).contains("utf8=0"));
        assert!(line(3).contains("len=0") && line(3).contains("q8.argmax=none"));
        assert!(line(4).contains("trunc=1"));
        assert!(line(4).contains(&format!("len={}", featurize::MAX_INPUT)));
    }

    /// Every kernel set this CPU has gives the same argmax as the scalar reference
    /// (the scores may differ in the last bits: SIMD sums in another order).
    #[test]
    fn detected_kernels_agree_on_the_argmax() {
        let scalar = Kernels::get(KernelSetName::Scalar).unwrap();
        let best = Kernels::best();
        for raw in COMMANDS {
            let x = Command::new(raw).features();
            let (qs, qb) = (
                model::quantize(scalar, &x).unwrap(),
                model::quantize(best, &x).unwrap(),
            );
            assert_eq!(qs, qb, "activation quantizers must produce the same bytes");
            for f in Format::ALL {
                let (ys, yb) = (
                    model::scores(scalar, f, &qs).unwrap(),
                    model::scores(best, f, &qb).unwrap(),
                );
                assert_eq!(model::argmax(&ys), model::argmax(&yb), "{f:?} {raw:?}");
            }
        }
    }
}
