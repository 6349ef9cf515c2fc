//! End to end: `ferryd reset-slot` as the real binary against the emulator. It retires a slot's unreadable
//! remains (`ferry:slot=retired-0`, `ferry:retired-at`) once, and refuses readable data and attached volumes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use aws_sdk_ec2::types::{Filter, Placement, Tag};
use ferry_integration_tests::cli_support::{
    ferryd_cli, new_tag as t, seed_snapshot, seed_volume, write_config, CliOutput,
};
use ferry_integration_tests::scenario::{actions, in_service, tag, Rig, STEP};
use ferry_integration_tests::world::{wait_for, World, WorldOptions, AZ_A, AZ_B};
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferryd"))
}

/// The ledger tags of `group`/`slot`/data with this `ferry:generation` value (parseable or not).
fn ledger(group: &str, slot: &str, generation: &str) -> Vec<Tag> {
    vec![
        t("ferry:group", group),
        t("ferry:slot", slot),
        t("ferry:volume", "data"),
        t("ferry:generation", generation),
        t("ferry:hook", "test/reset-slot"),
    ]
}

/// A snapshot of `group`/0/data that stays in `error`: taken in AZ B, which then has an outage.
async fn error_snapshot(rig: &Rig, group: &str) -> Result<String> {
    let w = &rig.world;
    rig.emu
        .configure(json!({"snapshot_seconds": 3600.0}))
        .await?;
    let source = seed_volume(w, AZ_B, Vec::new(), None).await?;
    let snap = seed_snapshot(w, &source, ledger(group, "0", "3")).await?;
    rig.emu.configure(json!({"snapshot_seconds": 0.0})).await?;
    rig.emu
        .faults(json!({"az_outage": {"az": AZ_B, "snapshot_mode": "error"}}))
        .await?;
    let (state, _) = resource(w, &snap).await?;
    assert_eq!(state, "error", "the outage fails {snap}");
    Ok(snap)
}

/// The EC2 state and the tags of a volume or snapshot, read back from the emulator.
async fn resource(w: &World, id: &str) -> Result<(String, BTreeMap<String, String>)> {
    let pairs = |tags: &[Tag]| {
        tags.iter()
            .map(|t| {
                let (k, v) = (t.key().unwrap_or_default(), t.value().unwrap_or_default());
                (k.to_string(), v.to_string())
            })
            .collect()
    };
    let by_id = |name: &str| Filter::builder().name(name).values(id).build();
    if id.starts_with("vol-") {
        let out = w
            .ec2
            .describe_volumes()
            .filters(by_id("volume-id"))
            .send()
            .await?;
        let v = out.volumes().first().context(format!("no volume {id}"))?;
        let state = v
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        return Ok((state, pairs(v.tags())));
    }
    let out = w
        .ec2
        .describe_snapshots()
        .filters(by_id("snapshot-id"))
        .send()
        .await?;
    let s = out
        .snapshots()
        .first()
        .context(format!("no snapshot {id}"))?;
    let state = s
        .state()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    Ok((state, pairs(s.tags())))
}

async fn slot_tag(w: &World, id: &str) -> Result<Option<String>> {
    Ok(resource(w, id).await?.1.get("ferry:slot").cloned())
}

async fn rig() -> Result<(Rig, PathBuf)> {
    let rig = Rig::new(bin(), &WorldOptions::default(), json!({})).await?;
    let config = write_config(rig.dir.path(), "reset.toml", &rig.world.config_toml())?;
    Ok((rig, config))
}

/// The stdout lines that start with `prefix`.
fn starting<'a>(out: &'a CliOutput, prefix: &str) -> Vec<&'a str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

