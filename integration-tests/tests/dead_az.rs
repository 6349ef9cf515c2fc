//! End to end, a dead AZ against the real ferryd and the emulator's AZ outage (writes fail, snapshots and
//! detaches never complete, a terminated instance hangs in shutting-down, until the outage ends). A workload
//! writes until the outage stops it; recovery points run every 2 s.
//!
//! - `restore-latest`: the group comes back in AZ b from the newest recovery point that completed before
//!   the outage, with `ferry:loss-window-secs` and the Elastic IP; when the AZ returns nothing changes.
//! - `wait`: nothing goes InService during the outage; after it the replacement holds every acknowledged
//!   write.
//!
//! Each runs once straight through and once with ferryd killed and restarted in the middle.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use aws_sdk_ec2::types::{Filter, Snapshot};
use ferry_integration_tests::scenario::{in_service, Rig, STEP};
use ferry_integration_tests::workload::{check_holds, snapshot_counter, volume_counter, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A, AZ_B};
use serde_json::json;

async fn rig() -> Result<Rig> {
    let mut settings = ferry_integration_tests::emulator::fast_timings();
    settings["incremental_snapshot_seconds"] = json!(0.3);
    Rig::new(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        &WorldOptions {
            visibility_timeout: 5,
            ..WorldOptions::default()
        },
        settings,
    )
    .await
}

/// The world's config with the dead-AZ keys of `[[groups]]`.
fn config(rig: &Rig, keys: &str) -> String {
    let base = rig.world.config_toml();
    base.replacen(
        "recovery_point_interval_secs = 0\n",
        &format!("recovery_point_interval_secs = 2\n{keys}\n"),
        1,
    )
}

/// The group's recovery points of `volume`, oldest first.
async fn recovery_points(rig: &Rig, volume: &str) -> Result<Vec<Snapshot>> {
    let f = |n: &str, v: &str| Filter::builder().name(n).values(v).build();
    let out = rig
        .world
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(f("volume-id", volume))
        .filters(f("tag:ferry:reason", "recovery"))
        .send()
        .await?;
    let mut s = out.snapshots().to_vec();
    s.sort_by_key(|s| s.start_time().map(|t| t.secs()));
    Ok(s)
}

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

async fn outage(rig: &Rig, on: bool) -> Result<()> {
    let spec = if on {
        json!({ "az": AZ_A, "snapshot_mode": "pending" })
    } else {
        json!(null)
    };
    rig.emu.faults(json!({ "az_outage": spec })).await
}

/// The volume of the first boot, once two of its recovery points have completed.
async fn boot_with_recovery_points(rig: &Rig) -> Result<(String, String, Writer)> {
    let m1 = rig.first_boot(AZ_A).await?;
    let v1 = rig.world.attached_volumes(&m1.id).await?[0]
        .volume_id()
        .unwrap_or_default()
        .to_string();
    let writer = Writer::start(&rig.emu, &m1.id, 0);
    wait_for("two completed recovery points", STEP, || async {
        let done = recovery_points(rig, &v1)
            .await?
            .iter()
            .filter(|s| s.state().map(|s| s.as_str()) == Some("completed"))
            .count();
        Ok((done >= 2).then_some(()))
    })
    .await?;
    Ok((m1.id, v1, writer))
}

