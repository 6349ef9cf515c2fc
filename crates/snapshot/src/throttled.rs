//! `Throttled`: wraps any EC2 implementation and waits for the action's token (`ApiBudget`) before each
//! call, so that ferry is held back by its own budget instead of EC2's throttling. A port call that pages
//! (`find_volumes`, `find_snapshots`) takes one token for its first page.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_state_machine::budget::ApiBudget;
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::StepError;

use crate::ports::{
    Addresses, Ec2, Instances, NewVolume, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes,
};

/// An EC2 implementation held to an API budget.
pub struct Throttled<T> {
    inner: T,
    budget: Arc<ApiBudget>,
}

impl<T> Throttled<T> {
    /// `inner`, waiting on `budget` before every call.
    pub fn new(inner: T, budget: Arc<ApiBudget>) -> Self {
        Self { inner, budget }
    }
}

#[async_trait]
impl<T: Ec2> Volumes for Throttled<T> {
    async fn find_volumes(&self, query: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        self.budget.acquire("ec2:DescribeVolumes").await;
        self.inner.find_volumes(query).await
    }

    async fn describe_volumes(&self, ids: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        self.budget.acquire("ec2:DescribeVolumes").await;
        self.inner.describe_volumes(ids).await
    }

    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        self.budget.acquire("ec2:CreateVolume").await;
        self.inner.create_volume(req).await
    }

    async fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), StepError> {
        self.budget.acquire("ec2:AttachVolume").await;
        self.inner
            .attach_volume(volume_id, instance_id, device)
            .await
    }

    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), StepError> {
        self.budget.acquire("ec2:DetachVolume").await;
        self.inner.detach_volume(volume_id, instance_id).await
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), StepError> {
        self.budget.acquire("ec2:DeleteVolume").await;
        self.inner.delete_volume(volume_id).await
    }

    async fn tag_volume(&self, volume_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.budget.acquire("ec2:CreateTags").await;
        self.inner.tag_volume(volume_id, tags).await
    }
}

#[async_trait]
impl<T: Ec2> Snapshots for Throttled<T> {
    async fn find_snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.budget.acquire("ec2:DescribeSnapshots").await;
        self.inner.find_snapshots(query).await
    }

    async fn describe_snapshots(&self, ids: &[String]) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.budget.acquire("ec2:DescribeSnapshots").await;
        self.inner.describe_snapshots(ids).await
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        exclude: &[String],
        tags: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError> {
        self.budget.acquire("ec2:CreateSnapshots").await;
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
        self.budget.acquire("ec2:CreateSnapshot").await;
        self.inner
            .create_snapshot(volume_id, description, tags)
            .await
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), StepError> {
        self.budget.acquire("ec2:DeleteSnapshot").await;
        self.inner.delete_snapshot(snapshot_id).await
    }

    async fn tag_snapshot(&self, snapshot_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.budget.acquire("ec2:CreateTags").await;
        self.inner.tag_snapshot(snapshot_id, tags).await
    }
}

#[async_trait]
impl<T: Ec2> Instances for Throttled<T> {
    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<ObservedInstance>, StepError> {
        self.budget.acquire("ec2:DescribeInstances").await;
        self.inner.describe_instance(instance_id).await
    }

    async fn tag_instance(&self, instance_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.budget.acquire("ec2:CreateTags").await;
        self.inner.tag_instance(instance_id, tags).await
    }

    fn now_secs(&self) -> i64 {
        self.inner.now_secs()
    }
}

#[async_trait]
impl<T: Ec2> Addresses for Throttled<T> {
    async fn describe_address(
        &self,
        allocation_id: &str,
    ) -> Result<Option<ObservedAddress>, StepError> {
        self.budget.acquire("ec2:DescribeAddresses").await;
        self.inner.describe_address(allocation_id).await
    }

    async fn associate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        self.budget.acquire("ec2:AssociateAddress").await;
        self.inner
            .associate_address(allocation_id, instance_id)
            .await
    }
}

#[cfg(test)]
mod tests {
    use ferry_state_machine::budget::{default_limits, Limit};

    use super::*;
    use crate::fake::FakeEc2;

    #[tokio::test(start_paused = true)]
    async fn each_call_waits_for_its_actions_token() {
        let mut limits = default_limits();
        limits.insert(
            "ec2:CreateTags".into(),
            Limit {
                burst: 2,
                per_sec: 1,
            },
        );
        let fake = FakeEc2::new();
        let ec2 = Throttled::new(fake.clone(), Arc::new(ApiBudget::new(&limits)));
        let vol = fake.add_volume("us-east-1a", 10, &[]);
        let start = tokio::time::Instant::now();
        for i in 0..4 {
            let tag = vec![("k".to_string(), i.to_string())];
            assert!(ec2.tag_volume(&vol, &tag).await.is_ok());
        }
        // Two at once, then one a second.
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(2));
        assert_eq!(fake.count("CreateTags"), 4);
        // Describe calls have their own bucket, and never waited.
        assert!(ec2.describe_volumes(&[vol]).await.is_ok());
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(2));
    }
}
