//! Poison messages: 100 bodies ferry cannot act on (not JSON, unknown transitions, truncated JSON, a 200 KB
//! field, invalid escapes and lone surrogates, arrays, broken SNS and EventBridge envelopes, hooks of groups
//! ferry does not manage) are sent to the hook queue before, during and after a real failover. Every valid
//! hook must complete correctly, and every poison message must end in the dead-letter queue, untouched by
//! ferry: it never deletes them.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_integration_tests::scenario::{
    action_of, actions, check_common, depth, in_service, ledger_key, ok_calls, receive, send, tag,
    Rig, STEP,
};
use ferry_integration_tests::workload::{check_holds, Writer};
use ferry_integration_tests::world::{wait_for, WorldOptions, AZ_A, AZ_B};
use serde_json::{json, Value};

/// A well-formed launch hook body with these fields replaced.
fn hook(i: usize, overrides: Value) -> Value {
    let mut h = json!({
        "Origin": "EC2",
        "Destination": "AutoScalingGroup",
        "LifecycleHookName": "ferry-launch",
        "AccountId": "123456789012",
        "RequestId": format!("req-{i}"),
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        "AutoScalingGroupName": "db",
        "Service": "AWS Auto Scaling",
        "Time": "2026-01-01T00:00:00.000Z",
        "EC2InstanceId": format!("i-{i:017x}"),
        "LifecycleActionToken": format!("00000000-0000-0000-0000-{i:012}")
    });
    if let (Some(h), Some(o)) = (h.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            h.insert(k.clone(), v.clone());
        }
    }
    h
}

/// The i-th poison body. Each is unique (it carries i), so the dead-letter queue can be checked body by body.
fn poison(i: usize) -> String {
    let valid = hook(i, json!({})).to_string();
    match i % 16 {
        0 => format!("not json at all #{i}"),
        1 => hook(
            i,
            json!({"LifecycleTransition": "autoscaling:EC2_INSTANCE_REBOOTING"}),
        )
        .to_string(),
        2 => valid[..valid.len() / 2].to_string(),
        3 if i < 40 => {
            // A 200 KB token (twice in the mix; SQS takes up to 256 KB).
            hook(i, json!({"LifecycleActionToken": "x".repeat(200 * 1024)})).to_string()
        }
        3 => hook(i, json!({"EC2InstanceId": "i".repeat(4000)})).to_string(),
        4 => valid.replace("\"i-", "\"\\ud800i-"),
        5 => valid.replace("\"req-", "\"\\qreq-"),
        6 => format!("[{valid}]"),
        7 => format!("[1, 2, {i}]"),
        8 => json!({"Type": "Notification", "MessageId": format!("m-{i}"), "Message": "{not json"})
            .to_string(),
        9 => json!({
            "Type": "Notification",
            "Message": json!({"Type": "Notification", "Message": valid}).to_string()
        })
        .to_string(),
        10 => json!({
            "detail-type": "EC2 Instance-launch Lifecycle Action",
            "id": i,
            "detail": "not an object"
        })
        .to_string(),
        11 => {
            json!({"LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING", "n": i}).to_string()
        }
        12 => hook(i, json!({"LifecycleActionToken": i})).to_string(),
        13 => format!("{}{}{i}", "[".repeat(300), "]".repeat(300)),
        14 => json!({"unknown": "shape", "n": i}).to_string(),
        // A hook of a group ferry is not configured for: left for another consumer, not deleted.
        _ => hook(i, json!({"AutoScalingGroupName": format!("not-ours-{i}")})).to_string(),
    }
}

async fn send_all(rig: &Rig, range: std::ops::Range<usize>) -> Result<()> {
    for i in range {
        send(&rig.world, &poison(i), 0)
            .await
            .with_context(|| format!("sending poison #{i}"))?;
    }
    Ok(())
}

