//! Launch hook executor tests on the in-memory fakes with paused time: first boot, fast path, refusals.

mod common;

use common::*;
use ferry_snapshot::fake::{ledger_tags, FailMode, Timings};
use ferry_snapshot::Addresses;
use ferry_state_machine::observe::{SnapshotState, VolumeState};
use ferry_state_machine::{tags, LifecycleResult};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn first_boot_creates_an_empty_volume_attaches_it_and_moves_the_eip() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let hook = w.launch_hook("i-new", AZ_B, "tok-launch-1");

    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    let vols = w.volumes_of("data");
    assert_eq!(vols.len(), 1, "{vols:?}");
    let v = &vols[0];
    assert_eq!(v.availability_zone, AZ_B);
    assert_eq!(v.snapshot_id, None, "first boot restores nothing");
    assert_eq!(
        (
            v.size_gib,
            v.volume_type.as_str(),
            v.iops,
            v.throughput,
            v.encrypted
        ),
        (20, "gp3", Some(4000), Some(250), true),
        "the configured spec"
    );
    assert!(
        v.client_token
            .as_ref()
            .is_some_and(|t| !t.is_empty() && t.len() <= 64),
        "{:?}",
        v.client_token
    );
    assert_eq!(v.tag(tags::GROUP), Some(GROUP));
    assert_eq!(v.tag(tags::SLOT), Some("0"));
    assert_eq!(v.tag(tags::GENERATION), Some("1"));
    assert_eq!(v.tag(tags::HOOK), Some(hook.ledger_key().as_str()));
    assert_eq!(v.tag(tags::SOURCE_SNAPSHOT), None);
    assert_attached(v, "i-new", "/dev/sdf");

    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    let inst = w.ec2.instance("i-new").unwrap();
    assert_eq!(inst.tag("ferry:attached:data"), Some(v.id.as_str()));
    assert_eq!(inst.tag(tags::GROUP), Some(GROUP));

    assert_eq!(w.ec2.count("CreateVolume"), 1);
    assert_eq!(w.ec2.count("AttachVolume"), 1);
    assert_eq!(w.ec2.count("AssociateAddress"), 1);
    assert_eq!(
        w.ec2.count("CreateSnapshot") + w.ec2.count("CreateSnapshots"),
        0
    );
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn first_boot_of_two_volumes_continues_only_with_both_attached() {
    let w = World::new(two_volumes());
    w.ec2.set_timings(timings());
    let hook = w.launch_hook("i-new", AZ_A, "tok-launch-1");

    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    let inst = w.ec2.instance("i-new").unwrap();
    for (logical, device) in [("data", "/dev/sdf"), ("wal", "/dev/sdg")] {
        let vols = w.volumes_of(logical);
        assert_eq!(vols.len(), 1, "{logical}: {vols:?}");
        assert_eq!(vols[0].tag(tags::GENERATION), Some("1"));
        assert_eq!(vols[0].availability_zone, AZ_A);
        assert_attached(&vols[0], "i-new", device);
        assert_eq!(
            inst.tag(&format!("ferry:attached:{logical}")),
            Some(vols[0].id.as_str())
        );
    }
    assert_ne!(
        w.volumes_of("data")[0].client_token,
        w.volumes_of("wal")[0].client_token,
        "each logical volume has its own ClientToken"
    );
    assert_eq!(w.ec2.count("CreateVolume"), 2);
    assert_eq!(w.ec2.count("AttachVolume"), 2);
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn a_detached_volume_in_the_same_az_is_claimed_not_restored() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    // The previous instance is gone; its volume (generation 3) waits detached in AZ a, next to its final snapshot.
    let old = w
        .ec2
        .add_volume(AZ_A, 20, &ledger("data", 3, "tok-old-launch"));
    let mut snap_tags = ledger("data", 3, "tok-old-terminate");
    snap_tags.push((tags::REASON.into(), "final".into()));
    let snap = w
        .ec2
        .put_snapshot(&old, 20, SnapshotState::Completed, &snap_tags);
    let hook = w.launch_hook("i-new", AZ_A, "tok-launch-2");

    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(
        w.ec2.count("CreateVolume"),
        0,
        "the fast path restores nothing"
    );
    let vols = w.volumes_of("data");
    assert_eq!(vols.len(), 1);
    let v = &vols[0];
    assert_eq!(v.id, old);
    assert_eq!(
        v.tag(tags::GENERATION),
        Some("4"),
        "claiming bumps the generation"
    );
    assert_eq!(v.tag(tags::HOOK), Some(hook.ledger_key().as_str()));
    assert_attached(v, "i-new", "/dev/sdf");
    assert_eq!(
        w.ec2.snapshot(&snap).unwrap().tag(tags::GENERATION),
        Some("3"),
        "the old snapshot is untouched"
    );
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn with_only_snapshots_left_the_final_one_of_the_newest_generation_is_restored() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    // The volumes are gone (deleted by retention); three snapshots remain.
    let snap = |generation: u64, reason: &str| {
        let mut t = ledger("data", generation, &format!("tok-{reason}-{generation}"));
        t.push((tags::REASON.into(), reason.into()));
        w.ec2
            .put_snapshot("vol-gone", 20, SnapshotState::Completed, &t)
    };
    let older = snap(1, "final");
    let final_2 = snap(2, "final");
    let manual_2 = snap(2, "manual");
    let hook = w.launch_hook("i-new", AZ_C, "tok-launch-3");

    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    let made: Vec<_> = w.volumes_of("data");
    assert_eq!(made.len(), 1);
    let v = &made[0];
    assert_eq!(
        v.snapshot_id.as_deref(),
        Some(final_2.as_str()),
        "not {older} nor the manual {manual_2}"
    );
    assert_eq!(v.availability_zone, AZ_C);
    assert_eq!(v.tag(tags::GENERATION), Some("3"));
    assert_eq!(v.tag(tags::SOURCE_SNAPSHOT), Some(final_2.as_str()));
    assert_eq!(v.tag(tags::SOURCE_VOLUME), Some("vol-gone"));
    assert_attached(v, "i-new", "/dev/sdf");
}

