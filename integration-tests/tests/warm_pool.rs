//! End to end, a warm pool as the standby: the real ferryd against the emulator's warm pool. The pool's own
//! launches and the pool's refills never get data or the Elastic IP; the first boot and a failover take a
//! warm instance into service with every acknowledged write; nothing is abandoned.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use ferry_integration_tests::scenario::{actions, completions, in_service, Rig, STEP};
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions};

/// Waits for one warm instance stopped in the pool, and checks it holds no ferry volume and not the EIP.
async fn stopped_warm_instance(rig: &Rig) -> Result<String> {
    let id = wait_for("a stopped warm instance", STEP, || async {
        Ok(rig
            .world
            .warm_instances()
            .await?
            .into_iter()
            .find(|(_, s)| s == "Warmed:Stopped")
            .map(|(id, _)| id))
    })
    .await?;
    ensure!(
        rig.world.attached_volumes(&id).await?.is_empty(),
        "warm instance {id} holds a ferry volume"
    );
    ensure!(
        rig.world.eip_instance().await?.as_deref() != Some(id.as_str()),
        "warm instance {id} holds the Elastic IP"
    );
    ensure!(rig.world.ec2_state(&id).await? == "stopped");
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_is_the_standby_and_a_failover_keeps_every_write() -> Result<()> {
    let mut rig = Rig::new(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        &WorldOptions::default(),
        ferry_integration_tests::emulator::fast_timings(),
    )
    .await?;
    let res = async {
        let _ferryd = rig.ferryd(&[])?;
        rig.world
            .asg
            .put_warm_pool()
            .auto_scaling_group_name(&rig.world.group)
            .min_size(1)
            .pool_state(aws_sdk_autoscaling::types::WarmPoolState::Stopped)
            .send()
            .await?;
        // The pool's own launch: ferry completes its hook with no data.
        let standby = stopped_warm_instance(&rig).await?;

        // First boot takes the warm instance into service, empty; the pool refills without data.
        rig.world.scale_to_one().await?;
        let m1 = in_service(&rig.world, &[]).await?;
        ensure!(m1.id == standby, "the first boot came from the pool");
        let refill = stopped_warm_instance(&rig).await?;
        ensure!(rig.world.eip_instance().await?.as_deref() == Some(m1.id.as_str()));

        // A failover: the old instance writes until it is gone; the warm instance takes over.
        let writer = Writer::start(&rig.emu, &m1.id, 0);
        wait_for("some writes", STEP, || async {
            Ok((writer.acked() > 20).then_some(()))
        })
        .await?;
        rig.world.terminate(&m1.id).await?;
        let (last, _) = writer.finished(STEP).await?;
        let m2 = in_service(&rig.world, &[&m1.id]).await?;
        ensure!(m2.id == refill, "the failover took the warm instance");
        check_holds(&rig.emu, &rig.world, &m2.id, last).await?;
        ensure!(rig.world.eip_instance().await?.as_deref() == Some(m2.id.as_str()));
        stopped_warm_instance(&rig)
            .await
            .context("the pool refills")?;

        // No ABANDON, no action left open, every action completed once.
        rig.queue_drained().await?;
        for a in actions(&rig.emu).await? {
            ensure!(
                a.state == "completed" && a.result == "CONTINUE",
                "action not cleanly completed: {a:?}"
            );
        }
        for (token, results) in completions(&rig.emu).await? {
            ensure!(results == ["CONTINUE"], "{token} completed {results:?}");
        }
        Ok(())
    }
    .await;
    if let Err(e) = &res {
        panic!("{e:#}\n{}", rig.logs());
    }
    res
}
