//! ferry's one typed configuration: read from TOML, overridden by `FERRY_*` variables and flags, validated once.

use std::path::Path;
use std::time::Duration;

use ferry_snapshot::{GroupSpec, VolumeSpec};
use serde::Deserialize;

#[path = "config_lease.rs"]
mod lease;
pub use lease::LeaseConfig;

/// A configuration error that names the offending key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema (the message names the key).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the key and line.
        message: String,
    },
    /// A value is invalid.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The dotted key, e.g. `groups[0].volumes[1].device`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SQS queue the lifecycle hooks notify.
    pub queue: QueueConfig,
    /// The groups ferry manages.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// Daemon settings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// AWS SDK settings.
    #[serde(default)]
    pub aws: AwsConfig,
    /// Retention of old snapshots and detached volumes (`ferryd gc`).
    #[serde(default)]
    pub gc: GcConfig,
    /// The Prometheus metrics and health endpoints.
    #[serde(default)]
    pub metrics: crate::http::MetricsConfig,
    /// The optional webhook for failover notifications.
    #[serde(default)]
    pub webhook: Option<crate::notify::WebhookConfig>,
    /// Several replicas on one queue, coordinated by a DynamoDB lease per (group, slot).
    #[serde(default)]
    pub lease: LeaseConfig,
}

/// `[queue]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue URL.
    pub url: String,
    /// The visibility timeout ferry extends running hooks' messages to, in seconds.
    #[serde(default = "default_visibility")]
    pub visibility_timeout_secs: u64,
    /// Delete messages of groups ferry does not manage (default: leave them for another consumer).
    #[serde(default)]
    pub delete_unmanaged: bool,
}

fn default_visibility() -> u64 {
    120
}

/// `[[groups]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The Auto Scaling group name.
    pub name: String,
    /// The Elastic IP allocation id moved to each new instance (of slot 0, in a group of many).
    pub elastic_ip: Option<String>,
    /// One Elastic IP allocation id per slot of a group of many: slot `n` gets the `n`th.
    #[serde(default)]
    pub elastic_ips: Vec<String>,
    /// Require the group's `ferry:managed=true` tag before touching its hooks (default true).
    #[serde(default = "yes")]
    pub require_managed_tag: bool,
    /// How long a launch waits for an instance still in service with the data (launch-before-terminate)
    /// before it abandons, in seconds.
    #[serde(default = "default_staying")]
    pub launch_before_terminate_timeout_secs: u64,
    /// How long a terminate waits for its snapshots before completing anyway, in seconds.
    #[serde(default = "default_snapshot_timeout")]
    pub snapshot_timeout_secs: u64,
    /// Periodic crash-consistent snapshots of the attached volumes, in seconds; 0 is off.
    #[serde(default = "default_recovery_interval")]
    pub recovery_point_interval_secs: u64,
    /// What a launch does when the newest data cannot be had: wait, or restore the newest recovery point.
    #[serde(default)]
    pub source_unreachable: SourceUnreachable,
    /// With `restore-latest`: how long after the launch action began it restores the newest recovery point.
    #[serde(default = "default_restore_latest_after")]
    pub restore_latest_after_secs: u64,
    /// What a launch does while another instance is still in service with the data (launch before
    /// terminate): `abandon` after `launch_before_terminate_timeout_secs`, or `handover`.
    #[serde(default)]
    pub launch_before_terminate: LaunchBeforeTerminate,
    /// Take a recovery point before a root-volume replacement (`ReplaceRootVolume` refresh) reboots.
    #[serde(default = "yes")]
    pub root_volume_recovery_point: bool,
    /// The logical volumes.
    pub volumes: Vec<VolumeConfig>,
}

fn yes() -> bool {
    true
}
fn default_staying() -> u64 {
    600
}
fn default_snapshot_timeout() -> u64 {
    6 * 3600
}
fn default_recovery_interval() -> u64 {
    300
}
fn default_restore_latest_after() -> u64 {
    600
}

/// `source_unreachable`: what a launch does when the newest data cannot be had (docs/failure-modes.md).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceUnreachable {
    /// Keep waiting within the hook's global timeout; never restore older data (zero data loss).
    #[default]
    Wait,
    /// After `restore_latest_after_secs`, restore the newest completed recovery point and record the loss.
    RestoreLatest,
}

