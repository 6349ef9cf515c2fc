//! The crash matrix: ferryd is SIGKILLed at every step boundary of the terminate and launch hooks (right after
//! each mutating call, through `FERRY_TEST_KILL_AFTER`, and while a resource is pending, from outside), a fresh
//! ferryd is started on the same queue, and the end state is checked in the emulator: the right data attached
//! in the right AZ, the Elastic IP moved, every action completed once with CONTINUE, and exactly the expected
//! ferry volumes and snapshots (no duplicate, no orphan). In every failover case a workload writes to the old
//! instance until it is gone, and the replacement must hold exactly its last acknowledged write.
//!
//! Each case runs on its own emulator; at most three cases run at once across the whole file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use ferry_integration_tests::daemon::Ferryd;
use ferry_integration_tests::scenario::{
    action_of, actions, attachment, check_common, create_volume_tokens, exited, in_service,
    ledger_key, ok_calls, tag, Rig, STEP,
};
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, GroupMember, WorldOptions, AZ_A, AZ_B};
use serde_json::json;
use tokio::sync::Semaphore;

/// Cases running at once, across every test of this file (2 cores: an emulator and a ferryd each).
static SLOTS: Semaphore = Semaphore::const_new(3);

/// The hook queue's visibility timeout: a crashed run's message returns this fast.
const VISIBILITY: u32 = 5;

/// How long a resource stays pending in the "while waiting" cases.
const SLOW: f64 = 4.0;

/// What the case exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The group's first launch: an empty volume in AZ a.
    FirstBoot,
    /// First boot in AZ a (uncrashed), then a failover to AZ b: pre-copy, fence, final delta, restore in b.
    CrossAz,
    /// First boot in AZ a (uncrashed), then a replacement in AZ a: the detached volume is claimed and reattached.
    SameAz,
}

/// What ferry is waiting on when it is killed from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The terminate's pre-copy is `pending`.
    Snapshot,
    /// The launch's final delta of the fenced volume is `pending`.
    FinalDelta,
    /// The new volume is `creating`.
    Creating,
    /// The attachment is `attaching`.
    Attaching,
    /// Both hooks in flight (the launch before the terminate completes): the launch waits at the barrier
    /// for the fence while the terminate's pre-copy is pending.
    Barrier,
}

/// How ferry dies.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// `FERRY_TEST_KILL_AFTER=<op>[#n]`: right after the n-th successful call of op.
    After(&'static str),
    /// External `kill -KILL` once the call log shows the mutation and the resource is still pending.
    While(Pending),
}

#[derive(Debug, Clone, Copy)]
struct Case {
    flow: Flow,
    kill: Kill,
}

const fn after(flow: Flow, op: &'static str) -> Case {
    Case {
        flow,
        kill: Kill::After(op),
    }
}

const fn waiting(flow: Flow, p: Pending) -> Case {
    Case {
        flow,
        kill: Kill::While(p),
    }
}

/// The terminate hook (of a cross-AZ failover): after its pre-copy call, while the pre-copy is pending,
/// after its completion (the fence).
const TERMINATE: &[Case] = &[
    after(Flow::CrossAz, "ec2:CreateSnapshot"),
    waiting(Flow::CrossAz, Pending::Snapshot),
    after(Flow::CrossAz, "autoscaling:CompleteLifecycleAction"),
];

/// The first-boot launch: create, (creating), attach, (attaching), Elastic IP, instance tags, complete.
const FIRST_BOOT: &[Case] = &[
    after(Flow::FirstBoot, "ec2:CreateVolume"),
    waiting(Flow::FirstBoot, Pending::Creating),
    after(Flow::FirstBoot, "ec2:AttachVolume"),
    waiting(Flow::FirstBoot, Pending::Attaching),
    after(Flow::FirstBoot, "ec2:AssociateAddress"),
    after(Flow::FirstBoot, "ec2:CreateTags"),
    after(Flow::FirstBoot, "autoscaling:CompleteLifecycleAction"),
];

