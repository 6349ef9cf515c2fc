//! The coalescer's tests, on the in-memory queue with paused time: every assertion is on the calls the
//! queue served, the messages left on it, and what each caller got back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::StepError;
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};

use super::*;
use crate::queue::QueueMessage;
use crate::{FakeQueue, FaultyQueue, QueueOp};

const VIS: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_millis(5);

/// Pushes `n` messages and receives them all; their receipt handles, in order.
async fn received(q: &FakeQueue, n: usize) -> Vec<String> {
    for i in 0..n {
        q.push(format!("m{i}"));
    }
    let mut handles = Vec::new();
    while handles.len() < n {
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        handles.extend(got.into_iter().map(|m| m.receipt_handle));
    }
    handles
}

/// Deletes each handle from its own task, all at once; each caller's result, in handle order.
async fn delete_each(b: &Batcher, handles: &[String]) -> Vec<Result<(), StepError>> {
    let mut tasks = JoinSet::new();
    for (i, h) in handles.iter().enumerate() {
        let (b, h) = (b.clone(), h.clone());
        tasks.spawn(async move {
            let mut r = b.delete(&[h]).await;
            assert_eq!(r.len(), 1);
            (i, r.remove(0))
        });
    }
    let mut out: Vec<(usize, Result<(), StepError>)> = tasks.join_all().await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

#[tokio::test(start_paused = true)]
async fn concurrent_deletes_become_ceil_n_over_ten_batch_calls() {
    for (n, calls) in [(1, 1), (10, 1), (11, 2), (25, 3), (100, 10)] {
        let q = Arc::new(FakeQueue::new(VIS, None));
        let handles = received(&q, n).await;
        let b = Batcher::new(q.clone(), WINDOW);
        let began = Instant::now();
        let results = delete_each(&b, &handles).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let c = q.calls();
        assert_eq!(
            (c.delete_batch, c.delete_entries),
            (calls, n),
            "{n} deletes"
        );
        assert!(q.is_empty(), "all {n} deleted");
        assert_eq!(q.deleted().len(), n);
        // Full batches go at once; a last partial batch waits out one window.
        let want = if n % 10 == 0 { Duration::ZERO } else { WINDOW };
        assert_eq!(began.elapsed(), want, "{n} deletes");
    }
}

#[tokio::test(start_paused = true)]
async fn a_trickle_of_deletes_shares_calls_one_window_at_a_time() {
    // Hooks that end one by one, 100 ms apart: each window of 1 s gathers about ten of them.
    let q = Arc::new(FakeQueue::new(VIS, None));
    let handles = received(&q, 30).await;
    let b = Batcher::new(q.clone(), Duration::from_secs(1));
    let mut tasks = JoinSet::new();
    for h in handles {
        let b = b.clone();
        tasks.spawn(async move { b.delete(&[h]).await });
        sleep(Duration::from_millis(100)).await;
    }
    let results = tasks.join_all().await;
    assert!(results.iter().flatten().all(Result::is_ok), "{results:?}");
    let c = q.calls();
    assert_eq!(c.delete_entries, 30);
    assert!(
        c.delete_batch <= 4,
        "{} calls for 30 deletes",
        c.delete_batch
    );
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn one_callers_many_handles_are_extended_in_batches_of_ten() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let handles = received(&q, 25).await;
    let b = Batcher::new(q.clone(), WINDOW);
    sleep(Duration::from_secs(20)).await;
    let results = b.change_visibility(&handles, VIS).await;
    assert_eq!(results.len(), 25);
    assert!(results.iter().all(Result::is_ok));
    let c = q.calls();
    assert_eq!(
        (c.change_visibility_batch, c.change_visibility_entries),
        (3, 25)
    );
    sleep(Duration::from_secs(20)).await;
    assert_eq!(q.in_flight(), 25, "kept invisible past the original 30 s");
}

/// A queue whose batch calls take `latency`.
struct Slow<Q> {
    inner: Q,
    latency: Duration,
}

#[async_trait]
impl<Q: Queue> Queue for Slow<Q> {
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<QueueMessage>, StepError> {
        self.inner.receive(max, wait).await
    }
    async fn delete_batch(&self, handles: &[String]) -> Result<EntryResults, StepError> {
        sleep(self.latency).await;
        self.inner.delete_batch(handles).await
    }
    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<EntryResults, StepError> {
        sleep(self.latency).await;
        self.inner.change_visibility_batch(changes).await
    }
}

#[tokio::test(start_paused = true)]
async fn requests_made_while_a_call_is_in_flight_go_in_the_next_call() {
    let fake = FakeQueue::new(VIS, None);
    let handles = received(&fake, 8).await;
    let latency = Duration::from_millis(100);
    let q = Arc::new(Slow {
        inner: fake.clone(),
        latency,
    });
    let b = Batcher::new(q, WINDOW);
    let began = Instant::now();
    let first = {
        let (b, h) = (b.clone(), handles[..3].to_vec());
        tokio::spawn(async move { (delete_each(&b, &h).await, began.elapsed()) })
    };
    sleep(Duration::from_millis(50)).await;
    // The first call is in flight (sent at 5 ms, answers at 105 ms): these wait for it, gather for one more
    // window, then go together.
    let (second, at) = (delete_each(&b, &handles[3..7]).await, began.elapsed());
    let (first, first_at) = first.await.unwrap();
    assert!(first.iter().chain(&second).all(Result::is_ok));
    assert_eq!(first_at, WINDOW + latency);
    assert_eq!(
        at,
        2 * (WINDOW + latency),
        "sent one window after the first call ended"
    );
    assert_eq!(
        (fake.calls().delete_batch, fake.calls().delete_entries),
        (2, 7)
    );
    // An idle lane gathers for a window again.
    let began = Instant::now();
    assert!(b.delete(&handles[7..]).await[0].is_ok());
    assert_eq!(began.elapsed(), WINDOW + latency);
    assert_eq!(fake.calls().delete_batch, 3);
    assert!(fake.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_per_entry_failure_reaches_only_its_caller() {
    let q = Arc::new(FaultyQueue::new(FakeQueue::new(VIS, None)));
    let handles = received(q.inner(), 3).await;
    let refused = StepError::permanent("sqs:DeleteMessageBatch", "AccessDenied: no");
    q.fail_entry(QueueOp::DeleteBatch, &handles[1], refused);
    let b = Batcher::new(q.clone(), WINDOW);
    let results = delete_each(&b, &handles).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let e = results[1].as_ref().unwrap_err();
    assert_eq!(e.message, "AccessDenied: no");
    assert!(!e.is_retryable());
    assert_eq!(q.inner().calls().delete_batch, 1, "one call for all three");
    assert_eq!(q.inner().len(), 1, "only the refused message is left");
    assert_eq!(q.inner().receive_count("msg-2"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_whole_call_failure_reaches_every_caller_of_that_batch() {
    let q = Arc::new(FaultyQueue::new(FakeQueue::new(VIS, None)));
    let handles = received(q.inner(), 12).await;
    q.fail_next(
        QueueOp::DeleteBatch,
        1,
        StepError::retry("sqs:DeleteMessageBatch", "ServiceUnavailable"),
    );
    let b = Batcher::new(q.clone(), WINDOW);
    let results = delete_each(&b, &handles).await;
    // The first batch (the first ten requests) failed as a whole; the second went through.
    for r in &results[..10] {
        let e = r.as_ref().unwrap_err();
        assert!(
            e.is_retryable() && e.message == "ServiceUnavailable",
            "{e:?}"
        );
    }
    assert!(results[10..].iter().all(Result::is_ok));
    assert_eq!(q.injected(QueueOp::DeleteBatch), 1);
    assert_eq!(q.inner().calls().delete_batch, 1);
    assert_eq!(q.inner().len(), 10, "the failed batch's messages are left");
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_before_its_batch_is_sent_is_not_sent() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let handles = received(&q, 2).await;
    let b = Batcher::new(q.clone(), WINDOW);
    let dropped = {
        let (b, h) = (b.clone(), handles[0].clone());
        tokio::spawn(async move { b.change_visibility(&[h], Duration::from_secs(600)).await })
    };
    let kept = {
        let (b, h) = (b.clone(), handles[1].clone());
        tokio::spawn(async move { b.change_visibility(&[h], Duration::from_secs(600)).await })
    };
    sleep(Duration::from_millis(1)).await;
    dropped.abort();
    assert!(kept.await.unwrap()[0].is_ok());
    let c = q.calls();
    assert_eq!(
        (c.change_visibility_batch, c.change_visibility_entries),
        (1, 1)
    );
    assert_eq!(
        q.extensions(),
        vec![(handles[1].clone(), Duration::from_secs(600))]
    );
}

#[tokio::test(start_paused = true)]
async fn two_requests_for_one_handle_go_out_in_order_in_separate_calls() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let handles = received(&q, 2).await;
    let b = Batcher::new(q.clone(), WINDOW);
    let long = b.change_visibility(&handles, Duration::from_secs(600));
    let short = b.change_visibility(&handles[..1], Duration::from_secs(10));
    let (long, short) = tokio::join!(long, short);
    assert!(long.iter().chain(&short).all(Result::is_ok));
    assert_eq!(q.calls().change_visibility_batch, 2);
    let h0: Vec<Duration> = q
        .extensions()
        .into_iter()
        .filter(|(h, _)| *h == handles[0])
        .map(|(_, t)| t)
        .collect();
    assert_eq!(h0, vec![Duration::from_secs(600), Duration::from_secs(10)]);
    sleep(Duration::from_secs(11)).await;
    assert_eq!((q.visible(), q.in_flight()), (1, 1), "the later change won");
}

#[tokio::test(start_paused = true)]
async fn a_zero_window_still_batches_requests_made_together() {
    let q = Arc::new(FakeQueue::new(VIS, None));
    let handles = received(&q, 20).await;
    let b = Batcher::new(q.clone(), Duration::ZERO);
    let began = Instant::now();
    assert!(delete_each(&b, &handles).await.iter().all(Result::is_ok));
    assert_eq!(began.elapsed(), Duration::ZERO);
    assert_eq!(q.calls().delete_batch, 2);
    assert!(q.is_empty());
}
