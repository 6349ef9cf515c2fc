//! The lease a hook holds on its slot when several replicas share a queue (`[lease] table`): taken before
//! the hook's first step on the slot (its claim, for a launch), kept across every step and wait until the
//! action is completed, and let go only while the hook waits at the slot's barrier for another hook
//! (`Progress::Blocked`), so that the hook it waits for, on any replica, can take it and finish. A step
//! runs only while the lease is valid, and is cut off the moment it is not; a hook whose lease was lost
//! stops at once and its message returns.

use std::time::Duration;

use crate::error::StepError;
use crate::lease_keeper::{LeaseGuard, LeaseKeeper};
use crate::model::SlotKey;

/// What taking the lease found.
pub(crate) enum Take {
    /// Held: the hook may step.
    Held,
    /// Another replica holds it still: the hook waits (and polls, heartbeats and watches its timeouts).
    Busy(String),
    /// The lease this hook held was lost: the hook must stop.
    Lost(String),
}

/// The lease of one hook run: nothing when the driver has no keeper (one replica, in-process locks).
pub(crate) struct HookLease {
    keeper: Option<LeaseKeeper>,
    held: Option<LeaseGuard>,
}

impl HookLease {
    pub(crate) fn new(keeper: Option<LeaseKeeper>) -> Self {
        Self { keeper, held: None }
    }

    /// Holds the lease of `slot`: at once if held and valid, else after waiting at most about `wait` for
    /// it. `Err` is a store error, for a retry.
    pub(crate) async fn take(&mut self, slot: &SlotKey, wait: Duration) -> Result<Take, StepError> {
        let Some(keeper) = &self.keeper else {
            return Ok(Take::Held);
        };
        let key = slot.to_string();
        match &self.held {
            Some(g) if g.key() == key && g.is_valid() => return Ok(Take::Held),
            Some(g) if g.key() == key => {
                return Ok(Take::Lost(format!(
                    "the lease of slot {key} was lost (another replica took it, or it was not renewed in time); stopping work on the slot"
                )))
            }
            _ => self.held = None,
        }
        Ok(match keeper.acquire_within(&key, wait).await? {
            Ok(guard) => {
                self.held = Some(guard);
                Take::Held
            }
            Err(owner) => Take::Busy(format!(
                "the lease of slot {key} is held by another replica ({owner})"
            )),
        })
    }

    /// Lets the lease go (the last share of this replica releases it): the hook waits at the barrier, or
    /// did not win the slot it tried to claim.
    pub(crate) fn let_go(&mut self) {
        self.held = None;
    }

    /// The epoch of the lease held, if any (logged with each claim).
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.held.as_ref().and_then(LeaseGuard::epoch)
    }

    /// Runs `work` while the lease stays valid: `None` when it lapsed first (the work is dropped there).
    pub(crate) async fn within<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        match &self.held {
            None => Some(work.await),
            Some(g) => tokio::select! {
                biased;
                () = g.expired() => None,
                out = work => Some(out),
            },
        }
    }
}
