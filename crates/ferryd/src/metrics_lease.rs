//! The lease metrics of replicas on one queue (`[lease] table`): the leases this replica holds, and how
//! many it acquired, lost and stole after their expiry. They are also the keeper's [`LeaseEvents`].

use ferry_state_machine::lease_keeper::LeaseEvents;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{labels, reg, Counters, Labels, Metrics};

/// The metrics of this module, registered in the one registry.
pub(super) struct LeaseMetrics {
    held: Family<Labels<1>, Gauge>,
    acquired: Counters<1>,
    lost: Counters<1>,
    stolen: Counters<1>,
}

impl LeaseMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        Self {
            held: reg(
                r,
                ("ferry_leases_held", "Slot leases this replica holds now (1 or 0), by lease (group/slot)"),
                None,
            ),
            acquired: reg(
                r,
                ("ferry_lease_acquisitions", "Slot leases this replica acquired, by lease"),
                None,
            ),
            lost: reg(
                r,
                (
                    "ferry_leases_lost",
                    "Slot leases this replica lost while working under them (taken by another, or not renewed in time), by lease",
                ),
                None,
            ),
            stolen: reg(
                r,
                (
                    "ferry_leases_stolen",
                    "Slot leases this replica took from an owner whose record had stopped changing for its full duration, by lease",
                ),
                None,
            ),
        }
    }
}

impl LeaseEvents for Metrics {
    fn acquired(&self, key: &str, stolen: bool) {
        let l = labels([("lease", key)]);
        let m = &self.inner.lease;
        m.acquired.get_or_create(&l).inc();
        if stolen {
            m.stolen.get_or_create(&l).inc();
        }
        m.held.get_or_create(&l).set(1);
    }

    fn lost(&self, key: &str) {
        let l = labels([("lease", key)]);
        self.inner.lease.lost.get_or_create(&l).inc();
        self.inner.lease.held.get_or_create(&l).set(0);
    }

    fn released(&self, key: &str) {
        self.inner
            .lease
            .held
            .get_or_create(&labels([("lease", key)]))
            .set(0);
    }
}
