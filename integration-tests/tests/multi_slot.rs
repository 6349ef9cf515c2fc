//! End to end, a group of many: three slots over two AZs, each with its own Elastic IP and a workload that
//! writes until its instance is gone. Killing one instance moves exactly that slot's data (every
//! acknowledged write) to its replacement and leaves the other slots alone; scaling in to two parks the
//! third slot's data, and scaling out to three again brings it back to the new instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_integration_tests::cli_support::{ferryd_cli, write_config};
use ferry_integration_tests::scenario::{tag, Rig, STEP};
use ferry_integration_tests::workload::{check_holds, volume_counter, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A, AZ_B};

/// One live slot: its instance, the instance's AZ, and the workload writing to it.
struct Live {
    instance: String,
    az: String,
    writer: Writer,
}

/// The `ferry:slot` tag of an instance.
async fn slot_of(rig: &Rig, instance: &str) -> Result<Option<u32>> {
    let out = rig
        .world
        .ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| tag(i.tags(), "ferry:slot"))
        .and_then(|s| s.parse().ok()))
}

/// The ids of the ferry volumes attached to `instance`.
async fn volume_ids(rig: &Rig, instance: &str) -> Result<Vec<String>> {
    Ok(rig
        .world
        .attached_volumes(instance)
        .await?
        .iter()
        .filter_map(|v| v.volume_id().map(str::to_string))
        .collect())
}

/// Where each allocation points.
async fn eip_owner(rig: &Rig, alloc: &str) -> Result<Option<String>> {
    let out = rig
        .world
        .ec2
        .describe_addresses()
        .allocation_ids(alloc)
        .send()
        .await?;
    Ok(out
        .addresses()
        .first()
        .and_then(|a| a.instance_id().map(str::to_string)))
}

/// Sets the group's desired capacity (max 3).
async fn desire(rig: &Rig, n: i32) -> Result<()> {
    rig.world
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&rig.world.group)
        .min_size(0)
        .max_size(3)
        .desired_capacity(n)
        .send()
        .await?;
    Ok(())
}

/// Waits for an InService member not in `known`, launched in `az`, that holds ferry's data and a slot.
async fn next_in_service(rig: &Rig, known: &[String], az: &str) -> Result<(String, u32)> {
    let m = wait_for("a new instance to be InService", STEP, || async {
        Ok(rig
            .world
            .members()
            .await?
            .into_iter()
            .find(|m| m.state == "InService" && !known.contains(&m.id)))
    })
    .await?;
    ensure!(m.az == az, "{} launched in {}, not {az}", m.id, m.az);
    let slot = slot_of(rig, &m.id)
        .await?
        .with_context(|| format!("{} in service without a ferry:slot tag", m.id))?;
    Ok((m.id, slot))
}

