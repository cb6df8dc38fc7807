//! `nm -D --defined-only libhakmem.so` exports the whole malloc family, the
//! glibc-internal aliases, hakmem's own entry points and C++'s operator new/delete.

mod common;
use common::*;

const SYMBOLS: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "free_sized",
    "free_aligned_sized",
    "__libc_malloc",
    "__libc_free",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "hakmem_stats_format",
    "hakmem_owns",
    "hakmem_guarded_malloc",
    // C++ operator new/delete, every replaceable global form (src/cxx.rs).
    "_Znwm",
    "_Znam",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPv",
    "_ZdaPv",
    "_ZdlPvm",
    "_ZdaPvm",
    "_ZdlPvRKSt9nothrow_t",
    "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t",
    "_ZdaPvSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t",
];

#[test]
fn exports_malloc_family() {
    let Some(nm) = require_program("nm", "exports_malloc_family") else {
        return;
    };
    let mut cmd = plain(nm);
    cmd.args(["-D", "--defined-only"]).arg(libhakmem());
    let out = run(cmd);
    out.assert_success("nm -D --defined-only libhakmem.so");
    // Lines look like `000000000001a2b0 T malloc` (maybe `malloc@@VER`).
    let mut exported = std::collections::BTreeMap::new();
    for line in out.stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 {
            let name = f[2].split('@').next().unwrap_or(f[2]);
            exported.insert(name.to_string(), f[1].to_string());
        }
    }
    let mut missing = Vec::new();
    for s in SYMBOLS {
        match exported.get(*s) {
            None => missing.push(format!("{s} (not exported)")),
            Some(kind) if !matches!(kind.as_str(), "T" | "W" | "i") => {
                missing.push(format!("{s} (type {kind}, want a global function T/W/i)"))
            }
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "libhakmem.so is missing exports: {missing:?}\nnm output:\n{}",
        tail(&out.stdout, 4000)
    );
}
