//! Duplicate delivery: with both hooks of a failover in flight at once (the replacement launches as soon as
//! the old instance enters Terminating:Wait), every lifecycle message is on the queue three times, in either
//! order (launch first or terminate first): one copy at once, one mid-run, one after completion. A workload
//! writes to the old instance until it is gone. ferry must take one pre-copy and one final delta, restore one
//! volume after the barrier (the fence: the old instance's termination and the detach), attach once, complete
//! each action once with CONTINUE, leave the queue empty, and the replacement must hold the last
//! acknowledged write. The same holds with two ferryd replicas on the queue, each (group, slot) under a
//! DynamoDB lease (`[lease] table`).

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_integration_tests::lease_table;
use ferry_integration_tests::scenario::{
    action_of, actions, attachment, check_common, create_volume_tokens, depth, exited, in_service,
    ledger_key, ok_calls, send, tag, take_hook_messages, Rig, STEP,
};
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A, AZ_B};
use serde_json::{json, Value};

/// Seconds each of the three copies of a message is delayed by: at once, mid-run, after completion.
const COPY_DELAYS: [i32; 3] = [0, 2, 9];

async fn duplicated_failover(launch_first: bool, replicas: usize) -> Result<()> {
    let opts = WorldOptions {
        visibility_timeout: 5,
        ..WorldOptions::default()
    };
    let settings = json!({
        "snapshot_seconds": 1.5,
        "volume_create_seconds": 0.3,
        "attach_seconds": 0.2,
        "detach_seconds": 0.5,
        "replacement_order": "before_terminate"
    });
    let mut rig = Rig::new(Path::new(env!("CARGO_BIN_EXE_ferryd")), &opts, settings).await?;
    let res = scenario(&mut rig, launch_first, replicas).await;
    rig.explain(res)
}

