//! The query and control functions: the statistics as JSON, the run-time options, a purge.

use core::ffi::{CStr, c_char, c_int, c_long};
use core::ptr;

/// Writes the statistics as one JSON object (the keys of `HAKMEM_STATS=json`, see
/// `hakmem::report`), NUL-terminated and cut to fit `cap` bytes, into `buf` (nothing is
/// written when `cap` is 0, and `buf` may then be null); returns the length of the whole
/// object, without the NUL (like `snprintf`): a result `>= cap` means it was cut.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hakmem_stats_json(buf: *mut c_char, cap: usize) -> usize {
    use core::fmt::Write;
    let s = hakmem::stats();
    let mut text = hakmem_core::diag::StackBuf::<{ hakmem::report::REPORT_MAX }>::new();
    let _ = write!(text, "{}", hakmem::report::Json(&s));
    let bytes = text.as_bytes();
    if !buf.is_null() && cap > 0 {
        let n = bytes.len().min(cap - 1);
        // SAFETY: the caller gives `cap` writable bytes at `buf`.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast(), n);
            *buf.add(n) = 0;
        }
    }
    bytes.len()
}

/// The option named by a C string; `None` for null or an unknown name.
unsafe fn option(name: *const c_char) -> Option<hakmem::Tunable> {
    if name.is_null() {
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    hakmem::Tunable::from_name(unsafe { CStr::from_ptr(name) }.to_bytes())
}

/// Reads option `name` (`purge_delay_ms`, `bigcache_budget`, `thp`: see `hakmem::Tunable`)
/// into `*value`. Returns 0, ENOENT for an unknown (or null) name, EINVAL for a null `value`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hakmem_option_get(name: *const c_char, value: *mut c_long) -> c_int {
    // SAFETY: forwarded contract.
    let Some(t) = (unsafe { option(name) }) else {
        return libc::ENOENT;
    };
    if value.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller gives a writable `long`.
    unsafe { *value = hakmem::get_option(t) as c_long };
    0
}

/// Sets option `name` to `value`. Returns 0, ENOENT for an unknown (or null) name, EINVAL for
/// a value out of the option's range (nothing changed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hakmem_option_set(name: *const c_char, value: c_long) -> c_int {
    // SAFETY: forwarded contract.
    let Some(t) = (unsafe { option(name) }) else {
        return libc::ENOENT;
    };
    // `long` is 64-bit on the targets hakmem builds for (LP64).
    #[allow(clippy::useless_conversion)]
    let value = i64::from(value);
    match hakmem::set_option(t, value) {
        Ok(()) => 0,
        Err(hakmem::OutOfRange) => libc::EINVAL,
    }
}

/// Gives every free slab and cached mapping back to the OS now, whatever the purge delay (what
/// `malloc_trim` does).
#[unsafe(no_mangle)]
pub extern "C" fn hakmem_purge() {
    hakmem_core::os::keep_errno(hakmem::purge);
}
