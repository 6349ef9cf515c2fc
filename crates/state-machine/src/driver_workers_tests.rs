//! Driver tests of the workers: a hook holds a worker only while it steps.

use std::sync::Mutex;

use super::tests::{hook, spec};
use super::*;
use crate::fake::FakeLifecycleActions;
use crate::lock::LocalSlotLocks;

/// A step that takes `took` of work, then waits (`waits` times) or finishes.
struct Busy {
    took: Duration,
    waits: Mutex<u32>,
}

#[async_trait]
impl HookWork for Busy {
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        tokio::time::sleep(self.took).await;
        let mut w = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        if *w == 0 {
            return Ok(Progress::Finished(Verdict::terminate_done("done")));
        }
        *w -= 1;
        Ok(Progress::Waiting("barrier".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_hook_holds_no_worker() {
    let f = FakeLifecycleActions::default();
    for i in 0..2 {
        let mut h = hook();
        h.group = format!("db{i}");
        f.put_hook(&h.group, spec(300));
        f.open_action(&h.group, "launch", "i-1", &format!("tok-{i}"));
    }
    let d = Driver::new(
        Arc::new(f.clone()),
        Arc::new(LocalSlotLocks::default()),
        Arc::new(NoObserver),
        DriverConfig {
            workers: 1,
            ..DriverConfig::default()
        },
    );
    let (_tx, rx) = watch::channel(false);
    // Hook 0 waits at a barrier for a long time, stepping briefly now and then; hook 1 needs 10 steps of 1 s.
    let waiter = Busy {
        took: Duration::from_millis(10),
        waits: Mutex::new(1000),
    };
    let worker = Busy {
        took: Duration::from_secs(1),
        waits: Mutex::new(9),
    };
    let start = Instant::now();
    let mut h0 = hook();
    h0.group = "db0".into();
    h0.token = "tok-0".into();
    let mut h1 = hook();
    h1.group = "db1".into();
    h1.token = "tok-1".into();
    let d2 = d.clone();
    let rx2 = rx.clone();
    let waiting = tokio::spawn(async move { d2.run(&h0, &waiter, Duration::ZERO, rx2).await });
    let out = d.run(&h1, &worker, Duration::ZERO, rx).await;
    assert!(matches!(out, HookOutcome::Completed { .. }), "{out:?}");
    // Ten 1 s steps and nine polls between them (about 37 s of backoff), with one worker shared: the
    // waiter never held it across a sleep (its 1000 waits take hours), so the other waited at most one 10 ms
    // step of the waiter each time.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(60), "{took:?}");
    waiting.abort();
}
