//! Driver tests of the slot lease of replicas, on paused time: a hook holds its lease from its first step
//! to its completion, lets it go while blocked at the barrier so that another replica can take it, and
//! stops at once, completing nothing, when the lease is lost mid-step.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::tests::{hook, spec};
use super::*;
use crate::fake::FakeLifecycleActions;
use crate::lease::{LeaseRecord, LeaseStore, LeaseTiming, Leaser, MemoryLeaseStore};
use crate::lease_keeper::{KeeperTiming, LeaseKeeper, NoLeaseEvents};
use crate::lock::LocalSlotLocks;
use crate::model::LifecycleResult;

const KEY: &str = "db/0";

fn keeper(store: &MemoryLeaseStore, owner: &str) -> LeaseKeeper {
    let timing = LeaseTiming {
        duration: Duration::from_secs(4),
        safety: Duration::from_secs(1),
    };
    let keeping = KeeperTiming {
        renew_every: Duration::from_secs(1),
        poll_max: Duration::from_secs(1),
    };
    let leaser = Leaser::new(Arc::new(store.clone()), owner, timing);
    LeaseKeeper::new(leaser, keeping, Arc::new(NoLeaseEvents))
}

fn replica(f: &FakeLifecycleActions, store: &MemoryLeaseStore, owner: &str) -> Driver {
    Driver::new(
        Arc::new(f.clone()),
        Arc::new(LocalSlotLocks::default()),
        Arc::new(NoObserver),
        DriverConfig::default(),
    )
    .with_leases(keeper(store, owner))
}

fn actions() -> FakeLifecycleActions {
    let f = FakeLifecycleActions::default();
    f.put_hook("db", spec(60));
    f.open_action("db", "launch", "i-1", "tok-1");
    f
}

fn owner_of(store: &MemoryLeaseStore) -> Option<String> {
    store.get(KEY).and_then(|r| r.owner)
}

/// Waits (on AWS) a few times, recording the lease's owner at each step, then finishes.
struct Records {
    store: MemoryLeaseStore,
    waits: AtomicU32,
    seen: Mutex<Vec<Option<String>>>,
    progress: fn(String) -> Progress,
}

#[async_trait]
impl HookWork for Records {
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        self.seen.lock().unwrap().push(owner_of(&self.store));
        if self.waits.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Ok((self.progress)("the old instance".into()));
        }
        Ok(Progress::Finished(Verdict::terminate_done("done")))
    }
}

fn records(store: &MemoryLeaseStore, waits: u32, progress: fn(String) -> Progress) -> Records {
    Records {
        store: store.clone(),
        waits: AtomicU32::new(waits),
        seen: Mutex::default(),
        progress,
    }
}

#[tokio::test(start_paused = true)]
async fn a_hook_holds_its_lease_across_every_wait_and_releases_it_after_completing() {
    let (f, store) = (actions(), MemoryLeaseStore::default());
    let work = records(&store, 5, Progress::Waiting);
    let (_tx, rx) = watch::channel(false);

    let out = replica(&f, &store, "a")
        .run(&hook(), &work, Duration::ZERO, rx)
        .await;

    assert_eq!(out.label(), "continue");
    let seen = work.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|o| o.as_deref() == Some("a")), "{seen:?}");
    assert_eq!(f.completions().len(), 1);
    // Released (by a task of the last guard's drop), the epoch kept.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let rec = store.get(KEY).unwrap();
    assert_eq!((rec.owner, rec.epoch), (None, 1));
}

#[tokio::test(start_paused = true)]
async fn a_hook_blocked_at_the_barrier_lets_another_replica_take_the_lease() {
    let (f, store) = (actions(), MemoryLeaseStore::default());
    let work = records(&store, 3, Progress::Blocked);
    let (_tx, rx) = watch::channel(false);
    let other = keeper(&store, "b");
    let (d, h) = (replica(&f, &store, "a"), hook());
    let run = d.run(&h, &work, Duration::ZERO, rx);
    let take = async {
        // While the hook is blocked, replica b takes the lease at once (no expiry wait) and works under it.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let guard = other
            .try_acquire(KEY)
            .await
            .unwrap()
            .expect("free while blocked");
        assert_eq!(owner_of(&store).as_deref(), Some("b"));
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(guard);
    };

    let (out, ()) = tokio::join!(run, take);

    assert_eq!(out.label(), "continue");
    let seen = work.seen.lock().unwrap().clone();
    // Every step ran under a's own lease, never while b held it.
    assert!(seen.iter().all(|o| o.as_deref() == Some("a")), "{seen:?}");
    let epoch = store.get(KEY).map_or(0, |r| r.epoch);
    assert!(epoch >= 3, "a, b, a again: epoch {epoch}");
}

