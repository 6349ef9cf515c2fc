//! Terminate hook executor tests on the in-memory fakes with paused time: snapshots, heartbeats, degraded ends.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use ferry_snapshot::fake::{FailMode, FakeEc2, Timings};
use ferry_snapshot::{
    Addresses, Instances, NewVolume, PrecopySkip, SnapshotQuery, Snapshots, Tag, TerminateWork,
    VolumeQuery, Volumes,
};
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume, SnapshotState,
};
use ferry_state_machine::{tags, LifecycleResult, StepError};
use tokio::time::Instant;

/// Snapshots that take 20 minutes: eight heartbeat intervals of 150 s.
fn slow_snapshots() -> Timings {
    Timings {
        snapshot: Duration::from_secs(1200),
        ..timings()
    }
}

#[tokio::test(start_paused = true)]
async fn terminate_snapshots_the_attached_volume_and_heartbeats_until_it_completes() {
    let w = World::new(one_volume());
    w.ec2.set_timings(slow_snapshots());
    let vols = w.in_service("i-old", AZ_A, 3, "tok-old-launch");
    let hook = w.terminate_hook("i-old", "tok-term-1");

    let began = Instant::now();
    let out = w.run(&hook, &w.terminate_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(reason.contains("completed"), "{reason}");
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(1200),
        "completed before the snapshot: {waited:?}"
    );
    let beats = w.asg.heartbeats("tok-term-1");
    assert!((7..=9).contains(&beats), "{beats} heartbeats in {waited:?}");

    let snaps = w.snapshots_of("data");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let s = &snaps[0];
    assert_eq!(s.volume_id, vols[0]);
    assert_eq!(s.state, SnapshotState::Completed);
    assert_eq!(s.size_gib, 20);
    assert_eq!(s.tag(tags::GROUP), Some(GROUP));
    assert_eq!(s.tag(tags::SLOT), Some("0"));
    assert_eq!(s.tag(tags::VOLUME), Some("data"));
    assert_eq!(
        s.tag(tags::GENERATION),
        Some("3"),
        "the generation is copied from the volume"
    );
    assert_eq!(s.tag(tags::HOOK), Some(hook.ledger_key().as_str()));
    assert_eq!(s.tag(tags::REASON), Some("precopy"));

    assert_eq!(w.ec2.count("CreateSnapshot"), 1);
    assert_eq!(w.ec2.count("CreateSnapshots"), 0);
    assert_eq!(w.ec2.count("CreateVolume") + w.ec2.count("DetachVolume"), 0);
    assert_attached(&w.ec2.volume(&vols[0]).unwrap(), "i-old", "/dev/sdf");
    assert_eq!(w.results_of("i-old"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn two_volumes_are_snapshotted_in_one_crash_consistent_call() {
    let w = World::new(two_volumes());
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 6, "tok-old-launch");
    // A volume ferry does not manage: it must not be in the set.
    let foreign =
        w.ec2
            .add_attached_volume("i-old", "/dev/sdh", 50, &[("team".into(), "ops".into())]);
    let root = w.ec2.instance("i-old").unwrap().root_volume_id.unwrap();
    let hook = w.terminate_hook("i-old", "tok-term-2");

    let out = w.run(&hook, &w.terminate_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(w.ec2.count("CreateSnapshots"), 1, "{:?}", w.ec2.calls());
    assert_eq!(w.ec2.count("CreateSnapshot"), 0);
    let all = w.ec2.snapshots();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all
        .iter()
        .all(|s| s.volume_id != root && s.volume_id != foreign));
    for (logical, vol) in [("data", &vols[0]), ("wal", &vols[1])] {
        let snaps = w.snapshots_of(logical);
        assert_eq!(snaps.len(), 1, "{logical}");
        let s = &snaps[0];
        assert_eq!(&s.volume_id, vol);
        assert_eq!(s.state, SnapshotState::Completed);
        assert_eq!(s.tag(tags::GENERATION), Some("6"));
        assert_eq!(s.tag(tags::HOOK), Some(hook.ledger_key().as_str()));
        assert_eq!(s.tag(tags::REASON), Some("precopy"));
        assert_eq!(s.tag(tags::GROUP), Some(GROUP));
        assert_eq!(s.tag(tags::SLOT), Some("0"));
    }
    assert_eq!(
        w.snapshots_of("data")[0].start_time,
        w.snapshots_of("wal")[0].start_time,
        "one point in time"
    );
    assert_eq!(w.results_of("i-old"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_snapshot_completes_the_terminate_degraded() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 4, "tok-old-launch");
    w.ec2.fail_snapshots_of(&vols[0], FailMode::Error);
    let hook = w.terminate_hook("i-old", "tok-term-4");

    let out = w.run(&hook, &w.terminate_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(
        reason.contains("degraded") && reason.contains(&vols[0]),
        "{reason}"
    );
    let snaps = w.snapshots_of("data");
    assert_eq!(
        snaps.len(),
        1,
        "failed snapshots are not retaken in a loop: {snaps:?}"
    );
    assert_eq!(snaps[0].state, SnapshotState::Error);
    assert_eq!(w.results_of("i-old"), [LifecycleResult::Continue]);
    assert_eq!(
        w.ec2.volume(&vols[0]).unwrap().tag(tags::GENERATION),
        Some("4"),
        "the volume keeps the data and its generation"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stuck_snapshot_is_given_up_after_the_snapshot_timeout() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 4, "tok-old-launch");
    w.ec2.fail_snapshots_of(&vols[0], FailMode::Stuck);
    let hook = w.terminate_hook("i-old", "tok-term-5");

    let began = Instant::now();
    let out = w.run(&hook, &w.terminate_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(reason.contains("pending"), "{reason}");
    let waited = began.elapsed();
    assert!(waited >= w.group.snapshot_timeout, "{waited:?}");
    assert!(
        waited < w.group.snapshot_timeout + Duration::from_secs(60),
        "{waited:?}"
    );
    assert!(
        w.asg.heartbeats("tok-term-5") >= 20,
        "heartbeats kept the hook alive for an hour"
    );
    assert_eq!(w.ec2.count("CreateSnapshot"), 1);
    assert_eq!(w.snapshots_of("data")[0].state, SnapshotState::Pending);
}

#[tokio::test(start_paused = true)]
async fn an_instance_without_managed_volumes_has_nothing_to_snapshot() {
    let w = World::new(one_volume());
    w.ec2.add_instance("i-bare", AZ_A);
    w.asg_instance("i-bare", AZ_A, "InService");
    // Another group's volume attached to it is not ours.
    let mut other = ferry_snapshot::fake::ledger_tags("asg-other", 0, "data", 9);
    other.push((tags::HOOK.into(), "tok-x".into()));
    w.ec2.add_attached_volume("i-bare", "/dev/sdf", 10, &other);
    let hook = w.terminate_hook("i-bare", "tok-term-6");

    let out = w.run(&hook, &w.terminate_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(reason.contains("nothing to snapshot"), "{reason}");
    assert_eq!(
        w.ec2.count("CreateSnapshot") + w.ec2.count("CreateSnapshots"),
        0
    );
    assert_eq!(w.results_of("i-bare"), [LifecycleResult::Continue]);
}

/// EC2 as moto behaves: `CreateSnapshots` ignores `CopyTagsFromSource`, so only the explicit tags land
/// and the terminate must fill the per-volume ledger tags itself.
struct NoTagCopy {
    ec2: FakeEc2,
    create_snapshots: AtomicUsize,
}

#[async_trait]
impl Volumes for NoTagCopy {
    async fn find_volumes(&self, q: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        self.ec2.find_volumes(q).await
    }
    async fn describe_volumes(&self, ids: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        self.ec2.describe_volumes(ids).await
    }
    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        self.ec2.create_volume(req).await
    }
    async fn attach_volume(&self, v: &str, i: &str, d: &str) -> Result<(), StepError> {
        self.ec2.attach_volume(v, i, d).await
    }
    async fn detach_volume(&self, v: &str, i: &str) -> Result<(), StepError> {
        self.ec2.detach_volume(v, i).await
    }
    async fn delete_volume(&self, v: &str) -> Result<(), StepError> {
        self.ec2.delete_volume(v).await
    }
    async fn tag_volume(&self, v: &str, t: &[Tag]) -> Result<(), StepError> {
        self.ec2.tag_volume(v, t).await
    }
}

#[async_trait]
impl Snapshots for NoTagCopy {
    async fn find_snapshots(&self, q: &SnapshotQuery) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.ec2.find_snapshots(q).await
    }
    async fn describe_snapshots(&self, ids: &[String]) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.ec2.describe_snapshots(ids).await
    }
    async fn create_snapshots(
        &self,
        instance_id: &str,
        exclude: &[String],
        tags: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError> {
        self.create_snapshots.fetch_add(1, Ordering::SeqCst);
        let Some(inst) = self.ec2.instance(instance_id) else {
            return Err(StepError::permanent(
                "ec2:CreateSnapshots",
                "no such instance",
            ));
        };
        let mut out = Vec::new();
        for vol in inst.volume_ids.iter() {
            if Some(vol) != inst.root_volume_id.as_ref() && !exclude.contains(vol) {
                let snap = self.ec2.create_snapshot(vol, "set", tags).await?;
                out.push((snap, vol.clone()));
            }
        }
        Ok(out)
    }
    async fn create_snapshot(&self, v: &str, d: &str, t: &[Tag]) -> Result<String, StepError> {
        self.ec2.create_snapshot(v, d, t).await
    }
    async fn delete_snapshot(&self, s: &str) -> Result<(), StepError> {
        self.ec2.delete_snapshot(s).await
    }
    async fn tag_snapshot(&self, s: &str, t: &[Tag]) -> Result<(), StepError> {
        self.ec2.tag_snapshot(s, t).await
    }
}

#[async_trait]
impl Instances for NoTagCopy {
    async fn describe_instance(&self, i: &str) -> Result<Option<ObservedInstance>, StepError> {
        self.ec2.describe_instance(i).await
    }
    async fn tag_instance(&self, i: &str, t: &[Tag]) -> Result<(), StepError> {
        self.ec2.tag_instance(i, t).await
    }
    async fn stop_instance(&self, i: &str) -> Result<(), StepError> {
        self.ec2.stop_instance(i).await
    }
    fn now_secs(&self) -> i64 {
        self.ec2.now_secs()
    }
}

#[async_trait]
impl Addresses for NoTagCopy {
    async fn describe_address(&self, a: &str) -> Result<Option<ObservedAddress>, StepError> {
        self.ec2.describe_address(a).await
    }
    async fn associate_address(&self, a: &str, i: &str) -> Result<(), StepError> {
        self.ec2.associate_address(a, i).await
    }
    async fn disassociate_address(&self, a: &str, i: &str) -> Result<(), StepError> {
        self.ec2.disassociate_address(a, i).await
    }
}

#[tokio::test(start_paused = true)]
async fn without_tag_copy_the_terminate_fills_the_per_volume_tags_and_a_launch_can_restore() {
    let w = World::new(two_volumes());
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 5, "tok-first-boot");
    let hook = w.terminate_hook("i-old", "tok-term");
    let moto = Arc::new(NoTagCopy {
        ec2: w.ec2.clone(),
        create_snapshots: AtomicUsize::new(0),
    });

    let work = TerminateWork::new(moto.clone(), w.group.clone());
    let out = w.run(&hook, &work).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(
        moto.create_snapshots.load(Ordering::SeqCst),
        1,
        "one crash-consistent call"
    );
    assert_eq!(
        w.ec2.count("CreateTags"),
        2,
        "one CreateTags per snapshot: {:?}",
        w.ec2.calls()
    );
    for ((logical, vol), snap) in ["data", "wal"].iter().zip(&vols).zip(w.ec2.snapshots()) {
        assert_eq!(&snap.volume_id, vol);
        assert_eq!(snap.tag(tags::VOLUME), Some(*logical));
        assert_eq!(snap.tag(tags::GENERATION), Some("5"));
        assert_eq!(snap.tag(tags::HOOK), Some(hook.ledger_key().as_str()));
        assert_eq!(snap.tag(tags::REASON), Some("precopy"));
    }

    // The ledger is whole: after the fence, a launch in another zone takes the final delta of both
    // (the pre-copy is a recovery point) and restores it.
    w.ec2.set_instance_state("i-old", "terminated");
    let launch = w.launch_hook("i-new", AZ_B, "tok-launch");
    let out = w.run(&launch, &w.launch_work()).await;
    assert_completed(&out, LifecycleResult::Continue);
    for logical in ["data", "wal"] {
        let snap = w
            .snapshots_of(logical)
            .into_iter()
            .find(|s| s.tag(tags::REASON) == Some("final"))
            .expect("the final delta");
        let restored: Vec<_> = w
            .volumes_of(logical)
            .into_iter()
            .filter(|v| v.snapshot_id.as_deref() == Some(snap.id.as_str()))
            .collect();
        assert_eq!(restored.len(), 1, "{logical}");
        assert_eq!(restored[0].tag(tags::GENERATION), Some("6"));
    }
}

#[tokio::test(start_paused = true)]
async fn in_a_storm_the_terminate_skips_its_pre_copy_and_fences_at_once() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let vols = w.in_service("i-old", AZ_A, 3, "tok-old-launch");
    let hook = w.terminate_hook("i-old", "tok-term-storm");
    // One call queued: a CreateSnapshot asked now waits 100 s, over the 60 s bound.
    let (budget, _queued) = storm_budget(1).await;
    let skip = PrecopySkip {
        budget,
        after: Duration::from_secs(60),
    };
    let work = w.terminate_work().with_precopy_skip(Some(skip.clone()));

    let began = Instant::now();
    let out = w.run(&hook, &work).await;

    let reason = assert_completed(&out, LifecycleResult::Continue);
    assert!(
        reason.contains("pre-copy skipped") && reason.contains("100s"),
        "{reason}"
    );
    assert!(began.elapsed() < Duration::from_secs(5), "fenced at once");
    assert_eq!(
        w.ec2.count("CreateSnapshot") + w.ec2.count("CreateSnapshots"),
        0
    );
    assert!(w.snapshots_of("data").is_empty());
    assert_attached(&w.ec2.volume(&vols[0]).unwrap(), "i-old", "/dev/sdf");

    // Under the bound, the same terminate takes its pre-copy.
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    w.in_service("i-old", AZ_A, 3, "tok-old-launch");
    let hook = w.terminate_hook("i-old", "tok-term-calm");
    let calm = PrecopySkip {
        after: Duration::from_secs(120),
        ..skip
    };
    let out = w
        .run(&hook, &w.terminate_work().with_precopy_skip(Some(calm)))
        .await;
    assert!(assert_completed(&out, LifecycleResult::Continue).contains("pre-copy completed"));
    assert_eq!(w.ec2.count("CreateSnapshot"), 1);
}

#[tokio::test(start_paused = true)]
async fn under_restore_latest_the_pre_copy_is_never_skipped() {
    let mut group = one_volume();
    group.restore_latest = true;
    let w = World::new(group);
    w.ec2.set_timings(timings());
    w.in_service("i-old", AZ_A, 3, "tok-old-launch");
    let hook = w.terminate_hook("i-old", "tok-term-rl");
    let (budget, _queued) = storm_budget(5).await;
    let skip = PrecopySkip {
        budget,
        after: Duration::from_secs(60),
    };
    let out = w
        .run(&hook, &w.terminate_work().with_precopy_skip(Some(skip)))
        .await;
    // The pre-copy is the newest point the replacement may restore: it is taken (the fake's own calls are
    // not held to the test's budget).
    assert!(assert_completed(&out, LifecycleResult::Continue).contains("pre-copy completed"));
    assert_eq!(w.ec2.count("CreateSnapshot"), 1);
}
