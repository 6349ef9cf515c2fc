//! What `ReadYourWrites` remembers: each resource this process made or tagged, when, and the tags that decide
//! which queries must find it.

use std::collections::HashMap;

use ferry_state_machine::observe::ObservedVolume;
use ferry_state_machine::tags;
use tokio::time::Instant;

use super::WINDOW;
use crate::ports::{SnapshotQuery, Tag, VolumeQuery};

/// What this process created: when, and the tags (and source volume) that decide which queries find it.
#[derive(Debug, Clone)]
pub(super) struct Made {
    pub(super) at: Instant,
    pub(super) tags: HashMap<String, String>,
    volume_id: Option<String>,
}

impl Made {
    pub(super) fn new(tags: &[Tag], volume_id: Option<&str>) -> Self {
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

    pub(super) fn finds_volume(&self, q: &VolumeQuery) -> bool {
        // A query by attachment cannot find a volume just created (it is not attached yet).
        q.attached_instance.is_none() && self.in_group(&q.group, q.slot, q.logical.as_deref())
    }

    pub(super) fn finds_snapshot(&self, q: &SnapshotQuery) -> bool {
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
pub(super) struct Memory {
    pub(super) volumes: HashMap<String, Made>,
    pub(super) snapshots: HashMap<String, Made>,
    /// The tags this process wrote on instances, newest value per key.
    pub(super) instances: HashMap<String, Made>,
    /// The tags this process wrote on volumes (at creation or after), newest value per key.
    pub(super) volume_tags: HashMap<String, Made>,
}

impl Memory {
    pub(super) fn prune(&mut self) {
        self.volumes.retain(|_, m| m.at.elapsed() < WINDOW);
        self.snapshots.retain(|_, m| m.at.elapsed() < WINDOW);
        self.instances.retain(|_, m| m.at.elapsed() < WINDOW);
        self.volume_tags.retain(|_, m| m.at.elapsed() < WINDOW);
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Volume,
    Snapshot,
}

impl Kind {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Kind::Volume => "ec2:DescribeVolumes",
            Kind::Snapshot => "ec2:DescribeSnapshots",
        }
    }

    pub(super) fn noun(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Snapshot => "snapshot",
        }
    }
}

/// What `v` shows for the ledger tag `key` (empty when the tag is missing); `None` for a key it does not
/// read (those are not checked).
pub(super) fn ledger_field(v: &ObservedVolume, key: &str) -> Option<String> {
    let field = match key {
        tags::GENERATION => v.generation.map(|g| g.0.to_string()),
        tags::HOOK => v.hook.clone(),
        tags::SLOT => v.slot.map(|s| s.to_string()),
        tags::VOLUME => v.logical.clone(),
        tags::SOURCE_SNAPSHOT => v.source_snapshot.clone(),
        _ => return None,
    };
    Some(field.unwrap_or_default())
}

pub(super) fn ids<T>(found: &[T], id: impl Fn(&T) -> &str) -> Vec<&str> {
    found.iter().map(id).collect()
}
