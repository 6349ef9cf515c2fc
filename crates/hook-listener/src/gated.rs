//! `GatedQueue`: any `Queue` behind a `QueueGate` that runs before every call, as `Gated` does for EC2 and
//! `GatedActions` for Auto Scaling. The gate may hold a call back (the API budget: `ThrottledQueue`), fail
//! it whole, or fail single entries of a batch call (scripted faults: `FaultyQueue`). The entries it fails
//! are not sent; the others reach the inner queue, and the results come back in the callers' order.

use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::StepError;

use crate::queue::{EntryResults, Queue, QueueMessage, VisibilityChange};

/// Which `Queue` call a gate sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueOp {
    /// `receive`.
    Receive,
    /// `delete_batch`.
    DeleteBatch,
    /// `change_visibility_batch`.
    ChangeVisibilityBatch,
}

impl QueueOp {
    /// The SQS action (`sqs:ReceiveMessage`, ...), as the API budget names it.
    pub fn action(self) -> &'static str {
        match self {
            Self::Receive => "sqs:ReceiveMessage",
            Self::DeleteBatch => "sqs:DeleteMessageBatch",
            Self::ChangeVisibilityBatch => "sqs:ChangeMessageVisibilityBatch",
        }
    }
}

/// What runs before each call of a gated queue.
#[async_trait]
pub trait QueueGate: Send + Sync {
    /// Enters the gate for one call of `op`; an error fails the whole call, unsent.
    async fn enter(&self, op: QueueOp) -> Result<(), StepError>;

    /// The error for each entry of a batch call of `op`, by position (`None`: send it). Default: none.
    fn entry_faults(&self, _op: QueueOp, handles: &[&str]) -> Vec<Option<StepError>> {
        vec![None; handles.len()]
    }
}

/// A queue behind a gate.
#[derive(Debug)]
pub struct GatedQueue<Q, G> {
    pub(crate) inner: Q,
    pub(crate) gate: G,
}

impl<Q, G> GatedQueue<Q, G> {
    /// `inner`, entering `gate` before every call.
    pub fn with_gate(inner: Q, gate: G) -> Self {
        Self { inner, gate }
    }

    /// The wrapped queue.
    pub fn inner(&self) -> &Q {
        &self.inner
    }
}

/// Merges the inner queue's results for the sent entries with the gate's entry faults, in order.
fn merge(faults: Vec<Option<StepError>>, inner: EntryResults) -> EntryResults {
    let mut inner = inner.into_iter();
    faults
        .into_iter()
        .map(|fault| match fault {
            Some(e) => Err(e),
            None => inner.next().unwrap_or_else(|| {
                Err(StepError::retry(
                    "GatedQueue",
                    "the inner queue returned too few results",
                ))
            }),
        })
        .collect()
}

/// The gate's entry faults for `items` of a batch call of `op`, and the entries to send.
fn split<T: Clone>(
    gate: &impl QueueGate,
    op: QueueOp,
    items: &[T],
    handle: impl Fn(&T) -> &str,
) -> (Vec<Option<StepError>>, Vec<T>) {
    let handles: Vec<&str> = items.iter().map(handle).collect();
    let faults = gate.entry_faults(op, &handles);
    let pass = items
        .iter()
        .zip(&faults)
        .filter(|(_, f)| f.is_none())
        .map(|(t, _)| t.clone())
        .collect();
    (faults, pass)
}

#[async_trait]
impl<Q: Queue, G: QueueGate> Queue for GatedQueue<Q, G> {
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<QueueMessage>, StepError> {
        self.gate.enter(QueueOp::Receive).await?;
        self.inner.receive(max, wait).await
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<EntryResults, StepError> {
        let op = QueueOp::DeleteBatch;
        self.gate.enter(op).await?;
        let (faults, pass) = split(&self.gate, op, receipt_handles, String::as_str);
        // A call of only failed entries is not made.
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
        self.gate.enter(op).await?;
        let (faults, pass) = split(&self.gate, op, changes, |c| c.receipt_handle.as_str());
        let inner = if pass.is_empty() && !changes.is_empty() {
            Vec::new()
        } else {
            self.inner.change_visibility_batch(&pass).await?
        };
        Ok(merge(faults, inner))
    }
}
