//! The fake's records and its clock: timed transitions settle lazily, on every access.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ferry_state_machine::observe::{
    AttachState, ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
    SnapshotState, VolumeState,
};
use tokio::time::Instant;

use super::index::{Candidates, GroupIndex};
use super::{FailMode, FakeSnapshot, FakeVolume, Timings};
use crate::aws_ec2::ledger;
use crate::ports::{NewVolume, Tag};

/// The Unix time the fake's clock starts at.
const EPOCH_BASE: i64 = 1_700_000_000;

/// A volume with the instants of its pending transitions.
#[derive(Debug, Clone)]
pub(super) struct VolRec {
    pub v: FakeVolume,
    /// When `creating` becomes `available`.
    pub ready_at: Option<Instant>,
    /// When `attaching` becomes `attached`, or `detaching` ends.
    pub attach_due: Option<Instant>,
}

impl VolRec {
    pub fn new(v: FakeVolume) -> Self {
        Self {
            v,
            ready_at: None,
            attach_due: None,
        }
    }

    pub fn observe(&self) -> ObservedVolume {
        let l = ledger(self.v.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        ObservedVolume {
            id: self.v.id.clone(),
            availability_zone: self.v.availability_zone.clone(),
            state: self.v.state,
            attachment: self.v.attachment.clone(),
            logical: l.logical,
            generation: l.generation,
            hook: l.hook,
            slot: l.slot,
            source_snapshot: l.source_snapshot,
            size_gib: self.v.size_gib,
            loss_window_secs: l.loss_window_secs,
        }
    }
}

/// A snapshot with its start and due instants.
#[derive(Debug, Clone)]
pub(super) struct SnapRec {
    pub s: FakeSnapshot,
    pub started: Instant,
    pub duration: Duration,
}

impl SnapRec {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        volume_id: &str,
        size_gib: i32,
        description: &str,
        tags: Vec<Tag>,
        start_time: i64,
        now: Instant,
        timings: Timings,
        incremental: bool,
    ) -> Self {
        let s = FakeSnapshot {
            id: id.to_string(),
            volume_id: volume_id.to_string(),
            size_gib,
            state: SnapshotState::Pending,
            progress: 0,
            description: description.to_string(),
            tags,
            start_time,
            content: 0,
        };
        Self {
            s,
            started: now,
            duration: if incremental {
                timings.incremental_snapshot.unwrap_or(timings.snapshot)
            } else {
                timings.snapshot
            },
        }
    }

