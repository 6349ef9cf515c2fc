//! `ReadYourWrites`: EC2 held to read-your-writes. EC2 is eventually consistent: a volume or snapshot just
//! created can be missing from `DescribeVolumes`/`DescribeSnapshots` for a while. The ledger is read
//! from those Describes, and `CreateSnapshot(s)` has no idempotency token, so a stale read that misses
//! ferry's own snapshot would start a second one (a stale read that misses a volume would repeat a
//! `CreateVolume`, which its `ClientToken` makes harmless but noisy). A group of many also reads slot
//! claims from instance tags (`ferry:slot`), so a stale read could let two launches claim one slot. This
//! layer remembers what this process created and the instance tags it wrote, for [`WINDOW`], and answers
//! a read that should show them but does not with a retryable "not visible yet" error, so that the caller
//! reads again instead of acting on the stale view.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::{tags, StepError};
use tokio::time::Instant;

use crate::ports::{
    Addresses, Ec2, Instances, NewVolume, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes,
};

/// How long a resource this process created must show in the reads that should show it. EC2's lag is
/// seconds; past this, a read is taken as it is (the resource may have been deleted meanwhile).
pub const WINDOW: Duration = Duration::from_secs(120);

/// What this process created: when, and the tags (and source volume) that decide which queries find it.
#[derive(Debug, Clone)]
struct Made {
    at: Instant,
    tags: HashMap<String, String>,
    volume_id: Option<String>,
}

impl Made {
    fn new(tags: &[Tag], volume_id: Option<&str>) -> Self {
        Self {
            at: Instant::now(),
            tags: tags.iter().cloned().collect(),
            volume_id: volume_id.map(str::to_string),
        }
    }

    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    fn in_group(&self, group: &str, slot: Option<u32>, logical: Option<&str>) -> bool {
        self.tag(tags::GROUP) == Some(group)
            && slot.is_none_or(|s| self.tag(tags::SLOT) == Some(s.to_string().as_str()))
            && logical.is_none_or(|l| self.tag(tags::VOLUME) == Some(l))
    }

    fn finds_volume(&self, q: &VolumeQuery) -> bool {
        // A query by attachment cannot find a volume just created (it is not attached yet).
        q.attached_instance.is_none() && self.in_group(&q.group, q.slot, q.logical.as_deref())
    }

    fn finds_snapshot(&self, q: &SnapshotQuery) -> bool {
        self.in_group(&q.group, q.slot, q.logical.as_deref())
            && q.hook
                .as_deref()
                .is_none_or(|h| self.tag(tags::HOOK) == Some(h))
            && q.volume_id
                .as_deref()
                .is_none_or(|v| self.volume_id.as_deref() == Some(v))
    }
}

#[derive(Debug, Default)]
struct Memory {
    volumes: HashMap<String, Made>,
    snapshots: HashMap<String, Made>,
    /// The tags this process wrote on instances, newest value per key.
    instances: HashMap<String, Made>,
}

impl Memory {
    fn prune(&mut self) {
        self.volumes.retain(|_, m| m.at.elapsed() < WINDOW);
        self.snapshots.retain(|_, m| m.at.elapsed() < WINDOW);
        self.instances.retain(|_, m| m.at.elapsed() < WINDOW);
    }
}

/// Any EC2 implementation, held to read-your-writes for the volumes and snapshots it creates.
#[derive(Debug, Default)]
pub struct ReadYourWrites<T> {
    inner: T,
    memory: Mutex<Memory>,
}

