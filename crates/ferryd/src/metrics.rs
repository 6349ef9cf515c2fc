//! ferryd's Prometheus metrics (`prometheus-client`): one [`Metrics`] handle that observes the driver
//! (`HookObserver`), the listener (`ListenerObserver`), the SDK (`sdk_metrics`), recovery points and
//! slot leases.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_hook_listener::{ListenerObserver, ParseError};
use ferry_state_machine::machine::{FINAL_STATE_LOST, UNREADABLE_DATA};
use ferry_state_machine::{
    Disposition, HookEvent, HookObserver, HookOutcome, LifecycleResult, Progress, StepError,
    Transition,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};
use tokio::time::Instant;
use tracing::warn;

use crate::http::PollClock;
use crate::sdk_metrics::AwsCallOutcome;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set: N (name, value) pairs.
type Labels<const N: usize> = [(&'static str, String); N];

/// Builds a label set.
fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels<N> {
    pairs.map(|(k, v)| (k, v.to_string()))
}

/// A family of counters with N labels.
type Counters<const N: usize> = Family<Labels<N>, Counter>;

/// Buckets from 1 s to 6 h, for hook durations and snapshot waits.
const LONG_BUCKETS: [f64; 17] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
    7200.0, 10800.0, 21600.0,
];

fn long_histogram() -> Histogram {
    Histogram::new(LONG_BUCKETS)
}

/// A gauge of seconds.
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Registers `metric` (with `unit`, which OpenMetrics appends to the name); returns it.
fn add<M: Metric + Clone>(r: &mut Registry, desc: Desc, unit: Option<Unit>, metric: M) -> M {
    match unit {
        Some(u) => r.register_with_unit(desc.0, desc.1, u, metric.clone()),
        None => r.register(desc.0, desc.1, metric.clone()),
    }
    metric
}

/// [`add`] of a metric's default.
fn reg<M: Metric + Clone + Default>(r: &mut Registry, desc: Desc, unit: Option<Unit>) -> M {
    add(r, desc, unit, M::default())
}

/// Name and help of each metric but the plain counters (OpenMetrics appends the unit and `_total`).
type Desc = (&'static str, &'static str);
const HOOKS: Desc = ("ferry_hooks", "Hook runs ended, by outcome");
const HOOK_DURATION: Desc = (
    "ferry_hook_duration",
    "Duration of hook runs that reached a final outcome",
);
const IN_FLIGHT: Desc = ("ferry_hooks_in_flight", "Hook runs in progress");
const STEP_ERRORS: Desc = ("ferry_step_errors", "Failed hook steps");
const SNAPSHOT_WAIT: Desc = (
    "ferry_snapshot_wait",
    "Terminate hooks: time from the first pending-snapshot wait to the end of the hook",
);
const LBT_ABANDONS: Desc = (
    "ferry_launch_before_terminate_abandons",
    "Launch hooks abandoned because the old instance stayed in service with the data",
);
const AWS_CALLS: Desc = ("ferry_aws_calls", "AWS SDK call attempts, by outcome");
const RECOVERY_AGE: Desc = (
    "ferry_recovery_point_age",
    "Age of the newest completed ferry snapshot",
);
const RECEIVE_LAG: Desc = (
    "ferry_queue_receive_lag",
    "Time from a message's sending to its receipt",
);
const IGNORED: Desc = ("ferry_ignored_hooks", "Hooks not admitted");
const UNVERIFIED: Desc = (
    "ferry_unverified_hooks",
    "Hook messages refused because Auto Scaling does not confirm them, by failed check",
);
const PATHS: Desc = (
    "ferry_lifecycle_paths",
    "Hook runs by lifecycle path (failover, warm-pool entry, fill, return, drain, root-volume replacement, ...)",
);
const DATA_UNAVAILABLE: Desc = (
    "ferry_data_unavailable_abandons",
    "Launches abandoned because the slot's newest data cannot be had, by kind",
);
const LAST_POLL: Desc = (
    "ferry_last_poll_timestamp",
    "Unix time of the poll loop's last liveness signal",
);
const WEBHOOK: Desc = ("ferry_webhook_events", "Webhook events, by outcome");

/// The plain counters, in the order of [`COUNTERS`].
#[derive(Debug, Clone, Copy)]
#[rustfmt::skip]
enum C { Heartbeats, RecoveryErrors, Polls, Received, Deleted, DeleteErrors, ParseErrors, Duplicates, ReceiveErrors }

/// Name and help of each [`C`].
#[rustfmt::skip]
const COUNTERS: [Desc; 9] = [
    ("ferry_heartbeats", "Lifecycle heartbeats recorded"),
    ("ferry_recovery_check_errors", "Recovery-point look-ups that failed"),
    ("ferry_polls", "Liveness signals of the poll loop"),
    ("ferry_messages_received", "Messages received"),
    ("ferry_messages_deleted", "Messages deleted"),
    ("ferry_delete_errors", "Deletes that failed for good"),
    ("ferry_parse_errors", "Unparseable message bodies"),
    ("ferry_duplicate_deliveries", "Deliveries of hooks already running here"),
    ("ferry_receive_errors", "Failed receives"),
];

/// Every metric, registered once.
struct Inner {
    registry: Registry,
    /// The plain counters, indexed by [`C`].
    counters: [Counter; COUNTERS.len()],
    hooks: Counters<2>,
    hook_duration: Family<Labels<1>, Histogram>,
    in_flight: Family<Labels<1>, Gauge>,
    step_errors: Counters<3>,
    snapshot_wait: Histogram,
    lbt_abandons: Counters<1>,
    aws_calls: Counters<3>,
    recovery_age: Family<Labels<3>, FloatGauge>,
    receive_lag: Histogram,
    ignored: Counters<1>,
    unverified: Counters<2>,
    paths: Counters<2>,
    data_unavailable: Counters<2>,
    last_poll_ts: FloatGauge,
    webhook: Counters<2>,
    dr: dr::DrMetrics,
    lease: lease::LeaseMetrics,
    /// When the poll loop last polled.
    poll_clock: PollClock,
    /// Hooks counted in `in_flight`, by ledger key (`<instance>/<transition>`).
    running: Mutex<HashSet<String>>,
    /// When a terminate hook first waited on pending snapshots, by ledger key.
    snapshot_wait_start: Mutex<HashMap<String, Instant>>,
}

/// ferryd's metrics. Cheap to clone: clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    fn count(&self, c: C) -> &Counter {
        &self.inner.counters[c as usize]
    }

    /// A fresh registry with every ferry metric registered.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let s = Some(Unit::Seconds);
        let long = long_histogram as fn() -> Histogram;
        let lag_buckets = [
            0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
        ];
        let counters: [Counter; COUNTERS.len()] = Default::default();
        for ((name, help), c) in COUNTERS.iter().zip(&counters) {
            r.register(*name, *help, c.clone());
        }
        let inner = Inner {
            hooks: reg(&mut r, HOOKS, None),
            hook_duration: add(
                &mut r,
                HOOK_DURATION,
                s.clone(),
                Family::new_with_constructor(long),
            ),
            in_flight: reg(&mut r, IN_FLIGHT, None),
            step_errors: reg(&mut r, STEP_ERRORS, None),
            snapshot_wait: add(&mut r, SNAPSHOT_WAIT, s.clone(), long_histogram()),
            lbt_abandons: reg(&mut r, LBT_ABANDONS, None),
            aws_calls: reg(&mut r, AWS_CALLS, None),
            recovery_age: reg(&mut r, RECOVERY_AGE, s.clone()),
            receive_lag: add(&mut r, RECEIVE_LAG, s.clone(), Histogram::new(lag_buckets)),
            ignored: reg(&mut r, IGNORED, None),
            unverified: reg(&mut r, UNVERIFIED, None),
            paths: reg(&mut r, PATHS, None),
            data_unavailable: reg(&mut r, DATA_UNAVAILABLE, None),
            last_poll_ts: reg(&mut r, LAST_POLL, s),
            webhook: reg(&mut r, WEBHOOK, None),
            dr: dr::DrMetrics::register(&mut r),
            lease: lease::LeaseMetrics::register(&mut r),
            counters,
            registry: r,
            poll_clock: PollClock::default(),
            running: Mutex::default(),
            snapshot_wait_start: Mutex::default(),
        };
        // Series that exist from the start, so that alerts on `increase()` see their first event.
        for t in [Transition::Launching, Transition::Terminating] {
            let t = [("transition", t.label())];
            drop(inner.in_flight.get_or_create(&labels(t)));
            drop(inner.hook_duration.get_or_create(&labels(t)));
            for outcome in [
                "continue",
                "abandon",
                "already_ended",
                "interrupted",
                "rejected",
            ] {
                drop(
                    inner
                        .hooks
                        .get_or_create(&labels([t[0], ("outcome", outcome)])),
                );
            }
        }
        for delete in ["true", "false"] {
            drop(inner.ignored.get_or_create(&labels([("delete", delete)])));
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Counts a hook message that Auto Scaling did not confirm (`check`: which verification failed).
    pub fn hook_unverified(&self, hook: &HookEvent, check: &'static str) {
        let l = [("transition", hook.transition.label()), ("check", check)];
        self.inner.unverified.get_or_create(&labels(l)).inc();
    }

    /// A hook run took `path`.
    pub fn hook_path(&self, hook: &HookEvent, path: &'static str) {
        let l = [("transition", hook.transition.label()), ("path", path)];
        self.inner.paths.get_or_create(&labels(l)).inc();
    }

    /// Every metric in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            warn!(error = %e, "cannot encode the metrics");
        }
        out
    }

    /// Counts a hook run as in flight until its `on_end`. Call it when the run starts; it is idempotent
    /// per action, and the first progress, error or heartbeat of a run counts it too.
    pub fn hook_started(&self, hook: &HookEvent) {
        if lock(&self.inner.running).insert(hook.ledger_key()) {
            let t = labels([("transition", hook.transition.label())]);
            self.inner.in_flight.get_or_create(&t).inc();
        }
    }

    /// Records one AWS call attempt (from the SDK interceptor).
    pub fn record_aws_call(&self, service: &str, operation: &str, outcome: AwsCallOutcome) {
        let l = [
            ("service", service),
            ("operation", operation),
            ("outcome", outcome.label()),
        ];
        self.inner.aws_calls.get_or_create(&labels(l)).inc();
    }

    /// Sets the age of the newest completed snapshot of one (group, slot, volume).
    pub fn set_recovery_point_age(&self, group: &str, slot: u32, volume: &str, age: Duration) {
        let l = [
            ("group", group),
            ("slot", &slot.to_string()),
            ("volume", volume),
        ];
        let gauge = self.inner.recovery_age.get_or_create(&labels(l));
        gauge.set(age.as_secs_f64());
    }

    /// Counts a failed recovery-point look-up.
    pub fn recovery_check_failed(&self) {
        self.count(C::RecoveryErrors).inc();
    }

    /// Counts a webhook event: `outcome` is `sent`, `failed` or `dropped`.
    pub fn record_webhook(&self, event: &'static str, outcome: &'static str) {
        let l = labels([("event", event), ("outcome", outcome)]);
        self.inner.webhook.get_or_create(&l).inc();
    }

    /// The poll loop's liveness signal.
    pub fn poll_clock(&self) -> &PollClock {
        &self.inner.poll_clock
    }
}

