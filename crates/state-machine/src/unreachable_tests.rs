//! Tests of the `source_unreachable` policy: when it restores, which set, and the loss window.

use std::collections::HashMap;

use super::*;
use crate::observe::{AttachState, Attachment, SnapshotReason, SnapshotState, VolumeState};

const TOKEN: &str = "i-new/launch";
const NOW: i64 = 10_000;

fn vol(id: &str, logical: &str, gen: u64) -> ObservedVolume {
    ObservedVolume {
        id: id.into(),
        availability_zone: "a".into(),
        state: VolumeState::InUse,
        attachment: Some(Attachment {
            instance_id: "i-old".into(),
            device: "/dev/sdf".into(),
            state: AttachState::Attached,
            delete_on_termination: false,
        }),
        logical: Some(logical.into()),
        generation: Some(Generation(gen)),
        hook: Some("i-old/launch".into()),
        slot: Some(0),
        source_snapshot: None,
        size_gib: 10,
        loss_window_secs: None,
    }
}

fn point(id: &str, vol: &str, set: &str, start: i64, state: SnapshotState) -> ObservedSnapshot {
    ObservedSnapshot {
        id: id.into(),
        volume_id: vol.into(),
        state,
        progress: None,
        logical: None,
        generation: Some(Generation(3)),
        hook: Some("i-old/recovery".into()),
        reason: Some(SnapshotReason::Recovery),
        start_time: Some(start),
        set: Some(set.into()),
        action_started: None,
        fenced_at: None,
        slot: Some(0),
    }
}

fn precopy(id: &str, vol: &str, start: i64, action: i64, state: SnapshotState) -> ObservedSnapshot {
    ObservedSnapshot {
        reason: Some(SnapshotReason::Precopy),
        action_started: Some(action),
        ..point(id, vol, "i-old/terminate", start, state)
    }
}

fn holder(vol: &str) -> VolumeStep {
    VolumeStep::Wait(WaitFor::Holder {
        instance_id: "i-old".into(),
        volume_id: vol.into(),
    })
}

/// The old instance, fenced: EC2 reports it shutting-down (its AZ is down).
fn fenced() -> HashMap<String, HolderState> {
    HashMap::from([("i-old".to_string(), HolderState::Fenced)])
}

fn view<'a>(
    lineages: &'a [Lineage<'a>],
    elapsed: u64,
    policy: SourcePolicy,
    holders: &'a HashMap<String, HolderState>,
) -> SourceView<'a> {
    SourceView {
        token: TOKEN,
        lineages,
        elapsed: Duration::from_secs(elapsed),
        launch_started: NOW - i64::try_from(elapsed).unwrap_or(0),
        holders,
        policy,
    }
}

const LATEST: SourcePolicy = SourcePolicy::RestoreLatest {
    after: Duration::from_secs(600),
};

fn restored(step: &VolumeStep) -> (&str, u64, u64) {
    match step {
        VolumeStep::RestorePoint {
            snapshot_id,
            generation,
            loss_window_secs,
            ..
        } => (snapshot_id.as_str(), generation.0, *loss_window_secs),
        other => panic!("not a restore of a recovery point: {other:?}"),
    }
}

#[test]
fn nothing_to_do_while_no_volume_waits_on_the_source() {
    let vols = [vol("vol-1", "data", 3)];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &[],
    }];
    let mut steps = vec![VolumeStep::Attach {
        volume_id: "vol-1".into(),
    }];
    let got = apply_source_policy(&view(&lineages, 5_000, LATEST, &fenced()), &mut steps);
    assert_eq!(got, Unreachable::Reachable);
    assert!(matches!(steps[0], VolumeStep::Attach { .. }));
}

#[test]
fn wait_never_restores_and_says_what_restore_latest_would() {
    let vols = [vol("vol-1", "data", 3)];
    let snaps = [
        point("snap-old", "vol-1", "s1", 8_000, SnapshotState::Completed),
        point("snap-new", "vol-1", "s2", 9_000, SnapshotState::Completed),
    ];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    let mut steps = vec![holder("vol-1")];
    let got = apply_source_policy(
        &view(&lineages, 50_000, SourcePolicy::Wait, &fenced()),
        &mut steps,
    );
    let Unreachable::Waiting { waited, latest } = got else {
        panic!("{got:?}")
    };
    assert_eq!(waited, Duration::from_secs(50_000));
    assert_eq!(latest.map(|s| s.key), Some("s2".to_string()));
    assert_eq!(steps, vec![holder("vol-1")], "wait never rewrites a step");
}

