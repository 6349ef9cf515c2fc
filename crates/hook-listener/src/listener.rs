//! The consume loop: long-poll while there is room, parse, dedupe by token, run hooks with bounded
//! concurrency, and stop polling at once on shutdown while in-flight hooks reach a safe point.
//!
//! Message policy:
//! - A hook is deleted only after a final outcome (completed, or the action already ended); every
//!   delivery of its token received meanwhile is deleted with it.
//! - An interrupted hook's messages are kept, and their visibility shortened to
//!   `interrupted_visibility` so they return soon.
//! - An unparseable body is logged (truncated) and left alone: the queue's redrive policy dead-letters it.
//! - Test notifications and recognised non-hook messages are deleted.
//! - A hook not admitted is deleted or left, as the handler says; a left one returns after the normal
//!   visibility timeout (not at once, which would busy-loop between this consumer and the queue).
//!
//! Deletes and visibility changes of all hooks are merged into `DeleteMessageBatch` and
//! `ChangeMessageVisibilityBatch` calls of up to ten entries (`batch_window`, see `batcher.rs`).

use std::sync::Arc;
use std::time::SystemTime;

use ferry_state_machine::HookEvent;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn, Instrument};

use crate::batcher::Batcher;
use crate::handler::{ConfigError, HookHandler, ListenerConfig, ListenerObserver};
use crate::inflight::{
    delete_messages, hook_span, retry_delays, run_hook, Claim, Delivery, InFlight, Shared,
};
use crate::parse::{parse_body, truncate, Notification};
use crate::queue::{Queue, QueueMessage};

/// How much of an unparseable body is logged.
const LOGGED_BODY_BYTES: usize = 200;

/// Counts of one run of the listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerReport {
    /// Receive calls made.
    pub polls: u64,
    /// Messages received.
    pub received: u64,
    /// Hook tasks started (after in-process dedupe).
    pub hooks_started: u64,
    /// Deliveries attached to an already running hook.
    pub duplicates: u64,
    /// Bodies that could not be parsed.
    pub parse_errors: u64,
}

