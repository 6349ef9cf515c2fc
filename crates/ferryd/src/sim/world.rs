//! The storm simulation's world on the in-process fakes: G groups, each with one instance in the failing AZ
//! holding its data volume and Elastic IP, and a replacement launching in the other AZ; Auto Scaling's side
//! of the fence (a completed terminate shuts the instance down after the workload's last write); and the
//! check that every group arrived with its last acknowledged write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_snapshot::fake::{ledger_tags, FakeEc2};
use ferry_snapshot::Addresses;
use ferry_state_machine::fake::FakeLifecycleActions;
use ferry_state_machine::port::{GroupInfo, GroupInstance, HookSpec};
use ferry_state_machine::{tags, LifecycleResult, Transition};
use tokio::sync::mpsc;

/// The failing AZ and the one the groups move to.
pub const FROM_AZ: &str = "us-east-1a";
/// The AZ the replacements launch in.
pub const TO_AZ: &str = "us-east-1b";
const LAUNCH_HOOK: &str = "ferry-launch";
const TERMINATE_HOOK: &str = "ferry-terminate";

/// The names of group `g`'s resources.
pub struct Names {
    /// The Auto Scaling group.
    pub group: String,
    /// The instance leaving the failing AZ.
    pub old: String,
    /// Its replacement.
    pub new: String,
    /// The Elastic IP's allocation.
    pub eip: String,
}

impl Names {
    /// Group `g`'s names.
    pub fn of(g: usize) -> Self {
        let group = format!("storm-{g:05}");
        Self {
            old: format!("i-{g:05}a"),
            new: format!("i-{g:05}b"),
            eip: format!("eipalloc-{g:05}"),
            group,
        }
    }

    /// The last write the workload acknowledged on the old instance before it stopped.
    pub fn last_write(g: usize) -> u64 {
        1_000_000 + g as u64
    }
}

/// A hook notification as Auto Scaling sends it to SQS.
pub fn hook_message(n: &Names, transition: Transition) -> String {
    let (hook, instance, aws) = match transition {
        Transition::Launching => (LAUNCH_HOOK, &n.new, "autoscaling:EC2_INSTANCE_LAUNCHING"),
        Transition::Terminating => (
            TERMINATE_HOOK,
            &n.old,
            "autoscaling:EC2_INSTANCE_TERMINATING",
        ),
    };
    serde_json::json!({
        "LifecycleHookName": hook,
        "AccountId": "123456789012",
        "RequestId": format!("req-{instance}"),
        "LifecycleTransition": aws,
        "AutoScalingGroupName": n.group,
        "Service": "AWS Auto Scaling",
        "EC2InstanceId": instance,
        "LifecycleActionToken": format!("tok-{instance}"),
    })
    .to_string()
}

/// Builds G groups on the fakes, each as Auto Scaling has it once the AZ fails: the old instance in
/// `Terminating:Wait` with its data, the replacement in `Pending:Wait`.
pub async fn build(groups: usize, ec2: &FakeEc2, asg: &FakeLifecycleActions, heartbeat: Duration) {
    for g in 0..groups {
        let n = Names::of(g);
        for (name, t) in [
            (LAUNCH_HOOK, Transition::Launching),
            (TERMINATE_HOOK, Transition::Terminating),
        ] {
            asg.put_hook(
                &n.group,
                HookSpec {
                    name: name.into(),
                    transition: Some(t),
                    heartbeat_timeout: heartbeat,
                    default_result: LifecycleResult::Abandon,
                    target_arn: None,
                },
            );
        }
        asg.put_group(GroupInfo {
            name: n.group.clone(),
            tags: [(tags::MANAGED.to_string(), "true".to_string())].into(),
            availability_zones: vec![FROM_AZ.into(), TO_AZ.into()],
            instances: Vec::new(),
            capacity: (1, 2, 1),
            maintenance_policy: None,
            terminate_hook_abandon: None,
            has_warm_pool: false,
        });
        ec2.add_instance(&n.old, FROM_AZ);
        ec2.add_instance(&n.new, TO_AZ);
        let vol = ec2.add_attached_volume(
            &n.old,
            "/dev/sdf",
            100,
            &ledger_tags(&n.group, 0, "data", 1),
        );
        let _ = ec2.write(&vol, Names::last_write(g) - 1);
        ec2.add_address(&n.eip, &format!("198.51.{}.{}", g / 250, g % 250));
        // The old instance holds the Elastic IP before the failover.
        let _ = ec2.associate_address(&n.eip, &n.old).await;
        for (id, az, state) in [
            (&n.old, FROM_AZ, "Terminating:Wait"),
            (&n.new, TO_AZ, "Pending:Wait"),
        ] {
            asg.put_instance(GroupInstance {
                instance_id: id.clone(),
                group: n.group.clone(),
                availability_zone: az.into(),
                lifecycle_state: state.into(),
                health_status: "Healthy".into(),
            });
        }
        asg.open_action(&n.group, TERMINATE_HOOK, &n.old, &format!("tok-{}", n.old));
        asg.open_action(&n.group, LAUNCH_HOOK, &n.new, &format!("tok-{}", n.new));
    }
}