async fn scenario(rig: &mut Rig, launch_first: bool, replicas: usize) -> Result<()> {
    let mut config = rig.world.config_toml();
    if replicas > 1 {
        lease_table::create(&rig.emu).await?;
        config.push_str(&lease_table::toml());
    }
    // An uncrashed first boot in AZ a; then ferry stops and the failover's messages pile up.
    let mut first = rig.ferryd_with(&config, &[])?;
    let m1 = rig.first_boot(AZ_A).await?;
    rig.queue_drained().await?;
    first.signal("TERM")?;
    exited(&mut first, "after SIGTERM", Duration::from_secs(30)).await?;
    let v1 = rig.world.attached_volumes(&m1.id).await?[0]
        .volume_id()
        .unwrap_or_default()
        .to_string();
    let since = rig.seq().await?;
    rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
    let writer = Writer::start(&rig.emu, &m1.id, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.world.terminate(&m1.id).await?;

    let mut msgs: Vec<Value> = take_hook_messages(&rig.world, 2).await?;
    let is_launch = |m: &Value| {
        m["LifecycleTransition"]
            .as_str()
            .is_some_and(|t| t.ends_with("LAUNCHING"))
    };
    ensure!(
        msgs.iter().filter(|m| is_launch(m)).count() == 1,
        "one launch and one terminate message expected: {msgs:?}"
    );
    // Launch first, or terminate first.
    msgs.sort_by_key(|m| is_launch(m) != launch_first);
    for delay in COPY_DELAYS {
        for m in &msgs {
            send(&rig.world, &m.to_string(), delay).await?;
        }
    }
    ensure!(
        depth(&rig.world, &rig.world.queue_url).await? == 6,
        "6 copies queued"
    );

    let _ferryds = (0..replicas)
        .map(|_| rig.ferryd_with(&config, &[]))
        .collect::<Result<Vec<_>>>()?;
    let m2 = in_service(&rig.world, &[&m1.id]).await?;
    wait_for("the old instance to terminate", STEP, || async {
        Ok((rig.world.ec2_state(&m1.id).await? == "terminated").then_some(()))
    })
    .await?;
    wait_for("every copy to be consumed", STEP, || async {
        Ok((depth(&rig.world, &rig.world.queue_url).await? == 0).then_some(()))
    })
    .await?;

    ensure!(m2.az == AZ_B, "replacement in {}", m2.az);
    let all = actions(&rig.emu).await?;
    ensure!(all.len() == 3, "3 actions: {all:?}");
    let term = action_of(&all, &m1.id, false)?;
    let launch = action_of(&all, &m2.id, true)?;
    let inv = rig.inventory().await?;

    // One pre-copy of the old volume by the terminate, one final delta of it by the launch.
    let snaps = ok_calls(&rig.emu, "CreateSnapshot", since).await?.len()
        + ok_calls(&rig.emu, "CreateSnapshots", since).await?.len();
    ensure!(snaps == 2, "{snaps} successful snapshot calls");
    ensure!(inv.snapshots.len() == 2, "snapshots: {:?}", inv.snapshots);
    let by_reason = |r: &str| {
        inv.snapshots
            .iter()
            .find(|s| tag(s.tags(), "ferry:reason").as_deref() == Some(r))
            .with_context(|| format!("no {r} snapshot: {:?}", inv.snapshots))
    };
    let (pre, snap) = (by_reason("precopy")?, by_reason("final")?);
    for s in [pre, snap] {
        ensure!(
            s.volume_id() == Some(v1.as_str()),
            "snapshot of {:?}",
            s.volume_id()
        );
    }
    ensure!(
        tag(pre.tags(), "ferry:hook") == Some(ledger_key(&term.instance, false)),
        "pre-copy hook tag {:?}",
        pre.tags()
    );
    ensure!(
        tag(snap.tags(), "ferry:hook") == Some(ledger_key(&launch.instance, true)),
        "final delta hook tag {:?}",
        snap.tags()
    );

    // One restored volume, after the barrier, attached once to the replacement.
    let restores = ok_calls(&rig.emu, "CreateVolume", since).await?;
    let tokens = create_volume_tokens(&rig.emu).await?;
    ensure!(
        tokens.len() == 2,
        "first boot + exactly one restore: {tokens:?}"
    );
    ensure!(
        inv.ferry_volumes.len() == 2,
        "ferry volumes: {:?}",
        inv.ferry_volumes
    );
    let completes = rig.emu.calls(Some("CompleteLifecycleAction")).await?;
    let term_done = completes
        .iter()
        .find(|c| {
            // By token (a message's run) or by instance id (a reconciled run, which has no token).
            let p = &c["params"];
            let by_token = p["LifecycleActionToken"] == term.token.as_str();
            let by_instance = p["LifecycleActionToken"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
                && p["InstanceId"] == term.instance.as_str();
            c["status"] == 200 && (by_token || by_instance)
        })
        .and_then(|c| c["seq"].as_u64())
        .context("the terminate was never completed")?;
    for r in &restores {
        ensure!(
            r["seq"].as_u64().unwrap_or(0) > term_done,
            "restore before the terminate completed (barrier): {r}"
        );
        ensure!(r["params"]["AvailabilityZone"] == AZ_B, "restore {r}");
    }
    let held = inv.attached_to(&m2.id);
    ensure!(held.len() == 1, "attached to {}: {held:?}", m2.id);
    let v2 = held[0];
    ensure!(
        v2.snapshot_id() == snap.snapshot_id(),
        "restored from {:?}",
        v2.snapshot_id()
    );
    ensure!(
        attachment(v2) == Some((m2.id.clone(), "/dev/sdf".into(), "attached".into())),
        "attachment {:?}",
        v2.attachments()
    );
    ensure!(
        tag(v2.tags(), "ferry:generation").as_deref() == Some("2"),
        "generation {:?}",
        v2.tags()
    );
    ensure!(
        tag(v2.tags(), "ferry:hook") == Some(ledger_key(&launch.instance, true)),
        "hook tag {:?}",
        v2.tags()
    );
    let attaches = ok_calls(&rig.emu, "AttachVolume", since).await?;
    ensure!(attaches.len() == 1, "successful attaches: {attaches:?}");
    let (last, _) = writer.finished(STEP).await?;
    check_holds(&rig.emu, &rig.world, &m2.id, last).await?;
    let late = completes
        .iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > since && c["status"] != 200)
        .count();
    eprintln!(
        "[duplicates] launch_first={launch_first}: {} completions refused as no longer active",
        late
    );
    // Each action completed once with CONTINUE; queue and DLQ empty; EIP on the replacement.
    check_common(rig, &inv, &m2.id, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triplicated_messages_launch_first() -> Result<()> {
    duplicated_failover(true, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triplicated_messages_terminate_first() -> Result<()> {
    duplicated_failover(false, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triplicated_messages_on_two_replicas_with_a_lease() -> Result<()> {
    duplicated_failover(true, 2).await
}
