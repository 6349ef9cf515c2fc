//! ferry's `HookHandler`: admits hooks of configured, managed groups and runs them through the driver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use ferry_hook_listener::{Admission, HookHandler};
use ferry_snapshot::{
    Ec2, GroupSpec, LaunchWork, PrecopySkip, RootVolumeWork, SourceEvents, TerminateWork,
    WarmPoolWork,
};
use ferry_state_machine::path::{self, PathInput};
use ferry_state_machine::{
    tags, Driver, HookEvent, HookOutcome, HookWork, LifecycleActions, LifecyclePath, Transition,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::verify;

/// How long a group's `ferry:managed` tag is trusted before it is read again.
const MANAGED_TTL: Duration = Duration::from_secs(60);

/// How long the lifecycle state confirmed at admission decides the path; after that it is asked again.
const CONFIRMED_TTL: Duration = Duration::from_secs(30);

/// One configured group.
#[derive(Debug, Clone)]
pub struct ManagedGroup {
    /// What to manage.
    pub spec: GroupSpec,
    /// Require the group's `ferry:managed=true` tag.
    pub require_managed_tag: bool,
}

/// Admits and runs hooks.
pub struct FerryHandler {
    groups: HashMap<String, ManagedGroup>,
    delete_unmanaged: bool,
    ec2: Arc<dyn Ec2>,
    asg: Arc<dyn LifecycleActions>,
    driver: Driver,
    /// Per group, as last read from Auto Scaling: (when, tagged `ferry:managed=true`, max size over 1).
    managed: Mutex<HashMap<String, (Instant, bool, bool)>>,
    /// Runs in progress by (instance, transition): a message and the reconciler may find the same action.
    running: Mutex<HashMap<RunKey, watch::Receiver<Option<HookOutcome>>>>,
    metrics: Metrics,
    /// Told what launches' `source_unreachable` policy saw.
    source_events: Option<Arc<dyn SourceEvents>>,
    /// When terminates skip their pre-copy (`[daemon] skip_precopy_after_queue_secs`).
    precopy_skip: Option<PrecopySkip>,
    /// The lifecycle state Auto Scaling confirmed at admission, by action: (token, state, when). Taken by
    /// the `handle` that follows; trusted only for that token and for [`CONFIRMED_TTL`].
    confirmed: Mutex<HashMap<RunKey, (String, String, Instant)>>,
}

/// One lifecycle action: (instance id, transition).
type RunKey = (String, Transition);

impl FerryHandler {
    /// A handler for `groups`.
    pub fn new(
        groups: Vec<ManagedGroup>,
        delete_unmanaged: bool,
        ec2: Arc<dyn Ec2>,
        asg: Arc<dyn LifecycleActions>,
        driver: Driver,
        metrics: Metrics,
    ) -> Self {
        Self {
            groups: groups
                .into_iter()
                .map(|g| (g.spec.name.clone(), g))
                .collect(),
            delete_unmanaged,
            ec2,
            asg,
            driver,
            managed: Mutex::default(),
            running: Mutex::default(),
            metrics,
            source_events: None,
            precopy_skip: None,
            confirmed: Mutex::default(),
        }
    }

    /// The same handler, its terminates skipping the pre-copy as `skip` says.
    pub fn with_precopy_skip(mut self, skip: Option<PrecopySkip>) -> Self {
        self.precopy_skip = skip;
        self
    }

    /// The same handler, telling `events` what launches' `source_unreachable` policy saw.
    pub fn with_source_events(mut self, events: Arc<dyn SourceEvents>) -> Self {
        self.source_events = Some(events);
        self
    }

    fn ignore(&self, reason: String) -> Admission {
        Admission::Ignore {
            delete: self.delete_unmanaged,
            reason,
        }
    }

    async fn is_tagged_managed(&self, group: &str) -> Result<bool, String> {
        Ok(self.group_facts(group, false).await?.0)
    }

    /// Whether the group is tagged `ferry:managed=true`, and whether it can hold more than one instance
    /// (its max size is over 1: a group of many, whose hooks each work on one slot). Read from Auto
    /// Scaling at most every [`MANAGED_TTL`]; with `fresh_if_one`, a cached "group of one" is read again
    /// (a launch: a group just grown to many must not have its new instances all pick slot 0).
    async fn group_facts(&self, group: &str, fresh_if_one: bool) -> Result<(bool, bool), String> {
        let cached = {
            let m = self.managed.lock().unwrap_or_else(|p| p.into_inner());
            m.get(group)
                .filter(|(at, _, many)| at.elapsed() < MANAGED_TTL && (*many || !fresh_if_one))
                .map(|(_, ok, many)| (*ok, *many))
        };
        if let Some(facts) = cached {
            return Ok(facts);
        }
        let facts = match self.asg.describe_group(group).await {
            Ok(Some(info)) => (info.is_managed(), info.capacity.1 > 1),
            Ok(None) => (false, false),
            Err(e) => return Err(e.to_string()),
        };
        let mut m = self.managed.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(group.to_string(), (Instant::now(), facts.0, facts.1));
        Ok(facts)
    }

    /// The executor for a hook's lifecycle path.
    fn work_for(
        &self,
        hook: &HookEvent,
        path: LifecyclePath,
        multi_slot: bool,
    ) -> Option<Box<dyn HookWork>> {
        let group = self.groups.get(&hook.group)?;
        let (ec2, mut spec) = (self.ec2.clone(), group.spec.clone());
        spec.multi_slot = multi_slot;
        Some(match path {
            LifecyclePath::EnterService { .. } | LifecyclePath::ReplaceRootStart => {
                let work = LaunchWork::new(ec2, self.asg.clone(), spec);
                Box::new(match &self.source_events {
                    Some(e) => work.with_events(e.clone()),
                    None => work,
                })
            }
            // A warm instance holds nothing, but a terminate still checks: whatever it finds is taken off.
            LifecyclePath::Leave | LifecyclePath::DrainWarmPool => {
                Box::new(TerminateWork::new(ec2, spec).with_precopy_skip(self.precopy_skip.clone()))
            }
            LifecyclePath::FillWarmPool | LifecyclePath::ReturnToWarmPool => {
                Box::new(WarmPoolWork::new(ec2, spec))
            }
            LifecyclePath::ReplaceRootStop => Box::new(RootVolumeWork::new(ec2, spec)),
        })
    }

    /// The state confirmed at this hook's admission, if it is this delivery's and recent. Every `handle`
    /// takes its entry, so that none is left for a later action of the same instance and transition (an
    /// instance that launches again out of a warm pool).
    fn take_confirmed(&self, hook: &HookEvent) -> Option<String> {
        let key = (hook.instance_id.clone(), hook.transition);
        let (token, state, at) = self
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)?;
        (token == hook.token && at.elapsed() < CONFIRMED_TTL).then_some(state)
    }

    /// The hook's lifecycle path, from its message and the lifecycle state confirmed at admission (`known`;
    /// asked again when absent). `Err` says why it has none.
    async fn path_of(
        &self,
        hook: &HookEvent,
        known: Option<String>,
    ) -> Result<LifecyclePath, String> {
        let state = match known {
            Some(s) => s,
            None => match verify::confirm(self.asg.as_ref(), hook).await {
                Ok(Ok(s)) => s,
                Ok(Err(u)) => return Err(format!("not confirmed by Auto Scaling: {}", u.reason)),
                Err(e) => {
                    return Err(format!(
                        "cannot confirm the hook with Auto Scaling now: {e}"
                    ))
                }
            },
        };
        let choice = path::classify(&PathInput {
            transition: hook.transition,
            origin: hook.origin,
            destination: hook.destination,
            action: hook.action.as_deref(),
            state: &state,
        })?;
        if let Some(why) = &choice.overridden {
            warn!(lifecycle.path = %choice.path, reason = %why, "hook message disagrees with Auto Scaling");
        }
        info!(lifecycle.path = %choice.path, lifecycle.state = %state, "lifecycle path");
        Ok(choice.path)
    }
}

