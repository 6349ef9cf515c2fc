//! The dead-AZ part of `ferryd status`: the group's `source_unreachable` policy and recovery-point interval,
//! the loss window of data restored from a recovery point, and superseded copies kept for forensics.

use ferry_snapshot::{VolumeQuery, Volumes};
use ferry_state_machine::observe::ObservedVolume;
use serde::Serialize;

use super::status::{GroupStatus, StatusReport};
use super::Aws;
use crate::config::GroupConfig;

/// How a group handles an unreachable source.
#[derive(Debug, Serialize)]
pub struct SourcePolicyStatus {
    /// `wait` or `restore-latest`.
    pub source_unreachable: String,
    /// `restore_latest_after_secs`.
    pub restore_latest_after_secs: u64,
    /// `recovery_point_interval_secs` (0: off).
    pub recovery_point_interval_secs: u64,
}

/// A copy of older data than the slot's newest generation, which ferry never attaches as current: after a
/// restore-latest, the copy the impaired AZ held (it may hold the writes the restore lost).
#[derive(Debug, Serialize)]
pub struct SupersededVolume {
    /// The logical name.
    pub logical: String,
    /// The volume id.
    pub volume_id: String,
    /// Its AZ.
    pub availability_zone: String,
    /// Its generation.
    pub generation: u64,
    /// The newest generation of its lineage.
    pub newest_generation: u64,
    /// The instance it is still attached to, if any.
    pub attached_to: Option<String>,
    /// Whether a restore-latest superseded it (the newest copy carries a loss window): it may hold the
    /// writes that restore lost. Otherwise it is the source of an ordinary later failover.
    pub by_restore_latest: bool,
}

/// The policy of a configured group.
pub fn policy(g: &GroupConfig) -> SourcePolicyStatus {
    SourcePolicyStatus {
        source_unreachable: g.source_unreachable.as_str().to_string(),
        restore_latest_after_secs: g.restore_latest_after_secs,
        recovery_point_interval_secs: g.recovery_point_interval_secs,
    }
}

/// The superseded volumes of each slot of a group: holding data, of a lower generation than the newest
/// volume of their lineage in the same slot.
pub async fn superseded(aws: &Aws, g: &GroupConfig) -> Result<Vec<SupersededVolume>, String> {
    let all = aws
        .ec2
        .find_volumes(&VolumeQuery {
            group: g.name.clone(),
            ..VolumeQuery::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut slots: Vec<Option<u32>> = all.iter().map(|v| v.slot).collect();
    slots.sort_unstable();
    slots.dedup();
    Ok(slots
        .into_iter()
        .flat_map(|n| {
            let of_slot: Vec<ObservedVolume> =
                all.iter().filter(|v| v.slot == n).cloned().collect();
            of(&of_slot)
        })
        .collect())
}

fn of(all: &[ObservedVolume]) -> Vec<SupersededVolume> {
    let live: Vec<&ObservedVolume> = all.iter().filter(|v| v.holds_data()).collect();
    let mut out = Vec::new();
    for v in &live {
        let (Some(logical), Some(g)) = (&v.logical, v.generation) else {
            continue;
        };
        let lineage = || {
            live.iter()
                .filter(move |o| o.logical.as_ref() == Some(logical))
        };
        let newest = lineage().filter_map(|o| o.generation).max().unwrap_or(g);
        if g < newest {
            let by_restore_latest = lineage()
                .any(|o| o.generation.is_some_and(|og| og > g) && o.loss_window_secs.is_some());
            out.push(SupersededVolume {
                logical: logical.clone(),
                volume_id: v.id.clone(),
                availability_zone: v.availability_zone.clone(),
                generation: g.0,
                newest_generation: newest.0,
                attached_to: v.attached_to().map(str::to_string),
                by_restore_latest,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.logical, a.generation, &a.volume_id).cmp(&(&b.logical, b.generation, &b.volume_id))
    });
    out
}

/// The lines printed under the status table.
pub fn notes(report: &StatusReport) -> String {
    let mut out = String::new();
    for g in &report.groups {
        out.push_str(&group_notes(g));
    }
    out
}

fn group_notes(g: &GroupStatus) -> String {
    let p = &g.source_policy;
    let every = match p.recovery_point_interval_secs {
        0 => "off".to_string(),
        s => format!("every {s}s"),
    };
    let mut out = format!(
        "{}: source_unreachable = {} (after {}s), recovery points {every}\n",
        g.group, p.source_unreachable, p.restore_latest_after_secs
    );
    for i in &g.instances {
        for v in i.volumes.iter().filter(|v| v.loss_window_secs.is_some()) {
            out.push_str(&format!(
                "{}: {} {} gen {} was restored from a recovery point: loss window {}s\n",
                g.group,
                v.logical.as_deref().unwrap_or("?"),
                v.volume_id,
                v.generation.unwrap_or(0),
                v.loss_window_secs.unwrap_or(0)
            ));
        }
    }
    for s in &g.superseded {
        let held = s
            .attached_to
            .as_deref()
            .map(|i| format!(", still attached to {i}"))
            .unwrap_or_default();
        let what = if s.by_restore_latest {
            "superseded by a restore of a recovery point (it may hold the lost writes): kept for forensics, never attached"
        } else {
            "an older generation: never attached, `ferryd gc` retires it"
        };
        out.push_str(&format!(
            "{}: {} {} gen {} in {}{held} (newest is gen {}): {what}\n",
            g.group, s.logical, s.volume_id, s.generation, s.availability_zone, s.newest_generation
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use ferry_state_machine::observe::{AttachState, Attachment, VolumeState};
    use ferry_state_machine::Generation;

    use super::*;

    fn vol(id: &str, gen: u64, state: VolumeState, on: Option<&str>) -> ObservedVolume {
        ObservedVolume {
            id: id.into(),
            availability_zone: "us-east-1a".into(),
            state,
            attachment: on.map(|i| Attachment {
                instance_id: i.into(),
                device: "/dev/sdf".into(),
                state: AttachState::Attached,
                delete_on_termination: false,
            }),
            logical: Some("data".into()),
            generation: Some(Generation(gen)),
            hook: None,
            slot: Some(0),
            source_snapshot: None,
            size_gib: 10,
            loss_window_secs: None,
        }
    }

    #[test]
    fn older_live_copies_are_superseded_and_the_newest_is_not() {
        let got = of(&[
            vol("vol-new", 5, VolumeState::InUse, Some("i-new")),
            vol("vol-old", 4, VolumeState::InUse, Some("i-old")),
            vol("vol-dead", 3, VolumeState::Error, None),
        ]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].volume_id, "vol-old");
        assert_eq!((got[0].generation, got[0].newest_generation), (4, 5));
        assert_eq!(got[0].attached_to.as_deref(), Some("i-old"));
        assert!(!got[0].by_restore_latest);
        let mut restored = vol("vol-new", 5, VolumeState::InUse, Some("i-new"));
        restored.loss_window_secs = Some(30);
        let got = of(&[
            restored,
            vol("vol-old", 4, VolumeState::InUse, Some("i-old")),
        ]);
        assert!(got[0].by_restore_latest);
    }
}
