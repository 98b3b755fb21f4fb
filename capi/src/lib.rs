//! # hearth-capi
//!
//! Hearth's C API: `libhearth.a` (and `libhearth.so`) with the header `include/hearth.h`,
//! generated from this crate by cbindgen (see `build.rs`). A thin layer over
//! `hearth-runtime`: every entry point checks its pointers and handles, runs the
//! runtime inside `catch_unwind`, and reports failure as a [`HearthStatus`] plus a
//! thread-local message ([`hearth_last_error`]).
//!
//! Handles are boxed Rust objects whose addresses are kept in a registry
//! ([`handle`]), so NULL, foreign and already-freed handles are refused instead of
//! dereferenced.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod assist;
pub mod handle;
pub mod intent;
pub mod llm;
pub mod status;
pub mod voice;

pub use status::HearthStatus;

/// Version of this C API. Bumped on every incompatible change to hearth.h; compare it
/// with [`hearth_api_version`] at run time when loading libhearth.so dynamically.
pub const HEARTH_API_VERSION: u32 = 1;

/// The [`HEARTH_API_VERSION`] the library was built with.
#[no_mangle]
pub extern "C" fn hearth_api_version() -> u32 {
    HEARTH_API_VERSION
}

/// The library's version ("0.1.0"), a static NUL-terminated string (do not free).
#[no_mangle]
pub extern "C" fn hearth_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
