//! How a hook run ended (`HookOutcome`) and who is told about runs (`HookObserver`).

use std::time::Duration;

use crate::driver::Progress;
use crate::error::StepError;
use crate::model::{HookEvent, LifecycleResult};

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
    /// The hook cannot be worked (it is not a hook of the group): nothing was done or completed, and the
    /// message may go. The reason says why.
    Rejected(String),
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
            HookOutcome::Rejected(_) => "rejected",
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
