//! What ferry observed of AWS for one hook: plain data, read fresh before every decision.

use crate::model::Generation;

/// A volume's state, as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeState {
    /// Being created.
    Creating,
    /// Detached and usable.
    Available,
    /// Attached (or attaching / detaching).
    InUse,
    /// Being deleted or gone.
    Deleting,
    /// Failed; holds no usable data.
    Error,
}

impl VolumeState {
    /// EC2's name of the state (`in-use`, ...).
    pub fn as_aws(self) -> &'static str {
        match self {
            VolumeState::Creating => "creating",
            VolumeState::Available => "available",
            VolumeState::InUse => "in-use",
            VolumeState::Deleting => "deleting",
            VolumeState::Error => "error",
        }
    }
}

/// An attachment's state, as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachState {
    /// Being attached.
    Attaching,
    /// Attached.
    Attached,
    /// Being detached.
    Detaching,
}

/// A volume's attachment to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The instance it is attached to.
    pub instance_id: String,
    /// The device name, e.g. `/dev/sdf`.
    pub device: String,
    /// The attachment's state.
    pub state: AttachState,
    /// Whether EC2 deletes the volume when the instance terminates (`DeleteOnTermination`). ferry's own
    /// attachments never do; a volume of the launch template's block device mappings may.
    pub delete_on_termination: bool,
}

/// A ferry-managed volume as observed, with its ledger tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedVolume {
    /// The volume id.
    pub id: String,
    /// Its Availability Zone.
    pub availability_zone: String,
    /// Its state.
    pub state: VolumeState,
    /// Its attachment, if any.
    pub attachment: Option<Attachment>,
    /// The logical volume name (`ferry:volume`).
    pub logical: Option<String>,
    /// The data generation (`ferry:generation`).
    pub generation: Option<Generation>,
    /// The hook that created or last claimed it (`ferry:hook`).
    pub hook: Option<String>,
    /// The slot of the group whose data it holds (`ferry:slot`); `None` when the tag is missing or not a number.
    pub slot: Option<u32>,
    /// The snapshot it was restored from (`ferry:source-snapshot`), if any.
    pub source_snapshot: Option<String>,
    /// The size in GiB.
    pub size_gib: i32,
    /// On a volume restored from a recovery point under `source_unreachable = "restore-latest"`: the writes
    /// it may miss, in seconds (`ferry:loss-window-secs`).
    pub loss_window_secs: Option<u64>,
}

impl ObservedVolume {
    /// Whether the volume holds usable data (not failing, not being deleted).
    pub fn holds_data(&self) -> bool {
        !matches!(self.state, VolumeState::Deleting | VolumeState::Error)
    }

    /// Whether the volume is attached, attaching or detaching to some instance.
    pub fn attached_to(&self) -> Option<&str> {
        self.attachment.as_ref().map(|a| a.instance_id.as_str())
    }
}

/// A snapshot's state, as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotState {
    /// Still being copied; not usable yet.
    Pending,
    /// Usable.
    Completed,
    /// Failed; holds no data.
    Error,
}

/// Why a snapshot was taken (`ferry:reason`). Only a `Final` snapshot holds the last state of its generation;
/// every other reason is a recovery point (docs/tags.md, rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// The terminate hook's pre-copy, taken while the old instance still runs and writes: a recovery point
    /// that carries the bulk of the data, so that the final delta after the fence is small. Tag `precopy`;
    /// v1's `terminate` reads the same (it was taken before the fence too).
    Precopy,
    /// Taken of a fenced volume: detached, its instance gone or no longer holding it, so nothing can write to
    /// it any more. The final state of its generation. Tag `final`; v1's `launch` (a snapshot of a detached
    /// volume) reads the same.
    Final,
    /// On demand (`ferryd snapshot`, an operator's recovery point): not final.
    Manual,
    /// A periodic recovery point of an attached volume (`recovery_point_interval_secs`): not final.
    Recovery,
}