#[test]
fn restore_latest_waits_for_its_bound_then_restores_the_newest_completed_point() {
    let vols = [vol("vol-1", "data", 3)];
    let snaps = [
        point("snap-old", "vol-1", "s1", 8_000, SnapshotState::Completed),
        point("snap-new", "vol-1", "s2", 9_000, SnapshotState::Completed),
        // Pending since the outage: never restored.
        point("snap-stuck", "vol-1", "s3", 9_300, SnapshotState::Pending),
        precopy("snap-pre", "vol-1", 9_401, 9_400, SnapshotState::Pending),
    ];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    let mut steps = vec![holder("vol-1")];
    let before = apply_source_policy(&view(&lineages, 599, LATEST, &fenced()), &mut steps);
    assert!(matches!(before, Unreachable::Waiting { .. }), "{before:?}");
    assert_eq!(steps, vec![holder("vol-1")]);

    let got = apply_source_policy(&view(&lineages, 600, LATEST, &fenced()), &mut steps);
    let Unreachable::Restoring(set) = got else {
        panic!("{got:?}")
    };
    assert_eq!(set.key, "s2");
    // From the point's start to the old instance's terminate action.
    assert_eq!(
        restored(&steps[0]),
        ("snap-new", 4, 401),
        "400 s, rounded up"
    );
}

#[test]
fn the_loss_window_ends_at_the_launch_when_there_was_no_terminate() {
    let vols = [vol("vol-1", "data", 3)];
    let snaps = [point(
        "snap-1",
        "vol-1",
        "s1",
        9_000,
        SnapshotState::Completed,
    )];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    let mut steps = vec![VolumeStep::Abandon(format!("{FINAL_STATE_LOST}: gone"))];
    apply_source_policy(&view(&lineages, 700, LATEST, &fenced()), &mut steps);
    // The launch began at NOW - 700 = 9 300.
    assert_eq!(restored(&steps[0]), ("snap-1", 4, 301));
}

#[test]
fn a_set_is_restored_only_whole() {
    let (a, b) = ([vol("vol-a", "data", 3)], [vol("vol-b", "wal", 3)]);
    let sa = [
        point("a1", "vol-a", "s1", 8_000, SnapshotState::Completed),
        point("a2", "vol-a", "s2", 9_000, SnapshotState::Completed),
    ];
    let sb = [
        point("b1", "vol-b", "s1", 8_000, SnapshotState::Completed),
        point("b2", "vol-b", "s2", 9_000, SnapshotState::Error),
    ];
    let lineages = [
        Lineage {
            volumes: &a,
            snapshots: &sa,
        },
        Lineage {
            volumes: &b,
            snapshots: &sb,
        },
    ];
    let mut steps = vec![holder("vol-a"), holder("vol-b")];
    let got = apply_source_policy(&view(&lineages, 900, LATEST, &fenced()), &mut steps);
    assert!(
        matches!(&got, Unreachable::Restoring(s) if s.key == "s1"),
        "{got:?}"
    );
    assert_eq!(restored(&steps[0]).0, "a1");
    assert_eq!(restored(&steps[1]).0, "b1");
}

#[test]
fn without_a_complete_point_it_keeps_waiting() {
    let vols = [vol("vol-1", "data", 3)];
    let snaps = [point(
        "snap-1",
        "vol-1",
        "s1",
        9_000,
        SnapshotState::Pending,
    )];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    let mut steps = vec![holder("vol-1")];
    let got = apply_source_policy(&view(&lineages, 5_000, LATEST, &fenced()), &mut steps);
    assert_eq!(got, Unreachable::NothingToRestore);
    assert_eq!(steps, vec![holder("vol-1")]);
}

