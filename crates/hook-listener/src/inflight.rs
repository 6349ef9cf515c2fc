//! One running hook: the in-process dedupe registry keyed by lifecycle action token, the task that admits
//! and runs the hook while extending its messages' visibility, and the delete/release that follows. Deletes
//! and visibility changes go through the [`Batcher`], which merges those of every hook into batch calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_state_machine::{HookEvent, HookOutcome, StepError};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_retry::strategy::{jitter, ExponentialBackoff};
use tracing::{debug, error, info, warn, Instrument, Span};

use crate::batcher::Batcher;
use crate::handler::{Admission, HookHandler, ListenerConfig, ListenerObserver};
use crate::queue::Queue;

/// The longest a release (visibility change on an interrupted hook) may take; it is best-effort.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// One delivery of a hook's message.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) message_id: String,
    pub(crate) receipt_handle: String,
    /// Cleared once SQS refuses to extend this handle (e.g. the message was received again elsewhere).
    extend: bool,
}

impl Delivery {
    pub(crate) fn new(message_id: &str, receipt_handle: &str) -> Self {
        Self {
            message_id: message_id.to_string(),
            receipt_handle: receipt_handle.to_string(),
            extend: true,
        }
    }
}

/// The deliveries attached to one running hook.
pub(crate) type Deliveries = Arc<Mutex<Vec<Delivery>>>;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`InFlight::claim`] did with a delivery.
pub(crate) enum Claim {
    /// A task for the token is already running; the delivery was attached to it.
    Attached,
    /// No task was running; the caller must start one with these deliveries.
    New(Deliveries),
}

/// The hooks running in this process, by lifecycle action token.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    tasks: Mutex<HashMap<String, Deliveries>>,
}

impl InFlight {
    /// Attaches the delivery to the token's running task, or registers a new one.
    pub(crate) fn claim(&self, token: &str, delivery: Delivery) -> Claim {
        let mut tasks = locked(&self.tasks);
        if let Some(running) = tasks.get(token) {
            locked(running).push(delivery);
            return Claim::Attached;
        }
        let deliveries = Arc::new(Mutex::new(vec![delivery]));
        tasks.insert(token.to_string(), deliveries.clone());
        Claim::New(deliveries)
    }

    /// Unregisters the token and returns every delivery attached to it. Atomic with `claim`, so a delivery
    /// is either in the returned list or starts a new task.
    pub(crate) fn finish(&self, token: &str) -> Vec<Delivery> {
        let mut tasks = locked(&self.tasks);
        match tasks.remove(token) {
            Some(d) => locked(&d).clone(),
            None => Vec::new(),
        }
    }
}

/// What a hook task shares with the listener.
pub(crate) struct Shared {
    /// For receives; deletes and visibility changes go through `batcher`.
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) batcher: Batcher,
    pub(crate) handler: Arc<dyn HookHandler>,
    pub(crate) observer: Arc<dyn ListenerObserver>,
    pub(crate) cfg: ListenerConfig,
    pub(crate) inflight: InFlight,
}

/// The tracing span of one hook run, with the fields `hook.token`, `asg`, `instance.id` and `transition`.
pub fn hook_span(hook: &HookEvent) -> Span {
    tracing::info_span!(
        "hook",
        hook.token = %hook.token,
        asg = %hook.group,
        instance.id = %hook.instance_id,
        transition = %hook.transition.label(),
    )
}

