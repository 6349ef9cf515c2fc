//! `ferryd run`: wires the AWS adapters, the driver and the listener, and runs until shutdown.

use std::sync::Arc;
use std::time::Duration;

use ferry_hook_listener::{ListenerConfig, NoListenerObserver, SqsQueue};
use ferry_snapshot::aws_ec2::AwsEc2;
use ferry_snapshot::Ec2;
use ferry_state_machine::aws::AwsLifecycleActions;
use ferry_state_machine::lock::LocalSlotLocks;
use ferry_state_machine::{Driver, DriverConfig, LifecycleActions, NoObserver};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::crashpoint::{CrashPoint, Crashing};
use crate::handler::{FerryHandler, ManagedGroup};
use crate::reconcile::Reconciler;

/// Runs the daemon until `shutdown` turns true, then lets in-flight hooks reach a safe point.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let clients = crate::aws::clients(&config.aws).await;
    let sqs = clients.sqs.clone();
    let aws_asg = AwsLifecycleActions::new(clients.autoscaling);
    let aws_ec2 = AwsEc2::new(clients.ec2);
    let (asg, ec2): (Arc<dyn LifecycleActions>, Arc<dyn Ec2>) = match CrashPoint::from_env() {
        Some(point) => (
            Arc::new(Crashing::new(aws_asg, point.clone())),
            Arc::new(Crashing::new(aws_ec2, point)),
        ),
        None => (Arc::new(aws_asg), Arc::new(aws_ec2)),
    };
    let queue = Arc::new(SqsQueue::new(clients.sqs, config.queue.url.clone()));
    let d = &config.daemon;
    let driver = Driver::new(
        asg.clone(),
        Arc::new(LocalSlotLocks::default()),
        Arc::new(NoObserver),
        DriverConfig {
            heartbeat_fraction: d.heartbeat_fraction,
            poll_min: Duration::from_millis(d.poll_min_ms),
            poll_max: Duration::from_millis(d.poll_max_ms),
            ..DriverConfig::default()
        },
    );
    let groups = config
        .group_specs()
        .into_iter()
        .zip(&config.groups)
        .map(|(spec, g)| ManagedGroup {
            spec,
            require_managed_tag: g.require_managed_tag,
        })
        .collect();
    let handler = Arc::new(FerryHandler::new(
        groups,
        config.queue.delete_unmanaged,
        ec2,
        asg.clone(),
        driver,
    ));
    let queue_arn = queue_arn(&sqs, &config.queue.url).await;
    let reconciler = Reconciler::new(
        asg,
        config.groups.iter().map(|g| g.name.clone()).collect(),
        queue_arn,
    );
    let reconciling = tokio::spawn(reconciler.run(
        handler.clone(),
        Duration::from_secs(d.reconcile_interval_secs),
        shutdown.clone(),
    ));
    let listener = ListenerConfig {
        max_in_flight: d.max_in_flight,
        ..ListenerConfig::with_visibility(Duration::from_secs(config.queue.visibility_timeout_secs))
    };
    let names: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
    info!(queue = %config.queue.url, groups = ?names, "ferryd started");
    let report = ferry_hook_listener::run(
        queue,
        handler,
        listener,
        Arc::new(NoListenerObserver),
        shutdown,
    )
    .await?;
    if let Err(e) = reconciling.await {
        warn!(error = %e, "the reconciler failed");
    }
    info!(
        polls = report.polls,
        received = report.received,
        hooks = report.hooks_started,
        "ferryd stopped"
    );
    Ok(())
}

/// The hook queue's ARN, which identifies ferry's lifecycle hooks; `None` (with a warning) if unreadable.
async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    match sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
    {
        Ok(out) => out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned(),
        Err(e) => {
            warn!(queue = %url, error = %ferry_state_machine::error::display_chain(&e), "cannot read the queue's ARN; reconciliation takes only unambiguous hooks");
            None
        }
    }
}
