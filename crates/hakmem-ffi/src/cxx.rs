//! C++ `operator new` / `operator delete` in all twenty replaceable global forms, under their
//! Itanium-ABI names, so that a C++ program's `new` and `delete` are hakmem's whether it is
//! linked against `libhakmem.so`, preloads it, or links `libhakmem.a`.
//!
//! | form | `new` | `new[]` | `delete` | `delete[]` |
//! |---|---|---|---|---|
//! | plain | `_Znwm` | `_Znam` | `_ZdlPv` | `_ZdaPv` |
//! | nothrow | `_ZnwmRKSt9nothrow_t` | `_ZnamRKSt9nothrow_t` | `_ZdlPvRKSt9nothrow_t` | `_ZdaPvRKSt9nothrow_t` |
//! | sized | | | `_ZdlPvm` | `_ZdaPvm` |
//! | aligned | `_ZnwmSt11align_val_t` | `_ZnamSt11align_val_t` | `_ZdlPvSt11align_val_t` | `_ZdaPvSt11align_val_t` |
//! | aligned nothrow | `_ZnwmSt11align_val_tRKSt9nothrow_t` | `_ZnamSt11align_val_tRKSt9nothrow_t` | `_ZdlPvSt11align_val_tRKSt9nothrow_t` | `_ZdaPvSt11align_val_tRKSt9nothrow_t` |
//! | sized aligned | | | `_ZdlPvmSt11align_val_t` | `_ZdaPvmSt11align_val_t` |
//!
//! Every `new` serves the request from hakmem (`malloc`, or `aligned_alloc` semantics for the
//! `std::align_val_t` forms), so a successful `new` costs what `malloc` costs: no lock, no
//! allocation, no call into the C++ runtime. Every `delete` is `free` (the size and alignment
//! arguments are not needed: hakmem finds both from the pointer).
//!
//! **Failure.** Only when hakmem cannot serve a request does the C++ runtime come in: the
//! operator hands the request, with its arguments untouched, to the *next* definition of the
//! same operator in the process (`dlsym(RTLD_NEXT, name)`, resolved on the first failure and
//! cached), which is the C++ runtime's own (libstdc++'s or libc++'s). That definition retries
//! through `malloc`/`aligned_alloc` (hakmem's, which interpose the C library's), runs the
//! `std::new_handler` loop, and throws `std::bad_alloc` (or returns null, for the nothrow
//! forms) with the runtime's own code, typeinfo and unwind tables, so the standard semantics
//! hold exactly: a handler may free memory and return (the retry then succeeds from hakmem),
//! throw (`bad_alloc` or anything else), or end the program.
//!
//! No Rust frame may be on the stack while a C++ exception unwinds (the release build is
//! `panic = "abort"`, whose frames end any unwind in an abort). So on x86-64 the throwing
//! forms are small assembly trampolines that *tail-jump* to the runtime's operator: by the
//! time it runs, its return address is the C++ caller's and its frame replaces the
//! trampoline's. The nothrow forms call the runtime's nothrow operator normally, as it is
//! `noexcept` and never unwinds. On other architectures (no trampoline written for them yet)
//! every form runs the new_handler loop itself (`std::get_new_handler`, looked up with
//! `dlsym`): a handler that frees memory works and a nothrow form returns null once no
//! handler is left, but where the runtime would throw `std::bad_alloc`, or where the handler
//! throws, the process prints one line and aborts.
//!
//! Where no next definition exists (a C++ runtime linked statically without its operators),
//! a failing throwing `new` prints one line and aborts, and a failing nothrow `new` returns
//! null.
//!
//! Invariants: nothing here allocates or locks beyond what `malloc`/`free` do, except the
//! one-time `dlsym` on the failure path; nothing panics.

use core::ffi::{CStr, c_void};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// `std::align_val_t` is an enum class over `size_t`: passed as a `size_t`.
type AlignVal = usize;

/// The operators whose failure path goes to the C++ runtime's definition, by index.
const NAMES: [&CStr; 8] = [
    c"_Znwm",
    c"_Znam",
    c"_ZnwmSt11align_val_t",
    c"_ZnamSt11align_val_t",
    c"_ZnwmRKSt9nothrow_t",
    c"_ZnamRKSt9nothrow_t",
    c"_ZnwmSt11align_val_tRKSt9nothrow_t",
    c"_ZnamSt11align_val_tRKSt9nothrow_t",
];
const NEW: usize = 0;
const NEW_ARRAY: usize = 1;
const NEW_ALIGNED: usize = 2;
const NEW_ARRAY_ALIGNED: usize = 3;
const NEW_NOTHROW: usize = 4;
const NEW_ARRAY_NOTHROW: usize = 5;
const NEW_ALIGNED_NOTHROW: usize = 6;
const NEW_ARRAY_ALIGNED_NOTHROW: usize = 7;

