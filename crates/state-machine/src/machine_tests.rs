//! Table-driven tests of the pure launch and terminate decisions.

use super::*;
use crate::observe::Attachment;

const ME: &str = "i-new";
const OLD: &str = "i-old";
const TOKEN: &str = "tok-launch";

fn instance(az: &str) -> ObservedInstance {
    ObservedInstance {
        id: ME.into(),
        availability_zone: az.into(),
        state: "running".into(),
        volume_ids: vec![],
        root_volume_id: None,
        tags: vec![],
    }
}

fn vol(id: &str, az: &str, state: VolumeState, gen: u64) -> ObservedVolume {
    ObservedVolume {
        id: id.into(),
        availability_zone: az.into(),
        state,
        attachment: None,
        logical: Some("data".into()),
        generation: Some(Generation(gen)),
        hook: Some("tok-old".into()),
        slot: Some(0),
        source_snapshot: None,
        size_gib: 20,
        loss_window_secs: None,
    }
}

fn attached(mut v: ObservedVolume, to: &str, state: AttachState) -> ObservedVolume {
    v.state = VolumeState::InUse;
    v.attachment = Some(Attachment {
        instance_id: to.into(),
        device: "/dev/sdf".into(),
        state,
        delete_on_termination: false,
    });
    v
}

fn claimed_by_old(mut v: ObservedVolume) -> ObservedVolume {
    v.hook = Some(format!("{OLD}{LAUNCH_KEY_SUFFIX}"));
    v
}

fn mine(mut v: ObservedVolume) -> ObservedVolume {
    v.hook = Some(TOKEN.into());
    v
}

fn snap(
    id: &str,
    vol: &str,
    state: SnapshotState,
    gen: u64,
    reason: SnapshotReason,
) -> ObservedSnapshot {
    ObservedSnapshot {
        id: id.into(),
        volume_id: vol.into(),
        state,
        progress: None,
        logical: Some("data".into()),
        generation: Some(Generation(gen)),
        hook: Some("tok-term".into()),
        reason: Some(reason),
        start_time: Some(100),
        set: None,
        action_started: None,
        fenced_at: None,
        slot: Some(0),
    }
}

struct Case {
    name: &'static str,
    az: &'static str,
    volumes: Vec<ObservedVolume>,
    snapshots: Vec<ObservedSnapshot>,
    holder: Option<HolderState>,
    elapsed_s: u64,
    want: VolumeStep,
}

fn run(c: &Case) -> VolumeStep {
    let inst = instance(c.az);
    let holders: HashMap<String, HolderState> =
        c.holder.map(|h| (OLD.to_string(), h)).into_iter().collect();
    decide_launch_volume(&LaunchView {
        instance: &inst,
        token: TOKEN,
        volumes: &c.volumes,
        snapshots: &c.snapshots,
        holders: &holders,
        elapsed: Duration::from_secs(c.elapsed_s),
        staying_holder_timeout: Duration::from_secs(600),
        now: 1_000,
    })
}

