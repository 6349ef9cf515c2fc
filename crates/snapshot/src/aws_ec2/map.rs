//! Mapping between ferry's types and EC2's shapes: request filters and tags, observations, ledger tags.

use aws_sdk_ec2::types::{
    Filter, Instance, ResourceType, Snapshot, SnapshotState as Ec2SnapshotState, Tag as Ec2Tag,
    TagSpecification, Volume, VolumeAttachmentState, VolumeState as Ec2VolumeState,
};
use ferry_state_machine::observe::{
    AttachState, Attachment, ObservedInstance, ObservedSnapshot, ObservedVolume, SnapshotReason,
    SnapshotState, VolumeState,
};
use ferry_state_machine::{tags, Generation};

use crate::ports::{SnapshotQuery, Tag, VolumeQuery};

/// One EC2 filter with one value.
fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// A filter on one tag's value.
fn tag_filter(key: &str, value: impl Into<String>) -> Filter {
    filter(&format!("tag:{key}"), value)
}

/// The `DescribeVolumes` filters of a query; the group is always one of them.
pub(super) fn volume_filters(q: &VolumeQuery) -> Vec<Filter> {
    let mut out = vec![tag_filter(tags::GROUP, q.group.as_str())];
    out.extend(q.slot.map(|s| tag_filter(tags::SLOT, s.to_string())));
    out.extend(q.logical.as_deref().map(|l| tag_filter(tags::VOLUME, l)));
    out.extend(
        q.attached_instance
            .as_deref()
            .map(|i| filter("attachment.instance-id", i)),
    );
    out
}

/// The `DescribeSnapshots` filters of a query; the group is always one of them.
pub(super) fn snapshot_filters(q: &SnapshotQuery) -> Vec<Filter> {
    let mut out = vec![tag_filter(tags::GROUP, q.group.as_str())];
    out.extend(q.slot.map(|s| tag_filter(tags::SLOT, s.to_string())));
    out.extend(q.logical.as_deref().map(|l| tag_filter(tags::VOLUME, l)));
    out.extend(q.hook.as_deref().map(|h| tag_filter(tags::HOOK, h)));
    out.extend(q.volume_id.as_deref().map(|v| filter("volume-id", v)));
    out
}

pub(super) fn ec2_tags(tags: &[Tag]) -> Vec<Ec2Tag> {
    tags.iter()
        .map(|(k, v)| Ec2Tag::builder().key(k).value(v).build())
        .collect()
}

pub(super) fn tag_spec(resource: ResourceType, tags: &[Tag]) -> Option<Vec<TagSpecification>> {
    (!tags.is_empty()).then(|| {
        vec![TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(ec2_tags(tags)))
            .build()]
    })
}

/// The ledger fields read from a resource's tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ledger {
    pub logical: Option<String>,
    pub generation: Option<Generation>,
    pub hook: Option<String>,
    pub slot: Option<u32>,
    pub source_snapshot: Option<String>,
    pub reason: Option<SnapshotReason>,
    pub set: Option<String>,
    pub action_started: Option<i64>,
    pub fenced_at: Option<i64>,
    pub loss_window_secs: Option<u64>,
}

/// Reads the ledger tags; a generation that does not parse is `None`.
pub(crate) fn ledger<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Ledger {
    let mut out = Ledger::default();
    for (k, v) in pairs {
        match k {
            tags::VOLUME => out.logical = Some(v.to_string()),
            tags::GENERATION => out.generation = v.trim().parse::<u64>().ok().map(Generation),
            tags::HOOK => out.hook = Some(v.to_string()),
            tags::SLOT => out.slot = v.trim().parse().ok(),
            tags::SOURCE_SNAPSHOT => out.source_snapshot = Some(v.to_string()),
            tags::REASON => out.reason = SnapshotReason::from_tag(v),
            tags::SET => out.set = Some(v.to_string()),
            tags::ACTION_STARTED => out.action_started = v.trim().parse().ok(),
            tags::FENCED_AT => out.fenced_at = v.trim().parse().ok(),
            tags::LOSS_WINDOW => out.loss_window_secs = v.trim().parse().ok(),
            _ => {}
        }
    }
    out
}

