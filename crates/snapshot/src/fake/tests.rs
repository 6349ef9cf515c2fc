//! The fake's own rules: timed states, AWS's validation, idempotency and the ledger filters.

use std::time::Duration;

use ferry_state_machine::observe::{AttachState, SnapshotState, VolumeState};
use ferry_state_machine::{Disposition, Generation};

use super::*;
use crate::ports::{
    Addresses, Instances, NewVolume, SnapshotQuery, Snapshots, VolumeQuery, Volumes,
};

fn restore(az: &str, snapshot: &str, token: &str) -> NewVolume {
    NewVolume {
        availability_zone: az.into(),
        snapshot_id: Some(snapshot.into()),
        volume_type: "gp3".into(),
        client_token: token.into(),
        tags: ledger_tags("asg", 0, "data", 2),
        ..NewVolume::default()
    }
}

fn code(e: &StepError) -> &str {
    e.code.as_deref().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn volumes_attachments_and_snapshots_move_through_timed_states() {
    let ec2 = FakeEc2::new();
    ec2.set_timings(Timings {
        volume_create: Duration::from_secs(2),
        attach: Duration::from_secs(1),
        detach: Duration::from_secs(3),
        snapshot: Duration::from_secs(10),
        incremental_snapshot: None,
    });
    ec2.add_instance("i-1", "us-east-1a");
    let snap = ec2.put_snapshot(
        "vol-old",
        20,
        SnapshotState::Completed,
        &ledger_tags("asg", 0, "data", 1),
    );
    let vol = ec2
        .create_volume(&restore("us-east-1a", &snap, "tok"))
        .await
        .unwrap();
    assert_eq!(ec2.volume(&vol).unwrap().state, VolumeState::Creating);
    let e = ec2
        .attach_volume(&vol, "i-1", "/dev/sdf")
        .await
        .unwrap_err();
    assert_eq!(
        (code(&e), e.disposition),
        ("IncorrectState", Disposition::Retry)
    );

    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(ec2.volume(&vol).unwrap().state, VolumeState::Available);
    assert_eq!(
        ec2.volume(&vol).unwrap().size_gib,
        20,
        "a restore takes the snapshot's size"
    );
    ec2.attach_volume(&vol, "i-1", "/dev/sdf").await.unwrap();
    let att = |ec2: &FakeEc2| ec2.volume(&vol).unwrap().attachment.map(|a| a.state);
    assert_eq!(att(&ec2), Some(AttachState::Attaching));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(att(&ec2), Some(AttachState::Attached));
    assert_eq!(ec2.instance("i-1").unwrap().volume_ids.len(), 2);

    let taken = ec2
        .create_snapshots("i-1", &[], &[("ferry:hook".into(), "h1".into())])
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the root volume is excluded");
    let (snap_id, from) = &taken[0];
    assert_eq!(from, &vol);
    tokio::time::advance(Duration::from_secs(4)).await;
    let s = ec2.snapshot(snap_id).unwrap();
    assert_eq!((s.state, s.progress), (SnapshotState::Pending, 40));
    assert_eq!(
        (s.tag("ferry:generation"), s.tag("ferry:hook")),
        (None, Some("h1")),
        "only the explicit tags: the volume's own tags are not copied"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        ec2.snapshot(snap_id).unwrap().state,
        SnapshotState::Completed
    );

    ec2.detach_volume(&vol, "i-1").await.unwrap();
    assert_eq!(att(&ec2), Some(AttachState::Detaching));
    tokio::time::advance(Duration::from_secs(3)).await;
    let v = ec2.volume(&vol).unwrap();
    assert_eq!((v.state, v.attachment), (VolumeState::Available, None));
}

#[tokio::test]
async fn attach_enforces_zone_use_device_and_instance_state() {
    let ec2 = FakeEc2::new();
    ec2.add_instance("i-a", "us-east-1a");
    ec2.add_instance("i-b", "us-east-1b");
    let in_b = ec2.add_volume("us-east-1b", 10, &[]);
    let e = ec2
        .attach_volume(&in_b, "i-a", "/dev/sdf")
        .await
        .unwrap_err();
    assert_eq!(
        (code(&e), e.disposition),
        ("InvalidVolume.ZoneMismatch", Disposition::Permanent)
    );

    let in_a = ec2.add_attached_volume("i-a", "/dev/sdf", 10, &[]);
    let e = ec2
        .attach_volume(&in_a, "i-a", "/dev/sdg")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VolumeInUse");
    let spare = ec2.add_volume("us-east-1a", 10, &[]);
    for dev in ["/dev/sdf", "/dev/xvda"] {
        let e = ec2.attach_volume(&spare, "i-a", dev).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue", "{dev}");
    }
    ec2.set_instance_state("i-a", "terminated");
    let e = ec2
        .attach_volume(&spare, "i-a", "/dev/sdg")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "IncorrectInstanceState");
    let freed = ec2.volume(&in_a).unwrap();
    assert_eq!(
        (freed.state, freed.attachment),
        (VolumeState::Available, None),
        "termination detaches data"
    );
    assert_eq!(
        ec2.instance("i-a").unwrap().root_volume_id,
        None,
        "and deletes the root volume"
    );
}

