//! One running hook: the in-process dedupe registry keyed by lifecycle action token, the task that admits
//! and runs the hook while extending its messages' visibility, and the delete/release that follows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_state_machine::{HookEvent, HookOutcome, StepError};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_retry::strategy::{jitter, ExponentialBackoff};
use tracing::{debug, error, info, warn, Instrument, Span};

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
    pub(crate) queue: Arc<dyn Queue>,
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
                delete_all(&shared, &deliveries).await;
            } else {
                release(&shared, &deliveries, &outcome).await;
            }
        }
        Fate::Ignored { delete: true } => delete_all(&shared, &deliveries).await,
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

async fn delete_all(shared: &Shared, deliveries: &[Delivery]) {
    for d in deliveries {
        delete_message(shared, &d.message_id, &d.receipt_handle).await;
    }
}

/// Extends every attached delivery's visibility every `extend_every`, until aborted.
async fn extend_loop(shared: Arc<Shared>, deliveries: Deliveries) {
    let every = shared.cfg.extend_every;
    let mut tick = interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current: Vec<Delivery> = locked(&deliveries)
            .iter()
            .filter(|d| d.extend)
            .cloned()
            .collect();
        for d in current {
            match shared
                .queue
                .extend_visibility(&d.receipt_handle, shared.cfg.visibility_timeout)
                .await
            {
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
    for d in deliveries {
        let call = shared
            .queue
            .extend_visibility(&d.receipt_handle, visibility);
        match tokio::time::timeout(RELEASE_TIMEOUT, call).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(message.id = %d.message_id, error = %e, "could not shorten visibility")
            }
            Err(_) => debug!(message.id = %d.message_id, "shortening visibility timed out"),
        }
    }
}

/// Deletes one message, retrying transient errors with backoff. A failure is logged and counted; the
/// message then returns, and its rerun finds the action already ended.
pub(crate) async fn delete_message(shared: &Shared, message_id: &str, receipt_handle: &str) {
    let cfg = &shared.cfg;
    let strategy =
        retry_delays(cfg.retry_base, cfg.retry_max).take(cfg.delete_attempts.saturating_sub(1));
    let done = tokio_retry::RetryIf::start(
        strategy,
        || shared.queue.delete(receipt_handle),
        |e: &StepError| e.is_retryable(),
    )
    .await;
    match done {
        Ok(()) => {
            debug!(message.id = %message_id, "message deleted");
            shared.observer.on_deleted();
        }
        Err(e) => {
            warn!(message.id = %message_id, error = %e, "could not delete message; it will be delivered again");
            shared.observer.on_delete_error(&e);
        }
    }
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
