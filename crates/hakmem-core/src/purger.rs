//! The background purger: one thread that runs the purge passes while the program does
//! anything or nothing, so freed memory goes back by the purge policy even when no allocator
//! slow path comes.
//!
//! It starts lazily, when memory becomes purgeable ([`notify`]), and only when the policy
//! delays purging (`adaptive`, `free`) and `HAKMEM_PURGE_THREAD` allows: by default at once in
//! a multi-threaded process, and in a single-threaded one only after a burst of frees
//! ([`BURST`] bytes left waiting by a pass), because a second thread costs a
//! single-threaded process glibc's behaviour for it (`fork` from a signal handler that
//! interrupted `malloc`, lock-free stdio, non-atomic `shared_ptr` counts in libstdc++).
//! While a pass leaves work for a later one it sleeps half a purge delay between passes; when
//! nothing is left it parks on a futex with no timeout, and the next [`notify`] wakes it. A
//! sleeping process therefore stays asleep.
//!
//! Invariants:
//! - The thread never allocates: its passes are the ones slow paths run (`crate::purge`), and
//!   it has no heap of its own. It blocks every signal, so signals reach the program's threads.
//! - Parking cannot lose a wake-up: the purger stores its parked state and then runs one more pass,
//!   whose lock acquisitions order it after (or before) any producer's critical section; a
//!   producer reads the state after its own lock acquisition ([`notify`]), or behind a full
//!   fence when it published without a lock ([`notify_fenced`]).
//! - The purger never waits for a lock but its own pass lock: a pass only tries the others, and
//!   what it finds busy waits for the next pass. So a `fork` that takes the pass lock
//!   ([`fork_prepare`], first of all hakmem's locks) waits at most for one pass, whatever
//!   locks the forking thread holds, and then the purger holds none: the child never inherits
//!   one of its locks. A process whose only other thread is the purger forks as a
//!   single-threaded one (no other lock taken: [`sole_companion`]), as glibc's malloc allows
//!   even from a signal handler that interrupted `malloc`. The child has no purger: its state
//!   goes back to not started, and its first purgeable memory starts one. A program without the
//!   C ABI's `fork` handlers gets handlers of the purger's own.

use crate::config::{self, FreePolicy};
use crate::os;
use crate::sync::RawLock;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, fence};

/// The thread holding [`PASS_LOCK`] (0: none), so that a `fork` from a signal handler that
/// interrupted a `fork` handler does not wait for itself.
static PASS_HOLDER: AtomicUsize = AtomicUsize::new(0);
/// Whether the running `fork` took [`PASS_LOCK`] (its handlers run one at a time).
static FORK_TOOK: AtomicBool = AtomicBool::new(false);

/// Not started yet: the next [`notify`] starts it.
const UNSTARTED: u32 = 0;
/// Being started.
const STARTING: u32 = 1;
/// Awake, or sleeping with a timeout (a pass left work).
const RUNNING: u32 = 2;
/// Sleeping until a [`notify`].
const PARKED: u32 = 3;
/// Never again in this process: switched off, at exit, or the thread could not be created.
const STOPPED: u32 = 4;

/// The purger's state, also its futex word.
static STATE: AtomicU32 = AtomicU32::new(UNSTARTED);
/// Held for the whole of each background pass (and by `fork`).
static PASS_LOCK: RawLock = RawLock::new();
/// Whether the C ABI's `fork` handlers take [`PASS_LOCK`] (else the purger registers its own).
static FORK_HANDLED: AtomicBool = AtomicBool::new(false);
static OWN_HANDLERS: AtomicBool = AtomicBool::new(false);
/// One pass in this many also trims the threads' heaps from outside (a walk of their full
/// slabs: kept rare).
const OUTSIDE_EVERY: usize = 8;
/// Bytes freed between two slow-path passes that start the purger in a single-threaded
/// process (`HAKMEM_PURGE_THREAD=auto`).
pub const BURST: usize = 64 << 20;
/// Bytes made purgeable since the last slow-path pass, while single-threaded and unstarted.
static FREED: AtomicUsize = AtomicUsize::new(0);
/// Passes run by the purger thread (for tests and the statistics).
static PASSES: AtomicUsize = AtomicUsize::new(0);