#[tokio::test]
async fn create_volume_checks_snapshot_zone_and_client_token() {
    let ec2 = FakeEc2::new();
    ec2.fail_snapshots_of("vol-x", FailMode::Stuck);
    let pending = ec2.put_snapshot("vol-x", 10, SnapshotState::Pending, &[]);
    let e = ec2
        .create_volume(&restore("us-east-1a", &pending, "t0"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "IncorrectState");
    let e = ec2
        .create_volume(&restore("us-east-1a", "snap-nope", "t0"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidSnapshot.NotFound");
    let done = ec2.put_snapshot("vol-x", 10, SnapshotState::Completed, &[]);
    let e = ec2
        .create_volume(&restore("eu-west-1a", &done, "t0"))
        .await
        .unwrap_err();
    assert_eq!(
        (code(&e), e.disposition),
        ("InvalidParameterValue", Disposition::Permanent)
    );

    let first = ec2
        .create_volume(&restore("us-east-1a", &done, "t1"))
        .await
        .unwrap();
    assert_eq!(
        ec2.create_volume(&restore("us-east-1a", &done, "t1"))
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        ec2.volumes().len(),
        1,
        "the same token makes no second volume"
    );
    let e = ec2
        .create_volume(&restore("us-east-1b", &done, "t1"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "IdempotentParameterMismatch");
    assert_eq!(ec2.count("CreateVolume"), 6);
}

#[tokio::test]
async fn ledger_filters_match_like_ec2_tag_filters() {
    let ec2 = FakeEc2::new();
    ec2.add_instance("i-1", "us-east-1a");
    let data = ec2.add_attached_volume("i-1", "/dev/sdf", 10, &ledger_tags("asg", 0, "data", 3));
    ec2.add_volume("us-east-1a", 10, &ledger_tags("asg", 1, "data", 3));
    ec2.add_volume("us-east-1a", 10, &ledger_tags("other", 0, "data", 3));
    let q = VolumeQuery {
        group: "asg".into(),
        slot: Some(0),
        ..VolumeQuery::default()
    };
    let found = ec2.find_volumes(&q).await.unwrap();
    assert_eq!(
        found.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        [data.as_str()]
    );
    assert_eq!(found[0].generation, Some(Generation(3)));
    let q = VolumeQuery {
        group: "asg".into(),
        attached_instance: Some("i-1".into()),
        ..VolumeQuery::default()
    };
    assert_eq!(ec2.find_volumes(&q).await.unwrap().len(), 1);

    ec2.put_snapshot(
        &data,
        10,
        SnapshotState::Completed,
        &ledger_tags("asg", 0, "data", 3),
    );
    ec2.put_snapshot(
        "vol-y",
        10,
        SnapshotState::Completed,
        &ledger_tags("asg", 0, "wal", 3),
    );
    let q = SnapshotQuery {
        group: "asg".into(),
        logical: Some("data".into()),
        ..SnapshotQuery::default()
    };
    assert_eq!(ec2.find_snapshots(&q).await.unwrap().len(), 1);
    let q = SnapshotQuery {
        group: "asg".into(),
        volume_id: Some("vol-y".into()),
        ..SnapshotQuery::default()
    };
    assert_eq!(
        ec2.find_snapshots(&q).await.unwrap()[0].logical.as_deref(),
        Some("wal")
    );
}

#[tokio::test]
async fn failing_snapshots_and_addresses() {
    let ec2 = FakeEc2::new();
    ec2.add_instance("i-1", "us-east-1a");
    ec2.add_instance("i-2", "us-east-1b");
    let vol = ec2.add_attached_volume("i-1", "/dev/sdf", 10, &[]);
    ec2.fail_snapshots_of(&vol, FailMode::Error);
    let snap = ec2.create_snapshot(&vol, "manual", &[]).await.unwrap();
    assert_eq!(
        ec2.describe_snapshots(&[snap]).await.unwrap()[0].state,
        SnapshotState::Error
    );

    ec2.add_address("eipalloc-1", "198.51.100.7");
    let e = ec2
        .associate_address("eipalloc-nope", "i-1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAllocationID.NotFound");
    ec2.associate_address("eipalloc-1", "i-1").await.unwrap();
    ec2.associate_address("eipalloc-1", "i-2").await.unwrap();
    assert_eq!(
        ec2.address("eipalloc-1").unwrap().instance_id.as_deref(),
        Some("i-2"),
        "reassociation moves it"
    );
    ec2.set_instance_state("i-2", "terminated");
    assert_eq!(
        ec2.describe_address("eipalloc-1")
            .await
            .unwrap()
            .unwrap()
            .instance_id,
        None
    );
    assert_eq!(ec2.describe_instance("i-nope").await.unwrap(), None);
    assert_eq!(&ec2.calls()[..2], ["CreateSnapshot", "DescribeSnapshots"]);
}

#[tokio::test]
async fn detach_answers_as_the_aws_adapter_does() {
    let ec2 = FakeEc2::new();
    ec2.add_instance("i-a", "us-east-1a");
    ec2.add_instance("i-b", "us-east-1a");
    let free = ec2.add_volume("us-east-1a", 10, &[]);
    // Not attached to that instance: the goal holds, as the adapter answers EC2's InvalidAttachment.NotFound.
    ec2.detach_volume(&free, "i-a").await.unwrap();
    assert_eq!(ec2.volume(&free).unwrap().state, VolumeState::Available);
    let on_b = ec2.add_attached_volume("i-b", "/dev/sdf", 10, &[]);
    ec2.detach_volume(&on_b, "i-a").await.unwrap();
    assert!(
        ec2.volume(&on_b).unwrap().attachment.is_some(),
        "a detach naming another instance leaves the attachment alone"
    );
    let e = ec2.detach_volume(&on_b, "i-nope").await.unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");
}
