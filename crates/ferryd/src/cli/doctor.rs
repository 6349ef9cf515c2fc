//! `ferryd doctor`: checks the config, the credentials, the queue, every group's hooks, capacity and
//! maintenance policy, the Elastic IP, and ferry's IAM permissions; each line PASS / WARN / FAIL / SKIP.

use std::process::ExitCode;

use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args;
use ferry_snapshot::Addresses;
use ferry_state_machine::error::sdk_error;
use ferry_state_machine::{HookSpec, LifecycleActions, LifecycleResult, Transition};

use super::{println_out, Aws};
use crate::config::{Config, ConfigError, GroupConfig, SourceUnreachable};

/// `ferryd doctor` options (none besides the config).
#[derive(Debug, Args)]
pub struct DoctorArgs {}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Fine.
    Pass,
    /// Works, but worth a look.
    Warn,
    /// ferry will not work correctly: exit code 3.
    Fail,
    /// Cannot be checked without side effects.
    Skip,
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub(super) struct Check {
    pub verdict: Verdict,
    pub name: String,
    pub detail: String,
    /// One line telling how to fix it (for WARN and FAIL).
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            verdict: Verdict::Pass,
            name: name.into(),
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            verdict: Verdict::Warn,
            name: name.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            verdict: Verdict::Fail,
            name: name.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            verdict: Verdict::Skip,
            name: name.into(),
            detail: detail.into(),
            fix: None,
        }
    }
}

/// Prints one check as it completes.
fn report(c: &Check) {
    let label = match c.verdict {
        Verdict::Pass => "PASS",
        Verdict::Warn => "WARN",
        Verdict::Fail => "FAIL",
        Verdict::Skip => "SKIP",
    };
    println_out(&format!("{label}  {}: {}", c.name, c.detail));
    if let Some(fix) = &c.fix {
        println_out(&format!("      fix: {fix}"));
    }
}

/// Runs `ferryd doctor` on an already loaded (or failed) configuration.
pub fn main(config: Result<Config, ConfigError>, _args: &DoctorArgs) -> ExitCode {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            report(&Check::fail(
                "config",
                e.to_string(),
                "correct the key named above; `ferryd validate-config` checks without AWS",
            ));
            return ExitCode::from(crate::exit::CONFIG);
        }
    };
    let names: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
    report(&Check::pass(
        "config",
        format!("valid; groups: {}", names.join(", ")),
    ));
    super::block_on(async {
        let aws = Aws::connect(&config).await;
        let mut checks = Vec::new();
        let mut emit = |c: Check| {
            report(&c);
            checks.push(c.verdict);
        };
        emit(credentials(&aws).await);
        let queue_arn = queue(&aws, &config, &mut emit).await;
        for c in super::doctor_lease::checks(&aws, &config).await {
            emit(c);
        }
        for g in &config.groups {
            group(&aws, g, queue_arn.as_deref(), &mut emit).await;
        }
        emit(super::doctor_iam::unverifiable());
        if checks.contains(&Verdict::Fail) {
            ExitCode::from(crate::exit::DOCTOR_FAILED)
        } else {
            ExitCode::SUCCESS
        }
    })
}

async fn credentials(aws: &Aws) -> Check {
    const NAME: &str = "credentials";
    // A cheap read that ferry's IAM policy allows on `*`.
    match aws.clients.autoscaling.describe_auto_scaling_groups().max_records(1).send().await {
        Ok(_) => {
            let region = aws.clients.ec2.config().region().map_or("(none)".to_string(), ToString::to_string);
            Check::pass(NAME, format!("accepted by Auto Scaling in region {region}"))
        }
        Err(e) => Check::fail(NAME, sdk_error("autoscaling:DescribeAutoScalingGroups", &e).to_string(), "check the credentials, the region (`aws.region` / AWS_REGION) and the network path to AWS"),
    }
}

