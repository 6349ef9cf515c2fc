//! `ReadYourWrites` on the fake, paused time: a read that misses what this process created is retried, for
//! the queries that should find it, until [`WINDOW`] has passed. EC2's lag is made by taking the resource
//! out of the fake behind the layer's back (the fake itself is consistent).

use std::time::Duration;

use ferry_state_machine::{tags, Disposition, StepError};
use tokio::time::Instant;

use super::*;
use crate::fake::{ledger_tags, FakeEc2};
use crate::ports::{Instances, NewVolume, SnapshotQuery, Snapshots, VolumeQuery, Volumes};

const GROUP: &str = "db";

fn layer() -> ReadYourWrites<FakeEc2> {
    let fake = FakeEc2::new();
    fake.add_instance("i-1", "us-east-1a");
    ReadYourWrites::new(fake)
}

fn volume_query(logical: Option<&str>) -> VolumeQuery {
    VolumeQuery {
        group: GROUP.into(),
        slot: Some(0),
        logical: logical.map(str::to_string),
        attached_instance: None,
    }
}

fn snapshot_query(hook: Option<&str>) -> SnapshotQuery {
    SnapshotQuery {
        group: GROUP.into(),
        slot: Some(0),
        hook: hook.map(str::to_string),
        ..SnapshotQuery::default()
    }
}

fn not_yet(err: &StepError, id: &str) {
    assert_eq!(err.disposition, Disposition::Retry, "{err}");
    assert!(
        err.message.contains(id) && err.message.contains("not visible yet"),
        "{err}"
    );
}

async fn own_snapshot(rw: &ReadYourWrites<FakeEc2>) -> (String, String) {
    let vol = rw
        .inner
        .add_volume("us-east-1a", 8, &ledger_tags(GROUP, 0, "data", 3));
    let mut t = ledger_tags(GROUP, 0, "data", 3);
    t.push((tags::HOOK.into(), "i-1/terminate".into()));
    let snap = rw.create_snapshot(&vol, "final", &t).await.unwrap();
    (snap, vol)
}

