//! Validation of the configuration: every value checked once at start-up, every error naming its key.

use super::{Config, ConfigError, GroupConfig};

/// An error from a section's own validation, whose message starts with the dotted key when it knows it.
fn invalid_dotted(section: &str, message: String) -> ConfigError {
    match message.split_once(": ") {
        Some((key, rest)) if key.starts_with(section) => invalid(key, rest),
        _ => invalid(section, message),
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.queue.url.as_str();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.split('/').count() < 5
        {
            return Err(invalid("queue.url", format!("{url:?} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")));
        }
        if !(2..=43_200).contains(&self.queue.visibility_timeout_secs) {
            return Err(invalid(
                "queue.visibility_timeout_secs",
                "must be 2..=43200",
            ));
        }
        if self.groups.is_empty() {
            return Err(invalid(
                "groups",
                "at least one [[groups]] entry is required",
            ));
        }
        let d = &self.daemon;
        if !(1..=100_000).contains(&d.max_in_flight) {
            return Err(invalid("daemon.max_in_flight", "must be 1..=100000"));
        }
        if !(1..=4096).contains(&d.workers) {
            return Err(invalid("daemon.workers", "must be 1..=4096"));
        }
        if !(0.05..=0.9).contains(&d.heartbeat_fraction) {
            return Err(invalid(
                "daemon.heartbeat_fraction",
                "must be between 0.05 and 0.9",
            ));
        }
        if d.poll_min_ms == 0 || d.poll_max_ms < d.poll_min_ms {
            return Err(invalid(
                "daemon.poll_min_ms",
                "must be positive and at most daemon.poll_max_ms",
            ));
        }
        if !(1..=1000).contains(&d.read_pace.burst)
            || !(0.01..=100.0).contains(&d.read_pace.per_sec)
        {
            return Err(invalid(
                "daemon.read_pace",
                "burst must be 1..=1000 and per_sec 0.01..=100",
            ));
        }
        if d.hooks_refresh_secs != 0 && !(60..=86_400).contains(&d.hooks_refresh_secs) {
            return Err(invalid(
                "daemon.hooks_refresh_secs",
                "must be 0 (off) or 60..=86400",
            ));
        }
        if d.skip_precopy_after_queue_secs > 86_400 {
            return Err(invalid(
                "daemon.skip_precopy_after_queue_secs",
                "must be 0 (never skip) to 86400",
            ));
        }
        if d.startup_settle_secs > 300 {
            return Err(invalid(
                "daemon.startup_settle_secs",
                "must be 0 (read at once) to 300",
            ));
        }
        if self.gc.keep_generations == 0 {
            return Err(invalid(
                "gc.keep_generations",
                "must be at least 1: the newest generation is always kept",
            ));
        }
        if !(self.gc.min_age_days.is_finite() && (0.0..=36_500.0).contains(&self.gc.min_age_days)) {
            return Err(invalid("gc.min_age_days", "must be 0..=36500"));
        }
        if self.gc.keep_recovery_points == 0 {
            return Err(invalid(
                "gc.keep_recovery_points",
                "must be at least 1: the newest completed recovery point is always kept",
            ));
        }
        if self.gc.recovery_point_max_age_secs == 0 {
            return Err(invalid(
                "gc.recovery_point_max_age_secs",
                "must be positive",
            ));
        }
        if let Some(role) = &self.gc.delete_role_arn {
            if !is_role_arn(role) {
                return Err(invalid(
                    "gc.delete_role_arn",
                    format!("{role:?} is not an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)"),
                ));
            }
        }
        if !(1..=20).contains(&self.aws.max_attempts) {
            return Err(invalid("aws.max_attempts", "must be 1..=20"));
        }
        for (op, l) in &self.aws.rate_limits {
            let key = format!("aws.rate_limits.\"{op}\"");
            if !ferry_state_machine::budget::known_actions().any(|k| k == op) {
                let known: Vec<&str> = ferry_state_machine::budget::known_actions().collect();
                return Err(invalid(
                    key,
                    format!(
                        "{op:?} is not an action ferry limits; known: {}",
                        known.join(", ")
                    ),
                ));
            }
            if l.burst == 0 || !(0.01..=10_000.0).contains(&l.per_sec) {
                return Err(invalid(
                    key,
                    "burst must be at least 1 and per_sec 0.01..=10000",
                ));
            }
        }
        self.metrics
            .validate()
            .map_err(|m| invalid_dotted("metrics", m))?;
        if let Some(w) = &self.webhook {
            w.validate().map_err(|m| invalid_dotted("webhook", m))?;
        }
        self.lease
            .validate()
            .map_err(|m| invalid_dotted("lease", m))?;
        if self.aws.attempt_timeout_secs < 25 {
            return Err(invalid(
                "aws.attempt_timeout_secs",
                "must be at least 25: it also bounds SQS's 20 s long poll",
            ));
        }
        for (i, g) in self.groups.iter().enumerate() {
            validate_group(i, g)?;
            if self.groups[..i].iter().any(|o| o.name == g.name) {
                return Err(invalid(
                    format!("groups[{i}].name"),
                    format!("group {:?} is listed twice", g.name),
                ));
            }
        }
        Ok(())
    }
}

