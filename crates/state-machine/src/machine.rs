//! The pure core: from what was observed and the time, decide the next step of a hook. No I/O, no clock.

use std::collections::HashMap;
use std::time::Duration;

use crate::model::Generation;
use crate::observe::{
    AttachState, HolderState, ObservedInstance, ObservedSnapshot, ObservedVolume, SnapshotReason,
    SnapshotState, VolumeState,
};

/// Everything a launch hook observed about one logical volume of its slot.
#[derive(Debug, Clone)]
pub struct LaunchView<'a> {
    /// The launching instance.
    pub instance: &'a ObservedInstance,
    /// This hook's ledger key (`HookEvent::ledger_key`), the `ferry:hook` value of what it made.
    pub token: &'a str,
    /// Every ferry volume of this (group, slot, logical volume).
    pub volumes: &'a [ObservedVolume],
    /// Every ferry snapshot of this (group, slot, logical volume), and any tagged with this hook.
    pub snapshots: &'a [ObservedSnapshot],
    /// How each instance that holds another attached copy stands.
    pub holders: &'a HashMap<String, HolderState>,
    /// How long this hook has been running.
    pub elapsed: Duration,
    /// How long to wait for a holder that is staying (launch-before-terminate) before abandoning.
    pub staying_holder_timeout: Duration,
    /// The time now, in Unix seconds (the clock of the snapshots' start times).
    pub now: i64,
}

/// Why a hook waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFor {
    /// A volume is being created.
    VolumeCreating(String),
    /// A volume is attaching or detaching.
    Attachment(String),
    /// A final snapshot is pending.
    Snapshot(String),
    /// A volume of the newest generation, not this hook's, is creating, attaching or detaching.
    SourceBusy(String),
    /// The final snapshot of this volume failed a moment ago; it is retaken after [`FINAL_RETRY_SECS`].
    FinalFailed(String),
    /// `restore-latest`: the final state is lost (the reason says why); the newest recovery point is
    /// restored once `restore_latest_after_secs` have passed.
    FinalLost(String),
    /// The ordering barrier: another instance still holds a copy and is leaving.
    Holder {
        /// The instance holding the copy.
        instance_id: String,
        /// The volume it holds.
        volume_id: String,
    },
    /// A holder that is staying (launch-before-terminate); abandoned once the bound passes.
    StayingHolder {
        /// The instance holding the copy.
        instance_id: String,
        /// The volume it holds.
        volume_id: String,
    },
}

/// The next step for one logical volume of a launch hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeStep {
    /// The newest data is attached to the instance.
    Ready {
        /// The attached volume.
        volume_id: String,
        /// Its generation.
        generation: Generation,
    },
    /// Nothing to do but wait.
    Wait(WaitFor),
    /// Fast path: take over a detached volume in this AZ by tagging it with this hook and the next generation.
    Claim {
        /// The volume to take over.
        volume_id: String,
        /// The generation it gets.
        generation: Generation,
    },
    /// Attach a volume this hook owns.
    Attach {
        /// The volume.
        volume_id: String,
    },
    /// `source_unreachable = "restore-latest"`: restore a recovery point into a new volume in this AZ, which
    /// supersedes the unreachable newest generation and records the loss window.
    RestorePoint {
        /// The recovery point.
        snapshot_id: String,
        /// The volume it was taken from (lineage).
        source_volume: String,
        /// The generation of the new volume: above the unreachable one.
        generation: Generation,
        /// The writes it may miss, in seconds.
        loss_window_secs: u64,
    },
    /// Restore a snapshot into a new volume in this AZ.
    Restore {
        /// The snapshot.
        snapshot_id: String,
        /// The volume it was taken from (lineage).
        source_volume: String,
        /// The generation of the new volume.
        generation: Generation,
    },
    /// Handover: the holder is being replaced (`HolderState::Replaced`). Stop it (the fence), then detach its
    /// copies; the launch then takes the data as from any fenced instance.
    FenceHolder {
        /// The instance holding the copy.
        instance_id: String,
        /// The volume it holds.
        volume_id: String,
    },
    /// Snapshot a detached volume of the newest generation that lives in another AZ.
    SnapshotVolume {
        /// The volume.
        volume_id: String,
        /// Its generation, copied onto the snapshot.
        generation: Generation,
    },
    /// First boot: no data exists for this slot; create an empty volume.
    CreateEmpty {
        /// The generation of the new volume.
        generation: Generation,
    },
    /// The hook cannot get the newest data: abandon it.
    Abandon(String),
}

