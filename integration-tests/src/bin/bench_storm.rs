//! `ferry-bench-storm`: every group of a fleet fails over to the other AZ at once, under per-action API
//! throttling, with the real ferryd binary against the emulator.
//!
//! `--groups G` (default 30) Auto Scaling groups of one instance, each with a ferry volume, an Elastic IP and
//! launch + terminate hooks, all on one queue and in one ferryd config. After the first boots in AZ a, a
//! workload writes to every group's volume; then the emulator throttles every EC2 and Auto Scaling action
//! with its own bucket (burst 10, 5/s; `--throttle-sqs` throttles SQS's too) and every instance is
//! terminated at once, its replacement placed in AZ b. The clock runs until every group's launch is completed
//! with CONTINUE (ferry does that only with the data attached and the EIP moved); then every group is checked:
//! InService in AZ b, the EIP on it, its volume holding the workload's last acknowledged write.
//!
//! API calls are ferryd's (signed with its own access key) from the first terminate on, as the emulator's call
//! log counts them; the harness's calls are neither counted nor throttled. It prints a per-action breakdown,
//! then, last, `storm: groups=G wall_s=W api_calls=N throttled=T peak_rss_mb=M lost=L`, and exits 1 if
//! L > 0.

use anyhow::{Context, Result};
use ferry_integration_tests::daemon::build_ferryd;
use ferry_integration_tests::emulator::Emulator;
use ferry_integration_tests::storm::{self, StormOptions, INCREMENTAL_S, SNAPSHOT_S};
use std::time::Duration;

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// Fails over every group of a fleet at once, under per-action throttling, against the emulator.
#[derive(Debug, clap::Parser)]
#[command(name = "ferry-bench-storm")]
struct Args {
    /// Auto Scaling groups failing over at once.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    groups: u64,
    /// Throttle SQS's actions with the same buckets too.
    #[arg(long)]
    throttle_sqs: bool,
    /// Give ferryd `[aws.rate_limits]` equal to the emulator's buckets.
    #[arg(long)]
    match_ferry_limits: bool,
    /// How often each group's workload writes, in ms (default: 10 ms x groups).
    #[arg(long)]
    write_every_ms: Option<u64>,
    /// How long the storm may take before the groups still on their way are counted lost.
    #[arg(long)]
    timeout_secs: Option<u64>,
}

fn parse_args() -> Result<StormOptions> {
    let args = <Args as clap::Parser>::parse();
    let groups = usize::try_from(args.groups).context("--groups")?;
    let mut opts = StormOptions::new(groups);
    opts.throttle_sqs = args.throttle_sqs;
    opts.match_ferry_limits = args.match_ferry_limits;
    if let Some(ms) = args.write_every_ms {
        opts.write_every = Duration::from_millis(ms.max(1));
    }
    if let Some(s) = args.timeout_secs {
        opts.timeout = Duration::from_secs(s);
    }
    Ok(opts)
}

/// The least time the emulator's bucket of `action` needs to let `ok` calls through, if it is throttled.
fn bucket_bound(opts: &StormOptions, action: &str, ok: u64) -> Option<f64> {
    let throttled = action.starts_with("ec2:")
        || action.starts_with("autoscaling:")
        || (opts.throttle_sqs && action.starts_with("sqs:"));
    let (burst, per_sec) = opts.bucket;
    throttled.then(|| ok.saturating_sub(u64::from(burst)) as f64 / f64::from(per_sec.max(1)))
}

#[tokio::main]
async fn main() -> Result<()> {
    let opts = parse_args()?;
    let bin = build_ferryd(&say)?;
    let (burst, per_sec) = opts.bucket;
    say(&format!(
        "ferry-bench-storm: {} groups fail over from us-east-1a to us-east-1b at once; ferryd {}",
        opts.groups,
        bin.display()
    ));
    say(&format!(
        "emulator: every {} action its own bucket of burst {burst}, {per_sec}/s; snapshots {SNAPSHOT_S}s full, {INCREMENTAL_S}s incremental; ferryd rate limits: {}; workloads write every {} ms",
        if opts.throttle_sqs { "EC2, Auto Scaling and SQS" } else { "EC2 and Auto Scaling" },
        if opts.match_ferry_limits { "the emulator's buckets" } else { "its defaults" },
        opts.write_every.as_millis()
    ));
    let emu = Emulator::start()?;
    let dir = tempfile::tempdir()?;
    let progress = |l: &str| say(&format!("  {l}"));
    let report = storm::run(&emu, &bin, dir.path(), &opts, &progress)
        .await
        .context("ferry-bench-storm")?;

    say("");
    say("ferryd's calls during the storm, per action: calls / throttled, and the least time the emulator's bucket");
    say("needs for the calls that went through ((calls - throttled - burst) / per_sec):");
    let mut busiest: Option<(f64, &str)> = None;
    for (action, (calls, throttled)) in &report.actions {
        let bound = bucket_bound(&opts, action, calls - throttled);
        let shown = bound.map_or_else(|| "not throttled".to_string(), |b| format!("{b:.0} s"));
        say(&format!(
            "  {action:<45} {calls:>6} / {throttled:<6} {shown}"
        ));
        if let Some(b) = bound.filter(|b| busiest.is_none_or(|(m, _)| *b > m)) {
            busiest = Some((b, action));
        }
    }
    if let Some((b, action)) = busiest {
        say(&format!(
            "the busiest bucket, {action}, bounds the storm at >= {b:.0} s"
        ));
    }
    for (group, why) in &report.lost {
        say(&format!("LOST {group}: {why}"));
    }
    say(&format!(
        "first boots {:.1}s (not measured); {} terminates fired in {} ms; last acknowledged writes summed {}, lost writes {}",
        report.first_boot.as_secs_f64(),
        report.groups,
        report.fired_in.as_millis(),
        report.acked,
        report.lost_writes
    ));
    say(&report.line());
    if !report.lost.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
