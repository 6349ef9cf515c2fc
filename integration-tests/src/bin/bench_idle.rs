//! `ferry-bench-idle`: what ferryd costs while nothing happens. One managed group with its instance in
//! service (its first boot done), then ferryd is left alone for `--secs` (default 120) while it long-polls
//! the queue, reconciles, refreshes the groups' hooks and checks recovery points. Reports its resident
//! memory (`VmRSS`) at the end, the CPU it used over the window (`utime + stime` from `/proc/<pid>/stat`),
//! and its AWS calls per minute from the emulator's call log, last as
//! `idle: secs=S rss_mb=M cpu_pct=C api_calls_per_min=A`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use ferry_integration_tests::daemon::{build_ferryd, Ferryd, Logs};
use ferry_integration_tests::emulator::Emulator;
use ferry_integration_tests::scenario::in_service;
use ferry_integration_tests::storm::FERRYD_KEY;
use ferry_integration_tests::world::{World, WorldOptions, AZ_A};

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// Measures an idle ferryd against the emulator.
#[derive(Debug, clap::Parser)]
#[command(name = "ferry-bench-idle")]
struct Args {
    /// How long ferryd is left idle, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(10..))]
    secs: u64,
}

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// The CPU time the process has used (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command may hold spaces: the fields after it start past the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12 here.
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("no field {i} in /proc/{pid}/stat"))
    };
    Ok(field(11)? + field(12)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let bin = build_ferryd(&say)?;
    let emu = Emulator::start()?;
    let dir = tempfile::tempdir()?;
    let world = World::setup(&emu, &WorldOptions::default()).await?;
    let env = [("AWS_ACCESS_KEY_ID", FERRYD_KEY)];
    let log = dir.path().join("ferryd.log");
    // The tests' world config checks recovery points every second; an idle daemon runs on the defaults.
    let config = world
        .config_toml()
        .replace("recovery_interval_secs = 1\n", "");
    let ferryd = Ferryd::start(&bin, &emu, dir.path(), &config, Logs::File(log), &env)?;
    emu.place(&world.group, Some(AZ_A)).await?;
    world.scale_to_one().await?;
    in_service(&world, &[]).await.context("first boot")?;
    // Let the first boot's last calls (the message delete) finish.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let pid = ferryd.pid();
    let since = emu.last_seq().await?;
    let ticks0 = cpu_ticks(pid)?;
    let began = Instant::now();
    say(&format!(
        "ferry-bench-idle: ferryd {} idle for {} s with one group in service",
        bin.display(),
        args.secs
    ));
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    let window = began.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid)?.saturating_sub(ticks0);
    // Linux's USER_HZ is 100 on every platform ferry targets.
    let cpu_pct = ticks as f64 / 100.0 / window * 100.0;
    let rss_mb = status_kib(pid, "VmRSS:")? as f64 / 1024.0;
    let calls: Vec<serde_json::Value> = emu
        .calls(None)
        .await?
        .into_iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > since && c["access_key"] == FERRYD_KEY)
        .collect();
    let mut by_action = std::collections::BTreeMap::<String, u64>::new();
    for c in &calls {
        *by_action
            .entry(c["action"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    for (action, n) in &by_action {
        say(&format!("  {action:<40} {n}"));
    }
    say(&format!(
        "idle: secs={:.0} rss_mb={rss_mb:.1} cpu_pct={cpu_pct:.2} api_calls_per_min={:.1}",
        window,
        calls.len() as f64 / window * 60.0
    ));
    Ok(())
}
