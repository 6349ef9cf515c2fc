//! Driver tests of the slot a hook works on: a claim taken meanwhile chooses again, every claim and step
//! runs under the lock of its own slot, and a hook that cannot have a slot finishes without stepping.

use std::sync::Mutex;

use super::tests::{hook, spec};
use super::*;
use crate::fake::FakeLifecycleActions;
use crate::lock::{LocalSlotLocks, SlotGuard, SlotLocks};
use crate::model::{LifecycleResult, SlotKey};

/// Slot locks that remember which slots were taken, in order.
#[derive(Default)]
struct Recorded {
    inner: LocalSlotLocks,
    taken: Mutex<Vec<u32>>,
}

#[async_trait]
impl SlotLocks for Recorded {
    async fn lock(&self, slot: &SlotKey) -> Box<dyn SlotGuard> {
        self.taken.lock().unwrap().push(slot.slot);
        self.inner.lock(slot).await
    }
}

/// Plays a script of slot choices and claim answers; steps finish at once, recording the calls.
#[derive(Default)]
struct Chooser {
    choices: Mutex<Vec<SlotChoice>>,
    claims: Mutex<Vec<bool>>,
    log: Mutex<Vec<String>>,
}

impl Chooser {
    fn new(mut choices: Vec<SlotChoice>, mut claims: Vec<bool>) -> Self {
        choices.reverse();
        claims.reverse();
        Self {
            choices: Mutex::new(choices),
            claims: Mutex::new(claims),
            log: Mutex::default(),
        }
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl HookWork for Chooser {
    async fn slot(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<SlotChoice, StepError> {
        self.log.lock().unwrap().push("slot".into());
        Ok(self.choices.lock().unwrap().pop().unwrap())
    }
    async fn claim(&self, _hook: &HookEvent, slot: u32) -> Result<bool, StepError> {
        self.log.lock().unwrap().push(format!("claim {slot}"));
        Ok(self.claims.lock().unwrap().pop().unwrap())
    }
    async fn step(&self, _hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        self.log.lock().unwrap().push("step".into());
        Ok(Progress::Finished(Verdict::terminate_done("done")))
    }
}

async fn run(
    choices: Vec<SlotChoice>,
    claims: Vec<bool>,
) -> (Vec<String>, Vec<u32>, Vec<LifecycleResult>) {
    let f = FakeLifecycleActions::default();
    f.put_hook("db", spec(60));
    f.open_action("db", "launch", "i-1", "tok-1");
    let locks = Arc::new(Recorded::default());
    let d = Driver::new(
        Arc::new(f.clone()),
        locks.clone(),
        Arc::new(NoObserver),
        DriverConfig::default(),
    );
    let work = Chooser::new(choices, claims);
    let (_tx, rx) = watch::channel(false);
    d.run(&hook(), &work, Duration::ZERO, rx).await;
    let taken = locks.taken.lock().unwrap().clone();
    (
        work.log(),
        taken,
        f.completions().into_iter().map(|c| c.result).collect(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_claim_taken_meanwhile_chooses_again_and_steps_under_the_won_slot() {
    let (log, taken, done) = run(
        vec![SlotChoice::Claim(1), SlotChoice::Claim(2)],
        vec![false, true],
    )
    .await;
    assert_eq!(log, ["slot", "claim 1", "slot", "claim 2", "step"]);
    // Each claim under its own slot's lock; the step under the slot won.
    assert_eq!(taken, [1, 2, 2]);
    assert_eq!(done, [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn a_known_slot_after_a_wait_steps_under_it_without_claiming() {
    let choices = vec![
        SlotChoice::Waiting("every slot is held".into()),
        SlotChoice::Known(3),
    ];
    let (log, taken, done) = run(choices, vec![]).await;
    assert_eq!(log, ["slot", "slot", "step"]);
    assert_eq!(taken, [3]);
    assert_eq!(done, [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_cannot_have_a_slot_completes_its_verdict_without_a_step_or_a_lock() {
    let choices = vec![SlotChoice::Finished(Verdict::abandon(
        "launch-before-terminate: every slot is held",
    ))];
    let (log, taken, done) = run(choices, vec![]).await;
    assert_eq!(log, ["slot"]);
    assert!(taken.is_empty(), "{taken:?}");
    assert_eq!(done, [LifecycleResult::Abandon]);
}
