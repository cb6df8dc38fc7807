//! `include/hakmem.h`: it compiles cleanly (`-Wall -Wextra -Werror`) in every C and C++
//! dialect, declares exactly the `hakmem_*` functions the library exports, with the types the
//! library implements (`tests/c/header.c` assigns each to a typed pointer and calls it), and
//! carries the crate's version; and the library's packaging: the SONAME `libhakmem.so.0`, and
//! `libhakmem.a`, which a C program links statically and which then serves every allocation.

mod common;
mod linking;
use common::*;
use linking::*;

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

fn strict(std: &str) -> Vec<&str> {
    vec![std, "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic"]
}

/// The header in C99, C11 and C2x, and (compiled as C++) C++98 to C++20; each program is
/// linked against the shared library by its SONAME and passes every check.
#[test]
fn header_compiles_and_links_in_every_dialect() {
    let include = format!("-I{}", include_dir().display());
    let libs = [format!("-L{}", lib_dir().display()), "-lhakmem".to_string()];
    let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
    let mut builds = Vec::new();
    for std in ["-std=c99", "-std=c11", "-std=c2x"] {
        let mut args = strict(std);
        args.push(&include);
        let out = format!("header{}", &std[5..]);
        builds.push(build(cc().as_ref(), "header.c", &out, &args, &libs));
    }
    if let Some(cxx) = require_program("g++", "header_compiles_and_links_in_every_dialect (C++)") {
        for std in ["-std=c++98", "-std=c++11", "-std=c++17", "-std=c++20"] {
            let mut args = vec!["-x", "c++"];
            args.extend(strict(std));
            args.push(&include);
            let out = format!("header{}", &std[5..]);
            builds.push(build(&cxx, "header.c", &out, &args, &libs));
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    for exe in &builds {
        let out = run_linked(exe, "header", 28);
        assert!(
            out.stdout
                .lines()
                .any(|l| l == format!("version {version}")),
            "{}: HAKMEM_VERSION_* differ from the crate's {version}:\n{}",
            exe.display(),
            out.stdout
        );
        if let Some(needed) = needed(exe) {
            assert!(
                needed.iter().any(|n| n == SONAME),
                "{}: NEEDED {needed:?}, want {SONAME}",
                exe.display()
            );
        }
    }
}

/// The header declares every `hakmem_*` function the library exports, and nothing else.
#[test]
fn header_declares_every_hakmem_export() {
    let Some(nm) = require_program("nm", "header_declares_every_hakmem_export") else {
        return;
    };
    let mut cmd = plain(nm);
    cmd.args(["-D", "--defined-only"]).arg(libhakmem());
    let out = run(cmd);
    out.assert_success("nm -D");
    let exported: std::collections::BTreeSet<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .filter(|s| s.starts_with("hakmem_"))
        .collect();
    let text = std::fs::read_to_string(include_dir().join("hakmem.h")).expect("read hakmem.h");
    // Declarations: `... hakmem_name(` at the start of a line's code (not in comments).
    let declared: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('*') && !l.trim_start().starts_with("/*"))
        .filter_map(|l| {
            let i = l.find("hakmem_")?;
            let name: String = l[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            l[i + name.len()..].starts_with('(').then_some(name)
        })
        .collect();
    assert!(!exported.is_empty(), "no hakmem_* exports at all");
    assert_eq!(
        declared, exported,
        "include/hakmem.h declarations (left) differ from libhakmem.so's hakmem_* exports (right)"
    );
}

/// `libhakmem.so` carries the SONAME `libhakmem.so.0`.
#[test]
fn shared_library_has_soname() {
    if let Some(names) = dynamic_entries(libhakmem(), "(SONAME)") {
        assert_eq!(names, [SONAME]);
    }
}

/// A C program linked statically against `libhakmem.a` (plus the system libraries
/// `hakmem.pc` lists) runs, needs no libhakmem at run time, and hakmem serves its
/// allocations, the C library's own included.
#[test]
fn static_library_links_and_serves() {
    let include = format!("-I{}", include_dir().display());
    let a = staticlib();
    let mut libs = vec![a.to_str().unwrap()];
    libs.extend(STATIC_DEPS);
    let mut args = strict("-std=c11");
    args.push(&include);
    let exe = build(cc().as_ref(), "header.c", "header-static", &args, &libs);
    run_linked(&exe, "header", 28);
    if let Some(needed) = needed(&exe) {
        assert!(
            !needed.iter().any(|n| n.starts_with("libhakmem")),
            "statically linked program needs {needed:?}"
        );
    }
}
