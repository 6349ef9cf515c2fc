//! The recovery-point loop: for every group, takes periodic crash-consistent recovery points of the attached
//! volumes (`recovery_point_interval_secs`), applies the shared retention rule to them, and exports
//! `ferry_recovery_point_age_seconds{group, slot, volume}`: the data a failover without a final snapshot
//! would lose right now.
//!
//! Each group is woken when its next point is due (read from the ledger), while one is pending, or after a
//! back-off when EBS refuses (`SnapshotCreationPerVolumeRateExceeded`, throttling) or a call fails.

use std::sync::Arc;
use std::time::Duration;

use ferry_snapshot::{Ec2, RecoveryPoints, Round, RoundOutcome, Snapshots};
use ferry_state_machine::lease_keeper::LeaseKeeper;
use ferry_state_machine::observe::{ObservedSnapshot, ObservedVolume, SnapshotState, VolumeState};
use ferry_state_machine::StepError;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::retention::{self, Kind, Policy, Resource, State};

/// The first back-off after EBS refused or a call failed; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(15);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the loop needs besides the groups.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// How often a group with recovery points off (or with nothing attached) is looked at, for the age.
    pub idle_every: Duration,
    /// The retention rule shared with `ferryd gc`.
    pub retention: Policy,
    /// With replicas (`[lease] table`): a slot's round runs only under its lease, so that one replica
    /// takes each recovery point; a slot another replica holds is looked at again at the next poll.
    pub leases: Option<LeaseKeeper>,
    /// Where retention's deletes go: `[gc] delete_role_arn`'s client, else the loop's own EC2.
    pub deletes: Option<Deletes>,
}

/// The port retention deletes through when it is not the loop's own (another role's credentials).
#[derive(Clone)]
pub struct Deletes(pub Arc<dyn Snapshots>);

impl std::fmt::Debug for Deletes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deletes(delete role)")
    }
}

/// One slot's place in the loop.
struct Slot {
    points: RecoveryPoints,
    next: Instant,
    backoff: Duration,
}

/// Runs until `shutdown` turns true.
pub async fn run(
    ec2: Arc<dyn Ec2>,
    groups: Vec<RecoveryPoints>,
    metrics: Metrics,
    cfg: LoopConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = Instant::now();
    for g in &groups {
        metrics.set_recovery_point_interval(&g.group().name, g.group().recovery_point_interval);
    }
    let mut slots: Vec<Slot> = groups
        .into_iter()
        .map(|points| Slot {
            points,
            next: start,
            backoff: Duration::ZERO,
        })
        .collect();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = Instant::now();
        let mut found = Vec::new();
        for slot in slots.iter_mut().filter(|s| s.next <= now) {
            let (wait, seen) = round(ec2.as_ref(), slot, &metrics, &cfg).await;
            let now = Instant::now();
            slot.next = now.checked_add(wait).unwrap_or(now + MAX_BACKOFF);
            found.extend(seen.into_iter().map(|n| (slot.points.clone(), n)));
        }
        // A group of many: every slot the ledger shows gets its own round, from the next pass on.
        for (points, n) in found {
            let known = slots
                .iter()
                .any(|s| s.points.group().name == points.group().name && s.points.slot() == n);
            if !known {
                info!(asg = %points.group().name, slot = n, "recovery points: a new slot of the group");
                slots.push(Slot {
                    points: points.for_slot(n),
                    next: Instant::now(),
                    backoff: Duration::ZERO,
                });
            }
        }
        let Some(next) = slots.iter().map(|s| s.next).min() else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}