impl HookObserver for Metrics {
    fn on_progress(&self, hook: &HookEvent, progress: &Progress) {
        self.hook_started(hook);
        if let Progress::Waiting(text) = progress {
            if hook.transition == Transition::Terminating && text.starts_with("snapshots pending") {
                lock(&self.inner.snapshot_wait_start)
                    .entry(hook.ledger_key())
                    .or_insert_with(Instant::now);
            }
        }
    }

    fn on_error(&self, hook: &HookEvent, error: &StepError) {
        self.hook_started(hook);
        let disposition = match error.disposition {
            Disposition::Retry => "retry",
            Disposition::Permanent => "permanent",
            Disposition::AlreadyDone => "already_done",
        };
        let throttle = if error.is_throttle() { "true" } else { "false" };
        let l = [
            ("transition", hook.transition.label()),
            ("disposition", disposition),
            ("throttle", throttle),
        ];
        self.inner.step_errors.get_or_create(&labels(l)).inc();
    }

    fn on_heartbeat(&self, hook: &HookEvent) {
        self.hook_started(hook);
        self.count(C::Heartbeats).inc();
    }

    fn on_end(&self, hook: &HookEvent, outcome: &HookOutcome, took: Duration) {
        let key = hook.ledger_key();
        let t = [("transition", hook.transition.label())];
        if lock(&self.inner.running).remove(&key) {
            self.inner.in_flight.get_or_create(&labels(t)).dec();
        }
        let waited = lock(&self.inner.snapshot_wait_start).remove(&key);
        let l = labels([t[0], ("outcome", outcome.label())]);
        self.inner.hooks.get_or_create(&l).inc();
        if !outcome.is_final() {
            // Interrupted: the run resumes elsewhere; a partial duration would mislead.
            return;
        }
        let duration = self.inner.hook_duration.get_or_create(&labels(t));
        duration.observe(took.as_secs_f64());
        if let Some(since) = waited {
            self.inner
                .snapshot_wait
                .observe(since.elapsed().as_secs_f64());
        }
        if let HookOutcome::Completed {
            result: LifecycleResult::Abandon,
            reason,
        } = outcome
        {
            if reason.contains("launch-before-terminate") {
                let l = labels([("group", hook.group.as_str())]);
                self.inner.lbt_abandons.get_or_create(&l).inc();
            }
            let kind = if reason.contains(UNREADABLE_DATA) {
                Some("unreadable")
            } else if reason.contains(FINAL_STATE_LOST) {
                Some("final_state_lost")
            } else {
                None
            };
            if let Some(kind) = kind {
                let l = labels([("group", hook.group.as_str()), ("kind", kind)]);
                self.inner.data_unavailable.get_or_create(&l).inc();
            }
        }
    }
}