/// Resolves when `shutdown` is true, or when its sender is gone (nobody can stop us any more; stop now).
async fn shutdown_signal(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn is_shutdown(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Consumes `queue` until `shutdown` turns true, then waits for in-flight hooks and returns.
///
/// Never returns early on queue or handler errors: receive errors are logged and backed off. Only an
/// invalid `cfg` is an error.
pub async fn run(
    queue: Arc<dyn Queue>,
    handler: Arc<dyn HookHandler>,
    cfg: ListenerConfig,
    observer: Arc<dyn ListenerObserver>,
    shutdown: watch::Receiver<bool>,
) -> Result<ListenerReport, ConfigError> {
    cfg.validate()?;
    let mut lp = Loop {
        room: Arc::new(Semaphore::new(cfg.max_in_flight)),
        shared: Arc::new(Shared {
            batcher: Batcher::new(queue.clone(), cfg.batch_window),
            queue,
            handler,
            observer,
            cfg,
            inflight: InFlight::default(),
        }),
        tasks: JoinSet::new(),
        report: ListenerReport::default(),
        shutdown,
    };
    lp.poll_until_shutdown().await;
    lp.drain().await;
    Ok(lp.report)
}

struct Loop {
    shared: Arc<Shared>,
    /// One permit per hook that may run; the loop receives no more messages than there are permits.
    room: Arc<Semaphore>,
    tasks: JoinSet<()>,
    report: ListenerReport,
    shutdown: watch::Receiver<bool>,
}

impl Loop {
    async fn poll_until_shutdown(&mut self) {
        let cfg = self.shared.cfg.clone();
        let mut stop = self.shutdown.clone();
        let mut backoff = retry_delays(cfg.retry_base, cfg.retry_max);
        loop {
            while let Some(done) = self.tasks.try_join_next() {
                log_join(done);
            }
            if is_shutdown(&stop) {
                return;
            }
            if self.room.available_permits() == 0 {
                debug!("max_in_flight hooks running; waiting for room before polling");
                tokio::select! {
                    biased;
                    _ = shutdown_signal(&mut stop) => return,
                    // Only this loop takes permits, so room seen here is still there at the receive.
                    permit = self.room.acquire() => drop(permit),
                    // Still alive while full: keep the liveness signal going.
                    _ = tokio::time::sleep(cfg.wait) => self.shared.observer.on_poll(),
                }
                continue;
            }
            let room = self
                .room
                .available_permits()
                .min(usize::try_from(cfg.batch).unwrap_or(1));
            let max = i32::try_from(room).unwrap_or(cfg.batch);
            self.shared.observer.on_poll();
            self.report.polls += 1;
            let received = tokio::select! {
                biased;
                // Dropping the receive aborts the long poll; anything it had taken returns after the
                // visibility timeout.
                _ = shutdown_signal(&mut stop) => return,
                r = self.shared.queue.receive(max, cfg.wait) => r,
            };
            match received {
                Ok(messages) => {
                    backoff = retry_delays(cfg.retry_base, cfg.retry_max);
                    self.shared.observer.on_received(messages.len());
                    self.report.received += messages.len() as u64;
                    for m in messages {
                        self.dispatch(m);
                    }
                }
                Err(e) => {
                    self.shared.observer.on_receive_error(&e);
                    let delay = backoff.next().unwrap_or(cfg.retry_max);
                    warn!(error = %e, throttled = e.is_throttle(), retry_in_ms = delay.as_millis() as u64, "receive failed; backing off");
                    tokio::select! {
                        biased;
                        _ = shutdown_signal(&mut stop) => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Handles one received message without blocking the loop: deletes and hook runs are spawned.
    fn dispatch(&mut self, m: QueueMessage) {
        if let Some(lag) = m
            .sent_at
            .and_then(|sent| SystemTime::now().duration_since(sent).ok())
        {
            self.shared.observer.on_receive_lag(lag);
        }
        match parse_body(&m.body) {
            Err(e) => {
                self.report.parse_errors += 1;
                warn!(
                    message.id = %m.message_id,
                    receive_count = m.receive_count,
                    error = %e,
                    body = %truncate(&m.body, LOGGED_BODY_BYTES),
                    "unparseable message; leaving it for the dead-letter queue"
                );
                self.shared.observer.on_parse_error(&e);
            }
            Ok(Notification::Test { group }) => {
                info!(message.id = %m.message_id, asg = group.as_deref().unwrap_or("?"), "test notification; deleting it");
                self.spawn_delete(m);
            }
            Ok(Notification::Other(what)) => {
                info!(message.id = %m.message_id, kind = %what, "not a lifecycle action; deleting it");
                self.spawn_delete(m);
            }
            Ok(Notification::Hook(hook)) => self.start_hook(hook, &m),
        }
    }

    fn spawn_delete(&mut self, m: QueueMessage) {
        let shared = self.shared.clone();
        let delivery = Delivery::new(&m.message_id, &m.receipt_handle);
        self.tasks
            .spawn(async move { delete_messages(&shared, &[delivery]).await });
    }

    fn start_hook(&mut self, hook: HookEvent, m: &QueueMessage) {
        let span = hook_span(&hook);
        let delivery = Delivery::new(&m.message_id, &m.receipt_handle);
        let deliveries = match self.shared.inflight.claim(&hook.token, delivery) {
            Claim::Attached => {
                span.in_scope(|| {
                    info!(message.id = %m.message_id, receive_count = m.receive_count, "duplicate delivery; attached to the running hook")
                });
                self.report.duplicates += 1;
                self.shared.observer.on_duplicate();
                return;
            }
            Claim::New(deliveries) => deliveries,
        };
        let Ok(permit) = self.room.clone().try_acquire_owned() else {
            // Unreachable while only this loop takes permits; if it happens, the message simply returns.
            self.shared.inflight.finish(&hook.token);
            span.in_scope(
                || warn!(message.id = %m.message_id, "no room for the hook; leaving its message"),
            );
            return;
        };
        span.in_scope(
            || info!(message.id = %m.message_id, receive_count = m.receive_count, "hook received"),
        );
        self.report.hooks_started += 1;
        let task = run_hook(
            self.shared.clone(),
            hook,
            deliveries,
            permit,
            self.shutdown.clone(),
        );
        self.tasks.spawn(task.instrument(span));
    }

    /// Waits for every in-flight hook and delete to finish.
    async fn drain(&mut self) {
        let running = self.tasks.len();
        if running > 0 {
            info!(
                tasks = running,
                "shutdown: polling stopped; waiting for in-flight hooks to reach a safe point"
            );
        }
        while let Some(done) = self.tasks.join_next().await {
            log_join(done);
        }
        info!("listener stopped");
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        error!(error = %e, "listener task failed");
    }
}

#[cfg(test)]
#[path = "listener_fixture.rs"]
mod fixture;

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "listener_batch_tests.rs"]
mod batch_tests;
