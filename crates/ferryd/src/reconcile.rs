//! Start-up and periodic reconciliation: finds managed groups' instances waiting on a lifecycle action
//! (`Pending:Wait`, `Terminating:Wait`, `ReplacingRootVolume:Wait`, and the warm pool's `Warmed:*:Wait`)
//! through the group's state, and works their hooks even when no message arrives (lost, dead-lettered, or
//! held by a crashed process). Completion is by instance id. An instance in `Warmed:Pending:Wait` may wait
//! on a launch (into the pool) or a terminate (back into it): both are worked, since completing the hook
//! that is not waiting finds no active action and changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_hook_listener::{Admission, HookHandler};
use ferry_state_machine::path::transitions_waiting_in;
use ferry_state_machine::{HookEvent, LifecycleActions};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn, Instrument};

/// Finds the lifecycle actions ferry should be working.
pub struct Reconciler {
    asg: Arc<dyn LifecycleActions>,
    groups: Vec<String>,
    /// The hook queue's ARN: hooks that target it are ferry's. `None`: a transition's only hook is.
    queue_arn: Option<String>,
}

impl Reconciler {
    /// A reconciler of `groups`.
    pub fn new(
        asg: Arc<dyn LifecycleActions>,
        groups: Vec<String>,
        queue_arn: Option<String>,
    ) -> Self {
        Self {
            asg,
            groups,
            queue_arn,
        }
    }

    /// The actions waiting now in the configured groups, one per (instance, ferry hook).
    pub async fn waiting(&self) -> Vec<HookEvent> {
        let mut found = Vec::new();
        for group in &self.groups {
            let info = match self.asg.describe_group(group).await {
                Ok(Some(info)) => info,
                Ok(None) => {
                    warn!(asg = %group, "reconcile: configured group does not exist");
                    continue;
                }
                Err(e) => {
                    warn!(asg = %group, error = %e, "reconcile: cannot describe group");
                    continue;
                }
            };
            // Warm instances are not members (DescribeAutoScalingGroups leaves them out): read the pool.
            let mut instances = info.instances;
            if info.has_warm_pool {
                match self.asg.describe_warm_pool(group).await {
                    Ok(Some(pool)) => instances.extend(pool.instances),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(asg = %group, error = %e, "reconcile: cannot describe the warm pool")
                    }
                }
            }
            let waiting: Vec<_> = instances
                .iter()
                .flat_map(|i| {
                    transitions_waiting_in(&i.lifecycle_state)
                        .into_iter()
                        .map(|t| (i.instance_id.clone(), t))
                })
                .collect();
            if waiting.is_empty() {
                continue;
            }
            let hooks = match self.asg.describe_hooks(group).await {
                Ok(h) => h,
                Err(e) => {
                    warn!(asg = %group, error = %e, "reconcile: cannot describe lifecycle hooks");
                    continue;
                }
            };
            for (instance, transition) in waiting {
                let of_transition: Vec<_> = hooks
                    .iter()
                    .filter(|h| h.transition == Some(transition))
                    .collect();
                let ours: Vec<_> = match &self.queue_arn {
                    Some(arn) => of_transition
                        .iter()
                        .filter(|h| h.target_arn.as_deref() == Some(arn.as_str()))
                        .collect(),
                    None if of_transition.len() == 1 => of_transition.iter().collect(),
                    None => Vec::new(),
                };
                for h in ours {
                    found.push(HookEvent::reconciled(group, &h.name, &instance, transition));
                }
            }
        }
        found
    }

    /// Reconciles now and then every `every` (never when zero), until `shutdown`.
    pub async fn run(
        self,
        handler: Arc<dyn HookHandler>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tasks = JoinSet::new();
        // The actions with a run in progress, by the task working them.
        let mut started: HashMap<tokio::task::Id, (String, &'static str)> = HashMap::new();
        loop {
            for hook in self.waiting().await {
                let key = (hook.instance_id.clone(), hook.transition.label());
                if started.values().any(|k| *k == key)
                    || !matches!(handler.admit(&hook).await, Admission::Work)
                {
                    continue;
                }
                info!(asg = %hook.group, instance.id = %hook.instance_id, transition = %hook.transition, "reconcile: working a waiting lifecycle action found without a message");
                let (h, rx) = (handler.clone(), shutdown.clone());
                let span = ferry_hook_listener::hook_span(&hook);
                let task = tasks.spawn(async move { h.handle(hook, rx).await }.instrument(span));
                started.insert(task.id(), key);
            }
            // Forget finished runs, so a later round picks an action up again if it still waits.
            while let Some(done) = tasks.try_join_next_with_id() {
                let id = match done {
                    Ok((id, _)) => id,
                    Err(e) => {
                        warn!(error = %e, "reconcile: a hook task failed");
                        e.id()
                    }
                };
                started.remove(&id);
            }
            if every.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
