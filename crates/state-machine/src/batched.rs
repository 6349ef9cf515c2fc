//! `BatchedActions`: Auto Scaling whose reads are coalesced across hooks (`loader`). A group's hooks are
//! kept in a `HookCache` (`hook_cache`): they change rarely, and every hook run reads them twice (to verify
//! its message and for its heartbeat timeout). Every hook that checks an instance shares one
//! `DescribeAutoScalingInstances` of up to 50 ids per round, and the hooks of one group share one
//! `DescribeLifecycleHooks`; group reads share one `DescribeAutoScalingGroups` of up to 100 names.
//! Heartbeats and completions pass straight through.

use std::sync::Arc;

use async_trait::async_trait;

use crate::hook_cache::HookCache;
use crate::loader::{in_key_order, Loader, LoaderConfig};
use crate::model::{ActionRef, LifecycleResult};
use crate::port::{
    CompleteOutcome, GroupInfo, GroupInstance, HookSpec, LifecycleActions, WarmPool,
};
use crate::StepError;

/// `DescribeAutoScalingInstances` takes at most 50 ids.
const INSTANCES_PER_CALL: usize = 50;
/// `DescribeAutoScalingGroups` takes at most 100 names.
const GROUPS_PER_CALL: usize = 100;

pub use crate::hook_cache::HOOKS_TTL;

/// Auto Scaling with batched reads.
pub struct BatchedActions {
    inner: Arc<dyn LifecycleActions>,
    instances: Loader<String, Option<GroupInstance>>,
    hooks: Loader<String, Vec<HookSpec>>,
    hooks_read: Arc<HookCache>,
    groups: Loader<String, Option<GroupInfo>>,
}

impl BatchedActions {
    /// Batches `inner`'s instance and hook reads, paced by `cfg`. Must be called within a tokio runtime.
    pub fn new(inner: Arc<dyn LifecycleActions>, cfg: LoaderConfig) -> Self {
        let asg = inner.clone();
        let instances = Loader::spawn(
            "autoscaling:DescribeAutoScalingInstances",
            LoaderConfig {
                max_batch: cfg.max_batch.min(INSTANCES_PER_CALL),
                ..cfg
            },
            move |ids: Vec<String>| {
                let asg = asg.clone();
                async move {
                    let found = asg.describe_instances(&ids).await?;
                    Ok(in_key_order(&ids, found, |i| i.instance_id.as_str()))
                }
            },
        );
        let asg = inner.clone();
        // One call per group (the API takes one); the loader dedupes a group's hooks within a round.
        let hooks = Loader::spawn(
            "autoscaling:DescribeLifecycleHooks",
            cfg,
            move |groups: Vec<String>| {
                let asg = asg.clone();
                async move {
                    let mut out = Vec::with_capacity(groups.len());
                    for g in &groups {
                        out.push(asg.describe_hooks(g).await?);
                    }
                    Ok(out)
                }
            },
        );
        let asg = inner.clone();
        let groups = Loader::spawn(
            "autoscaling:DescribeAutoScalingGroups",
            LoaderConfig {
                max_batch: cfg.max_batch.min(GROUPS_PER_CALL),
                ..cfg
            },
            move |names: Vec<String>| {
                let asg = asg.clone();
                async move {
                    let found = asg.describe_groups(&names).await?;
                    Ok(in_key_order(&names, found, |g| g.name.as_str()))
                }
            },
        );
        Self {
            inner,
            instances,
            hooks,
            hooks_read: Arc::new(HookCache::new(HOOKS_TTL)),
            groups,
        }
    }
}

impl BatchedActions {
    /// Keeps hooks in `cache` (which a background refresh may fill) instead of a cache of its own.
    pub fn with_hook_cache(mut self, cache: Arc<HookCache>) -> Self {
        self.hooks_read = cache;
        self
    }

    fn remember(&self, group: &str, hooks: &[HookSpec]) {
        self.hooks_read.put(group, hooks);
    }
}

#[async_trait]
impl LifecycleActions for BatchedActions {
    async fn describe_hook(&self, group: &str, hook: &str) -> Result<Option<HookSpec>, StepError> {
        let all = self.describe_hooks(group).await?;
        if let Some(h) = all.into_iter().find(|h| h.name == hook) {
            return Ok(Some(h));
        }
        // Not among the hooks read before: read again rather than reject a hook created since.
        let hooks = self.hooks.load(group.to_string()).await?;
        self.remember(group, &hooks);
        Ok(hooks.into_iter().find(|h| h.name == hook))
    }

