//! The heartbeat of one hook run: a task of its own that records lifecycle action heartbeats on a schedule
//! for as long as the hook is worked, whatever its steps, lock waits and sleeps are doing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{warn, Instrument};

use crate::driver::HookObserver;
use crate::model::HookEvent;
use crate::port::{CompleteOutcome, LifecycleActions};

/// How long `Heartbeat::stop` lets a heartbeat call in flight finish before it cuts the call off.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// When heartbeats fall due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// The first heartbeat.
    pub(crate) first: Instant,
    /// The interval after a recorded heartbeat.
    pub(crate) every: Duration,
    /// The delay after a failed one.
    pub(crate) retry: Duration,
}

impl Schedule {
    /// The schedule of a run that begins now. The action's clock started when Auto Scaling announced it
    /// (`started_ago`), so the first heartbeat is due at once if that was long ago, or if nobody knows when it
    /// started (an action found by reconciliation: no token and no time). A failed heartbeat is retried
    /// after min(`every`, `retry_max`) / 4.
    pub(crate) fn new(
        hook: &HookEvent,
        started_ago: Duration,
        every: Duration,
        retry_max: Duration,
    ) -> Self {
        let now = Instant::now();
        let first = if hook.time.is_none() && hook.token.is_empty() {
            now
        } else {
            now + every.saturating_sub(started_ago)
        };
        Self {
            first,
            every,
            retry: every.min(retry_max) / 4,
        }
    }
}

/// A running heartbeat task. Dropping it aborts the task, so a run that ends or is cancelled never leaves
/// it behind; `stop` ends it in order before the action is completed.
pub(crate) struct Heartbeat {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    not_active: watch::Receiver<bool>,
}

impl Heartbeat {
    /// Starts heartbeating `hook`'s action on `schedule`, in the current tracing span.
    pub(crate) fn start(
        actions: Arc<dyn LifecycleActions>,
        observer: Arc<dyn HookObserver>,
        hook: &HookEvent,
        schedule: Schedule,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let (not_active_tx, not_active) = watch::channel(false);
        let beat = beat(
            actions,
            observer,
            hook.clone(),
            schedule,
            stop_rx,
            not_active_tx,
        );
        Self {
            task: tokio::spawn(beat.in_current_span()),
            stop,
            not_active,
        }
    }

    /// Whether a heartbeat found the action no longer active (completed elsewhere, or expired).
    pub(crate) fn not_active(&self) -> bool {
        *self.not_active.borrow()
    }

