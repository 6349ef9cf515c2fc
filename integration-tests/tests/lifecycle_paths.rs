//! End to end, the lifecycle paths that are not a plain failover, with the real ferryd against the emulator
//! and a workload that writes until its instance stops: a `ReplaceRootVolume` refresh, scale to zero and
//! back (same AZ and the other), the launch-before-terminate handover (and the default ABANDON), and
//! standby and detach.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use aws_sdk_autoscaling::types::{RefreshPreferences, RefreshStrategy};
use ferry_integration_tests::cli_support::{ferryd_cli, write_config};
use ferry_integration_tests::scenario::{actions, in_service, ok_calls, Rig, STEP};
use ferry_integration_tests::workload::{check_holds, volume_counter, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A, AZ_B};

async fn rig() -> Result<Rig> {
    Rig::new(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        &WorldOptions::default(),
        ferry_integration_tests::emulator::fast_timings(),
    )
    .await
}

/// Runs `$body` with `$rig` bound to a new rig (`&mut Rig`); on failure, panics with every ferryd log.
macro_rules! logged {
    ($rig:ident, $body:expr) => {{
        let mut owned = rig().await?;
        let res: Result<()> = {
            let $rig = &mut owned;
            $body.await
        };
        if let Err(e) = &res {
            panic!("{e:#}\n{}", owned.logs());
        }
        res
    }};
}

/// The only ferry volume attached to `instance`.
async fn the_volume(rig: &Rig, instance: &str) -> Result<String> {
    let vols = rig.world.attached_volumes(instance).await?;
    ensure!(
        vols.len() == 1,
        "{instance} holds {} ferry volumes",
        vols.len()
    );
    Ok(vols[0].volume_id().unwrap_or_default().to_string())
}

async fn set_desired(rig: &Rig, desired: i32) -> Result<()> {
    rig.world
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&rig.world.group)
        .min_size(0)
        .max_size(2)
        .desired_capacity(desired)
        .send()
        .await?;
    Ok(())
}

async fn refresh_status(rig: &Rig) -> Result<String> {
    let out = rig
        .world
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(&rig.world.group)
        .send()
        .await?;
    Ok(out
        .instance_refreshes()
        .first()
        .and_then(|r| r.status())
        .map(|s| s.as_str().to_string())
        .unwrap_or_default())
}

