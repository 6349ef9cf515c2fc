//! End to end, without AWS: what packaging takes from the real `ferryd` binary. `--version` names the git
//! commit it was built from, `completions` and `man` cover every subcommand.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferryd"))
}

fn ferryd(args: &[&str]) -> Result<Output> {
    let out = Command::new(bin()).args(args).output()?;
    ensure!(
        out.status.success(),
        "ferryd {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn stdout(args: &[&str]) -> Result<String> {
    Ok(String::from_utf8(ferryd(args)?.stdout)?)
}

/// git in the checkout ferryd was built from; `None` without git or a repository.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The subcommands `ferryd --help` lists, less `help`.
fn subcommands() -> Result<Vec<String>> {
    let help = stdout(&["--help"])?;
    let listed = help
        .split_once("Commands:\n")
        .context("--help has a Commands section")?
        .1;
    let names: Vec<String> = listed
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n != "help")
        .collect();
    for known in [
        "run",
        "status",
        "doctor",
        "reset-slot",
        "completions",
        "man",
    ] {
        ensure!(names.iter().any(|n| n == known), "{known} in {names:?}");
    }
    Ok(names)
}

#[test]
fn version_names_the_package_version_and_the_commit() -> Result<()> {
    let line = stdout(&["--version"])?;
    let line = line.trim_end();
    let prefix = concat!("ferryd ", env!("CARGO_PKG_VERSION"), " (");
    let commit = line
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .with_context(|| format!("`{line}` is `{prefix}<commit>)`"))?;
    ensure!(!commit.is_empty() && !commit.contains(' '), "{line}");
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        // No git here: build.rs fell back to $FERRY_GIT_COMMIT or `unknown`.
        return Ok(());
    };
    if commit == head {
        return Ok(());
    }
    // In a shared working tree a commit may land after this binary was built (a clean checkout, as in CI,
    // never has one). Allowed only if every commit after the printed one is no older than the binary, less
    // a build's length: a build script that failed to rerun for an older commit is still caught.
    let ancestor = Command::new("git")
        .args(["merge-base", "--is-ancestor", commit, "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    ensure!(
        ancestor.success(),
        "ferryd --version says {commit}, HEAD is {head}"
    );
    let built = std::fs::metadata(bin())?.modified()?;
    let built = built
        .duration_since(UNIX_EPOCH)?
        .saturating_sub(Duration::from_secs(900));
    let later = git(&["log", "--format=%ct", &format!("{commit}..HEAD")]).unwrap_or_default();
    for secs in later.lines() {
        let at = Duration::from_secs(secs.parse()?);
        ensure!(
            at >= built,
            "ferryd --version says {commit}, HEAD is {head}, committed before ferryd was built: \
             build.rs did not run again when HEAD moved"
        );
    }
    Ok(())
}

#[test]
fn completions_name_every_subcommand_in_every_shell() -> Result<()> {
    let subs = subcommands()?;
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&["completions", shell])?;
        ensure!(script.contains("ferryd"), "{shell}: {script}");
        for sub in &subs {
            ensure!(script.contains(sub.as_str()), "{shell} completes {sub}");
        }
    }
    let bash = stdout(&["completions", "bash"])?;
    ensure!(bash.contains("complete -F _ferryd"), "{bash}");
    // Flags of a subcommand too, not only the subcommands' names.
    ensure!(
        bash.contains("--out-dir") && bash.contains("--dry-run"),
        "{bash}"
    );
    let out = Command::new(bin()).args(["completions", "tcsh"]).output()?;
    ensure!(
        out.status.code() == Some(2),
        "an unknown shell is a usage error"
    );
    Ok(())
}

#[test]
fn the_man_page_is_roff_and_names_every_subcommand() -> Result<()> {
    let page = stdout(&["man"])?;
    let version = stdout(&["--version"])?;
    let version = version.trim();
    ensure!(
        page.contains(&format!(".TH FERRYD 1  \"{version}\"")),
        "{page}"
    );
    ensure!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for sub in subcommands()? {
        // roff escapes every dash of the text: `ferryd\-reset\-slot(1)`.
        let entry = format!("ferryd-{sub}(1)").replace('-', "\\-");
        ensure!(page.contains(&entry), "the page names {entry}");
    }
    Ok(())
}

#[test]
fn man_out_dir_writes_a_page_per_subcommand() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().join("man1");
    let listed = stdout(&["man", "--out-dir", &out_dir.to_string_lossy()])?;
    let mut want = vec!["ferryd.1".to_string()];
    want.extend(subcommands()?.iter().map(|s| format!("ferryd-{s}.1")));
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(&out_dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    got.sort();
    ensure!(got == want, "{got:?} != {want:?}");
    ensure!(listed.lines().count() == want.len(), "{listed}");
    let run = std::fs::read_to_string(out_dir.join("ferryd-run.1"))?;
    ensure!(run.contains(".TH FERRYD-RUN 1"), "{run}");
    ensure!(run.contains("\\-\\-config"), "{run}");
    Ok(())
}