/// The cross-AZ launch: waiting at the barrier, the final delta (the run's second CreateSnapshot: the
/// pre-copy is the first), (delta pending), restore, (creating), attach, (attaching), Elastic IP, instance
/// tags, complete (the run's second completion: the terminate's is the first).
const CROSS_AZ: &[Case] = &[
    waiting(Flow::CrossAz, Pending::Barrier),
    after(Flow::CrossAz, "ec2:CreateSnapshot#2"),
    waiting(Flow::CrossAz, Pending::FinalDelta),
    after(Flow::CrossAz, "ec2:CreateVolume"),
    waiting(Flow::CrossAz, Pending::Creating),
    after(Flow::CrossAz, "ec2:AttachVolume"),
    waiting(Flow::CrossAz, Pending::Attaching),
    after(Flow::CrossAz, "ec2:AssociateAddress"),
    after(Flow::CrossAz, "ec2:CreateTags"),
    after(Flow::CrossAz, "autoscaling:CompleteLifecycleAction#2"),
];

/// The same-AZ launch: claim (CreateTags on the volume), attach, (attaching), Elastic IP, instance tags
/// (the run's second CreateTags), complete.
const SAME_AZ: &[Case] = &[
    after(Flow::SameAz, "ec2:CreateTags"),
    after(Flow::SameAz, "ec2:AttachVolume"),
    waiting(Flow::SameAz, Pending::Attaching),
    after(Flow::SameAz, "ec2:AssociateAddress"),
    after(Flow::SameAz, "ec2:CreateTags#2"),
    after(Flow::SameAz, "autoscaling:CompleteLifecycleAction#2"),
];

impl Case {
    fn name(&self) -> String {
        let kill = match self.kill {
            Kill::After(op) => format!("after {op}"),
            Kill::While(p) => format!("while {p:?}"),
        };
        format!("{:?} / {kill}", self.flow)
    }

    fn settings(&self) -> serde_json::Value {
        let mut s = ferry_integration_tests::emulator::fast_timings();
        match self.kill {
            Kill::While(Pending::Snapshot) => s["snapshot_seconds"] = json!(SLOW),
            Kill::While(Pending::FinalDelta) => s["incremental_snapshot_seconds"] = json!(SLOW),
            Kill::While(Pending::Creating) => s["volume_create_seconds"] = json!(SLOW),
            Kill::While(Pending::Attaching) => s["attach_seconds"] = json!(SLOW),
            Kill::While(Pending::Barrier) => {
                s["snapshot_seconds"] = json!(SLOW);
                s["replacement_order"] = json!("before_terminate");
            }
            Kill::After(_) => {}
        }
        s
    }
}