const VOLUME_TYPES: &[&str] = &["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

fn validate_group(i: usize, g: &GroupConfig) -> Result<(), ConfigError> {
    let key = |k: &str| format!("groups[{i}].{k}");
    if g.name.is_empty() || g.name.len() > 255 {
        return Err(invalid(key("name"), "must be 1..=255 characters"));
    }
    if let Some(e) = &g.elastic_ip {
        if !e.starts_with("eipalloc-") {
            return Err(invalid(
                key("elastic_ip"),
                format!("{e:?} is not an allocation id (eipalloc-...)"),
            ));
        }
        if !g.elastic_ips.is_empty() {
            return Err(invalid(
                key("elastic_ips"),
                "set either elastic_ip (slot 0) or elastic_ips (one per slot), not both",
            ));
        }
    }
    for (n, e) in g.elastic_ips.iter().enumerate() {
        if !e.starts_with("eipalloc-") {
            return Err(invalid(
                format!("groups[{i}].elastic_ips[{n}]"),
                format!("{e:?} is not an allocation id (eipalloc-...)"),
            ));
        }
        if g.elastic_ips[..n].contains(e) {
            return Err(invalid(
                format!("groups[{i}].elastic_ips[{n}]"),
                format!("{e:?} is listed twice: each slot needs its own address"),
            ));
        }
    }
    if g.snapshot_timeout_secs == 0 {
        return Err(invalid(key("snapshot_timeout_secs"), "must be positive"));
    }
    // A week: beyond it a recovery point bounds nothing an operator would accept.
    if g.recovery_point_interval_secs > 7 * 86_400 {
        return Err(invalid(
            key("recovery_point_interval_secs"),
            format!(
                "{} is above 604800 (a week); 0 turns recovery points off",
                g.recovery_point_interval_secs
            ),
        ));
    }
    // The hook's global timeout is at most 48 h: a later restore could never happen.
    if !(1..=172_800).contains(&g.restore_latest_after_secs) {
        return Err(invalid(
            key("restore_latest_after_secs"),
            format!(
                "{} is outside 1..=172800 (the lifecycle hook's global timeout is at most 48 h)",
                g.restore_latest_after_secs
            ),
        ));
    }
    if g.volumes.is_empty() {
        return Err(invalid(
            key("volumes"),
            "at least one [[groups.volumes]] entry is required",
        ));
    }
    for (j, v) in g.volumes.iter().enumerate() {
        let vkey = |k: &str| format!("groups[{i}].volumes[{j}].{k}");
        let name_ok = !v.name.is_empty()
            && v.name.len() <= 64
            && v.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(invalid(
                vkey("name"),
                format!("{:?} must be 1..=64 of [A-Za-z0-9_-]", v.name),
            ));
        }
        if !valid_device(&v.device) {
            return Err(invalid(
                vkey("device"),
                format!(
                    "{:?} is not a device name like /dev/sdf or /dev/xvdf",
                    v.device
                ),
            ));
        }
        if !(1..=65_536).contains(&v.size_gib) {
            return Err(invalid(
                vkey("size_gib"),
                format!("{} is outside 1..=65536", v.size_gib),
            ));
        }
        if !VOLUME_TYPES.contains(&v.volume_type.as_str()) {
            return Err(invalid(
                vkey("type"),
                format!(
                    "{:?} is not one of {}",
                    v.volume_type,
                    VOLUME_TYPES.join(", ")
                ),
            ));
        }
        if v.kms_key_id.is_some() && v.encrypted != Some(true) {
            // EC2 refuses a CreateVolume with a KmsKeyId but without Encrypted=true.
            return Err(invalid(
                vkey("kms_key_id"),
                "needs encrypted = true (EC2 refuses a KmsKeyId without it: InvalidParameterDependency)",
            ));
        }
        if g.volumes[..j].iter().any(|o| o.name == v.name) {
            return Err(invalid(
                vkey("name"),
                format!("{:?} is listed twice", v.name),
            ));
        }
        if g.volumes[..j].iter().any(|o| o.device == v.device) {
            return Err(invalid(
                vkey("device"),
                format!("{:?} is used twice", v.device),
            ));
        }
    }
    Ok(())
}

fn valid_device(d: &str) -> bool {
    let rest = d
        .strip_prefix("/dev/sd")
        .or_else(|| d.strip_prefix("/dev/xvd"));
    rest.is_some_and(|r| !r.is_empty() && r.len() <= 2 && r.chars().all(|c| c.is_ascii_lowercase()))
}

/// Whether `s` is an IAM role ARN: `arn:<partition>:iam::<12 digits>:role/<path and name>`.
fn is_role_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|n| !n.is_empty() && !n.ends_with('/')))
}