/// Auto Scaling's half of the fence: told of each completed terminate, the workload's last write lands,
/// then the instance shuts down and, `shutdown` later, terminates (EC2 detaches its data volume).
pub async fn fence(
    ec2: Arc<FakeEc2>,
    mut completed: mpsc::UnboundedReceiver<String>,
    shutdown: Duration,
) {
    while let Some(old) = completed.recv().await {
        let ec2 = ec2.clone();
        tokio::spawn(async move {
            if let Some(g) = old.strip_prefix("i-").and_then(|s| s.strip_suffix('a')) {
                if let Ok(g) = g.parse::<usize>() {
                    // The last write acknowledged before the instance stopped: after the pre-copy.
                    let _ = ec2.write_instance(&old, Names::last_write(g));
                }
            }
            ec2.set_instance_state(&old, "shutting-down");
            tokio::time::sleep(shutdown).await;
            ec2.set_instance_state(&old, "terminated");
        });
    }
}

/// What a completion does to the group in the simulation: a terminate's CONTINUE starts the fence (sent on
/// `fenced`); a launch's CONTINUE puts the replacement in service.
pub fn complete_moves_the_group(asg: &FakeLifecycleActions, fenced: mpsc::UnboundedSender<String>) {
    let fake = asg.clone();
    asg.on_complete(move |action, result| {
        let state = match (action.hook_name == TERMINATE_HOOK, result) {
            (true, _) => "Terminating:Proceed",
            (false, LifecycleResult::Continue) => "InService",
            (false, LifecycleResult::Abandon) => "Terminating",
        };
        if let Some(mut i) = fake.instance(&action.instance_id) {
            i.lifecycle_state = state.into();
            fake.put_instance(i);
        }
        if action.hook_name == TERMINATE_HOOK {
            let _ = fenced.send(action.instance_id.clone());
        }
    });
}

/// The groups that did not arrive: whose replacement is not in service, or has no data volume attached in
/// the new AZ holding the last acknowledged write, or does not hold the Elastic IP.
pub fn lost(groups: usize, ec2: &FakeEc2, asg: &FakeLifecycleActions) -> Vec<String> {
    let mut data: HashMap<String, u64> = HashMap::new();
    for v in ec2.volumes() {
        if v.tag(tags::VOLUME) != Some("data") || v.availability_zone != TO_AZ {
            continue;
        }
        if let Some(a) = &v.attachment {
            data.insert(a.instance_id.clone(), v.content);
        }
    }
    let in_service: HashMap<String, bool> = asg
        .instances()
        .into_iter()
        .map(|i| (i.instance_id.clone(), i.lifecycle_state == "InService"))
        .collect();
    (0..groups)
        .filter(|&g| {
            let n = Names::of(g);
            let ok = in_service.get(&n.new).copied().unwrap_or(false)
                && data.get(&n.new) == Some(&Names::last_write(g))
                && ec2.address(&n.eip).and_then(|a| a.instance_id).as_deref()
                    == Some(n.new.as_str());
            !ok
        })
        .map(|g| Names::of(g).group)
        .collect()
}
