//! The contract's data model, as `contract/ec2.toml` spells it: a case is a small world, steps (port calls
//! with their expected outcome) and checks on the observed state.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Every case of one contract file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// The cases, in file order.
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

/// One case: a world to build, calls to make, and what must hold afterwards.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A unique name, `call.situation`.
    pub name: String,
    /// What the case pins down, and why (the AWS rule it follows).
    #[serde(default)]
    pub about: String,
    /// Instances, built first.
    #[serde(default, rename = "instance")]
    pub instances: Vec<InstanceSeed>,
    /// Volumes, built after the instances (those restored from a snapshot after the snapshots).
    #[serde(default, rename = "volume")]
    pub volumes: Vec<VolumeSeed>,
    /// Completed snapshots of world volumes.
    #[serde(default, rename = "snapshot")]
    pub snapshots: Vec<SnapshotSeed>,
    /// Elastic IPs.
    #[serde(default, rename = "address")]
    pub addresses: Vec<AddressSeed>,
    /// Timed states for the steps (the world itself is built settled).
    #[serde(default)]
    pub timings: Timings,
    /// The calls, in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// What must hold after the last step.
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
}

/// An instance of the world.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSeed {
    /// Its name in the case.
    pub name: String,
    /// Its Availability Zone.
    pub az: String,
    /// `running` (the default), `stopped` or `terminated`, set after the volumes are attached.
    #[serde(default)]
    pub state: Option<String>,
}

/// A volume of the world: `available`, or attached (`attached`) to a world instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSeed {
    /// Its name in the case.
    pub name: String,
    /// Its Availability Zone (for an attached volume: its instance's, when left out).
    #[serde(default)]
    pub az: Option<String>,
    /// Size in GiB (8 when left out).
    #[serde(default)]
    pub size: Option<i32>,
    /// Restored from this world snapshot.
    #[serde(default)]
    pub from: Option<String>,
    /// Tags at creation.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Attached to this world instance ...
    #[serde(default)]
    pub attached: Option<String>,
    /// ... at this device (`/dev/sdf` when left out).
    #[serde(default)]
    pub device: Option<String>,
}

/// A completed snapshot of a world volume.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSeed {
    /// Its name in the case.
    pub name: String,
    /// The world volume it is taken of.
    pub of: String,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An Elastic IP of the world.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressSeed {
    /// Its name in the case.
    pub name: String,
    /// Associated with this world instance, if any.
    #[serde(default)]
    pub associated: Option<String>,
}

/// How long the timed states last during the steps, in seconds (all 0 by default: settled at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    /// `creating` before `available`.
    #[serde(default)]
    pub volume_create: f64,
    /// `attaching` before `attached`.
    #[serde(default)]
    pub attach: f64,
    /// `detaching` before `available`.
    #[serde(default)]
    pub detach: f64,
    /// `pending` before `completed`.
    #[serde(default)]
    pub snapshot: f64,
}

/// The port calls a step can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Call {
    CreateVolume,
    AttachVolume,
    DetachVolume,
    DeleteVolume,
    DescribeVolumes,
    FindVolumes,
    FindVolumesBatch,
    TagVolume,
    CreateSnapshot,
    CreateSnapshots,
    DeleteSnapshot,
    DescribeSnapshots,
    FindSnapshots,
    FindSnapshotsBatch,
    TagSnapshot,
    DescribeInstance,
    DescribeInstances,
    TagInstance,
    StopInstance,
    DescribeAddress,
    DescribeAddresses,
    AssociateAddress,
    DisassociateAddress,
}