#[test]
fn launch_table() {
    use SnapshotReason::*;
    use SnapshotState::*;
    use VolumeState::*;
    let cases = vec![
        Case {
            name: "first boot: no data at all",
            az: "a",
            volumes: vec![],
            snapshots: vec![],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::CreateEmpty {
                generation: Generation(1),
            },
        },
        Case {
            name: "same AZ: claim the detached newest volume",
            az: "a",
            volumes: vec![vol("vol-1", "a", Available, 3)],
            snapshots: vec![snap("snap-1", "vol-1", Completed, 3, Precopy)],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Claim {
                volume_id: "vol-1".into(),
                generation: Generation(4),
            },
        },
        Case {
            name: "other AZ: the pre-copy is a recovery point; take the final delta of the fenced volume",
            az: "b",
            volumes: vec![vol("vol-1", "a", Available, 3)],
            snapshots: vec![
                snap("snap-old", "vol-0", Completed, 2, Final),
                snap("snap-pre", "vol-1", Completed, 3, Precopy),
            ],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::SnapshotVolume {
                volume_id: "vol-1".into(),
                generation: Generation(3),
            },
        },
        Case {
            name: "other AZ: restore the final snapshot of the newest volume",
            az: "b",
            volumes: vec![vol("vol-1", "a", Available, 3)],
            snapshots: vec![
                snap("snap-old", "vol-0", Completed, 2, Final),
                snap("snap-pre", "vol-1", Completed, 3, Precopy),
                snap("snap-1", "vol-1", Completed, 3, Final),
            ],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Restore {
                snapshot_id: "snap-1".into(),
                source_volume: "vol-1".into(),
                generation: Generation(4),
            },
        },
        Case {
            name: "other AZ: a manual snapshot is not final; snapshot the detached volume",
            az: "b",
            volumes: vec![vol("vol-1", "a", Available, 3)],
            snapshots: vec![snap("snap-m", "vol-1", Completed, 3, Manual)],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::SnapshotVolume {
                volume_id: "vol-1".into(),
                generation: Generation(3),
            },
        },
        Case {
            name: "other AZ: the pre-copy failed; snapshot the fenced volume (a full copy)",
            az: "b",
            volumes: vec![vol("vol-1", "a", Available, 3)],
            snapshots: vec![snap("snap-1", "vol-1", SnapshotState::Error, 3, Precopy)],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::SnapshotVolume {
                volume_id: "vol-1".into(),
                generation: Generation(3),
            },
        },
        Case {
            name: "other AZ: final snapshot pending; wait, never restore an older one",
            az: "b",
            volumes: vec![vol("vol-1", "a", Available, 3)],
            snapshots: vec![
                snap("snap-old", "vol-0", Completed, 2, Final),
                snap("snap-pre", "vol-1", Completed, 3, Precopy),
                snap("snap-1", "vol-1", Pending, 3, Final),
            ],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Wait(WaitFor::Snapshot("snap-1".into())),
        },
        Case {
            name: "barrier: old instance still terminating with the volume attached",
            az: "b",
            volumes: vec![attached(
                vol("vol-1", "a", Available, 3),
                OLD,
                AttachState::Attached,
            )],
            snapshots: vec![snap("snap-1", "vol-1", Completed, 3, Precopy)],
            holder: Some(HolderState::Leaving),
            elapsed_s: 5000,
            want: VolumeStep::Wait(WaitFor::Holder {
                instance_id: OLD.into(),
                volume_id: "vol-1".into(),
            }),
        },
        Case {
            name: "launch-before-terminate: wait within the bound",
            az: "b",
            volumes: vec![attached(
                vol("vol-1", "a", Available, 3),
                OLD,
                AttachState::Attached,
            )],
            snapshots: vec![],
            holder: Some(HolderState::Staying),
            elapsed_s: 10,
            want: VolumeStep::Wait(WaitFor::StayingHolder {
                instance_id: OLD.into(),
                volume_id: "vol-1".into(),
            }),
        },
        Case {
            name: "handover: the holder is being replaced: fence it, past the bound too",
            az: "b",
            volumes: vec![attached(
                vol("vol-1", "a", Available, 3),
                OLD,
                AttachState::Attached,
            )],
            snapshots: vec![],
            holder: Some(HolderState::Replaced),
            elapsed_s: 7200,
            want: VolumeStep::FenceHolder {
                instance_id: OLD.into(),
                volume_id: "vol-1".into(),
            },
        },
        Case {
            name: "volume detaching from the old instance: wait (fencing)",
            az: "a",
            volumes: vec![attached(
                vol("vol-1", "a", Available, 3),
                OLD,
                AttachState::Detaching,
            )],
            snapshots: vec![],
            holder: Some(HolderState::Leaving),
            elapsed_s: 0,
            want: VolumeStep::Wait(WaitFor::Holder {
                instance_id: OLD.into(),
                volume_id: "vol-1".into(),
            }),
        },
        Case {
            name: "resume: my restored volume is still creating",
            az: "b",
            volumes: vec![
                vol("vol-1", "a", Available, 3),
                mine(vol("vol-2", "b", Creating, 4)),
            ],
            snapshots: vec![snap("snap-1", "vol-1", Completed, 3, Precopy)],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Wait(WaitFor::VolumeCreating("vol-2".into())),
        },
        Case {
            name: "resume: my restored volume is available; attach it",
            az: "b",
            volumes: vec![
                vol("vol-1", "a", Available, 3),
                mine(vol("vol-2", "b", Available, 4)),
            ],
            snapshots: vec![snap("snap-1", "vol-1", Completed, 3, Precopy)],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Attach {
                volume_id: "vol-2".into(),
            },
        },
        Case {
            name: "resume: attaching to me; wait",
            az: "b",
            volumes: vec![attached(
                mine(vol("vol-2", "b", Available, 4)),
                ME,
                AttachState::Attaching,
            )],
            snapshots: vec![],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Wait(WaitFor::Attachment("vol-2".into())),
        },
        Case {
            name: "done: newest attached to me",
            az: "b",
            volumes: vec![
                vol("vol-1", "a", Available, 3),
                attached(
                    mine(vol("vol-2", "b", Available, 4)),
                    ME,
                    AttachState::Attached,
                ),
            ],
            snapshots: vec![snap("snap-1", "vol-1", Completed, 3, Precopy)],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Ready {
                volume_id: "vol-2".into(),
                generation: Generation(4),
            },
        },
        Case {
            name: "stale copy attached to me while a newer generation exists: abandon",
            az: "a",
            volumes: vec![
                attached(vol("vol-0", "a", Available, 2), ME, AttachState::Attached),
                vol("vol-1", "b", Available, 3),
            ],
            snapshots: vec![],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Abandon(String::new()),
        },
        Case {
            name: "only snapshots left: restore the final snapshot of the newest generation",
            az: "c",
            volumes: vec![],
            snapshots: vec![
                snap("snap-2", "vol-0", Completed, 2, Final),
                snap("snap-3m", "vol-1", Completed, 3, Manual),
                snap("snap-3", "vol-1", Completed, 3, Final),
            ],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Restore {
                snapshot_id: "snap-3".into(),
                source_volume: "vol-1".into(),
                generation: Generation(4),
            },
        },
        Case {
            name: "only recovery points of the newest generation: abandon, never restore them as final",
            az: "c",
            volumes: vec![vol("vol-1", "a", VolumeState::Error, 3)],
            snapshots: vec![
                snap("snap-2", "vol-0", Completed, 2, Final),
                snap("snap-3m", "vol-1", Completed, 3, Manual),
                snap("snap-3p", "vol-1", Completed, 3, Precopy),
            ],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Abandon(FINAL_STATE_LOST.into()),
        },
        Case {
            name: "a pending final snapshot of the newest generation: wait for it",
            az: "c",
            volumes: vec![],
            snapshots: vec![
                snap("snap-3p", "vol-1", Completed, 3, Precopy),
                snap("snap-3", "vol-1", Pending, 3, Final),
            ],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Wait(WaitFor::Snapshot("snap-3".into())),
        },
        Case {
            name: "error snapshots hold no data: fall back to the previous generation",
            az: "c",
            volumes: vec![],
            snapshots: vec![
                snap("snap-2", "vol-0", Completed, 2, Final),
                snap("snap-3", "vol-1", SnapshotState::Error, 3, Final),
            ],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Restore {
                snapshot_id: "snap-2".into(),
                source_volume: "vol-0".into(),
                generation: Generation(3),
            },
        },
        Case {
            name: "the final snapshot failed a moment ago (an impaired AZ): wait, do not retake it in a loop",
            az: "c",
            volumes: vec![vol("vol-1", "a", Available, 3)],
            snapshots: vec![ObservedSnapshot {
                start_time: Some(900),
                ..snap("snap-3", "vol-1", SnapshotState::Error, 3, Final)
            }],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Wait(WaitFor::FinalFailed("snap-3".into())),
        },
        Case {
            name: "the final snapshot failed long ago: take it again",
            az: "c",
            volumes: vec![vol("vol-1", "a", Available, 3)],
            snapshots: vec![snap("snap-3", "vol-1", SnapshotState::Error, 3, Final)],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::SnapshotVolume {
                volume_id: "vol-1".into(),
                generation: Generation(3),
            },
        },
        Case {
            name: "a held copy that my restore-latest superseded is no barrier: attach mine",
            az: "b",
            volumes: vec![
                attached(vol("vol-1", "a", Available, 3), OLD, AttachState::Attached),
                ObservedVolume {
                    loss_window_secs: Some(42),
                    ..mine(vol("vol-2", "b", Available, 4))
                },
            ],
            snapshots: vec![],
            holder: Some(HolderState::Leaving),
            elapsed_s: 0,
            want: VolumeStep::Attach {
                volume_id: "vol-2".into(),
            },
        },
        Case {
            name: "a detached volume claimed by another launch still running: wait, never share it",
            az: "a",
            volumes: vec![claimed_by_old(vol("vol-1", "a", Available, 4))],
            snapshots: vec![],
            holder: Some(HolderState::Staying),
            elapsed_s: 0,
            want: VolumeStep::Wait(WaitFor::StayingHolder {
                instance_id: OLD.into(),
                volume_id: "vol-1".into(),
            }),
        },
        Case {
            name: "a detached volume claimed by a launch that was abandoned: free to claim",
            az: "a",
            volumes: vec![claimed_by_old(vol("vol-1", "a", Available, 4))],
            snapshots: vec![],
            holder: Some(HolderState::Leaving),
            elapsed_s: 0,
            want: VolumeStep::Claim {
                volume_id: "vol-1".into(),
                generation: Generation(5),
            },
        },
        Case {
            name: "handover: the volume the replaced instance let go of (its own launch's) is free to claim",
            az: "a",
            volumes: vec![claimed_by_old(vol("vol-1", "a", Available, 4))],
            snapshots: vec![],
            holder: Some(HolderState::Replaced),
            elapsed_s: 0,
            want: VolumeStep::Claim {
                volume_id: "vol-1".into(),
                generation: Generation(5),
            },
        },
        Case {
            name: "a volume of this instance's earlier launch (warm pool), superseded since: never attached",
            az: "a",
            volumes: vec![mine(vol("vol-old", "a", Available, 2)), vol("vol-new", "a", Available, 3)],
            snapshots: vec![],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Claim {
                volume_id: "vol-new".into(),
                generation: Generation(4),
            },
        },
        Case {
            name: "a volume of this instance's earlier launch that failed long ago does not abandon this one",
            az: "a",
            volumes: vec![mine(vol("vol-bad", "a", VolumeState::Error, 2)), vol("vol-new", "a", Available, 3)],
            snapshots: vec![],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Claim {
                volume_id: "vol-new".into(),
                generation: Generation(4),
            },
        },
        Case {
            name: "a deleting volume holds no data, but the slot had data: never an empty volume over it",
            az: "a",
            volumes: vec![vol("vol-9", "a", Deleting, 9)],
            snapshots: vec![],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Abandon(UNREADABLE_DATA.into()),
        },
        Case {
            name: "only error copies and an unreadable generation tag: abandon, not first boot",
            az: "a",
            volumes: vec![{
                let mut v = vol("vol-8", "a", Available, 1);
                v.generation = None;
                v
            }],
            snapshots: vec![snap("snap-8", "vol-7", SnapshotState::Error, 4, Final)],
            holder: None,
            elapsed_s: 0,
            want: VolumeStep::Abandon(UNREADABLE_DATA.into()),
        },
    ];
    for c in &cases {
        let got = run(c);
        match (&c.want, &got) {
            (VolumeStep::Abandon(want), VolumeStep::Abandon(why)) => {
                assert!(why.contains(want.as_str()), "case: {}: {why}", c.name)
            }
            _ => assert_eq!(got, c.want, "case: {}", c.name),
        }
    }
}

