//! The operating system: anonymous mappings, purging, errno, and the thread pointer.
//! Every function here is a thin fenced wrapper over one system call.

use core::ptr;

/// The page size hakmem assumes (x86-64 and most aarch64 Linux systems).
pub const PAGE: usize = 4096;

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
#[inline]
pub const fn align_up(n: usize, align: usize) -> Option<usize> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Maps `size` bytes of fresh zeroed read-write memory; null when the OS refuses.
pub fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Maps `size` bytes aligned to `align` (a power of two ≥ [`PAGE`]). Null when the OS refuses,
/// and for an `align` that is not a power of two (the trimming below relies on it).
///
/// First an exact mapping: the kernel places mappings top-down, next to the previous ones, so
/// after aligned mappings of whole alignments the next one is usually aligned already (one
/// system call, and no more address space than needed, which an `RLIMIT_AS` counts). Else
/// over-reserving by `align` and trimming both ends; and when even that does not fit (address
/// space short), the exact size at the aligned address just below the first try, as a hint.
pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    let first = map(size);
    if first.is_null() || (first as usize).is_multiple_of(align) {
        return first;
    }
    // SAFETY: the mapping just made, unused.
    unsafe { unmap(first, size) };
    if let Some(total) = size.checked_add(align) {
        let raw = map(total);
        if !raw.is_null() {
            let start = raw as usize;
            let aligned = (start + align - 1) & !(align - 1);
            let head = aligned - start;
            let tail = total - head - size;
            // SAFETY: both trimmed ranges lie inside the mapping just made and are not used.
            unsafe {
                if head > 0 {
                    unmap(raw, head);
                }
                if tail > 0 {
                    unmap((aligned + size) as *mut u8, tail);
                }
            }
            return aligned as *mut u8;
        }
    }
    let hint = first as usize & !(align - 1);
    if hint == 0 {
        return ptr::null_mut();
    }
    // SAFETY: a hint only (no MAP_FIXED): the kernel never replaces an existing mapping.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    if (p as usize).is_multiple_of(align) {
        return p.cast();
    }
    // SAFETY: the mapping just made, unused.
    unsafe { unmap(p.cast(), size) };
    ptr::null_mut()
}

/// Unmaps a range that [`map`] or [`map_aligned`] returned (or a page-aligned part of one).
///
/// # Safety
/// Nothing may use the range afterwards.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: the caller owns the range.
    unsafe { libc::munmap(p.cast(), size) };
}

/// The calling thread's `errno`.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// Keeps `errno` unchanged across `f` (for `free`, which POSIX forbids to touch it).
#[inline]
pub fn keep_errno<R>(f: impl FnOnce() -> R) -> R {
    let e = errno();
    let r = f();
    set_errno(e);
    r
}

/// A value unique to each live thread, read from the thread-pointer register in one
/// instruction (the same identity mimalloc uses). Never 0.
#[inline(always)]
pub fn thread_id() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: on x86-64 Linux %fs:0 holds the thread control block's self pointer.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags, pure))
        };
        tp
    }
    #[cfg(target_arch = "aarch64")]
    {
        let tp: usize;
        // SAFETY: tpidr_el0 is the thread pointer register, readable from user space.
        unsafe {
            core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags, pure))
        };
        tp
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // SAFETY: pthread_self never fails and needs no allocation.
        unsafe { libc::pthread_self() as usize }
    }
}

/// Moves the pages of the mapping `[p, p + old)` to `[to, to + new)`, replacing whatever was
/// mapped there, without copying. Null when the OS refuses.
///
/// # Safety
/// `p`/`old` must describe a whole mapping the caller owns, and `[to, to + new)` a range the
/// caller owns too.
pub unsafe fn remap_to(p: *mut u8, old: usize, new: usize, to: *mut u8) -> *mut u8 {
    // SAFETY: the caller owns both ranges.
    let q = unsafe {
        libc::mremap(
            p.cast(),
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            to.cast::<libc::c_void>(),
        )
    };
    if q == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        q.cast()
    }
}

/// Grows a mapping in place. False when the address space after it is taken.
///
/// # Safety
/// `p`/`old` must describe a whole mapping the caller owns.
pub unsafe fn grow_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: without MREMAP_MAYMOVE the kernel only extends into free address space.
    let q = unsafe { libc::mremap(p.cast(), old, new, 0) };
    q != libc::MAP_FAILED
}

/// Whether the process has never had a second thread (glibc's `__libc_single_threaded`; false
/// where there is no such flag).
pub fn single_threaded() -> bool {
    #[cfg(target_env = "gnu")]
    {
        unsafe extern "C" {
            static __libc_single_threaded: core::ffi::c_char;
        }
        // SAFETY: glibc's flag lives as long as the process; only glibc writes it (to 0, when a
        // thread is created), and a byte load is what its manual allows.
        let flag = unsafe {
            core::sync::atomic::AtomicU8::from_ptr(
                (&raw const __libc_single_threaded).cast_mut().cast(),
            )
        };
        flag.load(core::sync::atomic::Ordering::Relaxed) != 0
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Milliseconds of a monotonic clock (the coarse clock: a vDSO read, no system call, no
/// allocation; resolution a few milliseconds).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writing into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// An alignment that is not a power of two is refused, not turned into a bad trim.
    #[test]
    fn map_aligned_refuses_other_alignments() {
        for align in [0, 3, 3 << 22, 5 * PAGE, usize::MAX] {
            assert!(map_aligned(4 << 20, align).is_null(), "align {align:#x}");
        }
    }

    #[test]
    fn map_aligned_is_aligned_and_exact() {
        const MIB: usize = 1 << 20;
        for (size, align) in [(4 * MIB, 4 * MIB), (8 * MIB, 4 * MIB), (4 * MIB, 64 * MIB)] {
            let v: [*mut u8; 8] = core::array::from_fn(|_| map_aligned(size, align));
            for &p in &v {
                assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                // SAFETY: a fresh mapping of `size` bytes, written at both ends, unmapped once.
                unsafe {
                    p.write(1);
                    p.add(size - 1).write(2);
                    unmap(p, size);
                }
            }
        }
    }
}

/// The process's resident set in bytes, from `/proc/self/statm` (read into a stack buffer with
/// raw `open`/`read`); 0 when it cannot be read.
pub fn resident_bytes() -> u64 {
    keep_errno(|| {
        let mut buf = [0u8; 128];
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let fd = unsafe {
            libc::open(
                c"/proc/self/statm".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return 0;
        }
        // SAFETY: reading into our own buffer of that length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
        if n <= 0 {
            return 0;
        }
        // "size resident shared ...", in pages.
        let pages = buf[..n as usize]
            .split(|&c| c == b' ')
            .nth(1)
            .filter(|w| !w.is_empty() && w.iter().all(u8::is_ascii_digit))
            .map_or(0, |w| {
                w.iter().fold(0u64, |v, d| {
                    v.wrapping_mul(10).wrapping_add((d - b'0') as u64)
                })
            });
        // SAFETY: no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        pages.saturating_mul(page.max(0) as u64)
    })
}
