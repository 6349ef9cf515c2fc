//! The EC2 ports of `ReadYourWrites`: each read is checked against what this process wrote; each write is
//! remembered.

use async_trait::async_trait;
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::StepError;

use super::memory::{ids, Kind, Made};
use super::ReadYourWrites;
use crate::ports::{
    Addresses, Ec2, Instances, NewVolume, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes,
};

#[async_trait]
impl<T: Ec2> Volumes for ReadYourWrites<T> {
    async fn find_volumes(&self, query: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        self.settled().await;
        let found = self.inner.find_volumes(query).await?;
        self.check(Kind::Volume, &ids(&found, |v| &v.id), |_, m| {
            m.finds_volume(query)
        })?;
        self.check_volume_tags(&found)?;
        Ok(found)
    }

    async fn find_volumes_batch(
        &self,
        queries: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        self.settled().await;
        let found = self.inner.find_volumes_batch(queries).await?;
        for (query, vols) in queries.iter().zip(&found) {
            self.check(Kind::Volume, &ids(vols, |v| &v.id), |_, m| {
                m.finds_volume(query)
            })?;
            self.check_volume_tags(vols)?;
        }
        Ok(found)
    }

    async fn describe_volumes(&self, wanted: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        self.settled().await;
        let found = self.inner.describe_volumes(wanted).await?;
        self.check(Kind::Volume, &ids(&found, |v| &v.id), |id, _| {
            wanted.iter().any(|w| w == id)
        })?;
        self.check_volume_tags(&found)?;
        Ok(found)
    }

    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        let id = self.inner.create_volume(req).await?;
        self.remember(Kind::Volume, &id, Made::new(&req.tags, None));
        self.tagged_volume(&id, &req.tags);
        Ok(id)
    }

    async fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), StepError> {
        self.inner
            .attach_volume(volume_id, instance_id, device)
            .await
    }

    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), StepError> {
        self.inner.detach_volume(volume_id, instance_id).await
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), StepError> {
        self.inner.delete_volume(volume_id).await?;
        self.forget(Kind::Volume, volume_id);
        self.memory().volume_tags.remove(volume_id);
        Ok(())
    }

    async fn tag_volume(&self, volume_id: &str, written: &[Tag]) -> Result<(), StepError> {
        self.inner.tag_volume(volume_id, written).await?;
        self.retag(Kind::Volume, volume_id, written);
        self.tagged_volume(volume_id, written);
        Ok(())
    }
}

#[async_trait]
impl<T: Ec2> Snapshots for ReadYourWrites<T> {
    async fn find_snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.settled().await;
        let found = self.inner.find_snapshots(query).await?;
        self.check(Kind::Snapshot, &ids(&found, |s| &s.id), |_, m| {
            m.finds_snapshot(query)
        })?;
        Ok(found)
    }

    async fn find_snapshots_batch(
        &self,
        queries: &[SnapshotQuery],
    ) -> Result<Vec<Vec<ObservedSnapshot>>, StepError> {
        self.settled().await;
        let found = self.inner.find_snapshots_batch(queries).await?;
        for (query, snaps) in queries.iter().zip(&found) {
            self.check(Kind::Snapshot, &ids(snaps, |s| &s.id), |_, m| {
                m.finds_snapshot(query)
            })?;
        }
        Ok(found)
    }

    async fn describe_snapshots(
        &self,
        wanted: &[String],
    ) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.settled().await;
        let found = self.inner.describe_snapshots(wanted).await?;
        self.check(Kind::Snapshot, &ids(&found, |s| &s.id), |id, _| {
            wanted.iter().any(|w| w == id)
        })?;
        Ok(found)
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        exclude: &[String],
        written: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError> {
        let made = self
            .inner
            .create_snapshots(instance_id, exclude, written)
            .await?;
        for (snapshot, volume) in &made {
            self.remember(Kind::Snapshot, snapshot, Made::new(written, Some(volume)));
        }
        Ok(made)
    }

    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        written: &[Tag],
    ) -> Result<String, StepError> {
        let id = self
            .inner
            .create_snapshot(volume_id, description, written)
            .await?;
        self.remember(Kind::Snapshot, &id, Made::new(written, Some(volume_id)));
        Ok(id)
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), StepError> {
        self.inner.delete_snapshot(snapshot_id).await?;
        self.forget(Kind::Snapshot, snapshot_id);
        Ok(())
    }

    async fn tag_snapshot(&self, snapshot_id: &str, written: &[Tag]) -> Result<(), StepError> {
        self.inner.tag_snapshot(snapshot_id, written).await?;
        self.retag(Kind::Snapshot, snapshot_id, written);
        Ok(())
    }
}

#[async_trait]
impl<T: Ec2> Instances for ReadYourWrites<T> {
    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<ObservedInstance>, StepError> {
        self.settled().await;
        let found = self.inner.describe_instance(instance_id).await?;
        self.check_instances(&[instance_id], &found.iter().collect::<Vec<_>>())?;
        Ok(found)
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<ObservedInstance>, StepError> {
        self.settled().await;
        let found = self.inner.describe_instances(instance_ids).await?;
        let wanted: Vec<&str> = instance_ids.iter().map(String::as_str).collect();
        self.check_instances(&wanted, &found.iter().collect::<Vec<_>>())?;
        Ok(found)
    }

    async fn tag_instance(&self, instance_id: &str, written: &[Tag]) -> Result<(), StepError> {
        self.inner.tag_instance(instance_id, written).await?;
        self.tagged_instance(instance_id, written);
        Ok(())
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<(), StepError> {
        self.inner.stop_instance(instance_id).await
    }

    fn now_secs(&self) -> i64 {
        self.inner.now_secs()
    }
}

#[async_trait]
impl<T: Ec2> Addresses for ReadYourWrites<T> {
    async fn describe_address(
        &self,
        allocation_id: &str,
    ) -> Result<Option<ObservedAddress>, StepError> {
        self.settled().await;
        self.inner.describe_address(allocation_id).await
    }

    async fn describe_addresses(
        &self,
        allocation_ids: &[String],
    ) -> Result<Vec<ObservedAddress>, StepError> {
        self.settled().await;
        self.inner.describe_addresses(allocation_ids).await
    }

    async fn associate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        self.inner
            .associate_address(allocation_id, instance_id)
            .await
    }

    async fn disassociate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        self.inner
            .disassociate_address(allocation_id, instance_id)
            .await
    }
}
