//! Failover flows across both hooks on the in-memory fakes with paused time, each with a workload that writes
//! until its instance is gone: cross-AZ (pre-copy, fence, final delta), same-AZ, multi-volume, the ordering
//! barrier of concurrent hooks, and a failed pre-copy. Every test checks the last acknowledged write.
// Scenario helpers shared by several tests are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ferry_snapshot::fake::{FailMode, FakeVolume, Timings};
use ferry_snapshot::faulty::FaultyEc2;
use ferry_snapshot::Addresses;
use ferry_state_machine::observe::{SnapshotState, VolumeState};
use ferry_state_machine::{tags, LifecycleResult};
use tokio::time::Instant;

/// The volume the launch hook of `instance` made or claimed (its `ferry:hook` is the ledger key).
fn made_by(w: &World, logical: &str, instance: &str) -> FakeVolume {
    let key = launch_key(instance);
    let mut found: Vec<_> = w
        .volumes_of(logical)
        .into_iter()
        .filter(|v| v.tag(tags::HOOK) == Some(key.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "{logical} volumes of {key}: {found:?}");
    found.remove(0)
}

/// Runs the terminate hook of `instance` to its end, then terminates the instance as EC2 would.
async fn terminate(w: &World, instance: &str, token: &str) -> String {
    let hook = w.terminate_hook(instance, token);
    let out = w.run(&hook, &w.terminate_work()).await;
    let reason = assert_completed(&out, LifecycleResult::Continue);
    w.ec2.set_instance_state(instance, "terminated");
    w.asg_instance(instance, AZ_A, "Terminated");
    reason
}

#[tokio::test(start_paused = true)]
async fn cross_az_failover_restores_the_final_delta_with_the_last_acknowledged_write() {
    let w = World::new(one_volume());
    w.ec2.set_timings(Timings {
        snapshot: Duration::from_secs(600),
        ..timings()
    });
    let old = w.in_service("i-old", AZ_A, 1, "tok-first-boot").remove(0);
    w.ec2.associate_address(EIP, "i-old").await.unwrap();
    let writer = spawn_writer(&w.ec2, "i-old");
    tokio::time::sleep(Duration::from_secs(1)).await;

    terminate(&w, "i-old", "tok-term").await;
    let last = writer.await.unwrap();
    assert!(
        w.asg.heartbeats("tok-term") >= 3,
        "heartbeats during the 10 min pre-copy"
    );
    let snaps = w.snapshots_of("data");
    assert_eq!(snaps.len(), 1);
    let pre = &snaps[0];
    assert_eq!(
        (pre.state, pre.volume_id.as_str()),
        (SnapshotState::Completed, old.as_str())
    );
    assert_eq!(pre.tag(tags::GENERATION), Some("1"));
    assert_eq!(pre.tag(tags::REASON), Some("precopy"));
    assert!(
        pre.content < last,
        "the workload kept writing after the pre-copy began ({} < {last})",
        pre.content
    );
    assert_eq!(
        w.ec2.volume(&old).unwrap().state,
        VolumeState::Available,
        "EC2 detached it: the fence"
    );
    assert_eq!(w.eip_target(), None, "EC2 released the address");

    let hook = w.launch_hook("i-new", AZ_B, "tok-launch");
    w.ec2.clear_calls();
    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    let fin = w
        .snapshots_of("data")
        .into_iter()
        .find(|s| s.tag(tags::REASON) == Some("final"))
        .expect("the final delta");
    assert_eq!(
        (fin.volume_id.as_str(), fin.tag(tags::GENERATION)),
        (old.as_str(), Some("1"))
    );
    assert_eq!(fin.tag(tags::HOOK), Some(hook.ledger_key().as_str()));
    let v = made_by(&w, "data", "i-new");
    assert_eq!(v.snapshot_id.as_deref(), Some(fin.id.as_str()));
    assert_eq!(
        v.content, last,
        "the replacement holds the last acknowledged write"
    );
    assert_eq!(v.availability_zone, AZ_B);
    assert_eq!(v.size_gib, 20);
    assert_eq!(v.tag(tags::GENERATION), Some("2"));
    assert_eq!(v.tag(tags::SOURCE_SNAPSHOT), Some(fin.id.as_str()));
    assert_eq!(v.tag(tags::SOURCE_VOLUME), Some(old.as_str()));
    assert_attached(&v, "i-new", "/dev/sdf");
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    assert_eq!(
        w.ec2.instance("i-new").unwrap().tag("ferry:attached:data"),
        Some(v.id.as_str())
    );
    assert_eq!(w.ec2.count("CreateVolume"), 1);
    assert_eq!(w.ec2.count("AttachVolume"), 1);
    assert_eq!(w.ec2.count("CreateSnapshot"), 1, "the final delta, once");
    let left = w.ec2.volume(&old).unwrap();
    assert_eq!(
        (left.state, left.tag(tags::GENERATION)),
        (VolumeState::Available, Some("1")),
        "kept for GC"
    );
    assert_eq!(w.results_of("i-old"), [LifecycleResult::Continue]);
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn same_az_replacement_reattaches_the_old_volume() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let old = w.in_service("i-old", AZ_A, 8, "tok-first-boot").remove(0);
    let writer = spawn_writer(&w.ec2, "i-old");
    tokio::time::sleep(Duration::from_secs(1)).await;
    terminate(&w, "i-old", "tok-term").await;
    let last = writer.await.unwrap();

    let hook = w.launch_hook("i-new", AZ_A, "tok-launch");
    w.ec2.clear_calls();
    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(w.ec2.count("CreateVolume"), 0, "{:?}", w.ec2.calls());
    let v = made_by(&w, "data", "i-new");
    assert_eq!(v.id, old);
    assert_eq!(
        v.content, last,
        "the fenced volume itself, with the last write"
    );
    assert_eq!(w.ec2.count("CreateSnapshot"), 0, "no final delta needed");
    assert_eq!(v.tag(tags::GENERATION), Some("9"));
    assert_attached(&v, "i-new", "/dev/sdf");
    assert_eq!(w.volumes_of("data").len(), 1);
    assert_eq!(w.ec2.count("AttachVolume"), 1);
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn a_two_volume_group_fails_over_with_both_volumes_at_one_consistent_point() {
    let w = World::new(two_volumes());
    w.ec2.set_timings(Timings {
        snapshot: Duration::from_secs(30),
        ..timings()
    });
    let old = w.in_service("i-old", AZ_A, 3, "tok-first-boot");
    let writer = spawn_writer(&w.ec2, "i-old");
    tokio::time::sleep(Duration::from_secs(1)).await;
    terminate(&w, "i-old", "tok-term").await;
    let last = writer.await.unwrap();
    assert_eq!(
        w.ec2.count("CreateSnapshots"),
        1,
        "one crash-consistent pre-copy"
    );

    let hook = w.launch_hook("i-new", AZ_C, "tok-launch");
    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    let inst = w.ec2.instance("i-new").unwrap();
    for ((logical, device), source) in [("data", "/dev/sdf"), ("wal", "/dev/sdg")]
        .into_iter()
        .zip(&old)
    {
        let fin = w
            .snapshots_of(logical)
            .into_iter()
            .find(|s| s.tag(tags::REASON) == Some("final"))
            .expect("a final delta");
        assert_eq!(&fin.volume_id, source);
        let v = made_by(&w, logical, "i-new");
        assert_eq!(v.snapshot_id.as_deref(), Some(fin.id.as_str()), "{logical}");
        assert_eq!(v.content, last, "{logical} holds the same last write");
        assert_eq!(v.availability_zone, AZ_C);
        assert_eq!(v.tag(tags::GENERATION), Some("4"));
        assert_eq!(v.tag(tags::SOURCE_VOLUME), Some(source.as_str()));
        assert_attached(&v, "i-new", device);
        assert_eq!(
            inst.tag(&format!("ferry:attached:{logical}")),
            Some(v.id.as_str())
        );
    }
    assert_eq!(w.ec2.count("CreateVolume"), 2);
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
}

/// Two volumes; the old instance is still terminating when the launch starts, and EC2 lets go of the
/// volumes one after the other. No final delta may be taken of the first before the second is released too.
#[tokio::test(start_paused = true)]
async fn no_volume_of_the_slot_is_copied_while_another_is_still_held() {
    let w = World::new(two_volumes());
    w.ec2.set_timings(timings());
    let old = w.in_service("i-old", AZ_A, 3, "tok-first-boot");
    w.asg_instance("i-old", AZ_A, "Terminating:Wait");
    // EC2 released `data` but `wal` is still attached to the leaving instance.
    w.ec2.detach_for_test(&old[0]);
    let launch = w.launch_hook("i-new", AZ_B, "tok-launch");
    let work = w.launch_work();
    let (ec2, asg) = (w.ec2.clone(), w.asg.clone());
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let at = ec2.calls().len();
        ec2.set_instance_state("i-old", "terminated");
        drop(asg);
        at
    });
    let out = w.run(&launch, &work).await;
    let released_at = release.await.unwrap();

    assert_completed(&out, LifecycleResult::Continue);
    let calls = w.ec2.calls();
    let first = calls
        .iter()
        .position(|c| c == "CreateSnapshot" || c == "CreateVolume" || c == "CreateTags")
        .expect("the launch acted");
    assert!(
        first >= released_at,
        "acted at call {first}, before the last volume was released at {released_at}: {calls:?}"
    );
}

