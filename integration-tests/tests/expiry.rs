//! Expiry: a launch hook's heartbeat timeout (3 s here) passes while no ferryd works it, so Auto Scaling
//! applies the DefaultResult (ABANDON), terminates the instance and launches a replacement with a hook of its
//! own. A ferryd started afterwards must drop the expired hook's message cleanly, bring the replacement its
//! data with CONTINUE, and leave no volume the ledger does not account for.

use std::path::Path;

use anyhow::{ensure, Result};
use ferry_integration_tests::scenario::{
    actions, attachment, check_common, completions, create_volume_tokens, exited, in_service,
    ledger_key, tag, Action, Rig, STEP,
};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A};

fn world() -> WorldOptions {
    WorldOptions {
        heartbeat_timeout: 3,
        visibility_timeout: 5,
        ..WorldOptions::default()
    }
}

fn settings() -> serde_json::Value {
    ferry_integration_tests::emulator::fast_timings()
}

async fn rig() -> Result<Rig> {
    Rig::new(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        &world(),
        settings(),
    )
    .await
}

/// Waits for the first launch action to expire, and returns it.
async fn first_expired(rig: &Rig) -> Result<Action> {
    wait_for("the first launch action to expire", STEP, || async {
        Ok(actions(&rig.emu)
            .await?
            .into_iter()
            .next()
            .filter(|a| a.state == "expired"))
    })
    .await
}

/// Checks the end: every launch action either expired with ABANDON (its instance terminated) or was completed
/// by ferry with CONTINUE; exactly one CONTINUE, of the InService instance, which holds the group's only
/// ferry volume at `generation`; every volume ferry created is that one.
async fn check_end(rig: &Rig, generation: &str) -> Result<()> {
    let m = in_service(&rig.world, &[]).await?;
    rig.queue_drained().await?;
    let all = actions(&rig.emu).await?;
    let done = completions(&rig.emu).await?;
    let mut continued = Vec::new();
    for a in &all {
        ensure!(a.launch, "no terminate hook runs in this scenario: {a:?}");
        match (a.state.as_str(), a.result.as_str()) {
            ("expired", "ABANDON") => {
                ensure!(
                    !done.contains_key(&a.token),
                    "ferry completed the expired action {a:?}"
                );
                let state = rig.world.ec2_state(&a.instance).await?;
                ensure!(state == "terminated", "{} is {state}", a.instance);
            }
            ("completed", "CONTINUE") => continued.push(a),
            _ => anyhow::bail!("unexpected action end: {a:?}\nall: {all:?}"),
        }
    }
    ensure!(
        all.iter().any(|a| a.state == "expired"),
        "no action expired: {all:?}"
    );
    ensure!(
        continued.len() == 1 && continued[0].instance == m.id,
        "exactly one CONTINUE, of the InService {}: {all:?}",
        m.id
    );
    let inv = rig.inventory().await?;
    ensure!(
        inv.ferry_volumes.len() == 1,
        "ferry volumes {:?}",
        inv.ferry_volumes
    );
    ensure!(inv.snapshots.is_empty(), "snapshots {:?}", inv.snapshots);
    let v = &inv.ferry_volumes[0];
    ensure!(
        attachment(v) == Some((m.id.clone(), "/dev/sdf".into(), "attached".into())),
        "attachment {:?}",
        v.attachments()
    );
    ensure!(v.availability_zone() == Some(AZ_A));
    ensure!(
        tag(v.tags(), "ferry:generation").as_deref() == Some(generation),
        "generation {:?}",
        v.tags()
    );
    ensure!(
        tag(v.tags(), "ferry:hook") == Some(ledger_key(&continued[0].instance, true)),
        "hook tag {:?}",
        v.tags()
    );
    let tokens = create_volume_tokens(&rig.emu).await?;
    ensure!(
        tokens.len() == 1,
        "one volume ever created, the ledger's: {tokens:?}"
    );
    check_common(rig, &inv, &m.id, true).await
}

/// ferry is down when the first launch hook expires; it starts afterwards.
async fn expired_while_down(rig: &mut Rig) -> Result<()> {
    rig.emu.place(&rig.world.group, Some(AZ_A)).await?;
    rig.world.scale_to_one().await?;
    let expired = first_expired(rig).await?;
    ensure!(expired.result == "ABANDON", "DefaultResult: {expired:?}");
    let _ferryd = rig.ferryd(&[])?;
    check_end(rig, "1").await
}

/// ferry crashes mid-launch (its volume attached, nothing completed); the hook expires; the replacement in the
/// same AZ must get that same volume (claimed, generation 2), not a second one.
async fn expired_after_crash(rig: &mut Rig) -> Result<()> {
    let mut crashing = rig.ferryd(&[("FERRY_TEST_KILL_AFTER", "ec2:AttachVolume")])?;
    rig.emu.place(&rig.world.group, Some(AZ_A)).await?;
    rig.world.scale_to_one().await?;
    exited(&mut crashing, "crash point never reached", STEP).await?;
    let expired = first_expired(rig).await?;
    ensure!(expired.result == "ABANDON", "DefaultResult: {expired:?}");
    // Its volume was detached by the termination.
    wait_for(
        "the abandoned instance's volume to detach",
        STEP,
        || async {
            let inv = rig.inventory().await?;
            Ok(inv
                .ferry_volumes
                .iter()
                .all(|v| v.state().map(|s| s.as_str()) == Some("available"))
                .then_some(()))
        },
    )
    .await?;
    let _ferryd = rig.ferryd(&[])?;
    check_end(rig, "2").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_hook_expired_while_ferry_was_down() -> Result<()> {
    let mut rig = rig().await?;
    let res = expired_while_down(&mut rig).await;
    rig.explain(res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_hook_expired_after_a_crash_mid_launch() -> Result<()> {
    let mut rig = rig().await?;
    let res = expired_after_crash(&mut rig).await;
    rig.explain(res)
}
