//! The launch's `source_unreachable` policy in the shell: apply it to the slot's steps, tell the operator
//! (log, [`SourceEvents`]) once per hook what it saw, and mark a verdict whose data came from a recovery point.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, UNIX_EPOCH};

use ferry_state_machine::machine::VolumeStep;
use ferry_state_machine::observe::HolderState;
use ferry_state_machine::unreachable::{apply_source_policy, Lineage, SourceView, Unreachable};
use ferry_state_machine::{AttachedData, HookEvent, Verdict};
use tracing::{error, warn};

use super::{LaunchWork, Observed};

/// Hears what the `source_unreachable` policy saw, for metrics, logs and the webhook. Each is told once per
/// hook run.
pub trait SourceEvents: Send + Sync {
    /// A launch of `group` onto `instance` has waited `waited` (at least `restore_latest_after_secs`) on a
    /// source it cannot get; `policy` is `wait` or `restore-latest`.
    fn source_unreachable(&self, group: &str, instance: &str, policy: &str, waited: Duration);
    /// A launch of `group`'s slot `slot` onto `instance` is ready with data restored from a recovery
    /// point: the writes of the last `loss_window_secs` before the old instance's end are lost. `attached`
    /// is what it attached.
    fn restored_latest(
        &self,
        group: &str,
        slot: u32,
        instance: &str,
        loss_window_secs: u64,
        attached: &[AttachedData],
    );
}

/// The start of the note on a launch verdict whose data came from a recovery point (`restore-latest`).
pub const RESTORED_LATEST: &str = "restored the newest recovery point, source unreachable";

impl LaunchWork {
    fn policy_name(&self) -> &'static str {
        if self.group.restore_latest {
            "restore-latest"
        } else {
            "wait"
        }
    }

    /// Applies `source_unreachable` to the slot's steps, and logs (once per hook and kind) what it saw.
    pub(super) fn source_policy(
        &self,
        hook: &HookEvent,
        observed: &[Observed],
        holders: &HashMap<String, HolderState>,
        elapsed: Duration,
        now: i64,
    ) -> (Vec<VolumeStep>, Unreachable) {
        let token = hook.ledger_key();
        let lineages: Vec<Lineage<'_>> = observed
            .iter()
            .map(|(_, v, s)| Lineage {
                volumes: v,
                snapshots: s,
            })
            .collect();
        let mut steps: Vec<VolumeStep> = observed.iter().map(|(s, _, _)| s.clone()).collect();
        let seen = apply_source_policy(
            &SourceView {
                token: &token,
                lineages: &lineages,
                elapsed,
                launch_started: launch_started(hook, elapsed, now),
                holders,
                policy: self.group.source_policy(),
            },
            &mut steps,
        );
        let policy = self.policy_name();
        let kind = match &seen {
            Unreachable::Reachable => return (steps, seen),
            Unreachable::Waiting { waited, .. } if *waited < self.group.restore_latest_after => {
                return (steps, seen)
            }
            Unreachable::Waiting { .. } => "waiting",
            Unreachable::Restoring(_) => "restoring",
            Unreachable::NothingToRestore => "nothing",
            Unreachable::AlreadyMoving => "moving",
            Unreachable::SetLost(_) => "lost",
        };
        let first = self
            .reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), kind)
            != Some(kind);
        if !first {
            return (steps, seen);
        }
        // The source is unreachable past the bound, whatever the policy makes of it: told once per hook run.
        let told = self
            .reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(format!("{token}#unreachable"), "told")
            .is_some();
        if !told {
            if let Some(e) = &self.events {
                e.source_unreachable(&self.group.name, &hook.instance_id, policy, elapsed);
            }
        }
        match &seen {
            Unreachable::Waiting { waited, latest } => match latest {
                Some(set) => {
                    warn!(asg = %self.group.name, waited_secs = waited.as_secs(), newest_point = %set.key, loss_window_secs = set.loss_window_secs, "source unreachable: waiting for the newest data (source_unreachable = \"wait\"); restoring the newest recovery point instead would lose up to {}s of writes", set.loss_window_secs)
                }
                None => {
                    warn!(asg = %self.group.name, waited_secs = waited.as_secs(), "source unreachable: waiting for the newest data (source_unreachable = \"wait\"); no complete recovery point exists")
                }
            },
            Unreachable::Restoring(set) => {
                error!(asg = %self.group.name, point = %set.key, loss_window_secs = set.loss_window_secs, snapshots = ?set.snapshots, "source unreachable after {}s: restoring the newest completed recovery point (source_unreachable = \"restore-latest\"); writes of the last {}s before the old instance's end are lost", elapsed.as_secs(), set.loss_window_secs)
            }
            Unreachable::NothingToRestore => {
                error!(asg = %self.group.name, "source unreachable and restore-latest is due, but no complete recovery point set exists: waiting for the newest data")
            }
            Unreachable::SetLost(key) => {
                error!(asg = %self.group.name, set = %key, "the recovery point set this launch began to restore is no longer complete: abandoning rather than mixing data")
            }
            Unreachable::AlreadyMoving => {
                warn!(asg = %self.group.name, "source unreachable for part of the slot after this launch moved another part itself: waiting, a recovery point would not be consistent with it")
            }
            Unreachable::Reachable => {}
        }
        (steps, seen)
    }

    /// The note a waiting launch adds once the source has been unreachable for `restore_latest_after_secs`.
    pub(super) fn unreachable_note(&self, seen: &Unreachable) -> String {
        match seen {
            Unreachable::Waiting { waited, .. } if *waited >= self.group.restore_latest_after => {
                format!(
                    "; source unreachable for {}s (source_unreachable = {})",
                    waited.as_secs(),
                    self.policy_name()
                )
            }
            _ => String::new(),
        }
    }

    /// A ready verdict whose data came (in part) from a recovery point: told once, and marked degraded
    /// with each restored volume and the loss window.
    pub(super) fn restored_latest(&self, hook: &HookEvent, verdict: Verdict) -> Verdict {
        match verdict.loss_window_secs() {
            Some(loss) => {
                let first = self
                    .reported
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(hook.ledger_key(), "restored")
                    != Some("restored");
                if first {
                    if let Some(e) = &self.events {
                        e.restored_latest(
                            &self.group.name,
                            self.slot.get(),
                            &hook.instance_id,
                            loss,
                            verdict.attached(),
                        );
                    }
                }
                let gens: Vec<String> = verdict
                    .attached()
                    .iter()
                    .map(|a| format!("{} {} gen {}", a.logical, a.volume_id, a.generation))
                    .collect();
                verdict.degraded(format!(
                    "{RESTORED_LATEST}: {}; loss window {loss}s",
                    gens.join(", ")
                ))
            }
            None => verdict,
        }
    }
}

/// When the launch action began, in Unix seconds: its notification's `Time`, which stays the same on every
/// step and after a restart (so a restore's tags do too), else now minus how long the run has gone on.
fn launch_started(hook: &HookEvent, elapsed: Duration, now: i64) -> i64 {
    hook.time
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or_else(|| now.saturating_sub(i64::try_from(elapsed.as_secs()).unwrap_or(0)))
}