impl SourceUnreachable {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceUnreachable::Wait => "wait",
            SourceUnreachable::RestoreLatest => "restore-latest",
        }
    }
}

/// `launch_before_terminate`: what a launch does while the old instance is still in service with the data.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchBeforeTerminate {
    /// Wait `launch_before_terminate_timeout_secs` for the old instance to leave, then ABANDON (never two
    /// copies).
    #[default]
    Abandon,
    /// When Auto Scaling shows the old instance is being replaced (an instance refresh in progress, or a
    /// maintenance policy that launches first and the group over its desired capacity): stop it (the fence),
    /// detach its data, and take the data over as at any failover.
    Handover,
}

/// `[[groups.volumes]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// The logical name, stored in the `ferry:volume` tag.
    pub name: String,
    /// The device to attach at, e.g. `/dev/sdf`.
    pub device: String,
    /// The size of the first-boot volume, in GiB.
    pub size_gib: i32,
    /// The volume type (default `gp3`).
    #[serde(rename = "type", default = "default_type")]
    pub volume_type: String,
    /// Provisioned IOPS.
    pub iops: Option<i32>,
    /// Provisioned throughput in MiB/s (gp3).
    pub throughput: Option<i32>,
    /// Encrypt new volumes.
    pub encrypted: Option<bool>,
    /// KMS key for encryption.
    pub kms_key_id: Option<String>,
}

fn default_type() -> String {
    "gp3".into()
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// `pretty` or `json`.
    pub log_format: LogFormat,
    /// Most hooks in flight at once (received and not yet ended; a waiting hook costs little).
    pub max_in_flight: usize,
    /// Steps worked at once across every hook; a hook holds one only while it steps.
    pub workers: usize,
    /// Heartbeat when this fraction of a hook's heartbeat timeout has passed.
    pub heartbeat_fraction: f64,
    /// First poll interval while waiting on AWS, in milliseconds.
    pub poll_min_ms: u64,
    /// Longest poll interval, in milliseconds.
    pub poll_max_ms: u64,
    /// How often waiting lifecycle actions are looked up without a message, in seconds (0: at start-up only).
    pub reconcile_interval_secs: u64,
    /// The pace of each kind of batched read (DescribeVolumes, DescribeSnapshots, DescribeInstances,
    /// DescribeAddresses, DescribeAutoScalingInstances, DescribeLifecycleHooks): calls a second, and how
    /// many may go at once. Every hook waiting on a kind shares its calls.
    pub read_pace: ferry_state_machine::budget::Limit,
    /// Every configured group's lifecycle hooks are read once per this many seconds in the background (at
    /// most one group a second), so that hook checks need no call (0: read on demand, kept 60 s).
    pub hooks_refresh_secs: u64,
    /// A terminate completes without its pre-copy when a `CreateSnapshot` asked now would wait longer than
    /// this for the API budget (an AZ storm), under `source_unreachable = "wait"` only (0: never).
    pub skip_precopy_after_queue_secs: u64,
    /// After a start, EC2 is read only once this many seconds have passed, so that what a crashed
    /// predecessor wrote just before is visible (EC2 is eventually consistent) and is not made twice.
    pub startup_settle_secs: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            max_in_flight: 1000,
            workers: ferry_state_machine::driver::DEFAULT_WORKERS,
            heartbeat_fraction: 0.5,
            poll_min_ms: 500,
            poll_max_ms: 15_000,
            reconcile_interval_secs: 300,
            read_pace: ferry_state_machine::loader::LoaderConfig::default().pace,
            hooks_refresh_secs: 3600,
            skip_precopy_after_queue_secs: 60,
            startup_settle_secs: 5,
        }
    }
}

/// The log format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[aws]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// The region; default from the standard AWS chain.
    pub region: Option<String>,
    /// `standard` or `adaptive` SDK retry mode.
    pub retry_mode: RetryMode,
    /// Attempts per SDK call, first included.
    pub max_attempts: u32,
    /// Timeout of one SDK call attempt, in seconds.
    pub attempt_timeout_secs: u64,
    /// Client-side token buckets per action (`"ec2:AttachVolume" = { burst = 50, per_sec = 5 }`), over the
    /// defaults just under EC2's documented account defaults.
    pub rate_limits: std::collections::BTreeMap<String, ferry_state_machine::budget::Limit>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: None,
            retry_mode: RetryMode::Standard,
            max_attempts: 5,
            attempt_timeout_secs: 30,
            rate_limits: std::collections::BTreeMap::new(),
        }
    }
}

