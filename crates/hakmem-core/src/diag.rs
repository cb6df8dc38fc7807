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
    let caller = if caller != 0 {
        Some((caller, None))
    } else {
        caller::find()
    };
    if let Some((ip, at)) = caller {
        let _ = write!(b, ", caller {ip:#x}");
        if let Some((name, off)) = at {
            let _ = b.write_str(" (");
            let _ = b.write_str(name);
            let _ = write!(b, "+{off:#x})");
        }
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

/// The caller of the allocator: the return address of the first stack frame outside it,
/// found by the unwinder (`_Unwind_Backtrace`, which allocates nothing) on the fault path only.
mod caller {
    use core::ffi::{CStr, c_int, c_void};

    #[repr(C)]
    struct Context {
        _opaque: [u8; 0],
    }
    type Step = extern "C" fn(*mut Context, *mut c_void) -> c_int;
    unsafe extern "C" {
        fn _Unwind_Backtrace(step: Step, arg: *mut c_void) -> c_int;
        fn _Unwind_GetIP(ctx: *mut Context) -> usize;
    }
    /// `_URC_NO_REASON`: go on to the next frame; any other value stops the walk.
    const GO_ON: c_int = 0;
    const STOP: c_int = 5;
    const MAX_FRAMES: u32 = 64;

    struct Walk {
        /// The load address of the object holding the allocator.
        own: usize,
        /// Whether that object is the program itself (a Rust program with hakmem as its
        /// global allocator): then frames are told apart by their symbol names.
        own_is_main: bool,
        frames: u32,
        found: Option<(usize, Option<(&'static str, usize)>)>,
    }

    /// The object holding `addr`: its load address, file name (last part) and symbol.
    fn object_of(addr: usize) -> Option<(usize, &'static str, Option<&'static CStr>)> {
        // SAFETY: dladdr only reads the loader's tables; `info` is plain data.
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 {
            return None;
        }
        let name = if info.dli_fname.is_null() {
            ""
        } else {
            // SAFETY: the loader's NUL-terminated file name, alive as long as the object.
            let full = unsafe { CStr::from_ptr(info.dli_fname) }
                .to_str()
                .unwrap_or("");
            full.rsplit('/').next().unwrap_or(full)
        };
        // SAFETY: as above, for the symbol name.
        let sym = (!info.dli_sname.is_null()).then(|| unsafe { CStr::from_ptr(info.dli_sname) });
        Some((info.dli_fbase as usize, name, sym))
    }

    /// Whether a symbol belongs to the allocator or to the glue that calls it.
    fn is_allocator(sym: Option<&CStr>) -> bool {
        let Some(s) = sym.and_then(|s| s.to_str().ok()) else {
            return false;
        };
        s.contains("hakmem")
            || s.starts_with("__rust_")
            || s.starts_with("__rdl_")
            || s.starts_with("__rg_")
            || s.contains("5alloc5alloc")
    }

    extern "C" fn step(ctx: *mut Context, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `Walk` that `find` passed; `ctx` is the unwinder's frame.
        let (w, ip) = unsafe { (&mut *arg.cast::<Walk>(), _Unwind_GetIP(ctx)) };
        w.frames += 1;
        if ip == 0 || w.frames > MAX_FRAMES {
            return STOP;
        }
        let Some((base, name, sym)) = object_of(ip.wrapping_sub(1)) else {
            w.found = Some((ip, None));
            return STOP;
        };
        if base == w.own && (!w.own_is_main || is_allocator(sym)) {
            return GO_ON;
        }
        w.found = Some((ip, Some((name, ip - base))));
        STOP
    }

    /// The caller's return address, with its object's name and the offset in it.
    #[cold]
    pub(super) fn find() -> Option<(usize, Option<(&'static str, usize)>)> {
        let (own, _, _) = object_of(find as fn() -> _ as usize)?;
        // SAFETY: getauxval has no preconditions.
        let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as usize;
        let own_is_main = object_of(phdr).is_some_and(|o| o.0 == own);
        let mut w = Walk {
            own,
            own_is_main,
            frames: 0,
            found: None,
        };
        // SAFETY: `step` only reads the frames and writes `w`, which outlives the walk.
        unsafe { _Unwind_Backtrace(step, (&mut w as *mut Walk).cast()) };
        w.found
    }
}
