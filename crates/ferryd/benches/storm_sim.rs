//! `storm-sim`: G groups fail out of one AZ at once; ferry's own stack moves them on the in-process fakes in
//! virtual time (docs/performance.md). Prints the calls per action, then the summary line last.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ferryd::sim::{run, SimConfig};

/// Runs the storm simulation.
#[derive(Debug, Parser)]
struct Args {
    /// Groups failing over at once.
    #[arg(long, default_value_t = 1000)]
    groups: usize,
    /// `[daemon] workers` (default: ferryd's).
    #[arg(long)]
    workers: Option<usize>,
    /// `[daemon] read_pace.per_sec` (default: ferryd's).
    #[arg(long)]
    read_per_sec: Option<f64>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storm-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wall = Instant::now();
    let mut cfg = SimConfig::new(args.groups);
    cfg.workers = args.workers;
    cfg.read_pace = args.read_per_sec.map(|per_sec| {
        let mut pace = ferry_state_machine::loader::LoaderConfig::default().pace;
        pace.per_sec = per_sec;
        pace
    });
    let report = match rt.block_on(run(&cfg)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("storm-sim: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for (op, c) in &report.calls {
        println!("  {op:<44} ok={:<7} throttled={}", c.ok, c.throttled);
    }
    println!(
        "  before the storm: {} calls in {:.0}s (the standing hooks refresh; not counted above)",
        report.warmup.0, report.warmup.1
    );
    println!(
        "  floor set by {}; real time {:.1}s",
        report.floor_action,
        wall.elapsed().as_secs_f64()
    );
    for g in report.lost.iter().take(10) {
        println!("  lost: {g}");
    }
    println!("{}", report.line());
    if report.lost.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
