//! Generates `include/hearth.h` from the crate's source with cbindgen. The header is
//! committed (readable without a build) and rewritten only when it changes, so an
//! unchanged API does not touch its mtime.
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .expect("capi/cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen can read capi/src");
    let mut text = Vec::new();
    bindings.write(&mut text);
    let out = dir.join("include").join("hearth.h");
    if std::fs::read(&out).ok().as_deref() != Some(&text[..]) {
        std::fs::create_dir_all(out.parent().expect("has a parent")).expect("create include/");
        std::fs::write(&out, &text).expect("write include/hearth.h");
    }
}
