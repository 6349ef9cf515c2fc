//! The `LifecycleActions` port: the Auto Scaling calls ferry makes, behind one narrow trait.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StepError;
use crate::model::{ActionRef, LifecycleResult, Transition};

/// A lifecycle hook's settings, as `DescribeLifecycleHooks` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    /// The hook's name.
    pub name: String,
    /// Launch or terminate; `None` for a transition ferry does not know.
    pub transition: Option<Transition>,
    /// How long Auto Scaling waits for a heartbeat or completion.
    pub heartbeat_timeout: Duration,
    /// What applies when the timeout passes.
    pub default_result: LifecycleResult,
    /// The hook's notification target (an SQS queue or SNS topic ARN), if any.
    pub target_arn: Option<String>,
}

impl HookSpec {
    /// The longest an action of this hook may be kept waiting: min(48 h, 100 × heartbeat timeout).
    pub fn global_timeout(&self) -> Duration {
        (self.heartbeat_timeout * 100).min(Duration::from_secs(48 * 3600))
    }
}

/// An instance as Auto Scaling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    /// The EC2 instance id.
    pub instance_id: String,
    /// The group it belongs to.
    pub group: String,
    /// Its Availability Zone.
    pub availability_zone: String,
    /// Its lifecycle state, e.g. `InService`, `Pending:Wait`, `Terminating:Wait`.
    pub lifecycle_state: String,
    /// `Healthy` or `Unhealthy`.
    pub health_status: String,
}

impl GroupInstance {
    /// Whether the instance is on its way out of the group.
    pub fn is_terminating(&self) -> bool {
        self.lifecycle_state.starts_with("Terminating") || self.lifecycle_state == "Terminated"
    }

    /// Whether the instance counts toward the group's desired capacity: not on its way out, not in
    /// `Standby` and not being detached (Auto Scaling launches a replacement for each of those, unless the
    /// call decremented the desired capacity).
    pub fn counts_toward_desired(&self) -> bool {
        !self.is_terminating()
            && !matches!(
                self.lifecycle_state.as_str(),
                "Standby" | "Detaching" | "Detached"
            )
    }
}

/// A group as Auto Scaling sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// The group's tags.
    pub tags: HashMap<String, String>,
    /// The group's Availability Zones.
    pub availability_zones: Vec<String>,
    /// Its instances.
    pub instances: Vec<GroupInstance>,
    /// Min, max and desired capacity.
    pub capacity: (i32, i32, i32),
    /// The instance maintenance policy's (MinHealthyPercentage, MaxHealthyPercentage), if set.
    pub maintenance_policy: Option<(i32, i32)>,
    /// The instance lifecycle policy's `RetentionTriggers.TerminateHookAbandon` (`retain`, `terminate`), if set.
    pub terminate_hook_abandon: Option<String>,
    /// The group has a warm pool (`WarmPoolConfiguration`); its instances are read with `describe_warm_pool`.
    pub has_warm_pool: bool,
}

/// A group's warm pool, as `DescribeWarmPool` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WarmPool {
    /// `Stopped`, `Hibernated` or `Running`.
    pub pool_state: String,
    /// `Active` or `PendingDelete`, if reported.
    pub status: Option<String>,
    /// The pool's `MinSize`.
    pub min_size: i32,
    /// `MaxGroupPreparedCapacity`, if set.
    pub max_prepared: Option<i32>,
    /// `InstanceReusePolicy.ReuseOnScaleIn`.
    pub reuse_on_scale_in: bool,
    /// The warm instances, in their `Warmed:*` lifecycle states.
    pub instances: Vec<GroupInstance>,
}

impl GroupInfo {
    /// Whether the group opted in to ferry with the `ferry:managed=true` tag.
    pub fn is_managed(&self) -> bool {
        self.tags.get(crate::tags::MANAGED).map(String::as_str) == Some("true")
    }
}

/// What `CompleteLifecycleAction` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// The action was completed by this call.
    Completed,
    /// No active action matched: it was completed before, or it expired. Terminal, not an error.
    NotActive,
}

/// The Auto Scaling calls ferry makes. Only the driver completes actions.
#[async_trait]
pub trait LifecycleActions: Send + Sync {
    /// `DescribeLifecycleHooks` for one hook of one group; `None` when it does not exist.
    async fn describe_hook(&self, group: &str, hook: &str) -> Result<Option<HookSpec>, StepError>;

    /// All hooks of one group.
    async fn describe_hooks(&self, group: &str) -> Result<Vec<HookSpec>, StepError>;

    /// `RecordLifecycleActionHeartbeat`. `Ok(NotActive)` when the action is no longer active.
    async fn heartbeat(&self, action: &ActionRef) -> Result<CompleteOutcome, StepError>;

    /// `CompleteLifecycleAction`. `Ok(NotActive)` when no active action matched.
    async fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> Result<CompleteOutcome, StepError>;

    /// `DescribeAutoScalingInstances` for one instance; `None` when Auto Scaling does not know it.
    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<GroupInstance>, StepError>;

    /// `DescribeAutoScalingInstances` for several instances at once (at most 50 a call); the instances Auto
    /// Scaling does not know are left out. The default asks one by one.
    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, StepError> {
        let mut out = Vec::with_capacity(instance_ids.len());
        for id in instance_ids {
            out.extend(self.describe_instance(id).await?);
        }
        Ok(out)
    }

    /// `DescribeAutoScalingGroups` for one group; `None` when it does not exist.
    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>, StepError>;

    /// `DescribeWarmPool`: the group's warm pool and its instances; `None` when it has none.
    async fn describe_warm_pool(&self, group: &str) -> Result<Option<WarmPool>, StepError>;

    /// `DescribeInstanceRefreshes`: whether an instance refresh of the group is in progress (`Pending`,
    /// `InProgress` or `Baking`), i.e. Auto Scaling is replacing its instances.
    async fn instance_refresh_active(&self, group: &str) -> Result<bool, StepError>;

    /// `DescribeAutoScalingGroups` for several groups at once (100 a call); missing groups are left out.
    /// The default asks one by one.
    async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupInfo>, StepError> {
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            out.extend(self.describe_group(g).await?);
        }
        Ok(out)
    }
}

/// Whether an Auto Scaling error message says the action is no longer active.
pub fn is_no_active_action(message: &str) -> bool {
    message.contains("No active Lifecycle Action found")
}
