//! `source_unreachable`: what a launch does when the newest data cannot be had (an impaired AZ, an instance
//! that hangs in shutting-down, a final snapshot that stays pending or fails): wait for it, or, once a bound
//! has passed, restore the newest completed recovery point set and record what that lost.
//!
//! Pure: the launch shell passes the per-volume steps of [`crate::machine::decide_launch_volume`] and what it
//! observed; this module only rewrites steps. The slot rule ([`crate::slot`]) then combines them.

use std::collections::HashMap;
use std::time::Duration;

use crate::machine::{newest_generation, VolumeStep, WaitFor, FINAL_STATE_LOST};
use crate::model::Generation;
use crate::observe::{HolderState, ObservedSnapshot, ObservedVolume};
use crate::point_sets::{complete_sets, set_key};

/// A group's `source_unreachable` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePolicy {
    /// Wait for the newest data for as long as the hook lives; never restore older data.
    Wait,
    /// Once the launch has run this long, restore the newest completed recovery point set.
    RestoreLatest {
        /// `restore_latest_after_secs`.
        after: Duration,
    },
}

/// What one logical volume of the slot has: every ferry volume and snapshot of its lineage.
#[derive(Debug, Clone, Copy)]
pub struct Lineage<'a> {
    /// The lineage's volumes.
    pub volumes: &'a [ObservedVolume],
    /// The lineage's snapshots.
    pub snapshots: &'a [ObservedSnapshot],
}

/// What the policy decision needs, for a whole slot; `lineages` is in config order, as the steps.
#[derive(Debug, Clone, Copy)]
pub struct SourceView<'a> {
    /// This hook's ledger key.
    pub token: &'a str,
    /// One lineage per configured logical volume.
    pub lineages: &'a [Lineage<'a>],
    /// How long the launch action has run.
    pub elapsed: Duration,
    /// When the launch action began, in Unix seconds (its notification's `Time`, when known).
    pub launch_started: i64,
    /// How each other instance holding a copy stands.
    pub holders: &'a HashMap<String, HolderState>,
    /// The group's policy.
    pub policy: SourcePolicy,
}

/// One recovery point set: a snapshot per logical volume, all of one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointSet {
    /// Its identity (`ferry:set`, or a final snapshot's generation).
    pub key: String,
    /// When it was taken, in Unix seconds.
    pub start_time: i64,
    /// The writes a restore of it may miss, in whole seconds, an upper bound: from its start to the old
    /// instance's fence (`ferry:fenced-at`), else to its terminate action's start (`ferry:action-started`),
    /// else to this launch's start.
    pub loss_window_secs: u64,
    /// (snapshot id, source volume id), in config order.
    pub snapshots: Vec<(String, String)>,
}

/// What the policy made of the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// No volume waits on the old source.
    Reachable,
    /// The launch waits on the source; `latest` is what restore-latest would restore now.
    Waiting {
        /// How long the launch has run.
        waited: Duration,
        /// The newest completed recovery point set, if any.
        latest: Option<PointSet>,
    },
    /// Restore-latest is restoring (or has restored) this set; the steps were rewritten.
    Restoring(PointSet),
    /// Restore-latest is due but no complete recovery point set exists: keep waiting.
    NothingToRestore,
    /// Restore-latest is due, but this launch already moved some volume from the newest generation itself;
    /// mixing that with a recovery point would break the slot's consistency, so it keeps waiting.
    AlreadyMoving,
    /// The set this launch began to restore is no longer complete (a member was deleted): the steps of the
    /// volumes not restored yet were rewritten to abandon, never to mix it with other data.
    SetLost(String),
}

/// Whether a volume's step waits on, or lost, the newest data of a source that writes no more: a fenced
/// holder that has not let go, a pending or failed final snapshot, a busy volume of the newest generation,
/// or a final state that is gone. A holder that is still running (its terminate under way) is not such a
/// source: restoring beside it would fork the data.
pub fn waits_on_source(step: &VolumeStep, holders: &HashMap<String, HolderState>) -> bool {
    match step {
        VolumeStep::Wait(WaitFor::Holder { instance_id, .. }) => {
            holders.get(instance_id) == Some(&HolderState::Fenced)
        }
        VolumeStep::Wait(
            WaitFor::Snapshot(_)
            | WaitFor::SourceBusy(_)
            | WaitFor::FinalFailed(_)
            | WaitFor::FinalLost(_),
        ) => true,
        VolumeStep::Abandon(why) => why.starts_with(FINAL_STATE_LOST),
        _ => false,
    }
}

