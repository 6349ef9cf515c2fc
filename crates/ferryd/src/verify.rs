//! Messages are claims, not facts: before a hook is worked, Auto Scaling must confirm that the instance is in
//! the named group, in the wait state its transition implies, and that the hook is one of the group's hooks.

use ferry_state_machine::path::wait_states;
use ferry_state_machine::{GroupInstance, HookEvent, HookSpec, LifecycleActions, Place, StepError};

/// Why Auto Scaling does not confirm a hook message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconfirmed {
    /// Which check failed, for the metric label: `unknown_instance`, `wrong_group`, `wrong_state`,
    /// `unknown_hook` or `wrong_transition`.
    pub check: &'static str,
    /// What was found, naming the instance, group, hook and state.
    pub reason: String,
}

/// The instance exists in Auto Scaling, in the named group, waiting on an action of the transition.
fn check_instance(hook: &HookEvent, instance: Option<&GroupInstance>) -> Result<(), Unconfirmed> {
    let fail = |check, reason| Err(Unconfirmed { check, reason });
    let Some(instance) = instance else {
        return fail(
            "unknown_instance",
            format!(
                "instance {} is not known to Auto Scaling (terminated long ago, or never existed)",
                hook.instance_id
            ),
        );
    };
    if instance.group != hook.group {
        return fail(
            "wrong_group",
            format!(
                "instance {} belongs to group {:?}, not {:?}",
                hook.instance_id, instance.group, hook.group
            ),
        );
    }
    let want = wait_states(hook.transition);
    if !want.contains(&instance.lifecycle_state.as_str()) {
        return fail(
            "wrong_state",
            format!(
                "instance {} is {} in group {:?}, not waiting on a {} hook ({})",
                hook.instance_id,
                instance.lifecycle_state,
                hook.group,
                hook.transition,
                want.join(" or ")
            ),
        );
    }
    Ok(())
}

/// The hook is one of the group's hooks, of the message's transition.
fn check_hook(hook: &HookEvent, spec: Option<&HookSpec>) -> Result<(), Unconfirmed> {
    let Some(spec) = spec else {
        return Err(Unconfirmed {
            check: "unknown_hook",
            reason: format!(
                "lifecycle hook {:?} is not a hook of group {:?}",
                hook.hook_name, hook.group
            ),
        });
    };
    if spec.transition != Some(hook.transition) {
        return Err(Unconfirmed {
            check: "wrong_transition",
            reason: format!(
                "lifecycle hook {:?} of group {:?} is not a {} hook",
                hook.hook_name, hook.group, hook.transition
            ),
        });
    }
    Ok(())
}

/// Whether the message says the instance comes from or goes to the warm pool.
fn claims_warm_pool(hook: &HookEvent) -> bool {
    hook.origin == Some(Place::WarmPool) || hook.destination == Some(Place::WarmPool)
}

/// The instance among the named group's warm instances (`DescribeWarmPool`), for a warm-pool message whose
/// instance `DescribeAutoScalingInstances` did not list: the warm pool's own view decides then.
async fn warm_instance(
    asg: &dyn LifecycleActions,
    hook: &HookEvent,
) -> Result<Option<GroupInstance>, StepError> {
    let Some(pool) = asg.describe_warm_pool(&hook.group).await? else {
        return Ok(None);
    };
    Ok(pool
        .instances
        .into_iter()
        .find(|i| i.instance_id == hook.instance_id))
}