/// A step that takes longer than the lease can be kept.
struct Slow(AtomicU32);

#[async_trait]
impl HookWork for Slow {
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Progress::Finished(Verdict::terminate_done("done")))
    }
}

#[tokio::test(start_paused = true)]
async fn a_lease_taken_by_another_replica_stops_the_hook_mid_step_and_completes_nothing() {
    let (f, store) = (actions(), MemoryLeaseStore::default());
    let work = Slow(AtomicU32::new(0));
    let (_tx, rx) = watch::channel(false);
    let steal = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Another replica's write: the record changes under a, whose next renewal is refused.
        let rec = store.get(KEY).unwrap();
        let stolen = LeaseRecord {
            owner: Some("b".into()),
            epoch: rec.epoch + 1,
            version: "b#0".into(),
            duration: rec.duration,
        };
        assert!(store.swap(KEY, Some(&rec.version), &stolen).await.unwrap());
    };

    let (d, h) = (replica(&f, &store, "a"), hook());
    let (out, ()) = tokio::join!(d.run(&h, &work, Duration::ZERO, rx), steal);

    match &out {
        HookOutcome::Interrupted(why) => assert!(why.contains("lease of slot db/0"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(work.0.load(Ordering::SeqCst), 1);
    assert!(
        f.completions().is_empty(),
        "nothing completed under a lost lease"
    );
    assert_eq!(
        owner_of(&store).as_deref(),
        Some("b"),
        "a never wrote again"
    );
}

#[tokio::test(start_paused = true)]
async fn two_replicas_running_one_hook_complete_it_once() {
    let (f, store) = (actions(), MemoryLeaseStore::default());
    let (wa, wb) = (
        records(&store, 4, Progress::Waiting),
        records(&store, 4, Progress::Waiting),
    );
    let (_tx, rx) = watch::channel(false);
    let (a, b) = (replica(&f, &store, "a"), replica(&f, &store, "b"));

    let h = hook();
    let (oa, ob) = tokio::join!(
        a.run(&h, &wa, Duration::ZERO, rx.clone()),
        b.run(&h, &wb, Duration::ZERO, rx)
    );

    let mut labels = [oa.label(), ob.label()];
    labels.sort_unstable();
    assert_eq!(labels, ["already_ended", "continue"]);
    assert_eq!(f.completions().len(), 1);
    assert_eq!(f.completions()[0].result, LifecycleResult::Continue);
    // Each replica stepped only under its own lease.
    for (w, me) in [(&wa, "a"), (&wb, "b")] {
        let seen = w.seen.lock().unwrap().clone();
        assert!(
            seen.iter().all(|o| o.as_deref() == Some(me)),
            "{me}: {seen:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_hook_kept_out_of_its_lease_still_abandons_at_its_global_timeout_without_a_step() {
    let (f, store) = (actions(), MemoryLeaseStore::default());
    // Replica b holds the slot (and keeps renewing) for longer than the hook may live: 100 x 60 s.
    let holder = keeper(&store, "b").acquire(KEY).await.unwrap();
    let work = records(&store, 0, Progress::Waiting);
    let (_tx, rx) = watch::channel(false);
    let (d, h) = (replica(&f, &store, "a"), hook());

    let out = d.run(&h, &work, Duration::ZERO, rx).await;

    match &out {
        HookOutcome::Completed { result, reason } => {
            assert_eq!(*result, LifecycleResult::Abandon);
            assert!(reason.contains("global timeout"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        work.seen.lock().unwrap().is_empty(),
        "no step without the lease"
    );
    assert_eq!(owner_of(&store).as_deref(), Some("b"));
    drop(holder);
}
