//! The `LifecycleActions` port on `aws-sdk-autoscaling`.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::Client;

use crate::error::{sdk_error, StepError};
use crate::model::{ActionRef, LifecycleResult, Transition};
use crate::port::{
    is_no_active_action, CompleteOutcome, GroupInfo, GroupInstance, HookSpec, LifecycleActions,
    WarmPool,
};

/// Auto Scaling through the AWS SDK.
#[derive(Debug, Clone)]
pub struct AwsLifecycleActions {
    client: Client,
}

impl AwsLifecycleActions {
    /// Wraps an SDK client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn hook_spec(h: &aws_sdk_autoscaling::types::LifecycleHook) -> HookSpec {
    HookSpec {
        name: h.lifecycle_hook_name().unwrap_or_default().to_string(),
        transition: h.lifecycle_transition().and_then(Transition::from_aws),
        heartbeat_timeout: Duration::from_secs(
            h.heartbeat_timeout()
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(3600),
        ),
        default_result: match h.default_result() {
            Some("CONTINUE") => LifecycleResult::Continue,
            _ => LifecycleResult::Abandon,
        },
        target_arn: h.notification_target_arn().map(str::to_string),
    }
}

/// Maps "No active Lifecycle Action found" to `NotActive`; anything else is an error.
fn action_result<T, E>(
    op: &str,
    res: Result<
        T,
        aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
    >,
) -> Result<CompleteOutcome, StepError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match res {
        Ok(_) => Ok(CompleteOutcome::Completed),
        Err(e) if e.message().is_some_and(is_no_active_action) => Ok(CompleteOutcome::NotActive),
        Err(e) => Err(sdk_error(op, &e)),
    }
}