/// Admits and runs one hook, extending its messages' visibility meanwhile, then deletes or releases them.
/// Holds `permit` (a slot of `max_in_flight`) until done. Run it inside [`hook_span`].
pub(crate) async fn run_hook(
    shared: Arc<Shared>,
    hook: HookEvent,
    deliveries: Deliveries,
    permit: OwnedSemaphorePermit,
    shutdown: watch::Receiver<bool>,
) {
    let _permit = permit;
    let span = Span::current();
    let extender = tokio::spawn(extend_loop(shared.clone(), deliveries).instrument(span.clone()));

    // The handler runs in its own task, so a panic there ends the hook as interrupted, not this task.
    let handler = shared.handler.clone();
    let admitted = {
        let hook = hook.clone();
        tokio::spawn(async move { handler.admit(&hook).await }.instrument(span.clone())).await
    };
    let fate = match admitted {
        Ok(Admission::Work) if *shutdown.borrow() => {
            Fate::Ran(HookOutcome::Interrupted("shutdown before start".into()))
        }
        Ok(Admission::Work) => {
            let handler = shared.handler.clone();
            let hook = hook.clone();
            let handle = async move { handler.handle(hook, shutdown).await };
            let run = tokio::spawn(handle.instrument(span.clone())).await;
            Fate::Ran(run.unwrap_or_else(|e| {
                error!(error = %e, "hook handler panicked or was cancelled");
                HookOutcome::Interrupted(format!("handler failed: {e}"))
            }))
        }
        Ok(Admission::Ignore { delete, reason }) => {
            info!(reason = %reason, delete, "hook not admitted");
            shared.observer.on_ignored(&hook, delete);
            Fate::Ignored { delete }
        }
        Err(e) => {
            error!(error = %e, "hook admission panicked or was cancelled");
            Fate::Ran(HookOutcome::Interrupted(format!("admission failed: {e}")))
        }
    };

    // Stop extending before deciding the messages' fate, so a late extension cannot undo a release.
    extender.abort();
    let _ = extender.await;
    let deliveries = shared.inflight.finish(&hook.token);
    match fate {
        Fate::Ran(outcome) => {
            shared.observer.on_outcome(&hook, &outcome);
            if outcome.is_final() {
                delete_messages(&shared, &deliveries).await;
            } else {
                release(&shared, &deliveries, &outcome).await;
            }
        }
        Fate::Ignored { delete: true } => delete_messages(&shared, &deliveries).await,
        Fate::Ignored { delete: false } => {
            debug!(
                messages = deliveries.len(),
                "leaving the ignored hook's messages on the queue"
            );
        }
    }
}

/// How a hook task ended.
enum Fate {
    /// The handler ran (or was prevented from running) to this outcome.
    Ran(HookOutcome),
    /// The hook was not admitted.
    Ignored {
        /// Whether its messages are deleted.
        delete: bool,
    },
}

/// The longest a visibility extension hides a message. An hour: after a crash the restarted daemon (or
/// another replica's periodic reconciliation) works the action without its message, so a long hiding costs
/// no progress, and an AZ storm's hooks that wait an hour make a handful of extensions, not hundreds.
pub(crate) const MAX_EXTENSION: Duration = Duration::from_secs(3600);

/// How far to extend a hook's visibility once it has run for `age`: the configured timeout at first, then
/// as long as the hook has already run (so a long wait costs a logarithmic number of calls), at most
/// `MAX_EXTENSION`, never less than `base`.
pub(crate) fn extension(base: Duration, age: Duration) -> Duration {
    age.min(MAX_EXTENSION).max(base)
}

/// Extends every attached delivery's visibility, first after `extend_every`, until aborted: each extension
/// is `extension(visibility_timeout, age)`, and the next one falls due when the same share of it has
/// passed as `extend_every` is of the timeout. Each round is one request to the batcher, so the rounds of
/// hooks that started together share calls.
async fn extend_loop(shared: Arc<Shared>, deliveries: Deliveries) {
    let base = shared.cfg.visibility_timeout;
    let share = shared.cfg.extend_every.as_secs_f64() / base.as_secs_f64().max(f64::EPSILON);
    let started = Instant::now();
    let mut next = started + shared.cfg.extend_every;
    loop {
        tokio::time::sleep_until(next).await;
        let to = extension(base, started.elapsed());
        next = Instant::now() + to.mul_f64(share.clamp(0.0, 1.0));
        let current: Vec<Delivery> = locked(&deliveries)
            .iter()
            .filter(|d| d.extend)
            .cloned()
            .collect();
        if current.is_empty() {
            continue;
        }
        let handles: Vec<String> = current.iter().map(|d| d.receipt_handle.clone()).collect();
        let results = shared.batcher.change_visibility(&handles, to).await;
        for (d, result) in current.iter().zip(results) {
            match result {
                Ok(()) => debug!(message.id = %d.message_id, "visibility extended"),
                Err(e) if e.is_retryable() => {
                    warn!(message.id = %d.message_id, error = %e, "visibility extension failed; retrying next round")
                }
                Err(e) => {
                    // The handle is spent (deleted, or received again elsewhere): stop extending it, but keep
                    // it for the delete, which tolerates spent handles.
                    warn!(message.id = %d.message_id, error = %e, "visibility extension refused; no longer extending this delivery");
                    for held in locked(&deliveries).iter_mut() {
                        if held.receipt_handle == d.receipt_handle {
                            held.extend = false;
                        }
                    }
                }
            }
        }
    }
}

