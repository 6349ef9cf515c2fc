//! Runs one hook: observe, decide and act through `HookWork`, heartbeat from a task of its own for as long
//! as the hook is worked, then complete the lifecycle action. The only place in ferry that calls
//! `CompleteLifecycleAction`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::driver_lease::{HookLease, Take};
use crate::error::{step_backoff, Disposition, StepError};
use crate::heartbeat::{Heartbeat, Schedule};
use crate::lease_keeper::LeaseKeeper;
use crate::lock::SlotLocks;
use crate::model::{HookEvent, SlotKey};
pub use crate::outcome::{HookObserver, HookOutcome, NoObserver};
use crate::port::{CompleteOutcome, HookSpec, LifecycleActions};
use crate::seat::Seat;
use crate::verdict::Verdict;
use crate::wake::SlotChanges;

/// The key of slot `slot` of the hook's group.
fn slot_key(hook: &HookEvent, slot: u32) -> SlotKey {
    SlotKey {
        group: hook.group.clone(),
        slot,
    }
}

/// Which slot of its group a hook works on, as `HookWork::slot` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotChoice {
    /// This slot: the instance holds it already (or the group has one slot).
    Known(u32),
    /// Claim this slot: the driver takes the slot's lock and calls `HookWork::claim`, which checks again
    /// under it, so that two launches that picked one slot cannot both have it.
    Claim(u32),
    /// No slot can be had yet: poll again.
    Waiting(String),
    /// The hook is done without a slot.
    Finished(Verdict),
}

/// What one call of `HookWork::step` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A mutation was made: step again at once.
    Acted(String),
    /// Waiting on AWS: step again after a poll interval.
    Waiting(String),
    /// Waiting at the slot's barrier for another hook of the slot (the old instance's terminate): as
    /// `Waiting`, and the hook lets its slot lease go meanwhile, so that the hook it waits for can take it.
    Blocked(String),
    /// The work is finished: complete the action with this verdict.
    Finished(Verdict),
}

/// The effectful shell of one kind of hook: observe AWS, ask the pure machine, perform one step.
#[async_trait]
pub trait HookWork: Send + Sync {
    /// Which slot the hook works on; asked before the first step, and again while it is not `Known` (or
    /// its claim was lost). A group of one has only slot 0, the default.
    async fn slot(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<SlotChoice, StepError> {
        Ok(SlotChoice::Known(0))
    }

    /// Claims `slot`, under its lock: `true` once the hook holds it, `false` when it was taken meanwhile
    /// (then `slot` is asked again).
    async fn claim(&self, _hook: &HookEvent, _slot: u32) -> Result<bool, StepError> {
        Ok(true)
    }

    /// Performs at most one mutating step on the slot `slot` resolved. `elapsed` is how long the hook has
    /// been running.
    async fn step(&self, hook: &HookEvent, elapsed: Duration) -> Result<Progress, StepError>;
}

/// Timing of the driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Heartbeat when this fraction of the hook's heartbeat timeout has passed since the last one.
    pub heartbeat_fraction: f64,
    /// First poll interval while waiting on AWS.
    pub poll_min: Duration,
    /// Longest poll interval.
    pub poll_max: Duration,
    /// First delay after a transient error.
    pub retry_base: Duration,
    /// Longest delay after a transient error; a failed heartbeat is retried after min(interval, this) / 4.
    pub retry_max: Duration,
    /// Abandon this long before the hook's global timeout would pass.
    pub global_margin: Duration,
    /// Steps (observe, decide, act) worked at once across every hook. A hook holds a worker only while it
    /// steps: one waiting at a barrier, for a lock or between polls holds none, and workers go to waiting
    /// hooks in the order they asked, so no group starves another.
    pub workers: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            heartbeat_fraction: 0.5,
            poll_min: Duration::from_millis(500),
            poll_max: Duration::from_secs(15),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            global_margin: Duration::from_secs(60),
            workers: DEFAULT_WORKERS,
        }
    }
}

