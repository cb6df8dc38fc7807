//! Gives `libhakmem.so` the SONAME `libhakmem.so.<major>` (`libhakmem.so.0`) on ELF targets,
//! so that programs linked against it (`-lhakmem`) record `NEEDED libhakmem.so.0` and keep
//! working across compatible updates; `cargo xtask install` installs the versioned file name
//! (`libhakmem.so.0.1.0`) and both symlinks. `target/release/libhakmem.so` stays as it is.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        // The major version: 0 for every 0.x release.
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhakmem.so.{major}");
    }
}
