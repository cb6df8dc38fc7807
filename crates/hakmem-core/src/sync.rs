//! The one place concurrent primitives come from: `std`'s atomics normally, `loom`'s under
//! `cfg(loom)` so that every lock-free structure can be model-checked.
//!
//! [`RawLock`] is a small futex lock. It never allocates, can be const-initialised, and can be
//! force-released in a `fork` child (see [`RawLock::reset_after_fork`]), which `std::sync::Mutex`
//! cannot.

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A `Cell` for state that only one thread at a time may touch (an owner's slab fields): plain
/// `core::cell::Cell` normally, loom's checked `Cell` under `cfg(loom)`, so that a model fails
/// on any access that is not ordered after the previous one by a happens-before edge.
#[cfg(not(loom))]
pub use core::cell::Cell;
#[cfg(loom)]
pub use loom::cell::Cell;

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// A three-state futex lock (unlocked / locked / locked with waiters).
pub struct RawLock {
    state: AtomicU32,
}

impl RawLock {
    /// An unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RawLock {
            state: AtomicU32::new(UNLOCKED),
        }
    }
    /// An unlocked lock.
    #[cfg(loom)]
    pub fn new() -> Self {
        RawLock {
            state: AtomicU32::new(UNLOCKED),
        }
    }

    /// Takes the lock, sleeping in the kernel while another thread holds it.
    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
    }

    /// Takes the lock if it is free; false (and nothing held) otherwise.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[cold]
    fn lock_contended(&self) {
        // Spin a little before sleeping. Left out under loom: each spin is a Relaxed load the
        // model would branch on, multiplying the executions of every model that meets a held
        // lock, and it adds nothing to check (it only retries `lock`'s Acquire CAS).
        #[cfg(not(loom))]
        {
            let mut spins = 0;
            while spins < 64 {
                if self.state.load(Ordering::Relaxed) == UNLOCKED
                    && self
                        .state
                        .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    return;
                }
                core::hint::spin_loop();
                spins += 1;
            }
        }
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            wait(&self.state, CONTENDED);
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The caller holds it (took it with [`Self::lock`] or [`Self::try_lock`] and has not
    /// released it since): releasing another thread's hold would let two threads in.
    #[inline]
    pub unsafe fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            wake_one(&self.state);
        }
    }

    /// Marks the lock free without waking anyone.
    ///
    /// # Safety
    /// Only in a `fork` child, where the thread that held it (the forking thread, in its
    /// `prepare` handler) is the only thread left.
    pub unsafe fn reset_after_fork(&self) {
        self.state.store(UNLOCKED, Ordering::Relaxed);
    }
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(loom))]
fn wait(state: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT on a valid, aligned u32 that outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            state.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

#[cfg(not(loom))]
fn wake_one(state: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid, aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            state.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

#[cfg(loom)]
fn wait(_state: &AtomicU32, _expected: u32) {
    loom::thread::yield_now();
}

#[cfg(loom)]
fn wake_one(_state: &AtomicU32) {}

/// A value guarded by a [`RawLock`]. `const`-constructible, never allocates.
pub struct Mutex<T> {
    lock: RawLock,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `lock`.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as above; the value itself is Send.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        Mutex {
            lock: RawLock::new(),
            value: UnsafeCell::new(value),
        }
    }
    /// A new unlocked mutex.
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        Mutex {
            lock: RawLock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Locks and returns a guard.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.lock.lock();
        MutexGuard { m: self }
    }

    /// Locks if the mutex is free: a guard, or None without waiting.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        // The guard only once the lock is held: built eagerly, a refused attempt would drop it
        // and release the other thread's hold.
        self.lock.try_lock().then(|| MutexGuard { m: self })
    }

    /// The raw lock, for `fork` handlers that must hold it across the fork.
    pub fn raw(&self) -> &RawLock {
        &self.lock
    }
}

/// Releases the mutex when dropped.
pub struct MutexGuard<'a, T> {
    m: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.m.value.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, exclusively.
        unsafe { &mut *self.m.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard is the proof that this thread holds the lock.
        unsafe { self.m.lock.unlock() };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_refused_try_lock_leaves_the_holder_holding() {
        let m = Mutex::new(0u32);
        let held = m.lock();
        assert!(m.try_lock().is_none());
        // Still held: a second attempt is refused too (a refused attempt that released the
        // lock would let this one in).
        assert!(m.try_lock().is_none());
        drop(held);
        let mut g = m.try_lock().expect("free after the holder let go");
        *g += 1;
        assert!(m.try_lock().is_none());
        drop(g);
        assert_eq!(*m.lock(), 1);
    }
}
