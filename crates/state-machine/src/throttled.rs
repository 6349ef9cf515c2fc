//! `ThrottledLifecycleActions`: Auto Scaling calls held to the API budget (`ApiBudget`), as `Throttled` does
//! for EC2.

use std::sync::Arc;

use async_trait::async_trait;

use crate::budget::ApiBudget;
use crate::model::{ActionRef, LifecycleResult};
use crate::port::{CompleteOutcome, GroupInfo, GroupInstance, HookSpec, LifecycleActions};
use crate::StepError;

/// An Auto Scaling implementation held to an API budget.
pub struct ThrottledLifecycleActions<T> {
    inner: T,
    budget: Arc<ApiBudget>,
}

impl<T> ThrottledLifecycleActions<T> {
    /// `inner`, waiting on `budget` before every call.
    pub fn new(inner: T, budget: Arc<ApiBudget>) -> Self {
        Self { inner, budget }
    }
}

#[async_trait]
impl<T: LifecycleActions> LifecycleActions for ThrottledLifecycleActions<T> {
    async fn describe_hook(&self, group: &str, hook: &str) -> Result<Option<HookSpec>, StepError> {
        self.budget
            .acquire("autoscaling:DescribeLifecycleHooks")
            .await;
        self.inner.describe_hook(group, hook).await
    }

    async fn describe_hooks(&self, group: &str) -> Result<Vec<HookSpec>, StepError> {
        self.budget
            .acquire("autoscaling:DescribeLifecycleHooks")
            .await;
        self.inner.describe_hooks(group).await
    }

    async fn heartbeat(&self, action: &ActionRef) -> Result<CompleteOutcome, StepError> {
        self.budget
            .acquire("autoscaling:RecordLifecycleActionHeartbeat")
            .await;
        self.inner.heartbeat(action).await
    }

    async fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> Result<CompleteOutcome, StepError> {
        self.budget
            .acquire("autoscaling:CompleteLifecycleAction")
            .await;
        self.inner.complete(action, result).await
    }

    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<GroupInstance>, StepError> {
        self.budget
            .acquire("autoscaling:DescribeAutoScalingInstances")
            .await;
        self.inner.describe_instance(instance_id).await
    }

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>, StepError> {
        self.budget
            .acquire("autoscaling:DescribeAutoScalingGroups")
            .await;
        self.inner.describe_group(group).await
    }
}
