//! Periodic recovery points of one group's slot (`recovery_point_interval_secs`): observe the ledger, ask
//! the pure schedule (`ferry_state_machine::recovery`), and take at most one crash-consistent set per round.
//!
//! The schedule lives in the ledger (snapshot start times), so a restart or a second replica resumes it;
//! a set is never started while a snapshot of the slot's attached volumes is pending, which also keeps a
//! retried round from taking a duplicate.

use std::sync::Arc;

use ferry_state_machine::observe::{ObservedSnapshot, ObservedVolume};
use ferry_state_machine::recovery::{
    decide_recovery_point, recovery_point_age, RecoveryStep, RecoveryView,
};
use ferry_state_machine::{LifecycleActions, StepError};
use tracing::{debug, info};

use crate::ledger::{self, FIRST_SLOT};
use crate::ports::{Ec2, SnapshotQuery, Tag, VolumeQuery};
use crate::spec::GroupSpec;

#[path = "recovery_park.rs"]
mod park;
pub use park::parked_hook_key;

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundOutcome {
    /// Started a set: (snapshot id, volume id).
    Took(Vec<(String, String)>),
    /// Paused at zero: started the final snapshots of the parked volumes, (snapshot id, volume id).
    Parked(Vec<(String, String)>),
    /// Put per-volume ledger tags on this many recovery points.
    Tagged(usize),
    /// A snapshot of the attached volumes is pending.
    Pending(Vec<String>),
    /// The next one is due at this Unix time.
    NotDue(i64),
    /// No recovery point is taken now, and why (no data attached, the instance is leaving, ...).
    Idle(String),
}

/// One round's result, with what the metrics and retention need.
#[derive(Debug, Clone)]
pub struct Round {
    /// What the round did.
    pub outcome: RoundOutcome,
    /// Per configured logical volume: the age of its newest completed snapshot, in seconds.
    pub ages: Vec<(String, Option<u64>)>,
    /// The slot's volumes, as observed.
    pub volumes: Vec<ObservedVolume>,
    /// The slot's snapshots, as observed (before anything this round started).
    pub snapshots: Vec<ObservedSnapshot>,
    /// Every slot of the group the ledger's volumes show, this one included: the loop adds a round for
    /// each slot it does not run yet (a group of many grows its slots as it scales out).
    pub slots_seen: Vec<u32>,
}

/// Takes the recovery points of one slot of a group.
#[derive(Clone)]
pub struct RecoveryPoints {
    ec2: Arc<dyn Ec2>,
    asg: Arc<dyn LifecycleActions>,
    group: GroupSpec,
    slot: u32,
}

impl RecoveryPoints {
    /// The recovery points of slot 0 of `group` (a group of one's only slot).
    pub fn new(ec2: Arc<dyn Ec2>, asg: Arc<dyn LifecycleActions>, group: GroupSpec) -> Self {
        Self {
            ec2,
            asg,
            group,
            slot: FIRST_SLOT,
        }
    }

    /// The same, for slot `slot` of the group.
    pub fn for_slot(&self, slot: u32) -> Self {
        Self {
            slot,
            ..self.clone()
        }
    }

    /// The slot.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The group.
    pub fn group(&self) -> &GroupSpec {
        &self.group
    }

    /// One round: observe the slot, and take, tag or wait. With a zero interval it only observes (ages).
    pub async fn round(&self) -> Result<Round, StepError> {
        let name = self.group.name.clone();
        // Every slot's volumes in one read: this slot's are kept, the others' show which slots exist.
        let all = self
            .ec2
            .find_volumes(&VolumeQuery {
                group: name.clone(),
                ..VolumeQuery::default()
            })
            .await?;
        let mut slots_seen: Vec<u32> = all.iter().filter_map(|v| v.slot).collect();
        slots_seen.sort_unstable();
        slots_seen.dedup();
        let volumes: Vec<ObservedVolume> = all
            .into_iter()
            .filter(|v| v.slot == Some(self.slot))
            .collect();
        let snapshots = self
            .ec2
            .find_snapshots(&SnapshotQuery {
                group: name,
                slot: Some(self.slot),
                ..SnapshotQuery::default()
            })
            .await?;
        let now = self.ec2.now_secs();
        let ages = self
            .group
            .volumes
            .iter()
            .map(|spec| {
                let of: Vec<ObservedSnapshot> = snapshots
                    .iter()
                    .filter(|s| s.logical.as_deref() == Some(spec.name.as_str()))
                    .cloned()
                    .collect();
                (spec.name.clone(), recovery_point_age(&of, now))
            })
            .collect();
        let outcome = self.schedule(&volumes, &snapshots, now).await?;
        Ok(Round {
            outcome,
            ages,
            volumes,
            snapshots,
            slots_seen,
        })
    }

