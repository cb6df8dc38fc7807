//! Real programs under `LD_PRELOAD=libhakmem.so`: each is run without and
//! with the preload and must print the same stdout and exit with status 0.
//! A program that is not installed is skipped (a `SKIP` line, no failure).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Runs `make()` without and with the preload (the latter with
/// `HAKMEM_STATS=1`, which only writes to stderr); asserts both succeed with
/// identical stdout. Returns the preloaded run's output.
fn same_with_and_without(what: &str, make: impl Fn() -> Command) -> Output {
    let base = run(make());
    base.assert_success(&format!("{what} (without hakmem)"));
    let mut cmd = preloaded(make());
    cmd.env("HAKMEM_STATS", "1");
    let hk = run(cmd);
    hk.assert_success(&format!("{what} (LD_PRELOAD=libhakmem.so)"));
    assert!(
        base.stdout == hk.stdout,
        "{what}: stdout differs under hakmem\n--- without (tail) ---\n{}\n--- with (tail) ---\n{}",
        tail(&base.stdout, 2000),
        tail(&hk.stdout, 2000)
    );
    assert!(
        !base.stdout.is_empty(),
        "{what}: printed nothing, nothing compared"
    );
    hk
}

/// The stats line a preloaded run printed at exit (HAKMEM_STATS=1).
fn exit_stats(what: &str, out: &Output) -> std::collections::BTreeMap<String, u64> {
    parse_stats(&out.stderr).unwrap_or_else(|| {
        panic!(
            "{what}: no hakmem-stats line on stderr (did the preload take?):\n{}",
            tail(&out.stderr, 2000)
        )
    })
}

const PY_BIG: &str =
    "d={i:[i]*40 for i in range(1_000_000)}\nprint(sum(len(v) for v in d.values()))\n";

fn python(code: &str, pymalloc: Option<&str>) -> Command {
    let mut c = plain("python3");
    c.args(["-c", code])
        .env("PYTHONHASHSEED", "0")
        .env_remove("PYTHONMALLOC");
    if let Some(m) = pymalloc {
        c.env("PYTHONMALLOC", m);
    }
    c
}

/// ~400 MB of Python objects (1M dict entries of 40-element lists).
#[test]
fn python_large_heap() {
    if require_program("python3", "python_large_heap").is_none() {
        return;
    }
    let out = same_with_and_without("python3 big dict", || python(PY_BIG, None));
    assert_eq!(out.stdout.trim(), "40000000");
}

/// The same with `PYTHONMALLOC=malloc`, so every Python object comes from
/// malloc: the exit report must show millions of tiny blocks carved by
/// hakmem (proof that hakmem, not a fallback, served them).
#[test]
fn python_large_heap_all_through_malloc() {
    if require_program("python3", "python_large_heap_all_through_malloc").is_none() {
        return;
    }
    let out = same_with_and_without("PYTHONMALLOC=malloc python3 big dict", || {
        python(PY_BIG, Some("malloc"))
    });
    assert_eq!(out.stdout.trim(), "40000000");
    let stats = exit_stats("python3", &out);
    assert!(
        stats["tiny.carved"] >= 1_500_000,
        "python3 (PYTHONMALLOC=malloc) built 2M+ small objects but tiny.carved = {}: {stats:?}",
        stats["tiny.carved"]
    );
    assert!(
        stats["large.allocs"] >= 1,
        "the 1M-entry dict table should be a large allocation: {stats:?}"
    );
}

const PY_THREADS: &str = r#"
import threading, queue
q = queue.Queue(maxsize=2000)
N_PROD, N_CONS, ITEMS = 3, 3, 20000
results = [0] * (N_PROD + N_CONS)
def produce(k):
    acc = 0
    for i in range(ITEMS):
        n = (i * 7919 + k) % 3000
        item = (bytearray([i & 0xff]) * n, [i] * (i % 50), "s%d" % (i * k), {i: k})
        acc += n
        q.put(item)
    results[k] = acc
def consume(k):
    acc = 0
    while True:
        item = q.get()
        if item is None:
            break
        b, l, s, d = item
        if len(b) and (b[0] != b[-1]):
            raise SystemExit("corrupted bytearray")
        acc += len(b) + len(l) + len(s) + len(d)
    results[N_PROD + k] = acc
ps = [threading.Thread(target=produce, args=(k,)) for k in range(N_PROD)]
cs = [threading.Thread(target=consume, args=(k,)) for k in range(N_CONS)]
for t in ps + cs: t.start()
for t in ps: t.join()
for _ in cs: q.put(None)
for t in cs: t.join()
print(results[:N_PROD], sum(results[N_PROD:]))
"#;

/// 6 Python threads passing objects through a queue (objects freed by
/// another thread than the one that made them).
#[test]
fn python_threads() {
    if require_program("python3", "python_threads").is_none() {
        return;
    }
    same_with_and_without("python3 threads", || python(PY_THREADS, None));
    let out = same_with_and_without("PYTHONMALLOC=malloc python3 threads", || {
        python(PY_THREADS, Some("malloc"))
    });
    let stats = exit_stats("python3 threads", &out);
    assert!(
        stats["tiny.carved"] >= 10_000,
        "tiny.carved = {}",
        stats["tiny.carved"]
    );
}