    /// Resolves once a heartbeat finds the action no longer active; never if none does.
    pub(crate) async fn ended(&self) {
        let mut not_active = self.not_active.clone();
        if not_active.wait_for(|n| *n).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops the task and waits until it has stopped: a heartbeat call in flight may finish (for up to
    /// `STOP_GRACE`), and none starts after. Returns whether a heartbeat found the action no longer active.
    pub(crate) async fn stop(mut self) -> bool {
        self.stop.send_replace(true);
        match tokio::time::timeout(STOP_GRACE, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "heartbeat task failed"),
            Err(_) => {
                warn!(
                    grace_s = STOP_GRACE.as_secs(),
                    "heartbeat call outlasted the grace; cutting it off"
                );
                self.task.abort();
            }
        }
        self.not_active()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task: heartbeat when one falls due until stopped or the action is no longer active.
async fn beat(
    actions: Arc<dyn LifecycleActions>,
    observer: Arc<dyn HookObserver>,
    hook: HookEvent,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
    not_active: watch::Sender<bool>,
) {
    let action = hook.action();
    let mut due = schedule.first;
    loop {
        tokio::select! {
            biased;
            // A closed channel means the guard is gone: stop as well.
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(due) => {}
        }
        match actions.heartbeat(&action).await {
            Ok(CompleteOutcome::Completed) => {
                observer.on_heartbeat(&hook);
                due = Instant::now() + schedule.every;
            }
            Ok(CompleteOutcome::NotActive) => {
                not_active.send_replace(true);
                return;
            }
            Err(e) => {
                warn!(error = %e, "heartbeat failed; retrying soon");
                due = Instant::now() + schedule.retry;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::NoObserver;
    use crate::error::StepError;
    use crate::fake::{FakeLifecycleActions, FaultyLifecycleActions};
    use crate::model::Transition;
    use std::time::SystemTime;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn hook(token: &str, time: Option<SystemTime>) -> HookEvent {
        HookEvent {
            hook_name: "launch".into(),
            group: "db".into(),
            instance_id: "i-1".into(),
            token: token.into(),
            transition: Transition::Launching,
            time,
            origin: None,
            destination: None,
            action: None,
            metadata: None,
        }
    }

    fn fake() -> FakeLifecycleActions {
        let f = FakeLifecycleActions::default();
        f.open_action("db", "launch", "i-1", "tok-1");
        f
    }

    /// Heartbeats `tok-1` from `first_s` on, every 24 s, 6 s after a failure.
    fn start(actions: impl LifecycleActions + 'static, first_s: u64) -> Heartbeat {
        let first = Instant::now() + secs(first_s);
        let schedule = Schedule {
            first,
            every: secs(24),
            retry: secs(6),
        };
        let observer = Arc::new(NoObserver);
        Heartbeat::start(Arc::new(actions), observer, &hook("tok-1", None), schedule)
    }

    #[tokio::test(start_paused = true)]
    async fn the_schedule_follows_the_action_clock() {
        let (now, every, max) = (Instant::now(), secs(24), secs(30));
        let first = |h: &HookEvent, ago: u64| Schedule::new(h, secs(ago), every, max).first;
        let (fresh, known) = (hook("tok-1", None), hook("", Some(SystemTime::now())));
        assert_eq!(first(&fresh, 0), now + every);
        assert_eq!(first(&fresh, 10), now + secs(14));
        assert_eq!(first(&fresh, 45), now, "overdue: at once");
        assert_eq!(first(&known, 10), now + secs(14), "no token, but a time");
        assert_eq!(first(&hook("", None), 0), now, "reconciled: at once");
        let retry = |every_s: u64| Schedule::new(&fresh, secs(0), secs(every_s), max).retry;
        assert_eq!((retry(24), retry(120)), (secs(6), secs(30) / 4));
    }

    /// Sleeps until `at_s` after `t0`, then returns how many heartbeats `f` recorded.
    async fn beats_at(f: &FakeLifecycleActions, t0: Instant, at_s: u64) -> u32 {
        tokio::time::sleep_until(t0 + secs(at_s)).await;
        f.heartbeats("tok-1")
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_heartbeat_is_retried_sooner() {
        let (f, t0) = (fake(), Instant::now());
        let faulty = FaultyLifecycleActions::new(f.clone());
        let throttled = StepError::from_aws("autoscaling:x", Some("Throttling"), None, Some(400));
        faulty
            .gate()
            .fail_next("RecordLifecycleActionHeartbeat", throttled);
        let _hb = start(faulty, 24);
        assert_eq!(beats_at(&f, t0, 29).await, 0, "failed at 24 s");
        assert_eq!(beats_at(&f, t0, 31).await, 1, "retried at 30 s");
        assert_eq!(beats_at(&f, t0, 53).await, 1);
        assert_eq!(beats_at(&f, t0, 55).await, 2, "then every 24 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_that_finds_no_action_ends_the_task() {
        let (f, t0) = (fake(), Instant::now());
        f.expire_action("tok-1");
        let hb = start(f.clone(), 0);
        hb.ended().await;
        assert!(hb.not_active());
        assert_eq!(beats_at(&f, t0, 100).await, 0);
        assert_eq!(f.calls().len(), 1, "no heartbeat after the action ended");
        assert!(hb.stop().await);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_and_drop_end_the_task() {
        let (f, t0) = (fake(), Instant::now());
        let stopped = start(f.clone(), 24);
        assert_eq!(beats_at(&f, t0, 50).await, 2);
        assert!(!stopped.stop().await, "the action is still active");
        assert_eq!(beats_at(&f, t0, 500).await, 2, "none after stop");
        let dropped = start(f.clone(), 0);
        assert_eq!(beats_at(&f, t0, 501).await, 3);
        drop(dropped);
        assert_eq!(beats_at(&f, t0, 1000).await, 3, "none after drop");
    }
}
