//! What the listener calls out to: the `HookHandler` that admits and runs hooks, the `ListenerObserver`
//! for metrics, and the listener's configuration.

use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::{HookEvent, HookOutcome, StepError};
use tokio::sync::watch;

use crate::parse::ParseError;
use crate::queue::{MAX_BATCH, MAX_VISIBILITY, MAX_WAIT};

/// The default [`ListenerConfig::batch_window`].
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_secs(1);
/// The longest [`ListenerConfig::batch_window`] allowed: it delays every delete and visibility change.
pub const MAX_BATCH_WINDOW: Duration = Duration::from_secs(1);

/// Whether ferry should work a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Run the hook.
    Work,
    /// Do not run it.
    Ignore {
        /// Delete the message (e.g. the group is not managed and never will be). `false` leaves it on the
        /// queue: it returns after the visibility timeout, for this or another consumer, and is
        /// dead-lettered by the redrive policy if no consumer ever works it.
        delete: bool,
        /// Why, for the log.
        reason: String,
    },
}

/// Admits and runs hooks; ferryd implements it over the `Driver`.
#[async_trait]
pub trait HookHandler: Send + Sync + 'static {
    /// Whether ferry should work this hook (configured + managed group), and if not, whether to delete
    /// the message.
    async fn admit(&self, hook: &HookEvent) -> Admission;

    /// Runs the hook to an outcome; `shutdown` turns true on shutdown, and the handler should then return
    /// `HookOutcome::Interrupted` at its next safe point.
    async fn handle(&self, hook: HookEvent, shutdown: watch::Receiver<bool>) -> HookOutcome;
}

/// Observes the listener, for metrics. Every method has a no-op default.
pub trait ListenerObserver: Send + Sync {
    /// The loop is alive: it is about to long-poll, or (every `wait`) it is waiting for room because
    /// `max_in_flight` hooks are running. A liveness signal for health checks.
    fn on_poll(&self) {}
    /// A receive returned `n` messages (0 for an empty poll).
    fn on_received(&self, _n: usize) {}
    /// A receive failed.
    fn on_receive_error(&self, _error: &StepError) {}
    /// A message was received this long after it was sent (now − `SentTimestamp`).
    fn on_receive_lag(&self, _lag: Duration) {}
    /// A body could not be parsed; the message is left for the dead-letter queue.
    fn on_parse_error(&self, _error: &ParseError) {}
    /// A delivery of a hook already running here was attached to the running task.
    fn on_duplicate(&self) {}
    /// A hook was not admitted.
    fn on_ignored(&self, _hook: &HookEvent, _delete: bool) {}
    /// A hook run ended.
    fn on_outcome(&self, _hook: &HookEvent, _outcome: &HookOutcome) {}
    /// A message was deleted.
    fn on_deleted(&self) {}
    /// Deleting a message failed for good (it will be delivered again).
    fn on_delete_error(&self, _error: &StepError) {}
}

/// An observer that observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoListenerObserver;
impl ListenerObserver for NoListenerObserver {}

/// The listener's timing and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Most hooks run at once; the loop receives no more than there is room for.
    pub max_in_flight: usize,
    /// Most messages per receive (1..=10).
    pub batch: i32,
    /// Long-poll wait (1 s..=20 s).
    pub wait: Duration,
    /// The visibility timeout running hooks' messages are extended to.
    pub visibility_timeout: Duration,
    /// How often running hooks' messages are extended; must be shorter than `visibility_timeout`.
    pub extend_every: Duration,
    /// The visibility set on an interrupted hook's messages, so they return soon (`None`: leave them to
    /// lapse on their own).
    pub interrupted_visibility: Option<Duration>,
    /// Attempts at each delete before giving up (transient errors only).
    pub delete_attempts: usize,
    /// First delay after a failed receive or delete.
    pub retry_base: Duration,
    /// Longest delay after failed receives.
    pub retry_max: Duration,
    /// How long deletes and visibility changes are gathered before they go out as `DeleteMessageBatch` /
    /// `ChangeMessageVisibilityBatch` calls of up to ten entries; a full batch goes at once. 0..=1 s, and
    /// shorter than `extend_every`; 0 batches only requests that coincide. Default 1 s (an eighth of the
    /// visibility timeout when that is shorter).
    pub batch_window: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self::with_visibility(Duration::from_secs(60))
    }
}