fn git(dir: &Path, home: &Path, args: &[&str]) -> Command {
    let mut c = plain("git");
    for v in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
    ] {
        c.env_remove(v);
    }
    c.current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00+0000")
        .env("GIT_COMMITTER_DATE", "2020-01-01T00:00:00+0000")
        .env("LC_ALL", "C")
        .args([
            "-c",
            "user.name=Hakmem Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args);
    c
}

/// `git --version`, and `git init/add/commit/log/diff/gc` in a temp repo:
/// the same steps run in two fresh repos (without and with hakmem) must
/// print the same (the dates are fixed, so the hashes match too).
#[test]
fn git_repo() {
    if require_program("git", "git_repo").is_none() {
        return;
    }
    let home = scratch_dir("git-home");
    same_with_and_without("git --version", || git(&home, &home, &["--version"]));

    let steps: &[&[&str]] = &[
        &["init", "-q", "."],
        &["add", "-A"],
        &["commit", "-q", "-m", "first commit"],
        &["rm", "-q", "file7.txt"],
        &["commit", "-q", "-a", "-m", "second commit"],
        &["log", "--format=%H %s"],
        &["diff", "--stat", "HEAD~1", "HEAD"],
        &["cat-file", "-p", "HEAD"],
        &["gc", "-q"],
        &["fsck", "--no-progress"],
        &["log", "--format=%H %T %s", "--all"],
    ];
    let make_repo = |tag: &str| {
        let d = scratch_dir(tag);
        for i in 0..40 {
            let body: String = (0..200)
                .map(|j| format!("line {j} of file {i}\n"))
                .collect();
            std::fs::write(d.join(format!("file{i}.txt")), body).unwrap();
        }
        d
    };
    let (a, b) = (make_repo("git-a"), make_repo("git-b"));
    for step in steps {
        let base = run(git(&a, &home, step));
        base.assert_success(&format!("git {step:?} (without hakmem)"));
        let hk = run(preloaded(git(&b, &home, step)));
        hk.assert_success(&format!("git {step:?} (LD_PRELOAD=libhakmem.so)"));
        assert_eq!(base.stdout, hk.stdout, "git {step:?}: stdout differs");
    }
}

const C_PROG: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *next; char *s; unsigned v; };
static int cmp(const void *a, const void *b) {
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}
int main(void) {
    struct node *head = NULL;
    unsigned x = 1, sum = 0;
    for (int i = 0; i < 200000; i++) {
        struct node *n = malloc(sizeof *n);
        x = x * 1103515245u + 12345u;
        n->v = x >> 8;
        n->s = malloc(1 + (x >> 20) % 200);
        memset(n->s, 'a' + i % 26, (x >> 20) % 200);
        n->s[(x >> 20) % 200] = 0;
        n->next = head;
        head = n;
    }
    unsigned *arr = malloc(200000 * sizeof *arr);
    int k = 0;
    for (struct node *n = head; n; n = n->next) { arr[k++] = n->v; sum += (unsigned)strlen(n->s); }
    qsort(arr, k, sizeof *arr, cmp);
    while (head) { struct node *n = head->next; free(head->s); free(head); head = n; }
    printf("%u %u %u %u\n", sum, arr[0], arr[k / 2], arr[k - 1]);
    free(arr);
    return 0;
}
"#;

/// gcc (cc1, as, ld) compiles a C file under hakmem; the program built with
/// and without hakmem, run with and without it, prints the same.
#[test]
fn gcc_compile_and_run() {
    let Some(gcc) = require_program("gcc", "gcc_compile_and_run") else {
        return;
    };
    let d = scratch_dir("gcc");
    let src = d.join("prog.c");
    std::fs::write(&src, C_PROG).unwrap();
    let build = |out: &str, with_hakmem: bool| {
        let mut c = plain(&gcc);
        c.args(["-O2", "-Wall", "-o"]).arg(d.join(out)).arg(&src);
        let c = if with_hakmem { preloaded(c) } else { c };
        let o = run(c);
        o.assert_success(&format!("gcc -> {out} (hakmem: {with_hakmem})"));
        d.join(out)
    };
    let plain_exe = build("prog-plain", false);
    let hk_exe = build("prog-hakmem", true);
    let expected = same_with_and_without("program built by gcc", || plain(&plain_exe));
    let again = same_with_and_without("program built by gcc under hakmem", || plain(&hk_exe));
    assert_eq!(expected.stdout, again.stdout);
    let stats = exit_stats("gcc-built program", &again);
    assert!(
        stats["tiny.carved"] >= 200_000,
        "400k small live blocks but tiny.carved = {}",
        stats["tiny.carved"]
    );
}

/// 1.5 million generated lines sorted by `sort` and `sort -n` (and with a
/// small buffer, forcing temp files and merges).
#[test]
fn sort_large_input() {
    let Some(sort) = require_program("sort", "sort_large_input") else {
        return;
    };
    let d = scratch_dir("sort");
    let input = d.join("input.txt");
    let mut s = String::with_capacity(30 << 20);
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for i in 0..1_500_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word: String = (0..(x % 12 + 1))
            .map(|k| (b'a' + ((x >> (k * 5)) % 26) as u8) as char)
            .collect();
        use std::fmt::Write;
        writeln!(s, "{} {word} {i}", (x >> 20) % 10_000_000).unwrap();
    }
    std::fs::write(&input, s).unwrap();
    let variants: &[&[&str]] = &[&[], &["-n"], &["-S", "4M", "-k2,2", "-k1,1n"]];
    for args in variants {
        let out = same_with_and_without(&format!("sort {args:?}"), || {
            let mut c = plain(&sort);
            c.env("LC_ALL", "C")
                .env("TMPDIR", &d)
                .args(*args)
                .arg(&input);
            c
        });
        assert_eq!(out.stdout.lines().count(), 1_500_000, "sort {args:?}");
    }
}