fn ec2_pairs(t: &[aws_sdk_ec2::types::Tag]) -> impl Iterator<Item = (&str, &str)> {
    t.iter()
        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
}

fn volume_state(s: Option<&Ec2VolumeState>) -> VolumeState {
    match s {
        Some(Ec2VolumeState::Creating) => VolumeState::Creating,
        Some(Ec2VolumeState::Available) => VolumeState::Available,
        Some(Ec2VolumeState::InUse) => VolumeState::InUse,
        Some(Ec2VolumeState::Deleting | Ec2VolumeState::Deleted) => VolumeState::Deleting,
        // `error`, and any state this SDK does not know: hold no usable data.
        _ => VolumeState::Error,
    }
}

fn attach_state(s: Option<&VolumeAttachmentState>) -> Option<AttachState> {
    match s {
        Some(VolumeAttachmentState::Attaching) => Some(AttachState::Attaching),
        Some(VolumeAttachmentState::Detaching) => Some(AttachState::Detaching),
        Some(VolumeAttachmentState::Detached) => None,
        // `attached`, `busy`, or unknown: the volume is held by the instance.
        _ => Some(AttachState::Attached),
    }
}

/// A volume as ferry sees it; `None` without an id.
pub(crate) fn observe_volume(v: &Volume) -> Option<ObservedVolume> {
    let attachment = v.attachments().first().and_then(|a| {
        Some(Attachment {
            instance_id: a.instance_id()?.to_string(),
            device: a.device().unwrap_or_default().to_string(),
            state: attach_state(a.state())?,
            delete_on_termination: a.delete_on_termination().unwrap_or(false),
        })
    });
    let l = ledger(ec2_pairs(v.tags()));
    Some(ObservedVolume {
        id: v.volume_id()?.to_string(),
        availability_zone: v.availability_zone().unwrap_or_default().to_string(),
        state: volume_state(v.state()),
        attachment,
        logical: l.logical,
        generation: l.generation,
        hook: l.hook,
        slot: l.slot,
        source_snapshot: l.source_snapshot,
        size_gib: v.size().unwrap_or_default(),
        loss_window_secs: l.loss_window_secs,
    })
}

fn snapshot_state(s: Option<&Ec2SnapshotState>) -> SnapshotState {
    match s {
        Some(Ec2SnapshotState::Completed) => SnapshotState::Completed,
        Some(Ec2SnapshotState::Error) => SnapshotState::Error,
        // `pending`, `recoverable`, `recovering`, unknown: not usable yet, not failed either.
        _ => SnapshotState::Pending,
    }
}

/// A snapshot as ferry sees it; `None` without an id.
pub(crate) fn observe_snapshot(s: &Snapshot) -> Option<ObservedSnapshot> {
    let l = ledger(ec2_pairs(s.tags()));
    Some(ObservedSnapshot {
        id: s.snapshot_id()?.to_string(),
        volume_id: s.volume_id().unwrap_or_default().to_string(),
        state: snapshot_state(s.state()),
        progress: s.progress().map(str::to_string),
        logical: l.logical,
        generation: l.generation,
        hook: l.hook,
        reason: l.reason,
        start_time: s.start_time().map(|t| t.secs()),
        set: l.set,
        action_started: l.action_started,
        fenced_at: l.fenced_at,
        slot: l.slot,
    })
}

/// An instance as ferry sees it.
pub(crate) fn observe_instance(i: &Instance) -> ObservedInstance {
    let root_device = i.root_device_name();
    let mut volume_ids = Vec::new();
    let mut root_volume_id = None;
    for m in i.block_device_mappings() {
        let Some(id) = m.ebs().and_then(|e| e.volume_id()) else {
            continue;
        };
        if root_device.is_some() && m.device_name() == root_device {
            root_volume_id = Some(id.to_string());
        }
        volume_ids.push(id.to_string());
    }
    ObservedInstance {
        id: i.instance_id().unwrap_or_default().to_string(),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        volume_ids,
        root_volume_id,
        tags: ec2_pairs(i.tags())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}
