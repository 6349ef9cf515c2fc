//! End to end: ferryd's operator subcommands (`status`, `doctor`, `snapshot`, `gc`) as the real binary against
//! the emulator, checked against the emulator's state.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_autoscaling::types::{InstanceMaintenancePolicy, Tag as AsgTag};
use aws_sdk_ec2::types::{Filter, Tag};
use ferry_integration_tests::cli_support::{
    ferryd_cli, new_tag as t, seed_snapshot, seed_volume, write_config, CliOutput,
};
use ferry_integration_tests::emulator::Emulator;
use ferry_integration_tests::lease_table;
use ferry_integration_tests::scenario::{tag, Rig};
use ferry_integration_tests::world::{World, WorldOptions, AZ_A};
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferryd"))
}

async fn run(emu: &Emulator, config: &Path, args: &[&str]) -> Result<CliOutput> {
    ferryd_cli(bin(), emu, config, args).await
}

#[tokio::test]
async fn help_and_config_errors_need_no_aws() -> Result<()> {
    let emu_less = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .env_remove("FERRY_CONFIG")
            .output()
    };
    for sub in [
        "status",
        "doctor",
        "snapshot",
        "gc",
        "run",
        "validate-config",
    ] {
        let out = emu_less(&[sub, "--help"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{sub} --help: {text}");
        assert!(
            text.contains("--config"),
            "{sub} --help lists --config: {text}"
        );
    }
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.toml");
    let out = emu_less(&["status", "--config", &missing.to_string_lossy()])?;
    assert_eq!(out.status.code(), Some(2), "unreadable config");
    let bad = write_config(dir.path(), "bad.toml", "[queue]\nurl = \"nope\"\n")?;
    let out = emu_less(&["doctor", "--config", &bad.to_string_lossy()])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "doctor on a bad config: {text}");
    assert!(text.starts_with("FAIL  config: "), "{text}");
    let good = write_config(
        dir.path(),
        "good.toml",
        "[queue]\nurl = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n[[groups]]\nname = \"db\"\n\
         [[groups.volumes]]\nname = \"data\"\ndevice = \"/dev/sdf\"\nsize_gib = 1\n[gc]\nkeep_generations = 0\n",
    )?;
    let out = emu_less(&["gc", "--dry-run", "--config", &good.to_string_lossy()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "gc.keep_generations = 0: {err}");
    assert!(err.contains("gc.keep_generations"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_doctor_and_snapshot_after_first_boot() -> Result<()> {
    let mut rig = Rig::new(
        bin(),
        &WorldOptions::default(),
        json!({"snapshot_seconds": 1.0, "volume_create_seconds": 0.3, "attach_seconds": 0.2}),
    )
    .await?;
    // Terminate before launch, as deploy/ sets it. The emulator may not keep it; doctor then WARNs.
    let policy_set = rig
        .world
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&rig.world.group)
        .instance_maintenance_policy(
            InstanceMaintenancePolicy::builder()
                .min_healthy_percentage(0)
                .max_healthy_percentage(100)
                .build(),
        )
        .send()
        .await;
    eprintln!("[cli] UpdateAutoScalingGroup with a maintenance policy: {policy_set:?}");
    let _daemon = rig.ferryd(&[])?;
    let member = rig.first_boot(AZ_A).await?;
    let config = write_config(rig.dir.path(), "cli.toml", &rig.world.config_toml())?;
    let volume = rig.world.attached_volumes(&member.id).await?;
    let volume_id = volume
        .first()
        .and_then(|v| v.volume_id())
        .context("first boot attached no volume")?
        .to_string();

    // status, table: the instance, its AZ and lifecycle state, the volume and generation 1, the EIP.
    let out = run(&rig.emu, &config, &["status"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.starts_with("GROUP"), "{out}");
    let row = out.lines_with(&member.id);
    assert_eq!(row.len(), 1, "one row for the instance: {out}");
    let cells: Vec<&str> = row[0].split_whitespace().collect();
    assert_eq!(
        &cells[..8],
        &[
            "db",
            "0",
            member.id.as_str(),
            AZ_A,
            "InService",
            "data",
            volume_id.as_str(),
            "1"
        ],
        "{out}"
    );
    assert!(
        row[0].contains(&format!("{} -> {}", rig.world.eip_ip, member.id)),
        "{out}"
    );

    // status, JSON: the same facts.
    let out = run(&rig.emu, &config, &["status", "--output", "json"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).with_context(|| out.to_string())?;
    let g = &doc["groups"][0];
    assert_eq!(g["group"], "db");
    assert_eq!(g["slot"], 0);
    assert_eq!(g["managed"], true);
    let i = &g["instances"][0];
    assert_eq!(i["instance_id"], member.id.as_str());
    assert_eq!(i["availability_zone"], AZ_A);
    assert_eq!(i["lifecycle_state"], "InService");
    assert_eq!(i["volumes"][0]["volume_id"], volume_id.as_str());
    assert_eq!(i["volumes"][0]["logical"], "data");
    assert_eq!(i["volumes"][0]["generation"], 1);
    assert_eq!(g["elastic_ip"]["instance_id"], member.id.as_str());
    assert_eq!(g["pending_hooks"], json!([]));
    assert_eq!(
        g["newest_snapshots"],
        json!([]),
        "no snapshot after a first boot"
    );

    // doctor on the correct world: no FAIL, exit 0; DryRun probes allowed.
    let out = run(&rig.emu, &config, &["doctor"]).await?;
    eprintln!("[cli] doctor on the correct world:\n{out}");
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.lines_with("FAIL").is_empty(), "{out}");
    for pass in [
        "PASS  credentials",
        "PASS  queue dead-letter queue",
        "PASS  queue visibility timeout",
        "PASS  group db ferry:managed tag",
        "PASS  group db capacity",
        "PASS  group db launch hook",
        "PASS  group db terminate hook",
        "PASS  group db elastic IP",
        "PASS  iam ec2:CreateVolume (empty volume): allowed (DryRun)",
        "SKIP  iam ec2:CreateVolume (restore): the group has no completed ferry snapshot",
        "PASS  iam ec2:CreateSnapshot (final delta): allowed (DryRun)",
        "PASS  iam ec2:CreateSnapshot (recovery point): allowed (DryRun)",
        "PASS  iam ec2:CreateSnapshots (pre-copy set): allowed (DryRun)",
        "PASS  iam ec2:CreateTags (claim of a volume): allowed (DryRun)",
        "PASS  iam ec2:CreateTags (attached data on the instance): allowed (DryRun)",
        "SKIP  iam ec2:CreateTags (snapshot data tags): the group has no completed ferry snapshot",
        "PASS  iam ec2:StopInstances (fence): allowed (DryRun)",
        "SKIP  iam ec2:DeleteSnapshot (retention): the group has no completed ferry snapshot",
        "PASS  iam ec2:DeleteVolume (retention): allowed (DryRun)",
    ] {
        assert_eq!(out.lines_with(pass).len(), 1, "{pass}: {out}");
    }
    assert_eq!(
        out.lines_with(&format!(
            "PASS  iam ec2:AssociateAddress ({}): allowed (DryRun)",
            rig.world.eip_alloc
        ))
        .len(),
        1,
        "{out}"
    );
    // The probes send each write's exact tag set: under the policy as shipped before the Name fix (the
    // retag statement without Name), the claim probe is refused, and only it.
    rig.emu
        .enforce_iam(json!({"policies": {"before-the-fix": policy_without_name()?}}))
        .await?;
    let out = run(&rig.emu, &config, &["doctor"]).await?;
    rig.emu.enforce_shipped_iam().await?;
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(
        out.lines_with("FAIL").len(),
        1,
        "only the claim probe fails: {out}"
    );
    assert_eq!(
        out.lines_with(
            "FAIL  iam ec2:CreateTags (claim of a volume): denied (UnauthorizedOperation)"
        )
        .len(),
        1,
        "{out}"
    );
    let maintenance = out.lines_with("group db maintenance policy");
    assert!(
        maintenance.first().is_some_and(|l| l.starts_with("PASS")
            || l.starts_with("WARN  group db maintenance policy: none set")),
        "{out}"
    );
    assert_eq!(
        out.lines_with("PASS  lease: no [lease] table").len(),
        1,
        "{out}"
    );

    // With [lease] table: a missing table fails with its fix; once created, the table and access pass.
    let leased = write_config(
        rig.dir.path(),
        "leased.toml",
        &(rig.world.config_toml() + &lease_table::toml()),
    )?;
    let out = run(&rig.emu, &leased, &["doctor"]).await?;
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(
        out.lines_with("FAIL  lease table: ferry-leases").len(),
        1,
        "{out}"
    );
    assert!(
        out.stdout
            .contains("fix: aws dynamodb create-table --table-name ferry-leases"),
        "{out}"
    );
    lease_table::create(&rig.emu).await?;
    let out = run(&rig.emu, &leased, &["doctor"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    for pass in [
        "PASS  lease table: ferry-leases: ACTIVE",
        "PASS  lease table access",
    ] {
        assert_eq!(out.lines_with(pass).len(), 1, "{pass}: {out}");
    }
    assert!(
        !lease_table::has_item(&rig.emu, "ferryd-doctor-probe").await?,
        "the access probe wrote nothing"
    );

    // snapshot --wait: a completed manual snapshot with the ledger tags of the attached volume.
    let out = run(&rig.emu, &config, &["snapshot", "--group", "db", "--wait"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    let snap_id = out
        .stdout
        .split_whitespace()
        .next()
        .context("no snapshot id printed")?
        .to_string();
    assert!(snap_id.starts_with("snap-"), "{out}");
    assert!(
        out.stdout.contains(&format!("{snap_id}  completed")),
        "{out}"
    );
    let snaps = rig
        .world
        .ec2
        .describe_snapshots()
        .snapshot_ids(&snap_id)
        .send()
        .await?;
    let snap = &snaps.snapshots()[0];
    assert_eq!(snap.volume_id(), Some(volume_id.as_str()));
    assert_eq!(snap.state().map(|s| s.as_str()), Some("completed"));
    for (k, v) in [
        ("ferry:group", "db"),
        ("ferry:slot", "0"),
        ("ferry:volume", "data"),
        ("ferry:generation", "1"),
        ("ferry:reason", "manual"),
    ] {
        assert_eq!(tag(snap.tags(), k).as_deref(), Some(v), "snapshot tag {k}");
    }
    let hook = tag(snap.tags(), "ferry:hook").unwrap_or_default();
    assert!(
        hook.strip_prefix("manual/")
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "ferry:hook = {hook:?}"
    );
    let out = run(&rig.emu, &config, &["status", "-o", "json"]).await?;
    let doc: Value = serde_json::from_str(&out.stdout).with_context(|| out.to_string())?;
    let newest = &doc["groups"][0]["newest_snapshots"][0];
    assert_eq!(newest["snapshot_id"], snap_id.as_str(), "{out}");
    assert_eq!(newest["reason"], "manual");

    // A broken world: the terminate hook is gone, then the ferry:managed tag.
    rig.world
        .asg
        .delete_lifecycle_hook()
        .auto_scaling_group_name(&rig.world.group)
        .lifecycle_hook_name("ferry-terminate")
        .send()
        .await?;
    let out = run(&rig.emu, &config, &["doctor"]).await?;
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(
        out.lines_with("FAIL  group db terminate hook").len(),
        1,
        "{out}"
    );
    // With a completed snapshot, the probes that needed one run too.
    for pass in [
        "PASS  iam ec2:CreateVolume (restore): allowed (DryRun)",
        "PASS  iam ec2:CreateTags (snapshot data tags): allowed (DryRun)",
        "PASS  iam ec2:DeleteSnapshot (retention): allowed (DryRun)",
    ] {
        assert_eq!(out.lines_with(pass).len(), 1, "{pass}: {out}");
    }
    assert_eq!(
        out.lines_with("FAIL").len(),
        1,
        "only that check fails: {out}"
    );
    assert!(
        out.stdout
            .contains("fix: aws autoscaling put-lifecycle-hook"),
        "{out}"
    );
    rig.world
        .asg
        .delete_tags()
        .tags(
            AsgTag::builder()
                .resource_id(&rig.world.group)
                .resource_type("auto-scaling-group")
                .key("ferry:managed")
                .build(),
        )
        .send()
        .await?;
    let out = run(&rig.emu, &config, &["doctor"]).await?;
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(
        out.lines_with("FAIL  group db ferry:managed tag").len(),
        1,
        "{out}"
    );
    Ok(())
}

fn ledger(group: &str, generation: u32) -> Vec<Tag> {
    vec![
        t("ferry:group", group),
        t("ferry:slot", "0"),
        t("ferry:volume", "data"),
        t("ferry:generation", &generation.to_string()),
        t("ferry:hook", "test/gc"),
    ]
}

/// Which of `ids` still exist.
async fn existing(w: &World, ids: &[&String]) -> Result<BTreeSet<String>> {
    let (vols, snaps): (Vec<&String>, Vec<&String>) =
        ids.iter().partition(|id| id.starts_with("vol-"));
    let by = |name: &str, v: Vec<&String>| {
        Filter::builder()
            .name(name)
            .set_values(Some(v.into_iter().cloned().collect()))
            .build()
    };
    let mut out = BTreeSet::new();
    let v = w
        .ec2
        .describe_volumes()
        .filters(by("volume-id", vols))
        .send()
        .await?;
    out.extend(
        v.volumes()
            .iter()
            .filter_map(|v| v.volume_id())
            .map(str::to_string),
    );
    let s = w
        .ec2
        .describe_snapshots()
        .filters(by("snapshot-id", snaps))
        .send()
        .await?;
    out.extend(
        s.snapshots()
            .iter()
            .filter_map(|s| s.snapshot_id())
            .map(str::to_string),
    );
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_only_old_detached_generations() -> Result<()> {
    let rig = Rig::new(bin(), &WorldOptions::default(), json!({})).await?;
    let (w, emu) = (&rig.world, &rig.emu);
    // keep 2 generations; anything younger than ~26 s stays.
    let config = write_config(
        rig.dir.path(),
        "gc.toml",
        &w.config_toml().replace(
            "[gc]\n",
            "[gc]\nkeep_generations = 2\nmin_age_days = 0.0003\n",
        ),
    )?;
    let run_out = w
        .ec2
        .run_instances()
        .image_id("ami-12345678")
        .min_count(1)
        .max_count(1)
        .placement(
            aws_sdk_ec2::types::Placement::builder()
                .availability_zone(AZ_A)
                .build(),
        )
        .send()
        .await?;
    let instance = run_out.instances()[0]
        .instance_id()
        .unwrap_or_default()
        .to_string();

    // The old part of the ledger: generations 1 to 4 of db/0/data.
    let v1 = seed_volume(w, AZ_A, ledger("db", 1), None).await?;
    let s1 = seed_snapshot(w, &v1, ledger("db", 1)).await?;
    let v2 = seed_volume(w, AZ_A, ledger("db", 2), None).await?;
    let s2 = seed_snapshot(w, &v2, ledger("db", 2)).await?;
    let attached = seed_volume(w, AZ_A, ledger("db", 2), None).await?;
    w.ec2
        .attach_volume()
        .volume_id(&attached)
        .instance_id(&instance)
        .device("/dev/sdg")
        .send()
        .await?;
    let s3 = seed_snapshot(w, &v2, ledger("db", 3)).await?;
    let v4 = seed_volume(w, AZ_A, ledger("db", 4), None).await?;
    emu.configure(json!({"snapshot_seconds": 3600.0})).await?;
    let pending = seed_snapshot(w, &v1, ledger("db", 1)).await?;
    emu.configure(json!({"snapshot_seconds": 0.0, "volume_create_seconds": 3600.0}))
        .await?;
    let source = seed_snapshot(w, &v1, ledger("db", 1)).await?;
    let creating = seed_volume(w, AZ_A, ledger("db", 2), Some(&source)).await?;
    emu.configure(json!({"volume_create_seconds": 0.0})).await?;
    let untagged = seed_volume(w, AZ_A, Vec::new(), None).await?;
    let foreign = seed_volume(w, AZ_A, ledger("other", 1), None).await?;

    tokio::time::sleep(Duration::from_secs(30)).await;
    // The young part: the newest completed snapshot, and an old generation that is too young to go.
    let s4 = seed_snapshot(w, &v4, ledger("db", 4)).await?;
    let young = seed_snapshot(w, &v1, ledger("db", 1)).await?;

    let doomed = [&v1, &s1, &v2, &s2];
    let kept = [
        &attached, &s3, &v4, &pending, &source, &creating, &untagged, &foreign, &s4, &young,
    ];
    let all: Vec<&String> = doomed.iter().chain(kept.iter()).copied().collect();

    let out = run(emu, &config, &["gc", "--dry-run", "--verbose"]).await?;
    eprintln!("[cli] gc --dry-run:\n{out}");
    assert_eq!(out.code, Some(0), "{out}");
    let would: BTreeSet<String> = out
        .lines_with("would delete ")
        .iter()
        .filter(|l| l.starts_with("would delete "))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect();
    let want: BTreeSet<String> = doomed.iter().map(|s| s.to_string()).collect();
    assert_eq!(would, want, "{out}");
    assert!(
        out.stdout.contains(&format!("keep volume {attached} ")),
        "{out}"
    );
    assert!(out.lines_with(&young)[0].contains("too young"), "{out}");
    assert!(
        out.lines_with(&format!("keep snapshot {source} "))[0].contains("still creating"),
        "{out}"
    );
    assert_eq!(
        existing(w, &all).await?.len(),
        all.len(),
        "a dry run deletes nothing"
    );

    let out = run(emu, &config, &["gc"]).await?;
    eprintln!("[cli] gc:\n{out}");
    assert_eq!(out.code, Some(0), "{out}");
    let deleted = out.lines_with("deleted ");
    assert_eq!(
        deleted.iter().filter(|l| l.starts_with("deleted ")).count(),
        doomed.len(),
        "one line per deletion: {out}"
    );
    assert!(
        deleted
            .iter()
            .any(|l| l.starts_with("gc: deleted 4, kept 8")),
        "{out}"
    );
    let left = existing(w, &all).await?;
    let want_left: BTreeSet<String> = kept.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        left, want_left,
        "exactly the old detached generations are gone"
    );
    Ok(())
}

/// deploy/iam/ferry-policy.json as shipped before the `Name` fix: its retag statement without `Name`.
fn policy_without_name() -> Result<Value> {
    let path = ferry_integration_tests::emulator::repo_root().join("deploy/iam/ferry-policy.json");
    let mut policy: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    for st in policy["Statement"].as_array_mut().into_iter().flatten() {
        if st["Sid"] == "RetagLedgerVolumesAndSnapshots" {
            if let Some(keys) =
                st["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"].as_array_mut()
            {
                keys.retain(|k| k != "Name");
            }
        }
    }
    Ok(policy)
}
