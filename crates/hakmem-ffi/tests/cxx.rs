//! C++ `operator new`/`delete` from libhakmem (`tests/c/cxx.cpp`, C++17, `-Wall -Wextra
//! -Werror`), preloaded, linked against `libhakmem.so` and linked statically against
//! `libhakmem.a`: every form resolves to hakmem and is served by it, aligned forms honour the
//! alignment, a failing `new` throws a `std::bad_alloc` the program catches (after the
//! new_handler), nothrow forms return null. Skipped, with a line, without `g++`.

mod common;
mod linking;
use common::*;
use linking::*;

/// The `ok` lines `cxx.cpp` prints, one per section.
const SECTIONS: &[&str] = &[
    "ok provider",
    "ok new/delete, sized, nothrow",
    "ok aligned",
    "ok bad_alloc, nothrow nullptr, new_handler",
];

const FLAGS: &[&str] = &["-std=c++17", "-O1", "-g", "-Wall", "-Wextra", "-Werror"];

fn check(out: &Output, what: &str) {
    out.assert_success(what);
    let fails = fail_lines(&out.stdout);
    assert!(fails.is_empty(), "{what}: FAIL lines:\n{fails}");
    for s in SECTIONS {
        assert!(
            out.stdout.lines().any(|l| l == *s),
            "{what}: no `{s}` line:\n{}",
            tail(&out.stdout, 3000)
        );
    }
    check_summary(&out.stdout, "cxx", 600);
}

/// Under `LD_PRELOAD` (the program knows nothing of hakmem); and without it the program
/// fails, so its checks cannot pass against the C++ runtime's operators.
#[test]
fn operators_under_preload() {
    let Some(cxx) = require_program("g++", "operators_under_preload") else {
        return;
    };
    let exe = build(&cxx, "cxx.cpp", "cxx-preload", FLAGS, &["-ldl"]);
    check(&run(preloaded(plain(&exe))), "cxx.cpp preloaded");
    let out = run(plain(&exe));
    assert!(
        !out.status.success()
            && out
                .stdout
                .contains("hakmem_owns not found: is libhakmem.so preloaded?"),
        "cxx.cpp passed without hakmem:\n{}",
        out.stdout
    );
}

/// Linked against `libhakmem.so` (through its SONAME) with `hakmem.h`.
#[test]
fn operators_linked_shared() {
    let Some(cxx) = require_program("g++", "operators_linked_shared") else {
        return;
    };
    let include = format!("-I{}", include_dir().display());
    let mut args = FLAGS.to_vec();
    args.extend(["-DHAKMEM_LINKED", &include]);
    let l = format!("-L{}", lib_dir().display());
    let exe = build(
        &cxx,
        "cxx.cpp",
        "cxx-shared",
        &args,
        &[&l, "-lhakmem", "-ldl"],
    );
    let mut cmd = plain(&exe);
    cmd.env("LD_LIBRARY_PATH", lib_dir());
    check(&run(cmd), "cxx.cpp linked against libhakmem.so");
}

/// Linked statically against `libhakmem.a`: the executable's own operators are hakmem's.
#[test]
fn operators_linked_static() {
    let Some(cxx) = require_program("g++", "operators_linked_static") else {
        return;
    };
    let include = format!("-I{}", include_dir().display());
    let mut args = FLAGS.to_vec();
    args.extend(["-DHAKMEM_LINKED", &include]);
    let a = staticlib();
    let mut libs = vec![a.to_str().unwrap()];
    libs.extend(STATIC_DEPS);
    let exe = build(&cxx, "cxx.cpp", "cxx-static", &args, &libs);
    check(&run(plain(&exe)), "cxx.cpp linked against libhakmem.a");
}
