//! Hearth's intent satellite on a Cortex-M4F: text commands arrive line by line on the
//! UART, each is classified by the trained intent classifier (`hearth intent train`)
//! read in place from flash, and the result is printed as `intent=<name> score=<p>`;
//! `HassTurnOn`/`HassTurnOff` switch a relay (the board's FPGAIO LED register stands
//! in for the relay's GPIO line) and print its state. No heap: the stack and
//! `heapless` only. Under QEMU the output goes to the semihosting console, and the
//! program exits through semihosting at the end of input (an EOT byte, Ctrl-D).
//!
//! The same file builds for the host (`cargo run -p firmware-demo < commands`), reading
//! stdin: scripts/test-firmware compares the two runs, and both with
//! `hearth intent classify`, line for line.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod lines;
mod relay;

use core::fmt::{self, Write};
use hearth_quant::classifier::file::{FileError, ModelView};
use hearth_quant::classifier::{write_result, Classifier, Prediction};
use hearth_quant::{Kernels, QuantError};
use lines::{Event, Line, LineReader};
use relay::Relay;

/// The model file, 64-byte aligned like the tensors in it, so they are read in place.
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// `hearth intent train -o firmware-demo/model/intents.hearth` (the default seed).
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../model/intents.hearth"));

/// The relay follows these intents when the classifier is at least this sure.
const RELAY_MIN_SCORE: f32 = 0.5;

/// Why a run stopped.
#[derive(Debug)]
enum DemoError {
    Model(FileError),
    Quant(QuantError),
    Fmt,
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Model(e) => write!(f, "model: {e}"),
            DemoError::Quant(e) => write!(f, "quant: {e}"),
            DemoError::Fmt => f.write_str("output failed"),
        }
    }
}

impl From<FileError> for DemoError {
    fn from(e: FileError) -> Self {
        DemoError::Model(e)
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

/// The satellite: the classifier from flash, the kernels, the relay.
struct Satellite<'a, R: Relay> {
    classifier: Classifier<'a>,
    kernels: &'a Kernels,
    relay: R,
}

impl<'a, R: Relay> Satellite<'a, R> {
    fn new(kernels: &'a Kernels, relay: R, out: &mut impl Write) -> Result<Self, DemoError> {
        let view = ModelView::parse(&MODEL.0)?;
        let classifier = Classifier::from_file(&view)?;
        writeln!(
            out,
            "firmware-demo model={}B classes={} features={} kernels={}",
            view.bytes().len(),
            classifier.classes(),
            classifier.features(),
            kernels.name().as_str()
        )?;
        Ok(Satellite {
            classifier,
            kernels,
            relay,
        })
    }

    /// Classify one line, print the result, drive the relay.
    fn handle(&mut self, line: &Line, out: &mut impl Write) -> Result<(), DemoError> {
        let p = self.classifier.classify(self.kernels, &line.bytes)?;
        write_result(out, &self.classifier, p, line.len)?;
        writeln!(out)?;
        if let Some(Prediction { class, score }) = p {
            let on = match self.classifier.label(class) {
                "HassTurnOn" => Some(true),
                "HassTurnOff" => Some(false),
                _ => None,
            };
            if let (Some(on), true) = (on, score >= RELAY_MIN_SCORE) {
                self.relay.set(on);
                let state = if self.relay.get() { "on" } else { "off" };
                writeln!(out, "relay={state}")?;
            }
        }
        Ok(())
    }

    /// Handle every line of `input` until its end or an EOT byte.
    fn run(
        &mut self,
        input: impl Iterator<Item = u8>,
        out: &mut impl Write,
    ) -> Result<(), DemoError> {
        let mut reader = LineReader::default();
        for b in input {
            match reader.push(b) {
                Some(Event::Line(line)) => self.handle(&line, out)?,
                Some(Event::End(last)) => {
                    if let Some(line) = last {
                        self.handle(&line, out)?;
                    }
                    return Ok(());
                }
                None => {}
            }
        }
        if let Some(line) = reader.finish() {
            self.handle(&line, out)?;
        }
        Ok(())
    }
}

#[cfg(target_os = "none")]
mod firmware {
    use crate::relay::FpgaioLed;
    use cortex_m_rt::entry;
    use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
    use cortex_m_semihosting::hio;
    // Panics print through semihosting and exit QEMU with status 1.
    use panic_semihosting as _;

    mod uart;

    #[entry]
    fn main() -> ! {
        let status = match (hio::hstdout(), hearth_quant::Kernels::detect()) {
            (Ok(mut out), Ok(k)) => {
                let result = super::Satellite::new(k, FpgaioLed::take(), &mut out)
                    .and_then(|mut s| s.run(uart::Uart0::take().bytes(), &mut out));
                match result {
                    Ok(()) => EXIT_SUCCESS,
                    Err(e) => {
                        if let Ok(mut err) = hio::hstderr() {
                            let _ =
                                core::fmt::Write::write_fmt(&mut err, format_args!("error: {e}\n"));
                        }
                        EXIT_FAILURE
                    }
                }
            }
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
    use std::io::Read;
    /// `fmt::Write` onto stdout.
    struct Stdout(std::io::Stdout);
    impl Write for Stdout {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            std::io::Write::write_all(&mut self.0, s.as_bytes()).map_err(|_| fmt::Error)
        }
    }
    let mut out = Stdout(std::io::stdout());
    // A read error ends the input like EOF does.
    let input = std::io::stdin().lock().bytes().map_while(Result::ok);
    let result = Kernels::detect()
        .map_err(DemoError::from)
        .and_then(|k| Satellite::new(k, relay::Simulated::default(), &mut out))
        .and_then(|mut s| s.run(input, &mut out));
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

    fn run(input: &[u8]) -> String {
        let mut s = String::new();
        let k = Kernels::get(KernelSetName::Scalar).unwrap();
        let mut sat = Satellite::new(k, relay::Simulated::default(), &mut s).unwrap();
        sat.run(input.iter().copied(), &mut s).unwrap();
        s
    }

    #[test]
    fn commands_are_classified_and_drive_the_relay() {
        let s = run(b"turn on the floor lamp\nturn off the floor lamp\nwhat time is it\n");
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("firmware-demo model="), "{s}");
        assert!(lines[1].starts_with("intent=HassTurnOn score="), "{s}");
        assert_eq!(lines[2], "relay=on");
        assert!(lines[3].starts_with("intent=HassTurnOff score="), "{s}");
        assert_eq!(lines[4], "relay=off");
        assert!(
            lines[5].starts_with("intent=HassGetCurrentTime score="),
            "{s}"
        );
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn awkward_lines_are_handled() {
        let mut input = b"\n   \n\xff\xfe\x80 lights\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', 500));
        input.extend(b"\nnever mind\x04turn on the tv\n");
        let s = run(&input);
        // The results (the relay lines depend on what the garbage line scores).
        let lines: Vec<&str> = s
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("relay="))
            .collect();
        assert_eq!(lines[0], "intent=none score=0");
        assert_eq!(lines[1], "intent=none score=0");
        assert!(lines[2].starts_with("intent="));
        assert!(lines[3].ends_with(" truncated"), "{s}");
        assert!(lines[4].starts_with("intent=HassNevermind "), "{s}");
        // Input after EOT is not read.
        assert_eq!(lines.len(), 5, "{s}");
    }
}
