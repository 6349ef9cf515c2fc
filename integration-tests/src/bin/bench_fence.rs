//! `ferry-bench-fence`: measures what the fence and the final delta add to a cross-AZ failover.
//!
//! For a few emulator settings it runs `--runs` (default 5) cross-AZ failovers of the real ferryd binary, with
//! a workload writing until its instance is gone, and reads the phases off the emulator's call log:
//!
//! * total: `TerminateInstanceInAutoScalingGroup` → the launch's `CompleteLifecycleAction` CONTINUE;
//! * pre-copy: terminate start → the terminate's `CompleteLifecycleAction` (that completion is the fence);
//! * fence: the terminate's completion → the final delta's `CreateSnapshot` (shutdown, detach, launch, hook);
//! * final delta: that `CreateSnapshot` → the restore's `CreateVolume`;
//! * restore+attach+EIP: `CreateVolume` → the launch's `CompleteLifecycleAction`.
//!
//! Each run starts from a reset emulator (a fresh first boot), so every pre-copy is a full snapshot and every
//! final delta an incremental one. The emulator's timings are configured delays: the numbers show ferry's
//! protocol around them (polling, call scheduling), not AWS speeds. It ends with a model of the same extra
//! cost on AWS, from assumptions.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ferry_integration_tests::calls::{param, parse_ms, tag_param};
use ferry_integration_tests::daemon::{build_ferryd, Ferryd, Logs};
use ferry_integration_tests::emulator::Emulator;
use ferry_integration_tests::scenario::{actions, in_service, Action, STEP};
use ferry_integration_tests::workload::{volume_counter, Writer};
use ferry_integration_tests::world::{wait_for, World, WorldOptions, AZ_A, AZ_B};
use serde_json::{json, Value};

/// How long the workload writes before the terminate.
const WRITE_BEFORE: Duration = Duration::from_millis(1000);

/// Emulator timings that stay the same in every setting, in seconds.
const VOLUME_CREATE_S: f64 = 0.3;
const ATTACH_S: f64 = 0.2;
const DETACH_S: f64 = 0.2;

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// One emulator setting under test.
#[derive(Debug, Clone, Copy)]
struct Setting {
    precopy_s: f64,
    delta_s: f64,
    shutdown_s: f64,
}

impl Setting {
    fn label(&self) -> String {
        format!(
            "pre-copy {:.1}s, delta {:.1}s, shutdown {:.1}s",
            self.precopy_s, self.delta_s, self.shutdown_s
        )
    }

    fn config(&self) -> Value {
        json!({
            "snapshot_seconds": self.precopy_s,
            "incremental_snapshot_seconds": self.delta_s,
            "instance_shutdown_seconds": self.shutdown_s,
            "volume_create_seconds": VOLUME_CREATE_S,
            "attach_seconds": ATTACH_S,
            "detach_seconds": DETACH_S,
        })
    }
}

const SETTINGS: [Setting; 4] = [
    Setting {
        precopy_s: 2.0,
        delta_s: 0.2,
        shutdown_s: 0.0,
    },
    Setting {
        precopy_s: 2.0,
        delta_s: 0.5,
        shutdown_s: 0.0,
    },
    Setting {
        precopy_s: 2.0,
        delta_s: 0.2,
        shutdown_s: 1.0,
    },
    Setting {
        precopy_s: 2.0,
        delta_s: 0.5,
        shutdown_s: 1.0,
    },
];

/// One failover's phases, in milliseconds, and the writes it lost.
#[derive(Debug, Clone, Copy)]
struct Run {
    total: i64,
    precopy: i64,
    fence: i64,
    delta: i64,
    restore: i64,
    lost: i64,
    acked: u64,
}

impl Run {
    fn extra(&self) -> i64 {
        self.fence + self.delta
    }
}

/// Measures the fence and the final delta of cross-AZ failovers against the emulator.
#[derive(Debug, clap::Parser)]
#[command(name = "ferry-bench-fence")]
struct Args {
    /// Cross-AZ failovers per setting.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
}

fn parse_args() -> Result<usize> {
    let args = <Args as clap::Parser>::parse();
    usize::try_from(args.runs).context("--runs")
}

/// Whether a `CompleteLifecycleAction` call completed `a` (by token, or by instance and hook).
fn completes(c: &Value, a: &Action) -> bool {
    let token = param(c, "LifecycleActionToken");
    if !token.is_empty() {
        return token == a.token;
    }
    param(c, "InstanceId") == a.instance && param(c, "LifecycleHookName") == a.hook
}

