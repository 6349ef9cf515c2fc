//! `Gate`: what a decorator does before each AWS call (wait for the action's token, inject a scripted fault,
//! model the service's throttling), and `GatedActions`, Auto Scaling behind a gate. The EC2 twin is
//! `ferry_snapshot::gated::Gated`; each decorator is one gate, not one more copy of every port method.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::budget::ApiBudget;
use crate::model::{ActionRef, LifecycleResult};
use crate::port::{
    CompleteOutcome, GroupInfo, GroupInstance, HookSpec, LifecycleActions, WarmPool,
};
use crate::StepError;

/// Runs before every call of a gated port, with the call's action (`service:Action`, e.g.
/// `ec2:CreateVolume`). An error stops the call: the inner port is not called.
#[async_trait]
pub trait Gate: Send + Sync {
    /// Enters the gate for one call of `op`.
    async fn enter(&self, op: &'static str) -> Result<(), StepError>;
}

/// The API budget as a gate: wait for the action's token, never fail.
#[async_trait]
impl Gate for ApiBudget {
    async fn enter(&self, op: &'static str) -> Result<(), StepError> {
        self.acquire(op).await;
        Ok(())
    }
}

#[async_trait]
impl<G: Gate + ?Sized> Gate for Arc<G> {
    async fn enter(&self, op: &'static str) -> Result<(), StepError> {
        self.as_ref().enter(op).await
    }
}

/// Two gates in a row: `.0`, then `.1`.
#[async_trait]
impl<A: Gate, B: Gate> Gate for (A, B) {
    async fn enter(&self, op: &'static str) -> Result<(), StepError> {
        self.0.enter(op).await?;
        self.1.enter(op).await
    }
}

/// The action name without its service prefix: `ec2:CreateVolume` and `CreateVolume` are one key.
pub fn bare(op: &str) -> &str {
    op.split_once(':').map_or(op, |(_, name)| name)
}

/// Scripted faults: the next calls of an action fail with queued errors, in order.
#[derive(Debug, Default, Clone)]
pub struct ScriptedFaults {
    queued: Arc<Mutex<HashMap<String, VecDeque<StepError>>>>,
}

impl ScriptedFaults {
    /// Makes the next call of `op` (`CompleteLifecycleAction` or `autoscaling:CompleteLifecycleAction`) fail
    /// with `error`. Repeatable: errors queue.
    pub fn fail_next(&self, op: &str, error: StepError) {
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        q.entry(bare(op).to_string()).or_default().push_back(error);
    }
}

#[async_trait]
impl Gate for ScriptedFaults {
    async fn enter(&self, op: &'static str) -> Result<(), StepError> {
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        match q.get_mut(bare(op)).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// An Auto Scaling implementation behind a gate.
#[derive(Debug, Clone)]
pub struct GatedActions<T, G> {
    inner: T,
    gate: G,
}

impl<T, G> GatedActions<T, G> {
    /// `inner`, entering `gate` before every call.
    pub fn with_gate(inner: T, gate: G) -> Self {
        Self { inner, gate }
    }

    /// The wrapped implementation.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The gate.
    pub fn gate(&self) -> &G {
        &self.gate
    }
}

#[async_trait]
impl<T: LifecycleActions, G: Gate> LifecycleActions for GatedActions<T, G> {
    async fn describe_hook(&self, group: &str, hook: &str) -> Result<Option<HookSpec>, StepError> {
        self.gate
            .enter("autoscaling:DescribeLifecycleHooks")
            .await?;
        self.inner.describe_hook(group, hook).await
    }

    async fn describe_hooks(&self, group: &str) -> Result<Vec<HookSpec>, StepError> {
        self.gate
            .enter("autoscaling:DescribeLifecycleHooks")
            .await?;
        self.inner.describe_hooks(group).await
    }

    async fn heartbeat(&self, action: &ActionRef) -> Result<CompleteOutcome, StepError> {
        self.gate
            .enter("autoscaling:RecordLifecycleActionHeartbeat")
            .await?;
        self.inner.heartbeat(action).await
    }

    async fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> Result<CompleteOutcome, StepError> {
        self.gate
            .enter("autoscaling:CompleteLifecycleAction")
            .await?;
        self.inner.complete(action, result).await
    }

    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<GroupInstance>, StepError> {
        self.gate
            .enter("autoscaling:DescribeAutoScalingInstances")
            .await?;
        self.inner.describe_instance(instance_id).await
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, StepError> {
        self.gate
            .enter("autoscaling:DescribeAutoScalingInstances")
            .await?;
        self.inner.describe_instances(instance_ids).await
    }

    async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupInfo>, StepError> {
        self.gate
            .enter("autoscaling:DescribeAutoScalingGroups")
            .await?;
        self.inner.describe_groups(groups).await
    }

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>, StepError> {
        self.gate
            .enter("autoscaling:DescribeAutoScalingGroups")
            .await?;
        self.inner.describe_group(group).await
    }

    async fn describe_warm_pool(&self, group: &str) -> Result<Option<WarmPool>, StepError> {
        self.gate.enter("autoscaling:DescribeWarmPool").await?;
        self.inner.describe_warm_pool(group).await
    }

    async fn instance_refresh_active(&self, group: &str) -> Result<bool, StepError> {
        self.gate
            .enter("autoscaling:DescribeInstanceRefreshes")
            .await?;
        self.inner.instance_refresh_active(group).await
    }
}

/// Auto Scaling held to the API budget: every call waits for its action's token.
pub type ThrottledLifecycleActions<T> = GatedActions<T, Arc<ApiBudget>>;

/// Auto Scaling with scripted faults (tests).
pub type FaultyLifecycleActions<T> = GatedActions<T, ScriptedFaults>;

impl<T> GatedActions<T, ScriptedFaults> {
    /// Wraps `inner` with no faults scheduled.
    pub fn new(inner: T) -> Self {
        Self::with_gate(inner, ScriptedFaults::default())
    }
}

impl<T> GatedActions<T, Arc<ApiBudget>> {
    /// `inner`, waiting on `budget` before every call.
    pub fn new(inner: T, budget: Arc<ApiBudget>) -> Self {
        Self::with_gate(inner, budget)
    }
}
