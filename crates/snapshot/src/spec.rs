//! What ferry manages for one group: its logical volumes, its Elastic IP and its time bounds.

use std::time::Duration;

use ferry_state_machine::unreachable::SourcePolicy;

/// One logical volume of a group, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The logical name, stored in `ferry:volume`.
    pub name: String,
    /// The device name to attach at, e.g. `/dev/sdf`.
    pub device: String,
    /// Size in GiB of the first-boot volume.
    pub size_gib: i32,
    /// Volume type, e.g. `gp3`.
    pub volume_type: String,
    /// Provisioned IOPS, if any.
    pub iops: Option<i32>,
    /// Provisioned throughput (gp3), if any.
    pub throughput: Option<i32>,
    /// Encrypt new volumes.
    pub encrypted: Option<bool>,
    /// The KMS key for encryption.
    pub kms_key_id: Option<String>,
}

/// One managed group, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The Auto Scaling group name.
    pub name: String,
    /// The Elastic IP allocation moved to each new instance of slot 0 (a group of one's only slot), if any.
    pub elastic_ip: Option<String>,
    /// `elastic_ips`: one Elastic IP allocation per slot, slot `n` getting the `n`th; the alternative to
    /// `elastic_ip` for a group of many. A slot past the list's end gets none.
    pub elastic_ips: Vec<String>,
    /// Whether the group can hold more than one instance (its Auto Scaling max size is over 1): then each
    /// hook works on the slot its instance holds or claims. Read from Auto Scaling when a hook runs.
    pub multi_slot: bool,
    /// The logical volumes.
    pub volumes: Vec<VolumeSpec>,
    /// How long a launch waits for another instance that stays in service with the data attached
    /// (launch-before-terminate) before it abandons.
    pub staying_holder_timeout: Duration,
    /// How long a terminate waits for its snapshots before completing anyway.
    pub snapshot_timeout: Duration,
    /// `source_unreachable = "restore-latest"` (else `"wait"`).
    pub restore_latest: bool,
    /// `restore_latest_after_secs`: with restore-latest, when a launch that cannot get the newest data restores
    /// the newest recovery point instead; with wait, when it reports the source unreachable.
    pub restore_latest_after: Duration,
    /// `recovery_point_interval_secs`; zero is off.
    pub recovery_point_interval: Duration,
    /// `root_volume_recovery_point`: take a recovery point before a root-volume replacement reboots.
    pub root_volume_recovery_point: bool,
    /// `launch_before_terminate = "handover"`: a launch fences an instance that Auto Scaling is replacing
    /// and takes its data over, instead of abandoning.
    pub handover: bool,
}

impl GroupSpec {
    /// The Elastic IP allocation of `slot`, if it has one.
    pub fn elastic_ip_of(&self, slot: u32) -> Option<&str> {
        if self.elastic_ips.is_empty() {
            return self.elastic_ip.as_deref().filter(|_| slot == 0);
        }
        self.elastic_ips
            .get(usize::try_from(slot).ok()?)
            .map(String::as_str)
    }

    /// The logical volume names, in config order.
    pub fn volume_names(&self) -> Vec<String> {
        self.volumes.iter().map(|v| v.name.clone()).collect()
    }

    /// The `source_unreachable` policy.
    pub fn source_policy(&self) -> SourcePolicy {
        if self.restore_latest {
            SourcePolicy::RestoreLatest {
                after: self.restore_latest_after,
            }
        } else {
            SourcePolicy::Wait
        }
    }

    /// How long a terminate waits for its pre-copy: `snapshot_timeout`, and under restore-latest at most
    /// `restore_latest_after`, so that the fence and the replacement's launch are not held up by a snapshot
    /// that an impaired AZ will never complete.
    pub fn terminate_snapshot_bound(&self) -> Duration {
        if self.restore_latest {
            self.snapshot_timeout.min(self.restore_latest_after)
        } else {
            self.snapshot_timeout
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(elastic_ip: Option<&str>, elastic_ips: &[&str]) -> GroupSpec {
        GroupSpec {
            name: "db".into(),
            elastic_ip: elastic_ip.map(str::to_string),
            elastic_ips: elastic_ips.iter().map(|s| (*s).to_string()).collect(),
            multi_slot: true,
            volumes: Vec::new(),
            staying_holder_timeout: Duration::from_secs(600),
            snapshot_timeout: Duration::from_secs(3600),
            restore_latest: false,
            restore_latest_after: Duration::from_secs(600),
            recovery_point_interval: Duration::ZERO,
            root_volume_recovery_point: true,
            handover: false,
        }
    }

    #[test]
    fn each_slot_has_its_own_elastic_ip_and_elastic_ip_follows_slot_zero_alone() {
        let per_slot = group(None, &["eipalloc-0", "eipalloc-1"]);
        assert_eq!(per_slot.elastic_ip_of(0), Some("eipalloc-0"));
        assert_eq!(per_slot.elastic_ip_of(1), Some("eipalloc-1"));
        assert_eq!(
            per_slot.elastic_ip_of(2),
            None,
            "a slot past the list has none"
        );
        let one = group(Some("eipalloc-x"), &[]);
        assert_eq!(one.elastic_ip_of(0), Some("eipalloc-x"));
        assert_eq!(one.elastic_ip_of(1), None);
        assert_eq!(group(None, &[]).elastic_ip_of(0), None);
    }
}
