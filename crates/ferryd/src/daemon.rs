//! `ferryd run`: wires the AWS adapters, the driver and the listener, and runs until shutdown.

use std::sync::Arc;
use std::time::Duration;

use ferry_hook_listener::{ListenerConfig, NoListenerObserver, SqsQueue};
use ferry_snapshot::aws_ec2::AwsEc2;
use ferry_state_machine::aws::AwsLifecycleActions;
use ferry_state_machine::lock::LocalSlotLocks;
use ferry_state_machine::{Driver, DriverConfig, LifecycleActions, NoObserver};
use tokio::sync::watch;
use tracing::info;

use crate::config::Config;
use crate::handler::{FerryHandler, ManagedGroup};

/// Runs the daemon until `shutdown` turns true, then lets in-flight hooks reach a safe point.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let clients = crate::aws::clients(&config.aws).await;
    let asg: Arc<dyn LifecycleActions> = Arc::new(AwsLifecycleActions::new(clients.autoscaling));
    let ec2 = Arc::new(AwsEc2::new(clients.ec2));
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
        asg,
        driver,
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
    info!(
        polls = report.polls,
        received = report.received,
        hooks = report.hooks_started,
        "ferryd stopped"
    );
    Ok(())
}