/// `ferryd status -o json`'s slots of the group: (slot, state, instance).
async fn status_slots(rig: &Rig, config: &Path) -> Result<Vec<(u64, String, Option<String>)>> {
    let bin = Path::new(env!("CARGO_BIN_EXE_ferryd"));
    let out = ferryd_cli(bin, &rig.emu, config, &["status", "-o", "json"]).await?;
    ensure!(out.code == Some(0), "ferryd status: {out}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)?;
    let slots = doc["groups"][0]["slots"].as_array().context("slots")?;
    Ok(slots
        .iter()
        .map(|s| {
            let id = s["instance_id"].as_str().map(str::to_string);
            (
                s["slot"].as_u64().unwrap_or(99),
                s["state"].as_str().unwrap_or("?").to_string(),
                id,
            )
        })
        .collect())
}

async fn scenario(rig: &mut Rig) -> Result<()> {
    let mut allocs = vec![rig.world.eip_alloc.clone()];
    for _ in 0..2 {
        let a = rig
            .world
            .ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .tag_specifications(ferry_integration_tests::world::eip_tags(&rig.world.group))
            .send()
            .await?;
        allocs.push(a.allocation_id().unwrap_or_default().to_string());
    }
    let list = allocs
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = rig.world.config_toml().replace(
        &format!("elastic_ip = \"{}\"", rig.world.eip_alloc),
        &format!("elastic_ips = [{list}]"),
    );
    ensure!(config.contains("elastic_ips"), "config: {config}");
    let config_path = write_config(rig.dir.path(), "status.toml", &config)?;
    let _ferryd = rig.ferryd_with(&config, &[])?;

    // First boot, one instance at a time: slots 0 (AZ a), 1 (AZ b), 2 (AZ a), each an empty volume.
    let mut live: BTreeMap<u32, Live> = BTreeMap::new();
    for (n, az) in [(1, AZ_A), (2, AZ_B), (3, AZ_A)] {
        rig.emu.place(&rig.world.group, Some(az)).await?;
        desire(rig, n).await?;
        let known: Vec<String> = live.values().map(|l| l.instance.clone()).collect();
        let (id, slot) = next_in_service(rig, &known, az).await?;
        ensure!(
            slot == u32::try_from(n - 1)?,
            "the {n}th first boot took slot {slot}"
        );
        let vols = volume_ids(rig, &id).await?;
        ensure!(!vols.is_empty(), "{id} holds no ferry volume");
        for v in &vols {
            ensure!(
                volume_counter(&rig.emu, v).await? == 0,
                "first boot {v} is not empty"
            );
        }
        let writer = Writer::start(&rig.emu, &id, 0);
        live.insert(
            slot,
            Live {
                instance: id,
                az: az.to_string(),
                writer,
            },
        );
    }
    for (slot, l) in &live {
        let alloc = &allocs[usize::try_from(*slot)?];
        ensure!(
            eip_owner(rig, alloc).await?.as_deref() == Some(l.instance.as_str()),
            "slot {slot}'s Elastic IP {alloc} is not on {}",
            l.instance
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Kill slot 1's instance (AZ b); its replacement launches in AZ a: a cross-AZ failover of slot 1 alone.
    let before: BTreeMap<u32, Vec<String>> = {
        let mut m = BTreeMap::new();
        for (slot, l) in &live {
            m.insert(*slot, volume_ids(rig, &l.instance).await?);
        }
        m
    };
    let old = live.remove(&1).context("slot 1")?;
    ensure!(old.az == AZ_B);
    rig.emu.place(&rig.world.group, Some(AZ_A)).await?;
    rig.world.terminate(&old.instance).await?;
    let (last, why) = old.writer.finished(STEP).await?;
    eprintln!(
        "[e2e] slot 1's workload on {} stopped at write {last}: {why}",
        old.instance
    );
    let known: Vec<String> = live
        .values()
        .map(|l| l.instance.clone())
        .chain([old.instance.clone()])
        .collect();
    let (new, slot) = next_in_service(rig, &known, AZ_A).await?;
    ensure!(slot == 1, "the replacement of slot 1 took slot {slot}");
    check_holds(&rig.emu, &rig.world, &new, last).await?;
    ensure!(
        eip_owner(rig, &allocs[1]).await?.as_deref() == Some(new.as_str()),
        "slot 1's Elastic IP did not move to {new}"
    );
    for (slot, l) in &live {
        ensure!(
            volume_ids(rig, &l.instance).await? == before[slot],
            "slot {slot}'s volumes changed during slot 1's failover"
        );
        ensure!(
            eip_owner(rig, &allocs[usize::try_from(*slot)?])
                .await?
                .as_deref()
                == Some(l.instance.as_str()),
            "slot {slot}'s Elastic IP moved during slot 1's failover"
        );
        ensure!(l.writer.acked() > 0, "slot {slot}'s workload still writes");
    }
    live.insert(
        1,
        Live {
            instance: new.clone(),
            az: AZ_A.to_string(),
            writer: Writer::start(&rig.emu, &new, last),
        },
    );

    // Scale in to two: slot 2's instance goes, its data is parked (detached, with a final snapshot).
    let gone = live.remove(&2).context("slot 2")?;
    rig.world
        .asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&gone.instance)
        .should_decrement_desired_capacity(true)
        .send()
        .await?;
    let (last2, _) = gone.writer.finished(STEP).await?;
    let parked = wait_for("slot 2's parked final snapshot", STEP, || async {
        let out = rig
            .world
            .ec2
            .describe_snapshots()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:ferry:slot")
                    .values("2")
                    .build(),
            )
            .send()
            .await?;
        Ok(out
            .snapshots()
            .iter()
            .find(|s| {
                tag(s.tags(), "ferry:hook").is_some_and(|h| h.starts_with("parked/"))
                    && s.state().is_some_and(|st| st.as_str() == "completed")
            })
            .and_then(|s| s.snapshot_id().map(str::to_string)))
    })
    .await?;
    eprintln!("[e2e] slot 2 parked at write {last2}: final snapshot {parked}");
    ensure!(
        rig.world.members().await?.len() == 2,
        "the group holds two instances"
    );
    let shown = status_slots(rig, &config_path).await?;
    let want: Vec<(u64, String, Option<String>)> = vec![
        (0, "live".into(), live.get(&0).map(|l| l.instance.clone())),
        (1, "live".into(), live.get(&1).map(|l| l.instance.clone())),
        (2, "parked".into(), None),
    ];
    ensure!(shown == want, "status shows slots {shown:?}, not {want:?}");

    // Scale out to three, in AZ b (the parked data is in AZ a): the new instance takes slot 2 and its data.
    rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
    desire(rig, 3).await?;
    let known: Vec<String> = live
        .values()
        .map(|l| l.instance.clone())
        .chain([gone.instance.clone(), old.instance.clone()])
        .collect();
    let (back, slot) = next_in_service(rig, &known, AZ_B).await?;
    ensure!(
        slot == 2,
        "the scale-out took slot {slot}, not the parked slot 2"
    );
    check_holds(&rig.emu, &rig.world, &back, last2).await?;
    ensure!(
        eip_owner(rig, &allocs[2]).await?.as_deref() == Some(back.as_str()),
        "slot 2's Elastic IP did not come back to {back}"
    );
    for (slot, l) in &live {
        ensure!(
            slot_of(rig, &l.instance).await? == Some(*slot),
            "{} lost its slot",
            l.instance
        );
    }
    let shown = status_slots(rig, &config_path).await?;
    ensure!(
        shown.iter().all(|(_, state, _)| state == "live") && shown.len() == 3,
        "status after the scale-out: {shown:?}"
    );
    ensure!(
        shown[2].2.as_deref() == Some(back.as_str()),
        "slot 2 is {back}'s: {shown:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_slots_fail_over_one_at_a_time_and_park_on_scale_in() -> Result<()> {
    let mut rig = Rig::new(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        &WorldOptions::default(),
        ferry_integration_tests::emulator::fast_timings(),
    )
    .await?;
    let res = scenario(&mut rig).await;
    if let Err(e) = &res {
        panic!("{e:#}\n{}", rig.logs());
    }
    res
}
