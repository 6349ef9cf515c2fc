//! Building the AWS SDK clients: the standard credential and endpoint chain, the SDK's retry and timeouts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

use crate::config::{AwsConfig, RetryMode};
use crate::metrics::Metrics;
use crate::sdk_metrics::SdkMetrics;

/// The SDK clients ferry uses.
#[derive(Debug, Clone)]
pub struct Clients {
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// Auto Scaling.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB: the lease table of replicas (`[lease] table`).
    pub dynamodb: aws_sdk_dynamodb::Client,
}

/// Loads the shared SDK config: credentials, region and endpoint (`AWS_ENDPOINT_URL`) from the standard
/// chain, with ferry's retry mode and timeouts, without call metrics (the CLI's commands).
/// Same as [`clients_with_metrics`] without metrics.
pub async fn clients(cfg: &AwsConfig) -> Clients {
    clients_with_metrics(cfg, None).await
}

/// [`clients`], with every call attempt of the clients counted into `metrics`
/// (`ferry_aws_calls_total`) when given.
pub async fn clients_with_metrics(cfg: &AwsConfig, metrics: Option<&Metrics>) -> Clients {
    let shared = shared_config(cfg).await;
    let mut ec2 = aws_sdk_ec2::config::Builder::from(&shared);
    let mut autoscaling = aws_sdk_autoscaling::config::Builder::from(&shared);
    let mut sqs = aws_sdk_sqs::config::Builder::from(&shared);
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared);
    if let Some(m) = metrics {
        ec2 = ec2.interceptor(SdkMetrics::new(m.clone()));
        autoscaling = autoscaling.interceptor(SdkMetrics::new(m.clone()));
        sqs = sqs.interceptor(SdkMetrics::new(m.clone()));
        dynamodb = dynamodb.interceptor(SdkMetrics::new(m.clone()));
    }
    Clients {
        ec2: aws_sdk_ec2::Client::from_conf(ec2.build()),
        autoscaling: aws_sdk_autoscaling::Client::from_conf(autoscaling.build()),
        sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
    }
}

/// An EC2 client that calls as `role` (`[gc] delete_role_arn`), assumed through STS from the standard
/// chain's credentials and refreshed before they expire: retention's deletes only. Same retry, timeouts
/// and endpoint as [`clients`].
pub async fn assumed_ec2(
    cfg: &AwsConfig,
    role: &str,
    metrics: Option<&Metrics>,
) -> aws_sdk_ec2::Client {
    let shared = shared_config(cfg).await;
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("ferry-retention")
        .configure(&shared)
        .build()
        .await;
    let mut ec2 = aws_sdk_ec2::config::Builder::from(&shared).credentials_provider(provider);
    if let Some(m) = metrics {
        ec2 = ec2.interceptor(SdkMetrics::new(m.clone()));
    }
    aws_sdk_ec2::Client::from_conf(ec2.build())
}

/// The shared SDK config of every client: the standard chain with ferry's retry mode and timeouts.
async fn shared_config(cfg: &AwsConfig) -> aws_config::SdkConfig {
    let retry = match cfg.retry_mode {
        RetryMode::Standard => RetryConfig::standard(),
        RetryMode::Adaptive => RetryConfig::adaptive(),
    }
    .with_max_attempts(cfg.max_attempts)
    .with_initial_backoff(Duration::from_millis(200))
    .with_max_backoff(Duration::from_secs(10));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(cfg.attempt_timeout_secs))
        // A long poll holds the connection for 20 s; leave room for it.
        .read_timeout(Duration::from_secs(cfg.attempt_timeout_secs.max(25)))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    }
    loader.load().await
}