/// Decides the next step for one logical volume of a launch hook.
pub fn decide_launch_volume(v: &LaunchView<'_>) -> VolumeStep {
    let me = v.instance.id.as_str();
    let live: Vec<&ObservedVolume> = v.volumes.iter().filter(|x| x.holds_data()).collect();
    let newest = newest_generation(&live, v.snapshots);

    // 1. A copy already attached to this instance.
    if let Some(vol) = live.iter().find(|x| x.attached_to() == Some(me)) {
        let generation = vol.generation.unwrap_or(Generation(0));
        if newest.is_some_and(|g| g > generation) {
            return VolumeStep::Abandon(format!(
                "{} is attached to this instance at generation {generation}, but generation {} exists: refusing stale data",
                vol.id,
                newest.map_or(0, |g| g.0)
            ));
        }
        return match vol.attachment.as_ref().map(|a| a.state) {
            Some(AttachState::Attached) => VolumeStep::Ready {
                volume_id: vol.id.clone(),
                generation,
            },
            _ => VolumeStep::Wait(WaitFor::Attachment(vol.id.clone())),
        };
    }

    // 2. Fencing: another instance holds a copy (attached, or claimed by its launch that is still alive).
    //    Wait for it to let go; never attach or restore a second copy. A held copy that this hook has already
    //    superseded (restore-latest restored a newer generation past an unreachable source) is not current
    //    data any more: it never blocks, and it is never attached (step 1 and generations order it).
    let superseded_by_me = live.iter().any(|x| {
        x.hook.as_deref() == Some(v.token) && x.generation == newest && x.loss_window_secs.is_some()
    });
    if let Some((vol, holder)) = live
        .iter()
        .filter(|x| !(superseded_by_me && x.generation.is_some() && x.generation < newest))
        .find_map(|x| held_by_other(x, me, v.holders).map(|h| (x, h)))
    {
        return match v.holders.get(&holder).copied().unwrap_or(HolderState::Staying) {
            HolderState::Leaving | HolderState::Fenced => VolumeStep::Wait(WaitFor::Holder {
                instance_id: holder,
                volume_id: vol.id.clone(),
            }),
            HolderState::Staying if v.elapsed >= v.staying_holder_timeout => VolumeStep::Abandon(format!(
                "launch-before-terminate: {holder} is still in service or launching with {}; after {}s \
                 refusing to fork the data (set the group's instance maintenance policy to terminate-then-launch)",
                vol.id,
                v.elapsed.as_secs()
            )),
            HolderState::Staying => VolumeStep::Wait(WaitFor::StayingHolder {
                instance_id: holder,
                volume_id: vol.id.clone(),
            }),
            HolderState::Replaced => VolumeStep::FenceHolder {
                instance_id: holder,
                volume_id: vol.id.clone(),
            },
        };
    }

    // 3. A volume this hook already created or claimed (a repeated step after a crash or redelivery). Only at
    //    the newest generation: an instance that re-enters service from a warm pool launches again under the
    //    same ledger key, and the volume its earlier launch made may have been superseded since.
    if let Some(vol) = live
        .iter()
        .find(|x| x.hook.as_deref() == Some(v.token) && x.generation == newest)
    {
        if vol.availability_zone != v.instance.availability_zone {
            return VolumeStep::Abandon(format!(
                "{} was claimed by this hook but is in {}, not {}",
                vol.id, vol.availability_zone, v.instance.availability_zone
            ));
        }
        return match vol.state {
            VolumeState::Creating => VolumeStep::Wait(WaitFor::VolumeCreating(vol.id.clone())),
            VolumeState::Available => VolumeStep::Attach {
                volume_id: vol.id.clone(),
            },
            _ => VolumeStep::Wait(WaitFor::Attachment(vol.id.clone())),
        };
    }
    if let Some(vol) = v.volumes.iter().find(|x| {
        x.hook.as_deref() == Some(v.token)
            && x.state == VolumeState::Error
            && x.generation >= newest
    }) {
        return VolumeStep::Abandon(format!(
            "volume {} created by this hook is in error state",
            vol.id
        ));
    }

    let Some(g) = newest else {
        return first_boot_or_refuse(v);
    };
    pick_source(v, &live, g)
}

/// No readable generation exists. First boot is only for a slot that never had data: any ferry volume or
/// snapshot of this (group, slot, logical volume), in whatever state and with whatever tags, says it had.
/// An operator who means to start the slot afresh retires those remains (`ferryd reset-slot`).
fn first_boot_or_refuse(v: &LaunchView<'_>) -> VolumeStep {
    let mut remains: Vec<String> = v
        .volumes
        .iter()
        .map(|x| format!("volume {} ({:?})", x.id, x.state))
        .chain(
            v.snapshots
                .iter()
                .map(|s| format!("snapshot {} ({:?})", s.id, s.state)),
        )
        .collect();
    if remains.is_empty() {
        return VolumeStep::CreateEmpty {
            generation: Generation::FIRST,
        };
    }
    remains.sort();
    VolumeStep::Abandon(format!(
        "{UNREADABLE_DATA}: the slot had data but none of its copies is readable ({}); refusing to create \
         an empty volume over it. Repair the copies, or declare the slot new with `ferryd reset-slot`",
        remains.join(", ")
    ))
}

