//! Shared by the integration tests of this crate.

/// Runs the `#[ignore]`d test `name` of the current test binary alone, in a child process, and
/// asserts it passed. Counter checks need a fresh process: other tests free memory concurrently,
/// and heaps or abandoned slabs of exited threads may be reused.
pub fn run_alone(name: &str) {
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
