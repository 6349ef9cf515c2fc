//! End to end: the real ferryd binary against the emulator, over HTTP. A first boot in AZ a, a cross-AZ
//! failover to AZ b, and a same-AZ replacement, with a workload that writes until each instance is gone;
//! each proven from the data on the volumes, the emulator's state and its call log.

use std::path::Path;

use anyhow::Result;
use ferry_integration_tests::calls;
use ferry_integration_tests::daemon::{Ferryd, Logs};
use ferry_integration_tests::emulator::{Emulator, FERRYD_KEY};
use ferry_integration_tests::walkthrough;
use ferry_integration_tests::workload::volume_counter;
use ferry_integration_tests::world::{World, WorldOptions, AZ_A, AZ_B};
use serde_json::Value;

fn tag(tags: &[aws_sdk_ec2::types::Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

fn actions_for<'a>(actions: &'a [Value], instance: &str, transition: &str) -> Vec<&'a Value> {
    actions
        .iter()
        .filter(|a| {
            a["instance_id"] == instance
                && a["transition"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(transition))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_az_failover_then_same_az_reattach() -> Result<()> {
    let emu = Emulator::start()?;
    emu.configure(ferry_integration_tests::emulator::fast_timings())
        .await?;
    let world = World::setup(&emu, &WorldOptions::default()).await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("ferryd.log");
    let _ferryd = Ferryd::start(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        &emu,
        dir.path(),
        &world.config_toml(),
        Logs::File(log.clone()),
        &[("FERRY_LOG_FORMAT", "json")],
    )?;
    let progress = |line: &str| eprintln!("[e2e] {line}");
    let lineage = match walkthrough::run(&emu, &world, &progress).await {
        Ok(l) => l,
        Err(e) => panic!(
            "{e:#}\nferryd log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
    };

    // 0. No acknowledged write was lost, at either failover.
    assert!(lineage.first.last_acked > 0, "the workload wrote");
    assert_eq!(lineage.first.content_at_start, 0, "first boot is empty");
    assert_eq!(lineage.second.content_at_start, lineage.first.last_acked);
    assert!(lineage.second.last_acked > lineage.second.content_at_start);
    assert_eq!(lineage.third.content_at_start, lineage.second.last_acked);
    assert_eq!(
        volume_counter(&emu, &lineage.third.volume).await?,
        lineage.second.last_acked
    );
    assert!(
        lineage.precopy_content < lineage.first.last_acked,
        "the workload kept writing during Terminating:Wait, after the pre-copy ({} < {})",
        lineage.precopy_content,
        lineage.first.last_acked
    );

    // 1. First boot: an empty volume in AZ a, generation 1.
    assert_eq!(lineage.first.az, AZ_A);
    let v1 = describe_volume(&world, &lineage.first.volume).await?;
    assert_eq!(
        v1.snapshot_id().unwrap_or_default(),
        "",
        "first boot restores nothing"
    );
    assert_eq!(v1.size(), Some(20));
    assert_eq!(tag(v1.tags(), "ferry:generation").as_deref(), Some("1"));
    assert_eq!(
        v1.state().map(|s| s.as_str()),
        Some("available"),
        "detached from the terminated instance"
    );

    // 2. The terminate pre-copied the volume; after the fence the launch took the final delta of it, which
    //    carries the ledger tags.
    let snaps = world
        .ec2
        .describe_snapshots()
        .snapshot_ids(&lineage.snapshot)
        .send()
        .await?;
    let snap = &snaps.snapshots()[0];
    assert_eq!(
        snap.volume_id(),
        Some(lineage.first.volume.as_str()),
        "the snapshot is of the marked volume"
    );
    assert_eq!(snap.state().map(|s| s.as_str()), Some("completed"));
    let actions = emu.lifecycle().await?;
    let term1 = actions_for(&actions, &lineage.first.instance, "TERMINATING");
    assert_eq!(term1.len(), 1);
    for (k, v) in [
        ("ferry:group", "db"),
        ("ferry:slot", "0"),
        ("ferry:volume", "data"),
        ("ferry:generation", "1"),
        ("ferry:reason", "final"),
    ] {
        assert_eq!(tag(snap.tags(), k).as_deref(), Some(v), "snapshot tag {k}");
    }
    let key = format!("{}/launch", lineage.second.instance);
    assert_eq!(
        tag(snap.tags(), "ferry:hook"),
        Some(key),
        "the final delta belongs to the launch that took it"
    );
    let pre = world
        .ec2
        .describe_snapshots()
        .snapshot_ids(&lineage.precopy)
        .send()
        .await?;
    let pre = &pre.snapshots()[0];
    assert_eq!(tag(pre.tags(), "ferry:reason").as_deref(), Some("precopy"));
    assert_eq!(
        tag(pre.tags(), "ferry:hook"),
        Some(format!("{}/terminate", lineage.first.instance))
    );
    assert!(
        pre.start_time() <= snap.start_time(),
        "the pre-copy came first"
    );

    // 3. A new volume was created from that snapshot in AZ b and attached to the new instance.
    assert_eq!(lineage.second.az, AZ_B);
    let v2 = describe_volume(&world, &lineage.second.volume).await?;
    assert_eq!(v2.availability_zone(), Some(AZ_B));
    assert_eq!(v2.snapshot_id(), Some(lineage.snapshot.as_str()));
    assert_eq!(
        tag(v2.tags(), "ferry:generation").as_deref(),
        Some("3"),
        "generation 2 at restore, 3 after the reattach"
    );
    assert_eq!(
        tag(v2.tags(), "ferry:source-snapshot").as_deref(),
        Some(lineage.snapshot.as_str())
    );
    assert_eq!(
        tag(v2.tags(), "ferry:source-volume").as_deref(),
        Some(lineage.first.volume.as_str())
    );
    let creates = emu.calls(Some("CreateVolume")).await?;
    let restore: Vec<&Value> = creates
        .iter()
        .filter(|c| c["params"]["SnapshotId"] == lineage.snapshot.as_str())
        .collect();
    assert_eq!(restore.len(), 1, "exactly one restore: {creates:?}");
    assert_eq!(restore[0]["params"]["AvailabilityZone"], AZ_B);
    assert!(restore[0]["params"]["ClientToken"]
        .as_str()
        .is_some_and(|t| !t.is_empty() && t.len() <= 64));

    // 4. Both lifecycle actions completed with CONTINUE; the old instance is terminated.
    let launch2 = actions_for(&actions, &lineage.second.instance, "LAUNCHING");
    for a in term1.iter().chain(&launch2) {
        assert_eq!(a["state"], "completed", "{a}");
        assert_eq!(a["result"], "CONTINUE", "{a}");
    }
    assert_eq!(
        world.ec2_state(&lineage.first.instance).await?,
        "terminated"
    );
    assert_eq!(
        world.ec2_state(&lineage.second.instance).await?,
        "terminated"
    );

    // 5. Same-AZ replacement: the volume was reattached, with no restore and no new volume.
    assert_eq!(lineage.third.az, AZ_B);
    assert_eq!(
        lineage.third.volume, lineage.second.volume,
        "the same volume, reattached"
    );
    let later: Vec<Value> = emu
        .calls(None)
        .await?
        .into_iter()
        .filter(|c| c["seq"].as_u64().unwrap_or(0) > lineage.same_az_since)
        .collect();
    assert!(
        !later.iter().any(|c| c["action"] == "CreateVolume"),
        "no volume created on the same-AZ path"
    );
    let attaches: Vec<&Value> = later
        .iter()
        .filter(|c| c["action"] == "AttachVolume" && c["status"] == 200)
        .collect();
    assert_eq!(attaches.len(), 1);
    assert_eq!(
        attaches[0]["params"]["InstanceId"],
        lineage.third.instance.as_str()
    );
    assert_eq!(
        attaches[0]["params"]["VolumeId"],
        lineage.second.volume.as_str()
    );
    let v3 = describe_volume(&world, &lineage.third.volume).await?;
    let att = &v3.attachments()[0];
    assert_eq!(att.instance_id(), Some(lineage.third.instance.as_str()));
    assert_eq!(att.device(), Some("/dev/sdf"));
    assert_eq!(att.state().map(|s| s.as_str()), Some("attached"));

    // 6. IAM, per call: with the shipped policy and the template's copy enforced on ferryd's key, nothing
    //    was refused, and the same-AZ claim wrote its Name tag through the retag statement.
    assert_eq!(emu.iam_denials().await?, Vec::<String>::new());
    let claim = later
        .iter()
        .find(|c| {
            c["action"] == "CreateTags"
                && c["params"]["ResourceId.1"] == lineage.second.volume.as_str()
                && calls::tag_param(c, "Name").is_some()
        })
        .expect("the same-AZ launch claimed the detached volume with CreateTags");
    let requests = claim["authz"].as_array().cloned().unwrap_or_default();
    assert_eq!(requests.len(), 2, "one per policy source: {claim}");
    for r in &requests {
        assert_eq!(r["allowed"], true, "{r}");
        assert_eq!(r["statements"][0], "RetagLedgerVolumesAndSnapshots", "{r}");
    }
    // The conformance check fails on the policy as shipped before the fix (no Name in the retag
    // statement): the same recorded calls, evaluated against it, refuse exactly that claim.
    let mut before: Value = serde_json::from_str(&std::fs::read_to_string(
        ferry_integration_tests::emulator::repo_root().join("deploy/iam/ferry-policy.json"),
    )?)?;
    for st in before["Statement"].as_array_mut().into_iter().flatten() {
        if st["Sid"] == "RetagLedgerVolumesAndSnapshots" {
            let keys = &mut st["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"];
            keys.as_array_mut()
                .expect("the retag statement lists its tag keys")
                .retain(|k| k != "Name");
        }
    }
    let recorded: Vec<Value> = emu
        .calls(None)
        .await?
        .into_iter()
        .filter(|c| c["access_key"] == FERRYD_KEY && c["status"] == 200)
        .flat_map(|c| {
            let seq = c["seq"].clone();
            let authz = c["authz"].as_array().cloned().unwrap_or_default();
            authz
                .into_iter()
                .filter(|r| r["source"] == "ferry-policy.json")
                .map(move |r| (seq.clone(), r))
        })
        .map(|(seq, mut r)| {
            r["seq"] = seq;
            r
        })
        .collect();
    assert!(
        recorded.len() > 50,
        "ferryd's calls were recorded with their authorization requests"
    );
    let verdicts = emu.iam_evaluate(&before, &recorded).await?;
    let refused: Vec<&Value> = recorded
        .iter()
        .zip(&verdicts)
        .filter(|(_, d)| d["allowed"] == false)
        .map(|(r, _)| r)
        .collect();
    assert!(!refused.is_empty(), "the pre-fix policy refuses the claim");
    for r in &refused {
        assert_eq!(r["action"], "ec2:CreateTags", "{r}");
        assert!(r["context"]["aws:TagKeys"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "Name")));
    }
    assert!(refused.iter().any(|r| r["seq"] == claim["seq"]));

    // The EIP points at the newest instance, which is InService; every action ended in CONTINUE; the queue is empty.
    assert_eq!(
        world.eip_instance().await?.as_deref(),
        Some(lineage.third.instance.as_str())
    );
    let members = world.members().await?;
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].id.as_str(), members[0].state.as_str()),
        (lineage.third.instance.as_str(), "InService")
    );
    let actions = emu.lifecycle().await?;
    assert_eq!(actions.len(), 5, "3 launches + 2 terminates: {actions:?}");
    assert!(
        actions.iter().all(|a| a["result"] == "CONTINUE"),
        "{actions:?}"
    );
    assert_eq!(world.queue_depth().await?, 0);
    // A pre-copy per terminate and one final delta for the cross-AZ move (the same-AZ path reattaches the
    // fenced volume itself), and three volumes never became four.
    assert_eq!(emu.calls(Some("CreateSnapshot")).await?.len(), 3);
    let all = world
        .ec2
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:ferry:group")
                .values("db")
                .build(),
        )
        .send()
        .await?;
    assert_eq!(
        all.volumes().len(),
        2,
        "first-boot volume and the restored one"
    );

    // The daemon's own account of it: metrics and health on the address it logged.
    let addr = metrics_addr(&log)?;
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        r#"ferry_hooks_total{transition="launch",outcome="continue"} 3"#,
        r#"ferry_hooks_total{transition="terminate",outcome="continue"} 2"#,
        r#"ferry_hooks_in_flight{transition="launch"} 0"#,
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    assert!(metrics
        .contains(r#"ferry_aws_calls_total{service="ec2",operation="CreateVolume",outcome="ok"}"#));
    assert!(
        metrics.contains(r#"ferry_recovery_point_age_seconds{group="db",slot="0",volume="data"}"#),
        "the recovery point is reported once a snapshot exists"
    );
    for path in ["healthz", "readyz"] {
        let status = http
            .get(format!("http://{addr}/{path}"))
            .send()
            .await?
            .status();
        assert_eq!(status.as_u16(), 200, "/{path}");
    }
    Ok(())
}

/// The metrics address ferryd logged (`serving /metrics, /healthz and /readyz`, JSON log lines).
fn metrics_addr(log: &Path) -> Result<String> {
    let text = std::fs::read_to_string(log)?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "serving /metrics, /healthz and /readyz")
        .and_then(|v| v["addr"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("ferryd logged no metrics address:\n{text}"))
}

async fn describe_volume(world: &World, id: &str) -> Result<aws_sdk_ec2::types::Volume> {
    let out = world.ec2.describe_volumes().volume_ids(id).send().await?;
    out.volumes()
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("volume {id} not found"))
}
