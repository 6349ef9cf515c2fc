//! The periodic recovery point of one slot (`recovery_point_interval_secs`): whether to take one now,
//! decided from the ledger alone, so that the schedule survives restarts and a second replica.
//!
//! Pure: no I/O, no clock. The shell (`ferry_snapshot::recovery_point`) observes and acts.

use std::time::Duration;

use crate::observe::{ObservedSnapshot, ObservedVolume, SnapshotReason, SnapshotState};

/// What the schedule of one slot needs.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryView<'a> {
    /// The slot's managed volumes attached to its instance.
    pub attached: &'a [ObservedVolume],
    /// The snapshots of the slot (any volume, any reason).
    pub snapshots: &'a [ObservedSnapshot],
    /// `recovery_point_interval_secs`, not zero.
    pub interval: Duration,
    /// Now, in Unix seconds.
    pub now: i64,
}

/// The next step of a slot's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryStep {
    /// Take one crash-consistent set of these volumes now.
    Take(Vec<String>),
    /// Put the per-volume ledger tags on recovery points that miss them: (snapshot id, volume id).
    Tag(Vec<(String, String)>),
    /// A snapshot of an attached volume is still pending: none is started until it ends (EBS allows only a
    /// few pending per volume, and a set started now would not be newer by much).
    Pending(Vec<String>),
    /// The next one is due at this Unix time.
    NotDue(i64),
}

/// How soon a recovery point that failed is retaken (at most the interval).
pub const ERROR_RETRY_SECS: i64 = 60;

/// Decides the schedule's next step. The last recovery point is the newest pending or completed snapshot
/// of an attached volume, whatever its reason: a pre-copy, a final delta or an operator's snapshot is as
/// good a recovery point as a periodic one. A failed snapshot does not count, so it is retaken soon.
pub fn decide_recovery_point(v: &RecoveryView<'_>) -> RecoveryStep {
    let of_attached = |s: &&ObservedSnapshot| v.attached.iter().any(|a| a.id == s.volume_id);
    let untagged: Vec<(String, String)> = v
        .snapshots
        .iter()
        .filter(of_attached)
        .filter(|s| s.reason == Some(SnapshotReason::Recovery))
        .filter(|s| s.logical.is_none() || s.generation.is_none())
        .map(|s| (s.id.clone(), s.volume_id.clone()))
        .collect();
    if !untagged.is_empty() {
        return RecoveryStep::Tag(untagged);
    }
    let pending: Vec<String> = v
        .snapshots
        .iter()
        .filter(of_attached)
        .filter(|s| s.state == SnapshotState::Pending)
        .map(|s| s.id.clone())
        .collect();
    if !pending.is_empty() {
        return RecoveryStep::Pending(pending);
    }
    let interval = i64::try_from(v.interval.as_secs()).unwrap_or(i64::MAX);
    let retry = interval.min(ERROR_RETRY_SECS);
    // Every attached volume needs a point newer than the interval; the oldest newest one decides. One that
    // failed since is retaken after `retry`, not at once (in an impaired AZ each one fails again).
    let due = v
        .attached
        .iter()
        .map(|a| {
            let newest = |state: SnapshotState| {
                v.snapshots
                    .iter()
                    .filter(|s| s.volume_id == a.id && s.state == state)
                    .filter_map(|s| s.start_time)
                    .max()
            };
            let done = newest(SnapshotState::Completed);
            let due = done.map_or(i64::MIN, |t| t.saturating_add(interval));
            match newest(SnapshotState::Error) {
                Some(e) if done.is_none_or(|d| e > d) => due.max(e.saturating_add(retry)),
                _ => due,
            }
        })
        .min();
    match due {
        Some(at) if at > v.now => RecoveryStep::NotDue(at),
        Some(_) => RecoveryStep::Take(v.attached.iter().map(|a| a.id.clone()).collect()),
        None => RecoveryStep::NotDue(v.now.saturating_add(interval)),
    }
}