async fn run(rig: &Rig, config: &Path, args: &[&str]) -> Result<CliOutput> {
    let out = ferryd_cli(bin(), &rig.emu, config, args).await?;
    eprintln!("[reset-slot] ferryd {}:\n{out}", args.join(" "));
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retires_unreadable_remains_once() -> Result<()> {
    let (rig, config) = rig().await?;
    let w = &rig.world;
    let failed = error_snapshot(&rig, "db").await?;
    let garbled = seed_volume(w, AZ_A, ledger("db", "0", "two"), None).await?;
    // Not of db/0: another group, and another slot.
    let other_group = seed_volume(w, AZ_A, ledger("other", "0", "two"), None).await?;
    let other_slot = seed_volume(w, AZ_A, ledger("db", "1", "two"), None).await?;

    let out = run(&rig, &config, &["reset-slot", "--group", "db"]).await?;
    assert_eq!(out.code, Some(2), "without --yes: {out}");
    assert!(out.stderr.contains("--yes"), "{out}");

    let out = run(&rig, &config, &["reset-slot", "--group", "db", "--dry-run"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(starting(&out, "would retire ").len(), 2, "{out}");
    assert!(out
        .stdout
        .contains(&format!("would retire snapshot {failed} (data, error")));
    assert!(out
        .stdout
        .contains(&format!("would retire volume {garbled} (data, available")));
    assert!(
        out.stdout.contains("reset-slot db/0: would retire 2"),
        "{out}"
    );
    for id in [&failed, &garbled] {
        assert_eq!(
            slot_tag(w, id).await?.as_deref(),
            Some("0"),
            "a dry run tags nothing"
        );
    }

    let before = unix_now();
    let out = run(&rig, &config, &["reset-slot", "--group", "db", "--yes"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains(&format!("retired snapshot {failed} ")),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("retired volume {garbled} ")),
        "{out}"
    );
    assert!(out.stdout.contains("reset-slot db/0: retired 2"), "{out}");
    for id in [&failed, &garbled] {
        let (_, tags) = resource(w, id).await?;
        assert_eq!(
            tags.get("ferry:slot").map(String::as_str),
            Some("retired-0"),
            "{id}"
        );
        assert_eq!(
            tags.get("ferry:group").map(String::as_str),
            Some("db"),
            "{id}"
        );
        assert_eq!(
            tags.get("ferry:volume").map(String::as_str),
            Some("data"),
            "{id}"
        );
        let at: i64 = tags
            .get("ferry:retired-at")
            .and_then(|v| v.parse().ok())
            .context(format!("{id} has no ferry:retired-at: {tags:?}"))?;
        assert!((before..before + 120).contains(&at), "{id} retired at {at}");
    }
    assert_eq!(slot_tag(w, &other_group).await?.as_deref(), Some("0"));
    assert_eq!(slot_tag(w, &other_slot).await?.as_deref(), Some("1"));

    // Idempotent: the second run finds nothing left in the slot.
    let out = run(
        &rig,
        &config,
        &["reset-slot", "-g", "db", "--yes", "-o", "json"],
    )
    .await?;
    assert_eq!(out.code, Some(0), "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).with_context(|| out.to_string())?;
    assert_eq!(doc["group"], "db");
    assert_eq!(doc["slot"], 0);
    assert_eq!(doc["remains"], json!([]), "{out}");
    assert_eq!(doc["retired"], json!([]), "{out}");
    assert_eq!(doc["refused"], Value::Null, "{out}");
    let out = run(&rig, &config, &["reset-slot", "--group", "db", "--yes"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains("reset-slot db/0: nothing to retire"),
        "{out}"
    );
    assert!(starting(&out, "retired ").is_empty(), "{out}");

    let out = run(&rig, &config, &["reset-slot", "--group", "nope", "--yes"]).await?;
    assert_eq!(out.code, Some(2), "an unconfigured group: {out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_readable_data_and_attached_volumes() -> Result<()> {
    let (rig, config) = rig().await?;
    let w = &rig.world;
    let failed = error_snapshot(&rig, "db").await?;
    let source = seed_volume(w, AZ_A, Vec::new(), None).await?;
    let good = seed_snapshot(w, &source, ledger("db", "0", "2")).await?;
    assert_eq!(resource(w, &good).await?.0, "completed");

    // A completed snapshot with a generation is readable: refused without --force, nothing tagged.
    for args in [&["--yes"][..], &["--dry-run"][..]] {
        let mut all = vec!["reset-slot", "--group", "db"];
        all.extend_from_slice(args);
        let out = run(&rig, &config, &all).await?;
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr.contains("readable data"), "{out}");
        assert!(out
            .stderr
            .contains(&format!("snapshot {good} (data, completed, generation 2)")));
        assert!(
            !out.stderr.contains(&failed),
            "only the readable remains are named: {out}"
        );
        assert!(out.stderr.contains("--force"), "{out}");
        assert!(starting(&out, "retired ").is_empty(), "{out}");
    }
    for id in [&failed, &good] {
        assert_eq!(
            slot_tag(w, id).await?.as_deref(),
            Some("0"),
            "{id} untouched"
        );
    }

    // A volume of the slot attached to an instance: refused even with --force.
    let run_out = w
        .ec2
        .run_instances()
        .image_id("ami-12345678")
        .min_count(1)
        .max_count(1)
        .placement(Placement::builder().availability_zone(AZ_A).build())
        .send()
        .await?;
    let instance = run_out.instances()[0]
        .instance_id()
        .unwrap_or_default()
        .to_string();
    let held = seed_volume(w, AZ_A, ledger("db", "0", "two"), None).await?;
    w.ec2
        .attach_volume()
        .volume_id(&held)
        .instance_id(&instance)
        .device("/dev/sdf")
        .send()
        .await?;
    let out = run(
        &rig,
        &config,
        &["reset-slot", "--group", "db", "--force", "--yes"],
    )
    .await?;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "volume {held} (data) is attached to instance {instance}"
        )),
        "{out}"
    );
    for id in [&failed, &good, &held] {
        assert_eq!(
            slot_tag(w, id).await?.as_deref(),
            Some("0"),
            "{id} untouched"
        );
    }

    // Detached, --force retires the readable snapshot too.
    w.ec2
        .detach_volume()
        .volume_id(&held)
        .instance_id(&instance)
        .send()
        .await?;
    wait_for("the volume to detach", Duration::from_secs(30), || async {
        let (state, _) = resource(w, &held).await?;
        Ok((state == "available").then_some(()))
    })
    .await?;
    let out = run(
        &rig,
        &config,
        &["reset-slot", "--group", "db", "--force", "--yes"],
    )
    .await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("reset-slot db/0: retired 3"), "{out}");
    for id in [&failed, &good, &held] {
        assert_eq!(slot_tag(w, id).await?.as_deref(), Some("retired-0"), "{id}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_boot_boots_empty_after_reset_slot() -> Result<()> {
    let (mut rig, config) = rig().await?;
    let failed = error_snapshot(&rig, "db").await?;
    let _daemon = rig.ferryd(&[])?;
    rig.emu.place(&rig.world.group, Some(AZ_A)).await?;
    rig.world.scale_to_one().await?;
    // The launch refuses to create an empty volume over the failed copy.
    wait_for("a launch to be abandoned", STEP, || async {
        let all = actions(&rig.emu).await?;
        Ok(all.into_iter().find(|a| a.launch && a.result == "ABANDON"))
    })
    .await?;
    assert!(
        rig.logs().contains("existing data unreadable"),
        "{}",
        rig.logs()
    );

    let out = run(&rig, &config, &["reset-slot", "--group", "db", "--yes"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains(&format!("retired snapshot {failed} ")),
        "{out}"
    );
    // The replacement's launch sees a new slot: an empty volume of generation 1.
    let member = in_service(&rig.world, &[]).await?;
    let ferry = rig.world.attached_volumes(&member.id).await?;
    assert_eq!(ferry.len(), 1, "{ferry:?}");
    assert_eq!(tag(ferry[0].tags(), "ferry:slot").as_deref(), Some("0"));
    assert_eq!(
        tag(ferry[0].tags(), "ferry:generation").as_deref(),
        Some("1")
    );
    assert_eq!(
        ferry[0].snapshot_id().unwrap_or_default(),
        "",
        "an empty volume"
    );
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