/// The time of the first successful call after `since` that `pick` accepts.
fn first_time(calls: &[Value], what: &str, pick: impl Fn(&Value) -> bool) -> Result<i64> {
    let c = calls
        .iter()
        .find(|c| c["status"] == 200 && pick(c))
        .ok_or_else(|| anyhow!("no successful {what} in the call log"))?;
    parse_ms(c["time"].as_str().unwrap_or_default())
}

/// The action of `instance` (launch or terminate).
fn action_of(all: &[Action], instance: &str, launch: bool) -> Result<Action> {
    all.iter()
        .find(|a| a.instance == instance && a.launch == launch)
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no {} action of {instance}",
                if launch { "launch" } else { "terminate" }
            )
        })
}

/// The ferry volume attached to `instance`, and the write counter on it.
async fn data_volume(emu: &Emulator, world: &World, instance: &str) -> Result<(String, u64)> {
    let vols = world.attached_volumes(instance).await?;
    let id = vols
        .first()
        .and_then(|v| v.volume_id())
        .ok_or_else(|| anyhow!("no ferry volume attached to {instance}"))?
        .to_string();
    let counter = volume_counter(emu, &id).await?;
    Ok((id, counter))
}

/// One failover from a reset emulator: first boot in AZ a, write, terminate into AZ b, measure.
async fn one_run(emu: &Emulator, world: &World) -> Result<Run> {
    emu.place(&world.group, Some(AZ_A)).await?;
    world.scale_to_one().await?;
    let m1 = in_service(world, &[]).await.context("first boot")?;
    let (_, start) = data_volume(emu, world, &m1.id).await?;
    let writer = Writer::start(emu, &m1.id, start);
    tokio::time::sleep(WRITE_BEFORE).await;

    emu.place(&world.group, Some(AZ_B)).await?;
    let since = emu.last_seq().await?;
    world.terminate(&m1.id).await?;
    let m2 = in_service(world, &[m1.id.as_str()])
        .await
        .context("the replacement")?;
    wait_for("the old instance to terminate", STEP, || async {
        Ok((world.ec2_state(&m1.id).await? == "terminated").then_some(()))
    })
    .await?;
    let (acked, _why) = writer.finished(STEP).await?;
    let (_, restored) = data_volume(emu, world, &m2.id).await?;
    if m2.az != AZ_B {
        bail!("the replacement {} is in {}, not {AZ_B}", m2.id, m2.az);
    }

    let calls: Vec<Value> = emu
        .calls(None)
        .await?
        .into_iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > since)
        .collect();
    let all = actions(emu).await?;
    let (term, launch) = (
        action_of(&all, &m1.id, false)?,
        action_of(&all, &m2.id, true)?,
    );
    let is = |c: &Value, action: &str| c["action"] == action;
    let t0 = first_time(&calls, "TerminateInstanceInAutoScalingGroup", |c| {
        is(c, "TerminateInstanceInAutoScalingGroup")
    })?;
    let t1 = first_time(&calls, "terminate CompleteLifecycleAction", |c| {
        is(c, "CompleteLifecycleAction") && completes(c, &term)
    })?;
    let t2 = first_time(&calls, "final CreateSnapshot", |c| {
        is(c, "CreateSnapshot") && tag_param(c, "ferry:reason") == Some("final")
    })?;
    let t3 = calls
        .iter()
        .filter(|c| {
            c["status"] == 200 && is(c, "CreateVolume") && !param(c, "SnapshotId").is_empty()
        })
        .filter_map(|c| parse_ms(c["time"].as_str().unwrap_or_default()).ok())
        .find(|t| *t >= t2)
        .ok_or_else(|| anyhow!("no restore CreateVolume after the final CreateSnapshot"))?;
    let t4 = first_time(&calls, "launch CompleteLifecycleAction CONTINUE", |c| {
        is(c, "CompleteLifecycleAction")
            && completes(c, &launch)
            && param(c, "LifecycleActionResult") == "CONTINUE"
    })?;
    Ok(Run {
        total: t4 - t0,
        precopy: t1 - t0,
        fence: t2 - t1,
        delta: t3 - t2,
        restore: t4 - t3,
        lost: acked as i64 - restored as i64,
        acked,
    })
}

/// Median (mean of the middle two for an even count) and max.
fn med_max(mut v: Vec<i64>) -> (i64, i64) {
    v.sort_unstable();
    let n = v.len();
    let med = match n {
        0 => 0,
        _ if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0),
        _ => (v.get(n / 2 - 1).copied().unwrap_or(0) + v.get(n / 2).copied().unwrap_or(0)) / 2,
    };
    (med, v.last().copied().unwrap_or(0))
}

