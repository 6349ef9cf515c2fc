//! The lifecycle paths beside the plain failover, on the fakes: a warm-pool fill and return, a root-volume
//! replacement, and the launch-before-terminate handover. Each is proven by the data the workload last
//! acknowledged, where the volumes are, and which calls were made.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ferry_snapshot::{Addresses, Instances, RootVolumeWork, WarmPoolWork};
use ferry_state_machine::observe::VolumeState;
use ferry_state_machine::{tags, GroupInfo, GroupInstance, LifecycleResult, Place, Transition};

fn warm_pool_work(w: &World) -> WarmPoolWork {
    WarmPoolWork::new(Arc::new(w.ec2.clone()), w.group.clone())
}

#[tokio::test(start_paused = true)]
async fn a_warm_pool_fill_gets_no_data_and_no_address() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    w.ec2.add_instance("i-warm", AZ_A);
    w.asg_instance("i-warm", AZ_A, "Warmed:Pending:Wait");
    w.asg.open_action(GROUP, "launch", "i-warm", "tok-fill");
    let mut hook = hook("i-warm", "tok-fill", Transition::Launching);
    (hook.origin, hook.destination) = (Some(Place::Ec2), Some(Place::WarmPool));

    let out = w.run(&hook, &warm_pool_work(&w)).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(reason.contains("warm pool"), "{reason}");
    assert!(w.ec2.volumes().iter().all(|v| v.tag(tags::GROUP).is_none()));
    assert_eq!(w.eip_target(), None);
    for call in [
        "CreateVolume",
        "AttachVolume",
        "StopInstances",
        "CreateSnapshot",
    ] {
        assert_eq!(w.ec2.count(call), 0, "{call}: {:?}", w.ec2.calls());
    }
}

/// An instance in service with the data and the address, going back to the pool while its workload
/// writes. Returns the volume and the last acknowledged write.
async fn return_to_pool(w: &World) -> (String, u64) {
    let vol = w.in_service("i-old", AZ_A, 3, "tok-first").remove(0);
    w.ec2.associate_address(EIP, "i-old").await.unwrap();
    let attached = vec![("ferry:attached:data".to_string(), vol.clone())];
    w.ec2.tag_instance("i-old", &attached).await.unwrap();
    let writer = spawn_writer(&w.ec2, "i-old");
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.asg_instance("i-old", AZ_A, "Warmed:Pending:Wait");
    w.asg.open_action(GROUP, "terminate", "i-old", "tok-return");
    let mut hook = hook("i-old", "tok-return", Transition::Terminating);
    (hook.origin, hook.destination) = (Some(Place::AutoScalingGroup), Some(Place::WarmPool));

    let out = w.run(&hook, &warm_pool_work(w)).await;

    assert_completed(&out, LifecycleResult::Continue);
    let last = writer.await.unwrap();
    assert!(last > 0, "the workload wrote");
    (vol, last)
}