#[async_trait]
impl HookHandler for FerryHandler {
    async fn admit(&self, hook: &HookEvent) -> Admission {
        let Some(group) = self.groups.get(&hook.group) else {
            return self.ignore(format!("group {:?} is not in ferry's config", hook.group));
        };
        if group.require_managed_tag {
            match self.is_tagged_managed(&hook.group).await {
                Ok(true) => {}
                Ok(false) => {
                    return self.ignore(format!(
                        "group {:?} is not tagged ferry:managed=true",
                        hook.group
                    ))
                }
                // Cannot tell now: leave the message; it returns and is admitted once the check works.
                Err(e) => {
                    return Admission::Ignore {
                        delete: false,
                        reason: format!("cannot read group {:?}'s tags: {e}", hook.group),
                    }
                }
            }
        }
        // A message is a claim: Auto Scaling must confirm it before anything is touched. An unconfirmed
        // message creates no ledger entry, snapshot or attachment, and is deleted: if the action is real after
        // all (a lagging read), reconciliation finds it from group state.
        match verify::confirm(self.asg.as_ref(), hook).await {
            Ok(Ok(state)) => {
                let key = (hook.instance_id.clone(), hook.transition);
                self.confirmed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (hook.token.clone(), state, Instant::now()));
                Admission::Work
            }
            Ok(Err(u)) => {
                warn!(check = u.check, reason = %u.reason, "hook message not confirmed by Auto Scaling; deleting it, touching nothing");
                self.metrics.hook_unverified(hook, u.check);
                Admission::Ignore {
                    delete: true,
                    reason: format!("not confirmed by Auto Scaling: {}", u.reason),
                }
            }
            Err(e) => Admission::Ignore {
                delete: false,
                reason: format!(
                    "cannot confirm the hook with Auto Scaling now: {e}; the message will return"
                ),
            },
        }
    }

    async fn handle(&self, hook: HookEvent, shutdown: watch::Receiver<bool>) -> HookOutcome {
        let confirmed = self.take_confirmed(&hook);
        let key = (hook.instance_id.clone(), hook.transition);
        let claim = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    running.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        let tx = match claim {
            Ok(tx) => tx,
            Err(mut rx) => {
                info!("this lifecycle action is already being worked here; waiting for that run");
                let outcome = rx
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|o| o.clone());
                return outcome.unwrap_or_else(|| {
                    HookOutcome::Interrupted("the other run ended without an outcome".into())
                });
            }
        };
        let outcome = self.run(&hook, confirmed, shutdown).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let _ = tx.send(Some(outcome.clone()));
        outcome
    }
}