/// One round of one slot; returns how long until its next, and the slots of the group the ledger shows.
async fn round(
    ec2: &dyn Ec2,
    slot: &mut Slot,
    metrics: &Metrics,
    cfg: &LoopConfig,
) -> (Duration, Vec<u32>) {
    let group = slot.points.group().name.clone();
    let n = slot.points.slot();
    let interval = slot.points.group().recovery_point_interval;
    // While a point is pending or was just started: look again soon, so the next one starts on time.
    let poll = (interval / 5).clamp(Duration::from_secs(1), Duration::from_secs(15));
    let idle = if interval.is_zero() {
        cfg.idle_every
    } else {
        cfg.idle_every.min(interval.max(Duration::from_secs(5)))
    };
    let _lease = match &cfg.leases {
        None => None,
        Some(keeper) => match keeper.try_acquire(&format!("{group}/{n}")).await {
            Ok(Some(guard)) => Some(guard),
            Ok(None) => {
                debug!(asg = %group, slot = n, "recovery points: another replica holds the slot's lease");
                return (
                    poll.max(cfg.idle_every.min(Duration::from_secs(30))),
                    Vec::new(),
                );
            }
            Err(e) => {
                warn!(asg = %group, slot = n, error = %e, "recovery points: cannot read the slot's lease");
                return (poll, Vec::new());
            }
        },
    };
    match slot.points.round().await {
        Ok(r) => {
            slot.backoff = Duration::ZERO;
            for (volume, age) in &r.ages {
                if let Some(age) = age {
                    metrics.set_recovery_point_age(&group, n, volume, Duration::from_secs(*age));
                }
            }
            retain(ec2, &group, n, &r, metrics, cfg).await;
            let wait = match &r.outcome {
                RoundOutcome::Took(made) => {
                    metrics.recovery_point_taken(&group);
                    debug!(asg = %group, snapshots = made.len(), "recovery point set started");
                    poll
                }
                RoundOutcome::Parked(made) => {
                    debug!(asg = %group, snapshots = made.len(), "final snapshots of the parked data started");
                    poll
                }
                RoundOutcome::Tagged(_) | RoundOutcome::Pending(_) => poll,
                RoundOutcome::NotDue(at) => {
                    let secs = u64::try_from(at - ec2.now_secs()).unwrap_or(0);
                    Duration::from_secs(secs.max(1))
                }
                RoundOutcome::Idle(why) => {
                    debug!(asg = %group, slot = n, reason = %why, "no recovery point now");
                    idle
                }
            };
            (wait, r.slots_seen)
        }
        Err(e) => {
            slot.backoff = (slot.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
            if refused(&e) {
                metrics.recovery_point_refused(&group);
                warn!(asg = %group, error = %e, backoff_secs = slot.backoff.as_secs(), "EBS refused a recovery point; backing off");
            } else {
                metrics.recovery_check_failed();
                warn!(asg = %group, error = %e, backoff_secs = slot.backoff.as_secs(), "recovery-point round failed; backing off");
            }
            (slot.backoff, Vec::new())
        }
    }
}

/// Whether EBS refused for its rate limits (not a failure of ferry's).
fn refused(e: &StepError) -> bool {
    let code = e.code.as_deref().unwrap_or_default();
    code == "SnapshotCreationPerVolumeRateExceeded"
        || code.contains("Throttl")
        || code == "RequestLimitExceeded"
}

/// Deletes the group's recovery points that the shared retention rule lets go. Only recovery points: the
/// rest of the ledger is `ferryd gc`'s, run by the operator.
async fn retain(
    ec2: &dyn Ec2,
    group: &str,
    slot: u32,
    r: &Round,
    metrics: &Metrics,
    cfg: &LoopConfig,
) {
    let resources = resources(group, slot, &r.volumes, &r.snapshots);
    let groups = [group.to_string()];
    for d in retention::plan(&resources, &groups, cfg.retention, ec2.now_secs()) {
        if !(d.delete && d.resource.is_recovery_point()) {
            continue;
        }
        let deleted = match &cfg.deletes {
            Some(Deletes(other)) => other.delete_snapshot(&d.resource.id).await,
            None => ec2.delete_snapshot(&d.resource.id).await,
        };
        match deleted {
            Ok(()) => {
                metrics.recovery_point_deleted(group);
                info!(asg = %group, snapshot.id = %d.resource.id, reason = %d.reason, "deleted a recovery point (retention)");
            }
            Err(e) => {
                warn!(asg = %group, snapshot.id = %d.resource.id, error = %e, "cannot delete a recovery point")
            }
        }
    }
}

/// The slot's ledger as the retention rule reads it.
fn resources(
    group: &str,
    slot: u32,
    volumes: &[ObservedVolume],
    snapshots: &[ObservedSnapshot],
) -> Vec<Resource> {
    let base =
        |kind, id: &str, logical: &Option<String>, generation: Option<u64>, state| Resource {
            kind,
            id: id.to_string(),
            group: group.to_string(),
            slot: Some(slot.to_string()),
            logical: logical.clone(),
            generation,
            state,
            attached_to: None,
            created: None,
            source_snapshot: None,
            reason: None,
            set: None,
        };
    let vols = volumes.iter().map(|v| Resource {
        attached_to: v.attached_to().map(str::to_string),
        source_snapshot: v.source_snapshot.clone(),
        ..base(
            Kind::Volume,
            &v.id,
            &v.logical,
            v.generation.map(|g| g.0),
            match v.state {
                VolumeState::Creating => State::Creating,
                VolumeState::Available => State::Available,
                VolumeState::InUse => State::InUse,
                VolumeState::Deleting => State::Deleting,
                VolumeState::Error => State::Error,
            },
        )
    });
    let snaps = snapshots.iter().map(|s| Resource {
        created: s.start_time,
        reason: s.reason.map(|r| r.as_tag().to_string()),
        set: s.set.clone(),
        ..base(
            Kind::Snapshot,
            &s.id,
            &s.logical,
            s.generation.map(|g| g.0),
            match s.state {
                SnapshotState::Pending => State::Pending,
                SnapshotState::Completed => State::Completed,
                SnapshotState::Error => State::Error,
            },
        )
    });
    vols.chain(snaps).collect()
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
