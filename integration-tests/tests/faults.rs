//! A failover under faults: EC2 throttled by a token bucket (about a fifth of ferry's EC2 calls answered
//! `RequestLimitExceeded`), 5 % of all AWS calls answered 500/503, and 50–200 ms of latency on every call.
//! The first boot and a cross-AZ failover must still end exactly right, with no action abandoned and the
//! workload's last acknowledged write on the replacement, and the call log must show that the faults really
//! happened.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ferry_integration_tests::scenario::{
    actions, attachment, check_common, create_volume_tokens, in_service, ledger_key, ok_calls,
    retrying, tag, Action, Rig,
};
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A, AZ_B};
use serde_json::{json, Value};

/// How long a hook may take under faults.
const SLOW_STEP: Duration = Duration::from_secs(180);

/// Waits (through the control API, which is never faulted) for a launch action of an instance not in
/// `not` to be completed, and returns it.
async fn launched(rig: &Rig, not: &[&str]) -> Result<Action> {
    wait_for("a launch action to complete", SLOW_STEP, || async {
        let all = actions(&rig.emu).await?;
        if let Some(bad) = all
            .iter()
            .find(|a| a.state != "active" && a.result != "CONTINUE")
        {
            anyhow::bail!("an action ended without CONTINUE: {bad:?}");
        }
        Ok(all
            .into_iter()
            .find(|a| a.launch && a.state == "completed" && !not.contains(&a.instance.as_str())))
    })
    .await
}

async fn scenario(rig: &mut Rig) -> Result<()> {
    let _ferryd = rig.ferryd(&[])?;
    let since = rig.seq().await?;
    rig.emu
        .faults(json!({
            "throttle": {"ec2": {"rate": 4.0, "burst": 4}},
            "error_rate": 0.05,
            "latency_ms": [50, 200],
            "seed": 7
        }))
        .await?;
    let began = Instant::now();
    rig.emu.place(&rig.world.group, Some(AZ_A)).await?;
    retrying("scaling to one", 20, || rig.world.scale_to_one()).await?;
    let first = launched(rig, &[]).await?;
    let writer = Writer::start(&rig.emu, &first.instance, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
    retrying("terminating the first instance", 20, || {
        rig.world.terminate(&first.instance)
    })
    .await?;
    let second = launched(rig, &[&first.instance]).await?;
    wait_for("the terminate to complete", SLOW_STEP, || async {
        Ok(actions(&rig.emu)
            .await?
            .into_iter()
            .find(|a| !a.launch && a.instance == first.instance && a.state != "active"))
    })
    .await?;
    let took = began.elapsed();
    rig.emu
        .control(reqwest::Method::DELETE, "faults", None)
        .await?;
    rig.queue_drained().await?;

    // The faults happened.
    let calls: Vec<Value> = rig
        .emu
        .calls(None)
        .await?
        .into_iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > since)
        .collect();
    let ec2: Vec<&Value> = calls.iter().filter(|c| c["service"] == "ec2").collect();
    let throttled = ec2
        .iter()
        .filter(|c| c["error_code"] == "RequestLimitExceeded")
        .count();
    let server_errors = calls
        .iter()
        .filter(|c| c["status"].as_u64().unwrap_or(0) >= 500)
        .count();
    eprintln!(
        "[faults] failover took {:.1}s; {} calls, {} to EC2, {throttled} throttled ({:.0} %), {server_errors} 5xx",
        took.as_secs_f64(),
        calls.len(),
        ec2.len(),
        100.0 * throttled as f64 / ec2.len().max(1) as f64
    );
    ensure!(throttled >= 5, "only {throttled} EC2 calls were throttled");
    ensure!(server_errors >= 1, "no 5xx was injected");

    // The end state is exactly that of a clean failover.
    let m2 = in_service(&rig.world, &[&first.instance]).await?;
    ensure!(
        m2.id == second.instance,
        "InService {} vs completed {}",
        m2.id,
        second.instance
    );
    ensure!(m2.az == AZ_B, "replacement in {}", m2.az);
    ensure!(
        rig.world.ec2_state(&first.instance).await? == "terminated",
        "the first instance is not terminated"
    );
    let all = actions(&rig.emu).await?;
    ensure!(all.len() == 3, "3 actions: {all:?}");
    let inv = rig.inventory().await?;
    // The pre-copy, and the final delta the launch took of the fenced volume.
    ensure!(inv.snapshots.len() == 2, "snapshots {:?}", inv.snapshots);
    let snap = inv
        .snapshots
        .iter()
        .find(|s| tag(s.tags(), "ferry:reason").as_deref() == Some("final"))
        .context("no final delta")?;
    ensure!(
        inv.ferry_volumes.len() == 2,
        "volumes {:?}",
        inv.ferry_volumes
    );
    let tokens = create_volume_tokens(&rig.emu).await?;
    ensure!(tokens.len() == 2, "distinct CreateVolume tokens {tokens:?}");
    let snaps_made = ok_calls(&rig.emu, "CreateSnapshot", 0).await?.len()
        + ok_calls(&rig.emu, "CreateSnapshots", 0).await?.len();
    ensure!(snaps_made == 2, "{snaps_made} snapshot calls succeeded");
    let old = inv
        .ferry_volumes
        .iter()
        .find(|v| v.availability_zone() == Some(AZ_A))
        .context("the first volume is gone")?;
    ensure!(
        snap.volume_id() == old.volume_id(),
        "snapshot of {:?}",
        snap.volume_id()
    );
    let held = inv.attached_to(&m2.id);
    ensure!(held.len() == 1, "attached to {}: {held:?}", m2.id);
    let v2 = held[0];
    ensure!(v2.availability_zone() == Some(AZ_B));
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
    ensure!(tag(v2.tags(), "ferry:generation").as_deref() == Some("2"));
    let (last, _) = writer.finished(SLOW_STEP).await?;
    check_holds(&rig.emu, &rig.world, &m2.id, last).await?;
    ensure!(tag(v2.tags(), "ferry:hook") == Some(ledger_key(&second.instance, true)));
    check_common(rig, &inv, &m2.id, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_completes_under_throttling_errors_and_latency() -> Result<()> {
    let opts = WorldOptions {
        visibility_timeout: 10,
        ..WorldOptions::default()
    };
    let settings = ferry_integration_tests::emulator::fast_timings();
    let mut rig = Rig::new(Path::new(env!("CARGO_BIN_EXE_ferryd")), &opts, settings).await?;
    let res = scenario(&mut rig).await;
    rig.explain(res)
}