/// The queue checks; returns the queue's ARN when it could be read.
async fn queue(aws: &Aws, config: &Config, emit: &mut impl FnMut(Check)) -> Option<String> {
    let url = &config.queue.url;
    let out = match aws
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            emit(Check::fail(
                "queue",
                format!("{url}: {}", sdk_error("sqs:GetQueueAttributes", &e)),
                "check `queue.url` and that ferryd may call sqs:GetQueueAttributes on it",
            ));
            return None;
        }
    };
    let attr = |k: QueueAttributeName| out.attributes().and_then(|a| a.get(&k)).cloned();
    let arn = attr(QueueAttributeName::QueueArn);
    emit(Check::pass(
        "queue",
        format!(
            "{url} reachable ({})",
            arn.as_deref().unwrap_or("no ARN reported")
        ),
    ));
    let redrive = attr(QueueAttributeName::RedrivePolicy)
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok());
    match redrive.as_ref().and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_string)) {
        Some(dlq) => {
            let max = redrive.as_ref().map(|p| p["maxReceiveCount"].to_string()).unwrap_or_default();
            emit(Check::pass("queue dead-letter queue", format!("{dlq} after {} receives", max.trim_matches('"'))));
        }
        None => emit(Check::fail("queue dead-letter queue", "no redrive policy: unparseable messages circulate until the retention period ends", "set a RedrivePolicy with deadLetterTargetArn and maxReceiveCount (e.g. 5) on the queue")),
    }
    let want = config.queue.visibility_timeout_secs;
    match attr(QueueAttributeName::VisibilityTimeout).and_then(|v| v.parse::<u64>().ok()) {
        Some(vt) if vt * 2 >= want => emit(Check::pass("queue visibility timeout", format!("{vt}s; ferry extends to {want}s every {}s", want / 2))),
        Some(vt) => emit(Check::fail("queue visibility timeout", format!("{vt}s is less than half of queue.visibility_timeout_secs = {want}s: a message reappears before ferry's first extension and runs twice"), format!("set the queue's VisibilityTimeout to {want} (or lower queue.visibility_timeout_secs to {})", vt * 2))),
        None => emit(Check::warn("queue visibility timeout", "not reported by the queue", "check the queue's VisibilityTimeout attribute")),
    }
    arn
}

async fn group(aws: &Aws, g: &GroupConfig, queue_arn: Option<&str>, emit: &mut impl FnMut(Check)) {
    let n = |what: &str| format!("group {} {what}", g.name);
    let info = match aws.asg.describe_group(&g.name).await {
        Ok(Some(info)) => {
            emit(Check::pass(
                n("exists"),
                format!("AZs {}", info.availability_zones.join(", ")),
            ));
            Some(info)
        }
        Ok(None) => {
            emit(Check::fail(
                n("exists"),
                "Auto Scaling does not know it",
                "create the group, or correct `groups[].name`",
            ));
            None
        }
        Err(e) => {
            emit(Check::fail(
                n("exists"),
                e.to_string(),
                "allow autoscaling:DescribeAutoScalingGroups",
            ));
            None
        }
    };
    if let Some(info) = &info {
        if !g.require_managed_tag {
            emit(Check::pass(
                n("ferry:managed tag"),
                "not required (require_managed_tag = false)",
            ));
        } else if info.is_managed() {
            emit(Check::pass(n("ferry:managed tag"), "ferry:managed=true"));
        } else {
            let have = info
                .tags
                .get(ferry_state_machine::tags::MANAGED)
                .map_or("missing".to_string(), |v| format!("{v:?}"));
            emit(Check::fail(n("ferry:managed tag"), format!("{have}: ferry ignores this group's hooks"), format!("aws autoscaling create-or-update-tags --tags ResourceId={},ResourceType=auto-scaling-group,Key=ferry:managed,Value=true,PropagateAtLaunch=true", g.name)));
        }
        emit(super::doctor_paths::capacity(&n("capacity"), info, g));
        emit(super::doctor_paths::maintenance(
            &n("maintenance policy"),
            info.maintenance_policy,
            g,
        ));
        if let Some(c) = super::doctor_paths::warm_pool(aws, &n("warm pool"), info).await {
            emit(c);
        }
        emit(retention(
            &n("instance retention"),
            info.terminate_hook_abandon.as_deref(),
            g,
        ));
        match aws.asg.describe_hooks(&g.name).await {
            Ok(hooks) => {
                emit(hook_check(
                    &n("launch hook"),
                    &hooks,
                    Transition::Launching,
                    queue_arn,
                    g,
                ));
                emit(hook_check(
                    &n("terminate hook"),
                    &hooks,
                    Transition::Terminating,
                    queue_arn,
                    g,
                ));
            }
            Err(e) => emit(Check::fail(
                n("hooks"),
                e.to_string(),
                "allow autoscaling:DescribeLifecycleHooks",
            )),
        }
    }
    match &g.elastic_ip {
        None => emit(Check::pass(
            n("elastic IP"),
            "none configured: ferry moves no address",
        )),
        Some(alloc) => match aws.ec2.describe_address(alloc).await {
            Ok(Some(a)) => emit(Check::pass(
                n("elastic IP"),
                format!(
                    "{alloc} = {} -> {}",
                    a.public_ip,
                    a.instance_id.as_deref().unwrap_or("(unassociated)")
                ),
            )),
            Ok(None) => emit(Check::fail(
                n("elastic IP"),
                format!("{alloc} does not exist"),
                "allocate the address, or correct `elastic_ip`",
            )),
            Err(e) => emit(Check::fail(
                n("elastic IP"),
                e.to_string(),
                "allow ec2:DescribeAddresses",
            )),
        },
    }
    for c in super::doctor_iam::checks(aws, g, info.as_ref()).await {
        emit(c);
    }
}