#[test]
fn staying_holder_is_abandoned_after_the_bound() {
    let c = Case {
        name: "launch-before-terminate past the bound",
        az: "b",
        volumes: vec![attached(
            vol("vol-1", "a", VolumeState::Available, 3),
            OLD,
            AttachState::Attached,
        )],
        snapshots: vec![],
        holder: Some(HolderState::Staying),
        elapsed_s: 600,
        want: VolumeStep::Abandon(String::new()),
    };
    match run(&c) {
        VolumeStep::Abandon(why) => assert!(why.contains("launch-before-terminate"), "{why}"),
        other => panic!("expected abandon, got {other:?}"),
    }
}

#[test]
fn unknown_holder_counts_as_staying() {
    let c = Case {
        name: "foreign holder",
        az: "b",
        volumes: vec![attached(
            vol("vol-1", "a", VolumeState::Available, 3),
            OLD,
            AttachState::Attached,
        )],
        snapshots: vec![],
        holder: None,
        elapsed_s: 0,
        want: VolumeStep::Wait(WaitFor::StayingHolder {
            instance_id: OLD.into(),
            volume_id: "vol-1".into(),
        }),
    };
    assert_eq!(run(&c), c.want);
}

fn tview<'a>(
    v: &'a [ObservedVolume],
    s: &'a [ObservedSnapshot],
    elapsed: u64,
) -> TerminateView<'a> {
    TerminateView {
        volumes: v,
        snapshots: s,
        elapsed: Duration::from_secs(elapsed),
        snapshot_timeout: Duration::from_secs(3600),
    }
}

