//! Client-side API budgets: one token bucket per AWS action (`governor`), sized just under the account's
//! documented defaults, so that ferry waits for a token instead of being throttled and spends its budget on
//! progress, not on retries. The SDK's retry stays the safety net.
//!
//! The wait is tokio's own sleep on a clock over `tokio::time::Instant`: governor's `until_ready` sleeps on a
//! wall-clock timer, which virtual time (tests, the storm simulation) would never see. Waiters of one bucket
//! queue behind a fair mutex, so they are served in order and do not all wake at once.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Deserialize;

/// One bucket: `burst` tokens, refilled at `per_sec` a second (a fraction is a token every `1/per_sec` s).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The bucket's size: calls that may go at once.
    pub burst: u32,
    /// The refill rate, in calls a second.
    pub per_sec: f64,
}

impl Limit {
    /// `burst` tokens refilled at `per_sec` a second.
    pub const fn new(burst: u32, per_sec: f64) -> Self {
        Self { burst, per_sec }
    }

    /// The time between two refills; `None` unless the rate is positive and finite and the burst at least 1.
    pub fn period(&self) -> Option<Duration> {
        if self.burst == 0 || !(self.per_sec.is_finite() && self.per_sec > 0.0) {
            return None;
        }
        Duration::try_from_secs_f64(1.0 / self.per_sec)
            .ok()
            .filter(|p| !p.is_zero())
    }
}

const fn limit(burst: u32, per_sec: u32) -> Limit {
    Limit::new(burst, per_sec as f64)
}

/// EC2's documented account defaults per action category, applied to every action ferry calls; Auto Scaling
/// and SQS publish none, so theirs are conservative.
const DEFAULTS: &[(&str, Limit)] = &[
    // Non-mutating (Describe*): 100, 20/s.
    ("ec2:DescribeAddresses", limit(100, 20)),
    ("ec2:DescribeInstances", limit(100, 20)),
    ("ec2:DescribeInstanceStatus", limit(100, 20)),
    ("ec2:DescribeSnapshots", limit(100, 20)),
    ("ec2:DescribeVolumes", limit(100, 20)),
    // Most mutating calls: 50, 5/s.
    ("ec2:AssociateAddress", limit(50, 5)),
    ("ec2:AttachVolume", limit(50, 5)),
    ("ec2:DetachVolume", limit(50, 5)),
    // Volume and snapshot lifecycle: 100, 5/s.
    ("ec2:CreateSnapshot", limit(100, 5)),
    ("ec2:CreateSnapshots", limit(100, 5)),
    ("ec2:CreateVolume", limit(100, 5)),
    ("ec2:DeleteSnapshot", limit(100, 5)),
    ("ec2:DeleteVolume", limit(100, 5)),
    // Tags: 100, 10/s.
    ("ec2:CreateTags", limit(100, 10)),
    ("autoscaling:CompleteLifecycleAction", limit(20, 10)),
    ("autoscaling:DescribeAutoScalingGroups", limit(20, 10)),
    ("autoscaling:DescribeAutoScalingInstances", limit(20, 10)),
    ("autoscaling:DescribeLifecycleHooks", limit(20, 10)),
    ("autoscaling:RecordLifecycleActionHeartbeat", limit(20, 10)),
    // SQS standard queues have effectively no per-action API limit (in-flight messages are capped at
    // 120,000 instead), so these are conservative guards against a runaway loop, not quotas. The listener
    // makes only batch calls for deletes and visibility changes, ten entries each.
    ("sqs:ReceiveMessage", limit(100, 50)),
    ("sqs:DeleteMessageBatch", limit(100, 50)),
    ("sqs:ChangeMessageVisibilityBatch", limit(100, 50)),
];

/// The default limits, by action (`service:Action`).
pub fn default_limits() -> BTreeMap<String, Limit> {
    DEFAULTS
        .iter()
        .map(|(op, l)| ((*op).to_string(), *l))
        .collect()
}

/// The actions a limit may be set for.
pub fn known_actions() -> impl Iterator<Item = &'static str> {
    DEFAULTS.iter().map(|(op, _)| *op)
}

/// governor's clock over tokio's: paused in tests, the wall clock in production.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    base: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(tokio::time::Instant::now().saturating_duration_since(self.base))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// One token bucket on tokio's clock. Waiters are served in order.
pub struct Bucket {
    limiter: Limiter,
    clock: TokioClock,
    /// Waiters in order: the first waits for the next token, the others for it.
    queue: tokio::sync::Mutex<()>,
    /// Calls waiting for a token now.
    waiting: std::sync::atomic::AtomicUsize,
    /// The time between two refills.
    period: Duration,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").finish_non_exhaustive()
    }
}

impl Bucket {
    /// A full bucket of `limit`; `None` when its burst or rate is zero.
    pub fn new(limit: Limit) -> Option<Self> {
        let clock = TokioClock {
            base: tokio::time::Instant::now(),
        };
        let period = limit.period()?;
        let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(limit.burst)?);
        Some(Self {
            limiter: RateLimiter::direct_with_clock(quota, clock),
            clock,
            queue: tokio::sync::Mutex::new(()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            period,
        })
    }

    /// Waits for a token; returns how long it waited. A step that must wait gives up its worker seat for
    /// the rest of the step (`seat::while_waiting`): waiting for a token is not work.
    pub async fn acquire(&self) -> Duration {
        if let Ok(_turn) = self.queue.try_lock() {
            if self.limiter.check().is_ok() {
                return Duration::ZERO;
            }
        }
        let _queued = Queued::new(&self.waiting);
        crate::seat::while_waiting(self.wait_for_token()).await
    }

