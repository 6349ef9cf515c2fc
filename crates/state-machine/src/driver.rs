//! Runs one hook: observe, decide and act through `HookWork`, heartbeat while waiting, then complete the
//! lifecycle action. The only place in ferry that calls `CompleteLifecycleAction`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::error::{step_backoff, Disposition, StepError};
use crate::lock::SlotLocks;
use crate::model::{HookEvent, LifecycleResult, SlotKey};
use crate::port::{CompleteOutcome, HookSpec, LifecycleActions};
use crate::verdict::Verdict;

/// What one call of `HookWork::step` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A mutation was made: step again at once.
    Acted(String),
    /// Waiting on AWS: step again after a poll interval.
    Waiting(String),
    /// The work is finished: complete the action with this verdict.
    Finished(Verdict),
}

/// The effectful shell of one kind of hook: observe AWS, ask the pure machine, perform one step.
#[async_trait]
pub trait HookWork: Send + Sync {
    /// Performs at most one mutating step. `elapsed` is how long the hook has been running.
    async fn step(&self, hook: &HookEvent, elapsed: Duration) -> Result<Progress, StepError>;
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// ferry completed the action.
    Completed {
        /// The result it was completed with.
        result: LifecycleResult,
        /// Why.
        reason: String,
    },
    /// The action was already completed or had expired; nothing more to do.
    AlreadyEnded,
    /// Stopped at a safe point (shutdown) or could not complete: the message must come back.
    Interrupted(String),
}

impl HookOutcome {
    /// Whether the hook's message may be deleted.
    pub fn is_final(&self) -> bool {
        !matches!(self, HookOutcome::Interrupted(_))
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            HookOutcome::Completed {
                result: LifecycleResult::Continue,
                ..
            } => "continue",
            HookOutcome::Completed {
                result: LifecycleResult::Abandon,
                ..
            } => "abandon",
            HookOutcome::AlreadyEnded => "already_ended",
            HookOutcome::Interrupted(_) => "interrupted",
        }
    }
}

/// Observes hook runs, for metrics and notifications. Every method has a no-op default.
pub trait HookObserver: Send + Sync {
    /// A step made progress or waited.
    fn on_progress(&self, _hook: &HookEvent, _progress: &Progress) {}
    /// A step failed.
    fn on_error(&self, _hook: &HookEvent, _error: &StepError) {}
    /// A heartbeat was recorded.
    fn on_heartbeat(&self, _hook: &HookEvent) {}
    /// The run ended.
    fn on_end(&self, _hook: &HookEvent, _outcome: &HookOutcome, _took: Duration) {}
}

/// An observer that observes nothing.
#[derive(Debug, Default)]
pub struct NoObserver;
impl HookObserver for NoObserver {}

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
    /// Longest delay after a transient error.
    pub retry_max: Duration,
    /// Abandon this long before the hook's global timeout would pass.
    pub global_margin: Duration,
    /// Heartbeat timeout assumed when the hook cannot be described.
    pub default_heartbeat_timeout: Duration,
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
            default_heartbeat_timeout: Duration::from_secs(3600),
        }
    }
}