impl ListenerObserver for Metrics {
    fn on_poll(&self) {
        self.inner.poll_clock.touch();
        self.count(C::Polls).inc();
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        self.inner
            .last_poll_ts
            .set(now.map_or(0.0, |d| d.as_secs_f64()));
    }

    fn on_received(&self, n: usize) {
        self.count(C::Received).inc_by(n as u64);
    }

    fn on_receive_error(&self, _error: &StepError) {
        self.count(C::ReceiveErrors).inc();
    }

    fn on_receive_lag(&self, lag: Duration) {
        self.inner.receive_lag.observe(lag.as_secs_f64());
    }

    fn on_parse_error(&self, _error: &ParseError) {
        self.count(C::ParseErrors).inc();
    }

    fn on_duplicate(&self) {
        self.count(C::Duplicates).inc();
    }

    fn on_ignored(&self, _hook: &HookEvent, delete: bool) {
        let l = labels([("delete", if delete { "true" } else { "false" })]);
        self.inner.ignored.get_or_create(&l).inc();
    }

    fn on_deleted(&self) {
        self.count(C::Deleted).inc();
    }

    fn on_delete_error(&self, _error: &StepError) {
        self.count(C::DeleteErrors).inc();
    }
}

#[path = "metrics_dr.rs"]
mod dr;

#[path = "metrics_lease.rs"]
mod lease;

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
