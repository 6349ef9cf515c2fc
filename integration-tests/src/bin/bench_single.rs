//! `ferry-bench-single`: one cross-AZ failover with every emulated duration zero (snapshots, volume creation,
//! attach, detach and shutdown are instant), and ferry's wall time over the critical-path floor.
//!
//! * wall: from the harness's `TerminateInstanceInAutoScalingGroup` arriving at the emulator to the answer of
//!   ferryd's `CompleteLifecycleAction` CONTINUE of the launch (call-log `time` + `duration_ms`);
//! * floor: the sum of the latencies (`duration_ms`) of the calls that depend on each other in sequence, each
//!   the first successful call of its kind after the previous one of the chain, from the same call log:
//!   the terminate; for the terminate hook `DescribeAutoScalingInstances` (verify), `DescribeVolumes`
//!   (resolve), `CreateSnapshot(s)` (pre-copy), `DescribeSnapshots` (completed), `CompleteLifecycleAction`
//!   (the fence); for the launch hook `DescribeAutoScalingInstances`, `DescribeVolumes` (the fenced volume),
//!   `CreateSnapshot` (final delta), `DescribeSnapshots`, `CreateVolume`, `DescribeVolumes` (available),
//!   `AttachVolume`, `DescribeVolumes` (attached), `AssociateAddress`, `DescribeAddresses` (verified),
//!   `CompleteLifecycleAction` CONTINUE. A step ferryd did not call is left out of the floor. SQS delivery
//!   is not counted (the long poll is already waiting when the message is sent).
//!
//! `--runs N` (default 3) repeats it from a reset emulator; medians are reported; `--calls` lists every call
//! of each failover. The last line is
//! `single: wall_ms=W floor_ms=F ratio=R`.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ferry_integration_tests::calls::{median, param, parse_ms};
use ferry_integration_tests::daemon::{build_ferryd, Ferryd, Logs};
use ferry_integration_tests::emulator::Emulator;
use ferry_integration_tests::scenario::{in_service, STEP};
use ferry_integration_tests::storm::FERRYD_KEY;
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, World, WorldOptions, AZ_A, AZ_B};
use serde_json::{json, Value};

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// The dependent chain, in order: (action, what it is for).
const CHAIN: &[(&str, &str)] = &[
    (
        "TerminateInstanceInAutoScalingGroup",
        "harness: the terminate",
    ),
    (
        "DescribeAutoScalingInstances",
        "terminate: verify the instance",
    ),
    ("DescribeVolumes", "terminate: resolve its volumes"),
    ("CreateSnapshot*", "terminate: pre-copy"),
    ("DescribeSnapshots", "terminate: pre-copy completed"),
    ("CompleteLifecycleAction", "terminate: CONTINUE (the fence)"),
    (
        "DescribeAutoScalingInstances",
        "launch: verify the instance",
    ),
    ("DescribeVolumes", "launch: the fenced volume"),
    ("CreateSnapshot*", "launch: final delta"),
    ("DescribeSnapshots", "launch: final delta completed"),
    ("CreateVolume", "launch: restore"),
    ("DescribeVolumes", "launch: volume available"),
    ("AttachVolume", "launch: attach"),
    ("DescribeVolumes", "launch: attached"),
    ("AssociateAddress", "launch: move the EIP"),
    ("DescribeAddresses", "launch: EIP verified"),
    ("CompleteLifecycleAction", "launch: CONTINUE"),
];

fn matches(c: &Value, action: &str) -> bool {
    let got = c["action"].as_str().unwrap_or_default();
    c["status"] == 200
        && match action.strip_suffix('*') {
            Some(prefix) => got.starts_with(prefix),
            None => got == action,
        }
}

fn duration_ms(c: &Value) -> f64 {
    c["duration_ms"].as_f64().unwrap_or(0.0)
}