impl SnapshotReason {
    /// The tag value ferry writes.
    pub fn as_tag(self) -> &'static str {
        match self {
            SnapshotReason::Precopy => "precopy",
            SnapshotReason::Final => "final",
            SnapshotReason::Manual => "manual",
            SnapshotReason::Recovery => "recovery",
        }
    }

    /// Parses a tag value, including the values v1 wrote.
    pub fn from_tag(s: &str) -> Option<Self> {
        match s {
            "precopy" | "terminate" => Some(SnapshotReason::Precopy),
            "final" | "launch" => Some(SnapshotReason::Final),
            "manual" => Some(SnapshotReason::Manual),
            "recovery" => Some(SnapshotReason::Recovery),
            _ => None,
        }
    }

    /// Whether a snapshot taken for this reason holds the final state of its generation.
    pub fn is_final(self) -> bool {
        matches!(self, SnapshotReason::Final)
    }
}

/// A ferry snapshot as observed, with its ledger tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSnapshot {
    /// The snapshot id.
    pub id: String,
    /// The volume it was taken from.
    pub volume_id: String,
    /// Its state.
    pub state: SnapshotState,
    /// `Progress`, e.g. `42%`, when EC2 reports it.
    pub progress: Option<String>,
    /// The logical volume name (`ferry:volume`); missing until tagged.
    pub logical: Option<String>,
    /// The data generation (`ferry:generation`); missing until tagged.
    pub generation: Option<Generation>,
    /// The hook that created it (`ferry:hook`).
    pub hook: Option<String>,
    /// Why it was taken (`ferry:reason`).
    pub reason: Option<SnapshotReason>,
    /// When it was started, in seconds since the Unix epoch.
    pub start_time: Option<i64>,
    /// The crash-consistent set it belongs to (`ferry:set`): the snapshots of one instant.
    pub set: Option<String>,
    /// On a pre-copy: when its terminate action began, in Unix seconds (`ferry:action-started`).
    pub action_started: Option<i64>,
    /// On a pre-copy that completed: when its terminate completed (the fence), in Unix seconds
    /// (`ferry:fenced-at`; written under `restore-latest` only).
    pub fenced_at: Option<i64>,
    /// The slot of the group whose data it holds (`ferry:slot`).
    pub slot: Option<u32>,
}

/// An EC2 instance as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedInstance {
    /// The instance id.
    pub id: String,
    /// Its Availability Zone.
    pub availability_zone: String,
    /// Its EC2 state name: `pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`.
    pub state: String,
    /// The volume ids attached to it, root included.
    pub volume_ids: Vec<String>,
    /// Its root volume's id, if known.
    pub root_volume_id: Option<String>,
    /// Its tags.
    pub tags: Vec<(String, String)>,
}

impl ObservedInstance {
    /// Whether EC2 is terminating or has terminated the instance.
    pub fn is_gone(&self) -> bool {
        matches!(self.state.as_str(), "shutting-down" | "terminated")
    }

    /// The value of one tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The slot its `ferry:slot` tag claims, if that is a number (a group of many's launch wrote it).
    pub fn slot(&self) -> Option<u32> {
        self.tag(crate::tags::SLOT)?.trim().parse().ok()
    }
}

/// How the holder of another attached copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderState {
    /// The holder is terminating (Auto Scaling says `Terminating:*`) but EC2 still runs it: its copy will be
    /// released, and it may still be writing.
    Leaving,
    /// The holder is fenced: EC2 reports it `shutting-down` or `terminated`, or does not know it. It writes no
    /// more; it only has not let go of the volume yet (in an impaired AZ, it may never until the AZ returns).
    Fenced,
    /// The holder is in service or otherwise staying: launch-before-terminate, or a foreign instance.
    Staying,
    /// The holder is staying, but Auto Scaling shows it is being replaced and the group hands over
    /// (`launch_before_terminate = "handover"`), or it is a stopped warm-pool instance: the launch fences it
    /// (a planned stop) and detaches its data.
    Replaced,
}

/// An Elastic IP as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedAddress {
    /// The allocation id.
    pub allocation_id: String,
    /// The public IP.
    pub public_ip: String,
    /// The instance it is associated with, if any.
    pub instance_id: Option<String>,
}