    pub fn observe(&self) -> ObservedSnapshot {
        let l = ledger(self.s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        ObservedSnapshot {
            id: self.s.id.clone(),
            volume_id: self.s.volume_id.clone(),
            state: self.s.state,
            progress: Some(format!("{}%", self.s.progress)),
            logical: l.logical,
            generation: l.generation,
            hook: l.hook,
            reason: l.reason,
            start_time: Some(self.s.start_time),
            set: l.set,
            action_started: l.action_started,
            fenced_at: l.fenced_at,
            slot: l.slot,
        }
    }

    fn settle(&mut self, now: Instant, fault: Option<FailMode>) {
        if self.s.state != SnapshotState::Pending {
            return;
        }
        let elapsed = now.saturating_duration_since(self.started);
        let due = elapsed >= self.duration;
        let pct = if self.duration.is_zero() {
            100
        } else {
            elapsed.as_millis() * 100 / self.duration.as_millis()
        };
        self.s.progress = u8::try_from(pct.min(99)).unwrap_or(99);
        match (due, fault) {
            (true, None) => {
                self.s.state = SnapshotState::Completed;
                self.s.progress = 100;
            }
            (true, Some(FailMode::Error)) => self.s.state = SnapshotState::Error,
            _ => {}
        }
    }
}

/// An instance.
#[derive(Debug, Clone)]
pub(super) struct InstRec {
    pub id: String,
    pub az: String,
    pub state: String,
    pub root_volume_id: Option<String>,
    pub root_device: String,
    pub tags: Vec<Tag>,
}

/// Everything the fake holds.
#[derive(Debug)]
pub(super) struct Inner {
    pub azs: Vec<String>,
    pub timings: Timings,
    next_id: u64,
    origin: Instant,
    pub volumes: BTreeMap<String, VolRec>,
    pub snapshots: BTreeMap<String, SnapRec>,
    /// The volumes and snapshots with a timed transition still to come: `settle` visits only these, so a
    /// fake holding thousands of groups costs little per call.
    pub pending_volumes: BTreeSet<String>,
    pub pending_snapshots: BTreeSet<String>,
    /// The volumes and snapshots by group, for batched finds.
    pub volume_index: GroupIndex,
    pub snapshot_index: GroupIndex,
    /// The volumes by the instance they were attached to (see [`Inner::note_attachment`]).
    pub attached: Candidates,
    pub instances: BTreeMap<String, InstRec>,
    pub addresses: BTreeMap<String, ObservedAddress>,
    /// `ClientToken` → (the request, the volume it made).
    pub tokens: HashMap<String, (NewVolume, String)>,
    pub snapshot_faults: HashMap<String, FailMode>,
    pub snapshot_interval: Option<Duration>,
    pub last_snapshot: HashMap<String, Instant>,
    pub calls: Vec<String>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            azs: ["us-east-1a", "us-east-1b", "us-east-1c"]
                .map(String::from)
                .to_vec(),
            timings: Timings::default(),
            next_id: 0,
            origin: Instant::now(),
            volumes: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            pending_volumes: BTreeSet::new(),
            pending_snapshots: BTreeSet::new(),
            volume_index: GroupIndex::default(),
            snapshot_index: GroupIndex::default(),
            attached: Candidates::default(),
            instances: BTreeMap::new(),
            addresses: BTreeMap::new(),
            tokens: HashMap::new(),
            snapshot_faults: HashMap::new(),
            snapshot_interval: None,
            last_snapshot: HashMap::new(),
            calls: Vec::new(),
        }
    }
}

