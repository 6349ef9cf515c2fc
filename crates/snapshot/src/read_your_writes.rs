//! `ReadYourWrites`: EC2 held to read-your-writes. EC2 is eventually consistent: a volume or snapshot just
//! created can be missing from `DescribeVolumes`/`DescribeSnapshots` for a while. The ledger is read
//! from those Describes, and `CreateSnapshot(s)` has no idempotency token, so a stale read that misses
//! ferry's own snapshot would start a second one (a stale read that misses a volume would repeat a
//! `CreateVolume`, which its `ClientToken` makes harmless but noisy). A group of many also reads slot
//! claims from instance tags (`ferry:slot`), so a stale read could let two launches claim one slot. This
//! layer remembers what this process created and the instance tags it wrote, for [`WINDOW`], and answers
//! a read that should show them but does not with a retryable "not visible yet" error, so that the caller
//! reads again instead of acting on the stale view. The ledger tags it wrote on volumes (a claim) are
//! held to the same rule, so a claim is not written twice.
//!
//! Memory does not survive a restart: a process that starts reads EC2 only once `settle` has passed since
//! it started (`[daemon] startup_settle_secs`), so that what a crashed predecessor wrote just before is
//! visible to its first reads and is not made a second time.

use std::sync::Mutex;
use std::time::Duration;

use ferry_state_machine::observe::{ObservedInstance, ObservedVolume};
use ferry_state_machine::StepError;
use tokio::time::Instant;

use crate::ports::Tag;

/// How long a resource this process created must show in the reads that should show it. EC2's lag is
/// seconds; past this, a read is taken as it is (the resource may have been deleted meanwhile).
pub const WINDOW: Duration = Duration::from_secs(120);

#[path = "read_your_writes_memory.rs"]
mod memory;
#[path = "read_your_writes_ports.rs"]
mod ports;

use memory::{ledger_field, Kind, Made, Memory};

/// Any EC2 implementation, held to read-your-writes for the volumes and snapshots it creates.
#[derive(Debug)]
pub struct ReadYourWrites<T> {
    inner: T,
    memory: Mutex<Memory>,
    /// No read before this instant (see the module's doc).
    settled_at: Instant,
}

impl<T> ReadYourWrites<T> {
    /// `inner`, with nothing remembered yet, reading at once.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            memory: Mutex::new(Memory::default()),
            settled_at: Instant::now(),
        }
    }

    /// The same, reading EC2 only once `settle` has passed from now.
    pub fn settling(mut self, settle: Duration) -> Self {
        self.settled_at = Instant::now() + settle;
        self
    }

    /// Waits out the start-up settle (at once after it).
    async fn settled(&self) {
        tokio::time::sleep_until(self.settled_at).await;
    }

    fn tagged_volume(&self, id: &str, written: &[Tag]) {
        let mut m = self.memory();
        m.prune();
        let made = m
            .volume_tags
            .entry(id.to_string())
            .or_insert_with(|| Made::new(&[], None));
        made.at = Instant::now();
        made.tags.extend(written.iter().cloned());
    }

    /// `Err` (retryable) when a volume of `seen` shows a ledger tag other than the one this process wrote.
    fn check_volume_tags(&self, seen: &[ObservedVolume]) -> Result<(), StepError> {
        let mut m = self.memory();
        m.prune();
        for v in seen {
            let Some(made) = m.volume_tags.get(&v.id) else {
                continue;
            };
            if let Some((k, want)) = made
                .tags
                .iter()
                .find(|(k, want)| ledger_field(v, k).is_some_and(|got| got != **want))
            {
                return Err(StepError::retry(
                    Kind::Volume.describe(),
                    format!(
                        "volume {}, which ferry tagged {:.1}s ago, does not show its tag {k}={want} yet \
                         (EC2 is eventually consistent); reading again before acting on the ledger",
                        v.id,
                        made.at.elapsed().as_secs_f64()
                    ),
                ));
            }
        }
        Ok(())
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

#[cfg(test)]
#[path = "read_your_writes_tests.rs"]
mod tests;