async fn scenario(rig: &mut Rig) -> Result<()> {
    let _ferryd = rig.ferryd(&[])?;
    send_all(rig, 0..40).await?;
    rig.emu.place(&rig.world.group, Some(AZ_A)).await?;
    rig.world.scale_to_one().await?;
    send_all(rig, 40..70).await?;
    let m1 = in_service(&rig.world, &[]).await?;
    let writer = Writer::start(&rig.emu, &m1.id, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.emu.place(&rig.world.group, Some(AZ_B)).await?;
    rig.world.terminate(&m1.id).await?;
    send_all(rig, 70..100).await?;
    let m2 = in_service(&rig.world, &[&m1.id]).await?;
    let (last, _) = writer.finished(STEP).await?;
    ensure!(m2.az == AZ_B, "replacement in {}", m2.az);

    // Five receives each (5 s visibility), then the redrive policy moves them.
    let world = &rig.world;
    wait_for(
        "every poison message to reach the dead-letter queue",
        Duration::from_secs(150),
        || async {
            let (q, dlq) = (
                depth(world, &world.queue_url).await?,
                depth(world, &world.dlq_url).await?,
            );
            Ok((q == 0 && dlq == 100).then_some(()))
        },
    )
    .await?;

    // Exactly the 100 bodies, each received at least 5 times from the hook queue.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + STEP;
    while got.len() < 100 && tokio::time::Instant::now() < deadline {
        for m in receive(world, &world.dlq_url, 1, 300).await? {
            ensure!(
                m.receive_count >= 5,
                "a dead-lettered message was received only {} times",
                m.receive_count
            );
            world
                .sqs
                .delete_message()
                .queue_url(&world.dlq_url)
                .receipt_handle(&m.receipt)
                .send()
                .await?;
            got.push(m.body);
        }
    }
    let want: BTreeSet<String> = (0..100).map(poison).collect();
    let have: BTreeSet<String> = got.iter().cloned().collect();
    ensure!(
        got.len() == 100 && have == want,
        "dead-letter queue held {} messages; missing {} poison bodies",
        got.len(),
        want.difference(&have).count()
    );

    // ferry deleted only the hook messages and test notifications: 3 hooks + 2 test notifications.
    let mut deleted = BTreeSet::new();
    for c in ok_calls(&rig.emu, "DeleteMessage", 0)
        .await?
        .into_iter()
        .chain(ok_calls(&rig.emu, "DeleteMessageBatch", 0).await?)
    {
        let p = c["params"].as_object().cloned().unwrap_or_default();
        if p.get("QueueUrl").and_then(Value::as_str) != Some(world.queue_url.as_str()) {
            continue;
        }
        for (k, v) in p {
            if k.ends_with("ReceiptHandle") {
                deleted.insert(v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    ensure!(
        deleted.len() <= 5,
        "ferry deleted {} messages from the hook queue; only 5 were valid: {deleted:?}",
        deleted.len()
    );
    // ferry completed no action of a group it does not manage, and none it made up from poison.
    let all = actions(&rig.emu).await?;
    let known: BTreeSet<&str> = all.iter().map(|a| a.token.as_str()).collect();
    for c in rig.emu.calls(Some("CompleteLifecycleAction")).await? {
        let p = &c["params"];
        let token = p["LifecycleActionToken"].as_str().unwrap_or("");
        // A reconciled run completes by instance id, without a token.
        let by_instance = token.is_empty()
            && all.iter().any(|a| {
                p["InstanceId"] == a.instance.as_str() && p["LifecycleHookName"] == a.hook.as_str()
            });
        ensure!(
            known.contains(token) || by_instance,
            "completion of an unknown action: {c}"
        );
    }

    // The failover itself: 3 actions, the restore attached in AZ b with the last acknowledged write.
    ensure!(all.len() == 3, "actions: {all:?}");
    let launch2 = action_of(&all, &m2.id, true)?;
    let inv = rig.inventory().await?;
    // The pre-copy, and the final delta of the fenced volume, which is what was restored.
    ensure!(inv.snapshots.len() == 2, "snapshots {:?}", inv.snapshots);
    let fin = inv
        .snapshots
        .iter()
        .find(|s| tag(s.tags(), "ferry:reason").as_deref() == Some("final"))
        .context("no final delta")?;
    ensure!(
        inv.ferry_volumes.len() == 2,
        "volumes {:?}",
        inv.ferry_volumes
    );
    let held = inv.attached_to(&m2.id);
    ensure!(held.len() == 1, "attached to {}: {held:?}", m2.id);
    ensure!(held[0].availability_zone() == Some(AZ_B));
    ensure!(held[0].snapshot_id() == fin.snapshot_id());
    check_holds(&rig.emu, &rig.world, &m2.id, last).await?;
    ensure!(tag(held[0].tags(), "ferry:hook") == Some(ledger_key(&launch2.instance, true)));
    check_common(rig, &inv, &m2.id, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_hooks_still_complete() -> Result<()> {
    let opts = WorldOptions {
        visibility_timeout: 5,
        ..WorldOptions::default()
    };
    let settings = ferry_integration_tests::emulator::fast_timings();
    let mut rig = Rig::new(Path::new(env!("CARGO_BIN_EXE_ferryd")), &opts, settings).await?;
    let res = scenario(&mut rig).await;
    rig.explain(res)
}
