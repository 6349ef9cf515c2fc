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

/// A driver of one worker over groups `db0` and `db1`, each with an open launch action (`tok-0`, `tok-1`).
fn one_worker_two_groups() -> Driver {
    let f = FakeLifecycleActions::default();
    for i in 0..2 {
        f.put_hook(&format!("db{i}"), spec(300));
        f.open_action(&format!("db{i}"), "launch", "i-1", &format!("tok-{i}"));
    }
    Driver::new(
        Arc::new(f),
        Arc::new(LocalSlotLocks::default()),
        Arc::new(NoObserver),
        DriverConfig {
            workers: 1,
            ..DriverConfig::default()
        },
    )
}

#[tokio::test(start_paused = true)]
async fn a_waiting_hook_holds_no_worker() {
    let d = one_worker_two_groups();
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

/// A step that makes one call of an action whose bucket is spent, then finishes.
struct Throttled {
    budget: Arc<crate::budget::ApiBudget>,
}

#[async_trait]
impl HookWork for Throttled {
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        self.budget.acquire("ec2:CreateSnapshot").await;
        Ok(Progress::Finished(Verdict::terminate_done("done")))
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_waiting_for_an_api_token_gives_up_its_worker() {
    let d = one_worker_two_groups();
    // One CreateSnapshot token, then one every 100 s: taken now, so hook 0's step waits 100 s for its call.
    let mut limits = std::collections::BTreeMap::new();
    limits.insert(
        "ec2:CreateSnapshot".to_string(),
        crate::budget::Limit::new(1, 0.01),
    );
    let budget = Arc::new(crate::budget::ApiBudget::new(&limits));
    budget.acquire("ec2:CreateSnapshot").await;
    let (_tx, rx) = watch::channel(false);
    let hooks: Vec<HookEvent> = (0..2)
        .map(|i| {
            let mut h = hook();
            h.group = format!("db{i}");
            h.token = format!("tok-{i}");
            h
        })
        .collect();
    let start = Instant::now();
    let (d0, h0, rx0) = (d.clone(), hooks[0].clone(), rx.clone());
    let throttled = Throttled { budget };
    let waiting = tokio::spawn(async move {
        let out = d0.run(&h0, &throttled, Duration::ZERO, rx0).await;
        (out, start.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Hook 1 needs the only worker while hook 0 waits for its token: it gets it and finishes at once.
    let quick = Busy {
        took: Duration::from_millis(10),
        waits: Mutex::new(0),
    };
    let out = d.run(&hooks[1], &quick, Duration::ZERO, rx).await;
    assert!(matches!(out, HookOutcome::Completed { .. }), "{out:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let Ok((out, waited)) = waiting.await else {
        panic!("the throttled hook's task")
    };
    assert!(matches!(out, HookOutcome::Completed { .. }), "{out:?}");
    assert!(waited >= Duration::from_secs(99), "{waited:?}");
}
