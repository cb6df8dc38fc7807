//! # hakmem-ffi: `libhakmem.so`, the C ABI
//!
//! Role: exports the whole malloc family with C/POSIX semantics over the `hakmem` facade, for
//! `LD_PRELOAD=libhakmem.so program`: `malloc free calloc realloc reallocarray posix_memalign
//! aligned_alloc memalign valloc pvalloc malloc_usable_size free_sized free_aligned_sized
//! malloc_trim`, the
//! `__libc_*` aliases glibc-internal callers use, and hakmem's own `hakmem_stats_format`,
//! `hakmem_owns` and `hakmem_guarded_malloc`; [`cxx`] adds C++'s `operator new`/`delete`; the query and control functions
//! `hakmem_stats_json`, `hakmem_option_get`, `hakmem_option_set` and `hakmem_purge` (module
//! `control`):
//!
//! ```c
//! size_t hakmem_stats_json(char *buf, size_t cap);   // like snprintf: the length needed
//! int hakmem_option_get(const char *name, long *value); // 0, or ENOENT / EINVAL
//! int hakmem_option_set(const char *name, long value);  // 0, or ENOENT / EINVAL
//! void hakmem_purge(void);                           // give free memory back now
//! ```
//!
//! `HAKMEM_STATS=1` prints a table at exit (pid, in use, resident, mapped, peak mapped, and
//! per tier: bytes and blocks in use, slabs, remote frees, purged bytes), then the
//! `hakmem-stats:` counters line; `HAKMEM_STATS=json` one JSON object with the same numbers
//! (`hakmem_stats_json`'s); `HAKMEM_STATS_FILE=path` appends it to that file instead of
//! stderr. It reaches stderr even when the program closed fd 2 before exiting. The table and
//! the JSON keys: `hakmem::report`; the options (`purge_delay_ms`, `bigcache_budget`,
//! `thp`) and when a change takes effect: `hakmem::Tunable`.
//!
//! Invariants: no function here allocates through Rust's global allocator (which in this library
//! is the system one, i.e. these very functions), panics (`panic = "abort"` in release), or does
//! `std` I/O; `free` keeps `errno`; failures set `ENOMEM`/`EINVAL` exactly as POSIX says
//! (`posix_memalign`, which returns its error, also leaves errno = ENOMEM after a failure, as
//! glibc does). A constructor registers `fork` handlers that hold every hakmem lock across the
//! `fork` of a multi-threaded process (after glibc's `FILE`-list lock, in glibc's order) and
//! none in a single-threaded one; the facade's destructor prints the `HAKMEM_STATS` report.
#![allow(clippy::missing_safety_doc)] // each export's contract is the C standard's

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use hakmem_core::os::{PAGE, align_up, set_errno};

/// The largest size any request may have: beyond it, ENOMEM without asking the OS.
const MAX_SIZE: usize = isize::MAX as usize - (4 << 20);

#[inline(always)]
fn nomem<T>() -> *mut T {
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

#[inline(always)]
fn checked(p: *mut u8) -> *mut c_void {
    if p.is_null() { nomem() } else { p.cast() }
}

#[unsafe(no_mangle)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    // A null return already carries errno = ENOMEM (set where the failure happened), so the hot
    // path ends in a tail call with no check of its own.
    hakmem::malloc(size).cast()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: C's contract: `p` is null or a live block from this allocator.
    unsafe { hakmem::free(p.cast()) }
}

#[unsafe(no_mangle)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) if total <= MAX_SIZE => {
            checked(hakmem::alloc_zeroed(total, hakmem::natural_align(total)))
        }
        _ => nomem(),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if size > MAX_SIZE {
        return nomem();
    }
    // SAFETY: C's contract on `p`.
    let q = unsafe { hakmem::realloc(p.cast(), size) };
    if q.is_null() && (size != 0 || p.is_null()) {
        nomem()
    } else {
        q.cast()
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: C's contract on `p`.
        Some(total) => unsafe { realloc(p, total) },
        None => nomem(),
    }
}