#[test]
fn a_restore_under_way_finishes_from_its_own_set() {
    // "data" was restored from s1 by this hook; since then s2 completed. "wal" must come from s1 too.
    let mut mine = vol("vol-a2", "data", 4);
    mine.hook = Some(TOKEN.into());
    mine.attachment = None;
    mine.state = VolumeState::Creating;
    mine.source_snapshot = Some("a1".into());
    mine.loss_window_secs = Some(1_400);
    let a = [vol("vol-a", "data", 3), mine];
    let b = [vol("vol-b", "wal", 3)];
    let sa = [
        point("a1", "vol-a", "s1", 8_000, SnapshotState::Completed),
        point("a2", "vol-a", "s2", 9_000, SnapshotState::Completed),
    ];
    let sb = [
        point("b1", "vol-b", "s1", 8_000, SnapshotState::Completed),
        point("b2", "vol-b", "s2", 9_000, SnapshotState::Completed),
    ];
    let lineages = [
        Lineage {
            volumes: &a,
            snapshots: &sa,
        },
        Lineage {
            volumes: &b,
            snapshots: &sb,
        },
    ];
    let creating = VolumeStep::Wait(WaitFor::VolumeCreating("vol-a2".into()));
    let mut steps = vec![creating.clone(), holder("vol-b")];
    let got = apply_source_policy(&view(&lineages, 900, LATEST, &fenced()), &mut steps);
    assert!(
        matches!(&got, Unreachable::Restoring(s) if s.key == "s1"),
        "{got:?}"
    );
    assert_eq!(steps[0], creating, "the restored volume goes on as it was");
    assert_eq!(restored(&steps[1]).0, "b1");
}

#[test]
fn a_launch_that_already_moved_data_itself_does_not_mix_in_a_recovery_point() {
    let mut claimed = vol("vol-a", "data", 4);
    claimed.hook = Some(TOKEN.into());
    let a = [claimed];
    let b = [vol("vol-b", "wal", 3)];
    let sb = [point("b1", "vol-b", "s1", 8_000, SnapshotState::Completed)];
    let sa = [point("a1", "vol-a", "s1", 8_000, SnapshotState::Completed)];
    let lineages = [
        Lineage {
            volumes: &a,
            snapshots: &sa,
        },
        Lineage {
            volumes: &b,
            snapshots: &sb,
        },
    ];
    let mut steps = vec![
        VolumeStep::Attach {
            volume_id: "vol-a".into(),
        },
        VolumeStep::Wait(WaitFor::Snapshot("snap-final-b".into())),
    ];
    let got = apply_source_policy(&view(&lineages, 900, LATEST, &fenced()), &mut steps);
    assert_eq!(got, Unreachable::AlreadyMoving);
    assert!(matches!(steps[1], VolumeStep::Wait(WaitFor::Snapshot(_))));
}

#[test]
fn final_snapshots_of_one_generation_form_one_set() {
    let mk = |id: &str, vol: &str, start: i64| ObservedSnapshot {
        reason: Some(SnapshotReason::Final),
        set: None,
        ..point(id, vol, "", start, SnapshotState::Completed)
    };
    let (a, b) = ([vol("vol-a", "data", 3)], [vol("vol-b", "wal", 3)]);
    // Taken one after the other of fenced volumes: one instant of data, whatever their start times.
    let (sa, sb) = ([mk("fa", "vol-a", 9_000)], [mk("fb", "vol-b", 9_050)]);
    let lineages = [
        Lineage {
            volumes: &a,
            snapshots: &sa,
        },
        Lineage {
            volumes: &b,
            snapshots: &sb,
        },
    ];
    let mut steps = vec![holder("vol-a"), holder("vol-b")];
    let got = apply_source_policy(&view(&lineages, 900, LATEST, &fenced()), &mut steps);
    assert!(
        matches!(&got, Unreachable::Restoring(s) if s.key == "final/i-old/recovery" && s.start_time == 9_000),
        "{got:?}"
    );
}

#[test]
fn under_restore_latest_a_lost_final_state_waits_for_the_bound_instead_of_abandoning() {
    let vols = [vol("vol-1", "data", 3)];
    let snaps = [point(
        "snap-1",
        "vol-1",
        "s1",
        9_000,
        SnapshotState::Completed,
    )];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    let lost = VolumeStep::Abandon(format!("{FINAL_STATE_LOST}: gone"));
    let mut steps = vec![lost.clone()];
    apply_source_policy(&view(&lineages, 10, LATEST, &fenced()), &mut steps);
    assert!(
        matches!(&steps[0], VolumeStep::Wait(WaitFor::FinalLost(_))),
        "{steps:?}"
    );
    // Under wait the abandon stands: nothing will come, and nothing older is restored.
    let mut steps = vec![lost.clone()];
    apply_source_policy(
        &view(&lineages, 10, SourcePolicy::Wait, &fenced()),
        &mut steps,
    );
    assert_eq!(steps, vec![lost]);
}

