//! The EC2 ports: one narrow trait per capability (volumes, snapshots, instances, addresses).

use async_trait::async_trait;
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::StepError;

/// A tag: key and value.
pub type Tag = (String, String);

/// Which ferry volumes to find. Every set field narrows the search (a tag or attachment filter).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct VolumeQuery {
    /// `ferry:group`.
    pub group: String,
    /// `ferry:slot`.
    pub slot: Option<u32>,
    /// `ferry:volume`, the logical name.
    pub logical: Option<String>,
    /// `attachment.instance-id`.
    pub attached_instance: Option<String>,
}

/// Which ferry snapshots to find. Every set field narrows the search.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotQuery {
    /// `ferry:group`.
    pub group: String,
    /// `ferry:slot`.
    pub slot: Option<u32>,
    /// `ferry:volume`, the logical name.
    pub logical: Option<String>,
    /// `ferry:hook`, the token of the hook that made it.
    pub hook: Option<String>,
    /// `volume-id`, the volume it was taken from.
    pub volume_id: Option<String>,
}

/// A volume to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewVolume {
    /// Where.
    pub availability_zone: String,
    /// Restore this snapshot; `None` for an empty volume.
    pub snapshot_id: Option<String>,
    /// Size in GiB; required for an empty volume, optional (grow) for a restore.
    pub size_gib: Option<i32>,
    /// `gp3`, `io2`, ...
    pub volume_type: String,
    /// Provisioned IOPS, if any.
    pub iops: Option<i32>,
    /// Provisioned throughput in MiB/s (gp3), if any.
    pub throughput: Option<i32>,
    /// Encrypt the volume.
    pub encrypted: Option<bool>,
    /// The KMS key for encryption.
    pub kms_key_id: Option<String>,
    /// The idempotency token (at most 64 characters): the same token returns the same volume.
    pub client_token: String,
    /// Tags applied at creation (`TagSpecifications`).
    pub tags: Vec<Tag>,
}

/// EBS volumes.
#[async_trait]
pub trait Volumes: Send + Sync {
    /// `DescribeVolumes` with ferry's tag filters; every page.
    async fn find_volumes(&self, query: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError>;
    /// `find_volumes` of several queries at once, answered in order, in as few `DescribeVolumes` calls as
    /// their filters allow (one filter with every query's group, paged). The default asks one by one.
    async fn find_volumes_batch(
        &self,
        queries: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            out.push(self.find_volumes(q).await?);
        }
        Ok(out)
    }
    /// `DescribeVolumes` of given ids; missing ids are left out, not an error.
    async fn describe_volumes(&self, ids: &[String]) -> Result<Vec<ObservedVolume>, StepError>;
    /// `CreateVolume` with a `ClientToken`; returns the volume id.
    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError>;
    /// `AttachVolume`.
    async fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), StepError>;
    /// `DetachVolume` (with the instance id, which some implementations require).
    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), StepError>;
    /// `DeleteVolume`. A volume that no longer exists is success.
    async fn delete_volume(&self, volume_id: &str) -> Result<(), StepError>;
    /// `CreateTags` on a volume (overwrites values of existing keys).
    async fn tag_volume(&self, volume_id: &str, tags: &[Tag]) -> Result<(), StepError>;
}

/// EBS snapshots.
#[async_trait]
pub trait Snapshots: Send + Sync {
    /// `DescribeSnapshots` (owner self) with ferry's tag filters; every page.
    async fn find_snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> Result<Vec<ObservedSnapshot>, StepError>;
    /// `find_snapshots` of several queries at once, answered in order, in as few `DescribeSnapshots` calls as
    /// their filters allow. The default asks one by one.
    async fn find_snapshots_batch(
        &self,
        queries: &[SnapshotQuery],
    ) -> Result<Vec<Vec<ObservedSnapshot>>, StepError> {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            out.push(self.find_snapshots(q).await?);
        }
        Ok(out)
    }
    /// `DescribeSnapshots` of given ids; missing ids are left out, not an error.
    async fn describe_snapshots(&self, ids: &[String]) -> Result<Vec<ObservedSnapshot>, StepError>;
    /// `CreateSnapshots`: one crash-consistent set of every volume of the instance except the boot volume and
    /// `exclude`, all tagged with `tags` only (no `CopyTagsFromSource`: the volume's own `ferry:hook` must not
    /// reach the snapshot). Returns (snapshot id, volume id) pairs.
    async fn create_snapshots(
        &self,
        instance_id: &str,
        exclude: &[String],
        tags: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError>;
    /// `CreateSnapshot` of one volume, tagged with `tags`. Returns the snapshot id.
    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<String, StepError>;
    /// `DeleteSnapshot`. A snapshot that no longer exists is success.
    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), StepError>;
    /// `CreateTags` on a snapshot.
    async fn tag_snapshot(&self, snapshot_id: &str, tags: &[Tag]) -> Result<(), StepError>;
}

/// EC2 instances.
#[async_trait]
pub trait Instances: Send + Sync {
    /// `DescribeInstances` of one instance; `None` when EC2 does not know it.
    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<ObservedInstance>, StepError>;
    /// `DescribeInstances` of several instances at once (an `instance-id` filter, paged); the instances EC2
    /// does not know are left out. The default asks one by one.
    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<ObservedInstance>, StepError> {
        let mut out = Vec::with_capacity(instance_ids.len());
        for id in instance_ids {
            out.extend(self.describe_instance(id).await?);
        }
        Ok(out)
    }
    /// `CreateTags` on an instance.
    async fn tag_instance(&self, instance_id: &str, tags: &[Tag]) -> Result<(), StepError>;
    /// `StopInstances` of one instance (the planned fence: the OS shuts down and flushes). Stopping an
    /// instance that is stopping or stopped is not an error.
    async fn stop_instance(&self, instance_id: &str) -> Result<(), StepError>;
    /// EC2's clock: now, in Unix seconds, the clock of snapshot start times (the wall clock; a fake's own).
    fn now_secs(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// Elastic IPs.
#[async_trait]
pub trait Addresses: Send + Sync {
    /// `DescribeAddresses` of one allocation; `None` when it does not exist.
    async fn describe_address(
        &self,
        allocation_id: &str,
    ) -> Result<Option<ObservedAddress>, StepError>;
    /// `DescribeAddresses` of several allocations at once; the ones that do not exist are left out. The
    /// default asks one by one.
    async fn describe_addresses(
        &self,
        allocation_ids: &[String],
    ) -> Result<Vec<ObservedAddress>, StepError> {
        let mut out = Vec::with_capacity(allocation_ids.len());
        for id in allocation_ids {
            out.extend(self.describe_address(id).await?);
        }
        Ok(out)
    }
    /// `AssociateAddress` with `AllowReassociation=true`.
    async fn associate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError>;
    /// `DisassociateAddress` of the allocation, only while it is associated with `instance_id` (so that a
    /// repeated or late call never takes the address off the instance it moved to).
    async fn disassociate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError>;
}

/// Everything ferry does with EC2, as one object.
pub trait Ec2: Volumes + Snapshots + Instances + Addresses {}

impl<T: Volumes + Snapshots + Instances + Addresses> Ec2 for T {}