/// Asks Auto Scaling (`DescribeAutoScalingInstances`, then `DescribeLifecycleHooks` only if the instance
/// checks out) and checks the claim. `Ok(Ok(state))` carries the confirmed lifecycle state, which decides
/// the hook's path. `Err` when Auto Scaling cannot be asked now: the message is left on the queue.
pub async fn confirm(
    asg: &dyn LifecycleActions,
    hook: &HookEvent,
) -> Result<Result<String, Unconfirmed>, StepError> {
    let mut instance = asg.describe_instance(&hook.instance_id).await?;
    if instance.is_none() && claims_warm_pool(hook) {
        instance = warm_instance(asg, hook).await?;
    }
    if let Err(u) = check_instance(hook, instance.as_ref()) {
        return Ok(Err(u));
    }
    let spec = asg.describe_hook(&hook.group, &hook.hook_name).await?;
    Ok(check_hook(hook, spec.as_ref())
        .map(|()| instance.map(|i| i.lifecycle_state).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_state_machine::Transition;
    use std::time::Duration;

    /// Both checks, in the order `confirm` makes them.
    fn check(
        hook: &HookEvent,
        instance: Option<&GroupInstance>,
        spec: Option<&HookSpec>,
    ) -> Result<(), Unconfirmed> {
        check_instance(hook, instance)?;
        check_hook(hook, spec)
    }

    fn hook(transition: Transition) -> HookEvent {
        let mut h = HookEvent::reconciled("db", "ferry-launch", "i-1", transition);
        h.token = "tok".into();
        h
    }
    fn inst(group: &str, state: &str) -> GroupInstance {
        GroupInstance {
            instance_id: "i-1".into(),
            group: group.into(),
            availability_zone: "us-east-1a".into(),
            lifecycle_state: state.into(),
            health_status: "Healthy".into(),
        }
    }
    fn spec(t: Transition) -> HookSpec {
        HookSpec {
            name: "ferry-launch".into(),
            transition: Some(t),
            heartbeat_timeout: Duration::from_secs(300),
            default_result: ferry_state_machine::LifecycleResult::Abandon,
            target_arn: None,
        }
    }

    #[test]
    fn a_waiting_instance_of_the_group_with_a_real_hook_is_confirmed() {
        let (l, t) = (Transition::Launching, Transition::Terminating);
        assert_eq!(
            check(&hook(l), Some(&inst("db", "Pending:Wait")), Some(&spec(l))),
            Ok(())
        );
        assert_eq!(
            check(
                &hook(t),
                Some(&inst("db", "Terminating:Wait")),
                Some(&spec(t))
            ),
            Ok(())
        );
    }

    #[test]
    fn warm_pool_and_root_volume_waits_are_confirmed_for_their_transitions() {
        let (l, t) = (Transition::Launching, Transition::Terminating);
        for (tr, state) in [
            (l, "Warmed:Pending:Wait"),
            (t, "Warmed:Pending:Wait"),
            (t, "Warmed:Terminating:Wait"),
            (t, "ReplacingRootVolume:Wait"),
        ] {
            assert_eq!(
                check(&hook(tr), Some(&inst("db", state)), Some(&spec(tr))),
                Ok(()),
                "{tr} {state}"
            );
        }
        let got = check(
            &hook(l),
            Some(&inst("db", "ReplacingRootVolume:Wait")),
            Some(&spec(l)),
        );
        assert_eq!(got.unwrap_err().check, "wrong_state");
    }

    #[test]
    fn every_failed_check_is_named() {
        let t = Transition::Terminating;
        let cases = [
            (None, Some(spec(t)), "unknown_instance"),
            (
                Some(inst("other", "Terminating:Wait")),
                Some(spec(t)),
                "wrong_group",
            ),
            // The forged terminate for the live instance.
            (Some(inst("db", "InService")), Some(spec(t)), "wrong_state"),
            (
                Some(inst("db", "Pending:Wait")),
                Some(spec(t)),
                "wrong_state",
            ),
            (Some(inst("db", "Terminating:Wait")), None, "unknown_hook"),
            (
                Some(inst("db", "Terminating:Wait")),
                Some(spec(Transition::Launching)),
                "wrong_transition",
            ),
        ];
        for (i, s, want) in cases {
            let got = check(&hook(t), i.as_ref(), s.as_ref()).unwrap_err();
            assert_eq!(got.check, want, "{}", got.reason);
            assert!(got.reason.contains("i-1") || got.reason.contains("ferry-launch"));
        }
    }

    #[tokio::test]
    async fn a_warm_instance_missing_from_the_instance_list_is_confirmed_from_its_pool() {
        use ferry_state_machine::fake::FakeLifecycleActions;
        let asg = FakeLifecycleActions::default();
        asg.put_hook("db", spec(Transition::Terminating));
        asg.put_warm_pool(
            "db",
            ferry_state_machine::WarmPool {
                instances: vec![inst("db", "Warmed:Pending:Wait")],
                ..Default::default()
            },
        );
        let mut h = hook(Transition::Terminating);
        assert_eq!(
            confirm(&asg, &h).await.unwrap().unwrap_err().check,
            "unknown_instance",
            "no claim of the pool: not looked up there"
        );
        h.destination = Some(Place::WarmPool);
        assert_eq!(
            confirm(&asg, &h).await.unwrap(),
            Ok("Warmed:Pending:Wait".to_string())
        );
    }
}
