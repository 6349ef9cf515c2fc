//! An in-memory `LifecycleActions` that keeps state and records calls, and a fault-injecting wrapper.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::StepError;
use crate::model::{ActionRef, LifecycleResult};
use crate::port::{CompleteOutcome, GroupInfo, GroupInstance, HookSpec, LifecycleActions};

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
    calls: Vec<String>,
}

/// In-memory Auto Scaling: hooks, active actions, instances and groups, with every call recorded.
#[derive(Debug, Clone, Default)]
pub struct FakeLifecycleActions {
    state: Arc<Mutex<State>>,
}

impl FakeLifecycleActions {
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

    /// Sets what `describe_group` says about a group.
    pub fn put_group(&self, group: GroupInfo) {
        self.with(|s| s.groups.insert(group.name.clone(), group));
    }

    /// The completions accepted so far, in order.
    pub fn completions(&self) -> Vec<Completion> {
        self.with(|s| s.completions.clone())
    }

    /// Heartbeats recorded for a token.
    pub fn heartbeats(&self, token: &str) -> u32 {
        self.with(|s| s.heartbeats.get(token).copied().unwrap_or(0))
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
        Ok(self.with(|s| {
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
        }))
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

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>, StepError> {
        Ok(self.with(|s| {
            s.calls.push("DescribeAutoScalingGroups".into());
            s.groups.get(group).cloned()
        }))
    }
}

/// Wraps a `LifecycleActions` and fails scripted calls: the next N calls of an operation get an error.
#[derive(Clone)]
pub struct FaultyLifecycleActions<T> {
    inner: T,
    faults: Arc<Mutex<HashMap<&'static str, VecDeque<StepError>>>>,
}

impl<T: LifecycleActions> FaultyLifecycleActions<T> {
    /// Wraps `inner` with no faults scheduled.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            faults: Arc::default(),
        }
    }

    /// Makes the next call of `operation` (e.g. `CompleteLifecycleAction`) fail with `error`. Repeatable.
    pub fn fail_next(&self, operation: &'static str, error: StepError) {
        let mut f = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        f.entry(operation).or_default().push_back(error);
    }

    fn fault(&self, operation: &'static str) -> Result<(), StepError> {
        let mut f = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        match f.get_mut(operation).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl<T: LifecycleActions> LifecycleActions for FaultyLifecycleActions<T> {
    async fn describe_hook(&self, group: &str, hook: &str) -> Result<Option<HookSpec>, StepError> {
        self.fault("DescribeLifecycleHooks")?;
        self.inner.describe_hook(group, hook).await
    }

    async fn describe_hooks(&self, group: &str) -> Result<Vec<HookSpec>, StepError> {
        self.fault("DescribeLifecycleHooks")?;
        self.inner.describe_hooks(group).await
    }

    async fn heartbeat(&self, action: &ActionRef) -> Result<CompleteOutcome, StepError> {
        self.fault("RecordLifecycleActionHeartbeat")?;
        self.inner.heartbeat(action).await
    }

    async fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> Result<CompleteOutcome, StepError> {
        self.fault("CompleteLifecycleAction")?;
        self.inner.complete(action, result).await
    }

    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<GroupInstance>, StepError> {
        self.fault("DescribeAutoScalingInstances")?;
        self.inner.describe_instance(instance_id).await
    }

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>, StepError> {
        self.fault("DescribeAutoScalingGroups")?;
        self.inner.describe_group(group).await
    }
}
