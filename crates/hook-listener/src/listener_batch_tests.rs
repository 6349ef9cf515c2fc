//! The listener at AZ-outage scale, on the in-memory queue with paused time: many hooks at once share
//! `DeleteMessageBatch` and `ChangeMessageVisibilityBatch` calls, and a failed entry or call reaches only the
//! hooks it concerns.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ferry_state_machine::StepError;
use tokio::time::sleep;

use super::fixture::*;
use super::*;
use crate::{FakeQueue, FaultyQueue, QueueOp};

fn wide() -> ListenerConfig {
    ListenerConfig {
        max_in_flight: 32,
        ..cfg()
    }
}

fn push_hooks(q: &FakeQueue, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| q.push(hook_body(&format!("tok-{i}"), "db")))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn many_hooks_finishing_together_are_deleted_in_batches_of_ten() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let ids = push_hooks(&q, 25);
    let h = Arc::new(FakeHandler::working(Duration::from_secs(1)));
    let l = start(q.clone(), h.clone(), wide());
    sleep(Duration::from_secs(5)).await;
    assert_eq!(h.handled().len(), 25);
    assert!(q.is_empty());
    assert_eq!(
        q.deleted().into_iter().collect::<HashSet<_>>(),
        ids.into_iter().collect::<HashSet<_>>()
    );
    let c = q.calls();
    assert_eq!((c.delete_batch, c.delete_entries), (3, 25));
    assert_eq!(l.observer.deleted.load(Ordering::SeqCst), 25);
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn extensions_of_many_in_flight_hooks_are_batched() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let ids = push_hooks(&q, 25);
    let h = Arc::new(FakeHandler::working(Duration::from_secs(100)));
    let l = start(q.clone(), h.clone(), wide());
    sleep(Duration::from_secs(99)).await;
    // At 15, 30, 45 and 67.5 s each of the 25 hooks extends its message (the extensions grow with the
    // hooks' age): 4 rounds of 3 calls.
    let c = q.calls();
    assert_eq!(
        (c.change_visibility_batch, c.change_visibility_entries),
        (12, 100)
    );
    assert_eq!(q.in_flight(), 25);
    for id in &ids {
        assert_eq!(q.receive_count(id), Some(1), "{id} never delivered again");
    }
    sleep(Duration::from_secs(3)).await;
    assert!(q.is_empty());
    assert_eq!(q.calls().delete_batch, 3);
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_delete_entry_leaves_only_its_message_which_returns() {
    let q = Arc::new(FaultyQueue::new(FakeQueue::new(VIS, None)));
    let ids = push_hooks(q.inner(), 3);
    // The fake names handles `<message id>#<n>`: the first receive hands out #1, #2, #3.
    q.fail_entry(
        QueueOp::DeleteBatch,
        "msg-2#2",
        StepError::from_aws(
            "sqs:DeleteMessageBatch",
            Some("AccessDenied"),
            None,
            Some(400),
        ),
    );
    let h = Arc::new(FakeHandler::working(Duration::from_secs(1)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(5)).await;
    assert_eq!(q.inner().deleted(), vec![ids[0].clone(), ids[2].clone()]);
    assert_eq!(q.inner().len(), 1);
    assert_eq!(
        q.inner().calls().delete_batch,
        1,
        "one call; no retry of a permanent error"
    );
    assert_eq!(l.observer.deleted.load(Ordering::SeqCst), 2);
    assert_eq!(l.observer.delete_errors.load(Ordering::SeqCst), 1);
    // It returns after the visibility timeout with a new handle, reruns, and is deleted.
    sleep(Duration::from_secs(35)).await;
    assert!(q.inner().is_empty());
    assert_eq!(h.handled().iter().filter(|t| *t == "tok-2").count(), 2);
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_whole_batch_delete_failure_reaches_every_hook_in_it() {
    let q = Arc::new(FaultyQueue::new(FakeQueue::new(VIS, None)));
    push_hooks(q.inner(), 3);
    q.fail_next(
        QueueOp::DeleteBatch,
        1,
        StepError::permanent("sqs:DeleteMessageBatch", "AccessDenied"),
    );
    let h = Arc::new(FakeHandler::working(Duration::from_secs(1)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(5)).await;
    assert_eq!(
        q.injected(QueueOp::DeleteBatch),
        1,
        "one call for the three"
    );
    assert_eq!(l.observer.delete_errors.load(Ordering::SeqCst), 3);
    assert_eq!(l.observer.deleted.load(Ordering::SeqCst), 0);
    assert_eq!(q.inner().len(), 3);
    assert!(q.inner().deleted().is_empty());
    l.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_spent_handle_stops_being_extended_and_its_delete_is_tolerated() {
    let q = Arc::new(FaultyQueue::new(FakeQueue::new(VIS, None)));
    let id = q.inner().push(hook_body("tok-spent", "db"));
    // Extensions fail until 40 s, so the message lapses at 30 s and is delivered again (a new handle).
    q.fail_always(
        QueueOp::ChangeVisibilityBatch,
        StepError::retry("sqs:ChangeMessageVisibilityBatch", "ServiceUnavailable"),
    );
    let h = Arc::new(FakeHandler::working(Duration::from_secs(100)));
    let l = start(q.clone(), h.clone(), cfg());
    sleep(Duration::from_secs(40)).await;
    assert_eq!(q.inner().receive_count(&id), Some(2));
    assert_eq!(l.observer.duplicates.load(Ordering::SeqCst), 1);
    assert_eq!(
        q.injected(QueueOp::ChangeVisibilityBatch),
        2,
        "at 15 s and 30 s"
    );
    q.heal(QueueOp::ChangeVisibilityBatch);
    sleep(Duration::from_secs(70)).await;
    // At 45 s both handles were sent and the spent one refused; at 67.5 s only the live one is extended
    // (for 45 s: the extensions grow with the hook's age, so the next would be at 101 s).
    let c = q.inner().calls();
    assert_eq!(
        (c.change_visibility_batch, c.change_visibility_entries),
        (2, 3)
    );
    let extended: HashSet<String> = q.inner().extensions().into_iter().map(|(h, _)| h).collect();
    assert_eq!(extended, HashSet::from([format!("{id}#2")]));
    // Both deliveries were deleted in one call: the spent handle's entry succeeds without deleting.
    assert_eq!(q.inner().deleted(), vec![id]);
    assert!(q.inner().is_empty());
    assert_eq!((c.delete_batch, c.delete_entries), (1, 2));
    assert_eq!(l.observer.deleted.load(Ordering::SeqCst), 2);
    assert_eq!(l.observer.delete_errors.load(Ordering::SeqCst), 0);
    assert_eq!(h.handled(), vec!["tok-spent"]);
    l.shutdown().await;
}