/// A step that means a live instance still has the data: then the policy never acts.
fn held_by_live(step: &VolumeStep, holders: &HashMap<String, HolderState>) -> bool {
    match step {
        VolumeStep::Wait(WaitFor::StayingHolder { .. }) | VolumeStep::FenceHolder { .. } => true,
        VolumeStep::Wait(WaitFor::Holder { instance_id, .. }) => {
            holders.get(instance_id) != Some(&HolderState::Fenced)
        }
        _ => false,
    }
}

/// This hook's own live volumes of a lineage.
fn mine<'a>(l: &Lineage<'a>, token: &str) -> Vec<&'a ObservedVolume> {
    l.volumes
        .iter()
        .filter(|x| x.holds_data() && x.hook.as_deref() == Some(token))
        .collect()
}

/// The set this hook already restored part of the slot from, if any.
fn chosen_set(v: &SourceView<'_>) -> Option<String> {
    v.lineages.iter().find_map(|l| {
        let vol = mine(l, v.token)
            .into_iter()
            .find(|x| x.loss_window_secs.is_some())?;
        let src = l
            .snapshots
            .iter()
            .find(|s| Some(&s.id) == vol.source_snapshot.as_ref())?;
        Some(set_key(src))
    })
}

/// Applies the policy to the slot's per-volume `steps` (rewriting them to restore a recovery point set when
/// restore-latest is due) and says what it saw.
pub fn apply_source_policy(v: &SourceView<'_>, steps: &mut [VolumeStep]) -> Unreachable {
    // A restore-latest already under way: finish it from the same set, whatever has completed since.
    if let Some(key) = chosen_set(v) {
        return match complete_sets(v).into_iter().find(|s| s.key == key) {
            Some(set) => restore(v, steps, set),
            None => {
                for (step, l) in steps.iter_mut().zip(v.lineages) {
                    if !mine(l, v.token)
                        .iter()
                        .any(|x| x.loss_window_secs.is_some())
                    {
                        *step = VolumeStep::Abandon(format!(
                            "restore-latest: the recovery point set {key} this launch began to restore is no \
                             longer complete; abandoning rather than mixing it with other data"
                        ));
                    }
                }
                Unreachable::SetLost(key)
            }
        };
    }
    if steps.iter().any(|s| held_by_live(s, v.holders))
        || !steps.iter().any(|s| waits_on_source(s, v.holders))
    {
        return Unreachable::Reachable;
    }
    let latest = complete_sets(v).into_iter().next();
    let due = match v.policy {
        SourcePolicy::Wait => false,
        SourcePolicy::RestoreLatest { after } => v.elapsed >= after,
    };
    if !due {
        if matches!(v.policy, SourcePolicy::RestoreLatest { .. }) {
            // The final state is gone: nothing will come, but the bound is the contract. Wait for it.
            for step in steps.iter_mut() {
                if let VolumeStep::Abandon(why) = step {
                    if why.starts_with(FINAL_STATE_LOST) {
                        *step = VolumeStep::Wait(WaitFor::FinalLost(why.clone()));
                    }
                }
            }
        }
        return Unreachable::Waiting {
            waited: v.elapsed,
            latest,
        };
    }
    if v.lineages.iter().any(|l| !mine(l, v.token).is_empty()) {
        return Unreachable::AlreadyMoving;
    }
    match latest {
        Some(set) => restore(v, steps, set),
        None => Unreachable::NothingToRestore,
    }
}

/// Rewrites the step of every volume not yet restored from `set` to restore its member.
fn restore(v: &SourceView<'_>, steps: &mut [VolumeStep], set: PointSet) -> Unreachable {
    for ((step, l), (snapshot_id, source_volume)) in
        steps.iter_mut().zip(v.lineages).zip(&set.snapshots)
    {
        if mine(l, v.token)
            .iter()
            .any(|x| x.loss_window_secs.is_some())
        {
            continue; // restored from the set already: creating, attaching or attached
        }
        let live: Vec<&ObservedVolume> = l.volumes.iter().filter(|x| x.holds_data()).collect();
        let generation = newest_generation(&live, l.snapshots).unwrap_or(Generation(0));
        *step = VolumeStep::RestorePoint {
            snapshot_id: snapshot_id.clone(),
            source_volume: source_volume.clone(),
            generation: generation.next(),
            loss_window_secs: set.loss_window_secs,
        };
    }
    Unreachable::Restoring(set)
}

#[cfg(test)]
#[path = "unreachable_tests.rs"]
mod tests;
