//! Tests of the recovery-point loop on the fakes, in virtual time: the schedule, its bound on the age, its
//! restart from the ledger, EBS's refusals and retention.

use std::time::Duration;

use ferry_snapshot::fake::{ledger_tags, FakeEc2, FakeSnapshot, Timings};
use ferry_snapshot::{GroupSpec, Instances, VolumeSpec};
use ferry_state_machine::fake::FakeLifecycleActions;
use ferry_state_machine::observe::SnapshotState;
use ferry_state_machine::{tags, GroupInstance, LifecycleActions};

use super::*;

const INTERVAL: Duration = Duration::from_secs(300);
const SNAPSHOT: Duration = Duration::from_secs(20);

fn spec(volumes: &[&str]) -> GroupSpec {
    GroupSpec {
        name: "db".into(),
        elastic_ip: None,
        elastic_ips: Vec::new(),
        multi_slot: false,
        volumes: volumes
            .iter()
            .enumerate()
            .map(|(i, n)| VolumeSpec {
                name: (*n).into(),
                device: format!("/dev/sd{}", ["f", "g", "h"][i]),
                size_gib: 10,
                volume_type: "gp3".into(),
                iops: None,
                throughput: None,
                encrypted: None,
                kms_key_id: None,
            })
            .collect(),
        staying_holder_timeout: Duration::from_secs(600),
        snapshot_timeout: Duration::from_secs(3600),
        restore_latest: false,
        restore_latest_after: Duration::from_secs(600),
        recovery_point_interval: INTERVAL,
        root_volume_recovery_point: true,
        handover: false,
    }
}

/// A fake world: instance `i-1` in service in group `db`, with `volumes` attached at generation 2.
fn world(volumes: &[&str], lifecycle: &str) -> (FakeEc2, Arc<FakeLifecycleActions>) {
    let ec2 = FakeEc2::new();
    ec2.set_timings(Timings {
        snapshot: SNAPSHOT,
        ..Timings::default()
    });
    ec2.add_instance("i-1", "us-east-1a");
    for (i, v) in volumes.iter().enumerate() {
        let device = format!("/dev/sd{}", ["f", "g", "h"][i]);
        ec2.add_attached_volume("i-1", &device, 10, &ledger_tags("db", 0, v, 2));
    }
    let asg = Arc::new(FakeLifecycleActions::default());
    asg.put_instance(GroupInstance {
        instance_id: "i-1".into(),
        group: "db".into(),
        availability_zone: "us-east-1a".into(),
        lifecycle_state: lifecycle.into(),
        health_status: "Healthy".into(),
    });
    (ec2, asg)
}

fn config(keep: u64) -> LoopConfig {
    LoopConfig {
        deletes: None,
        idle_every: Duration::from_secs(300),
        retention: Policy {
            keep_generations: 3,
            min_age_secs: 7 * 86_400,
            keep_recovery_points: keep,
            recovery_point_max_age_secs: 86_400,
        },
        leases: None,
    }
}

/// Starts the loop over `volumes`; returns its shutdown sender and task.
fn start(
    ec2: &FakeEc2,
    asg: &Arc<FakeLifecycleActions>,
    volumes: &[&str],
    metrics: &Metrics,
    keep: u64,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let e: Arc<dyn Ec2> = Arc::new(ec2.clone());
    let a: Arc<dyn LifecycleActions> = asg.clone();
    let points = vec![RecoveryPoints::new(e.clone(), a, spec(volumes))];
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(e, points, metrics.clone(), config(keep), rx));
    (tx, task)
}

fn points(ec2: &FakeEc2) -> Vec<FakeSnapshot> {
    let mut v: Vec<FakeSnapshot> = ec2
        .snapshots()
        .into_iter()
        .filter(|s| s.tag(tags::REASON) == Some("recovery"))
        .collect();
    v.sort_by_key(|s| s.start_time);
    v
}

/// The true age now: from the newest completed snapshot's start, on the fake's clock.
fn true_age(ec2: &FakeEc2) -> Option<i64> {
    let newest = ec2
        .snapshots()
        .iter()
        .filter(|s| s.state == SnapshotState::Completed)
        .map(|s| s.start_time)
        .max()?;
    Some(ec2.now_secs() - newest)
}

