//! What `ferryd doctor`'s DryRun probes run against: the group's own instance, ferry volume and ferry
//! snapshot, and, for each write ferry makes, the exact tag set that write sends, built by the same ledger
//! functions the hooks use. Tag-scoped IAM conditions (`aws:ResourceTag`, `aws:RequestTag`,
//! `aws:TagKeys`) are then evaluated as they will be for the real calls.
//!
//! Every tag probe rewrites a resource's own current values, so that even an endpoint that ignored DryRun
//! would change nothing.

use ferry_snapshot::ledger::{self, FIRST_SLOT};
use ferry_snapshot::{Instances, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes};
use ferry_state_machine::observe::{
    ObservedInstance, ObservedSnapshot, ObservedVolume, SnapshotState,
};
use ferry_state_machine::{tags, Generation, GroupInfo};

use super::Aws;
use crate::config::GroupConfig;

/// The hook token doctor's probes carry in `ferry:hook`.
pub(super) const HOOK: &str = "doctor/dry-run";

/// The group's resources the probes name.
pub(super) struct Targets {
    /// The InService (else any live) instance of the group, with its tags.
    pub instance: Option<ObservedInstance>,
    /// A ferry volume of the group: the instance's, else any that holds data.
    pub volume: Option<ObservedVolume>,
    /// The group's newest completed ferry snapshot.
    pub snapshot: Option<ObservedSnapshot>,
    /// The AZ to create volumes in.
    pub az: String,
}

impl Targets {
    /// Reads the group's instance, volume and snapshot (a read that fails leaves that target out).
    pub async fn find(aws: &Aws, g: &GroupConfig, info: Option<&GroupInfo>) -> Targets {
        let member = info.and_then(|info| {
            let all = &info.instances;
            all.iter()
                .find(|i| i.lifecycle_state == "InService")
                .or_else(|| all.iter().find(|i| !i.is_terminating()))
        });
        let instance = match member {
            Some(m) => aws
                .ec2
                .describe_instance(&m.instance_id)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let az = member
            .map(|m| m.availability_zone.clone())
            .or_else(|| info.and_then(|i| i.availability_zones.first().cloned()))
            .unwrap_or_default();
        let query = VolumeQuery {
            group: g.name.clone(),
            ..VolumeQuery::default()
        };
        let mut volumes = aws.ec2.find_volumes(&query).await.unwrap_or_default();
        volumes.retain(ObservedVolume::holds_data);
        let mine = instance.as_ref().map(|i| i.id.clone());
        volumes.sort_by_key(|v| v.attached_to().map(str::to_string) != mine);
        let query = SnapshotQuery {
            group: g.name.clone(),
            ..SnapshotQuery::default()
        };
        let mut snapshots = aws.ec2.find_snapshots(&query).await.unwrap_or_default();
        snapshots.retain(|s| s.state == SnapshotState::Completed && s.logical.is_some());
        snapshots.sort_by_key(|s| std::cmp::Reverse(s.start_time));
        Targets {
            instance,
            volume: volumes.into_iter().next(),
            snapshot: snapshots.into_iter().next(),
            az,
        }
    }

    fn volume_slot(&self) -> u32 {
        self.volume
            .as_ref()
            .and_then(|v| v.slot)
            .unwrap_or(FIRST_SLOT)
    }
}

/// The tag sets of each write, for one group.
pub(super) struct TagSets;

impl TagSets {
    /// `CreateVolume` of a first boot's empty volume.
    pub fn empty_volume(g: &GroupConfig, t: &Targets) -> Vec<Tag> {
        let logical = &g.volumes[0].name;
        ledger::new_volume_tags(
            &g.name,
            t.volume_slot(),
            HOOK,
            logical,
            Generation::FIRST,
            None,
        )
    }

    /// `CreateVolume` of a restore from `snap`.
    pub fn restored_volume(g: &GroupConfig, snap: &ObservedSnapshot) -> Vec<Tag> {
        let logical = snap.logical.as_deref().unwrap_or(&g.volumes[0].name);
        let generation = snap.generation.unwrap_or(Generation::FIRST).next();
        let slot = snap.slot.unwrap_or(FIRST_SLOT);
        let source = Some((snap.id.as_str(), snap.volume_id.as_str()));
        ledger::new_volume_tags(&g.name, slot, HOOK, logical, generation, source)
    }

    /// `CreateSnapshot` of a final delta of `vol`.
    pub fn final_delta(g: &GroupConfig, vol: &ObservedVolume) -> Vec<Tag> {
        let (logical, generation) = data_of(g, vol);
        ledger::final_delta_tags(&g.name, slot_of(vol), HOOK, logical, generation)
    }

    /// `CreateSnapshot` of a one-volume recovery point of `vol`.
    pub fn recovery_point(g: &GroupConfig, vol: &ObservedVolume) -> Vec<Tag> {
        let mut t = ledger::recovery_tags(
            &g.name,
            slot_of(vol),
            HOOK,
            format!("{HOOK}/0"),
            format!("ferry {} doctor", g.name),
        );
        t.extend(ledger::volume_data_tags(vol));
        t
    }

    /// `CreateSnapshots` of a terminate's pre-copy set (a recovery point's set carries a subset of these).
    pub fn precopy(g: &GroupConfig, slot: u32) -> Vec<Tag> {
        let name = format!("ferry {} doctor", g.name);
        ledger::precopy_tags(&g.name, slot, HOOK, 0, HOOK.to_string(), name)
    }

    /// `CreateTags` of a same-AZ claim of `vol`, with its own values.
    pub fn claim(g: &GroupConfig, vol: &ObservedVolume) -> Vec<Tag> {
        let (logical, generation) = data_of(g, vol);
        let hook = vol.hook.as_deref().unwrap_or(HOOK);
        ledger::claim_tags(&g.name, slot_of(vol), hook, logical, generation)
    }

    /// `CreateTags` on a snapshot after its set completed: the volume's data tags, with its own values.
    pub fn snapshot_data(snap: &ObservedSnapshot) -> Vec<Tag> {
        let logical = snap.logical.clone().unwrap_or_default();
        let generation = snap.generation.unwrap_or(Generation::FIRST);
        ledger::data_tags(&logical, generation)
    }

    /// `CreateTags` of the fence on a pre-copy (`ferry:fenced-at`), if `snap` already carries one.
    pub fn fenced_at(snap: &ObservedSnapshot) -> Option<Vec<Tag>> {
        snap.fenced_at
            .map(|at| vec![(tags::FENCED_AT.to_string(), at.to_string())])
    }

    /// `CreateTags` on the instance once its data is attached, with its own values; `None` if the
    /// instance carries no `ferry:attached:*` tag yet.
    pub fn attached(g: &GroupConfig, me: &ObservedInstance) -> Option<Vec<Tag>> {
        let attached: Vec<(&str, &str)> = me
            .tags
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(tags::ATTACHED_PREFIX)?, v.as_str())))
            .collect();
        if attached.is_empty() {
            return None;
        }
        let slot = me.slot().unwrap_or(FIRST_SLOT);
        Some(ledger::attached_tags(&g.name, slot, attached))
    }
}

fn slot_of(vol: &ObservedVolume) -> u32 {
    vol.slot.unwrap_or(FIRST_SLOT)
}

fn data_of<'a>(g: &'a GroupConfig, vol: &'a ObservedVolume) -> (&'a str, Generation) {
    let logical = vol.logical.as_deref().unwrap_or(&g.volumes[0].name);
    (logical, vol.generation.unwrap_or(Generation::FIRST))
}
