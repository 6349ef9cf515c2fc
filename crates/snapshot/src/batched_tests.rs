//! Tests of `Batched`: many hooks' reads become one call per kind, each answered as if asked alone.

use std::sync::Arc;

use ferry_state_machine::loader::LoaderConfig;

use super::*;
use crate::fake::{ledger_tags, FakeEc2};

fn world(groups: usize) -> Arc<FakeEc2> {
    let ec2 = Arc::new(FakeEc2::new());
    for g in 0..groups {
        let i = format!("i-{g}");
        ec2.add_instance(&i, "us-east-1a");
        ec2.add_attached_volume(
            &i,
            "/dev/sdf",
            10,
            &ledger_tags(&format!("g{g}"), 0, "data", 1),
        );
        ec2.add_volume(
            "us-east-1b",
            10,
            &ledger_tags(&format!("g{g}"), 0, "logs", 1),
        );
        ec2.add_address(&format!("eipalloc-{g}"), &format!("192.0.2.{g}"));
    }
    ec2
}

fn query(g: usize, logical: Option<&str>) -> VolumeQuery {
    VolumeQuery {
        group: format!("g{g}"),
        slot: Some(0),
        logical: logical.map(str::to_string),
        attached_instance: None,
    }
}

#[tokio::test(start_paused = true)]
async fn many_hooks_reads_are_one_call_per_kind_with_the_same_answers() {
    let ec2 = world(40);
    let batched = Arc::new(Batched::new(ec2.clone(), LoaderConfig::default()));
    let mut expected = Vec::new();
    for g in 0..40 {
        expected.push(
            ec2.find_volumes(&query(g, Some("data")))
                .await
                .unwrap_or_default(),
        );
    }
    ec2.clear_calls();
    let tasks: Vec<_> = (0..40)
        .map(|g| {
            let b = batched.clone();
            tokio::spawn(async move {
                let vols = b.find_volumes(&query(g, Some("data"))).await;
                let me = b.describe_instance(&format!("i-{g}")).await;
                let eip = b.describe_address(&format!("eipalloc-{g}")).await;
                (vols, me, eip)
            })
        })
        .collect();
    for (g, t) in tasks.into_iter().enumerate() {
        let Ok((vols, me, eip)) = t.await else {
            panic!("task {g} failed")
        };
        assert_eq!(vols.ok().as_ref(), Some(&expected[g]), "group {g}");
        assert_eq!(me.ok().flatten().map(|i| i.id), Some(format!("i-{g}")));
        assert_eq!(
            eip.ok().flatten().map(|a| a.public_ip),
            Some(format!("192.0.2.{g}"))
        );
    }
    assert_eq!(ec2.count("DescribeVolumes"), 1, "{:?}", ec2.calls());
    assert_eq!(ec2.count("DescribeInstances"), 1);
    assert_eq!(ec2.count("DescribeAddresses"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_read_after_a_mutation_sees_the_mutation() {
    let ec2 = world(2);
    let batched = Batched::new(ec2.clone(), LoaderConfig::default());
    let before = batched
        .find_volumes(&query(1, None))
        .await
        .unwrap_or_default();
    assert_eq!(before.len(), 2);
    let logs = before
        .iter()
        .find(|v| v.logical.as_deref() == Some("logs"))
        .map(|v| v.id.clone())
        .unwrap_or_default();
    batched.delete_volume(&logs).await.unwrap_or(());
    let after = batched
        .find_volumes(&query(1, None))
        .await
        .unwrap_or_default();
    assert_eq!(after.len(), 1, "{after:?}");
    // Unknown ids are absent, not errors.
    assert_eq!(batched.describe_instance("i-nope").await.ok(), Some(None));
}
