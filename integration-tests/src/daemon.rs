//! Runs the real `ferryd` binary against the emulator, with its logs in a file or on the terminal.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::emulator::Emulator;

/// Finds the `ferryd` binary: `$FERRY_BIN`, or next to the running executable (`target/<profile>/`).
pub fn ferryd_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("ferryd");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it with `cargo build -p ferryd`",
        bin.display()
    );
    Ok(bin)
}

/// The ferryd binary for the benchmarks: `$FERRY_BIN` as is; otherwise `cargo build -p ferryd` first (so it
/// is current), then the one next to the running executable, as `ferry-demo` finds it.
pub fn build_ferryd(say: &dyn Fn(&str)) -> Result<PathBuf> {
    if std::env::var_os("FERRY_BIN").is_none() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        say("building ferryd (cargo build -p ferryd)...");
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "ferryd"])
            .current_dir(crate::emulator::repo_root())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => say(&format!(
                "warning: cargo build -p ferryd failed ({s}); using the ferryd binary already built, if any"
            )),
            Err(e) => say(&format!(
                "warning: cannot run cargo ({e}); using the ferryd binary already built, if any"
            )),
        }
    }
    ferryd_path()
}

/// Where ferryd's logs go.
pub enum Logs {
    /// Into this file.
    File(PathBuf),
    /// Onto this process's stderr.
    Inherit,
}

/// A running ferryd; killed when dropped.
pub struct Ferryd {
    child: Child,
}

impl Ferryd {
    /// Writes `config` into `dir` and starts `ferryd run` pointed at the emulator.
    pub fn start(
        bin: &Path,
        emu: &Emulator,
        dir: &Path,
        config: &str,
        logs: Logs,
        extra_env: &[(&str, &str)],
    ) -> Result<Ferryd> {
        let config_path = dir.join("ferry.toml");
        std::fs::write(&config_path, config)?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in emu.env() {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        match logs {
            Logs::File(path) => {
                let f = File::options().create(true).append(true).open(&path)?;
                cmd.stderr(f);
            }
            Logs::Inherit => {
                cmd.stderr(Stdio::inherit());
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Ferryd { child })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) with kill(1).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{sig} {} failed", self.pid());
        Ok(())
    }

    /// Waits for the process to exit and returns its exit code (`None` if killed by a signal).
    pub fn wait(&mut self) -> Result<Option<i32>> {
        Ok(self.child.wait()?.code())
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
