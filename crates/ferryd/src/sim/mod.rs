//! The storm simulation: the daemon's own stack (listener, handler, driver, executors, state machine, API
//! budget, batched reads) run on the in-process fakes in virtual time, with EC2's and Auto Scaling's
//! throttling, latencies and snapshot and volume durations modelled, while G groups fail out of one AZ at
//! once. `cargo bench -p ferryd --bench storm_sim -- --groups G` runs it (docs/performance.md).

pub mod model;
pub mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_hook_listener::{FakeQueue, ThrottledQueue};
use ferry_snapshot::fake::{FakeEc2, Timings};
use ferry_snapshot::gated::Gated;
use ferry_state_machine::budget::{default_limits, ApiBudget, Limit};
use ferry_state_machine::fake::FakeLifecycleActions;
use ferry_state_machine::gate::GatedActions;
use ferry_state_machine::Transition;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use model::{Counts, Latencies, ServiceModel};

/// What one simulation runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Groups failing out of the AZ at once.
    pub groups: usize,
    /// Volume, attachment and snapshot durations.
    pub timings: Timings,
    /// From a completed terminate to the instance's termination (EC2 detaches its volumes then).
    pub shutdown: Duration,
    /// Call latencies.
    pub latencies: Latencies,
    /// The services' own buckets per action (their throttling).
    pub service_limits: BTreeMap<String, Limit>,
    /// ferry's client-side budget (`[aws] rate_limits`).
    pub client_limits: BTreeMap<String, Limit>,
    /// The hooks' heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Give up after this much virtual time.
    pub deadline: Duration,
    /// `[daemon] workers`; `None`: the default.
    pub workers: Option<usize>,
    /// `[daemon] read_pace`; `None`: the default.
    pub read_pace: Option<Limit>,
}

impl SimConfig {
    /// The reference storm of `groups` groups: EC2's documented buckets on both sides, a 60 s full pre-copy,
    /// a 5 s incremental final delta, 2 s volume creation, 1 s attach, 10 s instance shutdown.
    pub fn new(groups: usize) -> Self {
        Self {
            groups,
            timings: Timings {
                volume_create: Duration::from_secs(2),
                attach: Duration::from_secs(1),
                detach: Duration::from_secs(1),
                snapshot: Duration::from_secs(60),
                incremental_snapshot: Some(Duration::from_secs(5)),
            },
            shutdown: Duration::from_secs(10),
            latencies: Latencies::default(),
            service_limits: default_limits(),
            client_limits: default_limits(),
            heartbeat_timeout: Duration::from_secs(3600),
            deadline: Duration::from_secs(48 * 3600),
            workers: None,
            read_pace: None,
        }
    }

    /// ferryd's configuration for the storm's groups.
    fn ferry_config(&self) -> anyhow::Result<Config> {
        let mut t = format!(
            "[queue]\nurl = \"https://sqs.us-east-1.amazonaws.com/123456789012/ferry-storm\"\n\
             visibility_timeout_secs = 300\n\n[daemon]\nmax_in_flight = {}\n\n[metrics]\nenabled = false\n",
            2 * self.groups.max(1)
        );
        for g in 0..self.groups {
            let n = world::Names::of(g);
            t.push_str(&format!(
                "\n[[groups]]\nname = \"{}\"\nelastic_ip = \"{}\"\nrecovery_point_interval_secs = 0\n\n\
                 [[groups.volumes]]\nname = \"data\"\ndevice = \"/dev/sdf\"\nsize_gib = 100\n",
                n.group, n.eip
            ));
        }
        let mut c = Config::from_toml(&t, "storm-sim")?;
        c.aws.rate_limits = self.client_limits.clone();
        if let Some(w) = self.workers {
            c.daemon.workers = w;
        }
        if let Some(p) = self.read_pace {
            c.daemon.read_pace = p;
        }
        c.validate()?;
        Ok(c)
    }
}

/// What one simulation measured.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// Groups.
    pub groups: usize,
    /// Hooks worked (a terminate and a launch per group).
    pub hooks: usize,
    /// Virtual seconds until the last group arrived.
    pub virtual_s: f64,
    /// The rate-limit floor of the same run, and the bucket that sets it.
    pub floor_s: f64,
    /// The bucket (action) that sets the floor.
    pub floor_action: String,
    /// Calls by action and outcome (EC2 and Auto Scaling as the services saw them; SQS as the queue did).
    pub calls: BTreeMap<String, Counts>,
    /// The daemon's calls before the storm (the standing hooks refresh), and how long that ran.
    pub warmup: (u64, f64),
    /// Peak resident memory of this process, in MB.
    pub peak_rss_mb: f64,
    /// The groups that did not arrive with their last acknowledged write and Elastic IP.
    pub lost: Vec<String>,
}