#[tokio::test(start_paused = true)]
async fn a_return_to_the_warm_pool_stops_the_instance_and_takes_data_and_address_off() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let (vol, last) = return_to_pool(&w).await;

    assert_eq!(
        w.ec2.instance("i-old").unwrap().state,
        "stopped",
        "the fence"
    );
    let v = w.ec2.volume(&vol).unwrap();
    assert_eq!(v.state, VolumeState::Available, "detached into the ledger");
    assert_eq!(
        v.content, last,
        "the volume holds the last acknowledged write"
    );
    assert_eq!(
        v.tag(tags::GENERATION),
        Some("3"),
        "the ledger is untouched"
    );
    assert_eq!(w.eip_target(), None, "the address is off the warm instance");
    let tag = w
        .ec2
        .instance("i-old")
        .unwrap()
        .tag("ferry:attached:data")
        .map(str::to_string);
    assert_eq!(
        tag.as_deref(),
        Some("none"),
        "the volume-wait helper will not wait for the old volume"
    );
    assert_eq!(
        w.ec2.count("CreateSnapshot") + w.ec2.count("CreateSnapshots"),
        0
    );
    assert_eq!(w.results_of("i-old"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn after_a_return_the_next_launch_gets_every_write_in_either_az() {
    for az in [AZ_A, AZ_B] {
        let w = World::new(one_volume());
        w.ec2.set_timings(timings());
        let (vol, last) = return_to_pool(&w).await;

        let hook = w.launch_hook("i-new", az, "tok-launch");
        let out = w.run(&hook, &w.launch_work()).await;

        assert_completed(&out, LifecycleResult::Continue);
        let on_new = w.data_attached_to("i-new");
        assert_eq!(on_new.len(), 1, "{az}");
        assert_eq!(on_new[0].content, last, "{az}: every acknowledged write");
        assert_eq!(on_new[0].tag(tags::GENERATION), Some("4"), "{az}");
        if az == AZ_A {
            assert_eq!(on_new[0].id, vol, "same AZ: the volume itself (fast path)");
        } else {
            assert_eq!(on_new[0].tag(tags::SOURCE_VOLUME), Some(vol.as_str()));
        }
        assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_root_volume_replacement_moves_nothing_and_takes_one_recovery_point() {
    let w = World::new(two_volumes());
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-db", AZ_A, 2, "tok-first");
    w.ec2.associate_address(EIP, "i-db").await.unwrap();
    w.ec2.write_instance("i-db", 41).unwrap();
    w.asg_instance("i-db", AZ_A, "ReplacingRootVolume:Wait");
    w.asg.open_action(GROUP, "terminate", "i-db", "tok-root");
    let mut stop = hook("i-db", "tok-root", Transition::Terminating);
    stop.action = Some("ReplaceRootVolume".into());
    let work = RootVolumeWork::new(Arc::new(w.ec2.clone()), w.group.clone());

    let out = w.run(&stop, &work).await;
    // A redelivery of the same action takes no second recovery point.
    w.asg.open_action(GROUP, "terminate", "i-db", "tok-root");
    let again = w.run(&stop, &work).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(reason.contains("nothing moved"), "{reason}");
    assert_completed(&again, LifecycleResult::Continue);
    let snaps: Vec<_> = w.ec2.snapshots();
    assert_eq!(snaps.len(), 2, "one crash-consistent set of both volumes");
    assert!(snaps.iter().all(|s| s.tag(tags::REASON) == Some("recovery")
        && s.tag(tags::HOOK) == Some("i-db/root-volume")
        && s.content == 41));
    assert_eq!(w.ec2.count("CreateSnapshots"), 1);

    // The launch half: the same instance, its data still attached.
    w.ec2.write_instance("i-db", 42).unwrap();
    w.asg_instance("i-db", AZ_A, "Pending:Wait");
    w.asg.open_action(GROUP, "launch", "i-db", "tok-root-boot");
    let mut boot = hook("i-db", "tok-root-boot", Transition::Launching);
    boot.action = Some("ReplaceRootVolume".into());
    let out = w.run(&boot, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    for (v, dev) in vols.iter().zip(["/dev/sdf", "/dev/sdg"]) {
        let v = w.ec2.volume(v).unwrap();
        assert_attached(&v, "i-db", dev);
        assert_eq!((v.content, v.tag(tags::GENERATION)), (42, Some("2")));
    }
    for call in [
        "CreateVolume",
        "DetachVolume",
        "AttachVolume",
        "StopInstances",
    ] {
        assert_eq!(w.ec2.count(call), 0, "{call}: {:?}", w.ec2.calls());
    }
    assert_eq!(w.eip_target().as_deref(), Some("i-db"));
}

/// The group as Auto Scaling shows it during a launch-before-terminate: the old instance in service, the new
/// one launching, desired 1 and the maintenance policy `policy`.
fn launch_before_terminate(w: &World, policy: Option<(i32, i32)>) {
    let members = ["i-old", "i-new"].map(|id| w.asg.instance(id).expect("known"));
    w.asg.put_group(GroupInfo {
        name: GROUP.into(),
        availability_zones: vec![AZ_A.into(), AZ_B.into()],
        instances: members.to_vec(),
        capacity: (1, 2, 1),
        maintenance_policy: policy,
        ..GroupInfo::default()
    });
}

#[tokio::test(start_paused = true)]
async fn handover_under_a_refresh_fences_the_old_instance_and_takes_every_write() {
    for az in [AZ_A, AZ_B] {
        let mut group = one_volume();
        group.handover = true;
        let w = World::new(group);
        w.ec2.set_timings(timings());
        let old = w.in_service("i-old", AZ_A, 1, "tok-first").remove(0);
        w.ec2.associate_address(EIP, "i-old").await.unwrap();
        let writer = spawn_writer(&w.ec2, "i-old");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let hook = w.launch_hook("i-new", az, "tok-launch");
        launch_before_terminate(&w, None);
        w.asg.set_refreshing(GROUP, true);

        let out = w.run(&hook, &w.launch_work()).await;

        assert_completed(&out, LifecycleResult::Continue);
        let last = writer.await.unwrap();
        assert_eq!(
            w.ec2.instance("i-old").unwrap().state,
            "stopped",
            "{az}: fenced"
        );
        let on_new = w.data_attached_to("i-new");
        assert_eq!(on_new.len(), 1);
        assert_eq!(on_new[0].content, last, "{az}: the last acknowledged write");
        assert!(
            w.data_attached_to("i-old").is_empty(),
            "{az}: one copy attached"
        );
        assert_eq!(
            on_new[0].id == old,
            az == AZ_A,
            "{az}: same AZ reattaches the volume"
        );
        assert_eq!(w.eip_target().as_deref(), Some("i-new"));
        assert_eq!(w.ec2.count("StopInstances"), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn handover_follows_a_launch_first_maintenance_policy_over_desired_capacity() {
    let mut group = one_volume();
    group.handover = true;
    let w = World::new(group);
    w.ec2.set_timings(timings());
    w.in_service("i-old", AZ_A, 1, "tok-first");
    let hook = w.launch_hook("i-new", AZ_A, "tok-launch");
    launch_before_terminate(&w, Some((100, 200)));

    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(w.ec2.instance("i-old").unwrap().state, "stopped");
    assert_eq!(w.data_attached_to("i-new").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn handover_never_fences_an_instance_auto_scaling_is_not_replacing() {
    // Handover on, but no refresh and no launch-first policy; and a refresh, but handover off (the default).
    for (handover, refreshing) in [(true, false), (false, true)] {
        let mut group = one_volume();
        group.handover = handover;
        let w = World::new(group);
        w.ec2.set_timings(timings());
        let old = w.in_service("i-old", AZ_A, 1, "tok-first").remove(0);
        let hook = w.launch_hook("i-new", AZ_A, "tok-launch");
        launch_before_terminate(&w, Some((100, 100)));
        w.asg.set_refreshing(GROUP, refreshing);

        let out = w.run(&hook, &w.launch_work()).await;

        let reason = assert_completed(&out, LifecycleResult::Abandon);
        assert!(reason.contains("launch-before-terminate"), "{reason}");
        assert_eq!(w.ec2.instance("i-old").unwrap().state, "running");
        assert_attached(&w.ec2.volume(&old).unwrap(), "i-old", "/dev/sdf");
        assert_eq!(w.ec2.count("StopInstances"), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn paused_at_zero_the_parked_data_gets_its_final_snapshot_once() {
    use ferry_snapshot::{RecoveryPoints, RoundOutcome};
    let w = World::new(two_volumes());
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 4, "tok-first");
    w.ec2.write_instance("i-old", 77).unwrap();
    w.ec2.set_instance_state("i-old", "terminated"); // the scale-in's fence: the volumes detach
    tokio::time::sleep(Duration::from_secs(5)).await;
    let points = RecoveryPoints::new(
        Arc::new(w.ec2.clone()),
        Arc::new(w.asg.clone()),
        w.group.clone(),
    );
    let group = |desired, instances: Vec<_>| GroupInfo {
        name: GROUP.into(),
        instances,
        capacity: (0, 1, desired),
        ..GroupInfo::default()
    };

    // A failover's gap (desired 1): the launch takes its own final delta; nothing here.
    w.asg.put_group(group(1, Vec::new()));
    let r = points.round().await.unwrap();
    assert!(
        matches!(r.outcome, RoundOutcome::Idle(_)),
        "{:?}",
        r.outcome
    );
    assert!(w.ec2.snapshots().is_empty());
    // The same gap while Auto Scaling still lists the leaving instance and not yet its replacement: no
    // member stays, so an instance is owed, and its launch takes the final delta.
    let leaving = GroupInstance {
        instance_id: "i-old".into(),
        group: GROUP.into(),
        availability_zone: AZ_A.into(),
        lifecycle_state: "Terminating:Proceed".into(),
        health_status: "Healthy".into(),
    };
    w.asg.put_group(group(1, vec![leaving]));
    let r = points.round().await.unwrap();
    assert!(
        matches!(r.outcome, RoundOutcome::Idle(_)),
        "{:?}",
        r.outcome
    );
    assert!(w.ec2.snapshots().is_empty());

    w.asg.put_group(group(0, Vec::new()));
    let r = points.round().await.unwrap();
    let RoundOutcome::Parked(made) = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!(made.len(), 2);
    for (snap, vol) in &made {
        let s = w.ec2.snapshot(snap).unwrap();
        assert!(vols.contains(vol));
        assert_eq!(s.tag(tags::REASON), Some("final"));
        assert_eq!(s.tag(tags::GENERATION), Some("4"));
        assert_eq!(s.tag(tags::HOOK), Some(format!("parked/{vol}").as_str()));
        assert_eq!(s.content, 77, "the last acknowledged write");
    }
    // The next round finds them: no second set.
    let r = points.round().await.unwrap();
    assert!(
        !matches!(r.outcome, RoundOutcome::Parked(_)),
        "{:?}",
        r.outcome
    );
    assert_eq!(w.ec2.snapshots().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_instance_back_from_the_warm_pool_terminates_with_a_pre_copy_of_its_own() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    w.in_service("i-old", AZ_A, 2, "tok-first");
    // Its earlier terminate's pre-copy, under the same ledger key, two hours ago.
    let earlier = w.terminate_hook("i-old", "tok-term-1");
    assert_completed(
        &w.run(&earlier, &w.terminate_work()).await,
        LifecycleResult::Continue,
    );
    w.asg_instance("i-old", AZ_A, "InService");
    tokio::time::sleep(Duration::from_secs(7200)).await;
    w.ec2.write_instance("i-old", 9).unwrap();

    let again = w.terminate_hook("i-old", "tok-term-2");
    let reason = assert_completed(
        &w.run(&again, &w.terminate_work()).await,
        LifecycleResult::Continue,
    );

    assert!(reason.contains("pre-copy completed"), "{reason}");
    let snaps = w.snapshots_of("data");
    assert_eq!(snaps.len(), 2, "a fresh pre-copy, not the old one");
    assert_eq!(snaps[1].content, 9);
}
