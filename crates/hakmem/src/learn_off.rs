//! The learning driver in a build without the `learn` feature: the learning modes and the
//! site rules run the fixed default policy, and say so once.

use core::sync::atomic::{AtomicBool, Ordering};
use hakmem_core::config;
use hakmem_core::sync::RawLock;

/// Warns once that the configuration asks for learning this build cannot do.
fn warn_once() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let cfg = config::get();
    if (cfg.learning() || cfg.site_rules) && !WARNED.swap(true, Ordering::Relaxed) {
        hakmem_core::diag::print(format_args!(
            "built without the learner (feature `learn`): the fixed default policy runs"
        ));
    }
}

/// Never learning here.
pub fn active() -> bool {
    false
}

/// Nothing to lock; a lock nobody else takes, for the `fork` handlers' fixed order.
pub fn fork_lock() -> &'static RawLock {
    static NONE: RawLock = RawLock::new();
    &NONE
}

/// Nothing to record (the first large allocation warns, if learning was asked for).
pub fn on_large_alloc(_size: usize, _site: usize) {
    warn_once();
}

/// Nothing to record.
pub fn on_large_free(_site: usize, _size: usize, _born_ms: u64, _tid: usize) {}

/// One line: no learner in this build.
pub fn report() {
    hakmem_core::diag::write_stderr(b"hakmem-elo: no learner in this build\n");
}
