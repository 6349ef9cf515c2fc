//! `[lease]`: several ferryd replicas on one queue, each (group, slot) held by one of them at a time
//! through a lease in a DynamoDB table. No table: one ferryd per queue, with in-process locks.

use std::time::Duration;

use ferry_state_machine::lease::LeaseTiming;
use ferry_state_machine::lease_keeper::KeeperTiming;
use serde::Deserialize;

/// `[lease]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// The DynamoDB table (String partition key `key`); none: no lease, one ferryd per queue.
    pub table: Option<String>,
    /// How long a lease record must stay unchanged before another replica may take it.
    pub duration_secs: u64,
    /// How often the holder renews it.
    pub renew_secs: u64,
    /// How long before `duration_secs` the holder stops acting under a lease it could not renew.
    pub safety_secs: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            table: None,
            duration_secs: 20,
            renew_secs: 5,
            safety_secs: 4,
        }
    }
}

impl LeaseConfig {
    /// Checks the values; the message starts with the dotted key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.table {
            let ok = (3..=255).contains(&t.len())
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                return Err(format!(
                    "lease.table: {t:?} is not a DynamoDB table name (3..=255 of A-Z a-z 0-9 _ - .)"
                ));
            }
        }
        if !(3..=600).contains(&self.duration_secs) {
            return Err("lease.duration_secs: must be 3..=600".into());
        }
        if self.safety_secs == 0 || self.safety_secs * 2 > self.duration_secs {
            return Err(format!(
                "lease.safety_secs: must be 1..={} (at most half of duration_secs)",
                self.duration_secs / 2
            ));
        }
        if self.renew_secs == 0 || self.renew_secs + self.safety_secs >= self.duration_secs {
            return Err(format!(
                "lease.renew_secs: must be 1..{} (a renewal must land before duration_secs - safety_secs)",
                self.duration_secs - self.safety_secs
            ));
        }
        Ok(())
    }

    /// The lease timing.
    pub fn timing(&self) -> LeaseTiming {
        LeaseTiming {
            duration: Duration::from_secs(self.duration_secs),
            safety: Duration::from_secs(self.safety_secs),
        }
    }

    /// The keeper's timing: renew every `renew_secs`; a replica kept out looks again at least every
    /// renewal period.
    pub fn keeper_timing(&self) -> KeeperTiming {
        KeeperTiming {
            renew_every: Duration::from_secs(self.renew_secs),
            poll_max: Duration::from_secs(self.renew_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_each_bad_value_names_its_key() {
        assert_eq!(LeaseConfig::default().validate(), Ok(()));
        let with = |f: fn(&mut LeaseConfig)| {
            let mut c = LeaseConfig {
                table: Some("ferry-leases".into()),
                ..LeaseConfig::default()
            };
            f(&mut c);
            c.validate()
        };
        assert_eq!(with(|_| {}), Ok(()));
        for (bad, key) in [
            (with(|c| c.table = Some("a b".into())), "lease.table"),
            (with(|c| c.duration_secs = 2), "lease.duration_secs"),
            (with(|c| c.safety_secs = 11), "lease.safety_secs"),
            (with(|c| c.safety_secs = 0), "lease.safety_secs"),
            (with(|c| c.renew_secs = 16), "lease.renew_secs"),
            (with(|c| c.renew_secs = 0), "lease.renew_secs"),
        ] {
            let msg = bad.unwrap_err();
            assert!(msg.starts_with(key), "{msg}");
        }
    }
}
