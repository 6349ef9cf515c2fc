//! [`Fanout`]: one `HookObserver` that passes every event to several (metrics, the webhook, ...), so the
//! driver keeps taking a single observer.

use std::sync::Arc;
use std::time::Duration;

use ferry_snapshot::SourceEvents;
use ferry_state_machine::{
    AttachedData, HookEvent, HookObserver, HookOutcome, Progress, StepError,
};

/// Tells each of several [`SourceEvents`] (metrics, the webhook) in turn.
#[derive(Clone, Default)]
pub struct SourceFanout(pub Vec<Arc<dyn SourceEvents>>);

impl SourceEvents for SourceFanout {
    fn source_unreachable(&self, group: &str, instance: &str, policy: &str, waited: Duration) {
        for e in &self.0 {
            e.source_unreachable(group, instance, policy, waited);
        }
    }

    fn restored_latest(
        &self,
        group: &str,
        slot: u32,
        instance: &str,
        loss: u64,
        attached: &[AttachedData],
    ) {
        for e in &self.0 {
            e.restored_latest(group, slot, instance, loss, attached);
        }
    }
}

/// Calls each observer in turn, in order.
#[derive(Clone, Default)]
pub struct Fanout(pub Vec<Arc<dyn HookObserver>>);

impl Fanout {
    /// A fanout over `observers`.
    pub fn new(observers: Vec<Arc<dyn HookObserver>>) -> Self {
        Self(observers)
    }
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("observers", &self.0.len())
            .finish()
    }
}

impl HookObserver for Fanout {
    fn on_progress(&self, hook: &HookEvent, progress: &Progress) {
        for o in &self.0 {
            o.on_progress(hook, progress);
        }
    }

    fn on_error(&self, hook: &HookEvent, error: &StepError) {
        for o in &self.0 {
            o.on_error(hook, error);
        }
    }

    fn on_heartbeat(&self, hook: &HookEvent) {
        for o in &self.0 {
            o.on_heartbeat(hook);
        }
    }

    fn on_end(&self, hook: &HookEvent, outcome: &HookOutcome, took: Duration) {
        for o in &self.0 {
            o.on_end(hook, outcome, took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_state_machine::{LifecycleResult, Transition};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn push(&self, s: String) {
            self.0.lock().expect("not poisoned").push(s);
        }
        fn seen(&self) -> Vec<String> {
            self.0.lock().expect("not poisoned").clone()
        }
    }

    impl HookObserver for Recorder {
        fn on_progress(&self, hook: &HookEvent, progress: &Progress) {
            self.push(format!("progress {} {progress:?}", hook.instance_id));
        }
        fn on_error(&self, _hook: &HookEvent, error: &StepError) {
            self.push(format!("error {}", error.operation));
        }
        fn on_heartbeat(&self, _hook: &HookEvent) {
            self.push("heartbeat".into());
        }
        fn on_end(&self, _hook: &HookEvent, outcome: &HookOutcome, took: Duration) {
            self.push(format!("end {} {}", outcome.label(), took.as_secs()));
        }
    }

    fn hook() -> HookEvent {
        HookEvent {
            hook_name: "launch".into(),
            group: "db".into(),
            instance_id: "i-1".into(),
            token: "tok".into(),
            transition: Transition::Launching,
            time: None,
            origin: None,
            destination: None,
            action: None,
            metadata: None,
        }
    }

    #[test]
    fn every_observer_sees_every_event_in_order() {
        let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let fan = Fanout::new(vec![a.clone(), b.clone()]);
        assert_eq!(fan.0.len(), 2);
        let h = hook();
        fan.on_progress(&h, &Progress::Acted("created vol".into()));
        fan.on_error(&h, &StepError::retry("ec2:CreateVolume", "boom"));
        fan.on_heartbeat(&h);
        let done = HookOutcome::Completed {
            result: LifecycleResult::Continue,
            reason: "ok".into(),
        };
        fan.on_end(&h, &done, Duration::from_secs(7));
        let want = vec![
            "progress i-1 Acted(\"created vol\")".to_string(),
            "error ec2:CreateVolume".into(),
            "heartbeat".into(),
            "end continue 7".into(),
        ];
        assert_eq!(a.seen(), want);
        assert_eq!(b.seen(), want);
    }

    #[test]
    fn an_empty_fanout_is_a_no_op() {
        let fan = Fanout::default();
        assert!(fan.0.is_empty());
        fan.on_heartbeat(&hook());
        assert_eq!(format!("{fan:?}"), "Fanout { observers: 0 }");
    }
}
