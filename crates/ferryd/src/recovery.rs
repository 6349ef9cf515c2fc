//! The recovery-point check: every so often, the age of each volume's newest completed ferry snapshot,
//! exported as `ferry_recovery_point_age_seconds{group, slot, volume}`.
//!
//! The age is how much data a failover would lose right now if the instance died without a terminate
//! hook. It keeps growing between look-ups, and while they fail, from the last snapshot seen.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_snapshot::{Ec2, SnapshotQuery};
use ferry_state_machine::observe::SnapshotState;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// The slot of a group of one; the only slot ferry manages today.
const SLOT: u32 = 0;

/// Measures the recovery-point age of every (group, logical volume) every `every`, until `shutdown`
/// turns true. `groups` is (group name, logical volume names). An `every` of zero checks once.
pub async fn run(
    ec2: Arc<dyn Ec2>,
    groups: Vec<(String, Vec<String>)>,
    metrics: Metrics,
    every: Duration,
    shutdown: watch::Receiver<bool>,
) {
    run_with_clock(ec2, groups, metrics, every, shutdown, wall_clock).await;
}

/// Seconds since the Unix epoch.
fn wall_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// [`run`] with the wall clock given, for tests.
async fn run_with_clock(
    ec2: Arc<dyn Ec2>,
    groups: Vec<(String, Vec<String>)>,
    metrics: Metrics,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
    now: impl Fn() -> i64,
) {
    let mut checker = Checker::default();
    loop {
        if *shutdown.borrow() {
            return;
        }
        checker.check(ec2.as_ref(), &groups, &metrics, now()).await;
        if every.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}

/// The newest completed snapshot time seen per (group, volume), so the age stays right when a look-up
/// fails.
#[derive(Debug, Default)]
struct Checker {
    newest: HashMap<(String, String), i64>,
}

impl Checker {
    /// One round: one `DescribeSnapshots` per (group, volume).
    async fn check(
        &mut self,
        ec2: &dyn Ec2,
        groups: &[(String, Vec<String>)],
        metrics: &Metrics,
        now: i64,
    ) {
        for (group, volumes) in groups {
            for volume in volumes {
                let key = (group.clone(), volume.clone());
                match newest_completed(ec2, group, volume).await {
                    Ok(Some(t)) => {
                        self.newest.insert(key.clone(), t);
                    }
                    Ok(None) => {
                        debug!(asg = %group, volume = %volume, "no completed ferry snapshot yet");
                    }
                    Err(e) => {
                        metrics.recovery_check_failed();
                        warn!(asg = %group, volume = %volume, error = %e, "cannot look up the newest snapshot");
                    }
                }
                if let Some(t) = self.newest.get(&key) {
                    let age = u64::try_from(now.saturating_sub(*t)).unwrap_or(0);
                    metrics.set_recovery_point_age(group, SLOT, volume, Duration::from_secs(age));
                }
            }
        }
    }
}

/// The start time (epoch seconds) of the newest completed snapshot of (group, slot 0, volume).
async fn newest_completed(
    ec2: &dyn Ec2,
    group: &str,
    volume: &str,
) -> Result<Option<i64>, ferry_state_machine::StepError> {
    let query = SnapshotQuery {
        group: group.to_string(),
        slot: Some(SLOT),
        logical: Some(volume.to_string()),
        ..SnapshotQuery::default()
    };
    let snapshots = ec2.find_snapshots(&query).await?;
    Ok(snapshots
        .iter()
        .filter(|s| s.state == SnapshotState::Completed)
        .filter_map(|s| s.start_time)
        .max())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_snapshot::fake::{ledger_tags, FakeEc2, Timings};

    /// The fake's clock: 1 700 000 000 at its creation, then paused tokio time.
    fn fake_clock() -> impl Fn() -> i64 {
        let origin = tokio::time::Instant::now();
        move || 1_700_000_000 + i64::try_from(origin.elapsed().as_secs()).unwrap_or(0)
    }

    fn age(metrics: &Metrics, volume: &str) -> Option<f64> {
        let needle = format!(
            "ferry_recovery_point_age_seconds{{group=\"db\",slot=\"0\",volume=\"{volume}\"}} "
        );
        let text = metrics.encode();
        let line = text.lines().find(|l| l.starts_with(&needle))?;
        line[needle.len()..].trim().parse().ok()
    }

    #[tokio::test(start_paused = true)]
    async fn reports_the_age_of_the_newest_completed_snapshot() {
        let fake = FakeEc2::new();
        let clock = fake_clock();
        fake.put_snapshot(
            "vol-1",
            10,
            SnapshotState::Completed,
            &ledger_tags("db", 0, "data", 1),
        );
        // Another group's and another volume's snapshots do not count.
        tokio::time::advance(Duration::from_secs(50)).await;
        fake.put_snapshot(
            "vol-2",
            10,
            SnapshotState::Completed,
            &ledger_tags("other", 0, "data", 1),
        );
        let metrics = Metrics::new();
        let (tx, rx) = watch::channel(false);
        let ec2: Arc<dyn Ec2> = Arc::new(fake.clone());
        let groups = vec![(
            "db".to_string(),
            vec!["data".to_string(), "wal".to_string()],
        )];
        let task = tokio::spawn(run_with_clock(
            ec2,
            groups,
            metrics.clone(),
            Duration::from_secs(60),
            rx,
            clock,
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(age(&metrics, "data"), Some(50.0));
        assert_eq!(age(&metrics, "wal"), None, "no snapshot: no series");

        // The age grows between snapshots...
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(age(&metrics, "data"), Some(110.0));

        // ...a pending snapshot does not reset it, a completed one does.
        fake.set_timings(Timings {
            snapshot: Duration::from_secs(3600),
            ..Timings::default()
        });
        fake.put_snapshot(
            "vol-1",
            10,
            SnapshotState::Pending,
            &ledger_tags("db", 0, "data", 2),
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(age(&metrics, "data"), Some(170.0));
        fake.put_snapshot(
            "vol-1",
            10,
            SnapshotState::Completed,
            &ledger_tags("db", 0, "data", 3),
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Made at t=171, read at t=230.
        assert_eq!(age(&metrics, "data"), Some(59.0));
        assert_eq!(
            fake.count("DescribeSnapshots"),
            8,
            "one look-up per volume per round"
        );

        tx.send(true).expect("the task is running");
        task.await.expect("the task stops on shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_interval_checks_once() {
        let fake = FakeEc2::new();
        fake.put_snapshot(
            "vol-1",
            10,
            SnapshotState::Completed,
            &ledger_tags("db", 0, "data", 1),
        );
        let metrics = Metrics::new();
        let (_tx, rx) = watch::channel(false);
        let groups = vec![("db".to_string(), vec!["data".to_string()])];
        run(
            Arc::new(fake.clone()),
            groups,
            metrics.clone(),
            Duration::ZERO,
            rx,
        )
        .await;
        assert_eq!(fake.count("DescribeSnapshots"), 1);
        assert!(age(&metrics, "data").is_some());
    }
}