fn cell(runs: &[Run], f: impl Fn(&Run) -> i64) -> String {
    let (med, max) = med_max(runs.iter().map(f).collect());
    format!("{med} / {max}")
}

async fn bench(emu: &Emulator, bin: &Path, s: Setting, n: usize) -> Result<Vec<Run>> {
    let dir = tempfile::tempdir()?;
    let mut out = Vec::new();
    for i in 1..=n {
        emu.reset().await?;
        emu.configure(s.config()).await?;
        let world = World::setup(emu, &WorldOptions::default()).await?;
        let run_dir = dir.path().join(format!("run-{i}"));
        std::fs::create_dir_all(&run_dir)?;
        let log = run_dir.join("ferryd.log");
        let ferryd = Ferryd::start(
            bin,
            emu,
            &run_dir,
            &world.config_toml(),
            Logs::File(log.clone()),
            &[("FERRY_LOG_FORMAT", "json")],
        )?;
        let r = one_run(emu, &world).await.with_context(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "{}: run {i} failed; the end of ferryd's log:\n{}",
                s.label(),
                tail.join("\n")
            )
        })?;
        drop(ferryd);
        say(&format!(
            "  {} run {i}: total {} ms, pre-copy {}, fence {}, delta {}, restore+attach+EIP {}; last acked write {}, lost {}",
            s.label(),
            r.total,
            r.precopy,
            r.fence,
            r.delta,
            r.restore,
            r.acked,
            r.lost
        ));
        out.push(r);
    }
    Ok(out)
}

fn print_model() {
    say("");
    say("AWS model (ASSUMPTIONS, not measurements):");
    say("  extra failover time of the fence and final delta ~= instance shutdown + delta_bytes / snapshot throughput");
    say("  * instance shutdown: OS shutdown + EC2 detach, typically 10-60 s (assumed)");
    say("  * snapshot throughput: ~100-200 MiB/s effective EBS snapshot upload (assumed; varies with volume type, size, block changes)");
    let delta_mib = 2.0 * 1024.0;
    let (fast, slow) = (delta_mib / 200.0, delta_mib / 100.0);
    say(&format!(
        "  worked example: 2 GiB written during the pre-copy window -> {delta_mib:.0} MiB / 200..100 MiB/s = {fast:.0}-{slow:.0} s for the final delta"
    ));
    say(&format!(
        "                  + 10-60 s shutdown -> ~{:.0}-{:.0} s extra versus restoring the pre-copy (which loses those writes)",
        10.0 + fast,
        60.0 + slow
    ));
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs = parse_args()?;
    let bin = build_ferryd(&say)?;
    say(&format!(
        "ferry-bench-fence: {runs} cross-AZ failover(s) per setting; ferryd {}",
        bin.display()
    ));
    say(&format!(
        "fixed emulator timings: volume_create {VOLUME_CREATE_S}s, attach {ATTACH_S}s, detach {DETACH_S}s; workload writes every 5 ms"
    ));
    let emu = Emulator::start()?;
    let mut results = Vec::new();
    for s in SETTINGS {
        say(&format!("setting: {}", s.label()));
        let r = bench(&emu, &bin, s, runs).await?;
        results.push((s, r));
    }

    say("");
    say(&format!(
        "results, ms, median / max over {runs} run(s) per setting (emulator delays are configured, not AWS speeds):"
    ));
    let header = [
        "setting",
        "total",
        "pre-copy",
        "fence",
        "final delta",
        "restore+attach+EIP",
        "extra = fence+delta",
        "lost writes",
    ];
    say(&format!("| {} |", header.join(" | ")));
    say(&format!(
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    ));
    for (s, r) in &results {
        let lost: i64 = r.iter().map(|x| x.lost).sum();
        say(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            s.label(),
            cell(r, |x| x.total),
            cell(r, |x| x.precopy),
            cell(r, |x| x.fence),
            cell(r, |x| x.delta),
            cell(r, |x| x.restore),
            cell(r, Run::extra),
            lost
        ));
    }
    say("");
    say("extra above the configured delays it contains (shutdown + incremental snapshot; termination detaches at once), median ms:");
    for (s, r) in &results {
        let (med, _) = med_max(r.iter().map(Run::extra).collect());
        let configured = ((s.shutdown_s + s.delta_s) * 1000.0).round() as i64;
        say(&format!(
            "  {}: extra {med} - configured {configured} = {} ms of protocol overhead (launch, SQS delivery, polling)",
            s.label(),
            med - configured
        ));
    }
    print_model();
    if results.iter().flat_map(|(_, r)| r).any(|r| r.lost != 0) {
        bail!("some failover lost acknowledged writes (see the table)");
    }
    Ok(())
}
