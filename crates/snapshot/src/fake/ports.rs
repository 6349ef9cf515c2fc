//! The EC2 ports on the fake: each call is logged, then applied to the state by its rule.

use async_trait::async_trait;
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume, VolumeState,
};
use ferry_state_machine::{tags, StepError};
use tokio::time::Instant;

use super::rules::{instance_not_found, snapshot_not_found, volume_not_found};
use super::state::{has_tag, merge_tags, SnapRec, VolRec};
use super::{aws_error, FakeEc2};
use crate::ports::{
    Addresses, Instances, NewVolume, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes,
};

fn volume_matches(rec: &VolRec, q: &VolumeQuery) -> bool {
    let t = &rec.v.tags;
    has_tag(t, tags::GROUP, &q.group)
        && q.slot
            .is_none_or(|s| has_tag(t, tags::SLOT, &s.to_string()))
        && q.logical
            .as_deref()
            .is_none_or(|l| has_tag(t, tags::VOLUME, l))
        && q.attached_instance.as_deref().is_none_or(|i| {
            rec.v
                .attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == i)
        })
}

fn snapshot_matches(rec: &SnapRec, q: &SnapshotQuery) -> bool {
    let t = &rec.s.tags;
    has_tag(t, tags::GROUP, &q.group)
        && q.slot
            .is_none_or(|s| has_tag(t, tags::SLOT, &s.to_string()))
        && q.logical
            .as_deref()
            .is_none_or(|l| has_tag(t, tags::VOLUME, l))
        && q.hook.as_deref().is_none_or(|h| has_tag(t, tags::HOOK, h))
        && q.volume_id.as_deref().is_none_or(|v| rec.s.volume_id == v)
}

#[async_trait]
impl Volumes for FakeEc2 {
    async fn find_volumes(&self, query: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        let mut g = self.lock();
        g.call("DescribeVolumes");
        Ok(g.volumes
            .values()
            .filter(|r| volume_matches(r, query))
            .map(VolRec::observe)
            .collect())
    }

    async fn find_volumes_batch(
        &self,
        queries: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        g.call("DescribeVolumes");
        g.volume_index
            .refresh(&g.volumes, |r: &VolRec| r.v.tags.as_slice());
        Ok(queries
            .iter()
            .map(|q| {
                g.volume_index
                    .candidates(&q.group)
                    .filter_map(|id| g.volumes.get(id))
                    .filter(|r| volume_matches(r, q))
                    .map(VolRec::observe)
                    .collect()
            })
            .collect())
    }

    async fn describe_volumes(&self, ids: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        let mut g = self.lock();
        g.call("DescribeVolumes");
        Ok(ids
            .iter()
            .filter_map(|id| g.volumes.get(id))
            .map(VolRec::observe)
            .collect())
    }

    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        let mut g = self.lock();
        g.call("CreateVolume");
        g.create_volume(req, Instant::now())
    }

    async fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), StepError> {
        let mut g = self.lock();
        g.call("AttachVolume");
        g.attach(volume_id, instance_id, device, Instant::now())
    }

    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), StepError> {
        let mut g = self.lock();
        g.call("DetachVolume");
        match g.detach(volume_id, instance_id, Instant::now()) {
            // As the AWS adapter: not attached to that instance means the goal holds.
            Err(e) if e.code.as_deref() == Some("InvalidAttachment.NotFound") => Ok(()),
            other => other,
        }
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), StepError> {
        let mut g = self.lock();
        g.call("DeleteVolume");
        match g.volumes.get(volume_id) {
            None => Ok(()),
            Some(r) if r.v.attachment.is_some() => Err(aws_error(
                "DeleteVolume",
                "VolumeInUse",
                format!("Volume {volume_id} is currently attached"),
            )),
            Some(_) => {
                g.volumes.remove(volume_id);
                Ok(())
            }
        }
    }

    async fn tag_volume(&self, volume_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        if tags.is_empty() {
            return Ok(()); // as the AWS adapter: nothing to write, no CreateTags call
        }
        let mut guard = self.lock();
        let g = &mut *guard;
        g.call("CreateTags");
        let rec = g
            .volumes
            .get_mut(volume_id)
            .ok_or_else(|| volume_not_found("CreateTags", volume_id))?;
        merge_tags(&mut rec.v.tags, tags);
        g.volume_index.retagged(volume_id, &rec.v.tags);
        Ok(())
    }
}

#[async_trait]
impl Snapshots for FakeEc2 {
    async fn find_snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> Result<Vec<ObservedSnapshot>, StepError> {
        let mut g = self.lock();
        g.call("DescribeSnapshots");
        Ok(g.snapshots
            .values()
            .filter(|r| snapshot_matches(r, query))
            .map(SnapRec::observe)
            .collect())
    }

