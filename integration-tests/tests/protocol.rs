//! End to end, the zero-lost-writes protocol against the real ferryd: multi-volume failovers restore every
//! volume from one consistent point; forged messages touch nothing; a slot whose copies are unreadable never
//! gets an empty volume. A workload writes until its instance is gone, and the replacement must hold its last
//! acknowledged write.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use ferry_integration_tests::scenario::{actions, in_service, ok_calls, send, Rig, STEP};
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, GroupMember, WorldOptions, AZ_A, AZ_B};
use serde_json::json;

fn rig_opts() -> WorldOptions {
    WorldOptions {
        visibility_timeout: 5,
        ..WorldOptions::default()
    }
}

async fn rig() -> Result<Rig> {
    rig_with(json!({})).await
}

/// A rig with the fast timings, a 0.3 s incremental snapshot, and `extra` settings on top.
async fn rig_with(extra: serde_json::Value) -> Result<Rig> {
    let mut settings = ferry_integration_tests::emulator::fast_timings();
    settings["incremental_snapshot_seconds"] = json!(0.3);
    if let (Some(s), Some(e)) = (settings.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    Rig::new(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        &rig_opts(),
        settings,
    )
    .await
}

/// Fails `old` (in service in AZ a, a workload writing to it until it is gone) over to AZ b: the
/// replacement and the workload's last acknowledged write.
async fn fail_over_to_b(rig: &Rig, old: &GroupMember) -> Result<(GroupMember, u64)> {
    let writer = Writer::start(&rig.emu, &old.id, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
    rig.world.terminate(&old.id).await?;
    let new = in_service(&rig.world, &[&old.id]).await?;
    let (last, _) = writer.finished(STEP).await?;
    Ok((new, last))
}

async fn multi_volume(volumes: u8) -> Result<()> {
    let mut rig = rig().await?;
    let res = async {
        let config = rig.world.config_toml_with_volumes(volumes - 1);
        let _ferryd = rig.ferryd_with(&config, &[])?;
        let m1 = rig.first_boot(AZ_A).await?;
        let held = rig.world.attached_volumes(&m1.id).await?;
        ensure!(
            held.len() == usize::from(volumes),
            "first boot attached {held:?}"
        );
        let (m2, last) = fail_over_to_b(&rig, &m1).await?;
        ensure!(m2.az == AZ_B, "replacement in {}", m2.az);
        let held = rig.world.attached_volumes(&m2.id).await?;
        ensure!(
            held.len() == usize::from(volumes),
            "replacement holds {held:?}"
        );
        for v in &held {
            let id = v.volume_id().unwrap_or_default();
            ensure!(
                v.availability_zone() == Some(AZ_B),
                "{id} not restored in b"
            );
        }
        check_holds(&rig.emu, &rig.world, &m2.id, last).await
    }
    .await;
    rig.explain(res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_volumes_are_restored_from_one_consistent_point() -> Result<()> {
    multi_volume(2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_volumes_are_restored_from_one_consistent_point() -> Result<()> {
    multi_volume(3).await
}

/// The old instance takes 3 s to shut down after its terminate completes (its volume stays attached and
/// unwritable meanwhile): the launch waits for the detach, takes the final delta only after it, and loses
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shutdown_is_waited_out_before_the_final_delta() -> Result<()> {
    let mut rig = rig_with(json!({ "instance_shutdown_seconds": 3.0 })).await?;
    let res = async {
        let _ferryd = rig.ferryd(&[])?;
        let m1 = rig.first_boot(AZ_A).await?;
        let v1 = rig.world.attached_volumes(&m1.id).await?[0]
            .volume_id()
            .unwrap_or_default()
            .to_string();
        let since = rig.seq().await?;
        let (m2, last) = fail_over_to_b(&rig, &m1).await?;
        let detached = rig
            .emu
            .calls(None)
            .await?
            .into_iter()
            .filter(|c| c["seq"].as_u64().unwrap_or(0) > since)
            .filter(|c| c["action"] == "CreateSnapshot" && c["status"] == 200)
            .filter(|c| c["params"]["VolumeId"] == v1.as_str())
            .count();
        ensure!(
            detached == 2,
            "a pre-copy and a final delta of {v1}: {detached}"
        );
        check_holds(&rig.emu, &rig.world, &m2.id, last).await
    }
    .await;
    rig.explain(res)
}

/// A raw hook notification, as anyone allowed to `sqs:SendMessage` could forge it.
fn forged(group: &str, instance: &str, launch: bool) -> String {
    let (hook, transition) = if launch {
        ("ferry-launch", "autoscaling:EC2_INSTANCE_LAUNCHING")
    } else {
        ("ferry-terminate", "autoscaling:EC2_INSTANCE_TERMINATING")
    };
    json!({
        "Origin": "AutoScalingGroup",
        "Destination": "EC2",
        "LifecycleHookName": hook,
        "AccountId": "123456789012",
        "RequestId": "00000000-0000-0000-0000-00000000f0f0",
        "LifecycleTransition": transition,
        "AutoScalingGroupName": group,
        "Service": "AWS Auto Scaling",
        "Time": "2026-12-01T00:00:00.000Z",
        "EC2InstanceId": instance,
        "LifecycleActionToken": "forged-0000-0000-0000-000000000000",
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_touch_nothing_and_the_real_failover_loses_nothing() -> Result<()> {
    let mut rig = rig().await?;
    let res = async {
        let _ferryd = rig.ferryd(&[])?;
        let m1 = rig.first_boot(AZ_A).await?;
        rig.queue_drained().await?;
        let writer = Writer::start(&rig.emu, &m1.id, 0);
        let since = rig.seq().await?;
        // A forged terminate and a forged launch for the live, InService instance.
        send(&rig.world, &forged(&rig.world.group, &m1.id, false), 0).await?;
        send(&rig.world, &forged(&rig.world.group, &m1.id, true), 0).await?;
        rig.queue_drained().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        for action in [
            "CreateSnapshot",
            "CreateSnapshots",
            "DetachVolume",
            "CreateVolume",
            "AttachVolume",
            "AssociateAddress",
            "CreateTags",
            "CompleteLifecycleAction",
            "StopInstances",
        ] {
            let calls = ok_calls(&rig.emu, action, since).await?;
            ensure!(
                calls.is_empty(),
                "a forged message led to {action}: {calls:?}"
            );
        }
        ensure!(
            rig.logs().contains("not confirmed by Auto Scaling"),
            "the forged messages were not logged as unconfirmed"
        );
        let before = writer.acked();
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(writer.acked() > before, "the workload was disturbed");

        // The real failover later restores the final state, not anything the forgery could have made.
        rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
        rig.world.terminate(&m1.id).await?;
        let m2 = in_service(&rig.world, &[&m1.id]).await?;
        let (last, _) = writer.finished(STEP).await?;
        check_holds(&rig.emu, &rig.world, &m2.id, last).await
    }
    .await;
    rig.explain(res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_whose_copies_are_unreadable_never_gets_an_empty_volume() -> Result<()> {
    let mut rig = rig().await?;
    let res = async {
        // The slot had data: one ferry volume, whose generation tag nobody can read.
        let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
        let spec = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
            .tags(tag("ferry:group", &rig.world.group))
            .tags(tag("ferry:slot", "0"))
            .tags(tag("ferry:volume", "data"))
            .tags(tag("ferry:generation", "not-a-number"))
            .build();
        rig.world
            .ec2
            .create_volume()
            .availability_zone(AZ_A)
            .size(20)
            .tag_specifications(spec)
            .send()
            .await?;
        let since = rig.seq().await?;
        let _ferryd = rig.ferryd(&[])?;
        rig.emu.place(&rig.world.group, Some(AZ_A)).await?;
        rig.world.scale_to_one().await?;
        let abandoned = wait_for("a launch to be abandoned", STEP, || async {
            let all = actions(&rig.emu).await?;
            Ok(all
                .into_iter()
                .find(|a| a.launch && a.state == "completed" && a.result == "ABANDON"))
        })
        .await?;
        let creates = ok_calls(&rig.emu, "CreateVolume", since).await?;
        ensure!(
            creates.is_empty(),
            "an empty volume was created: {creates:?}"
        );
        let continued = actions(&rig.emu)
            .await?
            .into_iter()
            .filter(|a| a.result == "CONTINUE")
            .count();
        ensure!(
            continued == 0,
            "an instance went into service without its data"
        );
        ensure!(
            rig.logs().contains("existing data unreadable"),
            "the abandon does not say why"
        );
        let _ = abandoned;
        Ok(())
    }
    .await;
    rig.explain(res)
}

/// EC2's reads lag ferryd's writes by 4 s (eventual consistency; the other tests lag by the harness's
/// default 1 s): new instances answer `InvalidInstanceID.NotFound`, a new volume or snapshot is missing from
/// Describes, a tag is missing. ferryd waits for the launching instance instead of abandoning it, reads
/// again instead of acting on a ledger that misses its own snapshot, and the replacement holds the last
/// acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_ec2_view_is_waited_out_and_the_failover_loses_nothing() -> Result<()> {
    use ferry_integration_tests::emulator::FERRYD_KEY;
    let mut rig = rig().await?;
    rig.emu
        .control(
            reqwest::Method::POST,
            "consistency",
            Some(json!({"delay_seconds": 4.0, "access_keys": [FERRYD_KEY]})),
        )
        .await?;
    let res = async {
        let _ferryd = rig.ferryd(&[])?;
        let m1 = rig.first_boot(AZ_A).await?;
        let v1 = rig.world.attached_volumes(&m1.id).await?[0]
            .volume_id()
            .unwrap_or_default()
            .to_string();
        let (m2, last) = fail_over_to_b(&rig, &m1).await?;
        ensure!(m2.az == AZ_B, "replacement in {}", m2.az);

        // DescribeInstances by id answers InvalidInstanceID.NotFound; the batched reads, by filter, leave it out.
        let logs = rig.logs();
        for m in [&m1.id, &m2.id] {
            ensure!(
                logs.contains(&format!("instance {m} to be visible in EC2")),
                "the launch of {m} waited for EC2 to show it"
            );
        }
        let calls = rig.emu.calls(None).await?;
        let ok = |action: &str| {
            calls
                .iter()
                .filter(|c| {
                    c["access_key"] == FERRYD_KEY && c["action"] == action && c["status"] == 200
                })
                .collect::<Vec<_>>()
        };
        let snaps_of_v1 = ok("CreateSnapshot")
            .into_iter()
            .filter(|c| c["params"]["VolumeId"] == v1.as_str())
            .count();
        ensure!(
            snaps_of_v1 == 2,
            "one pre-copy and one final delta of {v1}, not a second of either: {snaps_of_v1}"
        );
        let creates = ok("CreateVolume").len();
        ensure!(
            creates == 2,
            "the first boot's volume and one restore: {creates}"
        );
        ensure!(
            logs.contains("is not visible yet"),
            "a read that missed ferry's own write was read again"
        );
        ensure!(
            actions(&rig.emu)
                .await?
                .iter()
                .all(|a| a.result != "ABANDON"),
            "nothing abandoned"
        );
        check_holds(&rig.emu, &rig.world, &m2.id, last).await
    }
    .await;
    rig.explain(res)
}
