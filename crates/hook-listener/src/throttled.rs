//! `ThrottledQueue`: SQS calls held to the API budget (`ApiBudget`), as `Throttled` does for EC2 and
//! `ThrottledLifecycleActions` for Auto Scaling: each call waits for a token of its action
//! (`sqs:ReceiveMessage`, `sqs:DeleteMessageBatch`, `sqs:ChangeMessageVisibilityBatch`) before it is made.
//! A `GatedQueue` with the budget as its gate.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_state_machine::budget::ApiBudget;
use ferry_state_machine::StepError;

use crate::gated::{GatedQueue, QueueGate, QueueOp};

#[async_trait]
impl QueueGate for Arc<ApiBudget> {
    async fn enter(&self, op: QueueOp) -> Result<(), StepError> {
        self.acquire(op.action()).await;
        Ok(())
    }
}

/// A queue held to an API budget. Under the listener's coalescer, requests that arrive while a batch call
/// waits for its token join the next batch.
pub type ThrottledQueue<Q> = GatedQueue<Q, Arc<ApiBudget>>;

impl<Q> GatedQueue<Q, Arc<ApiBudget>> {
    /// `inner`, waiting on `budget` before every call.
    pub fn new(inner: Q, budget: Arc<ApiBudget>) -> Self {
        Self::with_gate(inner, budget)
    }
}

#[cfg(test)]
mod tests {
    use ferry_state_machine::budget::{default_limits, Limit};
    use tokio::time::Instant;

    use std::time::Duration;

    use super::*;
    use crate::queue::{Queue, VisibilityChange};
    use crate::FakeQueue;

    const VIS: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn each_call_waits_for_a_token_of_its_action() {
        let mut limits = default_limits();
        for op in ["sqs:DeleteMessageBatch", "sqs:ChangeMessageVisibilityBatch"] {
            limits.insert(op.into(), Limit::new(1, 1.0));
        }
        let q = ThrottledQueue::new(FakeQueue::new(VIS, None), Arc::new(ApiBudget::new(&limits)));
        for i in 0..3 {
            q.inner().push(format!("m{i}"));
        }
        let handles: Vec<String> = q
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.receipt_handle)
            .collect();
        let began = Instant::now();
        let changes: Vec<VisibilityChange> = handles
            .iter()
            .map(|h| VisibilityChange {
                receipt_handle: h.clone(),
                timeout: VIS,
            })
            .collect();
        q.change_visibility_batch(&changes).await.unwrap();
        assert_eq!(began.elapsed(), Duration::ZERO, "the burst's token");
        for (i, h) in handles.iter().enumerate() {
            q.delete_batch(std::slice::from_ref(h)).await.unwrap();
            // The first delete takes the delete bucket's token; each later one waits a second for the refill.
            assert_eq!(began.elapsed(), Duration::from_secs(i as u64));
        }
        q.change_visibility_batch(&changes[..1]).await.unwrap();
        assert_eq!(
            began.elapsed(),
            Duration::from_secs(2),
            "its own bucket refilled meanwhile"
        );
        let calls = q.inner().calls();
        assert_eq!((calls.delete_batch, calls.change_visibility_batch), (3, 2));
        assert!(q.inner().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn receives_use_the_default_sqs_bucket() {
        let q = ThrottledQueue::new(
            FakeQueue::new(VIS, None),
            Arc::new(ApiBudget::new(&default_limits())),
        );
        let began = Instant::now();
        // Burst 100, then 50 a second: the 101st receive waits 20 ms.
        for _ in 0..100 {
            q.receive(10, Duration::ZERO).await.unwrap();
        }
        assert_eq!(began.elapsed(), Duration::ZERO);
        q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(began.elapsed(), Duration::from_millis(20));
        assert_eq!(q.inner().calls().receive, 101);
    }
}
