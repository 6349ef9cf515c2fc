//! What ferryd reads about its own queue: the ARN that identifies its hooks, and readiness (credentials
//! work and the queue answers), checked periodically for `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use ferry_state_machine::error::{display_chain, sdk_error};
use tokio::sync::watch;
use tracing::warn;

use crate::http::Readiness;

/// The queue's ARN; `None` (with a warning) if unreadable.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<String> {
    match sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
    {
        Ok(out) => out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned(),
        Err(e) => {
            warn!(queue = %url, error = %display_chain(&e), "cannot read the queue's ARN; reconciliation takes only unambiguous hooks");
            None
        }
    }
}

/// Every `every`, checks that the queue answers with these credentials and records it in `readiness`;
/// on shutdown, marks ferryd as draining.
pub async fn watch_readiness(
    sqs: aws_sdk_sqs::Client,
    url: String,
    readiness: Arc<Readiness>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let check = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await;
        match check {
            Ok(_) => readiness.set_ready(true, "queue reachable"),
            Err(e) => {
                // The whole chain (endpoints, credential providers) goes to the log; `/readyz`, which
                // anyone who reaches the port can read, gets the AWS error code alone.
                let code = sdk_error("sqs:GetQueueAttributes", &e)
                    .code
                    .unwrap_or_else(|| "no answer".into());
                warn!(queue = %url, error = %display_chain(&e), "readiness: the queue does not answer");
                readiness.set_ready(false, format!("queue unreachable ({code})"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    readiness.set_draining();
}
