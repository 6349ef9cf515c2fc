//! `source_unreachable`: what a launch does when the newest data cannot be had (an impaired AZ, an instance
//! that hangs in shutting-down, a final snapshot that stays pending or fails): wait for it, or, once a bound
//! has passed, restore the newest completed recovery point set and record what that lost.
//!
//! Pure: the launch shell passes the per-volume steps of [`crate::machine::decide_launch_volume`] and what it
//! observed; this module only rewrites steps. The slot rule ([`crate::slot`]) then combines them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::machine::{newest_generation, VolumeStep, WaitFor, FINAL_STATE_LOST};
use crate::model::Generation;
use crate::observe::{ObservedSnapshot, ObservedVolume, SnapshotReason, SnapshotState};

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
    /// Now, in Unix seconds.
    pub now: i64,
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
    /// The writes a restore of it may miss: from its start to the old instance's terminate action (or this
    /// launch's start, when there was none), in whole seconds rounded up.
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
}

/// Whether a volume's step waits on, or lost, the newest data held by the old source.
pub fn waits_on_source(step: &VolumeStep) -> bool {
    match step {
        VolumeStep::Wait(
            WaitFor::Holder { .. }
            | WaitFor::Snapshot(_)
            | WaitFor::SourceBusy(_)
            | WaitFor::FinalFailed(_),
        ) => true,
        VolumeStep::Abandon(why) => why.starts_with(FINAL_STATE_LOST),
        _ => false,
    }
}

/// Applies the policy to the slot's per-volume `steps` (rewriting them to restore a recovery point set when
/// restore-latest is due) and says what it saw.
pub fn apply_source_policy(v: &SourceView<'_>, steps: &mut [VolumeStep]) -> Unreachable {
    fn mine<'a>(l: &Lineage<'a>, token: &str) -> Vec<&'a ObservedVolume> {
        l.volumes
            .iter()
            .filter(|x| x.holds_data() && x.hook.as_deref() == Some(token))
            .collect()
    }
    // A restore-latest already under way: finish it from the same set, whatever has completed since.
    let chosen = v.lineages.iter().find_map(|l| {
        let vol = mine(l, v.token)
            .into_iter()
            .find(|x| x.loss_window_secs.is_some())?;
        let src = l
            .snapshots
            .iter()
            .find(|s| Some(&s.id) == vol.source_snapshot.as_ref())?;
        Some(set_key(src))
    });
    let set = match chosen {
        Some(key) => complete_sets(v).into_iter().find(|s| s.key == key),
        None => {
            if !steps.iter().any(waits_on_source) {
                return Unreachable::Reachable;
            }
            let latest = complete_sets(v).into_iter().next();
            let due = match v.policy {
                SourcePolicy::Wait => false,
                SourcePolicy::RestoreLatest { after } => v.elapsed >= after,
            };
            if !due {
                return Unreachable::Waiting {
                    waited: v.elapsed,
                    latest,
                };
            }
            if v.lineages.iter().any(|l| !mine(l, v.token).is_empty()) {
                return Unreachable::AlreadyMoving;
            }
            latest
        }
    };
    let Some(set) = set else {
        return Unreachable::NothingToRestore;
    };
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

/// The identity of the set a snapshot belongs to. Final snapshots of one generation are one set: they were
/// taken of fenced volumes, all frozen at the old instance's end.
fn set_key(s: &ObservedSnapshot) -> String {
    if s.reason.is_some_and(SnapshotReason::is_final) {
        return format!("final/{}", s.generation.map_or(0, |g| g.0));
    }
    match (&s.set, &s.hook) {
        (Some(set), _) => set.clone(),
        (None, Some(hook)) => format!("{hook}@{}", s.start_time.unwrap_or(0)),
        (None, None) => s.id.clone(),
    }
}

/// One snapshot of a set: (snapshot id, volume id, start time).
type Member = (String, String, i64);

/// Every set with a completed snapshot for every lineage, newest first.
fn complete_sets(v: &SourceView<'_>) -> Vec<PointSet> {
    // key -> per lineage (snapshot id, volume id, start time)
    let mut sets: BTreeMap<String, Vec<Option<Member>>> = BTreeMap::new();
    for (i, l) in v.lineages.iter().enumerate() {
        for s in l
            .snapshots
            .iter()
            .filter(|s| s.state == SnapshotState::Completed)
        {
            let Some(start) = s.start_time else { continue };
            let slots = sets
                .entry(set_key(s))
                .or_insert_with(|| vec![None; v.lineages.len()]);
            if !slots[i].as_ref().is_some_and(|(_, _, t)| start <= *t) {
                slots[i] = Some((s.id.clone(), s.volume_id.clone(), start));
            }
        }
    }
    let end = loss_window_end(v);
    let mut out: Vec<PointSet> = sets
        .into_iter()
        .filter_map(|(key, slots)| {
            let members: Vec<Member> = slots.into_iter().collect::<Option<_>>()?;
            let start_time = members.iter().map(|m| m.2).min()?;
            Some(PointSet {
                key,
                start_time,
                // Both ends are whole seconds, each up to 1 s below the truth: one more second makes the
                // window an upper bound, never an under-report.
                loss_window_secs: u64::try_from(end - start_time + 1).unwrap_or(0),
                snapshots: members.into_iter().map(|(s, vol, _)| (s, vol)).collect(),
            })
        })
        .collect();
    out.sort_by(|a, b| (b.start_time, &b.key).cmp(&(a.start_time, &a.key)));
    out
}

/// The end of the loss window: the start of the old instance's terminate action (its pre-copy of the newest
/// generation before this launch records it), else this launch's start.
fn loss_window_end(v: &SourceView<'_>) -> i64 {
    let launch_start = v.now - i64::try_from(v.elapsed.as_secs()).unwrap_or(0);
    v.lineages
        .iter()
        .filter_map(|l| {
            let live: Vec<&ObservedVolume> = l
                .volumes
                .iter()
                .filter(|x| x.holds_data() && x.hook.as_deref() != Some(v.token))
                .collect();
            let g = newest_generation(&live, l.snapshots)?;
            l.snapshots
                .iter()
                .filter(|s| s.generation == Some(g) && s.reason == Some(SnapshotReason::Precopy))
                .filter_map(|s| s.action_started)
                .min()
        })
        .min()
        .unwrap_or(launch_start)
}

#[cfg(test)]
#[path = "unreachable_tests.rs"]
mod tests;
