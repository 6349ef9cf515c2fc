//! The keeper on paused time: renewal keeps others out, shares are one lease, the last drop releases, and
//! a lease taken elsewhere or not renewed in time is lost at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::lease::{LeaseRecord, LeaseStore, LeaseTiming, MemoryLeaseStore};

const KEY: &str = "db/1";

#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);
impl Recorded {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}
impl LeaseEvents for Recorded {
    fn acquired(&self, key: &str, stolen: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("acquired {key} stolen={stolen}"));
    }
    fn lost(&self, key: &str) {
        self.0.lock().unwrap().push(format!("lost {key}"));
    }
    fn released(&self, key: &str) {
        self.0.lock().unwrap().push(format!("released {key}"));
    }
}

/// A replica's path to the shared store, which can be cut.
struct Link {
    store: MemoryLeaseStore,
    down: AtomicBool,
}

#[async_trait]
impl LeaseStore for Link {
    async fn read(&self, key: &str) -> Result<Option<LeaseRecord>, StepError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StepError::retry("GetItem", "connection refused"));
        }
        self.store.read(key).await
    }
    async fn swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &LeaseRecord,
    ) -> Result<bool, StepError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StepError::retry("PutItem", "connection refused"));
        }
        self.store.swap(key, expected, new).await
    }
}

struct Replica {
    keeper: LeaseKeeper,
    link: Arc<Link>,
    events: Arc<Recorded>,
}

fn replica(store: &MemoryLeaseStore, name: &str) -> Replica {
    let link = Arc::new(Link {
        store: store.clone(),
        down: AtomicBool::new(false),
    });
    let events = Arc::new(Recorded::default());
    let timing = LeaseTiming {
        duration: Duration::from_secs(30),
        safety: Duration::from_secs(5),
    };
    let keeper = LeaseKeeper::new(
        Leaser::new(link.clone(), name, timing),
        KeeperTiming {
            renew_every: Duration::from_secs(10),
            poll_max: Duration::from_secs(5),
        },
        events.clone(),
    );
    Replica {
        keeper,
        link,
        events,
    }
}

/// Lets spawned work (a release) run.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn renewal_keeps_the_other_replica_out_and_the_last_drop_lets_it_in() {
    let store = MemoryLeaseStore::default();
    let (a, b) = (replica(&store, "a"), replica(&store, "b"));
    let held = a.keeper.acquire(KEY).await.unwrap();
    assert_eq!(held.epoch(), Some(1));
    // Ten minutes: far past the duration, but renewed all along.
    let kept_out = tokio::time::timeout(Duration::from_secs(600), b.keeper.acquire(KEY)).await;
    assert!(kept_out.is_err(), "b took a lease that a renewed");
    assert!(held.is_valid());
    drop(held);
    settle().await;
    assert_eq!(store.get(KEY).unwrap().owner, None);
    let next = b.keeper.acquire(KEY).await.unwrap();
    assert_eq!(next.epoch(), Some(2));
    assert_eq!(
        a.events.all(),
        vec!["acquired db/1 stolen=false", "released db/1"]
    );
    assert_eq!(b.events.all(), vec!["acquired db/1 stolen=false"]);
}

#[tokio::test(start_paused = true)]
async fn hooks_of_one_slot_on_one_replica_share_one_lease() {
    let store = MemoryLeaseStore::default();
    let a = replica(&store, "a");
    let first = a.keeper.acquire(KEY).await.unwrap();
    let version = store.get(KEY).unwrap().version;
    let second = a.keeper.acquire(KEY).await.unwrap();
    assert_eq!(second.epoch(), first.epoch());
    assert_eq!(store.get(KEY).unwrap().version, version, "no second write");
    drop(first);
    settle().await;
    assert_eq!(store.get(KEY).unwrap().owner.as_deref(), Some("a"));
    assert!(second.is_valid());
    drop(second);
    settle().await;
    assert_eq!(store.get(KEY).unwrap().owner, None);
}

#[tokio::test(start_paused = true)]
async fn a_replica_cut_off_loses_its_lease_and_the_other_steals_it_after_expiry() {
    let store = MemoryLeaseStore::default();
    let (a, b) = (replica(&store, "a"), replica(&store, "b"));
    let held = a.keeper.acquire(KEY).await.unwrap();
    a.link.down.store(true, Ordering::SeqCst);
    // a cannot renew: its own validity (30 s - 5 s) ends first, and it stops.
    tokio::time::timeout(Duration::from_secs(60), held.lost())
        .await
        .expect("the lease was never marked lost");
    assert!(!held.is_valid());
    let stolen = b.keeper.acquire(KEY).await.unwrap();
    assert_eq!(stolen.epoch(), Some(2));
    assert_eq!(
        a.events.all(),
        vec!["acquired db/1 stolen=false", "lost db/1"]
    );
    assert_eq!(b.events.all(), vec!["acquired db/1 stolen=true"]);
    // Back on the network, a's drop releases nothing: the lease is b's.
    a.link.down.store(false, Ordering::SeqCst);
    drop(held);
    settle().await;
    assert_eq!(store.get(KEY).unwrap().owner.as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn a_lease_taken_elsewhere_is_lost_at_the_next_renewal() {
    let store = MemoryLeaseStore::default();
    let a = replica(&store, "a");
    let held = a.keeper.acquire(KEY).await.unwrap();
    let current = store.get(KEY).unwrap();
    let taken = LeaseRecord {
        owner: Some("b".into()),
        epoch: current.epoch + 1,
        version: "b#0".into(),
        duration: current.duration,
    };
    assert!(store
        .swap(KEY, Some(&current.version), &taken)
        .await
        .unwrap());
    tokio::time::timeout(Duration::from_secs(11), held.lost())
        .await
        .expect("not lost at the next renewal");
    assert!(!held.is_valid());
    assert_eq!(held.epoch(), None);
    assert_eq!(store.get(KEY), Some(taken));
}
