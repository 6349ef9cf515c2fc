//! Reading and writing the tag ledger: the tags ferry puts on what it creates, and deterministic tokens.

use ferry_state_machine::observe::{ObservedInstance, ObservedVolume, SnapshotReason};
use ferry_state_machine::tags;
use ferry_state_machine::Generation;
use sha2::{Digest, Sha256};

use crate::ports::Tag;

/// The slot of a group of one (`max_size = 1`), and the first slot of every group.
pub const FIRST_SLOT: u32 = 0;

fn tag(k: &str, v: impl Into<String>) -> Tag {
    (k.to_string(), v.into())
}

/// The tags every ferry volume and snapshot of a (group, slot) carries.
pub fn base_tags(group: &str, slot: u32, hook_token: &str) -> Vec<Tag> {
    vec![
        tag(tags::GROUP, group),
        tag(tags::SLOT, slot.to_string()),
        tag(tags::HOOK, hook_token),
    ]
}

/// The per-volume tags: logical name and generation.
pub fn data_tags(logical: &str, generation: Generation) -> Vec<Tag> {
    vec![
        tag(tags::VOLUME, logical),
        tag(tags::GENERATION, generation.0.to_string()),
    ]
}

/// The logical-name and generation tags of a managed volume, copied onto a snapshot of it.
pub fn volume_data_tags(vol: &ObservedVolume) -> Vec<Tag> {
    data_tags(
        vol.logical.as_deref().unwrap_or_default(),
        vol.generation.unwrap_or(Generation(0)),
    )
}

/// The volumes of `instance` a `CreateSnapshots` of `wanted` must exclude: every other volume but the
/// boot volume (which `ExcludeBootVolume` already leaves out).
pub fn snapshot_set_exclusions(instance: &ObservedInstance, wanted: &[String]) -> Vec<String> {
    instance
        .volume_ids
        .iter()
        .filter(|id| !wanted.contains(id) && instance.root_volume_id.as_ref() != Some(id))
        .cloned()
        .collect()
}

/// Every tag of a volume a launch creates.
pub fn new_volume_tags(
    group: &str,
    slot: u32,
    hook_token: &str,
    logical: &str,
    generation: Generation,
    source: Option<(&str, &str)>,
) -> Vec<Tag> {
    let mut t = base_tags(group, slot, hook_token);
    t.extend(data_tags(logical, generation));
    if let Some((snapshot, volume)) = source {
        t.push(tag(tags::SOURCE_SNAPSHOT, snapshot));
        t.push(tag(tags::SOURCE_VOLUME, volume));
    }
    t.push(name_tag(group, slot, logical, generation));
    t
}

/// Every tag a launch writes when it claims a detached volume of its slot in its own AZ (the same-AZ fast
/// path): the ledger's base and data tags and a new `Name`. `ferryd doctor` probes with this set too.
pub fn claim_tags(
    group: &str,
    slot: u32,
    hook_token: &str,
    logical: &str,
    generation: Generation,
) -> Vec<Tag> {
    // A claimed volume carries what a new volume of that generation would, without a source.
    new_volume_tags(group, slot, hook_token, logical, generation, None)
}

/// The tags of a final delta: the snapshot a launch takes of the fenced volume from another AZ.
pub fn final_delta_tags(
    group: &str,
    slot: u32,
    hook_token: &str,
    logical: &str,
    generation: Generation,
) -> Vec<Tag> {
    let mut t = base_tags(group, slot, hook_token);
    t.extend(data_tags(logical, generation));
    t.push(tag(tags::REASON, SnapshotReason::Final.as_tag()));
    t
}

/// The tags a launch writes on its instance once its data is attached: `ferry:attached:<logical>` =
/// volume id for each volume, and the group and slot it serves.
pub fn attached_tags<'a>(
    group: &str,
    slot: u32,
    attached: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Tag> {
    let mut t: Vec<Tag> = attached
        .into_iter()
        .map(|(logical, volume)| (format!("{}{logical}", tags::ATTACHED_PREFIX), volume.into()))
        .collect();
    t.push(tag(tags::GROUP, group));
    t.push(tag(tags::SLOT, slot.to_string()));
    t
}

/// The tags of a terminate's pre-copy set (`CreateSnapshots`): base, reason, when the terminate began, the
/// set and a `Name`.
pub fn precopy_tags(
    group: &str,
    slot: u32,
    hook_token: &str,
    action_started: i64,
    set: String,
    name: String,
) -> Vec<Tag> {
    let mut t = base_tags(group, slot, hook_token);
    t.push(tag(tags::REASON, SnapshotReason::Precopy.as_tag()));
    t.push(tag(tags::ACTION_STARTED, action_started.to_string()));
    t.push(tag(tags::SET, set));
    t.push(tag(tags::NAME, name));
    t
}

/// The tags every snapshot of a recovery point carries (a one-volume point adds the volume's data tags):
/// base, reason, the set and a `Name`.
pub fn recovery_tags(
    group: &str,
    slot: u32,
    hook_token: &str,
    set: String,
    name: String,
) -> Vec<Tag> {
    let mut t = base_tags(group, slot, hook_token);
    t.push(tag(tags::REASON, SnapshotReason::Recovery.as_tag()));
    t.push(tag(tags::SET, set));
    t.push(tag(tags::NAME, name));
    t
}

/// The `Name` tag of a ferry volume, for people reading the console; rewritten when a volume is claimed.
pub fn name_tag(group: &str, slot: u32, logical: &str, generation: Generation) -> Tag {
    tag(
        tags::NAME,
        format!("ferry {group}/{slot} {logical} gen {generation}"),
    )
}

/// A `CreateVolume` `ClientToken` (at most 64 characters) derived from the hook, the logical volume and
/// the source, so that a repeated step returns the same volume and a different source never collides.
pub fn client_token(hook_token: &str, logical: &str, source: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [hook_token, logical, source.unwrap_or("empty")] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = hex::encode(h.finalize());
    format!("ferry-{}", &digest[..58])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_token_is_deterministic_bounded_and_source_specific() {
        let a = client_token("tok", "data", Some("snap-1"));
        assert_eq!(a, client_token("tok", "data", Some("snap-1")));
        assert_eq!(a.len(), 64);
        assert_ne!(a, client_token("tok", "data", Some("snap-2")));
        assert_ne!(a, client_token("tok", "wal", Some("snap-1")));
        assert_ne!(
            client_token("tok", "data", None),
            client_token("tok2", "data", None)
        );
    }

    #[test]
    fn volume_tags_carry_lineage() {
        let t = new_volume_tags(
            "db",
            2,
            "tok",
            "data",
            Generation(4),
            Some(("snap-1", "vol-1")),
        );
        let get = |k: &str| t.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get(tags::GENERATION), Some("4"));
        assert_eq!(get(tags::SOURCE_SNAPSHOT), Some("snap-1"));
        assert_eq!(get(tags::SOURCE_VOLUME), Some("vol-1"));
        assert_eq!(get(tags::SLOT), Some("2"));
        assert_eq!(get(tags::HOOK), Some("tok"));
        assert_eq!(get(tags::NAME), Some("ferry db/2 data gen 4"));
    }
}