    async fn schedule(
        &self,
        volumes: &[ObservedVolume],
        snapshots: &[ObservedSnapshot],
        now: i64,
    ) -> Result<RoundOutcome, StepError> {
        if let Some(parked) = self.park(volumes, snapshots).await? {
            return Ok(parked);
        }
        if self.group.recovery_point_interval.is_zero() {
            return Ok(RoundOutcome::Idle(
                "recovery_point_interval_secs = 0".into(),
            ));
        }
        let names = self.group.volume_names();
        // Only the newest generation of each volume: a superseded copy still attached to a hung instance
        // (after a restore-latest, until its AZ returns) must not stop the new instance's recovery points.
        let newest = |l: &str| {
            volumes
                .iter()
                .filter(|v| v.holds_data() && v.logical.as_deref() == Some(l))
                .filter_map(|v| v.generation)
                .max()
        };
        let attached: Vec<ObservedVolume> = volumes
            .iter()
            .filter(|v| v.holds_data() && v.logical.as_ref().is_some_and(|l| names.contains(l)))
            .filter(|v| v.attached_to().is_some())
            .filter(|v| {
                v.generation.is_some()
                    && v.generation == newest(v.logical.as_deref().unwrap_or_default())
            })
            .cloned()
            .collect();
        let Some(instance) = attached
            .first()
            .and_then(|v| v.attached_to())
            .map(str::to_string)
        else {
            return Ok(RoundOutcome::Idle("no managed volume is attached".into()));
        };
        if attached
            .iter()
            .any(|v| v.attached_to() != Some(instance.as_str()))
        {
            return Ok(RoundOutcome::Idle(format!(
                "the slot's volumes are attached to more than one instance ({})",
                attached
                    .iter()
                    .filter_map(|v| v.attached_to())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // Messages are claims; so is an attachment. Only an instance Auto Scaling has in service in this group.
        match self.asg.describe_instance(&instance).await? {
            Some(i) if i.group == self.group.name && i.lifecycle_state == "InService" => {}
            Some(i) => {
                return Ok(RoundOutcome::Idle(format!(
                    "{instance} is {} in {}: the lifecycle hooks take care of its data",
                    i.lifecycle_state, i.group
                )))
            }
            None => {
                return Ok(RoundOutcome::Idle(format!(
                    "{instance} is not in an Auto Scaling group"
                )))
            }
        }
        let step = decide_recovery_point(&RecoveryView {
            attached: &attached,
            snapshots,
            interval: self.group.recovery_point_interval,
            now,
        });
        match step {
            RecoveryStep::NotDue(at) => Ok(RoundOutcome::NotDue(at)),
            RecoveryStep::Pending(ids) => Ok(RoundOutcome::Pending(ids)),
            RecoveryStep::Tag(pairs) => {
                for (snap, vol) in &pairs {
                    if let Some(v) = attached.iter().find(|v| &v.id == vol) {
                        self.ec2
                            .tag_snapshot(snap, &ledger::volume_data_tags(v))
                            .await?;
                    }
                }
                Ok(RoundOutcome::Tagged(pairs.len()))
            }
            RecoveryStep::Take(ids) => self.take(&instance, &attached, &ids, now).await,
        }
    }

    /// Starts one crash-consistent set of `ids`, all attached to `instance`.
    async fn take(
        &self,
        instance: &str,
        attached: &[ObservedVolume],
        ids: &[String],
        now: i64,
    ) -> Result<RoundOutcome, StepError> {
        let set = RecoverySet {
            group: &self.group.name,
            slot: self.slot,
            instance,
            hook: &format!("{instance}/recovery"),
            why: "recovery point",
        };
        let made = set.start(self.ec2.as_ref(), attached, ids, now).await?;
        Ok(RoundOutcome::Took(made))
    }
}

/// One recovery point set to start: of which group and instance, under which `ferry:hook`, and why (for
/// names and logs). Used by the periodic schedule and before a root-volume replacement.
pub(crate) struct RecoverySet<'a> {
    pub group: &'a str,
    pub slot: u32,
    pub instance: &'a str,
    pub hook: &'a str,
    pub why: &'a str,
}

impl RecoverySet<'_> {
    /// Starts the set of `ids` (all attached to the instance, `attached` holds their ledger data):
    /// crash-consistent, one `CreateSnapshots` for several volumes. Returns (snapshot id, volume id).
    pub async fn start(
        &self,
        ec2: &dyn Ec2,
        attached: &[ObservedVolume],
        ids: &[String],
        now: i64,
    ) -> Result<Vec<(String, String)>, StepError> {
        let (group, instance, why) = (self.group, self.instance, self.why);
        // Unique even for two sets of one second (a fast snapshot, a second process).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let t: Vec<Tag> = ledger::recovery_tags(
            group,
            self.slot,
            self.hook,
            format!("{}/{now}.{nanos:09}", self.hook),
            format!("ferry {group} {why} of {instance}"),
        );
        let made = if let [id] = ids {
            let vol = attached.iter().find(|v| &v.id == id);
            let mut vt = t.clone();
            vt.extend(vol.map(ledger::volume_data_tags).unwrap_or_default());
            let desc = format!("ferry {group}: {why} of {id} on {instance}");
            vec![(ec2.create_snapshot(id, &desc, &vt).await?, id.clone())]
        } else {
            let me = ec2.describe_instance(instance).await?.ok_or_else(|| {
                StepError::retry(
                    "ec2:DescribeInstances",
                    format!("instance {instance} not found while its volumes are attached"),
                )
            })?;
            let exclude = ledger::snapshot_set_exclusions(&me, ids);
            let made = ec2.create_snapshots(instance, &exclude, &t).await?;
            for (snap, vol) in &made {
                if let Some(v) = attached.iter().find(|v| &v.id == vol) {
                    ec2.tag_snapshot(snap, &ledger::volume_data_tags(v)).await?;
                }
            }
            made
        };
        let ids: Vec<&str> = made.iter().map(|(s, _)| s.as_str()).collect();
        info!(asg = %group, instance.id = %instance, snapshots = ?ids, "{why} started");
        debug!(asg = %group, "{why} set {}/{now}", self.hook);
        Ok(made)
    }
}
