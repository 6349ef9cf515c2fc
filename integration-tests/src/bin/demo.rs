//! `ferry-demo`: starts the local emulator and ferryd, and walks through a real cross-AZ failover.

use std::time::Instant;

use anyhow::{Context, Result};
use ferry_integration_tests::daemon::{ferryd_path, Ferryd, Logs};
use ferry_integration_tests::emulator::Emulator;
use ferry_integration_tests::walkthrough;
use ferry_integration_tests::world::{World, WorldOptions};

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("[ferry-demo] {line}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let began = Instant::now();
    let bin = ferryd_path()?;
    say("starting the local AWS emulator (moto + ferry's lifecycle extension)...");
    let emu = Emulator::start()?;
    say(&format!("emulator ready at {}", emu.url()));
    // Real-looking waits: snapshots take a few seconds, volumes and attachments a moment.
    emu.configure(serde_json::json!({
        "snapshot_seconds": 3.0,
        "volume_create_seconds": 1.0,
        "attach_seconds": 0.5,
        "detach_seconds": 0.5
    }))
    .await?;
    let world = World::setup(&emu, &WorldOptions::default()).await?;
    say(&format!("queue {}", world.queue_url));
    let dir = tempfile::tempdir()?;
    let log = std::env::var_os("FERRY_DEMO_LOG").is_some();
    let logs = if log {
        Logs::Inherit
    } else {
        Logs::File(dir.path().join("ferryd.log"))
    };
    let _ferryd = Ferryd::start(&bin, &emu, dir.path(), &world.config_toml(), logs, &[])?;
    say(&format!(
        "ferryd running ({}); its log: {}",
        bin.display(),
        if log {
            "below".into()
        } else {
            dir.path().join("ferryd.log").display().to_string()
        }
    ));
    let lineage = walkthrough::run(&emu, &world, &say)
        .await
        .with_context(|| {
            let log = std::fs::read_to_string(dir.path().join("ferryd.log")).unwrap_or_default();
            format!("the walkthrough failed; ferryd's log:\n{log}")
        })?;
    say(&walkthrough::summary(&lineage));
    let calls = emu.calls(None).await?;
    let governed = calls.iter().filter(|c| !c["authz"].is_null()).count();
    let refused = emu.iam_denials().await?;
    say(&format!(
        "IAM: each of ferryd's {governed} AWS calls was authorized as AWS would, against \
         deploy/iam/ferry-policy.json and the template's copy (deletes: the retention role's): {} refused",
        refused.len()
    ));
    for r in &refused {
        say(&format!("  refused: {r}"));
    }
    say(&format!(
        "done in {:.1}s: no AWS account was used",
        began.elapsed().as_secs_f64()
    ));
    Ok(())
}