/// One port call and its expected outcome. Names of world resources (and of `bind`s of earlier steps)
/// stand for their ids (`<instance>.root`: the instance's root volume); any other value is used as it is (an id
/// EC2 does not know, e.g. `vol-0000000000000dead`). The device `@root` is the instance's root device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The port call.
    pub call: Call,
    /// `volume_id` of volume calls; the source of `create_snapshot`.
    #[serde(default)]
    pub volume: Option<String>,
    /// `instance_id`.
    #[serde(default)]
    pub instance: Option<String>,
    /// `snapshot_id`; the source of `create_volume`.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// `allocation_id`.
    #[serde(default)]
    pub address: Option<String>,
    /// The ids of `describe_*` calls; the `exclude` list of `create_snapshots`.
    #[serde(default)]
    pub ids: Vec<String>,
    /// `create_volume`'s zone.
    #[serde(default)]
    pub az: Option<String>,
    /// `create_volume`'s size.
    #[serde(default)]
    pub size: Option<i32>,
    /// `create_volume`'s type (`gp3` when left out).
    #[serde(default)]
    pub volume_type: Option<String>,
    /// `create_volume`'s `Encrypted`.
    #[serde(default)]
    pub encrypted: Option<bool>,
    /// `create_volume`'s `KmsKeyId`.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// `create_volume`'s `ClientToken` (none when left out).
    #[serde(default)]
    pub token: Option<String>,
    /// `attach_volume`'s device.
    #[serde(default)]
    pub device: Option<String>,
    /// Tags of `create_*` and `tag_*`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The query of `find_*`: `ferry:group`, and optionally `ferry:slot`, `ferry:volume`.
    #[serde(default)]
    pub group: Option<String>,
    /// See `group`.
    #[serde(default)]
    pub slot: Option<u32>,
    /// See `group`.
    #[serde(default)]
    pub logical: Option<String>,
    /// The queries of `find_*_batch`, answered in order.
    #[serde(default)]
    pub queries: Vec<Query>,
    /// Names the id a create returned (for `create_snapshots`: `<bind>:<volume name>` per snapshot).
    #[serde(default)]
    pub bind: Option<String>,
    /// Expected: the call fails with this AWS error code.
    #[serde(default)]
    pub error: Option<String>,
    /// Expected: the error's disposition, `retry` or `permanent`.
    #[serde(default)]
    pub disposition: Option<String>,
    /// Expected: the id a create returned is the one bound to this name.
    #[serde(default)]
    pub same_as: Option<String>,
    /// Expected: exactly these resources (by name) are returned (for `create_snapshots`: the volumes).
    #[serde(default)]
    pub returns: Option<Vec<String>>,
    /// Expected: what each query of a `find_*_batch` returns (by name), in order.
    #[serde(default)]
    pub returns_each: Option<Vec<Vec<String>>>,
    /// Expected: whether `describe_instance` / `describe_address` finds it.
    #[serde(default)]
    pub found: Option<bool>,
    /// What must hold right after this step.
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
}

/// One query of a batched find: `ferry:group`, and optionally `ferry:slot`, `ferry:volume`, `ferry:hook`, the
/// attachment (volumes) or the source volume (snapshots).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// `ferry:group`.
    pub group: String,
    /// `ferry:slot`.
    #[serde(default)]
    pub slot: Option<u32>,
    /// `ferry:volume`.
    #[serde(default)]
    pub logical: Option<String>,
    /// `ferry:hook` (snapshots).
    #[serde(default)]
    pub hook: Option<String>,
    /// Attached to this instance (volumes).
    #[serde(default)]
    pub instance: Option<String>,
    /// Taken of this volume (snapshots).
    #[serde(default)]
    pub volume: Option<String>,
}

/// What must hold of one resource, observed through the ports (`describe_*`). Exactly one of `volume`,
/// `snapshot`, `instance`, `address` names it; every other set field is asserted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// A volume.
    #[serde(default)]
    pub volume: Option<String>,
    /// A snapshot.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// An instance.
    #[serde(default)]
    pub instance: Option<String>,
    /// An Elastic IP.
    #[serde(default)]
    pub address: Option<String>,
    /// Poll (up to 20 s) until the check holds, instead of asserting at once.
    #[serde(default)]
    pub eventually: bool,
    /// The state: volume `creating`/`available`/`in-use`/`deleting`/`error`, snapshot
    /// `pending`/`completed`/`error`, instance `running`/`stopped`/...; `absent`: not found at all.
    #[serde(default)]
    pub state: Option<String>,
    /// Volume: the instance it is attached to; address: the instance it is associated with; `none`: none.
    #[serde(default)]
    pub attached: Option<String>,
    /// Volume: the attachment's device (`@root`: the instance's root device).
    #[serde(default)]
    pub device: Option<String>,
    /// Volume: the attachment's state, `attaching`/`attached`/`detaching`.
    #[serde(default)]
    pub attach_state: Option<String>,
    /// Volume: whether its attachment is deleted with the instance (`DeleteOnTermination`).
    #[serde(default)]
    pub delete_on_termination: Option<bool>,
    /// Volume: its zone.
    #[serde(default)]
    pub az: Option<String>,
    /// Volume: its size in GiB.
    #[serde(default)]
    pub size: Option<i32>,
    /// Snapshot: the volume it was taken of.
    #[serde(default)]
    pub of: Option<String>,
    /// Ledger tags of a volume or snapshot (`ferry:volume`, `ferry:generation`, `ferry:hook`, `ferry:slot`,
    /// `ferry:reason`, `ferry:set`, `ferry:source-snapshot`); any tags of an instance. A subset: other tags
    /// may be there.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Instance: the non-root volumes attached to it, by name (exactly these).
    #[serde(default)]
    pub volumes: Option<Vec<String>>,
    /// Instance: whether it reports a root volume.
    #[serde(default)]
    pub has_root: Option<bool>,
}
