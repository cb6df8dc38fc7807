//! Races between threads over the address space (`tests/c/remap_race.c` under `LD_PRELOAD`).

mod common;
use common::*;
use std::time::Duration;

/// A big block moved by `realloc` while another thread maps and unmaps: the mappings that
/// land where the moved block was stay hakmem's (none of 2 s of them reads as foreign).
#[test]
fn a_moved_mapping_does_not_untag_its_successor() {
    let mut cmd = preloaded(plain(compile_c("remap_race")));
    cmd.arg("2");
    let out = run_with_timeout(cmd, Duration::from_secs(120));
    out.assert_success("remap_race");
    assert!(
        out.stdout.contains(" 0 foreign") && !out.stderr.contains("hakmem:"),
        "stdout:\n{}\nstderr:\n{}",
        tail(&out.stdout, 2000),
        tail(&out.stderr, 2000)
    );
}