fn aligned(align: usize, size: usize) -> *mut c_void {
    if size > MAX_SIZE || align > MAX_SIZE / 2 {
        return nomem();
    }
    checked(hakmem::alloc_aligned(size, align))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    // As glibc: a failure returns ENOMEM and leaves errno = ENOMEM too (programs and glibc's
    // own tests read it); success and EINVAL leave errno alone.
    if size > MAX_SIZE || align > MAX_SIZE / 2 {
        set_errno(libc::ENOMEM);
        return libc::ENOMEM;
    }
    let e = hakmem_core::os::errno();
    let p = hakmem::alloc_aligned(size, align);
    if p.is_null() {
        set_errno(libc::ENOMEM);
        return libc::ENOMEM;
    }
    set_errno(e);
    // SAFETY: C's contract: `out` points to writable storage for a pointer.
    unsafe { *out = p.cast() };
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, size)
}

#[unsafe(no_mangle)]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // glibc rounds a non-power-of-two alignment up to the next power of two.
    match align.max(1).checked_next_power_of_two() {
        Some(a) => aligned(a, size),
        None => {
            set_errno(libc::EINVAL);
            ptr::null_mut()
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(PAGE, size)
}

#[unsafe(no_mangle)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match align_up(size.max(1), PAGE) {
        Some(s) => aligned(PAGE, s),
        None => nomem(),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: C's contract: `p` is null or live.
    unsafe { hakmem::usable_size(p.cast()) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: C's contract on `p`.
    unsafe { hakmem::free(p.cast()) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: C's contract on `p`.
    unsafe { hakmem::free(p.cast()) }
}

#[unsafe(no_mangle)]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { free(p) }
}

#[unsafe(no_mangle)]
pub extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    calloc(n, size)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { realloc(p, size) }
}

#[unsafe(no_mangle)]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}

/// Writes the counters line (`hakmem-stats: key=value ...`), NUL-terminated and cut to fit
/// `cap` bytes, into `buf`; returns the length of the whole line (like `snprintf`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hakmem_stats_format(buf: *mut c_char, cap: usize) -> usize {
    use core::fmt::Write;
    let mut line = hakmem_core::diag::StackBuf::<1024>::new();
    let _ = write!(line, "{}", hakmem::stats());
    let bytes = line.as_bytes();
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

/// Gives every free slab and cached mapping back to the OS now, whatever the purge delay.
/// Returns 1 (memory may have been released); `pad` is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    hakmem_core::os::keep_errno(hakmem::trim);
    1
}

/// 1 if `p` lies in memory hakmem manages, else 0.
#[unsafe(no_mangle)]
pub extern "C" fn hakmem_owns(p: *const c_void) -> c_int {
    hakmem::owns(p.cast()) as c_int
}

/// Testing and debugging entry: a guard-page block of `size` bytes (`0 < size ≤ 4080`),
/// whatever the sampling (`HAKMEM_GUARD_SAMPLE`) says. It ends exactly at an inaccessible page
/// (usable size: `size` rounded up to 16) and its page becomes inaccessible once freed, so an
/// overflow past it or a use after its free aborts with a one-line report. Free it with `free`;
/// `realloc` and `malloc_usable_size` work on it. Null (errno ENOMEM) for any other size or
/// when all 256 guarded blocks are live.
#[unsafe(no_mangle)]
pub extern "C" fn hakmem_guarded_malloc(size: usize) -> *mut c_void {
    checked(hakmem_core::guard::alloc(size))
}

mod control;
pub mod cxx;

mod lifecycle {
    //! Load-time and exit-time hooks, without allocation of their own.
    use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use hakmem_core::config;

    /// glibc's side of `fork`, which the handlers must fit around.
    ///
    /// glibc's `fork` runs the `prepare` handlers, then (multi-threaded only) takes
    /// `_IO_list_lock`, the lock of the list of open `FILE`s, and only then its own malloc's
    /// locks, because a thread may hold that list lock (`fflush(NULL)`) while it waits for a
    /// `FILE` lock whose holder (`getline`) waits in `malloc`. A `prepare` handler that took
    /// hakmem's locks before glibc takes the list lock closes that cycle, so the handler takes
    /// the list lock first itself (it is recursive: glibc's own take only counts up). In the
    /// parent glibc drops its count before the `parent` handlers run, and in the child it
    /// re-initialises the lock (`_IO_list_resetlock`) before the `child` handlers run, so the
    /// `parent` handler releases it and the `child` handler must not.
    ///
    /// A single-threaded process (`__libc_single_threaded`, glibc 2.32+) takes no lock around
    /// `fork`, as glibc's malloc does: no other thread can hold one, and the forking thread
    /// may be a signal handler that interrupted `malloc` in a lock this thread already holds.
    #[cfg(target_env = "gnu")]
    mod libc_fork {
        use core::ffi::c_char;
        use core::sync::atomic::{AtomicU8, Ordering};

