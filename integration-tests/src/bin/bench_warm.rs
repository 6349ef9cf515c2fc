//! `ferry-bench-warm`: the failover time with a warm pool against a cold launch, on the emulator with boot
//! times that model AWS (scaled down): a cold launch is `Pending` for `--cold-boot-secs` before its launch
//! hook begins, a warm instance leaving its pool for `--warm-start-secs`. Snapshots, volume creation,
//! attach and detach take the emulator's fast timings.
//!
//! Each run: first boot, a workload writing, then `TerminateInstanceInAutoScalingGroup`; measured from that
//! call's arrival to the answer of ferryd's `CompleteLifecycleAction` CONTINUE of the replacement's launch
//! (the emulator's call log), and the replacement is checked to hold the last acknowledged write. With
//! `warm`, the group has a warm pool of one stopped instance, and the replacement is that instance.
//!
//! The last line is `warm: cold_ms=C warm_ms=W saved_ms=S` (medians of `--runs`).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use aws_sdk_autoscaling::types::WarmPoolState;
use ferry_integration_tests::calls::{median, param, parse_ms};
use ferry_integration_tests::daemon::{build_ferryd, Ferryd, Logs};
use ferry_integration_tests::emulator::{fast_timings, Emulator};
use ferry_integration_tests::scenario::{actions, in_service, STEP};
use ferry_integration_tests::storm::FERRYD_KEY;
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, World, WorldOptions, AZ_A, AZ_B};
use serde_json::Value;

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// The failover time with a warm pool against a cold launch.
#[derive(Debug, clap::Parser)]
#[command(name = "ferry-bench-warm")]
struct Args {
    /// Failovers of each kind, each from a reset emulator; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// How long a cold launch boots before its launch hook (AWS: about 60 s to 120 s).
    #[arg(long, default_value_t = 6.0)]
    cold_boot_secs: f64,
    /// How long a warm instance takes to start out of its pool (AWS: about 15 s to 30 s).
    #[arg(long, default_value_t = 1.5)]
    warm_start_secs: f64,
}

/// Whether the group has a warm pool to fail over to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cold,
    Warm,
}

/// A stopped warm instance, once the pool holds one.
async fn ready_warm_instance(world: &World) -> Result<String> {
    wait_for("a stopped warm instance", STEP, || async {
        Ok(world
            .warm_instances()
            .await?
            .into_iter()
            .find(|(_, s)| s == "Warmed:Stopped")
            .map(|(id, _)| id))
    })
    .await
}

