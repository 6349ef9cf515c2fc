//! The lease that gives one ferryd replica a (group, slot) at a time: a record in a store with conditional
//! writes (DynamoDB in production), a fencing epoch, and expiry by the Amazon DynamoDB lock client's rule.
//!
//! - **The record** (`LeaseRecord`) holds the owner (absent once released), the epoch and a record version.
//!   Every write is a compare-and-swap on the version (or on the record's absence), so two replicas that
//!   race for one lease cannot both win.
//! - **The epoch** rises by one with every change of owner (an acquire, a steal). The record is never
//!   deleted: a release only clears the owner, so the epoch never goes back.
//! - **Expiry never compares clocks.** A replica that finds another owner remembers the record's version
//!   and *its own* monotonic time of that first sight. It may steal only once the version has stayed the
//!   same for the record's full duration. The owner renews (a new version) well within that duration.
//! - **The owner's own view is as strict.** A held lease is valid until the send time of its last
//!   successful write plus the duration, less a safety margin. Any replica that steals must have seen that
//!   write's version unchanged for the full duration, starting after the write, so the two never overlap
//!   unless the clocks' *rates* differ by more than the margin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::StepError;

/// One lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The replica that holds it; `None` once released.
    pub owner: Option<String>,
    /// The fencing token: one more at every change of owner.
    pub epoch: u64,
    /// Changes with every write; what a compare-and-swap compares.
    pub version: String,
    /// How long a version must stay unchanged before another replica may take the lease.
    pub duration: Duration,
}

/// A store of lease records with compare-and-swap writes.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// The record under `key`, if any (a strongly consistent read).
    async fn read(&self, key: &str) -> Result<Option<LeaseRecord>, StepError>;
    /// Writes `new` under `key` if the stored version is `expected` (`None`: no record yet). `Ok(false)`
    /// when the condition did not hold, and nothing was written.
    async fn swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &LeaseRecord,
    ) -> Result<bool, StepError>;
}

/// Timing of the leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long an unchanged record keeps others out (`[lease] duration_secs`).
    pub duration: Duration,
    /// How long before that the holder counts its own lease as gone (clock-rate slack and write latency).
    pub safety: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(20),
            safety: Duration::from_secs(4),
        }
    }
}

/// A lease this replica holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// The key it is held under.
    pub key: String,
    /// Its fencing epoch.
    pub epoch: u64,
    /// The version of this replica's last write.
    pub version: String,
    /// Until when this replica may act under it, by its own monotonic clock.
    pub valid_until: Instant,
    /// Whether it was taken from another owner whose record had stopped changing.
    pub stolen: bool,
}

impl HeldLease {
    /// Whether this replica may still act under the lease.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }
}

/// What an attempt to take a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Taken.
    Held(HeldLease),
    /// Another replica holds it; try again after `retry_in` (when its record would have expired).
    Busy {
        /// The owner, as stored.
        owner: String,
        /// How long until the record, if it stays unchanged, may be taken.
        retry_in: Duration,
    },
    /// Another replica won a race for it just now; try again soon.
    Lost,
}

/// Takes, renews and releases leases for one replica.
pub struct Leaser {
    store: Arc<dyn LeaseStore>,
    owner: String,
    timing: LeaseTiming,
    writes: AtomicU64,
    /// Per key: the other owner's version as first seen, and when (by this replica's clock).
    seen: std::sync::Mutex<HashMap<String, (String, Instant)>>,
}

impl Leaser {
    /// A leaser for the replica `owner` (unique per process run).
    pub fn new(store: Arc<dyn LeaseStore>, owner: impl Into<String>, timing: LeaseTiming) -> Self {
        Self {
            store,
            owner: owner.into(),
            timing,
            writes: AtomicU64::new(0),
            seen: std::sync::Mutex::default(),
        }
    }

    /// This replica's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// A version no other write has used: the owner id is unique, the counter is this process's.
    fn next_version(&self) -> String {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        format!("{}#{n}", self.owner)
    }

