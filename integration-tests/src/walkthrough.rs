//! The cross-AZ failover walkthrough: first boot in AZ a, failover to AZ b, then a same-AZ replacement.
//! Shared by the README's demo and the end-to-end test, which asserts on what it returns.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::emulator::Emulator;
use crate::world::{wait_for, GroupMember, World, AZ_A, AZ_B};

/// How long any one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The tag the walkthrough writes on the first volume, standing in for data written there.
pub const MARKER_KEY: &str = "ferry-demo:marker";

/// One instance's tenure and the volume it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenure {
    /// The instance.
    pub instance: String,
    /// Its AZ.
    pub az: String,
    /// The ferry volume attached to it.
    pub volume: String,
}

/// What the walkthrough did, for the summary and the assertions.
#[derive(Debug, Clone)]
pub struct Lineage {
    /// The first instance (AZ a), with the empty first-boot volume.
    pub first: Tenure,
    /// The replacement in AZ b, with the volume restored there.
    pub second: Tenure,
    /// The snapshot taken at the first instance's terminate and restored in AZ b.
    pub snapshot: String,
    /// The replacement in AZ b after a same-AZ failover, with the reattached volume.
    pub third: Tenure,
    /// The emulator's call-log sequence number when the same-AZ failover began.
    pub same_az_since: u64,
    /// The Elastic IP.
    pub eip_ip: String,
}

/// Prints or collects progress lines.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

async fn in_service(world: &World, not: &[&str]) -> Result<Option<GroupMember>> {
    Ok(world
        .members()
        .await?
        .into_iter()
        .find(|m| m.state == "InService" && !not.contains(&m.id.as_str())))
}

async fn tenure(world: &World, m: &GroupMember) -> Result<Tenure> {
    let vols = world.attached_volumes(&m.id).await?;
    let v = vols
        .first()
        .ok_or_else(|| anyhow!("no ferry volume attached to {}", m.id))?;
    Ok(Tenure {
        instance: m.id.clone(),
        az: m.az.clone(),
        volume: v.volume_id().unwrap_or_default().to_string(),
    })
}

/// Waits for a new instance (not in `old`) to reach InService, reporting its Pending:Wait first.
async fn next_instance(world: &World, old: &[&str], progress: Progress<'_>) -> Result<GroupMember> {
    let pending = wait_for(
        "the replacement to enter Pending:Wait",
        STEP_TIMEOUT,
        || async {
            Ok(world
                .members()
                .await?
                .into_iter()
                .find(|m| !old.contains(&m.id.as_str())))
        },
    )
    .await?;
    progress(&format!(
        "instance {} launched in {}: held in {} while ferry brings its data",
        pending.id, pending.az, pending.state
    ));
    wait_for("the new instance to be InService", STEP_TIMEOUT, || {
        in_service(world, old)
    })
    .await
}

/// Terminates `from` with the replacement forced into `to_az`, and waits for the replacement.
async fn failover(
    world: &World,
    emu: &Emulator,
    from: &Tenure,
    to_az: &str,
    progress: Progress<'_>,
) -> Result<GroupMember> {
    emu.place(&world.group, Some(to_az)).await?;
    world.terminate(&from.instance).await?;
    progress(&format!(
        "terminating {} in {}: held in Terminating:Wait while ferry snapshots {}",
        from.instance, from.az, from.volume
    ));
    let m = next_instance(world, &[from.instance.as_str()], progress).await?;
    wait_for("the old instance to terminate", STEP_TIMEOUT, || async {
        Ok((world.ec2_state(&from.instance).await? == "terminated").then_some(()))
    })
    .await?;
    progress(&format!(
        "{} is terminated; {} is InService in {}",
        from.instance, m.id, m.az
    ));
    Ok(m)
}

/// Runs the walkthrough against a world with ferryd already running.
pub async fn run(emu: &Emulator, world: &World, progress: Progress<'_>) -> Result<Lineage> {
    progress(&format!(
        "group {} spans {AZ_A} and {AZ_B}; Elastic IP {} ({})",
        world.group, world.eip_ip, world.eip_alloc
    ));
    emu.place(&world.group, Some(AZ_A)).await?;
    world.scale_to_one().await?;
    let m1 = next_instance(world, &[], progress)
        .await
        .context("first boot")?;
    let first = tenure(world, &m1).await?;
    progress(&format!(
        "first boot: empty volume {} attached to {} in {}; Elastic IP -> {:?}",
        first.volume,
        first.instance,
        first.az,
        world.eip_instance().await?
    ));
    world
        .ec2
        .create_tags()
        .resources(&first.volume)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(MARKER_KEY)
                .value(format!("written in {}", first.az))
                .build(),
        )
        .send()
        .await?;
    progress(&format!(
        "marked {} with {MARKER_KEY} (stands in for the workload's data)",
        first.volume
    ));

    progress(&format!("--- cross-AZ failover: {AZ_A} -> {AZ_B} ---"));
    let m2 = failover(world, emu, &first, AZ_B, progress)
        .await
        .context("cross-AZ failover")?;
    let second = tenure(world, &m2).await?;
    let vols = world.attached_volumes(&m2.id).await?;
    let snapshot = vols
        .first()
        .and_then(|v| v.snapshot_id())
        .unwrap_or_default()
        .to_string();
    progress(&format!(
        "restored: {} -> snapshot {} -> {} in {}; Elastic IP -> {:?}",
        first.volume,
        snapshot,
        second.volume,
        second.az,
        world.eip_instance().await?
    ));

    progress(&format!(
        "--- same-AZ replacement in {AZ_B}: reattach, no restore ---"
    ));
    let since = emu
        .calls(None)
        .await?
        .last()
        .and_then(|c| c["seq"].as_u64())
        .unwrap_or(0);
    let m3 = failover(world, emu, &second, AZ_B, progress)
        .await
        .context("same-AZ replacement")?;
    let third = tenure(world, &m3).await?;
    progress(&format!(
        "reattached {} to {} in {}",
        third.volume, third.instance, third.az
    ));
    let ready = wait_for("the hook queue to drain", STEP_TIMEOUT, || async {
        Ok((world.queue_depth().await? == 0).then_some(()))
    })
    .await;
    ready?;
    Ok(Lineage {
        first,
        second,
        snapshot,
        third,
        same_az_since: since,
        eip_ip: world.eip_ip.clone(),
    })
}

/// The final summary: old volume -> snapshot -> new volume, AZ a -> AZ b, EIP moved.
pub fn summary(l: &Lineage) -> String {
    format!(
        "lineage:\n  {v1} ({az1}, {i1})\n    -> snapshot {snap}\n    -> {v2} ({az2}, {i2})   cross-AZ restore\n    -> {v3} ({az3}, {i3})   same-AZ reattach, no restore\n  Elastic IP {ip}: {i1} -> {i2} -> {i3}",
        v1 = l.first.volume,
        az1 = l.first.az,
        i1 = l.first.instance,
        snap = l.snapshot,
        v2 = l.second.volume,
        az2 = l.second.az,
        i2 = l.second.instance,
        v3 = l.third.volume,
        az3 = l.third.az,
        i3 = l.third.instance,
        ip = l.eip_ip,
    )
}
