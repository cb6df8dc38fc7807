//! `fork` in the situations glibc's malloc supports, under
//! `LD_PRELOAD=libhakmem.so` (each C program's header describes it):
//!
//! * `fork_stdio`: threads fork while others read lines with `getline`
//!   (which allocates under its `FILE`'s lock) and one calls `fflush(NULL)`
//!   (which holds glibc's `FILE`-list lock while it takes each `FILE`'s
//!   lock): glibc's `malloc/tst-malloc-fork-deadlock`;
//! * `fork_signal`: a single-threaded process forks from a signal handler
//!   that interrupted `malloc`, `free` or `fork`: glibc's
//!   `malloc/tst-mallocfork2`.
//!
//! Both programs bound themselves: a watchdog prints a `HANG:` line and
//! exits 3 within a few seconds of a deadlock. Their report lines are echoed
//! on stderr (see them with `--nocapture`).

mod common;
use common::*;
use std::time::Duration;

fn echo_report(out: &Output, prefix: &str) {
    for l in out.stdout.lines().filter(|l| l.starts_with(prefix)) {
        eprintln!("{l}");
    }
}

/// 2 forking threads (every child allocates tiny to 3 MiB blocks, reads a
/// line through stdio and calls `fflush(NULL)`), 4 `getline` threads and
/// one `fflush(NULL)` thread for 2 s; then the parent's stdio and `malloc`
/// must still work.
#[test]
fn fork_while_threads_use_stdio() {
    let out = run_c_test("fork_stdio", &["2"], "fork-stdio", 6);
    echo_report(&out, "fork-stdio-report:");
}

/// SIGUSR1 every 100 us, whose handler forks; the main loop allocates,
/// frees and forks for 2 s. Both kinds of fork must have happened and
/// every child must have exited cleanly.
#[test]
fn fork_from_signal_handler_in_single_threaded_process() {
    let out = run_c_test("fork_signal", &["2"], "fork-signal", 5);
    echo_report(&out, "fork-signal-report:");
}

/// The programs are valid C: against glibc (`--no-hakmem`) they pass too.
#[test]
fn fork_programs_are_valid_against_glibc() {
    for name in ["fork_stdio", "fork_signal"] {
        let mut cmd = plain(compile_c(name));
        cmd.args(["1", "--no-hakmem"]);
        let out = run_with_timeout(cmd, Duration::from_secs(60));
        out.assert_success(&format!("{name} against glibc"));
        let fails = fail_lines(&out.stdout);
        assert!(fails.is_empty(), "{name} against glibc:\n{fails}");
    }
}
