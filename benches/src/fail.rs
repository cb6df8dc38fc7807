//! Fatal-error exits. A verification failure means the allocator under test handed out
//! overlapping, corrupted or misaligned memory: report it and exit with code 3 at once
//! (`_exit`, so no atexit/destructor code runs on a possibly corrupted heap).

use std::io::Write;

/// Exit code for a content/alignment verification failure.
pub const EXIT_VERIFY: i32 = 3;
/// Exit code for malloc/realloc returning NULL.
pub const EXIT_OOM: i32 = 4;

fn die(code: i32, msg: std::fmt::Arguments<'_>) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "hakmem-bench: FATAL: {msg}");
    let _ = err.flush();
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` has no preconditions; it ends the process without running atexit
    // handlers, which is what we want after detecting heap corruption.
    unsafe { libc::_exit(code) }
}

/// Content verification failed.
#[cold]
#[inline(never)]
pub fn verify_failed(workload_msg: &str, detail: &dyn std::fmt::Display) -> ! {
    die(
        EXIT_VERIFY,
        format_args!("verification failed ({workload_msg}): {detail}"),
    )
}

/// malloc/realloc returned a misaligned pointer.
#[cold]
#[inline(never)]
pub fn misaligned(what: &str, addr: usize, size: usize, align: usize) -> ! {
    die(
        EXIT_VERIFY,
        format_args!("{what}({size}) returned {addr:#x}, not {align}-byte aligned"),
    )
}

/// malloc/realloc returned NULL.
#[cold]
#[inline(never)]
pub fn out_of_memory(what: &str, size: usize) -> ! {
    die(EXIT_OOM, format_args!("{what}({size}) returned NULL"))
}