/// The age of the newest completed snapshot of a lineage, in seconds: the data a failover without a final
/// snapshot would lose right now. `None` before the first one.
pub fn recovery_point_age(snapshots: &[ObservedSnapshot], now: i64) -> Option<u64> {
    let newest = snapshots
        .iter()
        .filter(|s| s.state == SnapshotState::Completed)
        .filter_map(|s| s.start_time)
        .max()?;
    Some(u64::try_from(now.saturating_sub(newest)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Generation;
    use crate::observe::VolumeState;

    fn vol(id: &str) -> ObservedVolume {
        ObservedVolume {
            id: id.into(),
            availability_zone: "a".into(),
            state: VolumeState::InUse,
            attachment: None,
            logical: Some("data".into()),
            generation: Some(Generation(2)),
            hook: None,
            slot: Some(0),
            source_snapshot: None,
            size_gib: 10,
            loss_window_secs: None,
        }
    }

    fn snap(id: &str, vol: &str, start: i64, state: SnapshotState) -> ObservedSnapshot {
        ObservedSnapshot {
            id: id.into(),
            volume_id: vol.into(),
            state,
            progress: None,
            logical: Some("data".into()),
            generation: Some(Generation(2)),
            hook: None,
            reason: Some(SnapshotReason::Recovery),
            start_time: Some(start),
            set: None,
            action_started: None,
            fenced_at: None,
            slot: Some(0),
        }
    }

    fn decide(attached: &[ObservedVolume], snaps: &[ObservedSnapshot], now: i64) -> RecoveryStep {
        decide_recovery_point(&RecoveryView {
            attached,
            snapshots: snaps,
            interval: Duration::from_secs(300),
            now,
        })
    }

    #[test]
    fn first_point_at_once_then_every_interval_from_the_ledger() {
        let a = [vol("vol-a"), vol("vol-b")];
        let take = RecoveryStep::Take(vec!["vol-a".into(), "vol-b".into()]);
        assert_eq!(decide(&a, &[], 1_000), take);
        let done = [
            snap("s1", "vol-a", 1_000, SnapshotState::Completed),
            snap("s2", "vol-b", 1_000, SnapshotState::Completed),
        ];
        assert_eq!(decide(&a, &done, 1_299), RecoveryStep::NotDue(1_300));
        assert_eq!(decide(&a, &done, 1_300), take);
    }

    #[test]
    fn never_two_at_once_and_a_failed_one_does_not_count() {
        let a = [vol("vol-a")];
        let pending = [
            snap("s1", "vol-a", 1_000, SnapshotState::Completed),
            snap("s2", "vol-a", 1_300, SnapshotState::Pending),
        ];
        assert_eq!(
            decide(&a, &pending, 2_000),
            RecoveryStep::Pending(vec!["s2".into()])
        );
        let failed = [
            snap("s1", "vol-a", 1_000, SnapshotState::Completed),
            snap("s2", "vol-a", 1_300, SnapshotState::Error),
        ];
        assert_eq!(
            decide(&a, &failed, 1_301),
            RecoveryStep::NotDue(1_360),
            "retaken after a minute"
        );
        assert_eq!(
            decide(&a, &failed, 1_360),
            RecoveryStep::Take(vec!["vol-a".into()])
        );
    }

    #[test]
    fn a_set_that_lost_its_per_volume_tags_is_tagged_first() {
        let a = [vol("vol-a")];
        let mut s = snap("s1", "vol-a", 1_000, SnapshotState::Pending);
        s.logical = None;
        assert_eq!(
            decide(&a, &[s], 1_000),
            RecoveryStep::Tag(vec![("s1".into(), "vol-a".into())])
        );
    }

    #[test]
    fn the_age_is_that_of_the_newest_completed_snapshot() {
        let s = [
            snap("s1", "vol-a", 1_000, SnapshotState::Completed),
            snap("s2", "vol-a", 1_200, SnapshotState::Pending),
        ];
        assert_eq!(recovery_point_age(&s, 1_250), Some(250));
        assert_eq!(recovery_point_age(&[], 1_250), None);
    }
}
