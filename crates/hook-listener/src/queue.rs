//! The `Queue` port: the three SQS calls the listener needs (`ReceiveMessage`, `DeleteMessageBatch`,
//! `ChangeMessageVisibilityBatch`), as a narrow trait.
//!
//! Implementations: [`crate::SqsQueue`] on `aws-sdk-sqs`, the in-memory [`crate::FakeQueue`], the
//! fault-injecting [`crate::FaultyQueue`] wrapper and the budgeted [`crate::ThrottledQueue`] decorator. The
//! listener does not call the batch calls per message: its coalescer (`batcher.rs`) fills them.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use ferry_state_machine::StepError;

/// The most messages one receive may ask for (SQS's limit).
pub const MAX_BATCH: i32 = 10;
/// The longest long poll SQS allows.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// The longest visibility timeout SQS allows (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// The most entries one `DeleteMessageBatch` or `ChangeMessageVisibilityBatch` call may carry (SQS's limit).
pub const MAX_BATCH_ENTRIES: usize = 10;

/// The error code SQS gives for a receipt handle it cannot use (malformed, or its message is gone).
pub(crate) const HANDLE_GONE: &str = "ReceiptHandleIsInvalid";

/// One entry of a `ChangeMessageVisibilityBatch` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityChange {
    /// The handle of the delivery whose visibility changes.
    pub receipt_handle: String,
    /// The new visibility timeout, from now (0 makes the message visible at once; capped at 12 h).
    pub timeout: Duration,
}

/// The outcome of each entry of a batch call, one per entry, in the order of the request.
pub type EntryResults = Vec<Result<(), StepError>>;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The queue's id for the message; the same on every delivery.
    pub message_id: String,
    /// The handle of this delivery; delete and visibility calls need it. Different on every delivery.
    pub receipt_handle: String,
    /// The body, unparsed.
    pub body: String,
    /// `ApproximateReceiveCount`: how many times the message has been received, this time included;
    /// 0 when the queue did not say.
    pub receive_count: u32,
    /// `SentTimestamp`: when the message was sent to the queue, if the queue said.
    pub sent_at: Option<SystemTime>,
}

/// An SQS-like queue. Errors carry a disposition (`StepError`); throttles and server faults are retryable.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Long-polls for up to `max` messages (1..=10), waiting up to `wait` (at most 20 s) when none is
    /// visible. An empty vector means the wait passed with nothing to receive.
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<QueueMessage>, StepError>;

    /// `DeleteMessageBatch`: deletes the messages these receipt handles (1..=10) belong to. `Err` is a
    /// failure of the whole call; `Ok` holds each entry's outcome, in order. A handle whose message is
    /// already gone counts as success.
    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<EntryResults, StepError>;

    /// `ChangeMessageVisibilityBatch`: sets each entry's (1..=10) visibility timeout to its `timeout` from
    /// now. `Err` is a failure of the whole call; `Ok` holds each entry's outcome, in order.
    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<EntryResults, StepError>;
}

/// The error of one failed entry of a batch response (`BatchResultErrorEntry`), classified like a whole
/// call's: throttles and server faults (`SenderFault: false`) retry, the rest is permanent.
pub(crate) fn entry_error(
    op: &str,
    code: &str,
    message: Option<&str>,
    sender_fault: bool,
) -> StepError {
    let status = if sender_fault { 400 } else { 500 };
    StepError::from_aws(op, Some(code), message, Some(status))
}

/// Whole seconds of `d` for an SQS `i32` seconds field, capped at `max`.
pub(crate) fn secs_i32(d: Duration, max: Duration) -> i32 {
    i32::try_from(d.min(max).as_secs()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_capped() {
        assert_eq!(secs_i32(Duration::from_secs(25), MAX_WAIT), 20);
        assert_eq!(secs_i32(Duration::from_millis(1500), MAX_WAIT), 1);
        assert_eq!(
            secs_i32(Duration::from_secs(u64::MAX), MAX_VISIBILITY),
            43_200
        );
    }

    #[test]
    fn entry_errors_are_classified_by_code_and_fault() {
        let op = "sqs:DeleteMessageBatch";
        let e = entry_error(op, "MessageNotInflight", Some("not in flight"), true);
        assert!(!e.is_retryable(), "{e:?}");
        assert_eq!(e.code.as_deref(), Some("MessageNotInflight"));
        assert_eq!(e.operation, op);
        assert!(entry_error(op, "InternalError", None, true).is_retryable());
        assert!(entry_error(op, "SomethingNew", None, false).is_retryable());
        assert!(entry_error(op, "RequestThrottled", None, true).is_throttle());
    }
}