async fn refresh(rig: &Rig, strategy: RefreshStrategy, max_healthy: i32) -> Result<()> {
    rig.world
        .asg
        .start_instance_refresh()
        .auto_scaling_group_name(&rig.world.group)
        .strategy(strategy)
        .preferences(
            RefreshPreferences::builder()
                .min_healthy_percentage(100)
                .max_healthy_percentage(max_healthy)
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// `ferryd status -o json` against the emulator, with the world's config.
async fn status_json(rig: &Rig) -> Result<serde_json::Value> {
    let config = write_config(rig.dir.path(), "status.toml", &rig.world.config_toml())?;
    let out = ferryd_cli(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        &rig.emu,
        &config,
        &["status", "--output", "json"],
    )
    .await?;
    serde_json::from_str(&out.stdout).with_context(|| format!("status output: {out}"))
}

/// Successful calls of `action` by ferry since `since`.
async fn count(rig: &Rig, action: &str, since: u64) -> Result<usize> {
    Ok(ok_calls(&rig.emu, action, since).await?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_volume_refresh_moves_no_data_and_keeps_every_write() -> Result<()> {
    logged!(rig, async move {
        let _ferryd = rig.ferryd(&[])?;
        let m1 = rig.first_boot(AZ_A).await?;
        let vol = the_volume(rig, &m1.id).await?;
        let writer = Writer::start(&rig.emu, &m1.id, 0);
        wait_for("some writes", STEP, || async {
            Ok((writer.acked() > 20).then_some(()))
        })
        .await?;
        let since = rig.seq().await?;

        refresh(rig, RefreshStrategy::ReplaceRootVolume, 100).await?;
        wait_for("the refresh to succeed", STEP, || async {
            Ok((refresh_status(rig).await? == "Successful").then_some(()))
        })
        .await?;
        let before = writer.acked();

        let m = in_service(&rig.world, &[]).await?;
        ensure!(m.id == m1.id, "the same instance serves");
        ensure!(
            the_volume(rig, &m.id).await? == vol,
            "the same volume is attached"
        );
        ensure!(
            volume_counter(&rig.emu, &vol).await? >= before,
            "every write kept"
        );
        for call in [
            "CreateVolume",
            "DetachVolume",
            "AttachVolume",
            "StopInstances",
        ] {
            ensure!(count(rig, call, since).await? == 0, "ferry called {call}");
        }
        let points = ok_calls(&rig.emu, "CreateSnapshot", since).await?;
        ensure!(
            points.len() == 1,
            "one recovery point before the reboot: {points:?}"
        );
        ensure!(rig.world.eip_instance().await?.as_deref() == Some(m1.id.as_str()));
        ensure!(actions(&rig.emu)
            .await?
            .iter()
            .all(|a| a.result == "CONTINUE"));
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_and_back_brings_every_write_back_in_either_az() -> Result<()> {
    logged!(rig, async move {
        let _ferryd = rig.ferryd(&[])?;
        let mut member = rig.first_boot(AZ_A).await?;
        let mut from = 0;
        for az in [AZ_A, AZ_B] {
            let writer = Writer::start(&rig.emu, &member.id, from);
            wait_for("some writes", STEP, || async {
                Ok((writer.acked() > from + 20).then_some(()))
            })
            .await?;
            let vol = the_volume(rig, &member.id).await?;
            let held = rig.world.attached_volumes(&member.id).await?;
            let generation = held[0]
                .tags()
                .iter()
                .find(|t| t.key() == Some("ferry:generation"))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_string();
            // "Pause the database overnight": the data waits in the ledger.
            set_desired(rig, 0).await?;
            let (last, _) = writer.finished(STEP).await?;
            wait_for("the group to be empty", STEP, || async {
                Ok(rig.world.members().await?.is_empty().then_some(()))
            })
            .await?;
            rig.queue_drained().await?;
            // Paused, ferry takes the parked volume's final snapshot: the data survives its AZ.
            let parked = wait_for("the parked volume's final snapshot", STEP, || async {
                parked_snapshot(rig, &vol, &generation).await
            })
            .await?;
            ensure!(rig.world.ec2_state(&member.id).await? == "terminated");
            let since = rig.seq().await?;

            rig.emu.place(&rig.world.group, Some(az)).await?;
            set_desired(rig, 1).await?;
            let back = in_service(&rig.world, &[&member.id]).await?;
            ensure!(back.az == az);
            check_holds(&rig.emu, &rig.world, &back.id, last).await?;
            // Nothing re-initialized: no empty volume was created. The other AZ restores the parked snapshot.
            let creates = ok_calls(&rig.emu, "CreateVolume", since).await?;
            for c in &creates {
                ensure!(
                    c["params"]["SnapshotId"].as_str().is_some(),
                    "an empty volume: {c}"
                );
            }
            if az == AZ_A {
                ensure!(
                    the_volume(rig, &back.id).await? == vol,
                    "same AZ: the parked volume itself"
                );
            } else {
                ensure!(
                    creates.len() == 1 && creates[0]["params"]["SnapshotId"] == parked.as_str()
                );
                ensure!(
                    count(rig, "CreateSnapshot", since).await? == 0,
                    "no second final snapshot"
                );
            }
            (member, from) = (back, last);
        }
        Ok(())
    })
}

/// The completed final snapshot ferry took of a parked volume at `generation` (`ferry:hook =
/// parked/<volume>`), if any.
async fn parked_snapshot(rig: &Rig, volume: &str, generation: &str) -> Result<Option<String>> {
    let f = |n: &str, v: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name(n)
            .values(v)
            .build()
    };
    let out = rig
        .world
        .ec2
        .describe_snapshots()
        .filters(f("volume-id", volume))
        .filters(f("tag:ferry:hook", &format!("parked/{volume}")))
        .filters(f("tag:ferry:reason", "final"))
        .filters(f("tag:ferry:generation", generation))
        .send()
        .await?;
    Ok(out
        .snapshots()
        .iter()
        .find(|s| s.state().map(|s| s.as_str()) == Some("completed"))
        .and_then(|s| s.snapshot_id().map(str::to_string)))
}

/// The world's config with `launch_before_terminate` set, and a short bound for the default.
fn config(rig: &Rig, mode: &str) -> String {
    rig.world.config_toml().replacen(
        "launch_before_terminate_timeout_secs = 60\n",
        &format!(
            "launch_before_terminate_timeout_secs = 5\nlaunch_before_terminate = \"{mode}\"\n"
        ),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_under_a_launch_first_refresh_keeps_every_write_with_one_copy() -> Result<()> {
    logged!(rig, async move {
        let conf = config(rig, "handover");
        let _ferryd = rig.ferryd_with(&conf, &[])?;
        let old = rig.first_boot(AZ_A).await?;
        let vol = the_volume(rig, &old.id).await?;
        set_desired(rig, 1).await?; // max 2: room for the refresh to launch first
        let writer = Writer::start(&rig.emu, &old.id, 0);
        wait_for("some writes", STEP, || async {
            Ok((writer.acked() > 20).then_some(()))
        })
        .await?;

        refresh(rig, RefreshStrategy::Rolling, 200).await?;
        let (last, _) = writer.finished(STEP).await?;
        wait_for("the refresh to succeed", STEP, || async {
            Ok((refresh_status(rig).await? == "Successful").then_some(()))
        })
        .await?;

        let new = in_service(&rig.world, &[&old.id]).await?;
        check_holds(&rig.emu, &rig.world, &new.id, last).await?;
        ensure!(
            rig.world.ec2_state(&old.id).await? == "terminated",
            "the refresh ended the old one"
        );
        ensure!(rig.world.eip_instance().await?.as_deref() == Some(new.id.as_str()));
        // One copy at a time: the old instance was stopped, then its volume detached, before any attach.
        let stop = ok_calls(&rig.emu, "StopInstances", 0).await?;
        let attach = ok_calls(&rig.emu, "AttachVolume", 0).await?;
        let seq = |c: &serde_json::Value| c["seq"].as_u64().unwrap_or(0);
        let attach_new = attach
            .iter()
            .rfind(|c| c["params"]["InstanceId"] == new.id.as_str());
        let (stop, attach_new) = (
            stop.first().context("a stop")?,
            attach_new.context("an attach")?,
        );
        ensure!(
            stop["params"]["InstanceId.1"] == old.id.as_str() || stop.to_string().contains(&old.id)
        );
        ensure!(seq(stop) < seq(attach_new), "stopped before the data moved");
        if new.az == AZ_A {
            ensure!(
                the_volume(rig, &new.id).await? == vol,
                "same AZ: the volume itself"
            );
        }
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_launch_before_terminate_is_abandoned_and_the_data_stays() -> Result<()> {
    logged!(rig, async move {
        let conf = config(rig, "abandon");
        let _ferryd = rig.ferryd_with(&conf, &[])?;
        let old = rig.first_boot(AZ_A).await?;
        let vol = the_volume(rig, &old.id).await?;
        set_desired(rig, 1).await?;

        refresh(rig, RefreshStrategy::Rolling, 200).await?;
        let abandoned = wait_for("the new launch to be abandoned", STEP, || async {
            Ok(actions(&rig.emu)
                .await?
                .into_iter()
                .find(|a| a.launch && a.instance != old.id && a.result == "ABANDON"))
        })
        .await?;

        ensure!(rig.world.ec2_state(&old.id).await? == "running");
        ensure!(
            the_volume(rig, &old.id).await? == vol,
            "the data stays on the old instance"
        );
        ensure!(count(rig, "StopInstances", 0).await? == 0, "nothing fenced");
        ensure!(
            rig.world
                .attached_volumes(&abandoned.instance)
                .await?
                .is_empty(),
            "no copy on the abandoned instance"
        );
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_and_detach_change_nothing_and_are_reported() -> Result<()> {
    logged!(rig, async move {
        let _ferryd = rig.ferryd(&[])?;
        let m1 = rig.first_boot(AZ_A).await?;
        let vol = the_volume(rig, &m1.id).await?;
        set_desired(rig, 1).await?;
        let since = rig.seq().await?;
        let asg = &rig.world.asg;

        asg.enter_standby()
            .auto_scaling_group_name(&rig.world.group)
            .instance_ids(&m1.id)
            .should_decrement_desired_capacity(true)
            .send()
            .await?;
        let status = status_json(rig).await?;
        ensure!(status["groups"][0]["path"] == "standby", "{status}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        asg.exit_standby()
            .auto_scaling_group_name(&rig.world.group)
            .instance_ids(&m1.id)
            .send()
            .await?;
        asg.detach_instances()
            .auto_scaling_group_name(&rig.world.group)
            .instance_ids(&m1.id)
            .should_decrement_desired_capacity(true)
            .send()
            .await?;
        let status = status_json(rig).await?;
        ensure!(status["groups"][0]["path"] == "detached", "{status}");
        tokio::time::sleep(Duration::from_secs(3)).await;

        ensure!(
            the_volume(rig, &m1.id).await? == vol,
            "the data stays where it is"
        );
        ensure!(rig.world.eip_instance().await?.as_deref() == Some(m1.id.as_str()));
        for call in [
            "CreateVolume",
            "DetachVolume",
            "AttachVolume",
            "CreateSnapshot",
            "StopInstances",
            "AssociateAddress",
        ] {
            ensure!(count(rig, call, since).await? == 0, "ferry called {call}");
        }
        Ok(())
    })
}