#[test]
fn a_holder_that_still_runs_is_never_restored_beside() {
    let vols = [vol("vol-1", "data", 3)];
    let snaps = [point(
        "snap-1",
        "vol-1",
        "s1",
        9_000,
        SnapshotState::Completed,
    )];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    // Its terminate is under way (launch-before-terminate turned leaving late): it may still write.
    let leaving = HashMap::from([("i-old".to_string(), HolderState::Leaving)]);
    let mut steps = vec![holder("vol-1")];
    let got = apply_source_policy(&view(&lineages, 5_000, LATEST, &leaving), &mut steps);
    assert_eq!(got, Unreachable::Reachable);
    assert_eq!(steps, vec![holder("vol-1")]);
    // Nor beside one that stays in service.
    let staying = VolumeStep::Wait(WaitFor::StayingHolder {
        instance_id: "i-other".into(),
        volume_id: "vol-1".into(),
    });
    let mut steps = vec![staying.clone()];
    let got = apply_source_policy(&view(&lineages, 5_000, LATEST, &fenced()), &mut steps);
    assert_eq!(got, Unreachable::Reachable);
    assert_eq!(steps, vec![staying]);
}

#[test]
fn a_set_that_lost_a_member_mid_restore_abandons_instead_of_mixing() {
    let mut mine = vol("vol-a2", "data", 4);
    mine.hook = Some(TOKEN.into());
    mine.source_snapshot = Some("a1".into());
    mine.loss_window_secs = Some(100);
    let a = [vol("vol-a", "data", 3), mine];
    let b = [vol("vol-b", "wal", 3)];
    // b1, s1's member for "wal", is gone.
    let sa = [point("a1", "vol-a", "s1", 8_000, SnapshotState::Completed)];
    let sb = [point("b2", "vol-b", "s2", 9_000, SnapshotState::Completed)];
    let lineages = [
        Lineage {
            volumes: &a,
            snapshots: &sa,
        },
        Lineage {
            volumes: &b,
            snapshots: &sb,
        },
    ];
    let attaching = VolumeStep::Wait(WaitFor::Attachment("vol-a2".into()));
    let mut steps = vec![attaching.clone(), holder("vol-b")];
    let got = apply_source_policy(&view(&lineages, 900, LATEST, &fenced()), &mut steps);
    assert_eq!(got, Unreachable::SetLost("s1".into()));
    assert_eq!(steps[0], attaching);
    assert!(matches!(&steps[1], VolumeStep::Abandon(w) if w.contains("no longer complete")));
}

#[test]
fn a_superseded_fork_is_never_restored() {
    // Generation 4 was restored from p1 (gen 3) by an earlier restore-latest; the old AZ's later point p2 of
    // gen 3 completed when it returned. The new volume has no point yet: p1 is what it started from.
    let mut restored_vol = vol("vol-r", "data", 4);
    restored_vol.source_snapshot = Some("p1".into());
    restored_vol.hook = Some("i-mid/launch".into());
    let vols = [vol("vol-1", "data", 3), restored_vol];
    let snaps = [
        point("p1", "vol-1", "s1", 8_000, SnapshotState::Completed),
        point("p2", "vol-1", "s2", 8_500, SnapshotState::Completed),
    ];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    let mut steps = vec![holder("vol-r")];
    let got = apply_source_policy(&view(&lineages, 900, LATEST, &fenced()), &mut steps);
    assert!(
        matches!(&got, Unreachable::Restoring(s) if s.key == "s1"),
        "{got:?}"
    );
    assert_eq!(restored(&steps[0]).1, 5, "above the newest generation");
}

#[test]
fn the_loss_window_ends_at_the_fence_when_the_pre_copy_recorded_it() {
    let vols = [vol("vol-1", "data", 3)];
    let mut pre = precopy("snap-pre", "vol-1", 9_000, 8_990, SnapshotState::Completed);
    pre.fenced_at = Some(9_200);
    let snaps = [pre];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    let mut steps = vec![holder("vol-1")];
    apply_source_policy(&view(&lineages, 700, LATEST, &fenced()), &mut steps);
    // The old instance wrote until its fence at 9 200, not only until its terminate began at 8 990.
    assert_eq!(restored(&steps[0]), ("snap-pre", 4, 201));

    // Without the fence recorded, a pre-copy that began after its action started ends at the launch.
    let snaps = [precopy(
        "snap-pre",
        "vol-1",
        9_000,
        8_990,
        SnapshotState::Completed,
    )];
    let lineages = [Lineage {
        volumes: &vols,
        snapshots: &snaps,
    }];
    let mut steps = vec![holder("vol-1")];
    apply_source_policy(&view(&lineages, 700, LATEST, &fenced()), &mut steps);
    assert_eq!(
        restored(&steps[0]),
        ("snap-pre", 4, 301),
        "the launch began at 9 300"
    );
}