impl ListenerConfig {
    /// The defaults, for a queue whose visibility timeout is `visibility_timeout`; extends at half of it.
    pub fn with_visibility(visibility_timeout: Duration) -> Self {
        Self {
            max_in_flight: 16,
            batch: MAX_BATCH,
            wait: MAX_WAIT,
            visibility_timeout,
            extend_every: visibility_timeout / 2,
            interrupted_visibility: Some(Duration::from_secs(10)),
            delete_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            // A short visibility timeout (tests) must not wait its extensions out.
            batch_window: DEFAULT_BATCH_WINDOW.min(visibility_timeout / 8),
        }
    }

    /// Checks the limits; `run` refuses an invalid configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: String| Err(ConfigError(why));
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1".into());
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return bad(format!("batch must be 1..=10, not {}", self.batch));
        }
        if self.wait < Duration::from_secs(1) || self.wait > MAX_WAIT {
            // A zero wait is a short poll: an empty queue would be polled in a tight loop.
            return bad(format!("wait must be 1s..=20s, not {:?}", self.wait));
        }
        if self.visibility_timeout < Duration::from_secs(2)
            || self.visibility_timeout > MAX_VISIBILITY
        {
            return bad(format!(
                "visibility_timeout must be 2s..=12h, not {:?}",
                self.visibility_timeout
            ));
        }
        if self.extend_every.is_zero() || self.extend_every >= self.visibility_timeout {
            return bad(format!(
                "extend_every ({:?}) must be positive and shorter than visibility_timeout ({:?})",
                self.extend_every, self.visibility_timeout
            ));
        }
        if self.delete_attempts == 0
            || self.retry_base.is_zero()
            || self.retry_max < self.retry_base
        {
            return bad("delete_attempts must be >= 1 and 0 < retry_base <= retry_max".into());
        }
        if self.batch_window > MAX_BATCH_WINDOW || self.batch_window >= self.extend_every {
            return bad(format!(
                "batch_window must be at most 1s and shorter than extend_every ({:?}), not {:?}",
                self.extend_every, self.batch_window
            ));
        }
        Ok(())
    }
}

/// An invalid [`ListenerConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid listener config: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_enforced() {
        let d = ListenerConfig::default();
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(
            (d.max_in_flight, d.batch, d.wait),
            (16, 10, Duration::from_secs(20))
        );
        assert_eq!(d.extend_every, Duration::from_secs(30));
        assert_eq!(d.batch_window, Duration::from_secs(1));
        let no_window = ListenerConfig {
            batch_window: Duration::ZERO,
            ..d.clone()
        };
        assert_eq!(no_window.validate(), Ok(()));
        for bad in [
            ListenerConfig {
                max_in_flight: 0,
                ..d.clone()
            },
            ListenerConfig {
                batch: 11,
                ..d.clone()
            },
            ListenerConfig {
                wait: Duration::from_secs(21),
                ..d.clone()
            },
            ListenerConfig {
                wait: Duration::ZERO,
                ..d.clone()
            },
            ListenerConfig {
                extend_every: Duration::from_secs(60),
                ..d.clone()
            },
            ListenerConfig {
                delete_attempts: 0,
                ..d.clone()
            },
            ListenerConfig {
                batch_window: Duration::from_millis(1001),
                ..d.clone()
            },
            ListenerConfig {
                batch_window: Duration::from_secs(1),
                extend_every: Duration::from_secs(1),
                visibility_timeout: Duration::from_secs(2),
                ..d.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