    fn record(&self, owner: Option<&str>, epoch: u64) -> LeaseRecord {
        LeaseRecord {
            owner: owner.map(str::to_string),
            epoch,
            version: self.next_version(),
            duration: self.timing.duration,
        }
    }

    fn valid_from(&self, sent: Instant) -> Instant {
        sent + self.timing.duration.saturating_sub(self.timing.safety)
    }

    /// One attempt to take the lease under `key`: new, released, or stale for its full duration.
    pub async fn try_acquire(&self, key: &str) -> Result<Acquire, StepError> {
        let current = self.store.read(key).await?;
        let (expected, epoch, stolen) = match &current {
            None => (None, 1, false),
            Some(r) if r.owner.is_none() => (Some(r.version.as_str()), r.epoch + 1, false),
            Some(r) => match self.stale_for(key, r) {
                None => (Some(r.version.as_str()), r.epoch + 1, true),
                Some(retry_in) => {
                    return Ok(Acquire::Busy {
                        owner: r.owner.clone().unwrap_or_default(),
                        retry_in,
                    })
                }
            },
        };
        let new = self.record(Some(&self.owner), epoch);
        let sent = Instant::now();
        if !self.store.swap(key, expected, &new).await? {
            return Ok(Acquire::Lost);
        }
        self.forget(key);
        Ok(Acquire::Held(HeldLease {
            key: key.to_string(),
            epoch,
            version: new.version,
            valid_until: self.valid_from(sent),
            stolen,
        }))
    }

    /// `None` when another owner's record has stayed at one version for its full duration by this
    /// replica's clock; otherwise how long it still has to stay so. A new version starts the count again.
    fn stale_for(&self, key: &str, r: &LeaseRecord) -> Option<Duration> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen
            .entry(key.to_string())
            .or_insert_with(|| (r.version.clone(), now));
        if entry.0 != r.version {
            *entry = (r.version.clone(), now);
        }
        let unchanged = now.saturating_duration_since(entry.1);
        (unchanged < r.duration).then(|| r.duration - unchanged)
    }

    fn forget(&self, key: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Renews a held lease: a new version, if the record is still this write's. `Ok(false)`: the lease is
    /// lost (taken after expiry, or released elsewhere) and must not be acted under again.
    pub async fn renew(&self, lease: &mut HeldLease) -> Result<bool, StepError> {
        let new = self.record(Some(&self.owner), lease.epoch);
        let sent = Instant::now();
        if !self
            .store
            .swap(&lease.key, Some(&lease.version), &new)
            .await?
        {
            lease.valid_until = sent;
            return Ok(false);
        }
        lease.version = new.version;
        lease.valid_until = self.valid_from(sent);
        Ok(true)
    }

    /// Releases a held lease, keeping its epoch. `Ok(false)`: it was no longer this replica's.
    pub async fn release(&self, lease: HeldLease) -> Result<bool, StepError> {
        let new = self.record(None, lease.epoch);
        self.store
            .swap(&lease.key, Some(&lease.version), &new)
            .await
    }
}

/// A lease store in memory: one process's stand-in for the table, for tests and the simulation.
#[derive(Debug, Default, Clone)]
pub struct MemoryLeaseStore {
    records: Arc<std::sync::Mutex<HashMap<String, LeaseRecord>>>,
}

impl MemoryLeaseStore {
    /// The record under `key`, as stored.
    pub fn get(&self, key: &str) -> Option<LeaseRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn read(&self, key: &str) -> Result<Option<LeaseRecord>, StepError> {
        Ok(self.get(key))
    }

    async fn swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &LeaseRecord,
    ) -> Result<bool, StepError> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let stored = records.get(key).map(|r| r.version.as_str());
        if stored != expected {
            return Ok(false);
        }
        records.insert(key.to_string(), new.clone());
        Ok(true)
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
