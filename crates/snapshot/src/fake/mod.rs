//! `FakeEc2`: an in-memory EC2 for executor tests, strict where ferry's correctness depends on AWS's rules.
//!
//! Time is `tokio::time::Instant`, so tests under `tokio::time::pause()` move volumes, attachments and
//! snapshots through their timed states by advancing the clock. Every port call is logged by its EC2 name.

mod index;
mod ports;
mod rules;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ferry_state_machine::observe::{
    AttachState, Attachment, ObservedAddress, ObservedInstance, SnapshotState, VolumeState,
};
use ferry_state_machine::{tags, StepError};
use tokio::time::Instant;

use crate::ports::Tag;
use state::{Inner, InstRec, SnapRec, VolRec};

/// How long the fake's timed states last. All zero by default: each change is visible on the next read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// `creating` before `available`.
    pub volume_create: Duration,
    /// `attaching` before `attached`.
    pub attach: Duration,
    /// `detaching` before the volume is `available` again.
    pub detach: Duration,
    /// `pending` (with rising progress) before `completed`: a volume's first snapshot, a full copy.
    pub snapshot: Duration,
    /// The same for a later snapshot of a volume, incremental to the one before; `None`: as `snapshot`.
    pub incremental_snapshot: Option<Duration>,
}

/// How the snapshots of one volume fail (see [`FakeEc2::fail_snapshots_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// The snapshot ends in `error` when it would have completed.
    Error,
    /// The snapshot stays `pending` forever.
    Stuck,
}

/// A volume held by the fake, with every attribute it was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVolume {
    /// The volume id.
    pub id: String,
    /// Its Availability Zone.
    pub availability_zone: String,
    /// Its state.
    pub state: VolumeState,
    /// Its attachment, if any.
    pub attachment: Option<Attachment>,
    /// Size in GiB.
    pub size_gib: i32,
    /// The snapshot it was restored from.
    pub snapshot_id: Option<String>,
    /// `gp3`, `io2`, ...
    pub volume_type: String,
    /// Provisioned IOPS.
    pub iops: Option<i32>,
    /// Provisioned throughput.
    pub throughput: Option<i32>,
    /// Whether it is encrypted.
    pub encrypted: bool,
    /// The KMS key.
    pub kms_key_id: Option<String>,
    /// The `ClientToken` it was created with.
    pub client_token: Option<String>,
    /// Its tags, in the order they were first set.
    pub tags: Vec<Tag>,
    /// The data on it: the last value a workload wrote (see [`FakeEc2::write`]); a restore starts from
    /// its snapshot's.
    pub content: u64,
}

impl FakeVolume {
    /// The value of one tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        tag_value(&self.tags, key)
    }
}

/// A snapshot held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSnapshot {
    /// The snapshot id.
    pub id: String,
    /// The volume it was taken from.
    pub volume_id: String,
    /// The source volume's size in GiB.
    pub size_gib: i32,
    /// Its state.
    pub state: SnapshotState,
    /// Progress in percent.
    pub progress: u8,
    /// Its description.
    pub description: String,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// When it was started, in seconds since the Unix epoch (the fake's clock starts at 1 700 000 000).
    pub start_time: i64,
    /// The volume's content at the moment the snapshot was created (point in time, as EBS).
    pub content: u64,
}

impl FakeSnapshot {
    /// The value of one tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        tag_value(&self.tags, key)
    }
}

/// The ledger tags of one (group, slot, logical volume) at a generation, for seeding tests.
pub fn ledger_tags(group: &str, slot: u32, logical: &str, generation: u64) -> Vec<Tag> {
    vec![
        (tags::GROUP.to_string(), group.to_string()),
        (tags::SLOT.to_string(), slot.to_string()),
        (tags::VOLUME.to_string(), logical.to_string()),
        (tags::GENERATION.to_string(), generation.to_string()),
    ]
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// An AWS error as EC2 returns it (HTTP 400), classified like the real adapter's.
pub(crate) fn aws_error(op: &str, code: &str, message: impl AsRef<str>) -> StepError {
    StepError::from_aws(
        format!("ec2:{op}"),
        Some(code),
        Some(message.as_ref()),
        Some(400),
    )
}

/// An in-memory EC2 implementing every EC2 port. Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct FakeEc2 {
    inner: Arc<Mutex<Inner>>,
}

