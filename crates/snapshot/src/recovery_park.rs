//! Parked slots: when the group is paused at zero (desired capacity 0, no instance left), or scaled in below a
//! slot of a group of many, the slot's data waits in the ledger as its detached volumes. ferry takes their final snapshot then (`ferry:reason = final`,
//! `ferry:hook = parked/<volume-id>`), so that the data survives the loss of its AZ while paused and a
//! scale-up in another AZ restores at once. A detached volume cannot change, so its snapshot is its final
//! state; the launch that scales the group up restores it (or claims the volume itself in the same AZ).

use ferry_state_machine::machine::newest_generation;
use ferry_state_machine::observe::{
    ObservedSnapshot, ObservedVolume, SnapshotReason, SnapshotState,
};
use ferry_state_machine::{tags, StepError};
use tracing::info;

use super::{RecoveryPoints, RoundOutcome};
use crate::ledger;

/// The `ferry:hook` of the final snapshot of a parked volume.
pub fn parked_hook_key(volume_id: &str) -> String {
    format!("parked/{volume_id}")
}

/// The newest-generation volumes of the slot that still lack a final snapshot, if every configured logical
/// volume's newest data sits detached (`available`) in a volume; else `None`.
fn unparked<'a>(
    names: &[String],
    volumes: &'a [ObservedVolume],
    snapshots: &[ObservedSnapshot],
) -> Option<Vec<&'a ObservedVolume>> {
    let mut todo = Vec::new();
    for name in names {
        let live: Vec<&ObservedVolume> = volumes
            .iter()
            .filter(|v| v.holds_data() && v.logical.as_deref() == Some(name.as_str()))
            .collect();
        let of: Vec<ObservedSnapshot> = snapshots
            .iter()
            .filter(|s| s.logical.as_deref() == Some(name.as_str()))
            .cloned()
            .collect();
        let g = newest_generation(&live, &of)?;
        let vol = live.iter().find(|v| v.generation == Some(g))?;
        if vol.attachment.is_some()
            || vol.state != ferry_state_machine::observe::VolumeState::Available
        {
            return None;
        }
        let has_final = of.iter().any(|s| {
            s.volume_id == vol.id
                && s.generation == Some(g)
                && s.state != SnapshotState::Error
                && s.reason.is_some_and(SnapshotReason::is_final)
        });
        if !has_final {
            todo.push(*vol);
        }
    }
    Some(todo)
}

impl RecoveryPoints {
    /// With no data attached: if the group is paused at zero, take the final snapshot of each parked volume
    /// that lacks one. `None` when there is nothing to do (the caller reports its own idle reason).
    pub(super) async fn park(
        &self,
        volumes: &[ObservedVolume],
        snapshots: &[ObservedSnapshot],
    ) -> Result<Option<RoundOutcome>, StepError> {
        let names = self.group.volume_names();
        let Some(todo) = unparked(&names, volumes, snapshots) else {
            return Ok(None);
        };
        if todo.is_empty() {
            return Ok(None);
        }
        // Only when Auto Scaling shows the slot parked: a failover in progress takes its own final delta.
        if !self.slot_parked().await? {
            return Ok(None);
        }
        let group = self.group.name.as_str();
        let mut made = Vec::new();
        for vol in todo {
            let mut t = ledger::base_tags(group, self.slot, &parked_hook_key(&vol.id));
            t.extend(ledger::volume_data_tags(vol));
            t.push((tags::REASON.into(), SnapshotReason::Final.as_tag().into()));
            let desc = format!(
                "ferry {group}: final state of parked {} gen {} (paused at zero)",
                vol.logical.as_deref().unwrap_or("?"),
                vol.generation.map_or(0, |g| g.0)
            );
            let id = self.ec2.create_snapshot(&vol.id, &desc, &t).await?;
            info!(asg = %group, slot = self.slot, snapshot.id = %id, volume.id = %vol.id, "parked slot: final snapshot of its data");
            made.push((id, vol.id.clone()));
        }
        Ok(Some(RoundOutcome::Parked(made)))
    }

    /// Whether Auto Scaling shows the slot parked: the group is paused at zero (no instance, desired 0), or
    /// scaled in below the slot (every instance claims a slot, by its `ferry:slot` tag, and none this one;
    /// an instance without the tag may still be choosing, and then nothing is parked). Never while Auto
    /// Scaling owes the group an instance (fewer staying members than desired): that is a failover's gap,
    /// whose launch may not be listed yet and takes its own final delta.
    async fn slot_parked(&self) -> Result<bool, StepError> {
        let Some(g) = self.asg.describe_group(&self.group.name).await? else {
            return Ok(false);
        };
        let staying = g
            .instances
            .iter()
            .filter(|i| i.counts_toward_desired())
            .count();
        if usize::try_from(g.capacity.2).is_ok_and(|desired| staying < desired) {
            return Ok(false);
        }
        if g.instances.is_empty() {
            return Ok(true); // none owed and none listed: desired 0, paused at zero
        }
        let ids: Vec<String> = g.instances.iter().map(|i| i.instance_id.clone()).collect();
        let members = self.ec2.describe_instances(&ids).await?;
        if members.len() < ids.len() {
            // A member EC2 does not show yet: it may be choosing.
            return Ok(false);
        }
        Ok(members
            .iter()
            .filter(|i| !i.is_gone())
            .all(|i| i.slot().is_some_and(|n| n != self.slot)))
    }
}
