//! The storm: every group of a fleet fails over to the other AZ at once, under per-action API throttling, with
//! the real ferryd and a workload writing to every group; measured from the emulator's call log, its
//! lifecycle actions and ferryd's `/proc/<pid>/status`. Used by `ferry-bench-storm` and the `e2e_storm` test.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::arrival;
use crate::daemon::{Ferryd, Logs};
use crate::emulator::Emulator;
use crate::fleet::Fleet;
use crate::workload::Writer;
use crate::world::{WorldOptions, AZ_A, AZ_B};

/// The access key id ferryd signs with in the storm: its calls are counted by it.
pub const FERRYD_KEY: &str = "ferryd";
/// The harness's access key id (the emulator's default test key): exempt from throttling.
pub const HARNESS_KEY: &str = "testing";

/// The emulator's timings in the storm, in seconds: a full snapshot (the pre-copy) and an incremental one
/// (the final delta), volume creation, attach, detach. Termination releases volumes at once.
pub const SNAPSHOT_S: f64 = 2.0;
/// The final delta's (incremental snapshot's) pending time.
pub const INCREMENTAL_S: f64 = 0.5;
const VOLUME_CREATE_S: f64 = 0.3;
const ATTACH_S: f64 = 0.2;
const DETACH_S: f64 = 0.2;

/// The actions ferryd can be given `[aws.rate_limits]` for (its `budget.rs`).
const FERRY_ACTIONS: &[&str] = &[
    "ec2:DescribeAddresses",
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceStatus",
    "ec2:DescribeSnapshots",
    "ec2:DescribeVolumes",
    "ec2:AssociateAddress",
    "ec2:AttachVolume",
    "ec2:DetachVolume",
    "ec2:CreateSnapshot",
    "ec2:CreateSnapshots",
    "ec2:CreateVolume",
    "ec2:DeleteSnapshot",
    "ec2:DeleteVolume",
    "ec2:CreateTags",
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLifecycleHooks",
    "autoscaling:RecordLifecycleActionHeartbeat",
];

/// What a storm is run with.
#[derive(Debug, Clone)]
pub struct StormOptions {
    /// How many groups fail over at once.
    pub groups: usize,
    /// The emulator's bucket of every EC2 and Auto Scaling action: (burst, per second).
    pub bucket: (u32, u32),
    /// Throttle SQS's actions with the same buckets too.
    pub throttle_sqs: bool,
    /// Give ferryd `[aws.rate_limits]` equal to the emulator's buckets (otherwise its defaults apply).
    pub match_ferry_limits: bool,
    /// How often each group's workload writes.
    pub write_every: Duration,
    /// How long the storm may take before the groups still on their way are counted lost.
    pub timeout: Duration,
}

impl StormOptions {
    /// The defaults for `groups` groups: buckets of burst 10, 5/s; the workloads together write about 100
    /// times a second (every `10 ms × groups`, at least every 5 ms).
    pub fn new(groups: usize) -> StormOptions {
        let n = u64::try_from(groups.max(1)).unwrap_or(u64::MAX);
        StormOptions {
            groups,
            bucket: (10, 5),
            throttle_sqs: false,
            match_ferry_limits: false,
            write_every: Duration::from_millis(n.saturating_mul(10).max(5)),
            timeout: Duration::from_secs(300 + 5 * n),
        }
    }
}

/// What a storm measured.
#[derive(Debug, Clone, Default)]
pub struct StormReport {
    /// How many groups failed over.
    pub groups: usize,
    /// From firing the terminates to the last group InService with its data and EIP (or the timeout).
    pub wall: Duration,
    /// How long the first boots of every group took (not part of the storm).
    pub first_boot: Duration,
    /// How long firing every terminate took.
    pub fired_in: Duration,
    /// ferryd's API calls during the storm (throttled ones included), as the emulator logged them.
    pub api_calls: u64,
    /// How many of them were throttled.
    pub throttled: u64,
    /// Per `service:Action`: (calls, throttled).
    pub actions: BTreeMap<String, (u64, u64)>,
    /// ferryd's peak resident set size (VmHWM), in KiB.
    pub peak_rss_kib: u64,
    /// The groups that did not arrive whole, and why.
    pub lost: Vec<(String, String)>,
    /// The acknowledged writes missing from replacement volumes, summed over the groups.
    pub lost_writes: u64,
    /// The last acknowledged writes, summed over the groups.
    pub acked: u64,
}

impl StormReport {
    /// The result line: `storm: groups=G wall_s=W api_calls=N throttled=T peak_rss_mb=M lost=L`.
    pub fn line(&self) -> String {
        format!(
            "storm: groups={} wall_s={:.1} api_calls={} throttled={} peak_rss_mb={:.1} lost={}",
            self.groups,
            self.wall.as_secs_f64(),
            self.api_calls,
            self.throttled,
            self.peak_rss_kib as f64 / 1024.0,
            self.lost.len()
        )
    }
}

/// The emulator's throttle for the storm: one bucket per EC2 and Auto Scaling action (and SQS's if asked),
/// the harness exempt.
pub fn throttle(opts: &StormOptions) -> Value {
    let (burst, per_sec) = opts.bucket;
    let spec = json!({"burst": burst, "per_sec": per_sec});
    let mut t = json!({"ec2:*": spec, "autoscaling:*": spec, "exempt": [HARNESS_KEY]});
    if opts.throttle_sqs {
        t["sqs:*"] = spec;
    }
    json!({ "throttle": t })
}