/// Runs hooks to completion.
#[derive(Clone)]
pub struct Driver {
    actions: Arc<dyn LifecycleActions>,
    locks: Arc<dyn SlotLocks>,
    observer: Arc<dyn HookObserver>,
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
            cfg,
        }
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
            Ok(spec) => spec,
            Err(e) => return HookOutcome::Interrupted(format!("cannot describe hook: {e}")),
        };
        let global = spec.global_timeout();
        let heartbeat_every = spec
            .heartbeat_timeout
            .mul_f64(self.cfg.heartbeat_fraction.clamp(0.05, 0.95));
        let began = Instant::now();
        // The action's clock started when Auto Scaling announced it; heartbeat at once if that was long ago,
        // or if nobody knows when it started (an action found by reconciliation).
        let mut next_heartbeat = match hook.time {
            Some(_) => began + heartbeat_every.saturating_sub(started_ago),
            None if hook.token.is_empty() => began,
            None => began + heartbeat_every.saturating_sub(started_ago),
        };
        let mut poll = self.poll_delays();
        // The last wait reason logged: a wait is logged when it starts or changes, not at every poll.
        let mut last_wait: Option<String> = None;
        let mut backoff = step_backoff(self.cfg.retry_base, self.cfg.retry_max);
        let slot = SlotKey {
            group: hook.group.clone(),
            slot: 0,
        };
        loop {
            if *shutdown.borrow() {
                return HookOutcome::Interrupted("shutdown".into());
            }
            let elapsed = started_ago + began.elapsed();
            if elapsed + self.cfg.global_margin >= global {
                let why = format!(
                    "the hook's global timeout ({}s = min(48h, 100 x heartbeat timeout)) is about to pass after {}s",
                    global.as_secs(),
                    elapsed.as_secs()
                );
                error!(reason = %why, "abandoning hook");
                return self.complete(hook, Verdict::abandon(why)).await;
            }
            let step = {
                let _guard = self.locks.lock(&slot).await;
                work.step(hook, elapsed).await
            };
            let delay = match step {
                Ok(Progress::Finished(verdict)) => return self.complete(hook, verdict).await,
                Ok(p @ Progress::Acted(_)) => {
                    self.observer.on_progress(hook, &p);
                    poll = self.poll_delays();
                    backoff = step_backoff(self.cfg.retry_base, self.cfg.retry_max);
                    continue;
                }
                Ok(p @ Progress::Waiting(_)) => {
                    if let Progress::Waiting(what) = &p {
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
                            return self.complete(hook, Verdict::abandon(e.to_string())).await;
                        }
                        Disposition::AlreadyDone => continue,
                        Disposition::Retry => {
                            warn!(error = %e, throttled = e.is_throttle(), "transient failure; will retry");
                            backoff.next().unwrap_or(self.cfg.retry_max)
                        }
                    }
                }
            };
            // Wait, heartbeating whenever one falls due.
            let wake = Instant::now() + delay;
            loop {
                let until = wake.min(next_heartbeat);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shutdown.changed() => return HookOutcome::Interrupted("shutdown".into()),
                }
                if Instant::now() >= next_heartbeat {
                    match self.actions.heartbeat(&hook.action()).await {
                        Ok(CompleteOutcome::Completed) => {
                            self.observer.on_heartbeat(hook);
                            next_heartbeat = Instant::now() + heartbeat_every;
                        }
                        Ok(CompleteOutcome::NotActive) => return HookOutcome::AlreadyEnded,
                        Err(e) => {
                            warn!(error = %e, "heartbeat failed; retrying soon");
                            next_heartbeat =
                                Instant::now() + heartbeat_every.min(self.cfg.retry_max) / 4;
                        }
                    }
                }
                if Instant::now() >= wake {
                    break;
                }
            }
        }
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

    async fn hook_spec(&self, hook: &HookEvent) -> Result<HookSpec, StepError> {
        let actions = self.actions.clone();
        let (group, name) = (hook.group.clone(), hook.hook_name.clone());
        let strategy = step_backoff(self.cfg.retry_base, self.cfg.retry_max).take(8);
        let found = tokio_retry::RetryIf::start(
            strategy,
            || {
                let (actions, group, name) = (actions.clone(), group.clone(), name.clone());
                async move { actions.describe_hook(&group, &name).await }
            },
            |e: &StepError| e.is_retryable(),
        )
        .await?;
        Ok(found.unwrap_or_else(|| {
            warn!(hook = %hook.hook_name, "lifecycle hook not found; assuming the default heartbeat timeout");
            HookSpec {
                name: hook.hook_name.clone(),
                transition: Some(hook.transition),
                heartbeat_timeout: self.cfg.default_heartbeat_timeout,
                default_result: LifecycleResult::Abandon,
                target_arn: None,
            }
        }))
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

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
