//! Running `ferryd`'s operator subcommands (`status`, `doctor`, `snapshot`, `gc`) as subprocesses against the
//! emulator, with their exit code and output captured, for the CLI end-to-end tests.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::emulator::Emulator;

/// What one `ferryd` invocation did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl CliOutput {
    /// The stdout lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.contains(needle)).collect()
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Writes `text` as `dir/name` and returns the path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs `ferryd <args…> --config <config>` with the emulator's environment and waits for it.
pub async fn ferryd_cli(
    bin: &Path,
    emu: &Emulator,
    config: &Path,
    args: &[&str],
) -> Result<CliOutput> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in emu.env() {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    Ok(CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
