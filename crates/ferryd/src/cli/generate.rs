//! `ferryd completions <shell>` and `ferryd man`: shell completions and man pages generated from the clap
//! definitions of the `ferryd` binary, so that they always match its subcommands and flags.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;

/// The arguments of `ferryd completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The arguments of `ferryd man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command into this folder (`ferryd.1`, `ferryd-run.1`, ...) instead of the
    /// main page on stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// The completion script of `shell` for `cmd`.
pub fn completion_script(mut cmd: clap::Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// The main man page of `cmd` (section 1, roff), with a SUBCOMMANDS section that names every subcommand.
pub fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let cmd = built(cmd);
    let mut out = Vec::new();
    page(&cmd, &source(&cmd)).render(&mut out)?;
    Ok(out)
}

/// Writes one man page per command and visible subcommand into `dir`, created if missing: `ferryd.1`,
/// `ferryd-run.1`, ... Returns their paths, sorted.
pub fn man_pages_to(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn write(
        cmd: &clap::Command,
        source: &str,
        dir: &Path,
        pages: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        pages.push(page(cmd, source).generate_to(dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub, source, dir, pages)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let cmd = built(cmd);
    let mut pages = Vec::new();
    write(&cmd, &source(&cmd), dir, &mut pages)?;
    pages.sort();
    Ok(pages)
}

/// `cmd` built, without the `help` subcommand (no page of its own): every subcommand then carries its
/// display name (`ferryd-run`), which names its page.
fn built(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The page of one command, titled in capitals as man pages are (`.TH FERRYD-RUN 1`).
fn page(cmd: &clap::Command, source: &str) -> clap_mangen::Man {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .source(source.to_string())
        .manual("ferry manual")
}

/// The `.TH` source field of every page: the program and its version, `ferryd 0.1.0 (0123456789ab)`.
fn source(cmd: &clap::Command) -> String {
    match cmd.get_version() {
        Some(v) => format!("{} {v}", cmd.get_name()),
        None => cmd.get_name().to_string(),
    }
}

/// `ferryd completions`: the script on stdout.
pub fn completions(cmd: clap::Command, args: &CompletionsArgs) -> ExitCode {
    write_stdout(&completion_script(cmd, args.shell))
}

/// `ferryd man`: the main page on stdout, or every page into `--out-dir` (their paths on stdout).
pub fn man(cmd: clap::Command, args: &ManArgs) -> ExitCode {
    match &args.out_dir {
        None => match man_page(cmd) {
            Ok(page) => write_stdout(&page),
            Err(e) => super::runtime_error(format!("cannot render the man page: {e}")),
        },
        Some(dir) => match man_pages_to(cmd, dir) {
            Ok(pages) => {
                let list: String = pages.iter().map(|p| format!("{}\n", p.display())).collect();
                write_stdout(list.as_bytes())
            }
            Err(e) => {
                super::runtime_error(format!("cannot write man pages to {}: {e}", dir.display()))
            }
        },
    }
}

/// Writes `bytes` to stdout; a closed pipe or another write error is a runtime error, not a panic.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::runtime_error(format!("cannot write to stdout: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("demo")
            .version("1.2.3")
            .about("A demo.")
            .subcommand(clap::Command::new("run").about("Runs."))
            .subcommand(clap::Command::new("validate-config").about("Validates."))
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let script = String::from_utf8_lossy(&completion_script(cmd(), shell)).into_owned();
            for sub in ["run", "validate-config"] {
                assert!(script.contains(sub), "{shell}: {sub}");
            }
        }
    }

    #[test]
    fn the_out_dir_gets_a_page_per_command() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let pages = man_pages_to(cmd(), &dir.path().join("man1"))?;
        let names: Vec<String> = pages
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["demo-run.1", "demo-validate-config.1", "demo.1"]);
        let main = std::fs::read_to_string(&pages[2])?;
        assert!(
            main.contains(".TH DEMO 1  \"demo 1.2.3\" \"ferry manual\""),
            "{main}"
        );
        let run = std::fs::read_to_string(&pages[0])?;
        assert!(run.contains(".TH DEMO-RUN 1"), "{run}");
        Ok(())
    }
}
