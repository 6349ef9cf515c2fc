//! `FaultyQueue`: a queue behind scripted faults (`QueueFaults`), for fault tests: whole calls fail, or
//! single entries of batch calls (one receipt handle's entry). A `GatedQueue` with the script as its gate.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use ferry_state_machine::StepError;

use crate::gated::{GatedQueue, QueueGate, QueueOp};
use crate::queue::Queue;

/// The faults to inject.
#[derive(Debug, Default)]
pub struct QueueFaults {
    script: Mutex<Script>,
}

#[derive(Debug, Default)]
struct Script {
    /// Errors returned by the next calls, in order, before `always` applies.
    next: HashMap<QueueOp, VecDeque<StepError>>,
    /// An error returned by every call once `next` is used up.
    always: HashMap<QueueOp, StepError>,
    /// Errors returned for the entries of these receipt handles in batch calls, until healed.
    entries: HashMap<(QueueOp, String), StepError>,
    injected: HashMap<QueueOp, usize>,
}

impl QueueFaults {
    fn with<T>(&self, f: impl FnOnce(&mut Script) -> T) -> T {
        let mut s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }
}

#[async_trait]
impl QueueGate for QueueFaults {
    async fn enter(&self, op: QueueOp) -> Result<(), StepError> {
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

    fn entry_faults(&self, op: QueueOp, handles: &[&str]) -> Vec<Option<StepError>> {
        self.with(|s| {
            let faults: Vec<Option<StepError>> = handles
                .iter()
                .map(|h| s.entries.get(&(op, (*h).to_string())).cloned())
                .collect();
            *s.injected.entry(op).or_default() += faults.iter().flatten().count();
            faults
        })
    }
}

/// Wraps a queue and fails the calls its script names; other calls reach the inner queue.
pub type FaultyQueue<Q> = GatedQueue<Q, QueueFaults>;

impl<Q: Queue> GatedQueue<Q, QueueFaults> {
    /// Wraps `inner` with an empty script.
    pub fn new(inner: Q) -> Self {
        Self::with_gate(inner, QueueFaults::default())
    }

    /// Fails the next `times` calls of `op` with `error`.
    pub fn fail_next(&self, op: QueueOp, times: usize, error: StepError) {
        self.gate.with(|s| {
            s.next
                .entry(op)
                .or_default()
                .extend(std::iter::repeat_n(error, times))
        });
    }

    /// Fails every call of `op` with `error` until [`FaultyQueue::heal`].
    pub fn fail_always(&self, op: QueueOp, error: StepError) {
        self.gate.with(|s| s.always.insert(op, error));
    }

    /// Fails the entry of `receipt_handle` in every batch call of `op` with `error` until
    /// [`FaultyQueue::heal`]; the call's other entries reach the inner queue. No effect on `Receive`.
    pub fn fail_entry(&self, op: QueueOp, receipt_handle: &str, error: StepError) {
        self.gate
            .with(|s| s.entries.insert((op, receipt_handle.to_string()), error));
    }

    /// Removes every scripted fault of `op`, whole-call and per-entry.
    pub fn heal(&self, op: QueueOp) {
        self.gate.with(|s| {
            s.next.remove(&op);
            s.always.remove(&op);
            s.entries.retain(|(o, _), _| *o != op);
        });
    }

    /// How many faults of `op` have been injected: failed calls plus failed entries.
    pub fn injected(&self, op: QueueOp) -> usize {
        self.gate
            .with(|s| s.injected.get(&op).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        let handles = vec![got[0].receipt_handle.clone()];
        q.fail_always(
            QueueOp::DeleteBatch,
            StepError::retry("sqs:DeleteMessageBatch", "503"),
        );
        assert!(q.delete_batch(&handles).await.is_err());
        assert!(q.delete_batch(&handles).await.is_err());
        q.heal(QueueOp::DeleteBatch);
        assert!(q.delete_batch(&handles).await.unwrap()[0].is_ok());
        assert!(q.inner().is_empty());
        assert_eq!(
            (
                q.injected(QueueOp::Receive),
                q.injected(QueueOp::DeleteBatch)
            ),
            (2, 2)
        );
        assert_eq!(
            q.inner().calls().receive,
            1,
            "faulted calls never reach the inner queue"
        );
        assert_eq!(q.inner().calls().delete_batch, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn entry_faults_fail_only_their_entry() {
        let q = FaultyQueue::new(FakeQueue::new(Duration::from_secs(30), None));
        let ids: Vec<String> = (0..3).map(|i| q.inner().push(format!("m{i}"))).collect();
        let handles: Vec<String> = q
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.receipt_handle)
            .collect();
        let op = QueueOp::DeleteBatch;
        q.fail_entry(
            op,
            &handles[1],
            StepError::permanent("sqs:DeleteMessageBatch", "no"),
        );
        let results = q.delete_batch(&handles).await.unwrap();
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
        assert_eq!(q.inner().deleted(), vec![ids[0].clone(), ids[2].clone()]);
        assert_eq!(
            q.inner().calls().delete_entries,
            2,
            "the faulted entry was not sent"
        );
        // A call of only faulted entries does not reach the inner queue.
        let results = q.delete_batch(&handles[1..2]).await.unwrap();
        assert!(results[0].is_err());
        assert_eq!((q.inner().calls().delete_batch, q.injected(op)), (1, 2));
        q.heal(op);
        assert!(q.delete_batch(&handles[1..2]).await.unwrap()[0].is_ok());
        assert!(q.inner().is_empty());
    }
}
