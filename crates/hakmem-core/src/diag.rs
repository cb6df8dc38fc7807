//! Diagnostics that never allocate: formatted into a stack buffer, written with `write(2)`.

use core::fmt::{self, Write};

/// A fixed-capacity text buffer on the stack; overflowing text is cut, never reallocated.
pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes raw bytes to standard error, keeping `errno`.
pub fn write_stderr(bytes: &[u8]) {
    crate::os::keep_errno(|| {
        let mut rest = bytes;
        while !rest.is_empty() {
            // SAFETY: writing an initialised slice to fd 2.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                break;
            }
            rest = &rest[n as usize..];
        }
    });
}

/// Formats a message (prefixed `hakmem: `, ending in a newline) and writes it to stderr.
pub fn print(args: fmt::Arguments<'_>) {
    let mut b = StackBuf::<512>::new();
    let _ = b.write_str("hakmem: ");
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
    write_stderr(b.as_bytes());
}

/// Reports a pointer passed to `free`/`realloc` that is not in hakmem's memory at all (another
/// allocator's, the stack, a global, a wild address): an invalid free, by the one policy of
/// [`fault`]. Nothing of hakmem's is touched.
#[cold]
pub fn bad_pointer(what: &str, p: *const u8) {
    fault(Fault::InvalidFree("not allocated by hakmem"), what, p, 0, 0);
}

/// A heap misuse hakmem detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A block freed again while it was already free.
    DoubleFree,
    /// A pointer into hakmem's memory that is not the start of a live block (`why` says what
    /// it is: "interior pointer", "not a block", ...).
    InvalidFree(&'static str),
    /// A free-list link that does not decode to a free block of its slab: a write into a freed
    /// block (use after free) or past the end of a block (overflow).
    Corruption,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::DoubleFree => f.write_str("double free"),
            Fault::InvalidFree(why) => write!(f, "invalid free: {why}"),
            Fault::Corruption => f.write_str("free-list corruption"),
        }
    }
}

/// Reports a detected heap misuse in one line — the fault, the pointer `p` (for a corruption:
/// the block whose link was overwritten), the size class (`class_size` bytes; 0: unknown) and
/// the caller's return address (0: unknown) — then, by `HAKMEM_ON_ERROR`, aborts (the default)
/// or returns, and the caller leaves the block alone.
#[cold]
#[inline(never)]
pub fn fault(what: Fault, op: &str, p: *const u8, class_size: usize, caller: usize) {
    crate::stats::FAULTS.add(1);
    let abort = crate::config::get().on_error == crate::config::OnError::Abort;
    let mut b = StackBuf::<512>::new();
    let _ = write!(b, "hakmem: {what}: {op}({p:p})");
    if class_size != 0 {
        let _ = write!(b, ", size class {class_size}");
    }
    if caller != 0 {
        let _ = write!(b, ", caller {caller:#x}");
    }
    let _ = b.write_str(if abort {
        "; aborting (HAKMEM_ON_ERROR=warn to continue)\n"
    } else {
        "; block left alone\n"
    });
    write_stderr(b.as_bytes());
    if abort {
        // SAFETY: abort never returns; it allocates nothing.
        unsafe { libc::abort() };
    }
}
