//! How `ferryd run` puts its parts together, shared with the storm simulation so that both run the same
//! stack: the ports layered (API budget, crash point, batched reads), the driver, and the hook handler.

use std::sync::Arc;
use std::time::Duration;

use ferry_hook_listener::ListenerConfig;
use ferry_snapshot::batched::Batched;
use ferry_snapshot::gated::Throttled;
use ferry_snapshot::read_your_writes::ReadYourWrites;
use ferry_snapshot::{Ec2, PrecopySkip, SourceEvents};
use ferry_state_machine::batched::BatchedActions;
use ferry_state_machine::budget::ApiBudget;
use ferry_state_machine::gate::ThrottledLifecycleActions;
use ferry_state_machine::hook_cache::{self, HookCache, RefreshPlan, HOOKS_TTL};
use ferry_state_machine::lease::Leaser;
use ferry_state_machine::lease_keeper::LeaseKeeper;
use ferry_state_machine::loader::LoaderConfig;
use ferry_state_machine::lock::LocalSlotLocks;
use ferry_state_machine::{Driver, DriverConfig, HookObserver, LifecycleActions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::crashpoint::{self, CrashPoint};
use crate::fanout::{Fanout, SourceFanout};
use crate::handler::{FerryHandler, ManagedGroup};
use crate::lease_store::DynamoLeaseStore;
use crate::metrics::Metrics;

/// The EC2 and Auto Scaling ports every part of the daemon uses.
#[derive(Clone)]
pub struct Ports {
    /// EC2.
    pub ec2: Arc<dyn Ec2>,
    /// Auto Scaling.
    pub asg: Arc<dyn LifecycleActions>,
    /// The background refresh of the groups' hooks (`[daemon] hooks_refresh_secs`); `None` when off.
    pub hook_refresh: Option<HookRefresh>,
    /// The API budget every call waits on.
    pub budget: Arc<ApiBudget>,
}

/// What `hook_refresh` runs: Auto Scaling below the batching, the cache the batched reads answer from, the
/// groups and the plan.
#[derive(Clone)]
pub struct HookRefresh {
    asg: Arc<dyn LifecycleActions>,
    cache: Arc<HookCache>,
    groups: Vec<String>,
    plan: RefreshPlan,
}

impl HookRefresh {
    /// One pass over every group.
    pub fn cycle(&self) -> Duration {
        self.plan.cycle
    }

    /// Starts the refresh; it ends on `shutdown`.
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(hook_cache::refresh(
            self.asg.clone(),
            self.cache.clone(),
            self.groups.clone(),
            self.plan,
            shutdown,
        ))
    }
}

/// Layers the raw ports: EC2 is held to read-your-writes (`ReadYourWrites`: a Describe that misses a volume or
/// snapshot this process just created is read again, not acted on), each call waits for its action's token
/// in `budget` ([aws] rate_limits), a crash point
/// (test builds only) sees each call that passed, and reads are coalesced across hooks (`[daemon] read_pace`).
pub fn layer<E, A>(
    ec2: E,
    asg: A,
    budget: &Arc<ApiBudget>,
    config: &Config,
    crash: Option<Arc<CrashPoint>>,
) -> Ports
where
    E: Ec2 + 'static,
    A: LifecycleActions + 'static,
{
    let settle = Duration::from_secs(config.daemon.startup_settle_secs);
    let ec2 = Throttled::new(ReadYourWrites::new(ec2).settling(settle), budget.clone());
    let asg = ThrottledLifecycleActions::new(asg, budget.clone());
    let (ec2, asg) = crashpoint::wrap(ec2, asg, crash);
    let reads = LoaderConfig {
        pace: config.daemon.read_pace,
        ..LoaderConfig::default()
    };
    let groups: Vec<String> = config.groups.iter().map(|g| g.name.clone()).collect();
    let plan = RefreshPlan::new(
        Duration::from_secs(config.daemon.hooks_refresh_secs),
        groups.len(),
    );
    let cache = Arc::new(HookCache::new(plan.map_or(HOOKS_TTL, |p| p.ttl())));
    Ports {
        asg: Arc::new(BatchedActions::new(asg.clone(), reads).with_hook_cache(cache.clone())),
        ec2: Arc::new(Batched::new(ec2, reads)),
        hook_refresh: plan.map(|plan| HookRefresh {
            asg,
            cache,
            groups,
            plan,
        }),
        budget: budget.clone(),
    }
}

/// The driver of `config`'s timing, telling `observers` about every hook.
pub fn driver(config: &Config, ports: &Ports, observers: Vec<Arc<dyn HookObserver>>) -> Driver {
    let d = &config.daemon;
    Driver::new(
        ports.asg.clone(),
        Arc::new(LocalSlotLocks::default()),
        Arc::new(Fanout::new(observers)),
        DriverConfig {
            heartbeat_fraction: d.heartbeat_fraction,
            poll_min: Duration::from_millis(d.poll_min_ms),
            poll_max: Duration::from_millis(d.poll_max_ms),
            workers: d.workers,
            ..DriverConfig::default()
        },
    )
}

/// The lease keeper of this replica when `[lease] table` is set: a lease per (group, slot) in that
/// DynamoDB table, owned under an id unique to this process run.
pub fn leases(
    config: &Config,
    dynamodb: &aws_sdk_dynamodb::Client,
    metrics: &Metrics,
) -> Option<LeaseKeeper> {
    let table = config.lease.table.as_ref()?;
    let store = Arc::new(DynamoLeaseStore::new(dynamodb.clone(), table.clone()));
    let leaser = Leaser::new(store, owner_id(), config.lease.timing());
    Some(LeaseKeeper::new(
        leaser,
        config.lease.keeper_timing(),
        Arc::new(metrics.clone()),
    ))
}

/// `<hostname>/<pid>/<start in Unix nanoseconds>`: unique per process run, readable in the table.
fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ferryd".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{host}/{}/{started}", std::process::id())
}

/// The handler of `config`'s groups.
pub fn handler(
    config: &Config,
    ports: &Ports,
    driver: Driver,
    metrics: &Metrics,
    source_events: Vec<Arc<dyn SourceEvents>>,
) -> FerryHandler {
    let groups = config
        .group_specs()
        .into_iter()
        .zip(&config.groups)
        .map(|(spec, g)| ManagedGroup {
            spec,
            require_managed_tag: g.require_managed_tag,
        })
        .collect();
    FerryHandler::new(
        groups,
        config.queue.delete_unmanaged,
        ports.ec2.clone(),
        ports.asg.clone(),
        driver,
        metrics.clone(),
    )
    .with_source_events(Arc::new(SourceFanout(source_events)))
    .with_precopy_skip(match config.daemon.skip_precopy_after_queue_secs {
        0 => None,
        s => Some(PrecopySkip {
            budget: ports.budget.clone(),
            after: Duration::from_secs(s),
        }),
    })
}

/// The listener's settings from `config`.
pub fn listener_config(config: &Config) -> ListenerConfig {
    ListenerConfig {
        max_in_flight: config.daemon.max_in_flight,
        ..ListenerConfig::with_visibility(Duration::from_secs(config.queue.visibility_timeout_secs))
    }
}
