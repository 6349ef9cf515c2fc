//! The cross-AZ failover walkthrough: first boot in AZ a, failover to AZ b, then a same-AZ replacement, with a
//! workload that writes until its instance is gone. Shared by the README's demo and the end-to-end test,
//! which asserts on what it returns.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::emulator::Emulator;
use crate::workload::{snapshot_counter, volume_counter, Writer};
use crate::world::{wait_for, GroupMember, World, AZ_A, AZ_B};

/// How long any one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the workload writes on a fresh instance before the walkthrough terminates it.
const WRITE_FOR: Duration = Duration::from_millis(1500);

/// One instance's tenure and the volume it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenure {
    /// The instance.
    pub instance: String,
    /// Its AZ.
    pub az: String,
    /// The ferry volume attached to it.
    pub volume: String,
    /// The write counter on that volume when the instance went into service.
    pub content_at_start: u64,
    /// The last write its workload had acknowledged when the instance could no longer write.
    pub last_acked: u64,
}

/// What the walkthrough did, for the summary and the assertions.
#[derive(Debug, Clone)]
pub struct Lineage {
    /// The first instance (AZ a), with the empty first-boot volume.
    pub first: Tenure,
    /// The replacement in AZ b, with the volume restored there.
    pub second: Tenure,
    /// The pre-copy the first instance's terminate took while it still ran (a recovery point).
    pub precopy: String,
    /// The write counter the pre-copy captured.
    pub precopy_content: u64,
    /// The final delta of the fenced first volume, restored in AZ b.
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

async fn tenure(emu: &Emulator, world: &World, m: &GroupMember) -> Result<Tenure> {
    let vols = world.attached_volumes(&m.id).await?;
    let v = vols
        .first()
        .ok_or_else(|| anyhow!("no ferry volume attached to {}", m.id))?;
    let volume = v.volume_id().unwrap_or_default().to_string();
    Ok(Tenure {
        instance: m.id.clone(),
        az: m.az.clone(),
        content_at_start: volume_counter(emu, &volume).await?,
        volume,
        last_acked: 0,
    })
}

/// Runs the workload on `t` for a while; the returned writer keeps going until the instance is gone.
async fn workload(emu: &Emulator, t: &Tenure, progress: Progress<'_>) -> Writer {
    let w = Writer::start(emu, &t.instance, t.content_at_start);
    tokio::time::sleep(WRITE_FOR).await;
    progress(&format!(
        "workload on {} writing to {} every 5 ms: {} writes acknowledged so far",
        t.instance,
        t.volume,
        w.acked() - t.content_at_start
    ));
    w
}

/// Waits for the workload to be refused, records its last acknowledged write on `t`, and says so.
async fn workload_end(w: Writer, t: &mut Tenure, progress: Progress<'_>) -> Result<()> {
    let (last, why) = w.finished(STEP_TIMEOUT).await?;
    t.last_acked = last;
    progress(&format!(
        "the workload on {} was cut off after write {last} (its next write was refused: {})",
        t.instance,
        why.trim()
    ));
    Ok(())
}

/// Checks and reports that `new` starts with the last write `old` acknowledged.
fn survived(old: &Tenure, new: &Tenure, progress: Progress<'_>) -> Result<()> {
    progress(&format!(
        "data that survived: {} holds write {}; the last write acknowledged on {} was {}: {}",
        new.volume,
        new.content_at_start,
        old.instance,
        old.last_acked,
        if new.content_at_start == old.last_acked {
            "no acknowledged write lost"
        } else {
            "WRITES LOST"
        }
    ));
    if new.content_at_start != old.last_acked {
        bail!(
            "{} started with write {}, but {} had acknowledged {}",
            new.volume,
            new.content_at_start,
            old.instance,
            old.last_acked
        );
    }
    Ok(())
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
        "terminating {} in {}: held in Terminating:Wait (still running and writing) while ferry pre-copies {}",
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
    let mut first = tenure(emu, world, &m1).await?;
    progress(&format!(
        "first boot: empty volume {} attached to {} in {}; Elastic IP -> {:?}",
        first.volume,
        first.instance,
        first.az,
        world.eip_instance().await?
    ));
    let writer = workload(emu, &first, progress).await;

    progress(&format!("--- cross-AZ failover: {AZ_A} -> {AZ_B} ---"));
    let m2 = failover(world, emu, &first, AZ_B, progress)
        .await
        .context("cross-AZ failover")?;
    workload_end(writer, &mut first, progress).await?;
    let mut second = tenure(emu, world, &m2).await?;
    let vols = world.attached_volumes(&m2.id).await?;
    let snapshot = vols
        .first()
        .and_then(|v| v.snapshot_id())
        .unwrap_or_default()
        .to_string();
    let precopy = precopy_of(world, &first.instance).await?;
    let precopy_content = snapshot_counter(emu, &precopy).await?;
    progress(&format!(
        "pre-copy {precopy} (taken while {} still wrote) holds write {precopy_content}: a recovery point, not restored",
        first.instance
    ));
    progress(&format!(
        "restored: {} -> final delta {} (after the fence) -> {} in {}; Elastic IP -> {:?}",
        first.volume,
        snapshot,
        second.volume,
        second.az,
        world.eip_instance().await?
    ));
    survived(&first, &second, progress)?;
    let writer = workload(emu, &second, progress).await;

    progress(&format!(
        "--- same-AZ replacement in {AZ_B}: reattach, no restore ---"
    ));
    let since = emu.last_seq().await?;
    let m3 = failover(world, emu, &second, AZ_B, progress)
        .await
        .context("same-AZ replacement")?;
    workload_end(writer, &mut second, progress).await?;
    let third = tenure(emu, world, &m3).await?;
    progress(&format!(
        "reattached {} to {} in {}",
        third.volume, third.instance, third.az
    ));
    survived(&second, &third, progress)?;
    let ready = wait_for("the hook queue to drain", STEP_TIMEOUT, || async {
        Ok((world.queue_depth().await? == 0).then_some(()))
    })
    .await;
    ready?;
    Ok(Lineage {
        first,
        second,
        precopy,
        precopy_content,
        snapshot,
        third,
        same_az_since: since,
        eip_ip: world.eip_ip.clone(),
    })
}

/// The pre-copy snapshot the terminate of `instance` took.
async fn precopy_of(world: &World, instance: &str) -> Result<String> {
    let out = world
        .ec2
        .describe_snapshots()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:ferry:hook")
                .values(format!("{instance}/terminate"))
                .build(),
        )
        .send()
        .await?;
    out.snapshots()
        .first()
        .and_then(|s| s.snapshot_id())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no pre-copy snapshot of {instance}'s terminate"))
}

/// The final summary: old volume -> snapshot -> new volume, AZ a -> AZ b, EIP moved, writes kept.
pub fn summary(l: &Lineage) -> String {
    format!(
        "lineage:\n  {v1} ({az1}, {i1})   last acknowledged write {w1}\n    -> pre-copy {pre} (write {pc}, recovery point)\n    -> final delta {snap}\n    -> {v2} ({az2}, {i2})   cross-AZ restore, starts at write {s2}; last acknowledged {w2}\n    -> {v3} ({az3}, {i3})   same-AZ reattach, no restore, starts at write {s3}\n  Elastic IP {ip}: {i1} -> {i2} -> {i3}",
        w1 = l.first.last_acked,
        pre = l.precopy,
        pc = l.precopy_content,
        s2 = l.second.content_at_start,
        w2 = l.second.last_acked,
        s3 = l.third.content_at_start,
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