/// How long after a final snapshot failed a launch takes it again.
pub const FINAL_RETRY_SECS: i64 = 300;

/// The start of the reason of a launch that refuses an empty volume over existing data.
pub const UNREADABLE_DATA: &str = "existing data unreadable";

/// The start of the reason of a launch whose newest generation survives only in recovery points.
pub const FINAL_STATE_LOST: &str = "final state unavailable";

/// The instance, other than `me`, that holds `vol`: the one it is attached to, or the launching instance
/// that claimed or created it (`ferry:hook` = `<instance>/launch`) while that instance is staying. A claimant
/// that is gone (its launch abandoned) holds nothing.
fn held_by_other(
    vol: &ObservedVolume,
    me: &str,
    holders: &HashMap<String, HolderState>,
) -> Option<String> {
    if let Some(h) = vol.attached_to() {
        return (h != me).then(|| h.to_string());
    }
    let claimant = vol.hook.as_deref()?.strip_suffix(LAUNCH_KEY_SUFFIX)?;
    // A claimant being replaced holds no claim: the handover fenced it, and a volume it does not have
    // attached is the data it let go of.
    (claimant != me && holders.get(claimant) == Some(&HolderState::Staying))
        .then(|| claimant.to_string())
}

/// The suffix of a launch hook's ledger key (`HookEvent::ledger_key`).
pub const LAUNCH_KEY_SUFFIX: &str = "/launch";

/// Steps 4-6: with no copy attached anywhere, pick the newest data of generation `g`.
fn pick_source(v: &LaunchView<'_>, live: &[&ObservedVolume], g: Generation) -> VolumeStep {
    let az = v.instance.availability_zone.as_str();
    let mut at_g: Vec<&&ObservedVolume> = live.iter().filter(|x| x.generation == Some(g)).collect();
    at_g.sort_by(|a, b| a.id.cmp(&b.id));

    // 4. Fast path: a detached volume of the newest generation in this AZ.
    if let Some(vol) = at_g.iter().find(|x| x.availability_zone == az) {
        return match vol.state {
            VolumeState::Available => VolumeStep::Claim {
                volume_id: vol.id.clone(),
                generation: g.next(),
            },
            _ => VolumeStep::Wait(WaitFor::SourceBusy(vol.id.clone())),
        };
    }

    // 5. A detached volume of the newest generation in another AZ: restore its final snapshot, or take one.
    if let Some(vol) = at_g.first() {
        if vol.state != VolumeState::Available {
            return VolumeStep::Wait(WaitFor::SourceBusy(vol.id.clone()));
        }
        let finals: Vec<&ObservedSnapshot> = v
            .snapshots
            .iter()
            .filter(|s| {
                s.volume_id == vol.id
                    && s.generation == Some(g)
                    && s.reason.is_some_and(SnapshotReason::is_final)
            })
            .collect();
        if let Some(s) = finals.iter().find(|s| s.state == SnapshotState::Completed) {
            return VolumeStep::Restore {
                snapshot_id: s.id.clone(),
                source_volume: vol.id.clone(),
                generation: g.next(),
            };
        }
        if let Some(s) = finals.iter().find(|s| s.state == SnapshotState::Pending) {
            return VolumeStep::Wait(WaitFor::Snapshot(s.id.clone()));
        }
        // Every final snapshot failed. Retake it, but not in a loop: in an impaired AZ each one fails again.
        if let Some(s) = finals
            .iter()
            .filter(|s| s.state == SnapshotState::Error)
            .max_by_key(|s| s.start_time.unwrap_or(0))
            .filter(|s| v.now.saturating_sub(s.start_time.unwrap_or(0)) < FINAL_RETRY_SECS)
        {
            return VolumeStep::Wait(WaitFor::FinalFailed(s.id.clone()));
        }
        return VolumeStep::SnapshotVolume {
            volume_id: vol.id.clone(),
            generation: g,
        };
    }

    // 6. Only snapshots hold generation g: restore its final snapshot, or wait for a pending one. A recovery
    //    point (pre-copy, manual) misses the writes acknowledged after it began, so it is never restored in
    //    place of a final state that can still be had, nor silently when the final state is gone.
    let at_g: Vec<&ObservedSnapshot> = v
        .snapshots
        .iter()
        .filter(|s| s.generation == Some(g) && s.state != SnapshotState::Error)
        .collect();
    let mut finals: Vec<&ObservedSnapshot> = at_g
        .iter()
        .copied()
        .filter(|s| s.reason.is_some_and(SnapshotReason::is_final))
        .collect();
    finals.sort_by_key(|s| (s.start_time.unwrap_or(0), s.id.clone()));
    if let Some(s) = finals
        .iter()
        .rev()
        .find(|s| s.state == SnapshotState::Completed)
    {
        return VolumeStep::Restore {
            snapshot_id: s.id.clone(),
            source_volume: s.volume_id.clone(),
            generation: g.next(),
        };
    }
    if let Some(s) = finals.iter().find(|s| s.state == SnapshotState::Pending) {
        return VolumeStep::Wait(WaitFor::Snapshot(s.id.clone()));
    }
    let points: Vec<&str> = at_g.iter().map(|s| s.id.as_str()).collect();
    VolumeStep::Abandon(format!(
        "{FINAL_STATE_LOST}: generation {g} has no live volume and no final snapshot; recovery points: [{}]. \
         Restoring one would lose the writes acknowledged after it (see docs/operations.md, restoring an \
         older generation)",
        points.join(", ")
    ))
}

