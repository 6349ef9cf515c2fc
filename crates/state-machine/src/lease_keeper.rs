//! Holding leases for one replica: take a lease (waiting out another owner by the expiry rule), renew it
//! in the background, share it among this replica's hooks of one slot, and release it when the last of
//! them lets go. A renewal that the store refuses, or that cannot be made before the lease's own validity
//! ends, marks the lease lost at once: every guard sees it, and nothing more is done under it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::StepError;
use crate::lease::{Acquire, HeldLease, Leaser};

/// Told what happens to this replica's leases (for metrics); every method has a no-op default.
pub trait LeaseEvents: Send + Sync {
    /// A lease was taken; `stolen` when from an owner whose record had stopped changing.
    fn acquired(&self, _key: &str, _stolen: bool) {}
    /// A held lease was lost (taken by another replica, or not renewed in time).
    fn lost(&self, _key: &str) {}
    /// A held lease was given back.
    fn released(&self, _key: &str) {}
}

/// Events that go nowhere.
#[derive(Debug, Default)]
pub struct NoLeaseEvents;
impl LeaseEvents for NoLeaseEvents {}

/// Timing of the keeper.
#[derive(Debug, Clone, Copy)]
pub struct KeeperTiming {
    /// How often a held lease is renewed (a third of the duration is the lock client's advice).
    pub renew_every: Duration,
    /// How long a replica kept out waits at most before it looks again.
    pub poll_max: Duration,
}

/// One held lease, shared by this replica's guards of its key.
struct Shared {
    key: String,
    /// `Some` while held and valid as far as this replica knows; `None` once lost.
    state: watch::Receiver<Option<HeldLease>>,
    renewer: JoinHandle<()>,
    keeper: Arc<Inner>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.renewer.abort();
        {
            // Forget the key unless a newer lease of it is already held here (bounded by the slots anyway).
            let mut held = self.keeper.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                held.remove(&self.key);
            }
        }
        let Some(lease) = self.state.borrow().clone() else {
            return;
        };
        let (keeper, key) = (self.keeper.clone(), self.key.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match keeper.leaser.release(lease).await {
                    Ok(true) => keeper.events.released(&key),
                    Ok(false) => warn!(lease = %key, "lease was no longer ours at release"),
                    // It expires by the rule instead: others wait out its duration.
                    Err(e) => {
                        warn!(lease = %key, error = %e, "cannot release the lease; it will expire")
                    }
                }
            });
        }
    }
}

/// A share of a held lease. Dropping the last share of a key releases it.
#[derive(Clone)]
pub struct LeaseGuard(Arc<Shared>);

impl LeaseGuard {
    /// The key.
    pub fn key(&self) -> &str {
        &self.0.key
    }

    /// The lease's fencing epoch, while it is held.
    pub fn epoch(&self) -> Option<u64> {
        self.0.state.borrow().as_ref().map(|l| l.epoch)
    }

    /// Whether this replica may act under the lease now: held, and within its own validity.
    pub fn is_valid(&self) -> bool {
        self.0
            .state
            .borrow()
            .as_ref()
            .is_some_and(HeldLease::is_valid)
    }

    /// Resolves once the lease is lost.
    pub async fn lost(&self) {
        let mut state = self.0.state.clone();
        let _ = state.wait_for(Option::is_none).await;
    }

    /// Resolves once this replica may no longer act under the lease: lost, or past its own validity
    /// (a renewal that is late ends it here even before the renewer gives up).
    pub async fn expired(&self) {
        let mut state = self.0.state.clone();
        loop {
            let until = match state.borrow_and_update().as_ref() {
                Some(l) if l.is_valid() => l.valid_until,
                _ => return,
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                changed = state.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(until).await;
                    }
                }
            }
        }
    }
}

struct Inner {
    leaser: Leaser,
    timing: KeeperTiming,
    events: Arc<dyn LeaseEvents>,
    held: Mutex<HashMap<String, Weak<Shared>>>,
}