/// The runtime's definitions, resolved on first use; null: not resolved yet.
#[cfg(target_arch = "x86_64")]
static NEXT: [AtomicPtr<c_void>; 8] = [const { AtomicPtr::new(ptr::null_mut()) }; 8];

/// The next definition of operator `kind` after this library's, or null when there is none.
/// Races are benign: every resolver finds the same address.
#[cfg(target_arch = "x86_64")]
fn next(kind: usize) -> *mut c_void {
    let cached = NEXT[kind].load(Ordering::Acquire);
    if !cached.is_null() {
        return cached;
    }
    // SAFETY: a NUL-terminated name; `dlsym` with RTLD_NEXT searches the objects loaded after
    // this one. It takes the loader's lock and allocates nothing on success (a failure may
    // allocate the dlerror message, through this library's malloc, which is ready).
    let f = hakmem_core::os::keep_errno(|| unsafe {
        libc::dlsym(libc::RTLD_NEXT, NAMES[kind].as_ptr())
    });
    if !f.is_null() {
        NEXT[kind].store(f, Ordering::Release);
    }
    f
}

/// [`next`] for a throwing operator: there, no definition means no way to throw, so the
/// process ends with a one-line report.
#[cfg(target_arch = "x86_64")]
extern "C" fn next_or_abort(kind: usize) -> *mut c_void {
    let f = next(kind);
    if f.is_null() {
        no_runtime(kind);
    }
    f
}

#[cfg(target_arch = "x86_64")]
#[cold]
fn no_runtime(kind: usize) -> ! {
    hakmem_core::diag::print(format_args!(
        "out of memory in operator new ({}) and no C++ runtime definition to throw \
         std::bad_alloc; aborting",
        NAMES[kind].to_str().unwrap_or("?")
    ));
    // SAFETY: abort never returns and allocates nothing.
    unsafe { libc::abort() }
}

/// hakmem's part of `new(size)`: the block, or null.
extern "C" fn alloc(size: usize) -> *mut c_void {
    hakmem::malloc(size).cast()
}

/// hakmem's part of `new(size, align)`: the block, or null (also for an alignment that is not
/// a power of two, which the runtime's definition then handles).
extern "C" fn alloc_aligned(size: usize, align: AlignVal) -> *mut c_void {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    super::aligned(align, size)
}

/// A throwing `new(size)`: [`alloc`], else a tail jump to the runtime's operator with `size`.
#[cfg(target_arch = "x86_64")]
macro_rules! throwing_new {
    ($export:literal, $fn:ident, $kind:expr) => {
        #[unsafe(naked)]
        #[unsafe(export_name = $export)]
        pub unsafe extern "C" fn $fn(size: usize) -> *mut c_void {
            // The stack is 8 mod 16 at entry: one push aligns it for the calls. Naked functions
            // get no call-frame information of their own: the directives describe each stack
            // change, for debuggers, profilers and an unwinder passing through.
            core::arch::naked_asm!(
                ".cfi_startproc",
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "call {alloc}",
                "test rax, rax",
                "jz 2f",
                "pop rcx",
                ".cfi_adjust_cfa_offset -8",
                "ret",
                ".cfi_adjust_cfa_offset 8",
                "2:",
                "mov edi, {kind}",
                "call {next}",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "jmp rax",
                ".cfi_endproc",
                alloc = sym alloc,
                next = sym next_or_abort,
                kind = const $kind,
            )
        }
    };
}

/// A throwing `new(size, align)`: [`alloc_aligned`], else a tail jump to the runtime's
/// operator with both arguments.
#[cfg(target_arch = "x86_64")]
macro_rules! throwing_new_aligned {
    ($export:literal, $fn:ident, $kind:expr) => {
        #[unsafe(naked)]
        #[unsafe(export_name = $export)]
        pub unsafe extern "C" fn $fn(size: usize, align: AlignVal) -> *mut c_void {
            // Two pushes and 8 bytes of padding keep the stack 16-aligned for the calls.
            core::arch::naked_asm!(
                ".cfi_startproc",
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "push rsi",
                ".cfi_adjust_cfa_offset 8",
                "sub rsp, 8",
                ".cfi_adjust_cfa_offset 8",
                "call {alloc}",
                "test rax, rax",
                "jz 2f",
                "add rsp, 24",
                ".cfi_adjust_cfa_offset -24",
                "ret",
                ".cfi_adjust_cfa_offset 24",
                "2:",
                "mov edi, {kind}",
                "call {next}",
                "add rsp, 8",
                ".cfi_adjust_cfa_offset -8",
                "pop rsi",
                ".cfi_adjust_cfa_offset -8",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "jmp rax",
                ".cfi_endproc",
                alloc = sym alloc_aligned,
                next = sym next_or_abort,
                kind = const $kind,
            )
        }
    };
}

