//! `Batched`: EC2 whose reads are coalesced across hooks. Each executor still asks for what it needs
//! (`find_volumes` of its slot, `describe_instance` of its instance) and awaits the answer; underneath, one
//! loader per kind of read answers every hook waiting on that kind with one filtered, paged call per round
//! (`ferry_state_machine::loader`). Mutations pass straight through.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_state_machine::loader::{in_key_order, Loader, LoaderConfig};
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::StepError;

use crate::ports::{
    Addresses, Ec2, Instances, NewVolume, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes,
};

/// EC2 with batched reads.
pub struct Batched {
    inner: Arc<dyn Ec2>,
    volumes: Loader<VolumeQuery, Vec<ObservedVolume>>,
    snapshots: Loader<SnapshotQuery, Vec<ObservedSnapshot>>,
    instances: Loader<String, Option<ObservedInstance>>,
    addresses: Loader<String, Option<ObservedAddress>>,
}

impl Batched {
    /// Batches `inner`'s reads, each kind by `cfg` (keys per call, and the pace of calls). Must be called
    /// within a tokio runtime: the loaders run as tasks.
    pub fn new(inner: Arc<dyn Ec2>, cfg: LoaderConfig) -> Self {
        let ec2 = inner.clone();
        let volumes = Loader::spawn("ec2:DescribeVolumes", cfg, move |qs: Vec<VolumeQuery>| {
            let ec2 = ec2.clone();
            async move { ec2.find_volumes_batch(&qs).await }
        });
        let ec2 = inner.clone();
        let snapshots = Loader::spawn(
            "ec2:DescribeSnapshots",
            cfg,
            move |qs: Vec<SnapshotQuery>| {
                let ec2 = ec2.clone();
                async move { ec2.find_snapshots_batch(&qs).await }
            },
        );
        let ec2 = inner.clone();
        let instances = Loader::spawn("ec2:DescribeInstances", cfg, move |ids: Vec<String>| {
            let ec2 = ec2.clone();
            async move {
                let found = ec2.describe_instances(&ids).await?;
                Ok(in_key_order(&ids, found, |i| i.id.as_str()))
            }
        });
        let ec2 = inner.clone();
        let addresses = Loader::spawn("ec2:DescribeAddresses", cfg, move |ids: Vec<String>| {
            let ec2 = ec2.clone();
            async move {
                let found = ec2.describe_addresses(&ids).await?;
                Ok(in_key_order(&ids, found, |a| a.allocation_id.as_str()))
            }
        });
        Self {
            inner,
            volumes,
            snapshots,
            instances,
            addresses,
        }
    }
}

#[async_trait]
impl Volumes for Batched {
    async fn find_volumes(&self, query: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        self.volumes.load(query.clone()).await
    }

    async fn find_volumes_batch(
        &self,
        queries: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        self.inner.find_volumes_batch(queries).await
    }

    async fn describe_volumes(&self, ids: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        self.inner.describe_volumes(ids).await
    }

    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        self.inner.create_volume(req).await
    }

    async fn attach_volume(&self, v: &str, i: &str, device: &str) -> Result<(), StepError> {
        self.inner.attach_volume(v, i, device).await
    }

    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), StepError> {
        self.inner.detach_volume(volume_id, instance_id).await
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), StepError> {
        self.inner.delete_volume(volume_id).await
    }

    async fn tag_volume(&self, volume_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.inner.tag_volume(volume_id, tags).await
    }
}

#[async_trait]
impl Snapshots for Batched {
    async fn find_snapshots(&self, q: &SnapshotQuery) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.snapshots.load(q.clone()).await
    }

    async fn find_snapshots_batch(
        &self,
        queries: &[SnapshotQuery],
    ) -> Result<Vec<Vec<ObservedSnapshot>>, StepError> {
        self.inner.find_snapshots_batch(queries).await
    }

    async fn describe_snapshots(&self, ids: &[String]) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.inner.describe_snapshots(ids).await
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        exclude: &[String],
        tags: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError> {
        self.inner
            .create_snapshots(instance_id, exclude, tags)
            .await
    }

    async fn create_snapshot(
        &self,
        v: &str,
        desc: &str,
        tags: &[Tag],
    ) -> Result<String, StepError> {
        self.inner.create_snapshot(v, desc, tags).await
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), StepError> {
        self.inner.delete_snapshot(snapshot_id).await
    }

    async fn tag_snapshot(&self, snapshot_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.inner.tag_snapshot(snapshot_id, tags).await
    }
}

#[async_trait]
impl Instances for Batched {
    async fn describe_instance(&self, id: &str) -> Result<Option<ObservedInstance>, StepError> {
        self.instances.load(id.to_string()).await
    }

    async fn describe_instances(&self, ids: &[String]) -> Result<Vec<ObservedInstance>, StepError> {
        self.inner.describe_instances(ids).await
    }

    async fn tag_instance(&self, instance_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.inner.tag_instance(instance_id, tags).await
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<(), StepError> {
        self.inner.stop_instance(instance_id).await
    }

    fn now_secs(&self) -> i64 {
        self.inner.now_secs()
    }
}

#[async_trait]
impl Addresses for Batched {
    async fn describe_address(&self, id: &str) -> Result<Option<ObservedAddress>, StepError> {
        self.addresses.load(id.to_string()).await
    }

    async fn describe_addresses(&self, ids: &[String]) -> Result<Vec<ObservedAddress>, StepError> {
        self.inner.describe_addresses(ids).await
    }

    async fn associate_address(&self, alloc: &str, instance_id: &str) -> Result<(), StepError> {
        self.inner.associate_address(alloc, instance_id).await
    }

    async fn disassociate_address(&self, alloc: &str, instance_id: &str) -> Result<(), StepError> {
        self.inner.disassociate_address(alloc, instance_id).await
    }
}

#[cfg(test)]
#[path = "batched_tests.rs"]
mod tests;