async fn restore_latest(restart: bool) -> Result<()> {
    let mut rig = rig().await?;
    let res = async {
        let conf = config(
            &rig,
            "source_unreachable = \"restore-latest\"\nrestore_latest_after_secs = 8",
        );
        let mut ferryd = Some(rig.ferryd_with(&conf, &[])?);
        let (m1, v1, writer) = boot_with_recovery_points(&rig).await?;

        outage(&rig, true).await?;
        let (last, _) = writer.finished(STEP).await?;
        // Frozen by the outage: what had completed before it is all that ever will, until it ends.
        let points = recovery_points(&rig, &v1).await?;
        let newest = points
            .iter()
            .rfind(|s| s.state().map(|s| s.as_str()) == Some("completed"))
            .context("a completed recovery point")?;
        let newest_id = newest.snapshot_id().unwrap_or_default().to_string();
        let expected = snapshot_counter(&rig.emu, &newest_id).await?;
        ensure!(
            expected > 0 && expected <= last,
            "point {newest_id} holds {expected}, last ack {last}"
        );

        rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
        rig.world.terminate(&m1).await?;
        if restart {
            // Killed while the terminate waits on its pre-copy and before the launch's bound passes.
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(ferryd.take());
            ferryd = Some(rig.ferryd_with(&conf, &[])?);
        }
        let m2 = in_service(&rig.world, &[&m1]).await?;
        ensure!(m2.az == AZ_B, "replacement in {}", m2.az);
        let held = rig.world.attached_volumes(&m2.id).await?;
        ensure!(held.len() == 1, "replacement holds {held:?}");
        let v2 = held[0].volume_id().unwrap_or_default().to_string();
        ensure!(
            tag(held[0].tags(), "ferry:source-snapshot") == Some(newest_id.as_str()),
            "restored from {:?}, not the newest completed point {newest_id}",
            tag(held[0].tags(), "ferry:source-snapshot")
        );
        let got = volume_counter(&rig.emu, &v2).await?;
        ensure!(
            got == expected,
            "restored volume holds {got}, the point held {expected}"
        );
        let loss: u64 = tag(held[0].tags(), "ferry:loss-window-secs")
            .context("ferry:loss-window-secs on the restored volume")?
            .parse()?;
        ensure!((1..120).contains(&loss), "loss window {loss}s");
        ensure!(
            rig.world.eip_instance().await?.as_deref() == Some(m2.id.as_str()),
            "the Elastic IP moved to {}",
            m2.id
        );

        // The AZ comes back: the old instance finishes terminating and its volume and pending snapshots
        // complete. Nothing of it reaches the new instance.
        outage(&rig, false).await?;
        wait_for("the old instance to be gone", STEP, || async {
            Ok((rig.world.ec2_state(&m1).await? == "terminated").then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let now = rig.world.attached_volumes(&m2.id).await?;
        ensure!(
            now.len() == 1 && now[0].volume_id() == Some(v2.as_str()),
            "the new instance still holds {v2} alone: {now:?}"
        );
        ensure!(
            volume_counter(&rig.emu, &v2).await? == expected,
            "its data is unchanged"
        );
        let old = rig.world.attached_volumes(&m1).await?;
        ensure!(
            old.is_empty(),
            "the superseded volume is attached to nothing: {old:?}"
        );
        let members = rig.world.members().await?;
        ensure!(
            members.iter().filter(|m| m.state == "InService").count() == 1,
            "one instance in service: {members:?}"
        );
        ensure!(rig.world.eip_instance().await?.as_deref() == Some(m2.id.as_str()));
        drop(ferryd);
        Ok(())
    }
    .await;
    rig.explain(res)
}

async fn wait_policy(restart: bool) -> Result<()> {
    let mut rig = rig().await?;
    let res = async {
        // The terminate gives up on its pre-copy after 3 s, so the replacement launches during the outage.
        let conf = config(
            &rig,
            "snapshot_timeout_secs = 3\nrestore_latest_after_secs = 4",
        );
        let mut ferryd = Some(rig.ferryd_with(&conf, &[])?);
        let (m1, _v1, writer) = boot_with_recovery_points(&rig).await?;
        outage(&rig, true).await?;
        let (last, _) = writer.finished(STEP).await?;
        rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
        rig.world.terminate(&m1).await?;

        // Well past restore_latest_after_secs: the replacement waits, nothing is restored.
        for i in 0..15 {
            if restart && i == 7 {
                drop(ferryd.take());
                ferryd = Some(rig.ferryd_with(&conf, &[])?);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let members = rig.world.members().await?;
            ensure!(
                !members.iter().any(|m| m.id != m1 && m.state == "InService"),
                "nothing goes InService during the outage: {members:?}"
            );
        }
        let members = rig.world.members().await?;
        let waiting = members
            .iter()
            .find(|m| m.id != m1)
            .context("a replacement waits in Pending:Wait")?;
        ensure!(waiting.state == "Pending:Wait", "{waiting:?}");
        ensure!(
            rig.world.attached_volumes(&waiting.id).await?.is_empty(),
            "nothing attached to the waiting replacement"
        );

        outage(&rig, false).await?;
        let m2 = in_service(&rig.world, &[&m1]).await?;
        ensure!(m2.az == AZ_B, "replacement in {}", m2.az);
        let held = rig.world.attached_volumes(&m2.id).await?;
        ensure!(
            held.iter()
                .all(|v| tag(v.tags(), "ferry:loss-window-secs").is_none()),
            "no loss window under wait"
        );
        check_holds(&rig.emu, &rig.world, &m2.id, last).await?;
        drop(ferryd);
        Ok(())
    }
    .await;
    rig.explain(res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_latest_brings_the_group_back_from_the_newest_point_before_the_outage() -> Result<()>
{
    restore_latest(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_latest_resumes_its_policy_after_a_restart() -> Result<()> {
    restore_latest(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_keeps_every_acknowledged_write_through_the_outage() -> Result<()> {
    wait_policy(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_resumes_after_a_restart_during_the_outage() -> Result<()> {
    wait_policy(true).await
}