/// Elsewhere: the new_handler loop here, and an abort where the runtime would throw (see the
/// module documentation).
#[cfg(not(target_arch = "x86_64"))]
macro_rules! throwing_new {
    ($export:literal, $fn:ident, $kind:expr) => {
        #[unsafe(export_name = $export)]
        pub extern "C" fn $fn(size: usize) -> *mut c_void {
            loop {
                let p = alloc(size);
                if !p.is_null() {
                    return p;
                }
                if !call_new_handler() {
                    no_handler($kind);
                }
            }
        }
    };
}

#[cfg(not(target_arch = "x86_64"))]
macro_rules! throwing_new_aligned {
    ($export:literal, $fn:ident, $kind:expr) => {
        #[unsafe(export_name = $export)]
        pub extern "C" fn $fn(size: usize, align: AlignVal) -> *mut c_void {
            loop {
                let p = alloc_aligned(size, align);
                if !p.is_null() {
                    return p;
                }
                if !call_new_handler() {
                    no_handler($kind);
                }
            }
        }
    };
}

/// One turn of the new_handler loop: calls the installed handler (`std::get_new_handler`,
/// looked up in the runtime) and returns true, or returns false when there is none. A handler
/// that throws ends the process: its unwind meets this `"C-unwind"` call, which aborts rather
/// than unwind through Rust frames.
#[cfg(not(target_arch = "x86_64"))]
#[cold]
fn call_new_handler() -> bool {
    static GET: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
    let mut get = GET.load(Ordering::Acquire);
    if get.is_null() {
        // SAFETY: a NUL-terminated name, looked up in every loaded object.
        get = hakmem_core::os::keep_errno(|| unsafe {
            libc::dlsym(libc::RTLD_DEFAULT, c"_ZSt15get_new_handlerv".as_ptr())
        });
        GET.store(get, Ordering::Release);
    }
    if get.is_null() {
        return false;
    }
    // SAFETY: `std::get_new_handler() noexcept`, which returns a `void (*)()`.
    let get: extern "C" fn() -> *mut c_void = unsafe { core::mem::transmute(get) };
    let handler = get();
    if handler.is_null() {
        return false;
    }
    // SAFETY: the program's new_handler, a `void (*)()` that may unwind.
    let handler: extern "C-unwind" fn() = unsafe { core::mem::transmute(handler) };
    handler();
    true
}

/// Where the runtime would throw `std::bad_alloc`: one line, then abort.
#[cfg(not(target_arch = "x86_64"))]
#[cold]
fn no_handler(kind: usize) -> ! {
    hakmem_core::diag::print(format_args!(
        "out of memory in operator new ({}), and std::bad_alloc cannot be thrown through \
         hakmem on this architecture; aborting",
        NAMES[kind].to_str().unwrap_or("?")
    ));
    // SAFETY: abort never returns and allocates nothing.
    unsafe { libc::abort() }
}

throwing_new!("_Znwm", new, NEW);
throwing_new!("_Znam", new_array, NEW_ARRAY);
throwing_new_aligned!("_ZnwmSt11align_val_t", new_aligned, NEW_ALIGNED);
throwing_new_aligned!("_ZnamSt11align_val_t", new_array_aligned, NEW_ARRAY_ALIGNED);

/// `std::nothrow_t`, passed by reference and never read.
type NoThrow = *const c_void;

/// The runtime's nothrow `new(size)` for a request hakmem refused: it runs the new_handler
/// loop (its call to the throwing `new` comes back to [`new`], whose tail jump reaches the
/// runtime's, whose `bad_alloc` it catches) and returns null where the throwing form would
/// throw. Null without a runtime.
#[cfg(target_arch = "x86_64")]
#[cold]
fn nothrow_fallback(kind: usize, size: usize, tag: NoThrow) -> *mut c_void {
    let f = next(kind);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the runtime's definition of this very `noexcept` operator, of this type.
    let f: extern "C" fn(usize, NoThrow) -> *mut c_void = unsafe { core::mem::transmute(f) };
    f(size, tag)
}

