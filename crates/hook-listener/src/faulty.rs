//! A `Queue` wrapper that fails scripted calls, for fault tests.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::StepError;

use crate::queue::{Queue, QueueMessage};

/// Which `Queue` call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueOp {
    /// `receive`.
    Receive,
    /// `delete`.
    Delete,
    /// `extend_visibility`.
    ExtendVisibility,
}

#[derive(Debug, Default)]
struct Script {
    /// Errors returned by the next calls, in order, before `always` applies.
    next: HashMap<QueueOp, VecDeque<StepError>>,
    /// An error returned by every call once `next` is used up.
    always: HashMap<QueueOp, StepError>,
    injected: HashMap<QueueOp, usize>,
}

/// Wraps a queue and fails the calls its script names; other calls reach the inner queue.
#[derive(Debug)]
pub struct FaultyQueue<Q> {
    inner: Q,
    script: Mutex<Script>,
}

impl<Q: Queue> FaultyQueue<Q> {
    /// Wraps `inner` with an empty script.
    pub fn new(inner: Q) -> Self {
        Self {
            inner,
            script: Mutex::default(),
        }
    }

    /// The wrapped queue.
    pub fn inner(&self) -> &Q {
        &self.inner
    }

    fn with<T>(&self, f: impl FnOnce(&mut Script) -> T) -> T {
        let mut s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// Fails the next `times` calls of `op` with `error`.
    pub fn fail_next(&self, op: QueueOp, times: usize, error: StepError) {
        self.with(|s| {
            s.next
                .entry(op)
                .or_default()
                .extend(std::iter::repeat(error).take(times))
        });
    }

    /// Fails every call of `op` with `error` until [`FaultyQueue::heal`].
    pub fn fail_always(&self, op: QueueOp, error: StepError) {
        self.with(|s| s.always.insert(op, error));
    }

    /// Removes every scripted fault of `op`.
    pub fn heal(&self, op: QueueOp) {
        self.with(|s| {
            s.next.remove(&op);
            s.always.remove(&op);
        });
    }

    /// How many faults of `op` have been injected.
    pub fn injected(&self, op: QueueOp) -> usize {
        self.with(|s| s.injected.get(&op).copied().unwrap_or(0))
    }

    fn fault(&self, op: QueueOp) -> Result<(), StepError> {
        self.with(|s| {
            let err = s
                .next
                .get_mut(&op)
                .and_then(VecDeque::pop_front)
                .or_else(|| s.always.get(&op).cloned());
            match err {
                Some(e) => {
                    *s.injected.entry(op).or_default() += 1;
                    Err(e)
                }
                None => Ok(()),
            }
        })
    }
}

#[async_trait]
impl<Q: Queue> Queue for FaultyQueue<Q> {
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<QueueMessage>, StepError> {
        self.fault(QueueOp::Receive)?;
        self.inner.receive(max, wait).await
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), StepError> {
        self.fault(QueueOp::Delete)?;
        self.inner.delete(receipt_handle).await
    }

    async fn extend_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        self.fault(QueueOp::ExtendVisibility)?;
        self.inner.extend_visibility(receipt_handle, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeQueue;

    #[tokio::test(start_paused = true)]
    async fn scripted_faults_then_pass_through() {
        let q = FaultyQueue::new(FakeQueue::new(Duration::from_secs(30), None));
        q.inner().push("a");
        q.fail_next(
            QueueOp::Receive,
            2,
            StepError::retry("sqs:ReceiveMessage", "throttled"),
        );
        assert!(q.receive(10, Duration::ZERO).await.is_err());
        assert!(q.receive(10, Duration::ZERO).await.is_err());
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        q.fail_always(
            QueueOp::Delete,
            StepError::retry("sqs:DeleteMessage", "503"),
        );
        assert!(q.delete(&got[0].receipt_handle).await.is_err());
        assert!(q.delete(&got[0].receipt_handle).await.is_err());
        q.heal(QueueOp::Delete);
        q.delete(&got[0].receipt_handle).await.unwrap();
        assert!(q.inner().is_empty());
        assert_eq!(
            (q.injected(QueueOp::Receive), q.injected(QueueOp::Delete)),
            (2, 2)
        );
        assert_eq!(
            q.inner().calls().receive,
            1,
            "faulted calls never reach the inner queue"
        );
    }
}