/// Runs every case of a table, at most `SLOTS` at once, and fails naming each failed case.
async fn run_table(cases: &[Case]) {
    let bin = Path::new(env!("CARGO_BIN_EXE_ferryd"));
    let mut set = tokio::task::JoinSet::new();
    // `FERRY_CRASH_CASE=<substring>` runs only the matching cases (for debugging one boundary).
    let only = std::env::var("FERRY_CRASH_CASE").unwrap_or_default();
    for case in cases.iter().copied().filter(|c| c.name().contains(&only)) {
        set.spawn(async move {
            let _slot = SLOTS.acquire().await;
            let began = Instant::now();
            let res = run_case(bin, case).await;
            (case.name(), began.elapsed(), res)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (name, took, res) =
            joined.unwrap_or_else(|e| ("?".into(), Duration::ZERO, Err(e.to_string())));
        eprintln!(
            "[crash] {name}: {} in {:.1}s",
            if res.is_ok() { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
        if let Err(e) = res {
            failed.push(format!("--- {name} ---\n{e}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

/// One case on its own emulator; the error carries the tail of every ferryd log.
async fn run_case(bin: &Path, case: Case) -> Result<(), String> {
    let opts = WorldOptions {
        visibility_timeout: VISIBILITY,
        ..WorldOptions::default()
    };
    let mut rig = Rig::new(bin, &opts, case.settings())
        .await
        .map_err(|e| format!("setup: {e:#}"))?;
    let res = drive(&mut rig, case).await;
    res.map_err(|e| format!("{e:#}\n{}", tail(&rig.logs(), 250)))
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn drive(rig: &mut Rig, case: Case) -> Result<()> {
    let crash_env: Vec<(&str, &str)> = match case.kill {
        Kill::After(op) => vec![("FERRY_TEST_KILL_AFTER", op)],
        Kill::While(_) => vec![],
    };
    if case.flow == Flow::FirstBoot {
        let mut crashing = rig.ferryd(&crash_env)?;
        rig.emu.place(&rig.world.group, Some(AZ_A)).await?;
        rig.world.scale_to_one().await?;
        crash(rig, &mut crashing, case, 0, None).await?;
        let _fresh = rig.ferryd(&[])?;
        let m = in_service(&rig.world, &[]).await?;
        rig.queue_drained().await?;
        return check_first_boot(rig, &m).await;
    }
    // An uncrashed first boot in AZ a, then ferryd stops cleanly.
    let mut first = rig.ferryd(&[])?;
    let m1 = rig.first_boot(AZ_A).await?;
    rig.queue_drained().await?;
    first.signal("TERM")?;
    exited(&mut first, "after SIGTERM", Duration::from_secs(30)).await?;
    let v1 = rig
        .world
        .attached_volumes(&m1.id)
        .await?
        .first()
        .and_then(|v| v.volume_id().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("first boot left no volume on {}", m1.id))?;
    let since = rig.seq().await?;
    let mut crashing = rig.ferryd(&crash_env)?;
    let to = if case.flow == Flow::CrossAz {
        AZ_B
    } else {
        AZ_A
    };
    rig.emu.place(&rig.world.group, Some(to)).await?;
    let writer = Writer::start(&rig.emu, &m1.id, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.world.terminate(&m1.id).await?;
    crash(rig, &mut crashing, case, since, Some(&m1.id)).await?;
    let _fresh = rig.ferryd(&[])?;
    let m2 = in_service(&rig.world, &[&m1.id]).await?;
    wait_for("the old instance to terminate", STEP, || async {
        Ok((rig.world.ec2_state(&m1.id).await? == "terminated").then_some(()))
    })
    .await?;
    let (last, _) = writer.finished(STEP).await?;
    rig.queue_drained().await?;
    check_failover(rig, case.flow, &m1, &v1, &m2, since).await?;
    check_holds(&rig.emu, &rig.world, &m2.id, last).await
}

/// Kills the crashing run as the case says, and makes sure it died of it.
async fn crash(rig: &Rig, d: &mut Ferryd, case: Case, since: u64, old: Option<&str>) -> Result<()> {
    match case.kill {
        Kill::After(op) => {
            exited(d, &format!("crash point {op} never reached"), STEP).await?;
            ensure!(
                rig.log(rig.runs()).contains("crash point reached"),
                "ferryd exited without reaching its crash point {op}"
            );
            crashed_at_the_right_call(rig, case.flow, op, since, old).await?;
        }
        Kill::While(p) => {
            wait_for(&format!("ferry to be waiting on {p:?}"), STEP, || async {
                waiting_on(rig, p, since, old).await
            })
            .await?;
            d.signal("KILL")?;
            exited(d, "after SIGKILL", Duration::from_secs(10)).await?;
        }
    }
    ensure!(
        d.wait()?.is_none(),
        "the crashing ferryd exited normally, not by SIGKILL"
    );
    Ok(())
}

/// The boundary is the intended one: the n-th successful call of `op` after `since` (only the crashing run
/// calls AWS then) is the step the case names, not another call of the same API.
async fn crashed_at_the_right_call(
    rig: &Rig,
    flow: Flow,
    op: &str,
    since: u64,
    old: Option<&str>,
) -> Result<()> {
    let (name, nth) = match op.split_once('#') {
        Some((name, n)) => (name, n.parse::<usize>().unwrap_or(1)),
        None => (op, 1),
    };
    let action = name.split_once(':').map_or(name, |(_, a)| a);
    let calls = ok_calls(&rig.emu, action, since).await?;
    let Some(call) = calls.get(nth - 1) else {
        bail!(
            "the call log has {} successful {action} calls, the crash point wanted #{nth}",
            calls.len()
        );
    };
    let p = |k: &str| call["params"][k].as_str().unwrap_or_default().to_string();
    let new_instance = |id: String| id.starts_with("i-") && Some(id.as_str()) != old;
    let ok = match (action, flow) {
        ("CreateVolume", Flow::FirstBoot) => {
            p("SnapshotId").is_empty() && p("AvailabilityZone") == AZ_A
        }
        ("CreateVolume", _) => {
            p("SnapshotId").starts_with("snap-") && p("AvailabilityZone") == AZ_B
        }
        ("CreateSnapshot", _) => p("VolumeId").starts_with("vol-"),
        ("AttachVolume" | "AssociateAddress", _) => new_instance(p("InstanceId")),
        // The same-AZ claim tags the detached volume; every other CreateTags is the new instance's.
        ("CreateTags", Flow::SameAz) if nth == 1 => p("ResourceId.1").starts_with("vol-"),
        ("CreateTags", _) => new_instance(p("ResourceId.1")),
        ("CompleteLifecycleAction", _) => {
            let terminate = old.is_some() && nth == 1;
            p("LifecycleHookName")
                == if terminate {
                    "ferry-terminate"
                } else {
                    "ferry-launch"
                }
        }
        _ => false,
    };
    ensure!(
        ok,
        "the crash point {op} fired at an unexpected call: {call}"
    );
    Ok(())
}

/// `Some` once the call log shows ferry's mutation (after `since`) and the resource is still pending.
async fn waiting_on(rig: &Rig, p: Pending, since: u64, old: Option<&str>) -> Result<Option<()>> {
    let emu = &rig.emu;
    let inv = rig.inventory().await?;
    let pending_snapshot = inv
        .snapshots
        .iter()
        .any(|s| s.state().map(|x| x.as_str()) == Some("pending"));
    Ok(match p {
        Pending::Snapshot => (!ok_calls(emu, "CreateSnapshot", since).await?.is_empty()
            && pending_snapshot)
            .then_some(()),
        Pending::FinalDelta => (ok_calls(emu, "CreateSnapshot", since).await?.len() >= 2
            && pending_snapshot)
            .then_some(()),
        Pending::Creating => {
            let creating = inv
                .ferry_volumes
                .iter()
                .any(|v| v.state().map(|x| x.as_str()) == Some("creating"));
            (!ok_calls(emu, "CreateVolume", since).await?.is_empty() && creating).then_some(())
        }
        Pending::Attaching => {
            let attaching = inv.ferry_volumes.iter().any(|v| {
                attachment(v).is_some_and(|(i, _, s)| s == "attaching" && Some(i.as_str()) != old)
            });
            (!ok_calls(emu, "AttachVolume", since).await?.is_empty() && attaching).then_some(())
        }
        Pending::Barrier => {
            // The replacement's launch is open while the terminate's snapshot is pending; give ferry a
            // moment to receive the launch and park it at the barrier, then make sure nothing moved.
            let all = actions(emu).await?;
            let launch_open = all
                .iter()
                .any(|a| a.launch && a.state == "active" && Some(a.instance.as_str()) != old);
            if !(launch_open
                && pending_snapshot
                && !ok_calls(emu, "CreateSnapshot", since).await?.is_empty())
            {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let inv = rig.inventory().await?;
            let still = inv
                .snapshots
                .iter()
                .any(|s| s.state().map(|x| x.as_str()) == Some("pending"));
            ensure!(
                still,
                "the snapshot completed before the barrier kill; raise SLOW"
            );
            ensure!(
                ok_calls(emu, "CreateVolume", since).await?.is_empty(),
                "the launch restored before the terminate's snapshot completed (barrier broken)"
            );
            Some(())
        }
    })
}

fn gen(v: &aws_sdk_ec2::types::Volume) -> Option<String> {
    tag(v.tags(), "ferry:generation")
}

async fn check_first_boot(rig: &Rig, m: &GroupMember) -> Result<()> {
    ensure!(m.az == AZ_A, "first boot landed in {}", m.az);
    let inv = rig.inventory().await?;
    let all = actions(&rig.emu).await?;
    ensure!(all.len() == 1, "one launch action expected: {all:?}");
    let launch = action_of(&all, &m.id, true)?;
    ensure!(
        inv.ferry_volumes.len() == 1,
        "ferry volumes: {:?}",
        inv.ferry_volumes
    );
    ensure!(
        inv.snapshots.is_empty(),
        "snapshots on a first boot: {:?}",
        inv.snapshots
    );
    let v = &inv.ferry_volumes[0];
    ensure!(
        attachment(v) == Some((m.id.clone(), "/dev/sdf".into(), "attached".into())),
        "volume attachment {:?}",
        v.attachments()
    );
    ensure!(
        v.availability_zone() == Some(AZ_A),
        "volume in {:?}",
        v.availability_zone()
    );
    ensure!(
        v.snapshot_id().unwrap_or_default().is_empty(),
        "first boot restored {:?}",
        v.snapshot_id()
    );
    ensure!(v.size() == Some(20), "size {:?}", v.size());
    ensure!(gen(v).as_deref() == Some("1"), "generation {:?}", gen(v));
    ensure!(
        tag(v.tags(), "ferry:hook") == Some(ledger_key(&launch.instance, true)),
        "hook tag {:?}, launch action {launch:?}",
        v.tags()
    );
    let tokens = create_volume_tokens(&rig.emu).await?;
    ensure!(
        tokens.len() == 1,
        "distinct CreateVolume tokens: {tokens:?}"
    );
    let attaches = ok_calls(&rig.emu, "AttachVolume", 0).await?;
    ensure!(attaches.len() == 1, "successful attaches: {attaches:?}");
    check_common(rig, &inv, &m.id, false).await
}

async fn check_failover(
    rig: &Rig,
    flow: Flow,
    m1: &GroupMember,
    v1: &str,
    m2: &GroupMember,
    since: u64,
) -> Result<()> {
    let to = if flow == Flow::CrossAz { AZ_B } else { AZ_A };
    ensure!(m2.az == to, "the replacement is in {}, not {to}", m2.az);
    let inv = rig.inventory().await?;
    let all = actions(&rig.emu).await?;
    ensure!(
        all.len() == 3,
        "3 actions expected (2 launches, 1 terminate): {all:?}"
    );
    action_of(&all, &m1.id, false)?;
    let launch2 = action_of(&all, &m2.id, true)?;

    // The pre-copy of the first volume at the terminate, and for a cross-AZ move the launch's final delta of
    // the fenced volume; generation 1, completed, each exactly once.
    let want_snaps = if flow == Flow::CrossAz { 2 } else { 1 };
    ensure!(
        inv.snapshots.len() == want_snaps,
        "snapshots: {:?}",
        inv.snapshots
    );
    let mut final_id = String::new();
    for snap in &inv.snapshots {
        ensure!(
            snap.volume_id() == Some(v1),
            "snapshot of {:?}, not {v1}",
            snap.volume_id()
        );
        ensure!(
            snap.state().map(|s| s.as_str()) == Some("completed"),
            "snapshot {:?}",
            snap.state()
        );
        let reason = tag(snap.tags(), "ferry:reason").unwrap_or_default();
        let hook = match reason.as_str() {
            "precopy" => ledger_key(&m1.id, false),
            "final" => {
                final_id = snap.snapshot_id().unwrap_or_default().to_string();
                ledger_key(&launch2.instance, true)
            }
            other => bail!("snapshot reason {other:?}: {:?}", snap.tags()),
        };
        for (k, want) in [("ferry:generation", "1"), ("ferry:hook", hook.as_str())] {
            ensure!(
                tag(snap.tags(), k).as_deref() == Some(want),
                "snapshot tag {k}: {:?}",
                snap.tags()
            );
        }
    }
    let snap_id = final_id;
    let snaps_made = ok_calls(&rig.emu, "CreateSnapshot", 0).await?.len()
        + ok_calls(&rig.emu, "CreateSnapshots", 0).await?.len();
    ensure!(
        snaps_made == want_snaps,
        "{snaps_made} snapshot calls succeeded"
    );

    // The replacement holds generation 2 at /dev/sdf, and nothing else.
    let held = inv.attached_to(&m2.id);
    ensure!(held.len() == 1, "volumes attached to {}: {held:?}", m2.id);
    let v2 = held[0];
    let v2_id = v2.volume_id().unwrap_or_default();
    ensure!(
        attachment(v2) == Some((m2.id.clone(), "/dev/sdf".into(), "attached".into())),
        "attachment {:?}",
        v2.attachments()
    );
    ensure!(gen(v2).as_deref() == Some("2"), "generation {:?}", gen(v2));
    ensure!(
        tag(v2.tags(), "ferry:hook") == Some(ledger_key(&launch2.instance, true)),
        "hook tag {:?}",
        v2.tags()
    );
    let tokens = create_volume_tokens(&rig.emu).await?;
    let attaches = ok_calls(&rig.emu, "AttachVolume", 0).await?;
    ensure!(attaches.len() == 2, "successful attaches: {attaches:?}");
    match flow {
        Flow::CrossAz => {
            ensure!(v2_id != v1, "the volume in AZ b must be a restore");
            ensure!(
                v2.availability_zone() == Some(AZ_B),
                "restored into {:?}",
                v2.availability_zone()
            );
            ensure!(
                !snap_id.is_empty() && v2.snapshot_id() == Some(snap_id.as_str()),
                "restored from {:?}, not the final delta",
                v2.snapshot_id()
            );
            ensure!(
                tag(v2.tags(), "ferry:source-volume").as_deref() == Some(v1),
                "lineage {:?}",
                v2.tags()
            );
            ensure!(
                inv.ferry_volumes.len() == 2,
                "ferry volumes: {:?}",
                inv.ferry_volumes
            );
            let old = inv
                .volume(v1)
                .ok_or_else(|| anyhow::anyhow!("{v1} is gone"))?;
            ensure!(
                old.state().map(|s| s.as_str()) == Some("available"),
                "{v1} is {:?}",
                old.state()
            );
            ensure!(
                gen(old).as_deref() == Some("1"),
                "{v1} generation {:?}",
                gen(old)
            );
            ensure!(
                tokens.len() == 2,
                "distinct CreateVolume tokens (first boot + one restore): {tokens:?}"
            );
        }
        Flow::SameAz => {
            ensure!(
                v2_id == v1,
                "the same-AZ replacement must reattach {v1}, got {v2_id}"
            );
            ensure!(
                inv.ferry_volumes.len() == 1,
                "ferry volumes: {:?}",
                inv.ferry_volumes
            );
            ensure!(
                tokens.len() == 1,
                "a same-AZ reattach creates no volume: {tokens:?}"
            );
            let late = ok_calls(&rig.emu, "CreateVolume", since).await?;
            ensure!(
                late.is_empty(),
                "CreateVolume on the same-AZ path: {late:?}"
            );
        }
        Flow::FirstBoot => bail!("not a failover"),
    }
    check_common(rig, &inv, &m2.id, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_terminate_boundary() {
    run_table(TERMINATE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_first_boot_boundary() {
    run_table(FIRST_BOOT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_cross_az_launch_boundary() {
    run_table(CROSS_AZ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_same_az_claim_boundary() {
    run_table(SAME_AZ).await;
}
