//! The interceptor on real SDK clients: mocked HTTP responses, and a refused connection.

use std::time::Duration;

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

use super::*;

const THROTTLED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>"#;

const DENIED: &str = r#"<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>no</Message></Error></Errors></Response>"#;

fn retry(attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5))
}

fn count(metrics: &Metrics, operation: &str, outcome: &str) -> u64 {
    let needle = format!(
        "ferry_aws_calls_total{{service=\"ec2\",operation=\"{operation}\",outcome=\"{outcome}\"}} "
    );
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn counts_every_attempt_by_outcome() {
    let rule = mock!(Client::describe_volumes)
        .sequence()
        .http_status(503, None)
        .http_status(400, Some(THROTTLED.into()))
        .output(|| DescribeVolumesOutput::builder().build())
        .build();
    let denied = mock!(Client::describe_snapshots).then_http_response(|| {
        Response::new(
            StatusCode::try_from(403).expect("status"),
            SdkBody::from(DENIED),
        )
    });
    let metrics = Metrics::new();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&rule, &denied], |c| c
        .interceptor(SdkMetrics::new(metrics.clone()))
        .retry_config(retry(3)));

    client
        .describe_volumes()
        .send()
        .await
        .expect("the third attempt succeeds");
    assert_eq!(count(&metrics, "DescribeVolumes", "server_error"), 1);
    assert_eq!(count(&metrics, "DescribeVolumes", "throttled"), 1);
    assert_eq!(count(&metrics, "DescribeVolumes", "ok"), 1);

    let err = client
        .describe_snapshots()
        .send()
        .await
        .expect_err("denied");
    assert!(format!("{err:?}").contains("UnauthorizedOperation"));
    assert_eq!(
        count(&metrics, "DescribeSnapshots", "client_error"),
        1,
        "not retried"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let metrics = Metrics::new();
    let conf = aws_sdk_ec2::Config::builder()
        .with_test_defaults_v2()
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .retry_config(retry(2))
        .interceptor(SdkMetrics::new(metrics.clone()))
        .build();
    let client = Client::from_conf(conf);
    client
        .describe_volumes()
        .send()
        .await
        .expect_err("nobody listens");
    assert_eq!(count(&metrics, "DescribeVolumes", "transport_error"), 2);
}

#[test]
fn error_codes_of_every_protocol() {
    let resp = |status: u16, headers: &[(&'static str, &'static str)], body: &'static str| {
        let mut r = Response::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::from(body),
        );
        for (k, v) in headers {
            r.headers_mut().insert(*k, *v);
        }
        r
    };
    let ec2 = resp(400, &[], THROTTLED);
    assert_eq!(error_code(&ec2).as_deref(), Some("RequestLimitExceeded"));
    assert_eq!(classify_response(&ec2), AwsCallOutcome::Throttled);
    let asg = resp(
        400,
        &[],
        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code></Error></ErrorResponse>",
    );
    assert_eq!(classify_response(&asg), AwsCallOutcome::Throttled);
    let sqs = resp(
        400,
        &[(
            "x-amzn-query-error",
            "AWS.SimpleQueueService.NonExistentQueue;Sender",
        )],
        r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"x"}"#,
    );
    assert_eq!(
        error_code(&sqs).as_deref(),
        Some("AWS.SimpleQueueService.NonExistentQueue")
    );
    assert_eq!(classify_response(&sqs), AwsCallOutcome::ClientError);
    let json = resp(
        400,
        &[],
        r#"{"__type":"com.amazonaws.sqs#ThrottlingException"}"#,
    );
    assert_eq!(classify_response(&json), AwsCallOutcome::Throttled);
    let typed = resp(
        400,
        &[("x-amzn-ErrorType", "RequestThrottled:http://internal")],
        "",
    );
    assert_eq!(error_code(&typed).as_deref(), Some("RequestThrottled"));
    assert_eq!(
        classify_response(&resp(429, &[], "")),
        AwsCallOutcome::Throttled
    );
    assert_eq!(
        classify_response(&resp(500, &[], "<Code>InternalError</Code>")),
        AwsCallOutcome::ServerError
    );
    assert_eq!(error_code(&resp(400, &[], "")), None);
    assert_eq!(service_label("Auto Scaling"), "autoscaling");
    assert_eq!(service_label("EC2"), "ec2");
}
