//! Driver tests of the wake-up: a hook waiting on its slot observes again as soon as another hook of the
//! same slot completes, not at its next poll.

use std::sync::atomic::{AtomicBool, Ordering};

use super::tests::{hook, spec};
use super::*;
use crate::fake::FakeLifecycleActions;
use crate::lock::LocalSlotLocks;

/// Waits until `done` is set (by the other hook), then finishes.
struct UntilDone(Arc<AtomicBool>);

#[async_trait]
impl HookWork for UntilDone {
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        if self.0.load(Ordering::SeqCst) {
            return Ok(Progress::Finished(Verdict::terminate_done("seen")));
        }
        Ok(Progress::Waiting("the other hook".into()))
    }
}

/// Works for a second, sets `done`, and finishes (its completion is the change).
struct SetsDone(Arc<AtomicBool>);

#[async_trait]
impl HookWork for SetsDone {
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.0.store(true, Ordering::SeqCst);
        Ok(Progress::Finished(Verdict::terminate_done("done")))
    }
}

fn hook_of(group: &str, token: &str) -> HookEvent {
    let mut h = hook();
    h.group = group.into();
    h.token = token.into();
    h.instance_id = format!("i-{token}");
    h
}

#[tokio::test(start_paused = true)]
async fn a_completion_wakes_the_waiters_of_its_slot_only() {
    let f = FakeLifecycleActions::default();
    for (group, token) in [("db", "tok-wait"), ("db", "tok-done"), ("mq", "tok-other")] {
        f.put_hook(group, spec(3600));
        f.open_action(group, "launch", &format!("i-{token}"), token);
    }
    let d = Driver::new(
        Arc::new(f.clone()),
        Arc::new(LocalSlotLocks::default()),
        Arc::new(NoObserver),
        DriverConfig {
            poll_min: Duration::from_secs(60),
            poll_max: Duration::from_secs(60),
            ..DriverConfig::default()
        },
    );
    let (_tx, rx) = watch::channel(false);
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let waiter = |group: &'static str, token: &'static str| {
        let (d, rx, work) = (d.clone(), rx.clone(), UntilDone(done.clone()));
        tokio::spawn(async move {
            let out = d
                .run(&hook_of(group, token), &work, Duration::ZERO, rx)
                .await;
            (out, start.elapsed())
        })
    };
    let same_slot = waiter("db", "tok-wait");
    let other_slot = waiter("mq", "tok-other");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = d
        .run(
            &hook_of("db", "tok-done"),
            &SetsDone(done.clone()),
            Duration::ZERO,
            rx.clone(),
        )
        .await;
    assert!(matches!(out, HookOutcome::Completed { .. }), "{out:?}");

    let (out, at) = same_slot.await.unwrap();
    assert!(matches!(out, HookOutcome::Completed { .. }), "{out:?}");
    assert!(
        at < Duration::from_secs(2),
        "woken by the completion: {at:?}"
    );
    let (out, at) = other_slot.await.unwrap();
    assert!(matches!(out, HookOutcome::Completed { .. }), "{out:?}");
    assert!(at >= Duration::from_secs(60), "another slot polls: {at:?}");
    let completed: Vec<String> = f.completions().into_iter().map(|c| c.instance_id).collect();
    assert_eq!(completed, ["i-tok-done", "i-tok-wait", "i-tok-other"]);
}
