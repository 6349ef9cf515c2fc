//! The dead-AZ metrics: recovery points taken, refused and retired, launches that waited on an unreachable
//! source, and restores of a recovery point with their loss window. They are also the launch's
//! [`SourceEvents`].

use std::time::Duration;

use ferry_snapshot::SourceEvents;
use ferry_state_machine::AttachedData;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::{add, labels, reg, Counters, FloatGauge, Labels, Metrics};

/// The metrics of this module, registered in the one registry.
pub(super) struct DrMetrics {
    points: Counters<2>,
    unreachable: Counters<2>,
    restores: Counters<1>,
    loss_window: Family<Labels<2>, FloatGauge>,
    interval: Family<Labels<1>, FloatGauge>,
}

impl DrMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        Self {
            points: reg(
                r,
                (
                    "ferry_recovery_points",
                    "Periodic recovery points, by group and outcome (taken, refused by EBS, deleted by retention)",
                ),
                None,
            ),
            unreachable: reg(
                r,
                (
                    "ferry_source_unreachable",
                    "Launches that waited restore_latest_after_secs on a source they cannot get, by policy",
                ),
                None,
            ),
            restores: reg(
                r,
                (
                    "ferry_restore_latest",
                    "Launches that restored a recovery point because the newest data was unreachable",
                ),
                None,
            ),
            loss_window: add(
                r,
                (
                    "ferry_restore_loss_window",
                    "The loss window of the last restore of a recovery point per slot",
                ),
                Some(Unit::Seconds),
                Family::default(),
            ),
            interval: add(
                r,
                (
                    "ferry_recovery_point_interval",
                    "The configured recovery_point_interval_secs per group (0: off), for the staleness alert",
                ),
                Some(Unit::Seconds),
                Family::default(),
            ),
        }
    }
}

impl Metrics {
    fn point(&self, group: &str, outcome: &str) {
        let l = labels([("group", group), ("outcome", outcome)]);
        self.inner.dr.points.get_or_create(&l).inc();
    }

    /// Exports a group's configured recovery-point interval.
    pub fn set_recovery_point_interval(&self, group: &str, interval: Duration) {
        let l = labels([("group", group)]);
        self.inner
            .dr
            .interval
            .get_or_create(&l)
            .set(interval.as_secs_f64());
    }

    /// Counts a recovery point set started.
    pub fn recovery_point_taken(&self, group: &str) {
        self.point(group, "taken");
    }

    /// Counts a recovery point EBS refused (its rate limits).
    pub fn recovery_point_refused(&self, group: &str) {
        self.point(group, "refused");
    }

    /// Counts a recovery point deleted by retention.
    pub fn recovery_point_deleted(&self, group: &str) {
        self.point(group, "deleted");
    }
}

impl SourceEvents for Metrics {
    fn source_unreachable(&self, group: &str, _instance: &str, policy: &str, _waited: Duration) {
        let l = labels([("group", group), ("policy", policy)]);
        self.inner.dr.unreachable.get_or_create(&l).inc();
    }

    fn restored_latest(
        &self,
        group: &str,
        slot: u32,
        _instance: &str,
        loss: u64,
        _attached: &[AttachedData],
    ) {
        self.inner
            .dr
            .restores
            .get_or_create(&labels([("group", group)]))
            .inc();
        let l = labels([("group", group), ("slot", &slot.to_string())]);
        #[allow(clippy::cast_precision_loss)]
        self.inner.dr.loss_window.get_or_create(&l).set(loss as f64);
    }
}