    /// About how long a call asking now would wait: the calls queued ahead of it, one refill each.
    pub fn backlog(&self) -> Duration {
        let queued = self.waiting.load(std::sync::atomic::Ordering::Relaxed);
        self.period
            .saturating_mul(u32::try_from(queued).unwrap_or(u32::MAX))
    }

    async fn wait_for_token(&self) -> Duration {
        let _turn = self.queue.lock().await;
        let mut waited = Duration::ZERO;
        loop {
            match self.limiter.check() {
                Ok(()) => return waited,
                Err(not_until) => {
                    let d = not_until.wait_time_from(self.clock.now());
                    waited += d;
                    tokio::time::sleep(d).await;
                }
            }
        }
    }

    /// Takes a token if there is one now, without waiting (a service's own throttling, in a model).
    pub fn try_take(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

/// One call counted as waiting for as long as it lives (a cancelled wait is uncounted too).
struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Queued<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A token bucket per action. Actions without a limit are not held back.
pub struct ApiBudget {
    buckets: HashMap<String, Bucket>,
}

impl std::fmt::Debug for ApiBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBudget")
            .field("actions", &self.buckets.len())
            .finish()
    }
}

impl ApiBudget {
    /// Buckets for `limits`, full at the start. A limit of zero burst or rate is skipped (validated before).
    pub fn new(limits: &BTreeMap<String, Limit>) -> Self {
        let buckets = limits
            .iter()
            .filter_map(|(op, l)| Some((op.clone(), Bucket::new(*l)?)))
            .collect();
        Self { buckets }
    }

    /// Takes a token of `op` if there is one now; an action without a limit always has one.
    pub fn try_take(&self, op: &str) -> bool {
        self.buckets.get(op).is_none_or(Bucket::try_take)
    }

    /// About how long a call of `op` asking now would wait for its token (zero without a limit).
    pub fn backlog(&self, op: &str) -> Duration {
        self.buckets.get(op).map_or(Duration::ZERO, Bucket::backlog)
    }

    /// Waits until `op` (`service:Action`) may be called; returns how long it waited.
    pub async fn acquire(&self, op: &str) -> Duration {
        match self.buckets.get(op) {
            Some(b) => b.acquire().await,
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_calls_wait_for_the_refill_in_order() {
        let budget = Arc::new(ApiBudget::new(&default_limits()));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            let b = budget.clone();
            tasks.push(tokio::spawn(async move {
                b.acquire("ec2:AttachVolume").await;
                (i, start.elapsed())
            }));
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap_or((u32::MAX, Duration::MAX)));
        }
        // 50 at once, then one every 200 ms: the 100th at 10 s.
        assert!(
            done[..50].iter().all(|(_, t)| *t == Duration::ZERO),
            "{done:?}"
        );
        assert_eq!(done[99].1, Duration::from_secs(10));
        assert!(done.windows(2).all(|w| w[0].1 <= w[1].1), "served in order");
        // Another action's bucket is its own; an action without a limit never waits.
        assert_eq!(budget.acquire("ec2:DescribeVolumes").await, Duration::ZERO);
        assert_eq!(budget.acquire("sqs:ReceiveMessage").await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn limits_can_be_changed_per_action() {
        let mut limits = default_limits();
        limits.insert("ec2:CreateTags".into(), limit(1, 1));
        let budget = ApiBudget::new(&limits);
        assert_eq!(budget.acquire("ec2:CreateTags").await, Duration::ZERO);
        assert_eq!(
            budget.acquire("ec2:CreateTags").await,
            Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fractional_rate_refills_a_token_every_period() {
        let mut limits = BTreeMap::new();
        limits.insert("ec2:DescribeVolumes".to_string(), Limit::new(2, 0.25));
        let budget = ApiBudget::new(&limits);
        let waits = [
            budget.acquire("ec2:DescribeVolumes").await,
            budget.acquire("ec2:DescribeVolumes").await,
            budget.acquire("ec2:DescribeVolumes").await,
            budget.acquire("ec2:DescribeVolumes").await,
        ];
        let s = Duration::from_secs;
        assert_eq!(waits, [Duration::ZERO, Duration::ZERO, s(4), s(4)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backlog_is_the_calls_queued_one_refill_each() {
        let mut limits = BTreeMap::new();
        limits.insert("ec2:CreateSnapshot".to_string(), Limit::new(1, 5.0));
        let budget = Arc::new(ApiBudget::new(&limits));
        assert_eq!(budget.backlog("ec2:CreateSnapshot"), Duration::ZERO);
        budget.acquire("ec2:CreateSnapshot").await;
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let b = budget.clone();
                tokio::spawn(async move { b.acquire("ec2:CreateSnapshot").await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(
            budget.backlog("ec2:CreateSnapshot"),
            Duration::from_secs(2),
            "ten calls at 5/s"
        );
        for w in waiters {
            assert!(w.await.is_ok());
        }
        assert_eq!(budget.backlog("ec2:CreateSnapshot"), Duration::ZERO);
        assert_eq!(budget.backlog("ec2:NotLimited"), Duration::ZERO);
    }

    #[test]
    fn a_rate_that_is_not_positive_and_finite_makes_no_bucket() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Limit::new(5, bad).period(), None, "{bad}");
        }
        assert_eq!(Limit::new(0, 1.0).period(), None);
        assert_eq!(Limit::new(5, 0.5).period(), Some(Duration::from_secs(2)));
    }
}
