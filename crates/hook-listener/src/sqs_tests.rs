//! The SQS adapter's wire shapes and error mapping, on `aws-smithy-mocks`.

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchOutput;
use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchResultEntry, DeleteMessageBatchResultEntry};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use ferry_state_machine::Disposition;

use super::*;

const URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/ferry";

/// An SQS (awsJson1_0, query-compatible) error response, as the service sends it.
fn error_response(status: u16, code: &str) -> Response {
    let body = format!(r#"{{"__type":"com.amazonaws.sqs#{code}","message":"injected {code}"}}"#);
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

fn failed(id: &str, code: &str, sender_fault: bool) -> BatchResultErrorEntry {
    BatchResultErrorEntry::builder()
        .id(id)
        .code(code)
        .message(format!("injected {code}"))
        .sender_fault(sender_fault)
        .build()
        .unwrap()
}

fn handles(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("rh-{i}")).collect()
}

#[tokio::test]
async fn delete_batch_sends_positional_ids_and_maps_each_entry() {
    let rule = mock!(Client::delete_message_batch)
        .match_requests(|r| {
            let entries = r.entries();
            r.queue_url() == Some(URL)
                && entries.len() == 5
                && entries.iter().enumerate().all(|(i, e)| {
                    e.id() == i.to_string() && e.receipt_handle() == format!("rh-{i}")
                })
        })
        .then_output(|| {
            DeleteMessageBatchOutput::builder()
                .successful(
                    DeleteMessageBatchResultEntry::builder()
                        .id("0")
                        .build()
                        .unwrap(),
                )
                .failed(failed("1", HANDLE_GONE, true))
                .failed(failed("2", "InternalError", false))
                .failed(failed("3", "InvalidParameterValue", true))
                .failed(failed("99", "InternalError", false))
                .build()
                .unwrap()
        });
    let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&rule]);
    let results = SqsQueue::new(client, URL)
        .delete_batch(&handles(5))
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok());
    assert!(results[1].is_ok(), "a gone handle on delete is tolerated");
    let e = results[2].as_ref().unwrap_err();
    assert_eq!(e.disposition, Disposition::Retry, "{e:?}");
    assert_eq!(e.operation, "sqs:DeleteMessageBatch");
    let e = results[3].as_ref().unwrap_err();
    assert_eq!(e.disposition, Disposition::Permanent, "{e:?}");
    assert_eq!(e.code.as_deref(), Some("InvalidParameterValue"));
    assert!(
        e.message.contains("injected InvalidParameterValue"),
        "{e:?}"
    );
    let e = results[4].as_ref().unwrap_err();
    assert!(e.is_retryable(), "an entry the response omits: {e:?}");
}

#[tokio::test]
async fn change_visibility_batch_passes_timeouts_and_reports_failed_entries() {
    let rule = mock!(Client::change_message_visibility_batch)
        .match_requests(|r| {
            let e = r.entries();
            r.queue_url() == Some(URL)
                && e.len() == 3
                && e[0].visibility_timeout() == Some(90)
                && e[1].visibility_timeout() == Some(43_200)
                && e[2].visibility_timeout() == Some(0)
                && e[2].receipt_handle() == "rh-2"
        })
        .then_output(|| {
            ChangeMessageVisibilityBatchOutput::builder()
                .successful(
                    ChangeMessageVisibilityBatchResultEntry::builder()
                        .id("0")
                        .build()
                        .unwrap(),
                )
                .failed(failed("1", "MessageNotInflight", true))
                .failed(failed("2", HANDLE_GONE, true))
                .build()
                .unwrap()
        });
    let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&rule]);
    let changes: Vec<VisibilityChange> = handles(3)
        .into_iter()
        .zip([90, 100_000, 0])
        .map(|(h, s)| VisibilityChange {
            receipt_handle: h,
            timeout: Duration::from_secs(s),
        })
        .collect();
    let results = SqsQueue::new(client, URL)
        .change_visibility_batch(&changes)
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert!(results[0].is_ok());
    let e = results[1].as_ref().unwrap_err();
    assert_eq!(e.disposition, Disposition::Permanent, "{e:?}");
    assert_eq!(e.code.as_deref(), Some("MessageNotInflight"));
    let e = results[2].as_ref().unwrap_err();
    assert_eq!(
        e.disposition,
        Disposition::Permanent,
        "a spent handle is not tolerated on a visibility change: {e:?}"
    );
}

#[tokio::test]
async fn whole_call_throttles_are_retryable_and_bad_requests_permanent() {
    let throttled = mock!(Client::receive_message)
        .then_http_response(|| error_response(400, "RequestThrottled"));
    let server = mock!(Client::delete_message_batch)
        .then_http_response(|| error_response(500, "InternalError"));
    let too_many = mock!(Client::change_message_visibility_batch)
        .then_http_response(|| error_response(400, "TooManyEntriesInBatchRequest"));
    let client = mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        [&throttled, &server, &too_many],
        |c| { c.retry_config(RetryConfig::disabled()) }
    );
    let q = SqsQueue::new(client, URL);

    let e = q.receive(10, Duration::from_secs(20)).await.unwrap_err();
    assert_eq!(e.disposition, Disposition::Retry, "{e:?}");
    assert!(e.is_throttle(), "{e:?}");
    assert_eq!(e.operation, "sqs:ReceiveMessage");

    let e = q.delete_batch(&handles(2)).await.unwrap_err();
    assert_eq!(e.disposition, Disposition::Retry, "{e:?}");
    assert_eq!(e.operation, "sqs:DeleteMessageBatch");

    let change = VisibilityChange {
        receipt_handle: "rh".into(),
        timeout: Duration::from_secs(60),
    };
    let e = q.change_visibility_batch(&[change]).await.unwrap_err();
    assert_eq!(e.disposition, Disposition::Permanent, "{e:?}");
    assert_eq!(e.code.as_deref(), Some("TooManyEntriesInBatchRequest"));
}