#[tokio::test(start_paused = true)]
async fn launch_before_terminate_waits_then_abandons_without_forking_the_data() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let old = w.in_service("i-old", AZ_A, 5, "tok-old-launch");
    w.ec2.associate_address(EIP, "i-old").await.unwrap();
    let hook = w.launch_hook("i-new", AZ_B, "tok-launch-4");
    w.ec2.clear_calls();

    let began = Instant::now();
    let out = w.run(&hook, &w.launch_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Abandon);
    assert!(reason.contains("launch-before-terminate"), "{reason}");
    assert!(
        began.elapsed() >= STAYING_TIMEOUT,
        "waited only {:?}",
        began.elapsed()
    );
    assert!(
        w.asg.heartbeats("tok-launch-4") >= 3,
        "heartbeats while waiting"
    );
    for op in [
        "CreateVolume",
        "AttachVolume",
        "CreateSnapshot",
        "CreateSnapshots",
        "CreateTags",
        "AssociateAddress",
    ] {
        assert_eq!(w.ec2.count(op), 0, "{op}");
    }
    assert_eq!(w.volumes_of("data").len(), 1, "no second copy");
    assert_attached(&w.ec2.volume(&old[0]).unwrap(), "i-old", "/dev/sdf");
    assert!(w.data_attached_to("i-new").is_empty());
    assert_eq!(w.eip_target().as_deref(), Some("i-old"));
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Abandon]);
}

#[tokio::test(start_paused = true)]
async fn an_older_generation_attached_to_the_new_instance_is_refused() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    w.ec2.add_instance("i-new", AZ_A);
    let stale =
        w.ec2
            .add_attached_volume("i-new", "/dev/sdf", 20, &ledger("data", 1, "tok-ancient"));
    let mut t = ledger_tags(GROUP, 0, "data", 2);
    t.push((tags::REASON.into(), "final".into()));
    w.ec2
        .put_snapshot("vol-elsewhere", 20, SnapshotState::Completed, &t);
    w.asg_instance("i-new", AZ_A, "Pending:Wait");
    w.asg.open_action(GROUP, "launch", "i-new", "tok-launch-5");
    let hook = hook(
        "i-new",
        "tok-launch-5",
        ferry_state_machine::Transition::Launching,
    );

    let out = w.run(&hook, &w.launch_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Abandon);
    assert!(reason.contains("stale"), "{reason}");
    assert_eq!(w.ec2.count("CreateVolume"), 0);
    assert_eq!(w.ec2.count("AssociateAddress"), 0);
    assert_eq!(
        w.eip_target(),
        None,
        "the address does not move to an instance with stale data"
    );
    assert_eq!(
        w.ec2.instance("i-new").unwrap().tag("ferry:attached:data"),
        None
    );
    assert_eq!(
        w.ec2.volume(&stale).unwrap().tag(tags::GENERATION),
        Some("1")
    );
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Abandon]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_restore_is_waited_for_with_heartbeats() {
    let w = World::new(one_volume());
    // A large restore: the volume stays `creating` for 20 minutes.
    w.ec2.set_timings(Timings {
        volume_create: std::time::Duration::from_secs(1200),
        ..timings()
    });
    let mut t = ledger("data", 7, "tok-old-terminate");
    t.push((tags::REASON.into(), "final".into()));
    let snap = w
        .ec2
        .put_snapshot("vol-old", 20, SnapshotState::Completed, &t);
    let hook = w.launch_hook("i-new", AZ_B, "tok-launch-6");

    let began = Instant::now();
    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert!(began.elapsed() >= std::time::Duration::from_secs(1200));
    let beats = w.asg.heartbeats("tok-launch-6");
    assert!(
        (7..=9).contains(&beats),
        "{beats} heartbeats in {:?}",
        began.elapsed()
    );
    let v = &w.volumes_of("data")[0];
    assert_eq!(v.snapshot_id.as_deref(), Some(snap.as_str()));
    assert_eq!(v.state, VolumeState::InUse);
    assert_eq!(w.ec2.count("CreateVolume"), 1);
    assert!(
        w.ec2.count("DescribeVolumes") < 200,
        "the poll backs off: {}",
        w.ec2.count("DescribeVolumes")
    );
}

#[tokio::test(start_paused = true)]
async fn a_stuck_manual_snapshot_does_not_hold_up_the_final_one() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    // The volume is gone; its final snapshot completed, and an on-demand one of the same generation hangs.
    w.ec2.fail_snapshots_of("vol-gone", FailMode::Stuck);
    let tagged = |reason: &str| {
        let mut t = ledger("data", 2, &format!("tok-{reason}"));
        t.push((tags::REASON.into(), reason.into()));
        t
    };
    let final_2 = w
        .ec2
        .put_snapshot("vol-gone", 20, SnapshotState::Completed, &tagged("final"));
    let manual = w
        .ec2
        .put_snapshot("vol-gone", 20, SnapshotState::Pending, &tagged("manual"));
    let hook = w.launch_hook("i-new", AZ_B, "tok-launch-7");

    let began = Instant::now();
    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert!(
        began.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        began.elapsed()
    );
    let v = &w.volumes_of("data")[0];
    assert_eq!(
        v.snapshot_id.as_deref(),
        Some(final_2.as_str()),
        "not the pending {manual}"
    );
    assert_eq!(v.tag(tags::GENERATION), Some("3"));
    assert_attached(v, "i-new", "/dev/sdf");
}
