//! A group's lifecycle hooks, kept between reads. Every hook run needs its hook's settings twice (to verify
//! its message and for its heartbeat timeout), and `DescribeLifecycleHooks` takes one group a call, so an
//! AZ storm over G groups would spend G calls on settings that change only when an operator edits them.
//! `ferryd run` therefore refreshes every configured group's hooks in the background (`refresh`), spaced so
//! that the refresh uses at most one call a second, and trusts an entry for two refresh cycles. A hook not
//! among those kept is read again at once (`BatchedActions::describe_hook`), so a new hook is never refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::port::{HookSpec, LifecycleActions};

/// How long a group's hooks, once read, are trusted when nothing refreshes them.
pub const HOOKS_TTL: Duration = Duration::from_secs(60);

/// The background refresh never reads faster than one group per this.
pub const MIN_SPACING: Duration = Duration::from_secs(1);

/// Hooks by group, with when they were read.
#[derive(Debug)]
pub struct HookCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Vec<HookSpec>)>>,
}

impl HookCache {
    /// A cache whose entries are trusted for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// `group`'s hooks if they were read within the TTL.
    pub fn get(&self, group: &str) -> Option<Vec<HookSpec>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(group)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, h)| h.clone())
    }

    /// Keeps `hooks` as `group`'s, read now.
    pub fn put(&self, group: &str, hooks: &[HookSpec]) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.to_string(), (Instant::now(), hooks.to_vec()));
    }
}

/// When the background refresh reads each group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPlan {
    /// Between two groups' reads.
    pub spacing: Duration,
    /// One pass over every group.
    pub cycle: Duration,
}

impl RefreshPlan {
    /// Every one of `groups` read once per `every`, or more slowly when that would exceed one read per
    /// `MIN_SPACING`. `None` when `every` is zero (no background refresh) or there are no groups.
    pub fn new(every: Duration, groups: usize) -> Option<Self> {
        let n = u32::try_from(groups).ok().filter(|n| *n > 0)?;
        if every.is_zero() {
            return None;
        }
        let spacing = (every / n).max(MIN_SPACING);
        Some(Self {
            spacing,
            cycle: spacing * n,
        })
    }

    /// How long an entry is trusted: two cycles, so one failed read does not expire it.
    pub fn ttl(&self) -> Duration {
        (self.cycle * 2).max(HOOKS_TTL)
    }
}

/// Reads every group's hooks from `asg` into `cache`, one group every `plan.spacing`, round and round,
/// until `shutdown`. A failed read is logged and left to the next cycle (the entry stays trusted for two).
pub async fn refresh(
    asg: Arc<dyn LifecycleActions>,
    cache: Arc<HookCache>,
    groups: Vec<String>,
    plan: RefreshPlan,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(plan.spacing);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for group in groups.iter().cycle() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match asg.describe_hooks(group).await {
            Ok(hooks) => {
                debug!(asg = %group, hooks = hooks.len(), "lifecycle hooks refreshed");
                cache.put(group, &hooks);
            }
            Err(e) => {
                warn!(asg = %group, error = %e, "cannot refresh the group's lifecycle hooks; the next cycle tries again")
            }
        }
    }
}

#[cfg(test)]
#[path = "hook_cache_tests.rs"]
mod tests;
