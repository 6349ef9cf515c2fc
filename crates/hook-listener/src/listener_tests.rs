//! Listener tests on the in-memory queue with paused time: every assertion is on queue contents and
//! call counts.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::{HookEvent, HookOutcome, StepError};
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use super::fixture::*;
use super::*;
use crate::handler::Admission;
use crate::{FakeQueue, FaultyQueue, QueueOp};

#[tokio::test(start_paused = true)]
async fn test_notification_and_other_messages_are_deleted() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let test = q.push(r#"{"Event":"autoscaling:TEST_NOTIFICATION","AutoScalingGroupName":"db"}"#);
    let other = q.push(r#"{"detail-type":"EC2 Instance Launch Successful","detail":{}}"#);
    let h = Arc::new(FakeHandler::working(Duration::from_secs(1)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(5)).await;
    let deleted: HashSet<String> = q.deleted().into_iter().collect();
    assert_eq!(deleted, HashSet::from([test, other]));
    assert!(q.is_empty());
    assert!(h.handled().is_empty());
    assert_eq!(l.observer.deleted.load(Ordering::SeqCst), 2);
    assert_eq!(q.calls().delete_batch, 1, "both deletes in one call");
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn poison_is_left_and_dead_lettered_while_valid_hooks_are_handled() {
    let q = Arc::new(FakeQueue::new(VIS, Some(3)));
    let poison = q.push("{\"LifecycleActionToken\": \"t\", truncated");
    let a = q.push(hook_body("tok-a", "db"));
    let b = q.push(hook_body("tok-b", "db"));
    let h = Arc::new(FakeHandler::working(Duration::from_secs(2)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(300)).await;
    assert_eq!(q.dead_lettered(), vec![poison.clone()]);
    assert_eq!(q.receive_count(&poison), Some(3));
    let deleted: HashSet<String> = q.deleted().into_iter().collect();
    assert_eq!(deleted, HashSet::from([a, b]));
    assert!(q.is_empty());
    assert_eq!(
        h.handled().into_iter().collect::<HashSet<_>>(),
        HashSet::from(["tok-a".to_string(), "tok-b".to_string()])
    );
    assert_eq!(l.observer.parse_errors.load(Ordering::SeqCst), 3);
    let report = l.shutdown().await;
    assert_eq!((report.parse_errors, report.hooks_started), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn duplicates_run_once_and_every_delivery_is_deleted() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let body = hook_body("tok-dup", "db");
    let mut ids: HashSet<String> = (0..3).map(|_| q.push(body.clone())).collect();
    let h = Arc::new(FakeHandler::working(Duration::from_secs(100)));
    let l = start(q.clone(), h.clone(), cfg());
    // A fourth copy arrives while the hook runs, in a later receive.
    sleep(Duration::from_secs(40)).await;
    ids.insert(q.push(body.clone()));
    sleep(Duration::from_secs(100)).await;
    assert_eq!(h.handled(), vec!["tok-dup"], "exactly one handle call");
    assert_eq!(h.admitted.load(Ordering::SeqCst), 1);
    assert_eq!(q.deleted().into_iter().collect::<HashSet<_>>(), ids);
    assert!(q.is_empty());
    assert_eq!(l.observer.duplicates.load(Ordering::SeqCst), 3);
    for id in &ids {
        assert_eq!(q.receive_count(id), None, "deleted");
    }
    assert_eq!(
        (q.calls().delete_batch, q.calls().delete_entries),
        (1, 4),
        "the four deliveries deleted in one call"
    );
    // All four deliveries were kept invisible while the hook ran: extensions named each handle.
    let extended: HashSet<String> = q.extensions().into_iter().map(|(h, _)| h).collect();
    assert_eq!(extended.len(), 4);
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn visibility_is_extended_through_a_long_hook() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let id = q.push(hook_body("tok-long", "db"));
    let h = Arc::new(FakeHandler::working(Duration::from_secs(600)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(300)).await;
    assert_eq!(
        q.in_flight(),
        1,
        "still invisible 10 visibility timeouts later"
    );
    assert_eq!(q.receive_count(&id), Some(1), "never delivered again");
    sleep(Duration::from_secs(310)).await;
    assert_eq!(q.deleted(), vec![id]);
    let ext = q.extensions();
    // At 15 and 30 s for the 30 s timeout, then each as long as the hook has run, due when half of the
    // last has passed: 45, 67.5, 101, 152, 228, 342 and 513 s. Nine calls for 600 s, not forty.
    let secs: Vec<u64> = ext.iter().map(|(_, t)| t.as_secs()).collect();
    assert_eq!(secs, [30, 30, 45, 67, 101, 151, 227, 341, 512], "{ext:?}");
    assert_eq!(h.handled().len(), 1);
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ignored_hooks_are_deleted_or_left_as_admit_says() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let gone = q.push(hook_body("tok-unmanaged", "unmanaged"));
    let kept = q.push(hook_body("tok-elsewhere", "elsewhere"));
    let worked = q.push(hook_body("tok-mine", "db"));
    let mut h = FakeHandler::working(Duration::from_secs(1));
    h.admissions.insert(
        "unmanaged".into(),
        Admission::Ignore {
            delete: true,
            reason: "not managed".into(),
        },
    );
    h.admissions.insert(
        "elsewhere".into(),
        Admission::Ignore {
            delete: false,
            reason: "another ferry's".into(),
        },
    );
    let h = Arc::new(h);
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(5)).await;
    assert_eq!(
        q.deleted().into_iter().collect::<HashSet<_>>(),
        HashSet::from([gone, worked])
    );
    assert_eq!(q.len(), 1);
    assert_eq!(
        q.in_flight(),
        1,
        "the left message waits out its visibility timeout"
    );
    sleep(Duration::from_secs(60)).await;
    assert_eq!(
        q.receive_count(&kept),
        Some(3),
        "returns once per visibility timeout, no busy loop"
    );
    assert_eq!(h.handled(), vec!["tok-mine"]);
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn interrupted_hook_leaves_its_message_which_returns_soon() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let id = q.push(hook_body("tok-int", "db"));
    let h = FakeHandler::working(Duration::from_secs(5));
    h.scripted.lock().unwrap().insert(
        "tok-int".into(),
        vec![HookOutcome::Interrupted("could not complete".into())],
    );
    let h = Arc::new(h);
    let l = start(q.clone(), h.clone(), cfg());
    // It ends at 5 s; the release goes out after the batch window.
    sleep(Duration::from_secs(5) + cfg().batch_window + Duration::from_millis(500)).await;
    assert!(
        q.deleted().is_empty(),
        "an interrupted hook's message is kept"
    );
    assert_eq!(q.len(), 1);
    let first_handle = q.extensions().last().cloned().unwrap();
    assert_eq!(
        first_handle.1,
        Duration::from_secs(10),
        "visibility shortened to return soon"
    );
    // It returns after 10 s (not 30), runs again for 5 s and completes.
    sleep(Duration::from_secs(16)).await;
    assert_eq!(q.deleted(), vec![id]);
    assert_eq!(h.handled(), vec!["tok-int", "tok-int"]);
    assert_eq!(
        *l.observer.outcomes.lock().unwrap(),
        vec!["interrupted", "continue"]
    );
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_the_long_poll_and_leaves_in_flight_messages() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let id = q.push(hook_body("tok-run", "db"));
    let h = Arc::new(FakeHandler::working(Duration::from_secs(3600)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(5)).await;
    assert_eq!(
        q.calls().receive,
        2,
        "one receive took the hook, the next is long-polling"
    );
    let began = Instant::now();
    let report = l.shutdown().await;
    assert_eq!(
        began.elapsed(),
        cfg().batch_window,
        "the 20 s long poll was abandoned at once; only the release's batch window passed"
    );
    assert_eq!(q.calls().receive, 2, "no poll after shutdown");
    assert!(q.deleted().is_empty());
    assert_eq!(
        q.len(),
        1,
        "the interrupted hook's message stays on the queue"
    );
    assert_eq!(q.receive_count(&id), Some(1));
    assert_eq!(h.handled().len(), 1);
    assert_eq!(report.hooks_started, 1);
    assert_eq!(
        q.extensions().last().map(|e| e.1),
        Some(Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn a_hook_finishing_during_shutdown_is_still_deleted() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    q.push(hook_body("tok-a", "db"));
    // This handler ignores shutdown: it finishes its safe step and completes.
    struct Stubborn;
    #[async_trait]
    impl HookHandler for Stubborn {
        async fn admit(&self, _: &HookEvent) -> Admission {
            Admission::Work
        }
        async fn handle(&self, _: HookEvent, _: watch::Receiver<bool>) -> HookOutcome {
            sleep(Duration::from_secs(7)).await;
            HookOutcome::AlreadyEnded
        }
    }
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        q.clone(),
        Arc::new(Stubborn),
        cfg(),
        Arc::new(crate::NoListenerObserver),
        rx,
    ));
    sleep(Duration::from_secs(2)).await;
    let began = Instant::now();
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        began.elapsed(),
        Duration::from_secs(5) + cfg().batch_window,
        "run waits for the in-flight hook and its delete"
    );
    assert!(q.is_empty(), "its final outcome deleted the message");
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_bounds_hooks_and_receives() {
    let q = Arc::new(FaultyQueue::new(FakeQueue::new(VIS, None)));
    for i in 0..10 {
        q.inner().push(hook_body(&format!("tok-{i}"), "db"));
    }
    let h = Arc::new(FakeHandler::working(Duration::from_secs(10)));
    let l = start(
        q.clone(),
        h.clone(),
        ListenerConfig {
            max_in_flight: 3,
            ..cfg()
        },
    );
    sleep(Duration::from_secs(5)).await;
    assert_eq!(q.inner().in_flight(), 3, "only as many received as may run");
    assert_eq!(h.running.load(Ordering::SeqCst), 3);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(h.max_running.load(Ordering::SeqCst), 3);
    assert_eq!(h.handled().len(), 10);
    assert_eq!(q.inner().deleted().len(), 10);
    for i in 1..=10 {
        assert!(
            q.inner().receive_count(&format!("msg-{i}")).is_none(),
            "msg-{i} deleted"
        );
    }
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn receive_errors_back_off_then_recover() {
    let q = Arc::new(FaultyQueue::new(FakeQueue::new(VIS, None)));
    q.fail_always(
        QueueOp::Receive,
        StepError::from_aws(
            "sqs:ReceiveMessage",
            Some("RequestThrottled"),
            None,
            Some(400),
        ),
    );
    let h = Arc::new(FakeHandler::working(Duration::from_secs(1)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(300)).await;
    let attempts = q.injected(QueueOp::Receive);
    // Backoff 1 s doubling to a 60 s cap, jittered down to no less than half: 10 to 16 attempts in 5 minutes.
    assert!(
        (4..=20).contains(&attempts),
        "{attempts} receive attempts in 300 s"
    );
    assert_eq!(l.observer.receive_errors.load(Ordering::SeqCst), attempts);
    q.heal(QueueOp::Receive);
    let id = q.inner().push(hook_body("tok-after", "db"));
    sleep(Duration::from_secs(70)).await;
    assert_eq!(
        q.inner().deleted(),
        vec![id],
        "polling resumed after the fault healed"
    );
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn transient_delete_errors_are_retried() {
    let q = Arc::new(FaultyQueue::new(FakeQueue::new(VIS, None)));
    let id = q.inner().push(hook_body("tok-del", "db"));
    q.fail_next(
        QueueOp::DeleteBatch,
        2,
        StepError::retry("sqs:DeleteMessageBatch", "503"),
    );
    let h = Arc::new(FakeHandler::working(Duration::from_secs(1)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(20)).await;
    assert_eq!(q.injected(QueueOp::DeleteBatch), 2);
    assert_eq!(
        q.inner().calls().delete_batch,
        1,
        "the third attempt reached the queue"
    );
    assert_eq!(q.inner().deleted(), vec![id]);
    assert_eq!(h.handled().len(), 1);
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_config_is_refused() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let (_stop, rx) = watch::channel(false);
    let bad = ListenerConfig { batch: 0, ..cfg() };
    let res = run(
        q,
        Arc::new(FakeHandler::default()),
        bad,
        Arc::new(crate::NoListenerObserver),
        rx,
    )
    .await;
    assert!(res.is_err());
}

#[test]
fn an_extension_grows_with_the_hooks_age_up_to_an_hour() {
    use crate::inflight::{extension, MAX_EXTENSION};
    let s = Duration::from_secs;
    assert_eq!(extension(s(300), s(10)), s(300));
    assert_eq!(extension(s(300), s(900)), s(900));
    assert_eq!(extension(s(300), s(99_999)), MAX_EXTENSION);
    assert_eq!(
        extension(s(7200), s(99_999)),
        s(7200),
        "never less than the configured timeout"
    );
}
