//! The handle registry: every object handed to C (handles, strings, id arrays) is a
//! `Box` whose address is recorded here with its kind until it is freed. A pointer is
//! looked up before it is dereferenced, so NULL, a pointer of the wrong kind, a
//! foreign pointer and a second free are all refused without touching memory.
//!
//! Limit: after a free the allocator may hand the same address to a new object of
//! the same kind; a stale handle then aliases the new one (the same limit as any
//! address-based check).
use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::sync::{Mutex, MutexGuard};

use crate::status::{Failure, HearthStatus, Result};

/// What a registered address holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `hearth_engine`.
    Engine,
    /// `hearth_session`.
    Session,
    /// `hearth_intents`.
    Intents,
    /// `hearth_transcriber`.
    Transcriber,
    /// `hearth_assistant`.
    Assistant,
    /// A `char *` from `string_out`.
    String,
    /// A `uint32_t *` token array of this many ids.
    Ids(usize),
}

/// A Rust type handed to C behind a pointer.
pub trait Handle: Send + Sync + 'static {
    /// Its registry kind.
    const KIND: Kind;
    /// Its name in messages.
    const NAME: &'static str;
}

static LIVE: Mutex<Option<HashMap<usize, Kind>>> = Mutex::new(None);

fn live() -> MutexGuard<'static, Option<HashMap<usize, Kind>>> {
    // The map is only ever inserted into or removed from, so a poisoned lock (a panic
    // elsewhere while it was held, which no code path here can cause) still holds a
    // consistent map.
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn insert(addr: usize, kind: Kind) {
    live().get_or_insert_with(HashMap::new).insert(addr, kind);
}

/// Remove `addr` if it is registered as a `kind` (any `Ids` length for `Ids`).
fn remove(addr: usize, kind: Kind, name: &str) -> Result<Kind> {
    let mut map = live();
    let map = map.get_or_insert_with(HashMap::new);
    match map.get(&addr) {
        Some(&k) if std::mem::discriminant(&k) == std::mem::discriminant(&kind) => {
            map.remove(&addr);
            Ok(k)
        }
        Some(k) => Err(wrong_kind(name, *k)),
        None => Err(unknown(name)),
    }
}

fn unknown(name: &str) -> Failure {
    Failure::new(
        HearthStatus::HearthErrInvalidHandle,
        format!("{name}: not a live handle (never created by this library, or already freed)"),
    )
}

fn wrong_kind(name: &str, k: Kind) -> Failure {
    Failure::new(
        HearthStatus::HearthErrInvalidHandle,
        format!("{name}: this pointer is a {k:?} handle, not a {name}"),
    )
}

/// Hand `value` to C.
pub fn register<T: Handle>(value: T) -> *mut T {
    let p = Box::into_raw(Box::new(value));
    insert(p as usize, T::KIND);
    p
}

/// Borrow a live handle.
///
/// # Safety
/// If `p` is live, no call frees it while the borrow is in use (hearth.h: a handle
/// must not be freed while another thread uses it).
pub unsafe fn get<'a, T: Handle>(p: *const T) -> Result<&'a T> {
    if p.is_null() {
        return Err(Failure::null(T::NAME));
    }
    match live().as_ref().and_then(|m| m.get(&(p as usize)).copied()) {
        // SAFETY: registered addresses come from Box::into_raw of a T (checked by
        // kind) and are removed before the box is dropped.
        Some(k) if k == T::KIND => Ok(unsafe { &*p }),
        Some(k) => Err(wrong_kind(T::NAME, k)),
        None => Err(unknown(T::NAME)),
    }
}

/// Take back a live handle for dropping; it is unregistered first, so a second free
/// of the same pointer is refused.
///
/// # Safety
/// As for [`get`]: no other call uses the handle concurrently.
pub unsafe fn take<T: Handle>(p: *mut T) -> Result<Box<T>> {
    if p.is_null() {
        return Err(Failure::null(T::NAME));
    }
    remove(p as usize, T::KIND, T::NAME)?;
    // SAFETY: was registered as a T from Box::into_raw and is now unregistered, so
    // this is the only owner.
    Ok(unsafe { Box::from_raw(p) })
}

/// Hand a C string to C.
pub fn register_string(s: CString) -> *mut c_char {
    let p = s.into_raw();
    insert(p as usize, Kind::String);
    p
}

/// Free a string from [`register_string`].
///
/// # Safety
/// None beyond a valid call: `p` is looked up before it is touched.
pub unsafe fn free_string(p: *mut c_char) -> Result<()> {
    remove(p as usize, Kind::String, "string")?;
    // SAFETY: registered from CString::into_raw and now unregistered.
    drop(unsafe { CString::from_raw(p) });
    Ok(())
}

/// Hand a token array to C. An empty one is NULL: every empty box has the same
/// dangling address, which the registry cannot tell apart.
pub fn register_ids(ids: Vec<u32>) -> *mut u32 {
    if ids.is_empty() {
        return std::ptr::null_mut();
    }
    let b = ids.into_boxed_slice();
    let len = b.len();
    let p = Box::into_raw(b) as *mut u32;
    insert(p as usize, Kind::Ids(len));
    p
}

/// Free an array from [`register_ids`].
///
/// # Safety
/// None beyond a valid call: `p` is looked up before it is touched.
pub unsafe fn free_ids(p: *mut u32) -> Result<()> {
    let Kind::Ids(len) = remove(p as usize, Kind::Ids(0), "token array")? else {
        unreachable!("remove checks the kind")
    };
    // SAFETY: registered from Box<[u32]>::into_raw with this length, now unregistered.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) });
    Ok(())
}