/// The default of `DriverConfig::workers`.
/// A step waiting for its call's token still holds its worker, so this is large: enough for the hooks of a
/// storm that wait on one bucket not to keep the others from stepping.
pub const DEFAULT_WORKERS: usize = 1024;

/// Runs hooks to completion.
#[derive(Clone)]
pub struct Driver {
    actions: Arc<dyn LifecycleActions>,
    locks: Arc<dyn SlotLocks>,
    observer: Arc<dyn HookObserver>,
    workers: Arc<Semaphore>,
    changes: SlotChanges,
    leases: Option<LeaseKeeper>,
    cfg: DriverConfig,
}

impl Driver {
    /// A driver over the given ports.
    pub fn new(
        actions: Arc<dyn LifecycleActions>,
        locks: Arc<dyn SlotLocks>,
        observer: Arc<dyn HookObserver>,
        cfg: DriverConfig,
    ) -> Self {
        Self {
            actions,
            locks,
            observer,
            workers: Arc::new(Semaphore::new(cfg.workers.max(1))),
            changes: SlotChanges::default(),
            leases: None,
            cfg,
        }
    }

    /// The same driver, with every hook holding its slot's lease from `keeper` (several replicas).
    #[must_use]
    pub fn with_leases(mut self, keeper: LeaseKeeper) -> Self {
        self.leases = Some(keeper);
        self
    }

