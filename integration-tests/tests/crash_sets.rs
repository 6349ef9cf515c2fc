//! The crash matrix of a two-volume group: ferryd is SIGKILLed right after every mutating call of a cross-AZ
//! failover (the crash-consistent pre-copy set and its per-volume tags, the fence, each volume's final delta,
//! each restore and attach, the Elastic IP, the instance tags and the completion), a fresh ferryd finishes
//! the work, and both volumes of the replacement must hold the old workload's last acknowledged write, with
//! every snapshot and volume made exactly once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use ferry_integration_tests::scenario::{
    check_common, create_volume_tokens, exited, in_service, ok_calls, tag, Rig, STEP,
};
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A, AZ_B};
use tokio::sync::Semaphore;

/// Cases running at once (2 cores: an emulator and a ferryd each).
static SLOTS: Semaphore = Semaphore::const_new(3);

/// Every mutating call of a two-volume cross-AZ failover, in order, as `FERRY_TEST_KILL_AFTER` names them
/// (counted in the crashing process, which works both hooks).
const BOUNDARIES: &[&str] = &[
    "ec2:CreateSnapshots",
    "ec2:CreateTags",
    "ec2:CreateTags#2",
    "autoscaling:CompleteLifecycleAction",
    "ec2:CreateSnapshot",
    "ec2:CreateSnapshot#2",
    "ec2:CreateVolume",
    "ec2:CreateVolume#2",
    "ec2:AttachVolume",
    "ec2:AttachVolume#2",
    "ec2:AssociateAddress",
    "ec2:CreateTags#3",
    "autoscaling:CompleteLifecycleAction#2",
];

async fn case(op: &'static str) -> Result<()> {
    let opts = WorldOptions {
        visibility_timeout: 5,
        ..WorldOptions::default()
    };
    let mut settings = ferry_integration_tests::emulator::fast_timings();
    settings["incremental_snapshot_seconds"] = serde_json::json!(0.3);
    let mut rig = Rig::new(Path::new(env!("CARGO_BIN_EXE_ferryd")), &opts, settings).await?;
    let res = drive(&mut rig, op).await;
    rig.explain(res)
}

async fn drive(rig: &mut Rig, op: &str) -> Result<()> {
    let config = rig.world.config_toml_with_volumes(1);
    let mut first = rig.ferryd_with(&config, &[])?;
    let m1 = rig.first_boot(AZ_A).await?;
    rig.queue_drained().await?;
    first.signal("TERM")?;
    exited(&mut first, "after SIGTERM", Duration::from_secs(30)).await?;
    let since = rig.seq().await?;

    let mut crashing = rig.ferryd_with(&config, &[("FERRY_TEST_KILL_AFTER", op)])?;
    rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
    let writer = Writer::start(&rig.emu, &m1.id, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.world.terminate(&m1.id).await?;
    exited(
        &mut crashing,
        &format!("crash point {op} never reached"),
        STEP,
    )
    .await?;
    ensure!(
        rig.log(rig.runs()).contains("crash point reached"),
        "ferryd exited without reaching {op}"
    );
    let _fresh = rig.ferryd_with(&config, &[])?;
    let m2 = in_service(&rig.world, &[&m1.id]).await?;
    wait_for("the old instance to terminate", STEP, || async {
        Ok((rig.world.ec2_state(&m1.id).await? == "terminated").then_some(()))
    })
    .await?;
    let (last, _) = writer.finished(STEP).await?;
    rig.queue_drained().await?;

    let held = rig.world.attached_volumes(&m2.id).await?;
    ensure!(held.len() == 2, "attached to {}: {held:?}", m2.id);
    for v in &held {
        let id = v.volume_id().unwrap_or_default();
        ensure!(v.availability_zone() == Some(AZ_B), "{id} is not in {AZ_B}");
    }
    check_holds(&rig.emu, &rig.world, &m2.id, last).await?;
    let inv = rig.inventory().await?;
    let reasons: Vec<String> = inv
        .snapshots
        .iter()
        .map(|s| tag(s.tags(), "ferry:reason").unwrap_or_default())
        .collect();
    let count = |r: &str| reasons.iter().filter(|x| x.as_str() == r).count();
    ensure!(
        count("precopy") == 2 && count("final") == 2 && reasons.len() == 4,
        "snapshots by reason: {reasons:?}"
    );
    let sets = ok_calls(&rig.emu, "CreateSnapshots", since).await?.len();
    let singles = ok_calls(&rig.emu, "CreateSnapshot", since).await?.len();
    ensure!(
        sets == 1 && singles == 2,
        "one pre-copy set and two final deltas, not {sets} sets and {singles} snapshots"
    );
    let tokens = create_volume_tokens(&rig.emu).await?;
    ensure!(
        tokens.len() == 4,
        "first boot (2) + one restore per volume (2): {tokens:?}"
    );
    ensure!(
        inv.ferry_volumes.len() == 4,
        "ferry volumes: {:?}",
        inv.ferry_volumes
    );
    check_common(rig, &inv, &m2.id, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_of_a_two_volume_failover() {
    let only = std::env::var("FERRY_CRASH_CASE").unwrap_or_default();
    let mut set = tokio::task::JoinSet::new();
    for op in BOUNDARIES.iter().copied().filter(|op| op.contains(&only)) {
        set.spawn(async move {
            let _slot = SLOTS.acquire().await;
            let began = Instant::now();
            let res = case(op).await;
            (op, began.elapsed(), res)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (op, took, res) = joined.unwrap_or_else(|e| ("?", Duration::ZERO, Err(e.into())));
        eprintln!(
            "[crash-sets] after {op}: {} in {:.1}s",
            if res.is_ok() { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
        if let Err(e) = res {
            failed.push(format!("--- after {op} ---\n{e:#}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}
