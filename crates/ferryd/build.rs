//! Build script: records the git commit ferryd is built from, for `ferryd --version`
//! (`ferryd 0.1.0 (0123456789ab)`), as the compile-time variable `FERRY_BUILD_COMMIT`.
//!
//! The commit is `git rev-parse --short=12 HEAD` of the checkout; without git or a repository (a source
//! tarball, a vendored copy), `$FERRY_GIT_COMMIT` when set, else `unknown`. The build never fails for lack
//! of git. The script runs again when HEAD moves: it watches the HEAD file, the branch's ref (or, while it
//! is only packed, the folder it would be written to) and `packed-refs`.
//!
//! No `-dirty` marker: the script does not run again when a source file changes (it would then run, and
//! ferryd relink, on every build), so a marker would be stale as often as not.

// Cargo reads a build script's instructions from its stdout.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FERRY_GIT_COMMIT");
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .or_else(|| std::env::var("FERRY_GIT_COMMIT").ok())
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=FERRY_BUILD_COMMIT={commit}");
    for path in watched() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Runs git in this crate's folder; its trimmed stdout, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The files whose change moves HEAD. Only existing paths: Cargo reruns a script on every build while a
/// path it watches is missing.
fn watched() -> Vec<PathBuf> {
    // `--git-path` resolves each name in the right folder, in a linked worktree too.
    let path = |name: &str| git(&["rev-parse", "--git-path", name]).map(absolute);
    let Some(head) = path("HEAD") else {
        return Vec::new();
    };
    let mut paths = vec![head.clone()];
    let branch = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()));
    if let Some(branch) = branch {
        if let Some(loose) = path(&branch) {
            if loose.exists() {
                paths.push(loose);
            } else if let Some(folder) = loose.parent().filter(|f| f.exists()) {
                // Packed only: the next commit writes the loose ref into this folder.
                paths.push(folder.to_path_buf());
            }
        }
    }
    paths.extend(path("packed-refs").filter(|p| p.exists()));
    paths
}

/// `p` against this crate's folder when git printed it relative.
fn absolute(p: String) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        return p;
    }
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => Path::new(&dir).join(p),
        None => p,
    }
}
