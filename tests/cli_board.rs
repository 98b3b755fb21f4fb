//! `hearth run --board / --max-ram`: a model and context that do not fit a board's RAM
//! are refused before loading, with the numbers; ones that fit run.
use std::path::PathBuf;
use std::process::Command;

fn model() -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth")
        });
    let p = home.join("models/smollm2-135m-instruct.hearth");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models",
        p.display()
    );
    p
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("run")
        .arg(model())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_context_too_large_for_the_board_is_refused_with_the_numbers() {
    let (ok, _, err) = run(&[
        "--board",
        "pi-zero-2w",
        "--ctx",
        "8192",
        "-p",
        "Hi",
        "-n",
        "1",
    ]);
    assert!(!ok);
    for part in [
        "not enough RAM",
        "8192-token context",
        "KV cache 180.0 MiB",
        "board pi-zero-2w (512 MB RAM, 256 MB left to the system) allows 256.0 MiB",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn max_ram_below_the_weights_is_refused() {
    let (ok, _, err) = run(&["--max-ram", "64M", "-p", "Hi", "-n", "1"]);
    assert!(!ok);
    assert!(err.contains("--max-ram allows 64.0 MiB"), "{err}");
    let (ok, _, err) = run(&["--max-ram", "lots", "-p", "Hi"]);
    assert!(!ok);
    assert!(err.contains("not a size like 512M"), "{err}");
}

#[test]
fn unknown_board_lists_the_known_ones() {
    let (ok, _, err) = run(&["--board", "pi-zero", "-p", "Hi"]);
    assert!(!ok);
    assert!(err.contains("unknown board \"pi-zero\"; known boards: pi5, pi4, pi-armv7, pi-zero-2w, jetson-orin, x86-64-v3"), "{err}");
}

#[test]
fn a_board_that_fits_runs_with_its_context() {
    let (ok, out, err) = run(&["--board", "pi-zero-2w", "-p", "Hi", "-n", "4"]);
    assert!(ok, "{err}");
    assert!(!out.trim().is_empty());
    // The profile's context (1024) is the session's.
    assert!(err.contains("session: 1024-token context"), "{err}");
}