impl SimReport {
    /// Every call made.
    pub fn api_calls(&self) -> u64 {
        self.calls.values().map(|c| c.ok + c.throttled).sum()
    }

    /// Calls the services refused.
    pub fn throttled(&self) -> u64 {
        self.calls.values().map(|c| c.throttled).sum()
    }

    /// The summary line (docs/performance.md).
    pub fn line(&self) -> String {
        let hooks = self.hooks.max(1) as f64;
        format!(
            "storm-sim: groups={} hooks={} virtual_s={:.1} floor_s={:.1} floor_ratio={:.3} api_calls_per_hook={:.2} throttled={} peak_rss_mb={:.1} lost={}",
            self.groups,
            self.hooks,
            self.virtual_s,
            self.floor_s,
            self.virtual_s / self.floor_s.max(f64::EPSILON),
            self.api_calls() as f64 / hooks,
            self.throttled(),
            self.peak_rss_mb,
            self.lost.len()
        )
    }
}

/// The critical path of one failover in the model from its fence on: the terminate's completion, the
/// instance's shutdown, the final delta, the restore, the attach, the Elastic IP and the launch's completion,
/// each call's latency and each wait's duration plus the read that sees it end. (The pre-copy before it
/// overlaps with the other groups' calls, so it is not added to a bucket's time.) `full_final`: some
/// terminate skipped its pre-copy (a storm), so the last final snapshot may be a volume's first, full one.
fn critical_path(cfg: &SimConfig, m: &ServiceModel, full_final: bool) -> Duration {
    let t = &cfg.timings;
    let read = m.latency("ec2:DescribeVolumes");
    let calls = [
        "autoscaling:CompleteLifecycleAction",
        "ec2:CreateSnapshot",
        "ec2:CreateVolume",
        "ec2:AttachVolume",
        "ec2:AssociateAddress",
        "autoscaling:CompleteLifecycleAction",
    ];
    let waits = [
        cfg.shutdown,
        if full_final {
            t.snapshot
        } else {
            t.incremental_snapshot.unwrap_or(t.snapshot)
        },
        t.volume_create,
        t.attach,
    ];
    calls.iter().map(|op| m.latency(op)).sum::<Duration>()
        + waits.iter().map(|w| *w + read).sum::<Duration>()
}

/// The floor: per bucket, the calls it served beyond its burst divided by its refill rate, plus one critical
/// path from the fence on; the largest of these.
fn floor(
    cfg: &SimConfig,
    m: &ServiceModel,
    counts: &BTreeMap<&'static str, Counts>,
) -> (f64, String) {
    let snapshots = counts.get("ec2:CreateSnapshot").map_or(0, |c| c.ok);
    let full_final = snapshots < 2 * cfg.groups as u64;
    let path = critical_path(cfg, m, full_final).as_secs_f64();
    counts
        .iter()
        .filter_map(|(op, c)| {
            let l = m.limit(op)?;
            let beyond_burst = c.ok.saturating_sub(u64::from(l.burst)) as f64;
            Some((beyond_burst / l.per_sec + path, (*op).to_string()))
        })
        .fold((path, "critical path".to_string()), |a, b| {
            if b.0 > a.0 {
                b
            } else {
                a
            }
        })
}

