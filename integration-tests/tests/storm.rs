//! A small storm: ten groups fail over from AZ a to AZ b at once while the emulator throttles every EC2 and
//! Auto Scaling action with its own bucket (burst 10, 5/s), with the real ferryd. Every group must arrive
//! whole: its replacement InService in AZ b, the Elastic IP on it, its volume holding the workload's last
//! acknowledged write. No timing is asserted.

use std::path::Path;

use anyhow::Result;
use ferry_integration_tests::emulator::Emulator;
use ferry_integration_tests::storm::{self, StormOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_groups_fail_over_at_once_under_throttling() -> Result<()> {
    let emu = Emulator::start()?;
    let dir = tempfile::tempdir()?;
    let opts = StormOptions::new(10);
    let progress = |line: &str| eprintln!("[storm] {line}");
    let report = storm::run(
        &emu,
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir.path(),
        &opts,
        &progress,
    )
    .await?;
    eprintln!(
        "[storm] per action (calls, throttled): {:?}",
        report.actions
    );
    eprintln!("[storm] {}", report.line());

    assert_eq!(
        report.lost,
        Vec::<(String, String)>::new(),
        "every group arrives whole"
    );
    assert_eq!(report.lost_writes, 0, "no acknowledged write is lost");
    assert!(
        report.acked >= 10,
        "every workload wrote before its failover (sum of last acknowledged writes {})",
        report.acked
    );
    // The storm really ran under the emulator's throttle and was done by ferryd: the terminate and launch
    // hooks of every group were completed by its own calls.
    let completes = report
        .actions
        .get("autoscaling:CompleteLifecycleAction")
        .map_or(0, |(calls, throttled)| calls - throttled);
    assert!(
        completes >= 20,
        "ferryd completed {completes} lifecycle actions, want two per group"
    );
    Ok(())
}
