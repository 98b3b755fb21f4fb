//! cortex-m-rt's link.x includes memory.x: put it on the linker's search path, only for
//! the bare-metal target (the host build links normally). The model file is included
//! with `include_bytes!`, which cargo already tracks.
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        std::fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
        println!("cargo:rustc-link-search={}", out.display());
    }
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