/// One failover; its time in ms.
async fn one_run(emu: &Emulator, bin: &Path, args: &Args, kind: Kind) -> Result<f64> {
    emu.reset().await?;
    let mut settings = fast_timings();
    settings["cold_boot_seconds"] = args.cold_boot_secs.into();
    settings["warm_start_seconds"] = args.warm_start_secs.into();
    emu.configure(settings).await?;
    let world = World::setup(emu, &WorldOptions::default()).await?;
    let dir = tempfile::tempdir()?;
    let env = [
        ("FERRY_LOG_FORMAT", "json"),
        ("AWS_ACCESS_KEY_ID", FERRYD_KEY),
    ];
    let log = Logs::File(dir.path().join("ferryd.log"));
    // The first boot's reads, seconds before the failover, would leave the default read pace's burst spent
    // (production failovers are far apart): a pace that never binds one failover.
    let config = world.config_toml().replacen(
        "poll_max_ms = 2000\n",
        "poll_max_ms = 2000\nread_pace = { burst = 200, per_sec = 50 }\n",
        1,
    );
    let _ferryd = Ferryd::start(bin, emu, dir.path(), &config, log, &env)?;
    // Both kinds fail over across AZs: the first boot in a, the replacement in b.
    emu.place(&world.group, Some(AZ_A)).await?;
    if kind == Kind::Warm {
        world
            .asg
            .put_warm_pool()
            .auto_scaling_group_name(&world.group)
            .min_size(1)
            .pool_state(WarmPoolState::Stopped)
            .send()
            .await?;
        ready_warm_instance(&world).await?;
    }
    if kind == Kind::Warm {
        // The first boot takes the warm instance in a; the pool refills in b.
        emu.place(&world.group, Some(AZ_B)).await?;
    }
    world.scale_to_one().await?;
    let m1 = in_service(&world, &[]).await.context("first boot")?;
    ensure!(m1.az == AZ_A, "first boot in {}", m1.az);
    emu.place(&world.group, Some(AZ_B)).await?;
    let standby = match kind {
        Kind::Warm => Some(ready_warm_instance(&world).await?),
        Kind::Cold => None,
    };
    let writer = Writer::start(emu, &m1.id, 0);
    wait_for("some writes", STEP, || async {
        Ok((writer.acked() > 10).then_some(()))
    })
    .await?;
    let since = emu.last_seq().await?;
    world.terminate(&m1.id).await?;
    let m2 = in_service(&world, &[m1.id.as_str()])
        .await
        .context("the replacement")?;
    ensure!(m2.az == AZ_B, "the replacement is in {}", m2.az);
    let (acked, _) = writer.finished(STEP).await?;
    check_holds(emu, &world, &m2.id, acked).await?;
    if let Some(w) = standby {
        ensure!(
            m2.id == w,
            "the replacement {} is not the warm instance {w}",
            m2.id
        );
    }
    // The replacement's launch action into service: its last (a warm instance also had its pool fill's).
    let token = actions(emu)
        .await?
        .into_iter()
        .rfind(|a| a.launch && a.instance == m2.id)
        .map(|a| a.token)
        .context("the replacement's launch action")?;
    elapsed(&emu.calls(None).await?, since, &token)
}

/// From the terminate's arrival to the answer of the launch CONTINUE of action `token`, in ms.
fn elapsed(calls: &[Value], since: u64, token: &str) -> Result<f64> {
    let after: Vec<&Value> = calls
        .iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > since && c["status"] == 200)
        .collect();
    let at = |c: &Value| parse_ms(c["time"].as_str().unwrap_or_default()).map(|t| t as f64);
    let Some(start) = after
        .iter()
        .find(|c| c["action"] == "TerminateInstanceInAutoScalingGroup")
    else {
        bail!("no terminate in the call log");
    };
    let Some(end) = after.iter().find(|c| {
        c["action"] == "CompleteLifecycleAction"
            && param(c, "LifecycleActionToken") == token
            && param(c, "LifecycleActionResult") == "CONTINUE"
    }) else {
        bail!("no launch CONTINUE in the call log");
    };
    if std::env::var_os("FERRY_BENCH_TIMELINE").is_some() {
        let t0 = at(start)?;
        for c in &after {
            say(&format!(
                "    {:>7.0} ms  {:<10} {}",
                at(c)? - t0,
                c["access_key"].as_str().unwrap_or_default(),
                c["action"].as_str().unwrap_or_default()
            ));
        }
    }
    Ok(at(end)? + end["duration_ms"].as_f64().unwrap_or(0.0) - at(start)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let bin = build_ferryd(&say)?;
    say(&format!(
        "ferry-bench-warm: {} failover(s) each, cold boot {} s, warm start {} s; ferryd {}",
        args.runs,
        args.cold_boot_secs,
        args.warm_start_secs,
        bin.display()
    ));
    let emu = Emulator::start()?;
    let mut medians = Vec::new();
    for kind in [Kind::Cold, Kind::Warm] {
        let mut times = Vec::new();
        for i in 1..=args.runs {
            let ms = one_run(&emu, &bin, &args, kind)
                .await
                .with_context(|| format!("{kind:?} run {i}"))?;
            say(&format!(
                "{kind:?} run {i}: {ms:.0} ms from the terminate to the launch CONTINUE"
            ));
            times.push(ms);
        }
        medians.push(median(times));
    }
    let (cold, warm) = (medians[0], medians[1]);
    say(&format!(
        "warm: cold_ms={cold:.0} warm_ms={warm:.0} saved_ms={:.0}",
        cold - warm
    ));
    Ok(())
}
