//! The `Queue` port: the three SQS calls the listener needs, as a narrow trait.
//!
//! Implementations: [`crate::SqsQueue`] on `aws-sdk-sqs`, the in-memory [`crate::FakeQueue`], and the
//! fault-injecting [`crate::FaultyQueue`] wrapper.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use ferry_state_machine::StepError;

/// The most messages one receive may ask for (SQS's limit).
pub const MAX_BATCH: i32 = 10;
/// The longest long poll SQS allows.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// The longest visibility timeout SQS allows (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

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

    /// Deletes the message a receipt handle belongs to. A handle whose message is already gone counts
    /// as success.
    async fn delete(&self, receipt_handle: &str) -> Result<(), StepError>;

    /// Sets the message's visibility timeout to `timeout` from now (0 makes it visible at once).
    async fn extend_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), StepError>;
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
}