impl<T> ReadYourWrites<T> {
    /// `inner`, with nothing remembered yet.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            memory: Mutex::new(Memory::default()),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, kind: Kind, id: &str, made: Made) {
        let mut m = self.memory();
        m.prune();
        match kind {
            Kind::Volume => m.volumes.insert(id.to_string(), made),
            Kind::Snapshot => m.snapshots.insert(id.to_string(), made),
        };
    }

    fn retag(&self, kind: Kind, id: &str, written: &[Tag]) {
        let mut m = self.memory();
        let map = match kind {
            Kind::Volume => &mut m.volumes,
            Kind::Snapshot => &mut m.snapshots,
        };
        if let Some(made) = map.get_mut(id) {
            made.tags.extend(written.iter().cloned());
        }
    }

    fn forget(&self, kind: Kind, id: &str) {
        let mut m = self.memory();
        match kind {
            Kind::Volume => m.volumes.remove(id),
            Kind::Snapshot => m.snapshots.remove(id),
        };
    }

    fn tagged_instance(&self, id: &str, written: &[Tag]) {
        let mut m = self.memory();
        m.prune();
        let made = m
            .instances
            .entry(id.to_string())
            .or_insert_with(|| Made::new(&[], None));
        made.at = Instant::now();
        made.tags.extend(written.iter().cloned());
    }

    /// `Err` (retryable) when an instance of `wanted` that this process tagged is missing from `seen`, or
    /// shows a tag other than the one written.
    fn check_instances(
        &self,
        wanted: &[&str],
        seen: &[&ObservedInstance],
    ) -> Result<(), StepError> {
        let mut m = self.memory();
        m.prune();
        for id in wanted {
            let Some(made) = m.instances.get(*id) else {
                continue;
            };
            let stale = match seen.iter().find(|i| i.id == *id) {
                None => Some("is not visible yet".to_string()),
                Some(i) => made
                    .tags
                    .iter()
                    .find(|(k, v)| !i.tags.iter().any(|(ik, iv)| ik == *k && iv == *v))
                    .map(|(k, v)| format!("does not show its tag {k}={v} yet")),
            };
            if let Some(what) = stale {
                return Err(StepError::retry(
                    "ec2:DescribeInstances",
                    format!(
                        "instance {id}, which ferry tagged {:.1}s ago, {what} (EC2 is eventually \
                         consistent); reading again before acting on it",
                        made.at.elapsed().as_secs_f64()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `Err` (retryable) when `seen` lacks a remembered resource that `finds` says it should show.
    fn check(
        &self,
        kind: Kind,
        seen: &[&str],
        finds: impl Fn(&str, &Made) -> bool,
    ) -> Result<(), StepError> {
        let mut m = self.memory();
        m.prune();
        let map = match kind {
            Kind::Volume => &m.volumes,
            Kind::Snapshot => &m.snapshots,
        };
        match map
            .iter()
            .find(|(id, made)| finds(id, made) && !seen.contains(&id.as_str()))
        {
            None => Ok(()),
            Some((id, made)) => Err(StepError::retry(
                kind.describe(),
                format!(
                    "{} {id}, which ferry created {:.1}s ago, is not visible yet (EC2 is eventually \
                     consistent); reading again before acting on the ledger",
                    kind.noun(),
                    made.at.elapsed().as_secs_f64()
                ),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Volume,
    Snapshot,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Volume => "ec2:DescribeVolumes",
            Kind::Snapshot => "ec2:DescribeSnapshots",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Snapshot => "snapshot",
        }
    }
}

fn ids<T>(found: &[T], id: impl Fn(&T) -> &str) -> Vec<&str> {
    found.iter().map(id).collect()
}

#[async_trait]
impl<T: Ec2> Volumes for ReadYourWrites<T> {
    async fn find_volumes(&self, query: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        let found = self.inner.find_volumes(query).await?;
        self.check(Kind::Volume, &ids(&found, |v| &v.id), |_, m| {
            m.finds_volume(query)
        })?;
        Ok(found)
    }

    async fn find_volumes_batch(
        &self,
        queries: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        let found = self.inner.find_volumes_batch(queries).await?;
        for (query, vols) in queries.iter().zip(&found) {
            self.check(Kind::Volume, &ids(vols, |v| &v.id), |_, m| {
                m.finds_volume(query)
            })?;
        }
        Ok(found)
    }

    async fn describe_volumes(&self, wanted: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        let found = self.inner.describe_volumes(wanted).await?;
        self.check(Kind::Volume, &ids(&found, |v| &v.id), |id, _| {
            wanted.iter().any(|w| w == id)
        })?;
        Ok(found)
    }

    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        let id = self.inner.create_volume(req).await?;
        self.remember(Kind::Volume, &id, Made::new(&req.tags, None));
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
        Ok(())
    }

    async fn tag_volume(&self, volume_id: &str, written: &[Tag]) -> Result<(), StepError> {
        self.inner.tag_volume(volume_id, written).await?;
        self.retag(Kind::Volume, volume_id, written);
        Ok(())
    }
}

#[async_trait]
impl<T: Ec2> Snapshots for ReadYourWrites<T> {
    async fn find_snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> Result<Vec<ObservedSnapshot>, StepError> {
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
        let found = self.inner.describe_instance(instance_id).await?;
        self.check_instances(&[instance_id], &found.iter().collect::<Vec<_>>())?;
        Ok(found)
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<ObservedInstance>, StepError> {
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
        self.inner.describe_address(allocation_id).await
    }

    async fn describe_addresses(
        &self,
        allocation_ids: &[String],
    ) -> Result<Vec<ObservedAddress>, StepError> {
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

#[cfg(test)]
#[path = "read_your_writes_tests.rs"]
mod tests;