#[async_trait]
impl LifecycleActions for AwsLifecycleActions {
    async fn describe_hook(&self, group: &str, hook: &str) -> Result<Option<HookSpec>, StepError> {
        let out = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .lifecycle_hook_names(hook)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.lifecycle_hooks().first().map(hook_spec)),
            // A group that does not exist answers ValidationError: the hook does not exist either.
            Err(e) if e.code() == Some("ValidationError") => Ok(None),
            Err(e) => Err(sdk_error("autoscaling:DescribeLifecycleHooks", &e)),
        }
    }

    async fn describe_hooks(&self, group: &str) -> Result<Vec<HookSpec>, StepError> {
        let out = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .send()
            .await
            .map_err(|e| sdk_error("autoscaling:DescribeLifecycleHooks", &e))?;
        Ok(out.lifecycle_hooks().iter().map(hook_spec).collect())
    }

    async fn heartbeat(&self, action: &ActionRef) -> Result<CompleteOutcome, StepError> {
        let mut req = self
            .client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&action.group)
            .lifecycle_hook_name(&action.hook_name);
        req = match &action.token {
            Some(t) => req.lifecycle_action_token(t),
            None => req.instance_id(&action.instance_id),
        };
        action_result(
            "autoscaling:RecordLifecycleActionHeartbeat",
            req.send().await,
        )
    }

    async fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> Result<CompleteOutcome, StepError> {
        let mut req = self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.group)
            .lifecycle_hook_name(&action.hook_name)
            .lifecycle_action_result(result.as_aws());
        req = match &action.token {
            Some(t) => req
                .lifecycle_action_token(t)
                .instance_id(&action.instance_id),
            None => req.instance_id(&action.instance_id),
        };
        action_result("autoscaling:CompleteLifecycleAction", req.send().await)
    }

    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<GroupInstance>, StepError> {
        let found = self.describe_instances(&[instance_id.to_string()]).await?;
        Ok(found.into_iter().find(|i| i.instance_id == instance_id))
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, StepError> {
        let mut found = Vec::with_capacity(instance_ids.len());
        // At most 50 ids a call; ids Auto Scaling does not know are simply absent from the answer.
        for chunk in instance_ids.chunks(50) {
            let out = self
                .client
                .describe_auto_scaling_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_error("autoscaling:DescribeAutoScalingInstances", &e))?;
            found.extend(out.auto_scaling_instances().iter().map(|i| GroupInstance {
                instance_id: i.instance_id().unwrap_or_default().to_string(),
                group: i.auto_scaling_group_name().unwrap_or_default().to_string(),
                availability_zone: i.availability_zone().unwrap_or_default().to_string(),
                lifecycle_state: i.lifecycle_state().unwrap_or_default().to_string(),
                health_status: i.health_status().unwrap_or_default().to_string(),
            }));
        }
        Ok(found)
    }

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>, StepError> {
        let found = self.describe_groups(&[group.to_string()]).await?;
        Ok(found.into_iter().find(|g| g.name == group))
    }

    async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupInfo>, StepError> {
        let mut out = Vec::with_capacity(groups.len());
        // Up to 100 names a call, paged.
        for chunk in groups.chunks(100) {
            let mut pages = self
                .client
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .max_records(100)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| sdk_error("autoscaling:DescribeAutoScalingGroups", &e))?;
                out.extend(page.auto_scaling_groups().iter().map(group_info));
            }
        }
        Ok(out)
    }

    async fn describe_warm_pool(&self, group: &str) -> Result<Option<WarmPool>, StepError> {
        let mut pages = self
            .client
            .describe_warm_pool()
            .auto_scaling_group_name(group)
            .into_paginator()
            .send();
        let mut pool: Option<WarmPool> = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("autoscaling:DescribeWarmPool", &e))?;
            let Some(c) = page.warm_pool_configuration() else {
                return Ok(None);
            };
            let p = pool.get_or_insert_with(|| WarmPool {
                pool_state: c.pool_state().map_or("Stopped", |s| s.as_str()).to_string(),
                status: c.status().map(|s| s.as_str().to_string()),
                min_size: c.min_size().unwrap_or_default(),
                max_prepared: c.max_group_prepared_capacity().filter(|m| *m >= 0),
                reuse_on_scale_in: c
                    .instance_reuse_policy()
                    .and_then(|r| r.reuse_on_scale_in())
                    .unwrap_or(false),
                instances: Vec::new(),
            });
            p.instances
                .extend(page.instances().iter().map(|i| member(i, group)));
        }
        Ok(pool)
    }

    async fn instance_refresh_active(&self, group: &str) -> Result<bool, StepError> {
        use aws_sdk_autoscaling::types::InstanceRefreshStatus as S;
        // The newest refreshes come first; one page of a few holds any that is running.
        let out = self
            .client
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .max_records(10)
            .send()
            .await
            .map_err(|e| sdk_error("autoscaling:DescribeInstanceRefreshes", &e))?;
        Ok(out
            .instance_refreshes()
            .iter()
            .any(|r| matches!(r.status(), Some(S::Pending | S::InProgress | S::Baking))))
    }
}

/// An instance of `group` (a member, or a warm instance) as ferry reads it.
fn member(i: &aws_sdk_autoscaling::types::Instance, group: &str) -> GroupInstance {
    GroupInstance {
        instance_id: i.instance_id().unwrap_or_default().to_string(),
        group: group.to_string(),
        availability_zone: i.availability_zone().unwrap_or_default().to_string(),
        lifecycle_state: i
            .lifecycle_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        health_status: i.health_status().unwrap_or_default().to_string(),
    }
}

/// What ferry reads of a group.
fn group_info(g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> GroupInfo {
    let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
    GroupInfo {
        tags: g
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect(),
        availability_zones: g.availability_zones().to_vec(),
        instances: g.instances().iter().map(|i| member(i, &name)).collect(),
        capacity: (
            g.min_size().unwrap_or_default(),
            g.max_size().unwrap_or_default(),
            g.desired_capacity().unwrap_or_default(),
        ),
        maintenance_policy: g
            .instance_maintenance_policy()
            .and_then(|p| Some((p.min_healthy_percentage()?, p.max_healthy_percentage()?))),
        terminate_hook_abandon: g
            .instance_lifecycle_policy()
            .and_then(|p| p.retention_triggers())
            .and_then(|r| r.terminate_hook_abandon())
            .map(|a| a.as_str().to_string()),
        has_warm_pool: g.warm_pool_configuration().is_some(),
        name,
    }
}
