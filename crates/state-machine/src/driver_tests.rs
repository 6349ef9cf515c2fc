//! Driver tests on the fake Auto Scaling with paused time: heartbeats, retries, timeouts, shutdown.

use super::*;
use crate::fake::{FakeLifecycleActions, FaultyLifecycleActions};
use crate::lock::LocalSlotLocks;
use crate::model::{LifecycleResult, Transition};
use std::sync::Mutex;

/// A `HookWork` that plays a script of results, then keeps returning the last one.
struct Script {
    steps: Mutex<Vec<Result<Progress, StepError>>>,
    calls: Mutex<u32>,
}

impl Script {
    fn new(mut steps: Vec<Result<Progress, StepError>>) -> Self {
        steps.reverse();
        Self {
            steps: Mutex::new(steps),
            calls: Mutex::new(0),
        }
    }
    fn calls(&self) -> u32 {
        *self.calls.lock().unwrap()
    }
}

#[async_trait]
impl HookWork for Script {
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        *self.calls.lock().unwrap() += 1;
        let mut s = self.steps.lock().unwrap();
        if s.len() > 1 {
            s.pop().unwrap()
        } else {
            s.last().cloned().unwrap()
        }
    }
}

pub(super) fn hook() -> HookEvent {
    HookEvent {
        hook_name: "launch".into(),
        group: "db".into(),
        instance_id: "i-1".into(),
        token: "tok-1".into(),
        transition: Transition::Launching,
        time: None,
        origin: None,
        destination: None,
        action: None,
        metadata: None,
    }
}

pub(super) fn spec(heartbeat_s: u64) -> HookSpec {
    HookSpec {
        name: "launch".into(),
        transition: Some(Transition::Launching),
        heartbeat_timeout: Duration::from_secs(heartbeat_s),
        default_result: LifecycleResult::Abandon,
        target_arn: None,
    }
}

fn fake(heartbeat_s: u64) -> FakeLifecycleActions {
    let f = FakeLifecycleActions::default();
    f.put_hook("db", spec(heartbeat_s));
    f.open_action("db", "launch", "i-1", "tok-1");
    f
}

fn driver(actions: Arc<dyn LifecycleActions>) -> Driver {
    Driver::new(
        actions,
        Arc::new(LocalSlotLocks::default()),
        Arc::new(NoObserver),
        DriverConfig::default(),
    )
}

/// Runs `hook()` on a default driver over `actions`, as a fresh action with no shutdown.
async fn run_now(actions: impl LifecycleActions + 'static, work: &dyn HookWork) -> HookOutcome {
    let d = driver(Arc::new(actions));
    d.run(&hook(), work, Duration::ZERO, no_shutdown()).await
}

fn ready() -> Verdict {
    Verdict::launch_ready(
        &["data".to_string()],
        vec![crate::verdict::AttachedData {
            logical: "data".into(),
            volume_id: "vol-1".into(),
            generation: crate::model::Generation(1),
            loss_window_secs: None,
        }],
    )
    .unwrap()
}

fn no_shutdown() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    std::mem::forget(tx);
    rx
}

#[tokio::test(start_paused = true)]
async fn long_wait_heartbeats_then_continues() {
    let f = fake(60);
    // 200 waits at up to 15 s each: well past several heartbeat intervals of 30 s.
    let mut steps: Vec<_> = (0..200)
        .map(|_| Ok(Progress::Waiting("snapshot pending".into())))
        .collect();
    steps.push(Ok(Progress::Finished(ready())));
    let work = Script::new(steps);
    let began = Instant::now();
    let out = run_now(f.clone(), &work).await;
    assert_eq!(out.label(), "continue");
    let waited = began.elapsed();
    let beats = f.heartbeats("tok-1");
    // One heartbeat every 30 s (half the 60 s timeout), never more often.
    let expected = (waited.as_secs() / 30) as u32;
    assert!(
        beats >= expected.saturating_sub(1) && beats <= expected + 1,
        "{beats} beats in {waited:?}"
    );
    assert_eq!(f.completions().len(), 1);
    assert_eq!(f.completions()[0].result, LifecycleResult::Continue);
}