#[tokio::test(start_paused = true)]
async fn a_read_that_misses_our_new_snapshot_is_retried_until_the_window_passes() {
    let rw = layer();
    let (snap, _) = own_snapshot(&rw).await;
    assert_eq!(
        rw.find_snapshots(&snapshot_query(None))
            .await
            .unwrap()
            .len(),
        1,
        "visible: the read passes"
    );

    rw.inner.delete_snapshot(&snap).await.unwrap(); // EC2 does not show it (yet)
    not_yet(
        &rw.find_snapshots(&snapshot_query(None)).await.unwrap_err(),
        &snap,
    );
    not_yet(
        &rw.find_snapshots(&snapshot_query(Some("i-1/terminate")))
            .await
            .unwrap_err(),
        &snap,
    );
    not_yet(
        &rw.describe_snapshots(std::slice::from_ref(&snap))
            .await
            .unwrap_err(),
        &snap,
    );
    let batch = rw.find_snapshots_batch(&[snapshot_query(None)]).await;
    not_yet(&batch.unwrap_err(), &snap);

    // Queries that would not find it are answered as read.
    assert!(rw
        .find_snapshots(&snapshot_query(Some("i-2/launch")))
        .await
        .unwrap()
        .is_empty());
    let other_group = SnapshotQuery {
        group: "web".into(),
        ..SnapshotQuery::default()
    };
    assert!(rw.find_snapshots(&other_group).await.unwrap().is_empty());

    tokio::time::advance(WINDOW).await;
    assert!(
        rw.find_snapshots(&snapshot_query(None))
            .await
            .unwrap()
            .is_empty(),
        "taken as read after the window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_that_misses_our_new_volume_is_retried_but_a_query_by_attachment_is_not() {
    let rw = layer();
    let req = NewVolume {
        availability_zone: "us-east-1a".into(),
        size_gib: Some(8),
        volume_type: "gp3".into(),
        client_token: "tok".into(),
        tags: ledger_tags(GROUP, 0, "data", 1),
        ..NewVolume::default()
    };
    let id = rw.create_volume(&req).await.unwrap();
    assert_eq!(
        rw.find_volumes(&volume_query(Some("data")))
            .await
            .unwrap()
            .len(),
        1
    );

    rw.inner.delete_volume(&id).await.unwrap();
    not_yet(
        &rw.find_volumes(&volume_query(Some("data")))
            .await
            .unwrap_err(),
        &id,
    );
    not_yet(
        &rw.describe_volumes(std::slice::from_ref(&id))
            .await
            .unwrap_err(),
        &id,
    );
    assert!(rw
        .find_volumes(&volume_query(Some("logs")))
        .await
        .unwrap()
        .is_empty());
    let attached = VolumeQuery {
        attached_instance: Some("i-1".into()),
        ..volume_query(None)
    };
    assert!(rw.find_volumes(&attached).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn what_we_delete_or_never_made_is_not_expected() {
    let rw = layer();
    let (snap, _) = own_snapshot(&rw).await;
    rw.delete_snapshot(&snap).await.unwrap();
    assert!(rw
        .find_snapshots(&snapshot_query(None))
        .await
        .unwrap()
        .is_empty());
    assert!(rw
        .describe_snapshots(&["snap-unknown".to_string()])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_tag_we_wrote_on_our_snapshot_widens_the_queries_that_must_find_it() {
    let rw = layer();
    let vol = rw.inner.add_volume("us-east-1a", 8, &[]);
    // CreateSnapshots-style: the set's shared tags first, the volume's own tags written after.
    let snap = rw
        .create_snapshot(&vol, "set", &[(tags::GROUP.into(), GROUP.into())])
        .await
        .unwrap();
    let by_logical = SnapshotQuery {
        group: GROUP.into(),
        logical: Some("data".into()),
        ..SnapshotQuery::default()
    };
    rw.tag_snapshot(&snap, &[(tags::VOLUME.into(), "data".into())])
        .await
        .unwrap();
    rw.inner.delete_snapshot(&snap).await.unwrap();
    not_yet(&rw.find_snapshots(&by_logical).await.unwrap_err(), &snap);
    let by_volume = SnapshotQuery {
        group: GROUP.into(),
        volume_id: Some(vol),
        ..SnapshotQuery::default()
    };
    not_yet(&rw.find_snapshots(&by_volume).await.unwrap_err(), &snap);
}

#[tokio::test(start_paused = true)]
async fn an_instance_we_tagged_must_show_the_tag_before_a_read_of_it_is_believed() {
    let rw = layer();
    rw.tag_instance("i-1", &[(tags::SLOT.into(), "2".into())])
        .await
        .unwrap();
    let me = rw.describe_instance("i-1").await.unwrap().unwrap();
    assert!(me.tags.contains(&(tags::SLOT.to_string(), "2".to_string())));

    // EC2 still shows the old value (another writer's, or the write not yet visible).
    rw.inner
        .tag_instance("i-1", &[(tags::SLOT.into(), "1".into())])
        .await
        .unwrap();
    let err = rw.describe_instance("i-1").await.unwrap_err();
    assert_eq!(err.disposition, Disposition::Retry, "{err}");
    assert!(
        err.message.contains("i-1") && err.message.contains("ferry:slot=2"),
        "{err}"
    );
    let err = rw
        .describe_instances(&["i-1".to_string(), "i-9".to_string()])
        .await
        .unwrap_err();
    assert!(err.message.contains("ferry:slot=2"), "{err}");
    // Instances never tagged here are believed as read.
    assert!(rw
        .describe_instances(&["i-9".to_string()])
        .await
        .unwrap()
        .is_empty());

    tokio::time::advance(WINDOW).await;
    let me = rw.describe_instance("i-1").await.unwrap().unwrap();
    assert!(
        me.tags.contains(&(tags::SLOT.to_string(), "1".to_string())),
        "taken as read after the window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_volume_we_claimed_must_show_the_claim_before_a_read_of_it_is_believed() {
    let rw = layer();
    let vol = rw
        .inner
        .add_volume("us-east-1a", 8, &ledger_tags(GROUP, 0, "data", 3));
    let mut claim = ledger_tags(GROUP, 0, "data", 4);
    claim.push((tags::HOOK.into(), "i-1/launch".into()));
    claim.push((tags::NAME.into(), "ferry db/0 data gen 4".into()));
    rw.tag_volume(&vol, &claim).await.unwrap();
    assert_eq!(
        rw.find_volumes(&volume_query(Some("data")))
            .await
            .unwrap()
            .len(),
        1
    );

    // EC2 still shows generation 3 and no hook.
    rw.inner
        .tag_volume(&vol, &ledger_tags(GROUP, 0, "data", 3))
        .await
        .unwrap();
    let err = rw
        .find_volumes(&volume_query(Some("data")))
        .await
        .unwrap_err();
    assert_eq!(err.disposition, Disposition::Retry, "{err}");
    assert!(
        err.message.contains(&vol) && err.message.contains("ferry:generation=4"),
        "{err}"
    );
    not_yet_tag(
        &rw.describe_volumes(std::slice::from_ref(&vol))
            .await
            .unwrap_err(),
        &vol,
    );

    tokio::time::advance(WINDOW).await;
    let [v] = &rw.find_volumes(&volume_query(Some("data"))).await.unwrap()[..] else {
        panic!("one volume")
    };
    assert_eq!(
        v.generation.map(|g| g.0),
        Some(3),
        "taken as read after the window"
    );
}

fn not_yet_tag(err: &StepError, id: &str) {
    assert_eq!(err.disposition, Disposition::Retry, "{err}");
    assert!(
        err.message.contains(id) && err.message.contains("does not show its tag"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_process_reads_only_once_it_has_settled() {
    let settle = Duration::from_secs(5);
    let fake = FakeEc2::new();
    fake.add_instance("i-1", "us-east-1a");
    let rw = ReadYourWrites::new(fake).settling(settle);
    let began = Instant::now();
    assert!(rw.describe_instance("i-1").await.unwrap().is_some());
    assert!(
        began.elapsed() >= settle,
        "read after {:?}",
        began.elapsed()
    );
    let again = Instant::now();
    rw.find_volumes(&volume_query(None)).await.unwrap();
    assert_eq!(again.elapsed(), Duration::ZERO, "later reads do not wait");
    assert_eq!(rw.inner.count("DescribeInstances"), 1);
}