    /// Runs one hook until its action is completed, has ended, or `shutdown` turns true.
    /// `started_ago` is how long the action had been waiting when this run began.
    pub async fn run(
        &self,
        hook: &HookEvent,
        work: &dyn HookWork,
        started_ago: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> HookOutcome {
        let began = Instant::now();
        let outcome = self.run_inner(hook, work, started_ago, &mut shutdown).await;
        match &outcome {
            HookOutcome::Completed { result, reason } => {
                info!(result = result.as_aws(), reason = %reason, "lifecycle action completed")
            }
            HookOutcome::AlreadyEnded => {
                info!("lifecycle action no longer active (completed before or expired)")
            }
            HookOutcome::Interrupted(why) => {
                warn!(why = %why, "hook interrupted; its message will return")
            }
            HookOutcome::Rejected(why) => warn!(reason = %why, "hook rejected; nothing completed"),
        }
        self.observer.on_end(hook, &outcome, began.elapsed());
        outcome
    }

    async fn run_inner(
        &self,
        hook: &HookEvent,
        work: &dyn HookWork,
        started_ago: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> HookOutcome {
        let spec = match self.hook_spec(hook).await {
            Ok(Some(spec)) => spec,
            Ok(None) => {
                return HookOutcome::Rejected(format!(
                    "lifecycle hook {} is not a hook of group {}",
                    hook.hook_name, hook.group
                ))
            }
            Err(e) => return HookOutcome::Interrupted(format!("cannot describe hook: {e}")),
        };
        let every = spec
            .heartbeat_timeout
            .mul_f64(self.cfg.heartbeat_fraction.clamp(0.05, 0.95));
        let schedule = Schedule::new(hook, started_ago, every, self.cfg.retry_max);
        // Dropping the guard aborts the task, so even a cancelled run leaves no heartbeat behind.
        let heartbeat =
            Heartbeat::start(self.actions.clone(), self.observer.clone(), hook, schedule);
        // Held until the action is completed (dropped at the end of this function).
        let mut lease = HookLease::new(self.leases.clone());
        let exit = self
            .step_loop(
                hook,
                work,
                (started_ago, spec.global_timeout()),
                shutdown,
                &heartbeat,
                &mut lease,
            )
            .await;
        // Every exit passes here: no heartbeat is sent while or after the action completes.
        let not_active = heartbeat.stop().await;
        if not_active {
            // Completed elsewhere or expired, perhaps while the last step ran: nothing is left to complete.
            return HookOutcome::AlreadyEnded;
        }
        match exit {
            Exit::Complete(verdict, slot) => {
                let outcome = self.complete(hook, verdict).await;
                self.changes.changed(&slot_key(hook, slot.unwrap_or(0)));
                outcome
            }
            Exit::End(outcome) => outcome,
        }
    }

    /// The step loop: steps under the slot lock, sleeps between them, and stops at a safe point on shutdown
    /// or when the heartbeat found the action no longer active. A step in progress is never cut.
    async fn step_loop(
        &self,
        hook: &HookEvent,
        work: &dyn HookWork,
        (started_ago, global): (Duration, Duration),
        shutdown: &mut watch::Receiver<bool>,
        heartbeat: &Heartbeat,
        lease: &mut HookLease,
    ) -> Exit {
        let interrupted = || Exit::End(HookOutcome::Interrupted("shutdown".into()));
        let began = Instant::now();
        let mut poll = self.poll_delays();
        // The last wait reason logged: a wait is logged when it starts or changes, not at every poll.
        let mut last_wait: Option<String> = None;
        let mut backoff = step_backoff(self.cfg.retry_base, self.cfg.retry_max);
        // The slot, once `HookWork::slot` (and its claim) resolved it.
        let mut slot: Option<u32> = None;
        let mut changed = self.changes.of(&slot_key(hook, 0));
        loop {
            if *shutdown.borrow() {
                return interrupted();
            }
            if heartbeat.not_active() {
                return Exit::End(HookOutcome::AlreadyEnded);
            }
            let elapsed = started_ago + began.elapsed();
            if elapsed + self.cfg.global_margin >= global {
                let why = format!(
                    "the hook's global timeout ({}s = min(48h, 100 x heartbeat timeout)) is about to pass after {}s",
                    global.as_secs(),
                    elapsed.as_secs()
                );
                error!(reason = %why, "abandoning hook");
                return Exit::Complete(Verdict::abandon(why), slot);
            }
            let step = match slot {
                Some(n) => self
                    .leased(
                        hook,
                        n,
                        lease,
                        shutdown,
                        heartbeat,
                        work.step(hook, elapsed),
                    )
                    .await
                    .map(|l| match l {
                        Leased::Done(out) => out,
                        Leased::Busy(why) => Ok(Progress::Waiting(why)),
                    }),
                None => match self
                    .seated(shutdown, heartbeat, work.slot(hook, elapsed))
                    .await
                {
                    Err(exit) => Err(exit),
                    Ok(Ok(SlotChoice::Known(n))) => {
                        debug!(slot = n, "working on slot {n}");
                        (slot, changed) = (Some(n), self.changes.of(&slot_key(hook, n)));
                        continue;
                    }
                    Ok(Ok(SlotChoice::Claim(n))) => {
                        match self
                            .leased(hook, n, lease, shutdown, heartbeat, work.claim(hook, n))
                            .await
                        {
                            Ok(Leased::Busy(why)) => Ok(Ok(Progress::Waiting(why))),
                            Ok(Leased::Done(Ok(true))) => {
                                info!(slot = n, lease.epoch = ?lease.epoch(), "claimed slot {n}");
                                (slot, changed) = (Some(n), self.changes.of(&slot_key(hook, n)));
                                Ok(Ok(Progress::Acted(format!("claimed slot {n}"))))
                            }
                            Ok(Leased::Done(Ok(false))) => {
                                lease.let_go();
                                Ok(Ok(Progress::Acted(format!(
                                    "slot {n} was taken meanwhile; choosing again"
                                ))))
                            }
                            Ok(Leased::Done(Err(e))) => Ok(Err(e)),
                            Err(exit) => Err(exit),
                        }
                    }
                    Ok(Ok(SlotChoice::Waiting(why))) => Ok(Ok(Progress::Waiting(why))),
                    Ok(Ok(SlotChoice::Finished(v))) => Ok(Ok(Progress::Finished(v))),
                    Ok(Err(e)) => Ok(Err(e)),
                },
            };
            let step = match step {
                Ok(step) => step,
                Err(exit) => return exit,
            };
            let delay = match step {
                Ok(Progress::Finished(verdict)) => return Exit::Complete(verdict, slot),
                Ok(p @ Progress::Acted(_)) => {
                    changed.notify_waiters();
                    self.observer.on_progress(hook, &p);
                    poll = self.poll_delays();
                    backoff = step_backoff(self.cfg.retry_base, self.cfg.retry_max);
                    continue;
                }
                Ok(p @ (Progress::Waiting(_) | Progress::Blocked(_))) => {
                    if matches!(p, Progress::Blocked(_)) {
                        lease.let_go();
                    }
                    if let Progress::Waiting(what) | Progress::Blocked(what) = &p {
                        if last_wait.as_deref() != Some(what.as_str()) {
                            info!(waiting_for = %what, "waiting");
                            last_wait = Some(what.clone());
                        }
                    }
                    self.observer.on_progress(hook, &p);
                    backoff = step_backoff(self.cfg.retry_base, self.cfg.retry_max);
                    poll.next().unwrap_or(self.cfg.poll_max)
                }
                Err(e) => {
                    self.observer.on_error(hook, &e);
                    match e.disposition {
                        Disposition::Permanent => {
                            error!(error = %e, "permanent failure; abandoning hook");
                            return Exit::Complete(Verdict::abandon(e.to_string()), slot);
                        }
                        Disposition::AlreadyDone => continue,
                        Disposition::Retry => {
                            warn!(error = %e, throttled = e.is_throttle(), "transient failure; will retry");
                            backoff.next().unwrap_or(self.cfg.retry_max)
                        }
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // Another hook of the slot acted or completed: observe again now, and poll fast again.
                () = changed.notified() => poll = self.poll_delays(),
                () = heartbeat.ended() => return Exit::End(HookOutcome::AlreadyEnded),
                _ = shutdown.changed() => return interrupted(),
            }
        }
    }

    /// Runs `work` under the lock of slot `n` and a worker seat. `Err` is how the loop ends when the action
    /// ended or shutdown came while waiting for either (both are safe points; the heartbeat goes on).
    async fn locked<T>(
        &self,
        hook: &HookEvent,
        n: u32,
        shutdown: &mut watch::Receiver<bool>,
        heartbeat: &Heartbeat,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Exit> {
        let key = slot_key(hook, n);
        let _guard = tokio::select! {
            biased;
            () = heartbeat.ended() => return Err(Exit::End(HookOutcome::AlreadyEnded)),
            () = shutdown_requested(shutdown) => return Err(Exit::End(HookOutcome::Interrupted("shutdown".into()))),
            guard = self.locks.lock(&key) => guard,
        };
        self.seated(shutdown, heartbeat, work).await
    }

    /// Runs `work` on slot `n` under its lease (taken first when the driver has leases) and its lock; the
    /// work is cut off if the lease lapses meanwhile. `Err` ends the loop: the action ended, shutdown came,
    /// or the lease was lost (the hook stops acting on the slot at once; its message returns).
    async fn leased<T>(
        &self,
        hook: &HookEvent,
        n: u32,
        lease: &mut HookLease,
        shutdown: &mut watch::Receiver<bool>,
        heartbeat: &Heartbeat,
        work: impl std::future::Future<Output = Result<T, StepError>>,
    ) -> Result<Leased<T>, Exit> {
        let key = slot_key(hook, n);
        // Bounded, so that a hook kept out polls: its timeouts are checked and its wait is logged.
        let held = tokio::select! {
            biased;
            () = heartbeat.ended() => return Err(Exit::End(HookOutcome::AlreadyEnded)),
            () = shutdown_requested(shutdown) => return Err(Exit::End(HookOutcome::Interrupted("shutdown".into()))),
            held = lease.take(&key, self.cfg.poll_max) => held,
        };
        match held {
            Ok(Take::Held) => {}
            Ok(Take::Busy(why)) => return Ok(Leased::Busy(why)),
            Ok(Take::Lost(lost)) => {
                error!(slot = %key, "{lost}");
                return Err(Exit::End(HookOutcome::Interrupted(lost)));
            }
            Err(e) => return Ok(Leased::Done(Err(e))),
        }
        match self
            .locked(hook, n, shutdown, heartbeat, lease.within(work))
            .await?
        {
            Some(out) => Ok(Leased::Done(out)),
            None => {
                let lost = format!(
                    "the lease of slot {key} lapsed during a step; stopping work on the slot"
                );
                error!(slot = %key, "{lost}");
                Err(Exit::End(HookOutcome::Interrupted(lost)))
            }
        }
    }

    /// Runs `work` in a worker seat; the semaphore is fair, and never closed. A wait for an API token inside
    /// the work gives the seat up for the rest of it (`seat`).
    async fn seated<T>(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        heartbeat: &Heartbeat,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Exit> {
        let seat = tokio::select! {
            biased;
            () = heartbeat.ended() => return Err(Exit::End(HookOutcome::AlreadyEnded)),
            () = shutdown_requested(shutdown) => return Err(Exit::End(HookOutcome::Interrupted("shutdown".into()))),
            seat = Seat::take(self.workers.clone()) => seat,
        };
        Ok(match seat {
            Some(seat) => seat.scope(work).await,
            None => work.await,
        })
    }

    fn poll_delays(&self) -> impl Iterator<Item = Duration> {
        let min_ms = u64::try_from(self.cfg.poll_min.as_millis())
            .unwrap_or(500)
            .max(1);
        let max = self.cfg.poll_max;
        // 1x, 1.5x, 2.25x ... of poll_min, capped; fast state changes are seen quickly, long waits cost little.
        std::iter::successors(Some(min_ms as f64), |ms| Some(ms * 1.5))
            .map(move |ms| Duration::from_millis(ms as u64).min(max))
    }

    /// The hook's settings; `None` when it is not a hook of the group.
    async fn hook_spec(&self, hook: &HookEvent) -> Result<Option<HookSpec>, StepError> {
        let actions = self.actions.clone();
        let (group, name) = (hook.group.clone(), hook.hook_name.clone());
        let strategy = step_backoff(self.cfg.retry_base, self.cfg.retry_max).take(8);
        tokio_retry::RetryIf::start(
            strategy,
            || {
                let (actions, group, name) = (actions.clone(), group.clone(), name.clone());
                async move { actions.describe_hook(&group, &name).await }
            },
            |e: &StepError| e.is_retryable(),
        )
        .await
    }

    /// Completes the action, retrying transient failures. The single call site of `CompleteLifecycleAction`.
    async fn complete(&self, hook: &HookEvent, verdict: Verdict) -> HookOutcome {
        let action = hook.action();
        let result = verdict.result();
        let actions = self.actions.clone();
        let strategy = step_backoff(self.cfg.retry_base, self.cfg.retry_max).take(10);
        let done = tokio_retry::RetryIf::start(
            strategy,
            || {
                let (actions, action) = (actions.clone(), action.clone());
                async move { actions.complete(&action, result).await }
            },
            |e: &StepError| e.is_retryable(),
        )
        .await;
        match done {
            Ok(CompleteOutcome::Completed) => HookOutcome::Completed {
                result,
                reason: verdict.reason().to_string(),
            },
            Ok(CompleteOutcome::NotActive) => HookOutcome::AlreadyEnded,
            Err(e) => HookOutcome::Interrupted(format!("could not complete the action: {e}")),
        }
    }
}

/// What a piece of work on a slot under its lease came to.
enum Leased<T> {
    /// It ran (or the lease store failed: a retry).
    Done(Result<T, StepError>),
    /// Another replica holds the slot's lease still; why, for the wait.
    Busy(String),
}

/// How the step loop ended.
enum Exit {
    /// Complete the action with this verdict; the hook worked on this slot, if it had one.
    Complete(Verdict, Option<u32>),
    /// End the run without completing it.
    End(HookOutcome),
}

/// Resolves once `shutdown` turns true; never if its sender is gone without that.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "driver_workers_tests.rs"]
mod workers_tests;

#[cfg(test)]
#[path = "driver_wake_tests.rs"]
mod wake_tests;

#[cfg(test)]
#[path = "driver_slot_tests.rs"]
mod slot_tests;

#[cfg(test)]
#[path = "driver_lease_tests.rs"]
mod lease_tests;
