//! Errors with a disposition: retry after a delay, give up (abandon), or already done.

use std::time::Duration;

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A transient fault: throttling, a 5xx, a timeout, a resource in a passing state. Try the step again later.
    Retry,
    /// The step cannot succeed: abandon the hook.
    Permanent,
    /// What the step wanted is already true (for example the action was already completed).
    AlreadyDone,
}

/// An error from one AWS call or one step, with what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct StepError {
    /// The AWS operation or step that failed, e.g. `ec2:CreateVolume`.
    pub operation: String,
    /// The AWS error code, when there is one.
    pub code: Option<String>,
    /// A human-readable message.
    pub message: String,
    /// What to do about it.
    pub disposition: Disposition,
}

/// AWS error codes that mean "throttled"; these are never permanent.
pub const THROTTLE_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "EC2ThrottledException",
];

/// AWS error codes that mean a passing server-side fault.
const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "IncorrectState",
    "InsufficientInstanceCapacity",
    "InsufficientVolumeCapacity",
    "ConcurrentSnapshotLimitExceeded",
    "SnapshotCreationPerVolumeRateExceeded",
    "ServerInternal",
];

impl StepError {
    /// A transient error of a named operation.
    pub fn retry(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(operation, None, message, Disposition::Retry)
    }

    /// A permanent error of a named operation.
    pub fn permanent(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(operation, None, message, Disposition::Permanent)
    }

    /// An error with every field given.
    pub fn new(
        operation: impl Into<String>,
        code: Option<String>,
        message: impl Into<String>,
        disposition: Disposition,
    ) -> Self {
        Self {
            operation: operation.into(),
            code,
            message: message.into(),
            disposition,
        }
    }

    /// Classifies an AWS error by its code: throttling and server faults retry, the rest is permanent.
    /// `http_status` of 5xx or a missing code (a transport fault, a timeout) also retries.
    pub fn from_aws(
        operation: impl Into<String>,
        code: Option<&str>,
        message: Option<&str>,
        http_status: Option<u16>,
    ) -> Self {
        let disposition = match (code, http_status) {
            (Some(c), _) if THROTTLE_CODES.contains(&c) || TRANSIENT_CODES.contains(&c) => {
                Disposition::Retry
            }
            (_, Some(s)) if s >= 500 || s == 429 => Disposition::Retry,
            (None, _) => Disposition::Retry,
            (Some(_), _) => Disposition::Permanent,
        };
        let message = match (code, message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_string(),
            (None, Some(m)) => m.to_string(),
            (None, None) => "no error details (transport fault or timeout)".to_string(),
        };
        Self::new(operation, code.map(str::to_string), message, disposition)
    }

    /// Whether the error is a throttle.
    pub fn is_throttle(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| THROTTLE_CODES.contains(&c))
    }

    /// Whether this error should be retried.
    pub fn is_retryable(&self) -> bool {
        self.disposition == Disposition::Retry
    }
}

/// Builds a `StepError` from any smithy SDK error, classifying it by its AWS code.
pub fn sdk_error<E, R>(
    operation: &str,
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> StepError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().http_status();
            StepError::from_aws(operation, ctx.err().code(), ctx.err().message(), status)
        }
        SdkError::ResponseError(ctx) => StepError::from_aws(
            operation,
            None,
            Some("unparseable response"),
            ctx.raw().http_status(),
        ),
        other => StepError::from_aws(operation, None, Some(&display_chain(other)), None),
    }
}

/// The HTTP status of a raw response, abstracted so `sdk_error` stays generic.
pub trait HttpStatus {
    /// The status code, if there was a response.
    fn http_status(&self) -> Option<u16>;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn http_status(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
}

/// Renders an error with its sources, so that a dispatch failure names its cause.
pub fn display_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// The delay before retrying a step, with jitter; built on `tokio-retry`'s strategies.
pub fn step_backoff(base: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
    tokio_retry::strategy::ExponentialBackoff::from_millis(2)
        .factor(base_ms / 2 + 1)
        .max_delay(max)
        .map(tokio_retry::strategy::jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_retry_and_validation_is_permanent() {
        let t = StepError::from_aws(
            "ec2:CreateVolume",
            Some("RequestLimitExceeded"),
            None,
            Some(400),
        );
        assert_eq!(t.disposition, Disposition::Retry);
        assert!(t.is_throttle());
        let a = StepError::from_aws(
            "autoscaling:Complete",
            Some("Throttling"),
            Some("Rate exceeded"),
            Some(400),
        );
        assert_eq!(a.disposition, Disposition::Retry);
        let v = StepError::from_aws(
            "ec2:AttachVolume",
            Some("InvalidVolume.ZoneMismatch"),
            Some("x"),
            Some(400),
        );
        assert_eq!(v.disposition, Disposition::Permanent);
        assert_eq!(v.message, "InvalidVolume.ZoneMismatch: x");
        let s = StepError::from_aws("ec2:X", Some("Weird"), None, Some(503));
        assert_eq!(
            s.disposition,
            Disposition::Retry,
            "a 5xx retries whatever its code"
        );
        let n = StepError::from_aws("ec2:X", None, None, Some(503));
        assert_eq!(n.disposition, Disposition::Retry);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let delays: Vec<Duration> =
            step_backoff(Duration::from_millis(200), Duration::from_secs(5))
                .take(10)
                .collect();
        assert_eq!(delays.len(), 10);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(5)));
    }
}
