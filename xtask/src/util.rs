//! Small process helpers: step headers, running commands, installing system packages.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::config::is_root;

/// Prints a visible step header.
pub fn header(step: &str) {
    println!("\n==> {step}");
}

/// Renders a command line for logs.
pub fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with inherited stdio; an error when it cannot start or exits non-zero.
pub fn run_status(cmd: &mut Command) -> Result<()> {
    let line = show(cmd);
    println!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Whether `program` is on `PATH`.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn apt(args: &[&str]) -> bool {
    let mut c = Command::new("apt-get");
    c.args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    println!("$ {}", show(&c));
    c.status().map(|s| s.success()).unwrap_or(false)
}

/// Installs Debian packages when running as root: one `apt-get install -y`, then
/// `apt-get update` and a retry if that failed, then one package at a time so that
/// one unknown name does not block the others. Returns whether everything installed;
/// does nothing (false) when not root or without apt-get.
pub fn apt_install(pkgs: &[&str]) -> bool {
    if pkgs.is_empty() {
        return true;
    }
    if !is_root() || which("apt-get").is_none() {
        return false;
    }
    let install = |p: &[&str]| {
        let mut a = vec!["install", "-y", "-q", "--no-install-recommends"];
        a.extend_from_slice(p);
        apt(&a)
    };
    if install(pkgs) {
        return true;
    }
    apt(&["update", "-q"]);
    if install(pkgs) {
        return true;
    }
    let mut all = true;
    for p in pkgs {
        all &= install(&[p]);
    }
    all
}

/// The last `n` lines of `text`, joined with ` | ` for one-line error messages.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\n\nc\n", 2), "b | c");
        assert_eq!(tail_lines("", 3), "");
    }

    #[test]
    fn finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-program-xyz").is_none());
    }
}