/// [`nothrow_fallback`] for the aligned forms.
#[cfg(target_arch = "x86_64")]
#[cold]
fn nothrow_aligned_fallback(
    kind: usize,
    size: usize,
    align: AlignVal,
    tag: NoThrow,
) -> *mut c_void {
    let f = next(kind);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the runtime's definition of this very `noexcept` operator, of this type.
    let f: extern "C" fn(usize, AlignVal, NoThrow) -> *mut c_void =
        unsafe { core::mem::transmute(f) };
    f(size, align, tag)
}

/// Elsewhere the runtime's nothrow operator would call back into the throwing form, which
/// cannot throw here: the new_handler loop runs here, null when no handler is left.
#[cfg(not(target_arch = "x86_64"))]
#[cold]
fn nothrow_fallback(_kind: usize, size: usize, _tag: NoThrow) -> *mut c_void {
    while call_new_handler() {
        let p = alloc(size);
        if !p.is_null() {
            return p;
        }
    }
    ptr::null_mut()
}

#[cfg(not(target_arch = "x86_64"))]
#[cold]
fn nothrow_aligned_fallback(
    _kind: usize,
    size: usize,
    align: AlignVal,
    _tag: NoThrow,
) -> *mut c_void {
    while call_new_handler() {
        let p = alloc_aligned(size, align);
        if !p.is_null() {
            return p;
        }
    }
    ptr::null_mut()
}

#[unsafe(export_name = "_ZnwmRKSt9nothrow_t")]
pub extern "C" fn new_nothrow(size: usize, tag: NoThrow) -> *mut c_void {
    let p = alloc(size);
    if p.is_null() {
        nothrow_fallback(NEW_NOTHROW, size, tag)
    } else {
        p
    }
}

#[unsafe(export_name = "_ZnamRKSt9nothrow_t")]
pub extern "C" fn new_array_nothrow(size: usize, tag: NoThrow) -> *mut c_void {
    let p = alloc(size);
    if p.is_null() {
        nothrow_fallback(NEW_ARRAY_NOTHROW, size, tag)
    } else {
        p
    }
}

#[unsafe(export_name = "_ZnwmSt11align_val_tRKSt9nothrow_t")]
pub extern "C" fn new_aligned_nothrow(size: usize, align: AlignVal, tag: NoThrow) -> *mut c_void {
    let p = alloc_aligned(size, align);
    if p.is_null() {
        nothrow_aligned_fallback(NEW_ALIGNED_NOTHROW, size, align, tag)
    } else {
        p
    }
}

#[unsafe(export_name = "_ZnamSt11align_val_tRKSt9nothrow_t")]
pub extern "C" fn new_array_aligned_nothrow(
    size: usize,
    align: AlignVal,
    tag: NoThrow,
) -> *mut c_void {
    let p = alloc_aligned(size, align);
    if p.is_null() {
        nothrow_aligned_fallback(NEW_ARRAY_ALIGNED_NOTHROW, size, align, tag)
    } else {
        p
    }
}

/// The twelve `operator delete` forms: each is `free`. The size (sized forms) and alignment
/// (aligned forms) the caller passes are what it allocated with; hakmem knows both from the
/// pointer, so they are not needed and not trusted.
macro_rules! delete {
    ($($export:literal => $fn:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[unsafe(export_name = $export)]
        pub unsafe extern "C" fn $fn(p: *mut c_void $(, $arg: $ty)*) {
            // SAFETY: C++'s contract: `p` is null or a live block from a matching `new`, which
            // in this process is hakmem's.
            unsafe { hakmem::free(p.cast()) }
        }
    )*};
}

delete! {
    "_ZdlPv" => delete();
    "_ZdaPv" => delete_array();
    "_ZdlPvm" => delete_sized(_size: usize);
    "_ZdaPvm" => delete_array_sized(_size: usize);
    "_ZdlPvRKSt9nothrow_t" => delete_nothrow(_tag: NoThrow);
    "_ZdaPvRKSt9nothrow_t" => delete_array_nothrow(_tag: NoThrow);
    "_ZdlPvSt11align_val_t" => delete_aligned(_align: AlignVal);
    "_ZdaPvSt11align_val_t" => delete_array_aligned(_align: AlignVal);
    "_ZdlPvSt11align_val_tRKSt9nothrow_t" => delete_aligned_nothrow(_align: AlignVal, _tag: NoThrow);
    "_ZdaPvSt11align_val_tRKSt9nothrow_t" => delete_array_aligned_nothrow(_align: AlignVal, _tag: NoThrow);
    "_ZdlPvmSt11align_val_t" => delete_sized_aligned(_size: usize, _align: AlignVal);
    "_ZdaPvmSt11align_val_t" => delete_array_sized_aligned(_size: usize, _align: AlignVal);
}
