//! The lease's rules on paused time: acquire, renewal, expiry by an unchanged record, steal, release.

use std::sync::Arc;
use std::time::Duration;

use super::*;

const KEY: &str = "db/0";

fn timing() -> LeaseTiming {
    LeaseTiming {
        duration: Duration::from_secs(20),
        safety: Duration::from_secs(4),
    }
}

fn pair() -> (MemoryLeaseStore, Leaser, Leaser) {
    let store = MemoryLeaseStore::default();
    let shared: Arc<dyn LeaseStore> = Arc::new(store.clone());
    let a = Leaser::new(shared.clone(), "replica-a", timing());
    let b = Leaser::new(shared, "replica-b", timing());
    (store, a, b)
}

async fn held(l: &Leaser) -> HeldLease {
    match l.try_acquire(KEY).await.unwrap() {
        Acquire::Held(h) => h,
        other => panic!("{} did not get the lease: {other:?}", l.owner()),
    }
}

async fn busy(l: &Leaser) -> Duration {
    match l.try_acquire(KEY).await.unwrap() {
        Acquire::Busy { retry_in, .. } => retry_in,
        other => panic!("{} was not kept out: {other:?}", l.owner()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_lease_starts_at_epoch_one_and_keeps_others_out() {
    let (store, a, b) = pair();
    let lease = held(&a).await;
    assert_eq!(lease.epoch, 1);
    assert!(!lease.stolen);
    assert!(lease.is_valid());
    let stored = store.get(KEY).unwrap();
    assert_eq!(stored.owner.as_deref(), Some("replica-a"));
    assert_eq!(stored.version, lease.version);
    assert_eq!(busy(&b).await, Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn the_holder_counts_its_lease_gone_before_anyone_may_take_it() {
    let (_, a, b) = pair();
    let lease = held(&a).await;
    assert_eq!(busy(&b).await, Duration::from_secs(20));
    tokio::time::advance(Duration::from_secs(16)).await;
    assert!(!lease.is_valid(), "valid only for duration - safety");
    // Still four seconds before the other replica may take it.
    assert_eq!(busy(&b).await, Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_record_is_stolen_after_its_full_duration_with_a_new_epoch() {
    let (store, a, b) = pair();
    let old = held(&a).await;
    busy(&b).await;
    tokio::time::advance(Duration::from_secs(20)).await;
    let stolen = held(&b).await;
    assert!(stolen.stolen);
    assert_eq!(stolen.epoch, old.epoch + 1);
    assert_eq!(store.get(KEY).unwrap().owner.as_deref(), Some("replica-b"));
}

#[tokio::test(start_paused = true)]
async fn the_count_starts_at_first_sight_not_at_the_records_age() {
    // The record was written long ago by the other replica's clock; this replica has never seen it before,
    // so it still waits the full duration. No clock is compared.
    let (_, a, b) = pair();
    let _lease = held(&a).await;
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(busy(&b).await, Duration::from_secs(20));
    tokio::time::advance(Duration::from_secs(19)).await;
    assert_eq!(busy(&b).await, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn renewal_restarts_the_count_and_extends_the_holders_validity() {
    let (_, a, b) = pair();
    let mut lease = held(&a).await;
    busy(&b).await;
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(a.renew(&mut lease).await.unwrap());
        assert!(lease.is_valid());
        // A new version: the other replica's count starts again.
        assert_eq!(busy(&b).await, Duration::from_secs(20));
    }
    assert_eq!(lease.epoch, 1, "renewal keeps the epoch");
}

#[tokio::test(start_paused = true)]
async fn a_paused_holder_cannot_renew_or_act_once_its_lease_was_stolen() {
    let (store, a, b) = pair();
    let mut paused = held(&a).await;
    busy(&b).await;
    // The holder is stopped (SIGSTOP) past the duration; the other replica takes the lease.
    tokio::time::advance(Duration::from_secs(25)).await;
    let stolen = held(&b).await;
    // Resumed: its own clock already says the lease is gone, and the store refuses its renewal.
    assert!(!paused.is_valid());
    assert!(!a.renew(&mut paused).await.unwrap());
    assert!(!paused.is_valid());
    assert!(!a.release(paused).await.unwrap());
    let stored = store.get(KEY).unwrap();
    assert_eq!(stored.owner.as_deref(), Some("replica-b"));
    assert_eq!(stored.version, stolen.version);
}

#[tokio::test(start_paused = true)]
async fn release_keeps_the_epoch_and_lets_the_next_owner_in_at_once() {
    let (store, a, b) = pair();
    let lease = held(&a).await;
    assert!(a.release(lease).await.unwrap());
    let stored = store.get(KEY).unwrap();
    assert_eq!(stored.owner, None);
    assert_eq!(stored.epoch, 1);
    let next = held(&b).await;
    assert_eq!(next.epoch, 2);
    assert!(!next.stolen);
    // And back: epochs only rise.
    assert!(b.release(next).await.unwrap());
    assert_eq!(held(&a).await.epoch, 3);
}

/// A store that lets another writer in between a read and the swap that follows it.
struct Racy {
    inner: MemoryLeaseStore,
    rival: LeaseRecord,
}

#[async_trait]
impl LeaseStore for Racy {
    async fn read(&self, key: &str) -> Result<Option<LeaseRecord>, StepError> {
        let seen = self.inner.read(key).await?;
        let expected = seen.as_ref().map(|r| r.version.clone());
        self.inner
            .swap(key, expected.as_deref(), &self.rival)
            .await?;
        Ok(seen)
    }
    async fn swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &LeaseRecord,
    ) -> Result<bool, StepError> {
        self.inner.swap(key, expected, new).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_race_for_a_free_lease_has_one_winner() {
    let inner = MemoryLeaseStore::default();
    let rival = LeaseRecord {
        owner: Some("replica-b".into()),
        epoch: 1,
        version: "replica-b#0".into(),
        duration: Duration::from_secs(20),
    };
    let store = Arc::new(Racy {
        inner: inner.clone(),
        rival: rival.clone(),
    });
    let a = Leaser::new(store, "replica-a", timing());
    assert_eq!(a.try_acquire(KEY).await.unwrap(), Acquire::Lost);
    assert_eq!(inner.get(KEY), Some(rival));
}