impl FakeEc2 {
    /// An empty EC2 with the zones `us-east-1a`, `us-east-1b` and `us-east-1c` and zero timings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the state and settles every timed transition that is due.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.settle(Instant::now());
        g
    }

    /// Replaces the Availability Zones that `CreateVolume` accepts.
    pub fn set_azs(&self, azs: &[&str]) {
        self.lock().azs = azs.iter().map(|s| s.to_string()).collect();
    }

    /// Sets how long the timed states last, for resources changed from now on.
    pub fn set_timings(&self, timings: Timings) {
        self.lock().timings = timings;
    }

    /// Makes every pending and future snapshot of `volume_id` fail as `mode` says.
    pub fn fail_snapshots_of(&self, volume_id: &str, mode: FailMode) {
        self.lock()
            .snapshot_faults
            .insert(volume_id.to_string(), mode);
    }

    /// Lets the snapshots of `volume_id` complete again.
    pub fn clear_snapshot_failure(&self, volume_id: &str) {
        self.lock().snapshot_faults.remove(volume_id);
    }

    /// Enforces EC2's limit of one snapshot per volume per `interval` (15 s on AWS), with
    /// `SnapshotCreationPerVolumeRateExceeded`. Off (`None`) by default.
    pub fn set_snapshot_rate_limit(&self, interval: Option<Duration>) {
        self.lock().snapshot_interval = interval;
    }

    /// Adds a `running` instance with a root volume at `/dev/xvda` (`DeleteOnTermination`, as an AMI's); returns
    /// the root volume's id.
    pub fn add_instance(&self, id: &str, az: &str) -> String {
        let mut g = self.lock();
        let root = g.new_id("vol");
        let mut vol = VolRec::new(FakeVolume::available(&root, az, 8, &[]));
        vol.v.state = VolumeState::InUse;
        vol.v.attachment = Some(Attachment {
            instance_id: id.to_string(),
            device: "/dev/xvda".into(),
            state: AttachState::Attached,
            // An AMI's root volume, as EC2 launches it (and deletes it with the instance, below).
            delete_on_termination: true,
        });
        g.volumes.insert(root.clone(), vol);
        g.note_attachment(id, &root);
        let inst = InstRec {
            id: id.to_string(),
            az: az.to_string(),
            state: "running".into(),
            root_volume_id: Some(root.clone()),
            root_device: "/dev/xvda".into(),
            tags: Vec::new(),
        };
        g.instances.insert(id.to_string(), inst);
        root
    }

    /// Sets an instance's EC2 state. `terminated` does what EC2 does: it detaches the non-root volumes
    /// (now `available`), deletes the root volume and disassociates the instance's Elastic IPs.
    ///
    /// # Panics
    /// If the instance was never added (a bug in the test).
    pub fn set_instance_state(&self, id: &str, state: &str) {
        let mut g = self.lock();
        let Some(inst) = g.instances.get_mut(id) else {
            panic!("FakeEc2: no instance {id}")
        };
        inst.state = state.to_string();
        if state == "terminated" {
            g.terminate(id);
        }
    }

    /// A workload on the volume's instance writes `value`: accepted only while the volume is `attached` to a
    /// `running` instance (an instance in `Terminating:Wait` still runs). `Err` names why it was refused.
    pub fn write(&self, volume_id: &str, value: u64) -> Result<(), String> {
        let mut g = self.lock();
        g.settle(Instant::now());
        g.writable(volume_id)?;
        if let Some(r) = g.volumes.get_mut(volume_id) {
            r.v.content = value;
        }
        Ok(())
    }

    /// The workload of `instance_id` writes `value` to every non-root volume attached to it, atomically:
    /// all or none. `Err` names the first volume or instance that refused.
    pub fn write_instance(&self, instance_id: &str, value: u64) -> Result<Vec<String>, String> {
        let mut g = self.lock();
        g.settle(Instant::now());
        let root = g
            .instances
            .get(instance_id)
            .and_then(|i| i.root_volume_id.clone());
        let ids: Vec<String> = g
            .attached_to(instance_id)
            .into_iter()
            .map(|r| r.v.id.clone())
            .filter(|id| Some(id) != root.as_ref())
            .collect();
        if ids.is_empty() {
            return Err(format!("{instance_id} has no data volume attached"));
        }
        for id in &ids {
            g.writable(id)?;
        }
        for id in &ids {
            if let Some(r) = g.volumes.get_mut(id) {
                r.v.content = value;
            }
        }
        Ok(ids)
    }

    /// Detaches a volume at once, as EC2 does to each volume of a terminating instance (one after the other).
    pub fn detach_for_test(&self, volume_id: &str) {
        let mut g = self.lock();
        if let Some(r) = g.volumes.get_mut(volume_id) {
            r.v.attachment = None;
            r.v.state = VolumeState::Available;
        }
    }

    /// Adds an `available` volume; returns its id.
    pub fn add_volume(&self, az: &str, size_gib: i32, tags: &[Tag]) -> String {
        let mut g = self.lock();
        let id = g.new_id("vol");
        g.volumes.insert(
            id.clone(),
            VolRec::new(FakeVolume::available(&id, az, size_gib, tags)),
        );
        id
    }

    /// Adds a volume already `attached` to an instance at `device`, in its zone; returns its id.
    ///
    /// # Panics
    /// If the instance was never added (a bug in the test).
    pub fn add_attached_volume(
        &self,
        instance_id: &str,
        device: &str,
        size_gib: i32,
        tags: &[Tag],
    ) -> String {
        let mut g = self.lock();
        let Some(az) = g.instances.get(instance_id).map(|i| i.az.clone()) else {
            panic!("FakeEc2: no instance {instance_id}")
        };
        let id = g.new_id("vol");
        let mut vol = VolRec::new(FakeVolume::available(&id, &az, size_gib, tags));
        vol.v.state = VolumeState::InUse;
        vol.v.attachment = Some(Attachment {
            instance_id: instance_id.into(),
            device: device.into(),
            state: AttachState::Attached,
            delete_on_termination: false,
        });
        g.volumes.insert(id.clone(), vol);
        g.note_attachment(instance_id, &id);
        id
    }

    /// Sets an attached volume's `DeleteOnTermination` (as a launch template's block device mapping would).
    pub fn set_delete_on_termination(&self, volume_id: &str, delete: bool) {
        let mut g = self.lock();
        if let Some(a) = g
            .volumes
            .get_mut(volume_id)
            .and_then(|r| r.v.attachment.as_mut())
        {
            a.delete_on_termination = delete;
        }
    }

    /// Adds an Elastic IP, associated with nothing.
    pub fn add_address(&self, allocation_id: &str, public_ip: &str) {
        let addr = ObservedAddress {
            allocation_id: allocation_id.into(),
            public_ip: public_ip.into(),
            instance_id: None,
        };
        self.lock()
            .addresses
            .insert(allocation_id.to_string(), addr);
    }

    /// Adds a snapshot of `volume_id` (which need not exist) in the given state; returns its id.
    /// A `Pending` snapshot completes after the snapshot timing, like one made by a call (so at once with the
    /// default zero timing: call [`FakeEc2::set_timings`] or [`FakeEc2::fail_snapshots_of`] first to keep it pending).
    pub fn put_snapshot(
        &self,
        volume_id: &str,
        size_gib: i32,
        state: SnapshotState,
        tags: &[Tag],
    ) -> String {
        let mut g = self.lock();
        let now = Instant::now();
        let id = g.new_id("snap");
        let mut rec = SnapRec::new(
            &id,
            volume_id,
            size_gib,
            "",
            tags.to_vec(),
            g.epoch_secs(now),
            now,
            g.timings,
            false,
        );
        if state != SnapshotState::Pending {
            rec.s.state = state;
            rec.s.progress = if state == SnapshotState::Completed {
                100
            } else {
                0
            };
        }
        g.snapshots.insert(id.clone(), rec);
        g.pending_snapshots.insert(id.clone());
        g.settle(now);
        id
    }

    /// Every volume, in creation order.
    pub fn volumes(&self) -> Vec<FakeVolume> {
        self.lock().volumes.values().map(|r| r.v.clone()).collect()
    }

    /// One volume.
    pub fn volume(&self, id: &str) -> Option<FakeVolume> {
        self.lock().volumes.get(id).map(|r| r.v.clone())
    }

    /// Every snapshot, in creation order.
    pub fn snapshots(&self) -> Vec<FakeSnapshot> {
        self.lock()
            .snapshots
            .values()
            .map(|r| r.s.clone())
            .collect()
    }

    /// One snapshot.
    pub fn snapshot(&self, id: &str) -> Option<FakeSnapshot> {
        self.lock().snapshots.get(id).map(|r| r.s.clone())
    }

    /// One instance, as `DescribeInstances` would show it.
    pub fn instance(&self, id: &str) -> Option<ObservedInstance> {
        self.lock().observe_instance(id)
    }

    /// One Elastic IP.
    pub fn address(&self, allocation_id: &str) -> Option<ObservedAddress> {
        self.lock().addresses.get(allocation_id).cloned()
    }

    /// Every port call so far, by EC2 operation name (`CreateVolume`, `DescribeSnapshots`, ...), in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// How many calls of one operation (`CreateVolume`, or `ec2:CreateVolume`) were made.
    pub fn count(&self, op: &str) -> usize {
        let op = op.strip_prefix("ec2:").unwrap_or(op);
        self.lock().calls.iter().filter(|c| *c == op).count()
    }

    /// Forgets the calls made so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }
}

impl FakeVolume {
    fn available(id: &str, az: &str, size_gib: i32, tags: &[Tag]) -> Self {
        FakeVolume {
            id: id.to_string(),
            availability_zone: az.to_string(),
            state: VolumeState::Available,
            attachment: None,
            size_gib,
            snapshot_id: None,
            volume_type: "gp3".into(),
            iops: None,
            throughput: None,
            encrypted: false,
            kms_key_id: None,
            client_token: None,
            tags: tags.to_vec(),
            content: 0,
        }
    }
}