/// The instance lifecycle policy: with `wait`, an instance whose terminate ferry abandons (it cannot take
/// the data off) must be retained, not destroyed with the data; with `restore-latest`, it must not be.
fn retention(name: &str, abandon: Option<&str>, g: &GroupConfig) -> Check {
    let set = |v: &str| {
        format!("aws autoscaling update-auto-scaling-group --auto-scaling-group-name {} --instance-lifecycle-policy 'RetentionTriggers={{TerminateHookAbandon={v}}}'", g.name)
    };
    match (g.source_unreachable, abandon) {
        (SourceUnreachable::Wait, Some("retain")) => Check::pass(name, "TerminateHookAbandon = retain: a terminate ferry abandons keeps its instance and data"),
        (SourceUnreachable::Wait, other) => Check::warn(name, format!("TerminateHookAbandon = {}: when ferry cannot take the data off an instance it abandons the terminate, and Auto Scaling then destroys the instance with the data", other.unwrap_or("terminate (not set)")), set("retain")),
        (SourceUnreachable::RestoreLatest, Some("retain")) => Check::warn(name, "TerminateHookAbandon = retain with source_unreachable = \"restore-latest\": ferry never abandons a terminate under restore-latest, and a retained instance would only hold the Elastic IP", set("terminate")),
        (SourceUnreachable::RestoreLatest, other) => Check::pass(name, format!("TerminateHookAbandon = {} (restore-latest restores a recovery point instead)", other.unwrap_or("terminate (not set)"))),
    }
}

fn hook_check(
    name: &str,
    hooks: &[HookSpec],
    t: Transition,
    queue_arn: Option<&str>,
    g: &GroupConfig,
) -> Check {
    let (aws_name, kind) = match t {
        Transition::Launching => ("autoscaling:EC2_INSTANCE_LAUNCHING", "launch"),
        Transition::Terminating => ("autoscaling:EC2_INSTANCE_TERMINATING", "terminate"),
    };
    let fix_create = format!("aws autoscaling put-lifecycle-hook --auto-scaling-group-name {} --lifecycle-hook-name ferry-{kind} --lifecycle-transition {aws_name} --notification-target-arn <queue ARN> --role-arn <role> --heartbeat-timeout 600 --default-result ABANDON", g.name);
    let of_kind: Vec<&HookSpec> = hooks.iter().filter(|h| h.transition == Some(t)).collect();
    if of_kind.is_empty() {
        return Check::fail(
            name,
            format!("no {aws_name} hook: ferry never hears of these instances"),
            fix_create,
        );
    }
    let Some(arn) = queue_arn else {
        return Check::warn(
            name,
            format!(
                "{} present; cannot compare its target, the queue's ARN is unknown",
                of_kind[0].name
            ),
            "fix the queue check first",
        );
    };
    let Some(h) = of_kind
        .iter()
        .find(|h| h.target_arn.as_deref() == Some(arn))
    else {
        let targets: Vec<String> = of_kind
            .iter()
            .map(|h| {
                format!(
                    "{} -> {}",
                    h.name,
                    h.target_arn.as_deref().unwrap_or("(no target)")
                )
            })
            .collect();
        return Check::fail(
            name,
            format!(
                "no {kind} hook notifies the queue {arn} ({})",
                targets.join("; ")
            ),
            fix_create,
        );
    };
    if t == Transition::Launching && h.default_result != LifecycleResult::Abandon {
        return Check::fail(name, format!("{}: DefaultResult CONTINUE puts an instance in service without its data when the hook expires", h.name), format!("put-lifecycle-hook again for {} with --default-result ABANDON", h.name));
    }
    let hb = h.heartbeat_timeout.as_secs();
    if !(60..=7200).contains(&hb) {
        return Check::warn(
            name,
            format!("{}: HeartbeatTimeout {hb}s is outside 60..=7200", h.name),
            format!(
                "put-lifecycle-hook again for {} with --heartbeat-timeout 600",
                h.name
            ),
        );
    }
    let global = h.global_timeout().as_secs();
    if t == Transition::Terminating && g.snapshot_timeout_secs > global {
        return Check::warn(name, format!("{}: the hook gives up after {global}s (100 x HeartbeatTimeout, at most 48 h), before snapshot_timeout_secs = {}", h.name, g.snapshot_timeout_secs), format!("raise the hook's HeartbeatTimeout to {} or lower snapshot_timeout_secs", g.snapshot_timeout_secs.div_ceil(100)));
    }
    Check::pass(
        name,
        format!(
            "{} -> queue, HeartbeatTimeout {hb}s, DefaultResult {}",
            h.name,
            h.default_result.as_aws()
        ),
    )
}