impl AwsConfig {
    /// The token bucket of every action: the defaults, with `rate_limits` over them.
    pub fn rate_limits(
        &self,
    ) -> std::collections::BTreeMap<String, ferry_state_machine::budget::Limit> {
        let mut all = ferry_state_machine::budget::default_limits();
        all.extend(self.rate_limits.iter().map(|(k, v)| (k.clone(), *v)));
        all
    }
}

/// The SDK's retry mode.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RetryMode {
    /// Exponential backoff with jitter.
    Standard,
    /// Standard plus a client-side rate limiter that learns from throttling.
    Adaptive,
}

/// `[gc]`: what `ferryd gc` keeps of old snapshots and detached volumes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// The newest generations kept per (group, slot, volume), whatever their age.
    pub keep_generations: u64,
    /// Anything younger than this many days is kept, whatever its generation (may be fractional); not
    /// periodic recovery points, which follow the two keys below.
    pub min_age_days: f64,
    /// The newest completed periodic recovery points kept per (group, slot, volume).
    pub keep_recovery_points: u64,
    /// Periodic recovery points older than this many seconds are deleted (never the newest completed one).
    pub recovery_point_max_age_secs: u64,
    /// The IAM role every delete of retention is made with (`ferryd gc` and the daemon's recovery-point
    /// retention), assumed from ferryd's own credentials; `None` deletes with ferryd's own role.
    pub delete_role_arn: Option<String>,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            keep_generations: 3,
            min_age_days: 7.0,
            keep_recovery_points: 24,
            recovery_point_max_age_secs: 86_400,
            delete_role_arn: None,
        }
    }
}

impl GcConfig {
    /// `min_age_days` in seconds.
    pub fn min_age_secs(&self) -> i64 {
        // Validated to 0..=36500 days, so this fits.
        #[allow(clippy::cast_possible_truncation)]
        let secs = (self.min_age_days * 86_400.0).round() as i64;
        secs
    }

    /// The retention policy `ferryd gc` and the daemon's recovery-point retention share.
    pub fn policy(&self) -> crate::retention::Policy {
        crate::retention::Policy {
            keep_generations: self.keep_generations,
            min_age_secs: self.min_age_secs(),
            keep_recovery_points: self.keep_recovery_points,
            recovery_point_max_age_secs: i64::try_from(self.recovery_point_max_age_secs)
                .unwrap_or(i64::MAX),
        }
    }
}

impl Config {
    /// Reads and parses a TOML file (no validation).
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_toml(&text, &p)
    }

    /// Parses TOML text read from `origin` (named in errors; no validation).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// The group specs the executors work from.
    pub fn group_specs(&self) -> Vec<GroupSpec> {
        self.groups.iter().map(GroupConfig::spec).collect()
    }
}

impl GroupConfig {
    /// The spec the executors work from (`multi_slot` is set per hook, from the group's maximum size).
    pub fn spec(&self) -> GroupSpec {
        let g = self;
        GroupSpec {
            name: g.name.clone(),
            elastic_ip: g.elastic_ip.clone(),
            elastic_ips: g.elastic_ips.clone(),
            multi_slot: false,
            staying_holder_timeout: Duration::from_secs(g.launch_before_terminate_timeout_secs),
            snapshot_timeout: Duration::from_secs(g.snapshot_timeout_secs),
            restore_latest: g.source_unreachable == SourceUnreachable::RestoreLatest,
            restore_latest_after: Duration::from_secs(g.restore_latest_after_secs),
            recovery_point_interval: Duration::from_secs(g.recovery_point_interval_secs),
            root_volume_recovery_point: g.root_volume_recovery_point,
            handover: g.launch_before_terminate == LaunchBeforeTerminate::Handover,
            volumes: g
                .volumes
                .iter()
                .map(|v| VolumeSpec {
                    name: v.name.clone(),
                    device: v.device.clone(),
                    size_gib: v.size_gib,
                    volume_type: v.volume_type.clone(),
                    iops: v.iops,
                    throughput: v.throughput,
                    encrypted: v.encrypted,
                    kms_key_id: v.kms_key_id.clone(),
                })
                .collect(),
        }
    }
}

#[path = "config_validate.rs"]
mod validate;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