/// Makes an interrupted hook's messages visible again soon (best-effort), so they are retried promptly.
async fn release(shared: &Shared, deliveries: &[Delivery], outcome: &HookOutcome) {
    let Some(visibility) = shared.cfg.interrupted_visibility else {
        info!(
            outcome = outcome.label(),
            "hook interrupted; its messages return after their visibility timeout"
        );
        return;
    };
    info!(
        outcome = outcome.label(),
        return_in_s = visibility.as_secs(),
        "hook interrupted; its messages will return"
    );
    if deliveries.is_empty() {
        return;
    }
    let handles: Vec<String> = deliveries
        .iter()
        .map(|d| d.receipt_handle.clone())
        .collect();
    let call = shared.batcher.change_visibility(&handles, visibility);
    // On a timeout the requests are dropped: those not yet sent are not sent.
    match tokio::time::timeout(RELEASE_TIMEOUT, call).await {
        Ok(results) => {
            for (d, result) in deliveries.iter().zip(results) {
                if let Err(e) = result {
                    debug!(message.id = %d.message_id, error = %e, "could not shorten visibility");
                }
            }
        }
        Err(_) => debug!(
            messages = deliveries.len(),
            "shortening visibility timed out"
        ),
    }
}

/// Deletes the deliveries' messages (in one request to the batcher), retrying transient errors of each
/// with backoff up to `delete_attempts` attempts. A failure is logged and counted; that message then
/// returns, and its rerun finds the action already ended.
pub(crate) async fn delete_messages(shared: &Shared, deliveries: &[Delivery]) {
    let cfg = &shared.cfg;
    let mut delays =
        retry_delays(cfg.retry_base, cfg.retry_max).take(cfg.delete_attempts.saturating_sub(1));
    let mut pending: Vec<&Delivery> = deliveries.iter().collect();
    while !pending.is_empty() {
        let handles: Vec<String> = pending.iter().map(|d| d.receipt_handle.clone()).collect();
        let results = shared.batcher.delete(&handles).await;
        let mut again = Vec::new();
        for (d, result) in pending.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    debug!(message.id = %d.message_id, "message deleted");
                    shared.observer.on_deleted();
                }
                Err(e) if e.is_retryable() => again.push((d, e)),
                Err(e) => delete_failed(shared, d, &e),
            }
        }
        if again.is_empty() {
            return;
        }
        let Some(delay) = delays.next() else {
            for (d, e) in &again {
                delete_failed(shared, d, e);
            }
            return;
        };
        debug!(
            messages = again.len(),
            retry_in_ms = delay.as_millis() as u64,
            "delete failed; retrying"
        );
        tokio::time::sleep(delay).await;
        pending = again.into_iter().map(|(d, _)| d).collect();
    }
}

fn delete_failed(shared: &Shared, d: &Delivery, e: &StepError) {
    warn!(message.id = %d.message_id, error = %e, "could not delete message; it will be delivered again");
    shared.observer.on_delete_error(e);
}

/// Exponential backoff from `base` (about 1x, 2x, 4x … of it) capped at `max`, with "equal jitter": each
/// delay is at least half its un-jittered value. (`step_backoff`'s full jitter may draw a delay near zero,
/// which for a loop that retries a failing receive means bursts of calls.)
pub(crate) fn retry_delays(base: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
    ExponentialBackoff::from_millis(2)
        .factor(base_ms / 2 + 1)
        .max_delay(max)
        .map(|d| d / 2 + jitter(d / 2))
}
