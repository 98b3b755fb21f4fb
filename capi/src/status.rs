//! Status codes, the thread-local last-error message, the panic guard around every
//! entry point, and the C-string helpers.
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use hearth_runtime::Error;

/// What a call returned. 0 is success; everything else is an error whose message
/// [`hearth_last_error`] gives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HearthStatus {
    /// Success.
    HearthOk = 0,
    /// A required pointer argument was NULL.
    HearthErrNullArg = 1,
    /// A handle that this library did not create, or one already freed (double free).
    HearthErrInvalidHandle = 2,
    /// A string argument is not valid UTF-8.
    HearthErrInvalidUtf8 = 3,
    /// A file could not be read (missing, unreadable).
    HearthErrIo = 4,
    /// A file is malformed (not a Hearth model, corrupt data).
    HearthErrFormat = 5,
    /// A request that cannot be served: bad option values, a full context, too little RAM…
    HearthErrInvalid = 6,
    /// The handle is in use by another call right now (e.g. two generations on one session).
    HearthErrBusy = 7,
    /// The library was built without the feature this call needs (e.g. `whisper`).
    HearthErrUnsupported = 8,
    /// A bug: the runtime panicked. The handle involved should be freed.
    HearthErrPanic = 9,
}

/// An error on its way to C: a status and the message for [`hearth_last_error`].
#[derive(Debug)]
pub struct Failure {
    /// The code returned.
    pub status: HearthStatus,
    /// The message.
    pub message: String,
}

impl Failure {
    /// A failure with `status` and `message`.
    pub fn new(status: HearthStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// A NULL `what`.
    pub fn null(what: &str) -> Self {
        Self::new(HearthStatus::HearthErrNullArg, format!("{what} is NULL"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Io { .. } => HearthStatus::HearthErrIo,
            Error::Format(_) => HearthStatus::HearthErrFormat,
            Error::Invalid(_) | Error::Quant(_) => HearthStatus::HearthErrInvalid,
        };
        Self::new(status, e.to_string())
    }
}

/// Shorthand for the entry points' bodies.
pub type Result<T> = std::result::Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message is ours, so a NUL in it can only come from user text quoted in it.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs an entry point's body: converts its result to a status, records the message
/// of a failure (or clears it on success), and stops any panic at the boundary.
pub fn guard(body: impl FnOnce() -> Result<()>) -> HearthStatus {
    // AssertUnwindSafe: after a panic the handle involved may hold half-updated state;
    // HEARTH_ERR_PANIC tells the caller to free it, and sessions sit behind a Mutex
    // that poisons, so a later call on them fails cleanly instead of reading it.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            HearthStatus::HearthOk
        }
        Ok(Err(f)) => {
            set_last_error(&f.message);
            f.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (panic): {what}"));
            HearthStatus::HearthErrPanic
        }
    }
}

/// The message of the last failed call on this thread ("" after a successful call).
/// Valid until the next hearth call on this thread; never NULL; do not free.
#[no_mangle]
pub extern "C" fn hearth_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Borrow a NUL-terminated UTF-8 argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the returned borrow.
pub unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failure::new(
            HearthStatus::HearthErrInvalidUtf8,
            format!("{what} is not valid UTF-8 (byte {})", e.valid_up_to()),
        )
    })
}

/// Check an out-pointer for NULL and return it as a mutable reference.
///
/// # Safety
/// `p` is NULL or valid for writes of `T`.
pub unsafe fn out_arg<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: valid for writes by the caller's contract when non-NULL.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// A Rust string as a C string for the caller (registered, so [`hearth_string_free`]
/// can tell it from any other pointer).
pub fn string_out(s: String, what: &str) -> Result<*mut c_char> {
    let c = CString::new(s).map_err(|_| {
        Failure::new(
            HearthStatus::HearthErrInvalid,
            format!("{what} contains a NUL character and cannot be returned as a C string"),
        )
    })?;
    Ok(crate::handle::register_string(c))
}

/// Frees a string this library returned through a `char **` argument. NULL is
/// ignored (HEARTH_OK); a pointer not from this library or already freed gives
/// HEARTH_ERR_INVALID_HANDLE and is left alone.
///
/// # Safety
/// `s` is NULL or any pointer: it is looked up before it is touched.
#[no_mangle]
pub unsafe extern "C" fn hearth_string_free(s: *mut c_char) -> HearthStatus {
    guard(|| {
        if s.is_null() {
            return Ok(());
        }
        // SAFETY: looked up before use.
        unsafe { crate::handle::free_string(s) }
    })
}