    async fn find_snapshots_batch(
        &self,
        queries: &[SnapshotQuery],
    ) -> Result<Vec<Vec<ObservedSnapshot>>, StepError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        g.call("DescribeSnapshots");
        g.snapshot_index
            .refresh(&g.snapshots, |r: &SnapRec| r.s.tags.as_slice());
        Ok(queries
            .iter()
            .map(|q| {
                g.snapshot_index
                    .candidates(&q.group)
                    .filter_map(|id| g.snapshots.get(id))
                    .filter(|r| snapshot_matches(r, q))
                    .map(SnapRec::observe)
                    .collect()
            })
            .collect())
    }

    async fn describe_snapshots(&self, ids: &[String]) -> Result<Vec<ObservedSnapshot>, StepError> {
        let mut g = self.lock();
        g.call("DescribeSnapshots");
        Ok(ids
            .iter()
            .filter_map(|id| g.snapshots.get(id))
            .map(SnapRec::observe)
            .collect())
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        exclude: &[String],
        tags: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError> {
        let mut g = self.lock();
        g.call("CreateSnapshots");
        g.create_snapshots(instance_id, exclude, tags, Instant::now())
    }

    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<String, StepError> {
        const OP: &str = "CreateSnapshot";
        let now = Instant::now();
        let mut g = self.lock();
        g.call(OP);
        let state = g
            .volumes
            .get(volume_id)
            .map(|r| r.v.state)
            .ok_or_else(|| volume_not_found(OP, volume_id))?;
        if matches!(
            state,
            VolumeState::Creating | VolumeState::Error | VolumeState::Deleting
        ) {
            return Err(aws_error(
                OP,
                "IncorrectState",
                format!("Volume '{volume_id}' cannot be snapshotted now."),
            ));
        }
        g.check_snapshot_rate(OP, volume_id, now)?;
        let id = g.start_snapshot(volume_id, description, tags.to_vec(), now);
        g.settle(now);
        Ok(id)
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), StepError> {
        let mut g = self.lock();
        g.call("DeleteSnapshot");
        g.snapshots.remove(snapshot_id);
        Ok(())
    }

    async fn tag_snapshot(&self, snapshot_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        if tags.is_empty() {
            return Ok(()); // as the AWS adapter: nothing to write, no CreateTags call
        }
        let mut guard = self.lock();
        let g = &mut *guard;
        g.call("CreateTags");
        let rec = g
            .snapshots
            .get_mut(snapshot_id)
            .ok_or_else(|| snapshot_not_found("CreateTags", snapshot_id))?;
        merge_tags(&mut rec.s.tags, tags);
        g.snapshot_index.retagged(snapshot_id, &rec.s.tags);
        Ok(())
    }
}

#[async_trait]
impl Instances for FakeEc2 {
    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<ObservedInstance>, StepError> {
        let mut g = self.lock();
        g.call("DescribeInstances");
        Ok(g.observe_instance(instance_id))
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<ObservedInstance>, StepError> {
        let mut g = self.lock();
        g.call("DescribeInstances");
        let ids: Vec<&str> = instance_ids.iter().map(String::as_str).collect();
        Ok(g.observe_instances(&ids))
    }

    fn now_secs(&self) -> i64 {
        let g = self.lock();
        g.epoch_secs(Instant::now())
    }

    async fn tag_instance(&self, instance_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        if tags.is_empty() {
            return Ok(()); // as the AWS adapter: nothing to write, no CreateTags call
        }
        let mut g = self.lock();
        g.call("CreateTags");
        let inst = g
            .instances
            .get_mut(instance_id)
            .ok_or_else(|| instance_not_found("CreateTags", instance_id))?;
        merge_tags(&mut inst.tags, tags);
        Ok(())
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<(), StepError> {
        const OP: &str = "StopInstances";
        let mut g = self.lock();
        g.call(OP);
        let inst = g
            .instances
            .get_mut(instance_id)
            .ok_or_else(|| instance_not_found(OP, instance_id))?;
        match inst.state.as_str() {
            "shutting-down" | "terminated" => Err(aws_error(
                OP,
                "IncorrectInstanceState",
                format!(
                    "The instance '{instance_id}' is not in a state from which it can be stopped."
                ),
            )),
            // The fake stops at once: a stopped instance writes nothing, and its volumes may be detached.
            _ => {
                inst.state = "stopped".into();
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Addresses for FakeEc2 {
    async fn describe_address(
        &self,
        allocation_id: &str,
    ) -> Result<Option<ObservedAddress>, StepError> {
        let mut g = self.lock();
        g.call("DescribeAddresses");
        Ok(g.addresses.get(allocation_id).cloned())
    }

    async fn describe_addresses(
        &self,
        allocation_ids: &[String],
    ) -> Result<Vec<ObservedAddress>, StepError> {
        let mut g = self.lock();
        g.call("DescribeAddresses");
        Ok(allocation_ids
            .iter()
            .filter_map(|id| g.addresses.get(id).cloned())
            .collect())
    }

    async fn associate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        const OP: &str = "AssociateAddress";
        let mut g = self.lock();
        g.call(OP);
        let inst = g
            .instances
            .get(instance_id)
            .ok_or_else(|| instance_not_found(OP, instance_id))?;
        // As EC2 answers (code `InvalidInstanceID`, not `IncorrectInstanceState`): "The terminated instance
        // 'i-…' is not in a valid state for this operation."
        if matches!(inst.state.as_str(), "shutting-down" | "terminated") {
            let msg = format!(
                "The {} instance '{instance_id}' is not in a valid state for this operation.",
                inst.state
            );
            return Err(aws_error(OP, "InvalidInstanceID", msg));
        }
        let addr = g.addresses.get_mut(allocation_id).ok_or_else(|| {
            aws_error(
                OP,
                "InvalidAllocationID.NotFound",
                format!("The allocation ID '{allocation_id}' does not exist"),
            )
        })?;
        // AllowReassociation=true: the address moves even when it is associated elsewhere.
        addr.instance_id = Some(instance_id.to_string());
        Ok(())
    }

    async fn disassociate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        let mut g = self.lock();
        g.call("DescribeAddresses");
        let on_it = g
            .addresses
            .get(allocation_id)
            .is_some_and(|a| a.instance_id.as_deref() == Some(instance_id));
        if on_it {
            g.call("DisassociateAddress");
            if let Some(addr) = g.addresses.get_mut(allocation_id) {
                addr.instance_id = None;
            }
        }
        Ok(())
    }
}
