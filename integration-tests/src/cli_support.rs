//! Running `ferryd`'s operator subcommands (`status`, `doctor`, `snapshot`, `gc`) as subprocesses against the
//! emulator, with their exit code and output captured, for the CLI end-to-end tests.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, VolumeType};

use crate::emulator::Emulator;
use crate::world::World;

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
///
/// EC2's reads lag ferryd's key by the harness's visibility delay, so the command starts only after that
/// long: an operator's command looks at a world that was set up before it, not a moment ago.
pub async fn ferryd_cli(
    bin: &Path,
    emu: &Emulator,
    config: &Path,
    args: &[&str],
) -> Result<CliOutput> {
    let lag = crate::emulator::visibility_delay()?;
    if lag > 0.0 {
        tokio::time::sleep(std::time::Duration::from_secs_f64(lag + 0.2)).await;
    }
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

/// An EC2 tag, for seeding the ledger by hand.
pub fn new_tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

fn tag_spec(kind: ResourceType, tags: Vec<Tag>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags))
        .build()
}

/// Creates a 1 GiB gp3 volume in `az` with these tags (none if empty), from `from` if given; its id.
pub async fn seed_volume(
    w: &World,
    az: &str,
    tags: Vec<Tag>,
    from: Option<&str>,
) -> Result<String> {
    let mut req = w
        .ec2
        .create_volume()
        .availability_zone(az)
        .size(1)
        .volume_type(VolumeType::Gp3)
        .set_snapshot_id(from.map(str::to_string));
    if !tags.is_empty() {
        req = req.tag_specifications(tag_spec(ResourceType::Volume, tags));
    }
    Ok(req
        .send()
        .await?
        .volume_id()
        .unwrap_or_default()
        .to_string())
}

/// Snapshots volume `of` with these tags; the snapshot's id.
pub async fn seed_snapshot(w: &World, of: &str, tags: Vec<Tag>) -> Result<String> {
    let out = w
        .ec2
        .create_snapshot()
        .volume_id(of)
        .tag_specifications(tag_spec(ResourceType::Snapshot, tags))
        .send()
        .await?;
    Ok(out.snapshot_id().unwrap_or_default().to_string())
}
