//! The listener tests' fixture: a scriptable fake handler, a counting observer and a running listener.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::{HookEvent, HookOutcome, LifecycleResult, StepError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::sleep;

use super::*;
use crate::handler::Admission;

pub(super) const VIS: Duration = Duration::from_secs(30);

pub(super) fn hook_body(token: &str, group: &str) -> String {
    serde_json::json!({
        "LifecycleHookName": "ferry-launch",
        "AccountId": "123456789012",
        "RequestId": "r-1",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        "AutoScalingGroupName": group,
        "Service": "AWS Auto Scaling",
        "Time": "2026-11-22T23:11:08.123Z",
        "EC2InstanceId": format!("i-{token}"),
        "LifecycleActionToken": token,
    })
    .to_string()
}

/// A handler that works for `work`, answers per-group admissions and scripted outcomes, and counts.
#[derive(Default)]
pub(super) struct FakeHandler {
    pub(super) work: Duration,
    pub(super) admissions: HashMap<String, Admission>,
    /// Outcomes to return, per token, in order; then `Completed`.
    pub(super) scripted: Mutex<HashMap<String, Vec<HookOutcome>>>,
    pub(super) handled: Mutex<Vec<String>>,
    pub(super) admitted: AtomicUsize,
    pub(super) running: AtomicUsize,
    pub(super) max_running: AtomicUsize,
}

impl FakeHandler {
    pub(super) fn working(work: Duration) -> Self {
        Self {
            work,
            ..Self::default()
        }
    }

    pub(super) fn handled(&self) -> Vec<String> {
        self.handled.lock().unwrap().clone()
    }
}

#[async_trait]
impl HookHandler for FakeHandler {
    async fn admit(&self, hook: &HookEvent) -> Admission {
        self.admitted.fetch_add(1, Ordering::SeqCst);
        self.admissions
            .get(&hook.group)
            .cloned()
            .unwrap_or(Admission::Work)
    }

    async fn handle(&self, hook: HookEvent, mut shutdown: watch::Receiver<bool>) -> HookOutcome {
        self.handled.lock().unwrap().push(hook.token.clone());
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let outcome = tokio::select! {
            _ = sleep(self.work) => {
                let mut scripted = self.scripted.lock().unwrap();
                match scripted.get_mut(&hook.token).filter(|v| !v.is_empty()) {
                    Some(v) => v.remove(0),
                    None => HookOutcome::Completed { result: LifecycleResult::Continue, reason: "done".into() },
                }
            }
            _ = shutdown.wait_for(|s| *s) => HookOutcome::Interrupted("shutdown".into()),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

#[derive(Default)]
pub(super) struct CountingObserver {
    pub(super) polls: AtomicUsize,
    pub(super) parse_errors: AtomicUsize,
    pub(super) deleted: AtomicUsize,
    pub(super) delete_errors: AtomicUsize,
    pub(super) duplicates: AtomicUsize,
    pub(super) receive_errors: AtomicUsize,
    pub(super) outcomes: Mutex<Vec<&'static str>>,
}

impl ListenerObserver for CountingObserver {
    fn on_poll(&self) {
        self.polls.fetch_add(1, Ordering::SeqCst);
    }
    fn on_parse_error(&self, _: &crate::ParseError) {
        self.parse_errors.fetch_add(1, Ordering::SeqCst);
    }
    fn on_deleted(&self) {
        self.deleted.fetch_add(1, Ordering::SeqCst);
    }
    fn on_delete_error(&self, _: &StepError) {
        self.delete_errors.fetch_add(1, Ordering::SeqCst);
    }
    fn on_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::SeqCst);
    }
    fn on_receive_error(&self, _: &StepError) {
        self.receive_errors.fetch_add(1, Ordering::SeqCst);
    }
    fn on_outcome(&self, _: &HookEvent, o: &HookOutcome) {
        self.outcomes.lock().unwrap().push(o.label());
    }
}

pub(super) struct Running {
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: JoinHandle<Result<ListenerReport, crate::ConfigError>>,
    pub(super) observer: Arc<CountingObserver>,
}

impl Running {
    pub(super) async fn shutdown(self) -> ListenerReport {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap()
    }
}

pub(super) fn cfg() -> ListenerConfig {
    ListenerConfig::with_visibility(VIS)
}

pub(super) fn start(
    queue: Arc<dyn Queue>,
    handler: Arc<FakeHandler>,
    cfg: ListenerConfig,
) -> Running {
    let (stop, rx) = watch::channel(false);
    let observer = Arc::new(CountingObserver::default());
    let task = tokio::spawn(run(queue, handler, cfg, observer.clone(), rx));
    Running {
        stop,
        task,
        observer,
    }
}
