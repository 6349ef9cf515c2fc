//! The `Queue` port on `aws-sdk-sqs`: `ReceiveMessage`, `DeleteMessageBatch`, `ChangeMessageVisibilityBatch`.
//! A batch's entries are identified by their position; each `Failed` entry becomes its own `StepError`.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
};
use aws_sdk_sqs::Client;
use ferry_state_machine::error::{sdk_error, StepError};
use tracing::{info, warn};

use crate::queue::{
    entry_error, secs_i32, EntryResults, Queue, QueueMessage, VisibilityChange, HANDLE_GONE,
    MAX_BATCH, MAX_VISIBILITY, MAX_WAIT,
};

const DELETE: &str = "sqs:DeleteMessageBatch";
const CHANGE: &str = "sqs:ChangeMessageVisibilityBatch";

/// One SQS queue through the AWS SDK.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    /// Wraps an SDK client and the queue's URL.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

/// Converts an SDK message; `None` (logged) for one without a receipt handle, which could never be deleted.
fn to_queue_message(m: &Message) -> Option<QueueMessage> {
    let message_id = m.message_id().unwrap_or_default().to_string();
    let Some(receipt_handle) = m.receipt_handle().filter(|h| !h.is_empty()) else {
        warn!(message.id = %message_id, "SQS returned a message without a receipt handle; skipping it");
        return None;
    };
    let attr = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name));
    Some(QueueMessage {
        message_id,
        receipt_handle: receipt_handle.to_string(),
        body: m.body().unwrap_or_default().to_string(),
        receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        sent_at: attr(MessageSystemAttributeName::SentTimestamp)
            .and_then(|t| t.parse::<u64>().ok())
            .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms))),
    })
}

#[async_trait]
impl Queue for SqsQueue {
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<QueueMessage>, StepError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH))
            .wait_time_seconds(secs_i32(wait, MAX_WAIT))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| sdk_error("sqs:ReceiveMessage", &e))?;
        Ok(out.messages().iter().filter_map(to_queue_message).collect())
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<EntryResults, StepError> {
        let entries = receipt_handles
            .iter()
            .enumerate()
            .map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StepError::permanent(DELETE, e.to_string()))?;
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error(DELETE, &e))?;
        let ok = out.successful().iter().map(|s| s.id());
        Ok(entry_results(
            DELETE,
            receipt_handles.len(),
            ok,
            out.failed(),
        ))
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<EntryResults, StepError> {
        let entries = changes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&c.receipt_handle)
                    .visibility_timeout(secs_i32(c.timeout, MAX_VISIBILITY))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StepError::permanent(CHANGE, e.to_string()))?;
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error(CHANGE, &e))?;
        let ok = out.successful().iter().map(|s| s.id());
        Ok(entry_results(CHANGE, changes.len(), ok, out.failed()))
    }
}

/// Each request entry's outcome (entry ids are their positions), from a batch response's `Successful` and
/// `Failed` lists. A delete of a handle SQS calls invalid counts as done: the message is already gone. An
/// entry in neither list is a retryable error.
fn entry_results<'a>(
    op: &str,
    entries: usize,
    successful: impl Iterator<Item = &'a str>,
    failed: &[BatchResultErrorEntry],
) -> EntryResults {
    let mut results: EntryResults = (0..entries)
        .map(|i| {
            Err(StepError::retry(
                op,
                format!("the batch response did not mention entry {i}"),
            ))
        })
        .collect();
    let mut set = |id: &str, result: Result<(), StepError>| match id.parse::<usize>() {
        Ok(i) if i < entries => results[i] = result,
        _ => warn!(
            operation = op,
            entry.id = id,
            "batch response names an entry not in the request"
        ),
    };
    for id in successful {
        set(id, Ok(()));
    }
    for f in failed {
        let result = if op == DELETE && f.code() == HANDLE_GONE {
            info!(error = %f.message().unwrap_or(HANDLE_GONE), "receipt handle no longer valid on delete; the message is already gone");
            Ok(())
        } else {
            Err(entry_error(op, f.code(), f.message(), f.sender_fault()))
        };
        set(f.id(), result);
    }
    results
}

#[cfg(test)]
#[path = "sqs_tests.rs"]
mod tests;