fn rate_limits(opts: &StormOptions) -> String {
    if !opts.match_ferry_limits {
        return String::new();
    }
    let (burst, per_sec) = opts.bucket;
    let mut s = String::from("[aws.rate_limits]\n");
    for a in FERRY_ACTIONS {
        s.push_str(&format!(
            "\"{a}\" = {{ burst = {burst}, per_sec = {per_sec} }}\n"
        ));
    }
    s
}

/// ferryd's peak resident set size in KiB (`VmHWM` in `/proc/<pid>/status`).
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/{pid}/status"))
}

/// Runs one storm: a fleet of `opts.groups`, ferryd from `bin` (config and log in `dir`), first boots in AZ
/// a, workloads, then every instance terminated at once with its replacement placed in AZ b, under throttling.
pub async fn run(
    emu: &Emulator,
    bin: &Path,
    dir: &Path,
    opts: &StormOptions,
    progress: &dyn Fn(&str),
) -> Result<StormReport> {
    let log = dir.join("ferryd.log");
    let r = storm(emu, bin, dir, &log, opts, progress).await;
    r.with_context(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "the storm failed; the end of ferryd's log ({}):\n{}",
            log.display(),
            tail.join("\n")
        )
    })
}

async fn storm(
    emu: &Emulator,
    bin: &Path,
    dir: &Path,
    log: &Path,
    opts: &StormOptions,
    progress: &dyn Fn(&str),
) -> Result<StormReport> {
    let n = opts.groups;
    emu.configure(json!({
        "snapshot_seconds": SNAPSHOT_S,
        "incremental_snapshot_seconds": INCREMENTAL_S,
        "volume_create_seconds": VOLUME_CREATE_S,
        "attach_seconds": ATTACH_S,
        "detach_seconds": DETACH_S,
    }))
    .await?;
    let fleet = Fleet::setup(emu, n, &WorldOptions::default()).await?;
    let config = fleet.config_toml(2 * n + 4, "", &rate_limits(opts));
    let env = [
        ("FERRY_LOG_FORMAT", "json"),
        ("AWS_ACCESS_KEY_ID", FERRYD_KEY),
    ];
    let mut ferryd = Ferryd::start(bin, emu, dir, &config, Logs::File(log.to_path_buf()), &env)?;
    progress(&format!(
        "{n} groups set up; ferryd {} started",
        ferryd.pid()
    ));

    // First boots in AZ a, unthrottled: not part of the measurement.
    let booting = Instant::now();
    for g in &fleet.groups {
        emu.place(&g.name, Some(AZ_A)).await?;
    }
    fleet.scale_all_to_one().await?;
    let deadline = booting + opts.timeout;
    let first = arrival::arrivals(emu, &fleet, &BTreeMap::new(), deadline).await?;
    if first.len() < n {
        bail!(
            "only {} of {n} groups finished their first boot",
            first.len()
        );
    }
    let first_boot = booting.elapsed();
    progress(&format!(
        "first boots done in {:.1}s",
        first_boot.as_secs_f64()
    ));

    let mut writers = BTreeMap::new();
    for (group, instance) in &first {
        writers.insert(
            group.clone(),
            Writer::start_every(emu, instance, 0, opts.write_every),
        );
    }
    crate::world::wait_for(
        "every workload to write",
        Duration::from_secs(60),
        || async { Ok(writers.values().all(|w| w.acked() > 0).then_some(())) },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The storm: throttling on, every replacement placed in AZ b, every terminate fired at once.
    emu.faults(throttle(opts)).await?;
    for g in &fleet.groups {
        emu.place(&g.name, Some(AZ_B)).await?;
    }
    let since = emu.call_summary(0, Some(FERRYD_KEY)).await?["last_seq"]
        .as_u64()
        .unwrap_or(0);
    let began = Instant::now();
    let mut fire = tokio::task::JoinSet::new();
    for instance in first.values() {
        let (asg, id) = (fleet.asg.clone(), instance.clone());
        fire.spawn(async move {
            asg.terminate_instance_in_auto_scaling_group()
                .instance_id(&id)
                .should_decrement_desired_capacity(false)
                .send()
                .await
                .with_context(|| format!("terminating {id}"))
        });
    }
    while let Some(done) = fire.join_next().await {
        done.context("a terminate task panicked")??;
    }
    let fired_in = began.elapsed();
    progress(&format!(
        "{n} terminates fired in {} ms",
        fired_in.as_millis()
    ));
    let arrived = arrival::arrivals(emu, &fleet, &first, began + opts.timeout).await?;
    let wall = began.elapsed();
    progress(&format!(
        "{} of {n} groups arrived in {:.1}s",
        arrived.len(),
        wall.as_secs_f64()
    ));

    let summary = emu.call_summary(since, Some(FERRYD_KEY)).await?;
    let peak_rss_kib = peak_rss_kib(ferryd.pid())?;
    emu.faults(json!({"throttle": null})).await?;
    let mut report = StormReport {
        groups: n,
        wall,
        first_boot,
        fired_in,
        api_calls: summary["calls"].as_u64().unwrap_or(0),
        throttled: summary["throttled"].as_u64().unwrap_or(0),
        peak_rss_kib,
        ..StormReport::default()
    };
    if let Some(actions) = summary["actions"].as_object() {
        for (k, v) in actions {
            let c = |f: &str| v[f].as_u64().unwrap_or(0);
            report
                .actions
                .insert(k.clone(), (c("calls"), c("throttled")));
        }
    }
    arrival::verify(emu, &fleet, writers, &arrived, &mut report).await?;
    if ferryd.exited()? {
        bail!("ferryd exited during the storm");
    }
    Ok(report)
}