#[tokio::test(start_paused = true)]
async fn old_action_heartbeats_at_once() {
    let f = fake(60);
    let work = Script::new(vec![
        Ok(Progress::Waiting("x".into())),
        Ok(Progress::Finished(ready())),
    ]);
    let out = driver(Arc::new(f.clone()))
        .run(&hook(), &work, Duration::from_secs(45), no_shutdown())
        .await;
    assert_eq!(out.label(), "continue");
    assert_eq!(
        f.heartbeats("tok-1"),
        1,
        "45 s old with a 30 s interval: heartbeat before the first wait ends"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_error_abandons() {
    let f = fake(60);
    let work = Script::new(vec![Err(StepError::from_aws(
        "ec2:AttachVolume",
        Some("InvalidVolume.ZoneMismatch"),
        Some("zones differ"),
        Some(400),
    ))]);
    let out = run_now(f.clone(), &work).await;
    assert_eq!(out.label(), "abandon");
    assert_eq!(f.completions()[0].result, LifecycleResult::Abandon);
}

#[tokio::test(start_paused = true)]
async fn throttling_retries_with_backoff_never_abandons() {
    let f = fake(60);
    let throttle = || {
        Err(StepError::from_aws(
            "ec2:CreateVolume",
            Some("RequestLimitExceeded"),
            None,
            Some(400),
        ))
    };
    let mut steps: Vec<_> = (0..12).map(|_| throttle()).collect();
    steps.push(Ok(Progress::Finished(ready())));
    let work = Script::new(steps);
    let began = Instant::now();
    let out = run_now(f.clone(), &work).await;
    assert_eq!(out.label(), "continue");
    assert_eq!(work.calls(), 13);
    // Backoff, not a tight loop: twelve retries took real (virtual) time.
    assert!(
        began.elapsed() >= Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn global_timeout_abandons_before_it_passes() {
    let f = fake(30); // global timeout = 3000 s
    let work = Script::new(vec![Ok(Progress::Waiting("stuck".into()))]);
    let out = run_now(f.clone(), &work).await;
    match out {
        HookOutcome::Completed { result, reason } => {
            assert_eq!(result, LifecycleResult::Abandon);
            assert!(reason.contains("global timeout"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn expired_action_ends_without_error() {
    let f = fake(60);
    f.expire_action("tok-1");
    let work = Script::new(vec![Ok(Progress::Finished(ready()))]);
    let out = run_now(f.clone(), &work).await;
    assert_eq!(out, HookOutcome::AlreadyEnded);
    assert!(f.completions().is_empty());
}

#[tokio::test(start_paused = true)]
async fn heartbeat_on_expired_action_stops_the_work() {
    let f = fake(60);
    let work = Script::new(vec![Ok(Progress::Waiting("x".into()))]);
    let fc = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(20)).await;
        fc.expire_action("tok-1");
    });
    let out = run_now(f.clone(), &work).await;
    assert_eq!(out, HookOutcome::AlreadyEnded);
}

#[tokio::test(start_paused = true)]
async fn transient_complete_failure_is_retried() {
    let f = FaultyLifecycleActions::new(fake(60));
    for _ in 0..3 {
        f.gate().fail_next(
            "CompleteLifecycleAction",
            StepError::from_aws(
                "autoscaling:CompleteLifecycleAction",
                Some("Throttling"),
                None,
                Some(400),
            ),
        );
    }
    let work = Script::new(vec![Ok(Progress::Finished(ready()))]);
    let out = run_now(f.clone(), &work).await;
    assert_eq!(out.label(), "continue");
}

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_a_wait_without_completing() {
    let f = fake(60);
    let work = Script::new(vec![Ok(Progress::Waiting("x".into()))]);
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = tx.send(true);
        std::mem::forget(tx);
    });
    let out = driver(Arc::new(f.clone()))
        .run(&hook(), &work, Duration::ZERO, rx)
        .await;
    assert_eq!(out, HookOutcome::Interrupted("shutdown".into()));
    assert!(
        f.completions().is_empty(),
        "an interrupted hook is not completed"
    );
}

/// Records when each heartbeat succeeded, in seconds since it was made.
struct Beats(Instant, Mutex<Vec<u64>>);

impl Beats {
    fn at(&self) -> Vec<u64> {
        self.1.lock().unwrap().clone()
    }
}

impl HookObserver for Beats {
    fn on_heartbeat(&self, _hook: &HookEvent) {
        self.1.lock().unwrap().push(self.0.elapsed().as_secs());
    }
}

/// A `HookWork` whose every step sleeps, then returns the same progress; records each step's start and end.
struct Slow(Duration, Progress, Instant, Mutex<Vec<(u64, u64)>>);

impl Slow {
    fn new(took_s: u64, then: Progress) -> Self {
        let took = Duration::from_secs(took_s);
        Self(took, then, Instant::now(), Mutex::default())
    }
    fn steps(&self) -> Vec<(u64, u64)> {
        self.3.lock().unwrap().clone()
    }
}

#[async_trait]
impl HookWork for Slow {
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        let start = self.2.elapsed().as_secs();
        tokio::time::sleep(self.0).await;
        let end = self.2.elapsed().as_secs();
        self.3.lock().unwrap().push((start, end));
        Ok(self.1.clone())
    }
}

/// A driver heartbeating every 24 s (0.4 x the fake's 60 s timeout), so no heartbeat meets a step's end.
fn driver_24s(f: &FakeLifecycleActions, locks: LocalSlotLocks) -> (Driver, Arc<Beats>) {
    let beats = Arc::new(Beats(Instant::now(), Mutex::default()));
    let cfg = DriverConfig {
        heartbeat_fraction: 0.4,
        ..DriverConfig::default()
    };
    let d = Driver::new(Arc::new(f.clone()), Arc::new(locks), beats.clone(), cfg);
    (d, beats)
}

/// How many heartbeat and complete calls the fake saw.
fn beats_and_completes(f: &FakeLifecycleActions) -> (usize, usize) {
    let n = |op: &str| f.calls().iter().filter(|c| *c == op).count();
    (
        n("RecordLifecycleActionHeartbeat"),
        n("CompleteLifecycleAction"),
    )
}

#[tokio::test(start_paused = true)]
async fn one_slow_step_is_heartbeated_and_none_follows_the_completion() {
    let f = fake(60);
    let (d, beats) = driver_24s(&f, LocalSlotLocks::default());
    let work = Slow::new(180, Progress::Finished(ready())); // 3 x HeartbeatTimeout in one step
    let out = d.run(&hook(), &work, Duration::ZERO, no_shutdown()).await;
    assert_eq!(out.label(), "continue");
    assert_eq!(work.steps(), vec![(0, 180)]);
    assert_eq!(beats.at(), vec![24, 48, 72, 96, 120, 144, 168]);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(f.calls().last().unwrap(), "CompleteLifecycleAction");
    assert_eq!(beats_and_completes(&f), (7, 1), "{:?}", f.calls());
}

#[tokio::test(start_paused = true)]
async fn a_long_lock_wait_is_heartbeated() {
    let (f, locks) = (fake(60), LocalSlotLocks::default());
    let (d, beats) = driver_24s(&f, locks.clone());
    let held = locks
        .lock(&SlotKey {
            group: "db".into(),
            slot: 0,
        })
        .await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(180)).await;
        drop(held);
    });
    let work = Slow::new(0, Progress::Finished(ready()));
    let out = d.run(&hook(), &work, Duration::ZERO, no_shutdown()).await;
    assert_eq!(out.label(), "continue");
    assert_eq!(work.steps(), vec![(180, 180)], "after the lock");
    assert_eq!(beats.at(), vec![24, 48, 72, 96, 120, 144, 168]);
}

