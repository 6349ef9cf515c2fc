//! The service model of the storm simulation: each AWS call waits its latency on tokio's clock, then meets
//! the service's own token bucket for its action and fails with `RequestLimitExceeded` (EC2) or `Throttling`
//! (Auto Scaling) when it is empty, the way the real services throttle. Every call is counted by action and
//! outcome.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::budget::{ApiBudget, Limit};
use ferry_state_machine::gate::Gate;
use ferry_state_machine::StepError;

/// Per-action latencies of the model.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// `Describe*` calls.
    pub describe: Duration,
    /// Mutating EC2 calls other than snapshots.
    pub mutate: Duration,
    /// `CreateSnapshot`, `CreateSnapshots`.
    pub snapshot: Duration,
    /// Auto Scaling calls.
    pub autoscaling: Duration,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            describe: Duration::from_millis(60),
            mutate: Duration::from_millis(100),
            snapshot: Duration::from_millis(150),
            autoscaling: Duration::from_millis(50),
        }
    }
}

impl Latencies {
    /// The latency of one call of `op` (`service:Action`).
    pub fn of(&self, op: &str) -> Duration {
        let name = ferry_state_machine::gate::bare(op);
        if op.starts_with("autoscaling:") {
            self.autoscaling
        } else if name.starts_with("Describe") {
            self.describe
        } else if name.starts_with("CreateSnapshot") {
            self.snapshot
        } else {
            self.mutate
        }
    }
}

/// Calls of one action, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Served.
    pub ok: u64,
    /// Refused by the service's bucket.
    pub throttled: u64,
}

/// The services: latency, then the action's bucket.
pub struct ServiceModel {
    latencies: Latencies,
    buckets: ApiBudget,
    limits: BTreeMap<String, Limit>,
    counts: Mutex<BTreeMap<&'static str, Counts>>,
}

impl ServiceModel {
    /// A model whose services allow `limits` per action (actions without one are not throttled).
    pub fn new(latencies: Latencies, limits: BTreeMap<String, Limit>) -> Self {
        Self {
            latencies,
            buckets: ApiBudget::new(&limits),
            limits,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// The calls so far, by action.
    pub fn counts(&self) -> BTreeMap<&'static str, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The calls so far, by action, counting from zero again.
    pub fn take_counts(&self) -> BTreeMap<&'static str, Counts> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The service's bucket of `op`, if it has one.
    pub fn limit(&self, op: &str) -> Option<Limit> {
        self.limits.get(op).copied()
    }

    /// The modelled latency of `op`.
    pub fn latency(&self, op: &str) -> Duration {
        self.latencies.of(op)
    }
}

#[async_trait]
impl Gate for ServiceModel {
    async fn enter(&self, op: &'static str) -> Result<(), StepError> {
        tokio::time::sleep(self.latencies.of(op)).await;
        let served = self.buckets.try_take(op);
        {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let e = c.entry(op).or_default();
            if served {
                e.ok += 1;
            } else {
                e.throttled += 1;
            }
        }
        if served {
            return Ok(());
        }
        let (code, status) = if op.starts_with("autoscaling:") {
            ("Throttling", 400)
        } else {
            ("RequestLimitExceeded", 503)
        };
        Err(StepError::from_aws(
            op,
            Some(code),
            Some("Request limit exceeded."),
            Some(status),
        ))
    }
}
