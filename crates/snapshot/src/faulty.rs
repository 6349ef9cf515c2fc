//! `FaultyEc2`: any EC2 implementation behind `Faults`, a gate that injects scripted failures and latency per
//! operation.
//!
//! Operations are named as EC2 names them (`CreateVolume`, `DescribeSnapshots`, `CreateTags`, ...); an `ec2:`
//! prefix is accepted. `find_volumes` and `describe_volumes` are both `DescribeVolumes`, and so on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::gate::{bare, Gate};
use ferry_state_machine::StepError;

use crate::gated::Gated;

/// The faults scripted for one operation.
#[derive(Debug, Default)]
struct OpFaults {
    /// Consumed in order, one per call.
    next: VecDeque<StepError>,
    /// Every n-th call fails with this error.
    every: Option<(u64, StepError)>,
    /// Each call fails with this probability, drawn from a seeded xorshift.
    random: Option<(f64, u64, StepError)>,
    /// Added before each call.
    delay: Option<Duration>,
    /// Calls seen.
    calls: u64,
}

/// The fault table: what each operation fails with, and what was injected.
#[derive(Debug, Default)]
pub struct Faults {
    faults: Mutex<HashMap<String, OpFaults>>,
    injected: Mutex<Vec<String>>,
}

/// A fault-injecting wrapper around an EC2 implementation (usually `FakeEc2`).
pub type FaultyEc2<T> = Gated<T, Faults>;

fn op_key(op: &str) -> String {
    bare(op).to_string()
}

/// One step of xorshift64; never returns to zero from a non-zero state.
fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

impl<T> Gated<T, Faults> {
    /// Wraps an implementation; no faults until scripted.
    pub fn new(inner: T) -> Self {
        Self::with_gate(inner, Faults::default())
    }
}

impl Faults {
    fn faults(&self) -> MutexGuard<'_, HashMap<String, OpFaults>> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an error: the next call of `op` that has no earlier queued error fails with it.
    pub fn fail_next(&self, op: &str, error: StepError) {
        self.faults()
            .entry(op_key(op))
            .or_default()
            .next
            .push_back(error);
    }

    /// Queues the same error for the next `times` calls of `op`.
    pub fn fail_times(&self, op: &str, times: usize, error: StepError) {
        let mut f = self.faults();
        let q = &mut f.entry(op_key(op)).or_default().next;
        q.extend(std::iter::repeat_n(error, times));
    }

    /// Makes every `n`-th call of `op` (counting from now: calls n, 2n, ...) fail with `error`. `n = 0` stops it.
    pub fn fail_every(&self, op: &str, n: u64, error: StepError) {
        let mut f = self.faults();
        let entry = f.entry(op_key(op)).or_default();
        entry.calls = 0;
        entry.every = (n > 0).then_some((n, error));
    }

    /// Makes each call of `op` fail with `error` with the given probability, reproducibly from `seed`.
    pub fn fail_randomly(&self, op: &str, probability: f64, seed: u64, error: StepError) {
        let state = xorshift(seed | 1);
        self.faults().entry(op_key(op)).or_default().random =
            Some((probability.clamp(0.0, 1.0), state, error));
    }

    /// Delays every call of `op` by `delay` (on tokio's clock, so paused tests advance it).
    pub fn delay(&self, op: &str, delay: Duration) {
        self.faults().entry(op_key(op)).or_default().delay = (!delay.is_zero()).then_some(delay);
    }

    /// Removes every scripted fault and delay.
    pub fn clear(&self) {
        self.faults().clear();
    }

