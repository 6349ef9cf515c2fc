//! The `Queue` port on `aws-sdk-sqs`: `ReceiveMessage`, `DeleteMessage`, `ChangeMessageVisibility`.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use aws_sdk_sqs::Client;
use ferry_state_machine::error::{sdk_error, StepError};
use tracing::{info, warn};

use crate::queue::{secs_i32, Queue, QueueMessage, MAX_BATCH, MAX_VISIBILITY, MAX_WAIT};

/// The error code SQS gives for a receipt handle whose message is gone (deleted, or the handle expired).
const HANDLE_GONE: &str = "ReceiptHandleIsInvalid";

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

    async fn delete(&self, receipt_handle: &str) -> Result<(), StepError> {
        let res = self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if e.code() == Some(HANDLE_GONE)
                    || e.as_service_error()
                        .is_some_and(|s| s.is_receipt_handle_is_invalid()) =>
            {
                info!(error = %e.message().unwrap_or(HANDLE_GONE), "receipt handle no longer valid on delete; the message is already gone");
                Ok(())
            }
            Err(e) => Err(sdk_error("sqs:DeleteMessage", &e)),
        }
    }

    async fn extend_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs_i32(timeout, MAX_VISIBILITY))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("sqs:ChangeMessageVisibility", &e))
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::config::retry::RetryConfig;
    use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
    use aws_sdk_sqs::types::error::ReceiptHandleIsInvalid;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use ferry_state_machine::Disposition;

    use super::*;

    const URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/ferry";

    /// An SQS (awsJson1_0, query-compatible) error response, as the service sends it.
    fn error_response(status: u16, code: &str) -> Response {
        let body =
            format!(r#"{{"__type":"com.amazonaws.sqs#{code}","message":"injected {code}"}}"#);
        let mut resp = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        resp.headers_mut()
            .insert("x-amzn-query-error", format!("{code};Sender"));
        resp
    }

    #[tokio::test]
    async fn receive_asks_for_ten_messages_twenty_seconds_and_the_attributes() {
        let rule = mock!(Client::receive_message)
            .match_requests(|r| {
                let attrs = r.message_system_attribute_names();
                r.queue_url() == Some(URL)
                    && r.max_number_of_messages() == Some(10)
                    && r.wait_time_seconds() == Some(20)
                    && attrs.contains(&MessageSystemAttributeName::ApproximateReceiveCount)
                    && attrs.contains(&MessageSystemAttributeName::SentTimestamp)
            })
            .then_output(|| {
                ReceiveMessageOutput::builder()
                    .messages(
                        Message::builder()
                            .message_id("m-1")
                            .receipt_handle("rh-1")
                            .body("{}")
                            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
                            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000123")
                            .build(),
                    )
                    .messages(
                        Message::builder()
                            .message_id("m-2")
                            .body("no handle")
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&rule]);
        let q = SqsQueue::new(client, URL);
        let got = q.receive(10, Duration::from_secs(20)).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
        assert_eq!(
            got,
            vec![QueueMessage {
                message_id: "m-1".into(),
                receipt_handle: "rh-1".into(),
                body: "{}".into(),
                receive_count: 3,
                sent_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            }],
            "the message without a receipt handle is skipped"
        );
    }

    #[tokio::test]
    async fn receive_clamps_batch_and_wait_to_sqs_limits() {
        let rule = mock!(Client::receive_message)
            .match_requests(|r| {
                r.max_number_of_messages() == Some(10) && r.wait_time_seconds() == Some(20)
            })
            .then_output(|| ReceiveMessageOutput::builder().build());
        let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&rule]);
        let got = SqsQueue::new(client, URL)
            .receive(50, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(got.is_empty());
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn delete_and_visibility_pass_the_receipt_handle() {
        let del = mock!(Client::delete_message)
            .match_requests(|r| r.queue_url() == Some(URL) && r.receipt_handle() == Some("rh-7"))
            .then_output(|| {
                aws_sdk_sqs::operation::delete_message::DeleteMessageOutput::builder().build()
            });
        let vis = mock!(Client::change_message_visibility)
            .match_requests(|r| {
                r.queue_url() == Some(URL) && r.receipt_handle() == Some("rh-7") && r.visibility_timeout() == Some(90)
            })
            .then_output(|| {
                aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityOutput::builder().build()
            });
        let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&del, &vis]);
        let q = SqsQueue::new(client, URL);
        q.extend_visibility("rh-7", Duration::from_secs(90))
            .await
            .unwrap();
        q.delete("rh-7").await.unwrap();
        assert_eq!((del.num_calls(), vis.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn delete_of_a_gone_handle_is_success() {
        let wire =
            mock!(Client::delete_message).then_http_response(|| error_response(400, HANDLE_GONE));
        let typed = mock!(Client::delete_message).then_error(|| {
            DeleteMessageError::ReceiptHandleIsInvalid(ReceiptHandleIsInvalid::builder().build())
        });
        let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&wire, &typed]);
        let q = SqsQueue::new(client, URL);
        q.delete("old").await.unwrap();
        q.delete("old").await.unwrap();
        assert_eq!((wire.num_calls(), typed.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn throttles_are_retryable_and_bad_handles_permanent() {
        let throttled = mock!(Client::receive_message)
            .then_http_response(|| error_response(400, "RequestThrottled"));
        let server = mock!(Client::delete_message)
            .then_http_response(|| error_response(500, "InternalError"));
        let inflight = mock!(Client::change_message_visibility)
            .then_http_response(|| error_response(400, "MessageNotInflight"));
        let client = mock_client!(
            aws_sdk_sqs,
            RuleMode::MatchAny,
            [&throttled, &server, &inflight],
            |c| { c.retry_config(RetryConfig::disabled()) }
        );
        let q = SqsQueue::new(client, URL);

        let e = q.receive(10, Duration::from_secs(20)).await.unwrap_err();
        assert_eq!(e.disposition, Disposition::Retry, "{e:?}");
        assert!(e.is_throttle(), "{e:?}");
        assert_eq!(e.operation, "sqs:ReceiveMessage");

        let e = q.delete("rh").await.unwrap_err();
        assert_eq!(e.disposition, Disposition::Retry, "{e:?}");

        let e = q
            .extend_visibility("rh", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(e.disposition, Disposition::Permanent, "{e:?}");
        assert_eq!(e.code.as_deref(), Some("MessageNotInflight"));
    }
}
