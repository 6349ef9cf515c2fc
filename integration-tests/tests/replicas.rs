//! End to end, two ferryd replicas on one queue with a DynamoDB lease per slot (`[lease] table`): during a
//! cross-AZ failover the replica working the slot is `kill -9`ed mid-hook (while its terminate waits on the
//! pre-copy). Its lease is never released; the other replica takes it once the record has stayed unchanged
//! for its duration (a steal, epoch + 1), finishes both hooks, and the replacement holds every acknowledged
//! write, from one pre-copy, one final delta and one restore.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_integration_tests::lease_table::{self, owner_pid};
use ferry_integration_tests::scenario::{in_service, ok_calls, Rig, STEP};
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A, AZ_B};
use serde_json::json;

async fn scenario(rig: &mut Rig) -> Result<()> {
    lease_table::create(&rig.emu).await?;
    let config = rig.world.config_toml() + &lease_table::toml();
    let key = format!("{}/0", rig.world.group);
    let replicas = [
        rig.ferryd_with(&config, &[])?,
        rig.ferryd_with(&config, &[])?,
    ];
    let m1 = rig.first_boot(AZ_A).await?;
    rig.queue_drained().await?;
    let first = lease_table::owner(&rig.emu, &key).await?;
    eprintln!("[replicas] first boot done; lease record {first:?}");

    let since = rig.seq().await?;
    rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
    let writer = Writer::start(&rig.emu, &m1.id, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.world.terminate(&m1.id).await?;

    // Mid-hook: the pre-copy is started and one replica has held the slot's lease for a while.
    let (owner, epoch) = wait_for("a replica holding the slot mid-terminate", STEP, || async {
        let started = !ok_calls(&rig.emu, "CreateSnapshot", since)
            .await?
            .is_empty();
        let a = lease_table::owner(&rig.emu, &key).await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let b = lease_table::owner(&rig.emu, &key).await?;
        Ok(match (a, b) {
            (Some(a), Some(b)) if started && a.0 == b.0 => Some(b),
            _ => None,
        })
    })
    .await?;
    let pid = owner_pid(&owner).context("owner pid")?;
    let victim = replicas
        .iter()
        .position(|r| r.pid() == pid)
        .with_context(|| format!("no replica has pid {pid} ({owner})"))?;
    eprintln!("[replicas] kill -9 replica {victim} (pid {pid}), holding {key} at epoch {epoch}");
    replicas[victim].signal("KILL")?;
    let survivor = 1 - victim;

    let m2 = in_service(&rig.world, &[&m1.id]).await?;
    ensure!(m2.az == AZ_B, "replacement in {}", m2.az);
    wait_for("the old instance to terminate", STEP, || async {
        Ok((rig.world.ec2_state(&m1.id).await? == "terminated").then_some(()))
    })
    .await?;
    let (last, _) = writer.finished(STEP).await?;
    check_holds(&rig.emu, &rig.world, &m2.id, last).await?;

    // The survivor stole the lease after its expiry: a higher epoch, its own owner id.
    let (now_owner, now_epoch) = lease_table::owner(&rig.emu, &key)
        .await?
        .unwrap_or_default();
    let log = rig.log(survivor + 1);
    ensure!(
        log.contains("\"stolen\":true"),
        "the survivor never took the lease from the dead replica:\n{log}"
    );
    ensure!(
        now_owner.is_empty() || owner_pid(&now_owner) == Some(replicas[survivor].pid()),
        "lease now owned by {now_owner:?}"
    );
    ensure!(
        now_owner.is_empty() || now_epoch > epoch,
        "epoch {now_epoch} after {epoch}"
    );
    // One pre-copy, one final delta, one restore, one attach: the takeover redid nothing.
    let snaps = ok_calls(&rig.emu, "CreateSnapshot", since).await?.len();
    ensure!(
        snaps == 2,
        "{snaps} snapshots (one pre-copy, one final delta)"
    );
    let restores = ok_calls(&rig.emu, "CreateVolume", since).await?.len();
    ensure!(restores == 1, "{restores} restores");
    let attaches = ok_calls(&rig.emu, "AttachVolume", since).await?.len();
    ensure!(attaches == 1, "{attaches} attaches");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_hook_is_taken_over_after_its_lease_expires() -> Result<()> {
    let opts = WorldOptions {
        visibility_timeout: 5,
        ..WorldOptions::default()
    };
    let settings = json!({
        "snapshot_seconds": 8,
        "volume_create_seconds": 0.3,
        "attach_seconds": 0.2,
        "detach_seconds": 0.5,
        "replacement_order": "before_terminate"
    });
    let mut rig = Rig::new(Path::new(env!("CARGO_BIN_EXE_ferryd")), &opts, settings).await?;
    let res = scenario(&mut rig).await;
    if let Err(e) = &res {
        panic!("{e:#}\n{}", rig.logs());
    }
    res
}