#[test]
fn terminate_table() {
    use SnapshotReason::Precopy;
    let v1 = attached(
        vol("vol-1", "a", VolumeState::Available, 3),
        OLD,
        AttachState::Attached,
    );
    let v2 = attached(
        vol("vol-2", "a", VolumeState::Available, 3),
        OLD,
        AttachState::Attached,
    );
    let vols = vec![v1.clone(), v2.clone()];

    assert_eq!(
        decide_terminate(&tview(&[], &[], 0)),
        TerminateStep::Done,
        "nothing managed"
    );
    assert_eq!(
        decide_terminate(&tview(&vols, &[], 0)),
        TerminateStep::Snapshot(vec!["vol-1".into(), "vol-2".into()])
    );
    let mut untagged = snap("snap-1", "vol-1", SnapshotState::Pending, 3, Precopy);
    untagged.generation = None;
    let s2 = snap("snap-2", "vol-2", SnapshotState::Pending, 3, Precopy);
    assert_eq!(
        decide_terminate(&tview(&vols, &[untagged, s2.clone()], 0)),
        TerminateStep::TagSnapshots(vec![("snap-1".into(), "vol-1".into())])
    );
    let s1 = snap("snap-1", "vol-1", SnapshotState::Completed, 3, Precopy);
    assert_eq!(
        decide_terminate(&tview(&vols, &[s1.clone(), s2.clone()], 10)),
        TerminateStep::Wait(vec!["snap-2".into()])
    );
    let s2done = snap("snap-2", "vol-2", SnapshotState::Completed, 3, Precopy);
    assert_eq!(
        decide_terminate(&tview(&vols, &[s1.clone(), s2done], 10)),
        TerminateStep::Done
    );
    match decide_terminate(&tview(&vols, &[s1.clone(), s2.clone()], 3600)) {
        TerminateStep::DoneDegraded(why) => assert!(why.contains("snap-2"), "{why}"),
        other => panic!("expected degraded, got {other:?}"),
    }
    let s2err = snap("snap-2", "vol-2", SnapshotState::Error, 3, Precopy);
    match decide_terminate(&tview(&vols, &[s1, s2err], 10)) {
        TerminateStep::DoneDegraded(why) => assert!(why.contains("vol-2"), "{why}"),
        other => panic!("expected degraded, got {other:?}"),
    }
}