/// `bytes` became purgeable, published under a lock that a purge pass also takes: starts the
/// purger if it is due and not running yet, wakes it if it is parked. A load when it is awake.
#[inline]
pub fn notify(bytes: usize) {
    match STATE.load(Ordering::Acquire) {
        PARKED => wake(),
        UNSTARTED => maybe_start(bytes),
        _ => {}
    }
}

/// [`notify`] for memory published without a lock the passes take (the BigCache's lock-free
/// shards): a full fence orders the publication before the state is read.
pub fn notify_fenced(bytes: usize) {
    fence(Ordering::SeqCst);
    notify(bytes);
}

/// A slow-path pass ran (the purger is not serving): a burst counts from here.
pub fn pass_ran() {
    if FREED.load(Ordering::Relaxed) != 0 {
        FREED.store(0, Ordering::Relaxed);
    }
}

#[cold]
#[inline(never)]
fn maybe_start(bytes: usize) {
    let cfg = config::get();
    if cfg.purge_thread == config::PurgeThread::Auto && os::single_threaded() {
        // Frees add up to a burst's worth: measure what really waits (frees of memory taken
        // again count too, so the sum alone would start it on churn).
        if FREED.fetch_add(bytes, Ordering::Relaxed) + bytes < BURST {
            return;
        }
        FREED.store(0, Ordering::Relaxed);
        if crate::purge::measure_pass() < BURST {
            return;
        }
    }
    start();
}

#[cold]
fn wake() {
    if STATE
        .compare_exchange(PARKED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        futex_wake(&STATE);
    }
}

/// Whether purging waits for a delay at all (otherwise frees purge at once and a thread would
/// have nothing to do).
fn wanted() -> bool {
    let cfg = config::get();
    cfg.purge_thread != config::PurgeThread::Off
        && matches!(cfg.free_policy, FreePolicy::Adaptive | FreePolicy::Free)
}

#[cold]
#[inline(never)]
fn start() {
    if !wanted() {
        let _ = STATE.compare_exchange(UNSTARTED, STOPPED, Ordering::AcqRel, Ordering::Relaxed);
        return;
    }
    if STATE
        .compare_exchange(UNSTARTED, STARTING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if !FORK_HANDLED.load(Ordering::Acquire) && !OWN_HANDLERS.swap(true, Ordering::AcqRel) {
        // SAFETY: plain functions that do not unwind. Registered after every earlier handler,
        // so this `prepare` runs before theirs (glibc runs them in reverse order).
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(child)) };
    }
    if !os::keep_errno(spawn) {
        STATE.store(STOPPED, Ordering::Release); // the slow paths' passes go on as before
    }
}

extern "C" fn before_fork() {
    fork_prepare();
}
extern "C" fn after_fork_parent() {
    fork_parent();
}
extern "C" fn child() {
    fork_child();
}

/// A `fork`'s `prepare` step, before every other hakmem lock: waits for the purger's pass to
/// end (at most one pass: it waits for no lock) and keeps it from starting another.
pub fn fork_prepare() {
    let me = os::thread_id();
    let took = PASS_HOLDER.load(Ordering::Relaxed) != me;
    if took {
        PASS_LOCK.lock();
        PASS_HOLDER.store(me, Ordering::Relaxed);
    }
    FORK_TOOK.store(took, Ordering::Relaxed);
}

/// A `fork`'s `parent` step: lets the purger go on.
pub fn fork_parent() {
    if FORK_TOOK.load(Ordering::Relaxed) {
        PASS_HOLDER.store(0, Ordering::Relaxed);
        // SAFETY: `fork_prepare` took it on this thread.
        unsafe { PASS_LOCK.unlock() };
    }
}

/// A `fork`'s `child` step: the child has no purger (its first purgeable memory starts one),
/// and no thread but the caller (the lists of heaps keep only its own).
pub fn fork_child() {
    crate::purge::after_fork_child();
    if FORK_TOOK.load(Ordering::Relaxed) {
        PASS_HOLDER.store(0, Ordering::Relaxed);
        // SAFETY: the fork child, whose only thread took the lock in `fork_prepare`.
        unsafe { PASS_LOCK.reset_after_fork() };
    }
    if STATE.load(Ordering::Relaxed) != STOPPED || wanted() {
        STATE.store(UNSTARTED, Ordering::Release);
    }
}