        unsafe extern "C" {
            fn _IO_list_lock();
            fn _IO_list_unlock();
            static __libc_single_threaded: c_char;
        }

        /// True while the process has never had a second thread (glibc clears the flag before
        /// it creates one).
        pub fn single_threaded() -> bool {
            // SAFETY: glibc's flag lives as long as the process. Only glibc writes it, and only
            // to 0 when a thread is created: while it reads 1 this is the only thread, and once
            // it reads 0 a racing write stores 0 again. A byte load is all the manual allows.
            let flag = unsafe {
                AtomicU8::from_ptr((&raw const __libc_single_threaded).cast_mut().cast())
            };
            flag.load(Ordering::Relaxed) != 0
        }
        pub fn lock_file_list() {
            // SAFETY: glibc's recursive lock of its `FILE` list; paired in `unlock_file_list`.
            unsafe { _IO_list_lock() }
        }
        pub fn unlock_file_list() {
            // SAFETY: this thread took the lock in `lock_file_list`.
            unsafe { _IO_list_unlock() }
        }
    }

    /// Elsewhere: no known list lock to order against, and no single-threaded flag, so every
    /// `fork` takes hakmem's locks.
    #[cfg(not(target_env = "gnu"))]
    mod libc_fork {
        pub fn single_threaded() -> bool {
            false
        }
        pub fn lock_file_list() {}
        pub fn unlock_file_list() {}
    }

    /// Whether the running `fork`'s `prepare` handler took the locks, so that its `parent` and
    /// `child` handlers undo exactly that (the flag could change in between, and glibc's may be
    /// reset in the child). Forks of a multi-threaded process run their handlers one at a time
    /// (glibc's and musl's atfork lock); a single-threaded one has no other thread to race.
    static LOCKED_FOR_FORK: AtomicBool = AtomicBool::new(false);

    extern "C" fn before_fork() {
        // First: the purger's pass ends and no other starts (see `hakmem_core::purger`); a
        // process whose only other thread is the purger then forks as a single-threaded one.
        hakmem_core::purger::fork_prepare();
        let lock = !libc_fork::single_threaded() && !hakmem_core::purger::sole_companion();
        LOCKED_FOR_FORK.store(lock, Relaxed);
        if !lock {
            return;
        }
        libc_fork::lock_file_list();
        for l in hakmem::fork_locks() {
            l.lock();
        }
    }
    extern "C" fn after_fork_parent() {
        hakmem_core::purger::fork_parent();
        if !LOCKED_FOR_FORK.load(Relaxed) {
            return;
        }
        for l in hakmem::fork_locks().iter().rev() {
            // SAFETY: `before_fork` took every one of them on this thread.
            unsafe { l.unlock() };
        }
        libc_fork::unlock_file_list();
    }
    extern "C" fn after_fork_child() {
        hakmem_core::purger::fork_child();
        if !LOCKED_FOR_FORK.load(Relaxed) {
            return;
        }
        // The file list lock: already re-initialised by glibc, see `libc_fork`.
        for l in hakmem::fork_locks() {
            // SAFETY: the fork child, whose only thread (this one) took them before the fork.
            unsafe { l.reset_after_fork() };
        }
    }

    extern "C" fn on_load() {
        let _ = config::get();
        hakmem_core::purger::fork_handled_elsewhere(); // the handlers below call the purger's
        // SAFETY: registering plain functions; glibc may call malloc here, which is ready.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            )
        };
    }

    /// The learning report; the `HAKMEM_STATS` report is the facade's own destructor's.
    extern "C" fn on_unload() {
        let cfg = config::get();
        if cfg.elo_report {
            hakmem::learning_report();
        }
    }

    #[used]
    #[unsafe(link_section = ".init_array")]
    static ON_LOAD: extern "C" fn() = on_load;

    #[used]
    #[unsafe(link_section = ".fini_array")]
    static ON_UNLOAD: extern "C" fn() = on_unload;
}