/// One failover measured, in ms.
struct Measured {
    /// From the terminate's arrival to the launch CONTINUE's answer.
    wall: f64,
    /// The sum of the chain's latencies.
    floor: f64,
    /// The chain's calls found: (what, latency).
    chain: Vec<(&'static str, f64)>,
    /// Every call of the failover: (ms since the terminate, who, action, latency).
    calls: Vec<(f64, String, String, f64)>,
}

/// Measures one failover from its calls (the harness's and ferryd's, in call-log order).
fn measure(calls: &[Value]) -> Result<Measured> {
    let mut from = 0;
    let (mut floor, mut found, mut start, mut end) = (0.0, Vec::new(), None, None);
    for (i, (action, what)) in CHAIN.iter().enumerate() {
        let last = i + 1 == CHAIN.len();
        let hit = calls.iter().enumerate().skip(from).find(|(_, c)| {
            matches(c, action)
                && (i == 0 || c["access_key"] == FERRYD_KEY)
                && (!last || param(c, "LifecycleActionResult") == "CONTINUE")
        });
        let Some((at, c)) = hit else {
            if i == 0 || last {
                bail!("no {action} ({what}) in the call log");
            }
            continue;
        };
        let t = parse_ms(c["time"].as_str().unwrap_or_default())? as f64;
        if i == 0 {
            start = Some(t);
        }
        if last {
            end = Some(t + duration_ms(c));
        }
        floor += duration_ms(c);
        found.push((*what, duration_ms(c)));
        from = at + 1;
    }
    let wall = end
        .zip(start)
        .map(|(e, s)| e - s)
        .ok_or_else(|| anyhow!("no chain"))?;
    let mut all = Vec::new();
    for c in calls {
        let t = parse_ms(c["time"].as_str().unwrap_or_default())? as f64;
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        all.push((
            t - start.unwrap_or(t),
            s("access_key"),
            s("action"),
            duration_ms(c),
        ));
    }
    Ok(Measured {
        wall,
        floor,
        chain: found,
        calls: all,
    })
}

async fn one_run(emu: &Emulator, bin: &Path, dir: &Path) -> Result<Measured> {
    emu.reset().await?;
    emu.configure(json!({
        "snapshot_seconds": 0.0, "incremental_snapshot_seconds": 0.0, "volume_create_seconds": 0.0,
        "attach_seconds": 0.0, "detach_seconds": 0.0, "instance_shutdown_seconds": 0.0,
    }))
    .await?;
    let world = World::setup(emu, &WorldOptions::default()).await?;
    let log = dir.join("ferryd.log");
    let env = [
        ("FERRY_LOG_FORMAT", "json"),
        ("AWS_ACCESS_KEY_ID", FERRYD_KEY),
    ];
    let _ferryd = Ferryd::start(bin, emu, dir, &world.config_toml(), Logs::File(log), &env)?;
    emu.place(&world.group, Some(AZ_A)).await?;
    world.scale_to_one().await?;
    let m1 = in_service(&world, &[]).await.context("first boot")?;
    let writer = Writer::start(emu, &m1.id, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Let the first boot's hook finish its last calls (the message delete) before the failover.
    tokio::time::sleep(Duration::from_millis(500)).await;
    emu.place(&world.group, Some(AZ_B)).await?;
    let since = emu.last_seq().await?;
    world.terminate(&m1.id).await?;
    let m2 = in_service(&world, &[m1.id.as_str()])
        .await
        .context("the replacement")?;
    let (acked, _) = writer.finished(STEP).await?;
    check_holds(emu, &world, &m2.id, acked).await?;
    wait_for("the EIP on the replacement", STEP, || async {
        Ok((world.eip_instance().await?.as_deref() == Some(m2.id.as_str())).then_some(()))
    })
    .await?;
    let calls: Vec<Value> = emu
        .calls(None)
        .await?
        .into_iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > since)
        .collect();
    measure(&calls)
}

/// One cross-AZ failover with every emulated duration zero, against its critical-path floor.
#[derive(Debug, clap::Parser)]
#[command(name = "ferry-bench-single")]
struct Args {
    /// Failovers, each from a reset emulator; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// List every call of each run.
    #[arg(long)]
    calls: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let (runs, show_calls) = (args.runs, args.calls);
    let bin = build_ferryd(&say)?;
    say(&format!(
        "ferry-bench-single: {runs} cross-AZ failover(s), every emulated duration 0; ferryd {}",
        bin.display()
    ));
    let emu = Emulator::start()?;
    let (mut walls, mut floors) = (Vec::new(), Vec::new());
    for i in 1..=runs.max(1) {
        let dir = tempfile::tempdir()?;
        let Measured {
            wall,
            floor,
            chain,
            calls,
        } = one_run(&emu, &bin, dir.path())
            .await
            .with_context(|| format!("run {i}"))?;
        say(&format!(
            "run {i}: wall {wall:.0} ms, floor {floor:.1} ms over {} dependent calls:",
            chain.len()
        ));
        for (what, ms) in &chain {
            say(&format!("    {ms:>7.1} ms  {what}"));
        }
        if show_calls {
            say("  every call of the failover (ms after the terminate, signer, action, latency ms):");
            for (t, who, action, ms) in &calls {
                say(&format!("    {t:>6.0}  {who:<8} {action:<40} {ms:.1}"));
            }
        }
        walls.push(wall);
        floors.push(floor);
    }
    let (wall, floor) = (median(walls), median(floors));
    say(&format!(
        "single: wall_ms={wall:.0} floor_ms={floor:.1} ratio={:.1}",
        wall / floor.max(0.001)
    ));
    Ok(())
}