/// Whether the purger is the process's only thread besides the caller (from the kernel's
/// count; false when it cannot be read): a `fork` may then treat the process as
/// single-threaded once [`fork_prepare`] ran. No allocation: raw system calls, a stack buffer.
pub fn sole_companion() -> bool {
    if !matches!(STATE.load(Ordering::Acquire), RUNNING | PARKED) {
        return false;
    }
    let mut buf = [0u8; 2048];
    // SAFETY: a read-only open of a NUL-terminated path; reads into a local buffer.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = &buf[..n.max(0) as usize];
    let key = b"\nThreads:";
    let Some(at) = text.windows(key.len()).position(|w| w == key) else {
        return false;
    };
    let digits = text[at + key.len()..]
        .iter()
        .skip_while(|b| **b == b' ' || **b == b'\t')
        .take_while(|b| b.is_ascii_digit());
    let threads = digits.fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    threads == 2
}

/// Creates the detached, signal-blocking thread. False when it could not be created.
fn spawn() -> bool {
    // SAFETY: initialised attribute and signal sets, a thread function that does not unwind;
    // the old mask is restored on every path.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return false;
        }
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 128 << 10);
        let (mut all, mut old): (libc::sigset_t, libc::sigset_t) = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut t: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut t, &attr, run, core::ptr::null_mut());
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        rc == 0
    }
}

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: naming the calling thread with a NUL-terminated name of under 16 bytes.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), c"hakmem-purge".as_ptr()) };
    if STATE
        .compare_exchange(STARTING, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        serve();
    }
    core::ptr::null_mut()
}

/// The purger's loop: a pass, then a timed sleep while work is left, else park.
fn serve() {
    loop {
        let waiting = pass() != 0;
        if STATE.load(Ordering::Acquire) == STOPPED {
            return;
        }
        if waiting {
            let half = (config::get().purge_delay_ms / 2).max(1);
            futex_wait(&STATE, RUNNING, Some(half));
            continue;
        }
        if STATE
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // stopped
        }
        fence(Ordering::SeqCst);
        // What a producer published before it could see PARKED is seen by this pass.
        if pass() != 0 {
            if STATE
                .compare_exchange(PARKED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
                && STATE.load(Ordering::Acquire) == STOPPED
            {
                return;
            }
            continue;
        }
        while STATE.load(Ordering::Acquire) == PARKED {
            futex_wait(&STATE, PARKED, None);
        }
    }
}

/// One pass under [`PASS_LOCK`]; the bytes left for a later one.
fn pass() -> usize {
    PASS_LOCK.lock();
    let n = PASSES.fetch_add(1, Ordering::Relaxed);
    let waiting = crate::purge::background_pass(os::now_ms(), n.is_multiple_of(OUTSIDE_EVERY));
    // SAFETY: taken above on this thread.
    unsafe { PASS_LOCK.unlock() };
    waiting
}

/// The C ABI's `fork` handlers call [`fork_prepare`], [`fork_parent`] and [`fork_child`]
/// themselves: the purger registers none of its own.
pub fn fork_handled_elsewhere() {
    FORK_HANDLED.store(true, Ordering::Release);
}

/// Stops the purger for good (at exit): it finishes its pass, if any, and returns.
pub fn stop() {
    if STATE.swap(STOPPED, Ordering::AcqRel) != STOPPED {
        futex_wake(&STATE);
    }
}

/// Whether the purger thread exists and serves (for tests and the statistics).
pub fn running() -> bool {
    matches!(STATE.load(Ordering::Acquire), RUNNING | PARKED)
}

/// Passes the purger thread has run.
pub fn passes() -> usize {
    PASSES.load(Ordering::Relaxed)
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout_ms: Option<u64>) {
    let ts = timeout_ms.map(|ms| libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    });
    let tp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT on a valid, aligned u32 that outlives the call; a relative timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tp,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid, aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}