/// The highest generation held by a live volume or by a pending or completed snapshot.
pub fn newest_generation(
    volumes: &[&ObservedVolume],
    snapshots: &[ObservedSnapshot],
) -> Option<Generation> {
    let v = volumes.iter().filter_map(|x| x.generation);
    let s = snapshots
        .iter()
        .filter(|x| x.state != SnapshotState::Error)
        .filter_map(|x| x.generation);
    v.chain(s).max()
}

/// Everything a terminate hook observed about its instance's managed volumes.
#[derive(Debug, Clone)]
pub struct TerminateView<'a> {
    /// The managed volumes attached to the terminating instance.
    pub volumes: &'a [ObservedVolume],
    /// The snapshots tagged with this hook's token.
    pub snapshots: &'a [ObservedSnapshot],
    /// How long this hook's action has been running (since Auto Scaling announced it, when known).
    pub elapsed: Duration,
    /// How long to wait for snapshots before completing anyway (the volumes survive, detached).
    pub snapshot_timeout: Duration,
}

/// The next step of a terminate hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminateStep {
    /// Snapshot these volumes (crash-consistent, in one call when more than one).
    Snapshot(Vec<String>),
    /// Put the missing ledger tags on snapshots this hook created: (snapshot id, volume id).
    TagSnapshots(Vec<(String, String)>),
    /// Wait for pending snapshots.
    Wait(Vec<String>),
    /// Every volume has a completed snapshot, or there is nothing to save.
    Done,
    /// Some snapshots failed or timed out: complete anyway, the detached volumes hold the data.
    DoneDegraded(String),
}

/// Decides the next step of a terminate hook.
pub fn decide_terminate(v: &TerminateView<'_>) -> TerminateStep {
    let of = |vol: &ObservedVolume| -> Vec<&ObservedSnapshot> {
        v.snapshots
            .iter()
            .filter(|s| s.volume_id == vol.id)
            .collect()
    };
    let missing: Vec<String> = v
        .volumes
        .iter()
        .filter(|vol| of(vol).is_empty())
        .map(|vol| vol.id.clone())
        .collect();
    if !missing.is_empty() {
        return TerminateStep::Snapshot(missing);
    }
    let untagged: Vec<(String, String)> = v
        .snapshots
        .iter()
        .filter(|s| s.generation.is_none() || s.logical.is_none())
        .filter(|s| v.volumes.iter().any(|vol| vol.id == s.volume_id))
        .map(|s| (s.id.clone(), s.volume_id.clone()))
        .collect();
    if !untagged.is_empty() {
        return TerminateStep::TagSnapshots(untagged);
    }
    let mut pending = Vec::new();
    let mut failed = Vec::new();
    for vol in v.volumes {
        let snaps = of(vol);
        if snaps.iter().any(|s| s.state == SnapshotState::Completed) {
            continue;
        }
        match snaps.iter().find(|s| s.state == SnapshotState::Pending) {
            Some(s) => pending.push(s.id.clone()),
            None => failed.push(vol.id.clone()),
        }
    }
    if !pending.is_empty() && v.elapsed < v.snapshot_timeout {
        return TerminateStep::Wait(pending);
    }
    if pending.is_empty() && failed.is_empty() {
        return TerminateStep::Done;
    }
    let mut why = Vec::new();
    if !failed.is_empty() {
        why.push(format!("snapshot failed for {}", failed.join(",")));
    }
    if !pending.is_empty() {
        why.push(format!(
            "snapshots {} still pending after {}s",
            pending.join(","),
            v.elapsed.as_secs()
        ));
    }
    TerminateStep::DoneDegraded(why.join("; "))
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