/// Concurrent hooks: the old instance is in `Terminating:Wait` with the volume attached while the new one launches.
/// `launch_delay` shifts the launch's start relative to the terminate's.
async fn barrier(launch_delay: Duration) {
    let w = World::new(one_volume());
    w.ec2.set_timings(Timings {
        snapshot: Duration::from_secs(300),
        ..timings()
    });
    // Older data that must never be used: a generation-1 snapshot and a detached generation-1 volume in the
    // new instance's own AZ (a tempting fast path).
    let mut t = ledger("data", 1, "tok-ancient-term");
    t.push((tags::REASON.into(), "final".into()));
    let ancient_snap = w
        .ec2
        .put_snapshot("vol-ancient", 20, SnapshotState::Completed, &t);
    let ancient_vol = w
        .ec2
        .add_volume(AZ_B, 20, &ledger("data", 1, "tok-ancient"));
    let old = w.in_service("i-old", AZ_A, 2, "tok-old-launch").remove(0);
    let writer = spawn_writer(&w.ec2, "i-old");
    let term = w.terminate_hook("i-old", "tok-term");
    let launch = w.launch_hook("i-new", AZ_B, "tok-launch");

    // EC2 shuts the old instance down once its terminate action is completed.
    let (ec2, asg) = (w.ec2.clone(), w.asg.clone());
    let reaper = tokio::spawn(async move {
        while asg.completions().iter().all(|c| c.instance_id != "i-old") {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ec2.set_instance_state("i-old", "shutting-down");
        tokio::time::sleep(Duration::from_secs(20)).await;
        let at = ec2.calls().len();
        ec2.set_instance_state("i-old", "terminated");
        at
    });
    let began = Instant::now();
    let (launch_work, term_work) = (w.launch_work(), w.terminate_work());
    let (l_out, t_out) = tokio::join!(
        async {
            tokio::time::sleep(launch_delay).await;
            w.run(&launch, &launch_work).await
        },
        w.run(&term, &term_work),
    );
    let terminated_at = reaper.await.unwrap();

    assert_completed(&t_out, LifecycleResult::Continue);
    assert_completed(&l_out, LifecycleResult::Continue);
    assert!(
        began.elapsed() >= Duration::from_secs(320),
        "the launch waited: {:?}",
        began.elapsed()
    );
    assert!(
        w.asg.heartbeats("tok-launch") >= 1,
        "the barrier heartbeats"
    );
    let last = writer.await.unwrap();
    let pre = w
        .snapshots_of("data")
        .into_iter()
        .find(|s| s.tag(tags::HOOK) == Some(term.ledger_key().as_str()))
        .expect("the terminate's pre-copy");
    assert_eq!(pre.tag(tags::REASON), Some("precopy"));
    let fin = w
        .snapshots_of("data")
        .into_iter()
        .find(|s| s.tag(tags::REASON) == Some("final") && s.volume_id == old)
        .expect("the final delta");
    let v = made_by(&w, "data", "i-new");
    assert_eq!(
        v.snapshot_id.as_deref(),
        Some(fin.id.as_str()),
        "not {ancient_snap}, not the pre-copy {}",
        pre.id
    );
    assert!(
        pre.content < last,
        "writes after the pre-copy: {} < {last}",
        pre.content
    );
    assert_eq!(
        v.content, last,
        "the replacement holds the last acknowledged write"
    );
    assert_eq!(v.tag(tags::GENERATION), Some("3"));
    assert_eq!(v.tag(tags::SOURCE_VOLUME), Some(old.as_str()));
    assert_attached(&v, "i-new", "/dev/sdf");
    let ancient = w.ec2.volume(&ancient_vol).unwrap();
    assert_eq!(
        (&ancient.attachment, ancient.tag(tags::GENERATION)),
        (&None, Some("1"))
    );
    assert_eq!(w.ec2.volume(&old).unwrap().attachment, None);
    assert_eq!(w.data_attached_to("i-old").len(), 0);

    // Fencing: nothing was created or attached for the launch before the old copy was released.
    let calls = w.ec2.calls();
    let first = calls
        .iter()
        .position(|c| c == "CreateVolume" || c == "AttachVolume" || c == "CreateTags")
        .expect("the launch acted");
    let delta = calls
        .iter()
        .rposition(|c| c == "CreateSnapshot")
        .expect("the final delta");
    assert!(
        delta >= terminated_at,
        "final delta at call {delta}, old instance terminated at {terminated_at}"
    );
    assert!(
        first >= terminated_at,
        "acted at call {first}, old instance terminated at {terminated_at}"
    );
    assert_eq!(w.ec2.count("CreateVolume"), 1);
    assert_eq!(w.ec2.count("AttachVolume"), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_hooks_launch_first_restore_the_final_delta() {
    barrier(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_hooks_terminate_first_restore_the_final_delta() {
    barrier(Duration::from_secs(100)).await;
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_pre_copy_the_final_snapshot_is_a_full_copy_of_the_fenced_volume() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let old = w.in_service("i-old", AZ_A, 4, "tok-first-boot").remove(0);
    w.ec2.fail_snapshots_of(&old, FailMode::Error);
    let reason = terminate(&w, "i-old", "tok-term").await;
    assert!(reason.contains("degraded"), "{reason}");
    w.ec2.clear_snapshot_failure(&old);

    let hook = w.launch_hook("i-new", AZ_B, "tok-launch");
    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    let snaps = w.snapshots_of("data");
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert_eq!(
        (snaps[0].state, snaps[0].tag(tags::REASON)),
        (SnapshotState::Error, Some("precopy"))
    );
    let own = &snaps[1];
    assert_eq!(own.volume_id, old);
    assert_eq!(own.state, SnapshotState::Completed);
    assert_eq!(own.tag(tags::REASON), Some("final"));
    assert_eq!(own.tag(tags::HOOK), Some(hook.ledger_key().as_str()));
    assert_eq!(own.tag(tags::GENERATION), Some("4"));
    let v = made_by(&w, "data", "i-new");
    assert_eq!(v.snapshot_id.as_deref(), Some(own.id.as_str()));
    assert_eq!(v.tag(tags::GENERATION), Some("5"));
    assert_eq!(v.availability_zone, AZ_B);
    assert_attached(&v, "i-new", "/dev/sdf");
    assert_eq!(
        w.ec2.count("CreateSnapshot"),
        2,
        "one by the terminate, one by the launch"
    );
    assert_eq!(w.ec2.count("CreateVolume"), 1);
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
}

/// Two launch hooks of one slot in one AZ with a detached volume there (a group misconfigured with two
/// instances, or a replacement launched while an expired launch still runs).
#[tokio::test(start_paused = true)]

async fn two_launches_for_one_slot_never_share_the_data() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let vol = w
        .ec2
        .add_volume(AZ_A, 20, &ledger("data", 3, "tok-old-launch"));
    let a = w.launch_hook("i-a", AZ_A, "tok-a");
    let b = w.launch_hook("i-b", AZ_A, "tok-b");
    // Slow reads, so that the two runs' steps alternate on the slot lock.
    let ec2 = Arc::new(FaultyEc2::new(w.ec2.clone()));
    ec2.gate()
        .delay("DescribeInstances", Duration::from_millis(50));
    let (wa, wb) = (w.launch_work_on(ec2.clone()), w.launch_work_on(ec2.clone()));
    let driver = w.shared_driver();

    let (out_a, out_b) = tokio::join!(
        driver.run(&a, &wa, Duration::ZERO, w.no_shutdown()),
        driver.run(&b, &wb, Duration::ZERO, w.no_shutdown()),
    );

    let labels = [out_a.label(), out_b.label()];
    assert!(
        labels.contains(&"continue") && labels.contains(&"abandon"),
        "{labels:?}"
    );
    let winner = if out_a.label() == "continue" {
        "i-a"
    } else {
        "i-b"
    };
    assert_eq!(w.volumes_of("data").len(), 1, "no second copy");
    let v = w.ec2.volume(&vol).unwrap();
    assert_attached(&v, winner, "/dev/sdf");
    assert_eq!(v.tag(tags::GENERATION), Some("4"), "claimed once");
    assert!(w.ec2.count("CreateTags") <= 4, "{:?}", w.ec2.calls());
    assert_eq!(w.eip_target().as_deref(), Some(winner));
}

/// An AZ storm: the `CreateSnapshot` budget is queued past the bound, so the terminate fences at once
/// without a pre-copy; the launch's final snapshot, taken after the fence, carries the last write.
#[tokio::test(start_paused = true)]
async fn a_storm_skips_the_pre_copy_and_the_final_snapshot_still_holds_the_last_write() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let old = w.in_service("i-old", AZ_A, 2, "tok-first-boot").remove(0);
    w.ec2.associate_address(EIP, "i-old").await.unwrap();
    let writer = spawn_writer(&w.ec2, "i-old");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // One CreateSnapshot queued: the next would wait 100 s, over the 60 s bound.
    let (budget, _queued) = storm_budget(1).await;
    let work = w
        .terminate_work()
        .with_precopy_skip(Some(ferry_snapshot::PrecopySkip {
            budget,
            after: Duration::from_secs(60),
        }));
    let hook = w.terminate_hook("i-old", "tok-term");
    let out = w.run(&hook, &work).await;
    assert!(assert_completed(&out, LifecycleResult::Continue).contains("pre-copy skipped"));
    w.ec2.set_instance_state("i-old", "terminated");
    w.asg_instance("i-old", AZ_A, "Terminated");
    let last = writer.await.unwrap();
    assert!(w.snapshots_of("data").is_empty(), "no pre-copy");

    let hook = w.launch_hook("i-new", AZ_B, "tok-launch");
    let out = w.run(&hook, &w.launch_work()).await;
    assert_completed(&out, LifecycleResult::Continue);
    let snaps = w.snapshots_of("data");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(
        (snaps[0].volume_id.as_str(), snaps[0].tag(tags::REASON)),
        (old.as_str(), Some("final"))
    );
    let v = made_by(&w, "data", "i-new");
    assert_eq!(
        v.content, last,
        "the replacement holds the last acknowledged write"
    );
    assert_eq!(v.availability_zone, AZ_B);
    assert_attached(&v, "i-new", "/dev/sdf");
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
}
