//! An AWS SDK interceptor that counts every call *attempt* (retries included) by service, operation and
//! outcome into `ferry_aws_calls_total`.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    FinalizerInterceptorContextRef, InterceptorContext,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use ferry_state_machine::error::THROTTLE_CODES;

use crate::metrics::Metrics;

/// How one attempt of an AWS call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwsCallOutcome {
    /// The call succeeded.
    Ok,
    /// Throttled: a throttle error code or HTTP 429.
    Throttled,
    /// Any other error response below 500: the request was refused.
    ClientError,
    /// HTTP 5xx.
    ServerError,
    /// No response: a connection failure or a timeout.
    TransportError,
}

impl AwsCallOutcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            AwsCallOutcome::Ok => "ok",
            AwsCallOutcome::Throttled => "throttled",
            AwsCallOutcome::ClientError => "client_error",
            AwsCallOutcome::ServerError => "server_error",
            AwsCallOutcome::TransportError => "transport_error",
        }
    }
}

/// Counts every attempt of every call of the client it is installed on; install one per client with
/// `aws_sdk_*::config::Builder::interceptor`.
#[derive(Debug, Clone)]
pub struct SdkMetrics {
    metrics: Metrics,
}

impl SdkMetrics {
    /// An interceptor recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl Intercept for SdkMetrics {
    fn name(&self) -> &'static str {
        "FerrySdkMetrics"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map_or(("unknown", "unknown"), |m| (m.service(), m.name()));
        self.metrics.record_aws_call(
            &service_label(service),
            operation,
            classify(context.inner()),
        );
        Ok(())
    }
}

/// The service label: the SDK's service name (`EC2`, `Auto Scaling`, `SQS`) as its IAM prefix (`ec2`,
/// `autoscaling`, `sqs`), like ferry's operation names (`ec2:CreateVolume`).
pub fn service_label(service: &str) -> String {
    service
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Classifies one finished attempt by its result, HTTP status and AWS error code.
pub fn classify(ctx: &InterceptorContext) -> AwsCallOutcome {
    match ctx.output_or_error() {
        Some(Ok(_)) => AwsCallOutcome::Ok,
        Some(Err(err)) => match ctx.response() {
            Some(resp) => classify_response(resp),
            // A modeled error without a response (only mocks do this): refused, not lost.
            None if err.is_operation_error() => AwsCallOutcome::ClientError,
            None => AwsCallOutcome::TransportError,
        },
        None => AwsCallOutcome::TransportError,
    }
}

fn classify_response(resp: &HttpResponse) -> AwsCallOutcome {
    let status = resp.status().as_u16();
    let throttle_code = error_code(resp).is_some_and(|c| THROTTLE_CODES.contains(&c.as_str()));
    if throttle_code || status == 429 {
        AwsCallOutcome::Throttled
    } else if status >= 500 {
        AwsCallOutcome::ServerError
    } else if status >= 300 {
        AwsCallOutcome::ClientError
    } else {
        // A 2xx that did not deserialize: the response was bad, not the request.
        AwsCallOutcome::ServerError
    }
}

/// The AWS error code of an error response, whatever the protocol: the `x-amzn-query-error` header
/// (SQS's query-compatible code), the `x-amzn-ErrorType` header, a JSON body's `__type` or `code`, or
/// the first `<Code>` of an XML body (EC2, Auto Scaling).
pub fn error_code(resp: &HttpResponse) -> Option<String> {
    let headers = resp.headers();
    if let Some(v) = headers.get("x-amzn-query-error") {
        return non_empty(v.split(';').next().unwrap_or(v));
    }
    if let Some(v) = headers.get("x-amzn-errortype") {
        return non_empty(v.split(':').next().unwrap_or(v));
    }
    let body = resp.body().bytes()?;
    let text = std::str::from_utf8(body).ok()?.trim_start();
    if text.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(text).ok()?;
        let raw = json
            .get("__type")
            .or_else(|| json.get("code"))
            .or_else(|| json.get("Code"))?
            .as_str()?;
        // `com.amazonaws.sqs#QueueDoesNotExist` or `ThrottlingException:http://...`.
        let name = raw.rsplit('#').next().unwrap_or(raw);
        return non_empty(name.split(':').next().unwrap_or(name));
    }
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    non_empty(&text[start..start + len])
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
#[path = "sdk_metrics_tests.rs"]
mod tests;