    async fn describe_hooks(&self, group: &str) -> Result<Vec<HookSpec>, StepError> {
        if let Some(hooks) = self.hooks_read.get(group) {
            return Ok(hooks);
        }
        let hooks = self.hooks.load(group.to_string()).await?;
        self.remember(group, &hooks);
        Ok(hooks)
    }

    async fn heartbeat(&self, action: &ActionRef) -> Result<CompleteOutcome, StepError> {
        self.inner.heartbeat(action).await
    }

    async fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> Result<CompleteOutcome, StepError> {
        self.inner.complete(action, result).await
    }

    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<GroupInstance>, StepError> {
        self.instances.load(instance_id.to_string()).await
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, StepError> {
        self.inner.describe_instances(instance_ids).await
    }

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>, StepError> {
        self.groups.load(group.to_string()).await
    }

    async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupInfo>, StepError> {
        self.inner.describe_groups(groups).await
    }

    async fn describe_warm_pool(&self, group: &str) -> Result<Option<WarmPool>, StepError> {
        self.inner.describe_warm_pool(group).await
    }

    async fn instance_refresh_active(&self, group: &str) -> Result<bool, StepError> {
        self.inner.instance_refresh_active(group).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fake::FakeLifecycleActions;

    #[tokio::test(start_paused = true)]
    async fn hooks_checks_share_calls() {
        let fake = FakeLifecycleActions::default();
        for g in 0..120 {
            fake.put_instance(GroupInstance {
                instance_id: format!("i-{g}"),
                group: format!("g{g}"),
                availability_zone: "us-east-1a".into(),
                lifecycle_state: "Terminating:Wait".into(),
                health_status: "Healthy".into(),
            });
        }
        fake.put_hook(
            "g7",
            HookSpec {
                name: "launch".into(),
                transition: Some(crate::Transition::Launching),
                heartbeat_timeout: Duration::from_secs(300),
                default_result: LifecycleResult::Abandon,
                target_arn: None,
            },
        );
        let batched = Arc::new(BatchedActions::new(
            Arc::new(fake.clone()),
            LoaderConfig::default(),
        ));
        let tasks: Vec<_> = (0..120)
            .map(|g| {
                let b = batched.clone();
                tokio::spawn(async move {
                    let me = b.describe_instance(&format!("i-{g}")).await;
                    let hooks = b.describe_hook("g7", "launch").await;
                    (me, hooks)
                })
            })
            .collect();
        for (g, t) in tasks.into_iter().enumerate() {
            let Ok((me, hooks)) = t.await else {
                panic!("task {g}")
            };
            assert_eq!(me.ok().flatten().map(|i| i.group), Some(format!("g{g}")));
            assert_eq!(
                hooks.ok().flatten().map(|h| h.name).as_deref(),
                Some("launch")
            );
        }
        let calls = fake.calls();
        let count = |op: &str| calls.iter().filter(|c| *c == op).count();
        assert_eq!(
            count("DescribeAutoScalingInstances"),
            3,
            "120 ids, 50 a call"
        );
        assert_eq!(count("DescribeLifecycleHooks"), 1, "{calls:?}");

        // Kept: the next check reads nothing. A hook not among those kept is read again, not refused.
        assert!(batched.describe_hook("g7", "launch").await.is_ok());
        fake.put_hook(
            "g7",
            HookSpec {
                name: "terminate".into(),
                transition: Some(crate::Transition::Terminating),
                heartbeat_timeout: Duration::from_secs(300),
                default_result: LifecycleResult::Continue,
                target_arn: None,
            },
        );
        let new = batched.describe_hook("g7", "terminate").await;
        assert_eq!(
            new.ok().flatten().map(|h| h.name).as_deref(),
            Some("terminate")
        );
        let calls = fake.calls();
        let hooks = calls
            .iter()
            .filter(|c| *c == "DescribeLifecycleHooks")
            .count();
        assert_eq!(hooks, 2, "{calls:?}");
    }
}