/// Peak resident memory (VmHWM) of this process, in MB; 0 where /proc is not there.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs one storm. Must run on a runtime with paused time (virtual time); it takes seconds of real time.
pub async fn run(cfg: &SimConfig) -> anyhow::Result<SimReport> {
    let config = cfg.ferry_config().context("the storm's ferryd config")?;
    let ec2 = FakeEc2::new();
    ec2.set_timings(cfg.timings);
    let asg = FakeLifecycleActions::default();
    world::build(cfg.groups, &ec2, &asg, cfg.heartbeat_timeout).await;
    let model = Arc::new(ServiceModel::new(
        cfg.latencies.clone(),
        cfg.service_limits.clone(),
    ));
    let (fenced_tx, fenced_rx) = mpsc::unbounded_channel();
    world::complete_moves_the_group(&asg, fenced_tx);
    let fence = tokio::spawn(world::fence(Arc::new(ec2.clone()), fenced_rx, cfg.shutdown));
    let budget = Arc::new(ApiBudget::new(&config.aws.rate_limits()));
    let ports = crate::assemble::layer(
        Gated::with_gate(ec2.clone(), model.clone()),
        GatedActions::with_gate(asg.clone(), model.clone()),
        &budget,
        &config,
        None,
    );
    // A daemon that has run for a while: its standing hooks refresh has passed over every group once.
    let (stop_tx, stop_rx) = watch::channel(false);
    let refresh = ports
        .hook_refresh
        .as_ref()
        .map(|r| (r.spawn(stop_rx.clone()), r.cycle()));
    let warm_s = match &refresh {
        Some((_, cycle)) => {
            tokio::time::sleep(*cycle).await;
            cycle.as_secs_f64()
        }
        None => 0.0,
    };
    let warm_calls: u64 = model
        .take_counts()
        .values()
        .map(|c| c.ok + c.throttled)
        .sum();
    let metrics = Metrics::new();
    let driver = crate::assemble::driver(&config, &ports, vec![Arc::new(metrics.clone())]);
    let handler = Arc::new(crate::assemble::handler(
        &config,
        &ports,
        driver,
        &metrics,
        Vec::new(),
    ));
    let fake_queue = FakeQueue::new(
        Duration::from_secs(config.queue.visibility_timeout_secs),
        None,
    );
    for g in 0..cfg.groups {
        let n = world::Names::of(g);
        fake_queue.push(world::hook_message(&n, Transition::Terminating));
        fake_queue.push(world::hook_message(&n, Transition::Launching));
    }
    let queue = Arc::new(ThrottledQueue::new(fake_queue.clone(), budget));
    let listener = tokio::spawn(ferry_hook_listener::run(
        queue,
        handler,
        crate::assemble::listener_config(&config),
        Arc::new(metrics),
        stop_rx,
    ));

    let start = Instant::now();
    let hooks = 2 * cfg.groups;
    let mut done_at = None;
    while start.elapsed() < cfg.deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if asg.completed() >= hooks {
            done_at = Some(start.elapsed());
            break;
        }
    }
    let virtual_s = done_at.unwrap_or(cfg.deadline).as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = listener.await;
    if let Some((task, _)) = refresh {
        let _ = task.await;
    }
    fence.abort();

    let counts = model.counts();
    let (floor_s, floor_action) = floor(cfg, &model, &counts);
    let mut calls: BTreeMap<String, Counts> = counts
        .into_iter()
        .map(|(op, c)| (op.to_string(), c))
        .collect();
    let q = fake_queue.calls();
    for (op, n) in [
        ("sqs:ReceiveMessage", q.receive),
        ("sqs:DeleteMessageBatch", q.delete_batch),
        (
            "sqs:ChangeMessageVisibilityBatch",
            q.change_visibility_batch,
        ),
    ] {
        calls.insert(
            op.to_string(),
            Counts {
                ok: n as u64,
                throttled: 0,
            },
        );
    }
    Ok(SimReport {
        groups: cfg.groups,
        hooks,
        virtual_s,
        floor_s,
        floor_action,
        calls,
        warmup: (warm_calls, warm_s),
        peak_rss_mb: peak_rss_mb(),
        lost: world::lost(cfg.groups, &ec2, &asg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_small_storm_moves_every_group_with_its_last_write_and_few_calls() {
        let report = run(&SimConfig::new(40))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(report.lost, Vec::<String>::new(), "{}", report.line());
        assert_eq!(report.hooks, 80);
        let c = |op: &str| report.calls.get(op).map_or(0, |c| c.ok);
        // The protocol's own mutations, once per group: a pre-copy, a final delta, a restore, an attach and
        // an Elastic IP move; two completions.
        assert_eq!(c("ec2:CreateSnapshot"), 80, "{:?}", report.calls);
        assert_eq!(c("ec2:CreateVolume"), 40);
        assert_eq!(c("ec2:AttachVolume"), 40);
        assert_eq!(c("ec2:AssociateAddress"), 40);
        assert_eq!(c("autoscaling:CompleteLifecycleAction"), 80);
        // Reads are shared: each hook steps about ten times, yet all calls together stay near the
        // protocol's own (a failover needs 10 mutations and completions for its two hooks).
        let per_hook = report.api_calls() as f64 / report.hooks as f64;
        assert!(
            per_hook < 12.0,
            "{per_hook} calls a hook: {:?}",
            report.calls
        );
        assert_eq!(report.throttled(), 0, "{:?}", report.calls);
    }
}
