//! An in-memory `LifecycleActions` that keeps state and records calls, and a fault-injecting wrapper.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::StepError;
use crate::model::{ActionRef, LifecycleResult};
use crate::port::{
    CompleteOutcome, GroupInfo, GroupInstance, HookSpec, LifecycleActions, WarmPool,
};

/// One completion the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The instance.
    pub instance_id: String,
    /// The result.
    pub result: LifecycleResult,
}

#[derive(Debug, Default)]
struct State {
    hooks: HashMap<(String, String), HookSpec>,
    /// token -> (group, hook, instance)
    active: HashMap<String, (String, String, String)>,
    completions: Vec<Completion>,
    heartbeats: HashMap<String, u32>,
    instances: HashMap<String, GroupInstance>,
    groups: HashMap<String, GroupInfo>,
    /// Groups with an instance refresh in progress.
    refreshing: std::collections::HashSet<String>,
    warm_pools: HashMap<String, WarmPool>,
    calls: Vec<String>,
}

/// What a completion does besides ending the action (a simulation's group moving on).
type OnComplete = Arc<dyn Fn(&ActionRef, LifecycleResult) + Send + Sync>;

/// In-memory Auto Scaling: hooks, active actions, instances and groups, with every call recorded.
#[derive(Clone, Default)]
pub struct FakeLifecycleActions {
    state: Arc<Mutex<State>>,
    on_complete: Arc<Mutex<Option<OnComplete>>>,
}

impl std::fmt::Debug for FakeLifecycleActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLifecycleActions")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl FakeLifecycleActions {
    /// Calls `f` after every accepted completion, outside the fake's lock (so it may change the fake).
    pub fn on_complete(&self, f: impl Fn(&ActionRef, LifecycleResult) + Send + Sync + 'static) {
        *self.on_complete.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(f));
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// Declares a lifecycle hook.
    pub fn put_hook(&self, group: &str, spec: HookSpec) {
        self.with(|s| s.hooks.insert((group.to_string(), spec.name.clone()), spec));
    }

    /// Opens an action that `complete` and `heartbeat` will accept.
    pub fn open_action(&self, group: &str, hook: &str, instance_id: &str, token: &str) {
        self.with(|s| {
            s.active.insert(
                token.to_string(),
                (group.to_string(), hook.to_string(), instance_id.to_string()),
            )
        });
    }

    /// Ends an action as if it expired.
    pub fn expire_action(&self, token: &str) {
        self.with(|s| s.active.remove(token));
    }

    /// Sets what `describe_instance` says about an instance.
    pub fn put_instance(&self, instance: GroupInstance) {
        self.with(|s| s.instances.insert(instance.instance_id.clone(), instance));
    }

    /// Sets what `describe_warm_pool` says about a group's pool.
    pub fn put_warm_pool(&self, group: &str, pool: WarmPool) {
        self.with(|s| s.warm_pools.insert(group.to_string(), pool));
    }

    /// Starts or ends an instance refresh of `group` (`instance_refresh_active`).
    pub fn set_refreshing(&self, group: &str, refreshing: bool) {
        self.with(|s| {
            if refreshing {
                s.refreshing.insert(group.to_string())
            } else {
                s.refreshing.remove(group)
            }
        });
    }

    /// Sets what `describe_group` says about a group.
    pub fn put_group(&self, group: GroupInfo) {
        self.with(|s| s.groups.insert(group.name.clone(), group));
    }

    /// The completions accepted so far, in order.
    pub fn completions(&self) -> Vec<Completion> {
        self.with(|s| s.completions.clone())
    }

    /// How many actions were completed (without copying them, for a caller that polls).
    pub fn completed(&self) -> usize {
        self.with(|s| s.completions.len())
    }

    /// Heartbeats recorded for a token.
    pub fn heartbeats(&self, token: &str) -> u32 {
        self.with(|s| s.heartbeats.get(token).copied().unwrap_or(0))
    }

    /// Every instance `describe_instance` knows, in no order.
    pub fn instances(&self) -> Vec<GroupInstance> {
        self.with(|s| s.instances.values().cloned().collect())
    }

    /// One instance as the fake has it, without recording a call.
    pub fn instance(&self, instance_id: &str) -> Option<GroupInstance> {
        self.with(|s| s.instances.get(instance_id).cloned())
    }

    /// Every call made, as `Operation` names, in order.
    pub fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }

    fn find(s: &State, action: &ActionRef) -> Option<String> {
        match &action.token {
            Some(t) => s.active.contains_key(t).then(|| t.clone()),
            None => s
                .active
                .iter()
                .find(|(_, (g, h, i))| {
                    g == &action.group && h == &action.hook_name && i == &action.instance_id
                })
                .map(|(t, _)| t.clone()),
        }
    }
}

#[async_trait]
impl LifecycleActions for FakeLifecycleActions {
    async fn describe_hook(&self, group: &str, hook: &str) -> Result<Option<HookSpec>, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeLifecycleHooks".into());
            s.hooks.get(&(group.to_string(), hook.to_string())).cloned()
        }))
    }

    async fn describe_hooks(&self, group: &str) -> Result<Vec<HookSpec>, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeLifecycleHooks".into());
            s.hooks
                .iter()
                .filter(|((g, _), _)| g == group)
                .map(|(_, h)| h.clone())
                .collect()
        }))
    }

    async fn heartbeat(&self, action: &ActionRef) -> Result<CompleteOutcome, StepError> {
        Ok(self.with(|s| {
            s.calls.push("RecordLifecycleActionHeartbeat".into());
            match Self::find(s, action) {
                Some(t) => {
                    *s.heartbeats.entry(t).or_default() += 1;
                    CompleteOutcome::Completed
                }
                None => CompleteOutcome::NotActive,
            }
        }))
    }

    async fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> Result<CompleteOutcome, StepError> {
        let out = self.with(|s| {
            s.calls.push("CompleteLifecycleAction".into());
            match Self::find(s, action) {
                Some(t) => {
                    if let Some((_, _, instance_id)) = s.active.remove(&t) {
                        s.completions.push(Completion {
                            instance_id,
                            result,
                        });
                    }
                    CompleteOutcome::Completed
                }
                None => CompleteOutcome::NotActive,
            }
        });
        if out == CompleteOutcome::Completed {
            let hook = self
                .on_complete
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(f) = hook {
                f(action, result);
            }
        }
        Ok(out)
    }

    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<GroupInstance>, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeAutoScalingInstances".into());
            s.instances.get(instance_id).cloned()
        }))
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeAutoScalingInstances".into());
            instance_ids
                .iter()
                .filter_map(|id| s.instances.get(id).cloned())
                .collect()
        }))
    }

    async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupInfo>, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeAutoScalingGroups".into());
            groups
                .iter()
                .filter_map(|g| s.groups.get(g).cloned())
                .collect()
        }))
    }

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeAutoScalingGroups".into());
            s.groups.get(group).cloned()
        }))
    }

    async fn describe_warm_pool(&self, group: &str) -> Result<Option<WarmPool>, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeWarmPool".into());
            s.warm_pools.get(group).cloned()
        }))
    }

    async fn instance_refresh_active(&self, group: &str) -> Result<bool, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeInstanceRefreshes".into());
            s.refreshing.contains(group)
        }))
    }
}

pub use crate::gate::FaultyLifecycleActions;
