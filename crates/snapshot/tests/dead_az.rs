//! The dead-AZ paths of the hook executors on the fakes, in virtual time: a launch whose source hangs under
//! `wait` and `restore-latest`, the terminate's bound under restore-latest, and a terminate that cannot
//! take the data off.
#![allow(clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ferry_snapshot::fake::FailMode;
use ferry_snapshot::{GroupSpec, Snapshots, SourceEvents, RESTORED_LATEST};
use ferry_state_machine::observe::SnapshotState;
use ferry_state_machine::{tags, AttachedData, LifecycleResult};

/// What the source policy told.
#[derive(Default)]
struct Heard(Mutex<Vec<String>>);

impl SourceEvents for Heard {
    fn source_unreachable(&self, group: &str, instance: &str, policy: &str, _waited: Duration) {
        self.push(format!("unreachable {group} {instance} {policy}"));
    }
    fn restored_latest(
        &self,
        group: &str,
        slot: u32,
        instance: &str,
        loss: u64,
        attached: &[AttachedData],
    ) {
        self.push(format!(
            "restored {group}/{slot} {instance} {loss}s {}",
            attached.len()
        ));
    }
}

impl Heard {
    fn push(&self, s: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn restore_latest() -> GroupSpec {
    GroupSpec {
        restore_latest: true,
        ..one_volume()
    }
}

/// The old instance in AZ a, gone into `shutting-down` with its volume still attached (its AZ is down),
/// with recovery points at +0 s and +300 s (completed) and +600 s (pending for ever); returns the old
/// volume and the ids of the points.
async fn hung_source(w: &World) -> (String, Vec<String>) {
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 4, "i-old/launch");
    let mut points = Vec::new();
    for (i, state) in [
        SnapshotState::Completed,
        SnapshotState::Completed,
        SnapshotState::Pending,
    ]
    .into_iter()
    .enumerate()
    {
        w.ec2
            .write(&vols[0], 100 * (i as u64 + 1))
            .expect("the volume is writable");
        if state == SnapshotState::Pending {
            w.ec2.fail_snapshots_of(&vols[0], FailMode::Stuck);
        }
        let mut t = ledger("data", 4, "i-old/recovery");
        t.push((tags::REASON.into(), "recovery".into()));
        t.push((tags::SET.into(), format!("i-old/recovery/{i}")));
        let id = w
            .ec2
            .create_snapshot(&vols[0], "recovery point", &t)
            .await
            .expect("snapshot");
        points.push(id);
        tokio::time::advance(Duration::from_secs(300)).await;
    }
    w.ec2.set_instance_state("i-old", "shutting-down");
    w.asg_instance("i-old", AZ_A, "Terminating:Proceed");
    (vols[0].clone(), points)
}

#[tokio::test(start_paused = true)]
async fn restore_latest_restores_the_newest_completed_point_after_its_bound() {
    let w = World::new(restore_latest());
    let (old, points) = hung_source(&w).await;
    let heard = Arc::new(Heard::default());
    let hook = w.launch_hook("i-new", AZ_B, "tok-new");
    let work = w.launch_work().with_events(heard.clone());

    let began = tokio::time::Instant::now();
    let out = w.run(&hook, &work).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(reason.contains(RESTORED_LATEST), "{reason}");
    assert!(
        began.elapsed() >= w.group.restore_latest_after,
        "not before the bound: {:?}",
        began.elapsed()
    );
    let mine = w.data_attached_to("i-new");
    assert_eq!(mine.len(), 1);
    let v = &mine[0];
    assert_eq!(v.availability_zone, AZ_B);
    assert_eq!(
        v.tag(tags::GENERATION),
        Some("5"),
        "above the unreachable generation"
    );
    assert_eq!(
        v.tag(tags::SOURCE_SNAPSHOT),
        Some(points[1].as_str()),
        "the newest completed point, not the pending one nor an older one"
    );
    assert_eq!(v.content, 200, "the point's data");
    // From the point's start (+300 s) to the launch's start (+900 s; there was no terminate), rounded up.
    assert_eq!(v.tag(tags::LOSS_WINDOW), Some("601"), "{:?}", v.tags);
    assert_eq!(
        w.ec2
            .volume(&old)
            .and_then(|o| o.attachment)
            .map(|a| a.instance_id),
        Some("i-old".to_string()),
        "the superseded copy is left alone"
    );
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    let heard = heard.all();
    assert_eq!(
        heard
            .iter()
            .filter(|h| h.starts_with(&format!("restored {GROUP}/0 i-new ")))
            .count(),
        1,
        "one restore, of slot 0: {heard:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_never_restores_older_data_and_reports_the_source_once() {
    let w = World::new(one_volume());
    hung_source(&w).await;
    let heard = Arc::new(Heard::default());
    let hook = w.launch_hook("i-new", AZ_B, "tok-new");
    let work = w.launch_work().with_events(heard.clone());

    // It waits, heartbeating, until the hook's global timeout, then abandons: never older data.
    let out = w.run(&hook, &work).await;

    let reason = assert_completed(&out, LifecycleResult::Abandon);
    assert!(reason.contains("global timeout"), "{reason}");
    assert!(w.data_attached_to("i-new").is_empty());
    assert!(
        w.volumes_of("data")
            .iter()
            .all(|v| v.availability_zone == AZ_A),
        "nothing restored in b"
    );
    assert!(w.asg.heartbeats("tok-new") >= 50);
    assert_eq!(heard.all(), vec![format!("unreachable {GROUP} i-new wait")]);
}

#[tokio::test(start_paused = true)]
async fn under_restore_latest_the_terminate_gives_up_its_pre_copy_at_the_bound() {
    let w = World::new(GroupSpec {
        restore_latest_after: Duration::from_secs(600),
        snapshot_timeout: Duration::from_secs(3600),
        ..restore_latest()
    });
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 4, "i-old/launch");
    w.ec2.fail_snapshots_of(&vols[0], FailMode::Stuck);
    let hook = w.terminate_hook("i-old", "tok-term");

    let began = tokio::time::Instant::now();
    let out = w.run(&hook, &w.terminate_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(600) && took < Duration::from_secs(700),
        "{took:?}"
    );
    let pre = &w.snapshots_of("data")[0];
    assert_eq!(pre.tag(tags::SET), Some("i-old/terminate"));
    assert!(pre.tag(tags::ACTION_STARTED).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_volume_deleted_with_its_instance_makes_the_terminate_abandon_under_wait() {
    for (group, want) in [
        (one_volume(), LifecycleResult::Abandon),
        (restore_latest(), LifecycleResult::Continue),
    ] {
        let w = World::new(group);
        w.ec2.set_timings(timings());
        let vols = w.in_service("i-old", AZ_A, 4, "i-old/launch");
        w.ec2.set_delete_on_termination(&vols[0], true);
        let hook = w.terminate_hook("i-old", "tok-term");

        let out = w.run(&hook, &w.terminate_work()).await;

        let reason = assert_completed(&out, want);
        assert!(reason.contains("DeleteOnTermination"), "{reason}");
        assert_eq!(
            w.snapshots_of("data")[0].state,
            SnapshotState::Completed,
            "the pre-copy is taken first"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_volume_deleted_with_its_instance_is_restored_from_the_pre_copy_after_the_bound() {
    // Under restore-latest the terminate continues; the volume dies with the instance; the launch finds
    // only the pre-copy, waits for its bound, restores it, and the loss window runs to the fence.
    let w = World::new(restore_latest());
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 4, "i-old/launch");
    w.ec2.set_delete_on_termination(&vols[0], true);
    let term = w.terminate_hook("i-old", "tok-term");
    let out = w.run(&term, &w.terminate_work()).await;
    assert_completed(&out, LifecycleResult::Continue);
    let pre = w.snapshots_of("data")[0].clone();
    assert!(
        pre.tag(tags::FENCED_AT).is_some(),
        "the fence is recorded: {:?}",
        pre.tags
    );
    w.ec2.detach_for_test(&vols[0]);
    ferry_snapshot::Volumes::delete_volume(&w.ec2, &vols[0])
        .await
        .expect("deleted with the instance");
    w.ec2.set_instance_state("i-old", "terminated");
    w.asg_instance("i-old", AZ_A, "Terminated");

    let hook = w.launch_hook("i-new", AZ_B, "tok-new");
    let began = tokio::time::Instant::now();
    let out = w.run(&hook, &w.launch_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(reason.contains(RESTORED_LATEST), "{reason}");
    assert!(
        began.elapsed() >= w.group.restore_latest_after,
        "waited for the bound"
    );
    let mine = w.data_attached_to("i-new");
    assert_eq!(mine[0].tag(tags::SOURCE_SNAPSHOT), Some(pre.id.as_str()));
    let fenced: i64 = pre
        .tag(tags::FENCED_AT)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let want = (fenced - pre.start_time + 1).to_string();
    assert_eq!(mine[0].tag(tags::LOSS_WINDOW), Some(want.as_str()));
}