/// Takes and keeps this replica's leases.
#[derive(Clone)]
pub struct LeaseKeeper(Arc<Inner>);

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("owner", &self.0.leaser.owner())
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// A keeper over `leaser`.
    pub fn new(leaser: Leaser, timing: KeeperTiming, events: Arc<dyn LeaseEvents>) -> Self {
        Self(Arc::new(Inner {
            leaser,
            timing,
            events,
            held: Mutex::default(),
        }))
    }

    /// A share of the lease under `key`, once this replica holds it: at once when one of its hooks already
    /// does, else after any other owner releases it or lets it expire. Store errors are returned, for the
    /// caller's retry.
    pub async fn acquire(&self, key: &str) -> Result<LeaseGuard, StepError> {
        loop {
            if let Ok(guard) = self.acquire_within(key, Duration::MAX).await? {
                return Ok(guard);
            }
        }
    }

    /// As [`LeaseKeeper::acquire`], waiting at most about `wait`: `Ok(Err(owner))` when another replica
    /// still holds the lease then. A store write in flight is never cut off by the bound, so a lease won
    /// is always kept.
    pub async fn acquire_within(
        &self,
        key: &str,
        wait: Duration,
    ) -> Result<Result<LeaseGuard, String>, StepError> {
        let deadline = Instant::now().checked_add(wait);
        loop {
            if let Some(guard) = self.shared(key) {
                return Ok(Ok(guard));
            }
            let pause = match self.0.leaser.try_acquire(key).await? {
                Acquire::Held(lease) => return Ok(Ok(self.keep(lease))),
                Acquire::Busy { owner, retry_in } => {
                    let pause = retry_in.min(self.0.timing.poll_max);
                    if deadline.is_some_and(|d| Instant::now() + pause > d) {
                        debug!(lease = %key, owner = %owner, "lease held by another replica");
                        return Ok(Err(owner));
                    }
                    pause
                }
                Acquire::Lost => Duration::from_millis(200),
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt at the lease under `key`: a share when this replica holds it already or takes it now,
    /// `None` while another replica holds it (for work that can simply wait for its next round).
    pub async fn try_acquire(&self, key: &str) -> Result<Option<LeaseGuard>, StepError> {
        if let Some(guard) = self.shared(key) {
            return Ok(Some(guard));
        }
        Ok(match self.0.leaser.try_acquire(key).await? {
            Acquire::Held(lease) => Some(self.keep(lease)),
            Acquire::Busy { .. } | Acquire::Lost => None,
        })
    }

    /// This replica's owner id, as written in the lease records.
    pub fn owner(&self) -> &str {
        self.0.leaser.owner()
    }

    /// A live, valid share of `key` that this replica already holds.
    fn shared(&self, key: &str) -> Option<LeaseGuard> {
        let held = self.0.held.lock().unwrap_or_else(|p| p.into_inner());
        let shared = held.get(key)?.upgrade()?;
        let guard = LeaseGuard(shared);
        guard.is_valid().then_some(guard)
    }

    fn keep(&self, lease: HeldLease) -> LeaseGuard {
        let key = lease.key.clone();
        self.0.events.acquired(&key, lease.stolen);
        info!(lease = %key, epoch = lease.epoch, stolen = lease.stolen, "lease acquired");
        let (tx, rx) = watch::channel(Some(lease));
        let renewer = tokio::spawn(renew(self.0.clone(), tx));
        let shared = Arc::new(Shared {
            key: key.clone(),
            state: rx,
            renewer,
            keeper: self.0.clone(),
        });
        self.0
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::downgrade(&shared));
        LeaseGuard(shared)
    }
}

/// Renews the lease in `tx` until it is lost (or the task is aborted by the last guard's drop).
async fn renew(keeper: Arc<Inner>, tx: watch::Sender<Option<HeldLease>>) {
    loop {
        tokio::time::sleep(keeper.timing.renew_every).await;
        let Some(mut lease) = tx.borrow().clone() else {
            return;
        };
        let key = lease.key.clone();
        let renewed = keeper.leaser.renew(&mut lease).await;
        let lost = match renewed {
            Ok(true) => {
                tx.send_replace(Some(lease));
                false
            }
            Ok(false) => {
                warn!(lease = %key, "lease taken by another replica; stopping work under it");
                true
            }
            Err(e) if lease.is_valid() => {
                warn!(lease = %key, error = %e, "cannot renew the lease; retrying while it is valid");
                false
            }
            Err(e) => {
                warn!(lease = %key, error = %e, "lease not renewed in time; stopping work under it");
                true
            }
        };
        if lost {
            tx.send_replace(None);
            keeper.events.lost(&key);
            return;
        }
    }
}

#[cfg(test)]
#[path = "lease_keeper_tests.rs"]
mod tests;
