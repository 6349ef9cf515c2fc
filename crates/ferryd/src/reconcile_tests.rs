//! Reconciliation finds waiting actions of ferry's hooks only.

use super::*;
use ferry_state_machine::fake::FakeLifecycleActions;
use ferry_state_machine::port::{GroupInfo, GroupInstance, HookSpec};
use ferry_state_machine::{LifecycleResult, Transition};

fn member(id: &str, state: &str) -> GroupInstance {
    GroupInstance {
        instance_id: id.into(),
        group: "db".into(),
        availability_zone: "us-east-1a".into(),
        lifecycle_state: state.into(),
        health_status: "Healthy".into(),
    }
}

fn hook(name: &str, t: Transition, target: &str) -> HookSpec {
    HookSpec {
        name: name.into(),
        transition: Some(t),
        heartbeat_timeout: Duration::from_secs(300),
        default_result: LifecycleResult::Abandon,
        target_arn: Some(target.into()),
    }
}

#[tokio::test]
async fn finds_waiting_instances_of_ferrys_hooks() {
    let fake = FakeLifecycleActions::default();
    fake.put_group(GroupInfo {
        name: "db".into(),
        instances: vec![
            member("i-up", "InService"),
            member("i-new", "Pending:Wait"),
            member("i-old", "Terminating:Wait"),
        ],
        ..GroupInfo::default()
    });
    fake.put_hook("db", hook("ferry-launch", Transition::Launching, "arn:q"));
    fake.put_hook(
        "db",
        hook("ferry-terminate", Transition::Terminating, "arn:q"),
    );
    fake.put_hook(
        "db",
        hook("other-launch", Transition::Launching, "arn:other"),
    );
    let r = Reconciler::new(
        Arc::new(fake),
        vec!["db".into(), "missing".into()],
        Some("arn:q".into()),
    );
    let mut found: Vec<(String, String, Transition)> = r
        .waiting()
        .await
        .into_iter()
        .map(|h| {
            assert!(
                h.action().token.is_none(),
                "reconciled actions complete by instance id"
            );
            (h.instance_id, h.hook_name, h.transition)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        vec![
            (
                "i-new".to_string(),
                "ferry-launch".to_string(),
                Transition::Launching
            ),
            (
                "i-old".to_string(),
                "ferry-terminate".to_string(),
                Transition::Terminating
            ),
        ]
    );
}

#[tokio::test]
async fn without_the_queue_arn_only_an_unambiguous_hook_is_taken() {
    let fake = FakeLifecycleActions::default();
    fake.put_group(GroupInfo {
        name: "db".into(),
        instances: vec![
            member("i-new", "Pending:Wait"),
            member("i-old", "Terminating:Wait"),
        ],
        ..GroupInfo::default()
    });
    fake.put_hook("db", hook("a", Transition::Launching, "arn:1"));
    fake.put_hook("db", hook("b", Transition::Launching, "arn:2"));
    fake.put_hook("db", hook("t", Transition::Terminating, "arn:1"));
    let r = Reconciler::new(Arc::new(fake), vec!["db".into()], None);
    let found = r.waiting().await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].instance_id, "i-old");
}

#[tokio::test]
async fn finds_root_volume_and_warm_pool_waits_too() {
    let fake = FakeLifecycleActions::default();
    fake.put_group(GroupInfo {
        name: "db".into(),
        instances: vec![member("i-root", "ReplacingRootVolume:Wait")],
        has_warm_pool: true,
        ..GroupInfo::default()
    });
    fake.put_warm_pool(
        "db",
        ferry_state_machine::WarmPool {
            pool_state: "Stopped".into(),
            instances: vec![
                member("i-warm", "Warmed:Pending:Wait"),
                member("i-drain", "Warmed:Terminating:Wait"),
                member("i-idle", "Warmed:Stopped"),
            ],
            ..Default::default()
        },
    );
    fake.put_hook("db", hook("ferry-launch", Transition::Launching, "arn:q"));
    fake.put_hook(
        "db",
        hook("ferry-terminate", Transition::Terminating, "arn:q"),
    );
    let r = Reconciler::new(Arc::new(fake), vec!["db".into()], Some("arn:q".into()));
    let mut found: Vec<(String, Transition)> = r
        .waiting()
        .await
        .into_iter()
        .map(|h| (h.instance_id, h.transition))
        .collect();
    found.sort_by(|a, b| (a.0.as_str(), a.1.label()).cmp(&(b.0.as_str(), b.1.label())));
    assert_eq!(
        found,
        [
            ("i-drain".to_string(), Transition::Terminating),
            ("i-root".to_string(), Transition::Terminating),
            // A fill or a return: both hooks are worked; only the waiting one completes.
            ("i-warm".to_string(), Transition::Launching),
            ("i-warm".to_string(), Transition::Terminating),
        ]
    );
}
