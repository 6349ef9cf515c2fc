//! The per-slot part of `ferryd status`: every slot of a group (one, or one per instance in a group of
//! many) with its instance, AZ, newest generation, recovery-point age, Elastic IP, and whether it is live,
//! leaving, parked (data kept, no instance) or empty.

use std::collections::BTreeMap;

use ferry_snapshot::{Instances, SnapshotQuery, Snapshots, VolumeQuery, Volumes};
use ferry_state_machine::observe::SnapshotState;
use ferry_state_machine::GroupInstance;
use serde::Serialize;

use super::{human_age, Aws};
use crate::config::GroupConfig;

/// One slot of a group.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SlotStatus {
    /// The slot number (`ferry:slot`).
    pub slot: u32,
    /// `live` (a member holds it), `leaving` (its holder is terminating), `parked` (data kept, no
    /// instance: the next launch takes it) or `empty` (no data yet: a first boot).
    pub state: String,
    /// The instance that holds it.
    pub instance_id: Option<String>,
    /// The holder's AZ, or where the slot's newest data lies when none holds it.
    pub availability_zone: Option<String>,
    /// The slot's newest data generation, on a volume or a completed snapshot.
    pub generation: Option<u64>,
    /// The age of its newest completed snapshot, in seconds: how old the data a restore would start from is.
    pub recovery_point_age_secs: Option<i64>,
    /// The slot's Elastic IP allocation, if it has one.
    pub elastic_ip: Option<String>,
}

#[derive(Default)]
struct Seen {
    holder: Option<(String, String, String)>,
    data_zone: Option<(u64, String)>,
    generation: Option<u64>,
    newest_snapshot: Option<i64>,
}

/// Reads every slot of `g`: those its members claim, those its ledger holds data for, and `0..desired`.
pub(super) async fn read(
    aws: &Aws,
    g: &GroupConfig,
    members: &[GroupInstance],
    desired: i32,
    now: i64,
) -> Result<Vec<SlotStatus>, String> {
    let group = g.name.clone();
    let volume_query = VolumeQuery {
        group: group.clone(),
        ..VolumeQuery::default()
    };
    let snapshot_query = SnapshotQuery {
        group,
        ..SnapshotQuery::default()
    };
    let ids: Vec<String> = members.iter().map(|m| m.instance_id.clone()).collect();
    let (volumes, snapshots, instances) = tokio::try_join!(
        aws.ec2.find_volumes(&volume_query),
        aws.ec2.find_snapshots(&snapshot_query),
        aws.ec2.describe_instances(&ids),
    )
    .map_err(|e| e.to_string())?;
    let mut slots: BTreeMap<u32, Seen> = (0..u32::try_from(desired.max(1)).unwrap_or(1))
        .map(|n| (n, Seen::default()))
        .collect();
    let member = |id: &str| members.iter().find(|m| m.instance_id == id);
    let hold = |slots: &mut BTreeMap<u32, Seen>, n: u32, m: &GroupInstance| {
        let s = slots.entry(n).or_default();
        if s.holder.is_none() || !m.lifecycle_state.starts_with("Terminat") {
            let h = (
                m.instance_id.clone(),
                m.availability_zone.clone(),
                m.lifecycle_state.clone(),
            );
            s.holder = Some(h);
        }
    };
    for i in &instances {
        if let (Some(n), Some(m)) = (i.slot(), member(&i.id)) {
            hold(&mut slots, n, m);
        }
    }
    for v in volumes.iter().filter(|v| v.holds_data()) {
        let (Some(n), Some(generation)) = (v.slot, v.generation.map(|g| g.0)) else {
            continue;
        };
        let s = slots.entry(n).or_default();
        s.generation = s.generation.max(Some(generation));
        if s.data_zone
            .as_ref()
            .is_none_or(|(best, _)| generation > *best)
        {
            s.data_zone = Some((generation, v.availability_zone.clone()));
        }
        if let Some(m) = v.attached_to().and_then(member) {
            if slots.get(&n).is_some_and(|s| s.holder.is_none()) {
                hold(&mut slots, n, m);
            }
        }
    }
    for snap in snapshots
        .iter()
        .filter(|s| s.state == SnapshotState::Completed)
    {
        let Some(n) = snap.slot else { continue };
        let s = slots.entry(n).or_default();
        s.generation = s.generation.max(snap.generation.map(|g| g.0));
        s.newest_snapshot = s.newest_snapshot.max(snap.start_time);
    }
    let spec = g.spec();
    Ok(slots
        .into_iter()
        .map(|(n, s)| {
            let has_data = s.generation.is_some();
            let (state, instance_id, zone) = match s.holder {
                Some((id, az, life)) if life.starts_with("Terminat") => {
                    ("leaving", Some(id), Some(az))
                }
                Some((id, az, _)) => ("live", Some(id), Some(az)),
                None if has_data => ("parked", None, s.data_zone.map(|(_, z)| z)),
                None => ("empty", None, None),
            };
            SlotStatus {
                slot: n,
                state: state.into(),
                instance_id,
                availability_zone: zone,
                generation: s.generation,
                recovery_point_age_secs: s.newest_snapshot.map(|t| now - t),
                elastic_ip: spec.elastic_ip_of(n).map(str::to_string),
            }
        })
        .collect())
}

const HEADER: &[&str] = &[
    "GROUP",
    "SLOT",
    "STATE",
    "INSTANCE",
    "AZ",
    "GEN",
    "RECOVERY POINT AGE",
    "EIP",
];

/// The slot table, printed under the main one when some group has more than one slot.
pub(super) fn table(groups: &[(String, &[SlotStatus])]) -> String {
    if groups.iter().all(|(_, s)| s.len() <= 1) {
        return String::new();
    }
    let dash = || "-".to_string();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(dash);
    let rows: Vec<Vec<String>> = groups
        .iter()
        .flat_map(|(group, slots)| {
            slots.iter().map(move |s| {
                vec![
                    group.clone(),
                    s.slot.to_string(),
                    s.state.clone(),
                    opt(&s.instance_id),
                    opt(&s.availability_zone),
                    s.generation.map_or_else(dash, |g| g.to_string()),
                    s.recovery_point_age_secs.map_or_else(dash, human_age),
                    opt(&s.elastic_ip),
                ]
            })
        })
        .collect();
    format!("\nSlots:\n{}", super::render_table(HEADER, &rows))
}
