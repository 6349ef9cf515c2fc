//! A `Queue` wrapper that fails scripted calls (the whole call) or scripted entries of batch calls (one
//! receipt handle's entry), for fault tests.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::StepError;

use crate::queue::{EntryResults, Queue, QueueMessage, VisibilityChange};

/// Which `Queue` call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueOp {
    /// `receive`.
    Receive,
    /// `delete_batch`.
    DeleteBatch,
    /// `change_visibility_batch`.
    ChangeVisibilityBatch,
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

    /// Fails the entry of `receipt_handle` in every batch call of `op` with `error` until
    /// [`FaultyQueue::heal`]; the call's other entries reach the inner queue. No effect on `Receive`.
    pub fn fail_entry(&self, op: QueueOp, receipt_handle: &str, error: StepError) {
        self.with(|s| s.entries.insert((op, receipt_handle.to_string()), error));
    }

    /// Removes every scripted fault of `op`, whole-call and per-entry.
    pub fn heal(&self, op: QueueOp) {
        self.with(|s| {
            s.next.remove(&op);
            s.always.remove(&op);
            s.entries.retain(|(o, _), _| *o != op);
        });
    }

    /// How many faults of `op` have been injected: failed calls plus failed entries.
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

    /// The scripted entry faults of a batch call of `op`, by position (`None`: pass the entry through).
    fn entry_faults<'h>(
        &self,
        op: QueueOp,
        handles: impl Iterator<Item = &'h str>,
    ) -> Vec<Option<StepError>> {
        self.with(|s| {
            let faults: Vec<Option<StepError>> = handles
                .map(|h| s.entries.get(&(op, h.to_string())).cloned())
                .collect();
            *s.injected.entry(op).or_default() += faults.iter().flatten().count();
            faults
        })
    }
}

/// Merges the inner queue's results for the passed entries with the injected entry faults, in order.
fn merge(faults: Vec<Option<StepError>>, inner: EntryResults) -> EntryResults {
    let mut inner = inner.into_iter();
    faults
        .into_iter()
        .map(|fault| match fault {
            Some(e) => Err(e),
            None => inner.next().unwrap_or_else(|| {
                Err(StepError::retry(
                    "FaultyQueue",
                    "the inner queue returned too few results",
                ))
            }),
        })
        .collect()
}

#[async_trait]
impl<Q: Queue> Queue for FaultyQueue<Q> {
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<QueueMessage>, StepError> {
        self.fault(QueueOp::Receive)?;
        self.inner.receive(max, wait).await
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<EntryResults, StepError> {
        let op = QueueOp::DeleteBatch;
        self.fault(op)?;
        let faults = self.entry_faults(op, receipt_handles.iter().map(String::as_str));
        let pass: Vec<String> = receipt_handles
            .iter()
            .zip(&faults)
            .filter(|(_, f)| f.is_none())
            .map(|(h, _)| h.clone())
            .collect();
        let inner = if pass.is_empty() && !receipt_handles.is_empty() {
            Vec::new()
        } else {
            self.inner.delete_batch(&pass).await?
        };
        Ok(merge(faults, inner))
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<EntryResults, StepError> {
        let op = QueueOp::ChangeVisibilityBatch;
        self.fault(op)?;
        let faults = self.entry_faults(op, changes.iter().map(|c| c.receipt_handle.as_str()));
        let pass: Vec<VisibilityChange> = changes
            .iter()
            .zip(&faults)
            .filter(|(_, f)| f.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        let inner = if pass.is_empty() && !changes.is_empty() {
            Vec::new()
        } else {
            self.inner.change_visibility_batch(&pass).await?
        };
        Ok(merge(faults, inner))
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