    /// The operations that failed by injection so far, in order.
    pub fn injected(&self) -> Vec<String> {
        self.injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Gate for Faults {
    /// Applies the delay of `op`, then returns the fault the call should fail with, if any.
    async fn enter(&self, op: &'static str) -> Result<(), StepError> {
        let op = bare(op);
        let delay = self.faults().get(op).and_then(|f| f.delay);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let fault = {
            let mut all = self.faults();
            let Some(f) = all.get_mut(op) else {
                return Ok(());
            };
            f.calls += 1;
            let scheduled = f
                .every
                .as_ref()
                .filter(|(n, _)| f.calls % n == 0)
                .map(|(_, e)| e.clone());
            let random = f.random.as_mut().and_then(|(p, state, e)| {
                *state = xorshift(*state);
                // The top 53 bits as a uniform draw in [0, 1).
                let draw = (*state >> 11) as f64 / (1u64 << 53) as f64;
                (draw < *p).then(|| e.clone())
            });
            f.next.pop_front().or(scheduled).or(random)
        };
        match fault {
            Some(e) => {
                self.injected
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(op.to_string());
                Err(e)
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use ferry_state_machine::Disposition;
    use tokio::time::Instant;

    use super::*;
    use crate::fake::FakeEc2;
    use crate::ports::{Addresses, Instances, NewVolume, Snapshots, VolumeQuery, Volumes};

    fn throttle() -> StepError {
        StepError::from_aws(
            "ec2:CreateVolume",
            Some("RequestLimitExceeded"),
            None,
            Some(503),
        )
    }

    fn new_volume(token: &str) -> NewVolume {
        NewVolume {
            availability_zone: "us-east-1a".into(),
            size_gib: Some(10),
            volume_type: "gp3".into(),
            client_token: token.into(),
            ..NewVolume::default()
        }
    }

    #[tokio::test]
    async fn a_scripted_fault_surfaces_once_then_calls_pass_through() {
        let ec2 = FaultyEc2::new(FakeEc2::new());
        ec2.gate().fail_next("ec2:CreateVolume", throttle());
        let e = ec2.create_volume(&new_volume("t1")).await.unwrap_err();
        assert_eq!((e.disposition, e.is_throttle()), (Disposition::Retry, true));
        assert_eq!(
            ec2.inner().count("CreateVolume"),
            0,
            "the fault stops the call before the inner EC2"
        );
        let id = ec2.create_volume(&new_volume("t1")).await.unwrap();
        assert_eq!(ec2.create_volume(&new_volume("t1")).await.unwrap(), id);
        assert_eq!(ec2.inner().count("CreateVolume"), 2);
        assert_eq!(ec2.gate().injected(), ["CreateVolume"]);
        assert!(
            ec2.find_volumes(&VolumeQuery::default()).await.is_ok(),
            "other operations are untouched"
        );
    }

    #[tokio::test]
    async fn every_nth_call_fails_and_random_faults_are_reproducible() {
        let ec2 = FaultyEc2::new(FakeEc2::new());
        ec2.gate().fail_every(
            "DescribeSnapshots",
            3,
            StepError::retry("ec2:DescribeSnapshots", "injected"),
        );
        let mut failed = Vec::new();
        for i in 1..=7 {
            if ec2.describe_snapshots(&[]).await.is_err() {
                failed.push(i);
            }
        }
        assert_eq!(failed, [3, 6]);

        let pattern = |seed| async move {
            let ec2 = FaultyEc2::new(FakeEc2::new());
            ec2.gate().fail_randomly(
                "DescribeInstances",
                0.5,
                seed,
                StepError::retry("ec2:DescribeInstances", "injected"),
            );
            let mut out = Vec::new();
            for _ in 0..32 {
                out.push(ec2.describe_instance("i-1").await.is_err());
            }
            out
        };
        let a = pattern(42).await;
        assert_eq!(a, pattern(42).await);
        assert!(a.iter().any(|f| *f) && a.iter().any(|f| !*f), "{a:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn delay_uses_tokio_time() {
        let ec2 = FaultyEc2::new(FakeEc2::new());
        ec2.gate()
            .delay("DescribeAddresses", Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(ec2.describe_address("eipalloc-x").await.unwrap(), None);
        assert!(start.elapsed() >= Duration::from_secs(5));
    }
}