impl Inner {
    /// A fresh id; fixed-width hex keeps creation order in the maps' order.
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:017x}", self.next_id)
    }

    /// The fake's wall clock at `now`, in seconds since the Unix epoch.
    pub fn epoch_secs(&self, now: Instant) -> i64 {
        let secs = now.saturating_duration_since(self.origin).as_secs();
        EPOCH_BASE.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX - EPOCH_BASE))
    }

    /// Applies every timed transition due by `now`.
    pub fn settle(&mut self, now: Instant) {
        let mut settled = Vec::new();
        for id in &self.pending_volumes {
            let Some(rec) = self.volumes.get_mut(id) else {
                settled.push(id.clone());
                continue;
            };
            if rec.v.state == VolumeState::Creating && rec.ready_at.is_some_and(|t| t <= now) {
                rec.v.state = VolumeState::Available;
                rec.ready_at = None;
            }
            if rec.attach_due.is_some_and(|t| t <= now) {
                rec.attach_due = None;
                match rec.v.attachment.as_ref().map(|a| a.state) {
                    Some(AttachState::Attaching) => {
                        if let Some(a) = rec.v.attachment.as_mut() {
                            a.state = AttachState::Attached;
                        }
                    }
                    Some(AttachState::Detaching) => {
                        rec.v.attachment = None;
                        rec.v.state = VolumeState::Available;
                    }
                    _ => {}
                }
            }
            if rec.ready_at.is_none() && rec.attach_due.is_none() {
                settled.push(id.clone());
            }
        }
        for id in settled.drain(..) {
            self.pending_volumes.remove(&id);
        }
        for id in &self.pending_snapshots {
            let Some(rec) = self.snapshots.get_mut(id) else {
                settled.push(id.clone());
                continue;
            };
            let fault = self.snapshot_faults.get(&rec.s.volume_id).copied();
            rec.settle(now, fault);
            if rec.s.state != SnapshotState::Pending {
                settled.push(id.clone());
            }
        }
        for id in settled {
            self.pending_snapshots.remove(&id);
        }
    }

    /// What EC2 does when an instance terminates.
    pub fn terminate(&mut self, instance_id: &str) {
        let root = self
            .instances
            .get(instance_id)
            .and_then(|i| i.root_volume_id.clone());
        if let Some(root) = root {
            self.volumes.remove(&root);
        }
        let attached: Vec<String> = self.attached.candidates(instance_id).cloned().collect();
        for id in attached {
            let Some(rec) = self.volumes.get_mut(&id) else {
                continue;
            };
            if rec
                .v
                .attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == instance_id)
            {
                rec.v.attachment = None;
                rec.v.state = VolumeState::Available;
                rec.attach_due = None;
            }
        }
        for addr in self.addresses.values_mut() {
            if addr.instance_id.as_deref() == Some(instance_id) {
                addr.instance_id = None;
            }
        }
    }

    /// Records that `volume_id` is now attached to `instance_id`: every change that sets an attachment
    /// calls this, so that the look-ups by instance stay in step.
    pub fn note_attachment(&mut self, instance_id: &str, volume_id: &str) {
        self.attached.insert(instance_id, volume_id);
    }

    /// The volumes attached (attaching, detaching) to an instance, root first, then by device.
    pub fn attached_to(&self, instance_id: &str) -> Vec<&VolRec> {
        let mut all = self.attached_to_each(&[instance_id]);
        all.remove(instance_id).unwrap_or_default()
    }

    /// `attached_to` of several instances, in one pass over the volumes.
    pub fn attached_to_each<'a, 'i>(
        &'a self,
        ids: &[&'i str],
    ) -> HashMap<&'i str, Vec<&'a VolRec>> {
        let mut out: HashMap<&'i str, Vec<&'a VolRec>> = ids
            .iter()
            .map(|i| {
                let list = self
                    .attached
                    .candidates(i)
                    .filter_map(|v| self.volumes.get(v))
                    .filter(|r| r.v.attachment.as_ref().is_some_and(|a| a.instance_id == *i))
                    .collect();
                (*i, list)
            })
            .collect();
        for (id, list) in &mut out {
            let root = self
                .instances
                .get(*id)
                .and_then(|i| i.root_volume_id.as_deref());
            list.sort_by_key(|r| {
                (
                    Some(r.v.id.as_str()) != root,
                    r.v.attachment.as_ref().map(|a| a.device.clone()),
                )
            });
        }
        out
    }

    pub fn observe_instance(&self, id: &str) -> Option<ObservedInstance> {
        self.observe_instances(&[id]).pop()
    }

    /// `observe_instance` of several instances, in one pass over the volumes; unknown ids are left out.
    pub fn observe_instances(&self, ids: &[&str]) -> Vec<ObservedInstance> {
        let mut attached = self.attached_to_each(ids);
        ids.iter()
            .filter_map(|id| {
                let vols = attached.remove(id).unwrap_or_default();
                self.observe_with(id, &vols)
            })
            .collect()
    }

    fn observe_with(&self, id: &str, attached: &[&VolRec]) -> Option<ObservedInstance> {
        let inst = self.instances.get(id)?;
        Some(ObservedInstance {
            id: inst.id.clone(),
            availability_zone: inst.az.clone(),
            state: inst.state.clone(),
            volume_ids: attached.iter().map(|r| r.v.id.clone()).collect(),
            root_volume_id: inst
                .root_volume_id
                .clone()
                .filter(|r| self.volumes.contains_key(r)),
            tags: inst.tags.clone(),
        })
    }
}

/// Sets tags like `CreateTags`: existing keys get the new value, new keys are appended.
pub(super) fn merge_tags(tags: &mut Vec<Tag>, new: &[Tag]) {
    for (k, v) in new {
        match tags.iter_mut().find(|(ek, _)| ek == k) {
            Some(existing) => existing.1 = v.clone(),
            None => tags.push((k.clone(), v.clone())),
        }
    }
}

/// Whether a tag is set to exactly this value, as a `tag:<key>` filter matches.
pub(super) fn has_tag(tags: &[Tag], key: &str, value: &str) -> bool {
    tags.iter().any(|(k, v)| k == key && v == value)
}
