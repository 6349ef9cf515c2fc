//! `ferryd run`: wires the AWS adapters, the driver, the listener, the reconciler and the HTTP endpoints,
//! and runs until shutdown.

use std::sync::Arc;
use std::time::Duration;

use ferry_hook_listener::{SqsQueue, ThrottledQueue};
use ferry_snapshot::aws_ec2::AwsEc2;
use ferry_snapshot::{RecoveryPoints, SourceEvents};
use ferry_state_machine::aws::AwsLifecycleActions;
use ferry_state_machine::budget::ApiBudget;
use ferry_state_machine::HookObserver;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::crashpoint::CrashPoint;
use crate::http::{HttpState, Readiness};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::reconcile::Reconciler;

/// How often readiness (credentials and queue) is checked.
const READINESS_EVERY: Duration = Duration::from_secs(30);

/// Runs the daemon until `shutdown` turns true, then lets in-flight hooks reach a safe point.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let clients = crate::aws::clients_with_metrics(&config.aws, Some(&metrics)).await;
    let sqs = clients.sqs.clone();
    // Every EC2 and Auto Scaling call waits for its action's token first ([aws] rate_limits).
    let budget = Arc::new(ApiBudget::new(&config.aws.rate_limits()));
    let ports = crate::assemble::layer(
        AwsEc2::new(clients.ec2),
        AwsLifecycleActions::new(clients.autoscaling),
        &budget,
        &config,
        CrashPoint::from_env(),
    );
    let (ec2, asg) = (ports.ec2.clone(), ports.asg.clone());

    // HTTP endpoints stay up while hooks drain, so they stop on their own signal, last.
    let (http_tx, http_rx) = watch::channel(false);
    let readiness = Arc::new(Readiness::default());
    let http = start_http(&config, &metrics, &readiness, http_rx).await;
    let readiness_task = tokio::spawn(crate::queue_info::watch_readiness(
        sqs.clone(),
        config.queue.url.clone(),
        readiness,
        READINESS_EVERY,
        shutdown.clone(),
    ));

    let mut observers: Vec<Arc<dyn HookObserver>> = vec![Arc::new(metrics.clone())];
    let mut source_events: Vec<Arc<dyn SourceEvents>> = vec![Arc::new(metrics.clone())];
    let mut webhook_worker = None;
    if let Some(w) = &config.webhook {
        let (notifier, worker) = Notifier::spawn(w, Some(metrics.clone()))?;
        observers.push(notifier.clone());
        source_events.push(notifier);
        webhook_worker = Some(worker);
    }
    let d = &config.daemon;
    let leases = crate::assemble::leases(&config, &clients.dynamodb, &metrics);
    let mut driver = crate::assemble::driver(&config, &ports, observers);
    if let Some(keeper) = &leases {
        info!(table = ?config.lease.table, owner = %keeper.owner(), "replicas: every hook holds its slot's lease");
        driver = driver.with_leases(keeper.clone());
    }
    let handler = Arc::new(crate::assemble::handler(
        &config,
        &ports,
        driver,
        &metrics,
        source_events,
    ));

    let queue_arn = crate::queue_info::queue_arn(&sqs, &config.queue.url).await;
    let names: Vec<String> = config.groups.iter().map(|g| g.name.clone()).collect();
    let reconciling = tokio::spawn(Reconciler::new(asg.clone(), names.clone(), queue_arn).run(
        handler.clone(),
        Duration::from_secs(d.reconcile_interval_secs),
        shutdown.clone(),
    ));
    let hook_refresh = ports
        .hook_refresh
        .as_ref()
        .map(|r| r.spawn(shutdown.clone()));
    let specs = config.group_specs();
    let deletes = match &config.gc.delete_role_arn {
        Some(role) => {
            info!(role = %role, "retention deletes recovery points as the delete role");
            let client = crate::aws::assumed_ec2(&config.aws, role, Some(&metrics)).await;
            Some(crate::recovery::Deletes(Arc::new(AwsEc2::new(client))))
        }
        None => None,
    };
    let any_points = specs.iter().any(|g| !g.recovery_point_interval.is_zero());
    let recovery = (any_points || config.metrics.recovery_interval_secs > 0).then(|| {
        let idle = match config.metrics.recovery_interval_secs {
            0 => Duration::from_secs(300),
            s => Duration::from_secs(s),
        };
        let points = specs
            .into_iter()
            .map(|g| RecoveryPoints::new(ec2.clone(), asg.clone(), g))
            .collect();
        tokio::spawn(crate::recovery::run(
            ec2.clone(),
            points,
            metrics.clone(),
            crate::recovery::LoopConfig {
                idle_every: idle,
                retention: config.gc.policy(),
                leases: leases.clone(),
                deletes: deletes.clone(),
            },
            shutdown.clone(),
        ))
    });

    let listener = crate::assemble::listener_config(&config);
    info!(queue = %config.queue.url, groups = ?names, "ferryd started");
    let queue = Arc::new(ThrottledQueue::new(
        SqsQueue::new(sqs, config.queue.url.clone()),
        budget,
    ));
    let report = ferry_hook_listener::run(
        queue,
        handler.clone(),
        listener,
        Arc::new(metrics),
        shutdown,
    )
    .await;

    // Shutdown: the listener has let its hooks reach a safe point; now the rest, endpoints last.
    for (what, task) in [
        ("reconciler", Some(reconciling)),
        ("hooks refresh", hook_refresh),
        ("recovery check", recovery),
        ("readiness check", Some(readiness_task)),
    ] {
        let Some(task) = task else { continue };
        if let Err(e) = task.await {
            warn!(error = %e, "the {what} task failed");
        }
    }
    drop(handler);
    if let Some(worker) = webhook_worker {
        if tokio::time::timeout(Duration::from_secs(5), worker)
            .await
            .is_err()
        {
            warn!("webhook notifications still queued at exit were dropped");
        }
    }
    let _ = http_tx.send(true);
    if let Some(server) = http {
        let _ = server.await;
    }
    let report = report?;
    info!(
        polls = report.polls,
        received = report.received,
        hooks = report.hooks_started,
        "ferryd stopped"
    );
    Ok(())
}

/// Binds the metrics and health endpoints, or, when they are disabled or their address is taken, still
/// runs systemd notification. A taken address is logged as an error but does not stop ferryd: moving the
/// data matters more than being scraped.
async fn start_http(
    config: &Config,
    metrics: &Metrics,
    readiness: &Arc<Readiness>,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<anyhow::Result<()>>> {
    let m = &config.metrics;
    let state = HttpState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        liveness_window: m.liveness_window(),
        sd_notify: m.sd_notify,
    };
    if !m.enabled {
        crate::http::spawn_sd_notify(&state, stop);
        return None;
    }
    match tokio::net::TcpListener::bind(m.listen).await {
        Ok(listener) => Some(tokio::spawn(crate::http::serve_on(listener, state, stop))),
        Err(e) => {
            error!(addr = %m.listen, error = %e, "cannot listen on metrics.listen; running without /metrics, /healthz and /readyz");
            crate::http::spawn_sd_notify(&state, stop);
            None
        }
    }
}