impl FerryHandler {
    /// Picks the hook's path and executor and runs it through the driver.
    async fn run(
        &self,
        hook: &HookEvent,
        confirmed: Option<String>,
        shutdown: watch::Receiver<bool>,
    ) -> HookOutcome {
        let path = match self.path_of(hook, confirmed).await {
            Ok(p) => p,
            Err(why) => {
                warn!(reason = %why, "no lifecycle path for this hook; touching nothing");
                return HookOutcome::Interrupted(why);
            }
        };
        let launch = hook.transition == Transition::Launching;
        let multi_slot = match self.group_facts(&hook.group, launch).await {
            Ok((_, many)) => many,
            Err(e) => {
                return HookOutcome::Interrupted(format!(
                    "cannot read group {:?} from Auto Scaling now: {e}",
                    hook.group
                ))
            }
        };
        let Some(work) = self.work_for(hook, path, multi_slot) else {
            return HookOutcome::Interrupted(format!("group {:?} is not configured", hook.group));
        };
        self.metrics.hook_path(hook, path.label());
        self.mark_path(hook, path).await;
        let started_ago = hook
            .time
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        self.metrics.hook_started(hook);
        let outcome = self
            .driver
            .run(hook, work.as_ref(), started_ago, shutdown)
            .await;
        outcome
    }

    /// Tags the instance with a path that its Auto Scaling state alone does not show (a warm-pool entry, a
    /// root-volume replacement), so that `ferryd status` can say what is in progress. One idempotent
    /// `CreateTags`, and none on the common paths; a failure costs only the report.
    async fn mark_path(&self, hook: &HookEvent, path: LifecyclePath) {
        if matches!(
            path,
            LifecyclePath::Leave
                | LifecyclePath::EnterService {
                    from_warm_pool: false
                }
        ) {
            return;
        }
        let tag = (tags::LIFECYCLE_PATH.to_string(), path.label().to_string());
        if let Err(e) = self.ec2.tag_instance(&hook.instance_id, &[tag]).await {
            warn!(error = %e, "cannot tag the instance with its lifecycle path; status will not show it");
        }
    }
}
