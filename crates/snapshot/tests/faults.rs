//! Idempotency and fault tests of both executors on the in-memory fakes with paused time: crash and resume,
//! duplicate runs of one hook, throttling, permanent errors and EC2's snapshot rate limit.
// Scenario helpers shared by several tests are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ferry_snapshot::faulty::FaultyEc2;
use ferry_snapshot::Snapshots;
use ferry_state_machine::observe::SnapshotState;
use ferry_state_machine::{tags, HookOutcome, HookWork, LifecycleResult, StepError};

fn throttle(op: &str) -> StepError {
    StepError::from_aws(
        format!("ec2:{op}"),
        Some("RequestLimitExceeded"),
        Some("Request limit exceeded."),
        Some(503),
    )
}

/// A completed terminate snapshot of generation 2 whose volume is gone; returns its id.
fn seed_snapshot(w: &World) -> String {
    let mut t = ledger("data", 2, "tok-old-term");
    t.push((tags::REASON.into(), "final".into()));
    w.ec2
        .put_snapshot("vol-gone", 20, SnapshotState::Completed, &t)
}

/// Steps `work` by hand, as a process would before it crashes, until `done` holds.
async fn step_until(
    w: &World,
    work: &dyn HookWork,
    hook: &ferry_state_machine::HookEvent,
    done: impl Fn(&World) -> bool,
) {
    for _ in 0..50 {
        if done(w) {
            return;
        }
        if let Err(e) = work.step(hook, Duration::ZERO).await {
            panic!("step failed: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("never reached the crash point: {:?}", w.ec2.calls());
}

#[tokio::test(start_paused = true)]
async fn a_launch_resumed_after_a_crash_creates_and_attaches_once() {
    for crash_after in ["CreateVolume", "AttachVolume", "AssociateAddress"] {
        let w = World::new(one_volume());
        w.ec2.set_timings(timings());
        let snap = seed_snapshot(&w);
        let hook = w.launch_hook("i-new", AZ_B, "tok-launch");
        step_until(&w, &w.launch_work(), &hook, |w| {
            w.ec2.count(crash_after) == 1
        })
        .await;

        // A fresh process picks the redelivered message up.
        let out = w.run(&hook, &w.launch_work()).await;

        assert_completed(&out, LifecycleResult::Continue);
        let vols = w.volumes_of("data");
        assert_eq!(vols.len(), 1, "crash after {crash_after}: {vols:?}");
        assert_eq!(vols[0].snapshot_id.as_deref(), Some(snap.as_str()));
        assert_eq!(vols[0].tag(tags::GENERATION), Some("3"));
        assert_attached(&vols[0], "i-new", "/dev/sdf");
        assert_eq!(w.ec2.count("CreateVolume"), 1, "crash after {crash_after}");
        assert_eq!(w.ec2.count("AttachVolume"), 1, "crash after {crash_after}");
        assert_eq!(w.eip_target().as_deref(), Some("i-new"));
        assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_terminate_resumed_after_a_crash_snapshots_once() {
    // One volume: the steps repeat while the snapshot is pending, then a fresh process finishes.
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    w.in_service("i-old", AZ_A, 3, "tok-first-boot");
    let hook = w.terminate_hook("i-old", "tok-term");
    let work = w.terminate_work();
    for _ in 0..4 {
        work.step(&hook, Duration::ZERO).await.unwrap();
    }
    let out = w.run(&hook, &w.terminate_work()).await;
    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(w.ec2.count("CreateSnapshot"), 1);
    assert_eq!(w.snapshots_of("data").len(), 1);

    // Two volumes: a crash right after the crash-consistent call.
    let w = World::new(two_volumes());
    w.ec2.set_timings(timings());
    w.in_service("i-old", AZ_A, 3, "tok-first-boot");
    let hook = w.terminate_hook("i-old", "tok-term");
    w.terminate_work()
        .step(&hook, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(w.ec2.count("CreateSnapshots"), 1);
    let out = w.run(&hook, &w.terminate_work()).await;
    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(
        w.ec2.count("CreateSnapshots") + w.ec2.count("CreateSnapshot"),
        1
    );
    assert_eq!(w.ec2.snapshots().len(), 2);
    assert!(w
        .ec2
        .snapshots()
        .iter()
        .all(|s| s.state == SnapshotState::Completed));
}

/// Three drivers run one launch hook at once; `shared` says whether they share slot locks (one process).
async fn duplicates(shared: bool) {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let snap = seed_snapshot(&w);
    let hook = w.launch_hook("i-new", AZ_B, "tok-launch");
    // Slow reads, so that the runs' steps interleave.
    let ec2 = Arc::new(FaultyEc2::new(w.ec2.clone()));
    ec2.gate()
        .delay("DescribeVolumes", Duration::from_millis(120));
    ec2.gate()
        .delay("DescribeInstances", Duration::from_millis(70));
    // Slow mutations, so that one run observes while another's call is in flight.
    ec2.gate().delay("CreateVolume", Duration::from_millis(50));
    ec2.gate().delay("AttachVolume", Duration::from_millis(50));
    ec2.gate()
        .delay("AssociateAddress", Duration::from_millis(50));
    let works: Vec<_> = (0..3).map(|_| w.launch_work_on(ec2.clone())).collect();
    let drivers: Vec<_> = (0..3)
        .map(|_| {
            if shared {
                w.shared_driver()
            } else {
                w.driver()
            }
        })
        .collect();
    let run = |i: usize| drivers[i].run(&hook, &works[i], Duration::ZERO, w.no_shutdown());

    let (a, b, c) = tokio::join!(run(0), run(1), run(2));

    let outcomes = [a, b, c];
    let continued = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                HookOutcome::Completed {
                    result: LifecycleResult::Continue,
                    ..
                }
            )
        })
        .count();
    let ended = outcomes
        .iter()
        .filter(|o| **o == HookOutcome::AlreadyEnded)
        .count();
    assert_eq!((continued, ended), (1, 2), "{outcomes:?}");
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
    let vols = w.volumes_of("data");
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0].snapshot_id.as_deref(), Some(snap.as_str()));
    assert_attached(&vols[0], "i-new", "/dev/sdf");
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    if shared {
        // Serialized by the slot lock, the duplicates never repeat a mutation.
        assert_eq!(w.ec2.count("CreateVolume"), 1);
        assert_eq!(w.ec2.count("AttachVolume"), 1);
    } else {
        // Without it they race: the ClientToken dedupes the creates, and the losing attaches
        // (`VolumeInUse`) re-observe instead of abandoning the hook.
        assert!(w.ec2.count("AttachVolume") > 1, "the race was exercised");
    }
}

#[tokio::test(start_paused = true)]
async fn duplicate_runs_in_one_process_make_one_volume_and_one_completion() {
    duplicates(true).await;
}

#[tokio::test(start_paused = true)]
async fn duplicate_runs_without_a_shared_lock_still_continue_once() {
    duplicates(false).await;
}

#[tokio::test(start_paused = true)]
async fn throttled_calls_are_retried_to_the_same_end_state() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let snap = seed_snapshot(&w);
    let hook = w.launch_hook("i-new", AZ_B, "tok-launch");
    let ec2 = Arc::new(FaultyEc2::new(w.ec2.clone()));
    for op in [
        "CreateVolume",
        "AttachVolume",
        "DescribeVolumes",
        "AssociateAddress",
    ] {
        ec2.gate().fail_times(op, 3, throttle(op));
    }

    let out = w.run(&hook, &w.launch_work_on(ec2.clone())).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(
        ec2.gate().injected().len(),
        12,
        "{:?}",
        ec2.gate().injected()
    );
    let vols = w.volumes_of("data");
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].snapshot_id.as_deref(), Some(snap.as_str()));
    assert_attached(&vols[0], "i-new", "/dev/sdf");
    assert_eq!(
        w.ec2.count("CreateVolume"),
        1,
        "throttled calls never reached EC2"
    );
    assert_eq!(w.ec2.count("AttachVolume"), 1);
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn a_missing_elastic_ip_continues_with_the_data_and_says_so() {
    // The data is attached; abandoning would replace the instance, and every replacement would fail the
    // same way. ferry continues, and the outcome names the address it could not move.
    let mut group = one_volume();
    group.elastic_ip = Some("eipalloc-0doesnotexist".into());
    let w = World::new(group);
    w.ec2.set_timings(timings());
    let hook = w.launch_hook("i-new", AZ_A, "tok-launch");

    let out = w.run(&hook, &w.launch_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(
        reason.contains("degraded") && reason.contains("eipalloc-0doesnotexist"),
        "{reason}"
    );
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
    assert_eq!(w.ec2.count("AssociateAddress"), 0);
    assert!(
        w.ec2
            .instance("i-new")
            .unwrap()
            .tag("ferry:attached:data")
            .is_some(),
        "the data is attached"
    );
}

#[tokio::test(start_paused = true)]
async fn the_per_volume_snapshot_rate_limit_is_waited_out() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    w.ec2.set_snapshot_rate_limit(Some(Duration::from_secs(15)));
    let vol = w.in_service("i-old", AZ_A, 3, "tok-first-boot").remove(0);
    // Someone took a snapshot a moment ago.
    w.ec2.create_snapshot(&vol, "backup", &[]).await.unwrap();
    let hook = w.terminate_hook("i-old", "tok-term");

    let out = w.run(&hook, &w.terminate_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert!(
        w.ec2.count("CreateSnapshot") >= 3,
        "refused, retried: {:?}",
        w.ec2.calls()
    );
    let ours: Vec<_> = w
        .ec2
        .snapshots()
        .into_iter()
        .filter(|s| s.tag(tags::HOOK) == Some(hook.ledger_key().as_str()))
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].state, SnapshotState::Completed);
}