#[tokio::test(start_paused = true)]
async fn not_active_during_a_slow_step_ends_after_the_step_without_completing() {
    let f = fake(60);
    let (d, beats) = driver_24s(&f, LocalSlotLocks::default());
    let fc = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(40)).await;
        fc.expire_action("tok-1");
    });
    let work = Slow::new(100, Progress::Finished(ready()));
    let out = d.run(&hook(), &work, Duration::ZERO, no_shutdown()).await;
    assert_eq!(out, HookOutcome::AlreadyEnded);
    assert_eq!(work.steps(), vec![(0, 100)], "the step was not cut");
    assert_eq!(beats.at(), vec![24], "the one at 48 s found no action");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(beats_and_completes(&f), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn unknown_hook_is_rejected_without_a_step() {
    let f = FakeLifecycleActions::default();
    f.open_action("db", "launch", "i-1", "tok-1");
    let work = Script::new(vec![Ok(Progress::Finished(ready()))]);
    let out = run_now(f.clone(), &work).await;
    let why = "lifecycle hook launch is not a hook of group db";
    assert_eq!(out, HookOutcome::Rejected(why.into()));
    assert_eq!((out.is_final(), out.label()), (true, "rejected"));
    assert_eq!(work.calls(), 0);
    assert_eq!(f.calls(), vec!["DescribeLifecycleHooks".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_step_leaves_no_heartbeat_running() {
    let f = fake(60);
    let (d, beats) = driver_24s(&f, LocalSlotLocks::default());
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = tx.send(true);
        std::mem::forget(tx);
    });
    let work = Slow::new(100, Progress::Waiting("x".into()));
    let out = d.run(&hook(), &work, Duration::ZERO, rx).await;
    assert_eq!(out, HookOutcome::Interrupted("shutdown".into()));
    assert_eq!(work.steps(), vec![(0, 100)], "the step was not cut");
    assert_eq!(beats.at(), vec![24, 48, 72, 96]);
    tokio::time::sleep(Duration::from_secs(1000)).await;
    assert_eq!(beats_and_completes(&f), (4, 0));
}
