//! `Gated`: any EC2 implementation behind a `Gate` that runs before every call with the call's EC2 action:
//! the API budget (`Throttled`), scripted faults (`FaultyEc2`), a model of EC2's own throttling (the storm
//! simulation). A batched call enters the gate once.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_state_machine::budget::ApiBudget;
use ferry_state_machine::gate::Gate;
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::StepError;

use crate::ports::{
    Addresses, Ec2, Instances, NewVolume, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes,
};

/// An EC2 implementation behind a gate.
#[derive(Debug, Default)]
pub struct Gated<T, G> {
    pub(crate) inner: T,
    pub(crate) gate: G,
}

impl<T, G> Gated<T, G> {
    /// `inner`, entering `gate` before every call.
    pub fn with_gate(inner: T, gate: G) -> Self {
        Self { inner, gate }
    }

    /// The wrapped implementation.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The gate.
    pub fn gate(&self) -> &G {
        &self.gate
    }
}

/// EC2 held to the API budget: every call waits for its action's token, so that ferry is held back by its
/// own budget instead of EC2's throttling.
pub type Throttled<T> = Gated<T, Arc<ApiBudget>>;

impl<T> Gated<T, Arc<ApiBudget>> {
    /// `inner`, waiting on `budget` before every call.
    pub fn new(inner: T, budget: Arc<ApiBudget>) -> Self {
        Self::with_gate(inner, budget)
    }
}

#[async_trait]
impl<T: Ec2, G: Gate> Volumes for Gated<T, G> {
    async fn find_volumes(&self, query: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        self.gate.enter("ec2:DescribeVolumes").await?;
        self.inner.find_volumes(query).await
    }

    async fn find_volumes_batch(
        &self,
        queries: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        self.gate.enter("ec2:DescribeVolumes").await?;
        self.inner.find_volumes_batch(queries).await
    }

    async fn describe_volumes(&self, ids: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        self.gate.enter("ec2:DescribeVolumes").await?;
        self.inner.describe_volumes(ids).await
    }

    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        self.gate.enter("ec2:CreateVolume").await?;
        self.inner.create_volume(req).await
    }

    async fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), StepError> {
        self.gate.enter("ec2:AttachVolume").await?;
        self.inner
            .attach_volume(volume_id, instance_id, device)
            .await
    }

    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), StepError> {
        self.gate.enter("ec2:DetachVolume").await?;
        self.inner.detach_volume(volume_id, instance_id).await
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), StepError> {
        self.gate.enter("ec2:DeleteVolume").await?;
        self.inner.delete_volume(volume_id).await
    }

    async fn tag_volume(&self, volume_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.gate.enter("ec2:CreateTags").await?;
        self.inner.tag_volume(volume_id, tags).await
    }
}

#[async_trait]
impl<T: Ec2, G: Gate> Snapshots for Gated<T, G> {
    async fn find_snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.gate.enter("ec2:DescribeSnapshots").await?;
        self.inner.find_snapshots(query).await
    }

    async fn find_snapshots_batch(
        &self,
        queries: &[SnapshotQuery],
    ) -> Result<Vec<Vec<ObservedSnapshot>>, StepError> {
        self.gate.enter("ec2:DescribeSnapshots").await?;
        self.inner.find_snapshots_batch(queries).await
    }

    async fn describe_snapshots(&self, ids: &[String]) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.gate.enter("ec2:DescribeSnapshots").await?;
        self.inner.describe_snapshots(ids).await
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        exclude: &[String],
        tags: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError> {
        self.gate.enter("ec2:CreateSnapshots").await?;
        self.inner
            .create_snapshots(instance_id, exclude, tags)
            .await
    }

    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<String, StepError> {
        self.gate.enter("ec2:CreateSnapshot").await?;
        self.inner
            .create_snapshot(volume_id, description, tags)
            .await
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), StepError> {
        self.gate.enter("ec2:DeleteSnapshot").await?;
        self.inner.delete_snapshot(snapshot_id).await
    }

    async fn tag_snapshot(&self, snapshot_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.gate.enter("ec2:CreateTags").await?;
        self.inner.tag_snapshot(snapshot_id, tags).await
    }
}

#[async_trait]
impl<T: Ec2, G: Gate> Instances for Gated<T, G> {
    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<ObservedInstance>, StepError> {
        self.gate.enter("ec2:DescribeInstances").await?;
        self.inner.describe_instance(instance_id).await
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<ObservedInstance>, StepError> {
        self.gate.enter("ec2:DescribeInstances").await?;
        self.inner.describe_instances(instance_ids).await
    }

    async fn tag_instance(&self, instance_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.gate.enter("ec2:CreateTags").await?;
        self.inner.tag_instance(instance_id, tags).await
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<(), StepError> {
        self.gate.enter("ec2:StopInstances").await?;
        self.inner.stop_instance(instance_id).await
    }

    fn now_secs(&self) -> i64 {
        self.inner.now_secs()
    }
}

#[async_trait]
impl<T: Ec2, G: Gate> Addresses for Gated<T, G> {
    async fn describe_address(
        &self,
        allocation_id: &str,
    ) -> Result<Option<ObservedAddress>, StepError> {
        self.gate.enter("ec2:DescribeAddresses").await?;
        self.inner.describe_address(allocation_id).await
    }

    async fn describe_addresses(
        &self,
        allocation_ids: &[String],
    ) -> Result<Vec<ObservedAddress>, StepError> {
        self.gate.enter("ec2:DescribeAddresses").await?;
        self.inner.describe_addresses(allocation_ids).await
    }

    async fn associate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        self.gate.enter("ec2:AssociateAddress").await?;
        self.inner
            .associate_address(allocation_id, instance_id)
            .await
    }

    async fn disassociate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        self.gate.enter("ec2:DisassociateAddress").await?;
        self.inner
            .disassociate_address(allocation_id, instance_id)
            .await
    }
}