#[tokio::test(start_paused = true)]
async fn the_age_stays_within_interval_plus_one_snapshot_and_retention_keeps_what_it_must() {
    let (ec2, asg) = world(&["data"], "InService");
    let metrics = Metrics::new();
    let (stop, task) = start(&ec2, &asg, &["data"], &metrics, 6);
    let bound = i64::try_from((INTERVAL + SNAPSHOT).as_secs()).unwrap_or(i64::MAX);
    let mut worst = 0;
    // Six hours, looked at every second once the first point has completed.
    for _ in 0..6 * 3600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(age) = true_age(&ec2) {
            worst = worst.max(age);
            assert!(age <= bound, "age {age}s > interval + snapshot ({bound}s)");
        }
        let pending = points(&ec2)
            .iter()
            .filter(|s| s.state == SnapshotState::Pending)
            .count();
        assert!(pending <= 1, "never two recovery points pending at once");
    }
    assert!(
        worst >= bound - 2,
        "the bound is reached, not avoided: {worst}"
    );
    let all = points(&ec2);
    // 6 h / 300 s = 72 taken; retention kept the 6 newest.
    assert_eq!(
        all.len(),
        6,
        "{:?}",
        all.iter().map(|s| s.start_time).collect::<Vec<_>>()
    );
    let starts: Vec<i64> = all.iter().map(|s| s.start_time).collect();
    assert!(starts.windows(2).all(|w| w[1] - w[0] == 300), "{starts:?}");
    let text = metrics.encode();
    assert!(
        text.contains(r#"ferry_recovery_points_total{group="db",outcome="taken"} 72"#),
        "{text}"
    );
    assert!(text.contains(r#"ferry_recovery_points_total{group="db",outcome="deleted"} 66"#));
    let s = &all[0];
    assert_eq!(s.tag(tags::VOLUME), Some("data"));
    assert_eq!(s.tag(tags::GENERATION), Some("2"));
    assert!(s
        .tag(tags::SET)
        .is_some_and(|v| v.starts_with("i-1/recovery/")));
    stop.send(true).expect("running");
    task.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn a_restart_resumes_the_schedule_from_the_ledger() {
    let (ec2, asg) = world(&["data"], "InService");
    let metrics = Metrics::new();
    let (stop, task) = start(&ec2, &asg, &["data"], &metrics, 24);
    tokio::time::sleep(Duration::from_secs(400)).await;
    stop.send(true).expect("running");
    task.await.expect("stops");
    assert_eq!(points(&ec2).len(), 2, "at 0 s and 300 s");
    // A new process, with nothing in memory: the next point is still at 600 s, not at once.
    let (stop, task) = start(&ec2, &asg, &["data"], &metrics, 24);
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(points(&ec2).len(), 2, "not due before 600 s");
    tokio::time::sleep(Duration::from_secs(150)).await;
    let starts: Vec<i64> = points(&ec2).iter().map(|s| s.start_time).collect();
    assert_eq!(starts.len(), 3);
    assert_eq!(starts[2] - starts[0], 600, "{starts:?}");
    stop.send(true).expect("running");
    task.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn ebs_refusals_back_off_and_points_go_on() {
    let (ec2, asg) = world(&["data"], "InService");
    // One snapshot per volume per 400 s: every other due point is refused at first.
    ec2.set_snapshot_rate_limit(Some(Duration::from_secs(400)));
    let metrics = Metrics::new();
    let (stop, task) = start(&ec2, &asg, &["data"], &metrics, 24);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let text = metrics.encode();
    let refused = text
        .lines()
        .find(|l| l.starts_with(r#"ferry_recovery_points_total{group="db",outcome="refused"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused >= 1, "{text}");
    let starts: Vec<i64> = points(&ec2).iter().map(|s| s.start_time).collect();
    assert!(starts.len() >= 7, "points still taken: {starts:?}");
    assert!(starts.windows(2).all(|w| w[1] - w[0] >= 400), "{starts:?}");
    // Back-off is bounded: no gap wider than the limit plus the longest back-off.
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] <= 400 + 300),
        "{starts:?}"
    );
    stop.send(true).expect("running");
    task.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn only_an_instance_in_service_gets_recovery_points() {
    for state in ["Terminating:Wait", "Pending:Wait", "Standby:Entering"] {
        let (ec2, asg) = world(&["data"], state);
        let metrics = Metrics::new();
        let (stop, task) = start(&ec2, &asg, &["data"], &metrics, 24);
        tokio::time::sleep(Duration::from_secs(900)).await;
        assert_eq!(ec2.count("CreateSnapshot"), 0, "{state}");
        assert_eq!(ec2.count("CreateSnapshots"), 0, "{state}");
        stop.send(true).expect("running");
        task.await.expect("stops");
    }
}

#[tokio::test(start_paused = true)]
async fn several_volumes_get_one_crash_consistent_set_with_every_ledger_tag() {
    let (ec2, asg) = world(&["data", "wal"], "InService");
    let metrics = Metrics::new();
    let (stop, task) = start(&ec2, &asg, &["data", "wal"], &metrics, 24);
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(ec2.count("CreateSnapshots"), 1);
    assert_eq!(ec2.count("CreateSnapshot"), 0);
    let set = points(&ec2);
    assert_eq!(set.len(), 2);
    let mut logical: Vec<&str> = set.iter().filter_map(|s| s.tag(tags::VOLUME)).collect();
    logical.sort_unstable();
    assert_eq!(logical, vec!["data", "wal"]);
    assert_eq!(set[0].tag(tags::SET), set[1].tag(tags::SET));
    assert!(set.iter().all(|s| s.tag(tags::GENERATION) == Some("2")));
    let text = metrics.encode();
    assert!(text.contains(r#"ferry_recovery_point_age_seconds{group="db",slot="0",volume="wal"}"#));
    stop.send(true).expect("running");
    task.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn a_superseded_copy_on_a_hung_instance_does_not_stop_the_new_points() {
    // After a restore-latest, the old copy (generation 1) stays attached to the hung old instance.
    let (ec2, asg) = world(&["data"], "InService");
    ec2.add_instance("i-old", "us-east-1b");
    ec2.set_instance_state("i-old", "shutting-down");
    ec2.add_attached_volume("i-old", "/dev/sdf", 10, &ledger_tags("db", 0, "data", 1));
    let metrics = Metrics::new();
    let (stop, task) = start(&ec2, &asg, &["data"], &metrics, 24);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let taken = points(&ec2);
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        taken[0].tag(tags::GENERATION),
        Some("2"),
        "of the new instance's copy"
    );
    stop.send(true).expect("running");
    task.await.expect("stops");
}
