//! The optional webhook: posts failover events as JSON from a background task, never blocking a hook.
//! Header values (tokens) never reach logs or `Debug` output, and logged URLs keep only scheme and host.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ferry_snapshot::SourceEvents;
use ferry_state_machine::{
    AttachedData, Disposition, HookEvent, HookObserver, HookOutcome, LifecycleResult, Progress,
    StepError, Transition,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// A webhook event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A launch hook made its first progress: the data is moving to a new instance.
    FailoverStarted,
    /// A launch hook was completed with CONTINUE: the new instance has the data and the address.
    FailoverCompleted,
    /// A launch hook was completed with ABANDON: Auto Scaling replaces the instance.
    FailoverAbandoned,
    /// A hook step failed permanently (the hook is abandoned).
    HookError,
    /// A launch has waited `restore_latest_after_secs` on a source it cannot get (an impaired AZ).
    SourceUnreachable,
    /// A launch restored a recovery point because the newest data was unreachable: writes were lost.
    RestoredLatest,
}

impl WebhookEvent {
    /// The wire name, also the metric label.
    pub fn label(self) -> &'static str {
        match self {
            WebhookEvent::FailoverStarted => "failover_started",
            WebhookEvent::FailoverCompleted => "failover_completed",
            WebhookEvent::FailoverAbandoned => "failover_abandoned",
            WebhookEvent::HookError => "hook_error",
            WebhookEvent::SourceUnreachable => "source_unreachable",
            WebhookEvent::RestoredLatest => "restored_latest",
        }
    }

    /// Every kind.
    pub const ALL: [WebhookEvent; 6] = [
        WebhookEvent::FailoverStarted,
        WebhookEvent::FailoverCompleted,
        WebhookEvent::FailoverAbandoned,
        WebhookEvent::HookError,
        WebhookEvent::SourceUnreachable,
        WebhookEvent::RestoredLatest,
    ];
}

/// The longest a webhook post waits for its TCP (and TLS) connection.
const CONNECT_TIMEOUT_SECS: u64 = 5;

/// Whether `url` points at this host (`localhost`, `127.0.0.0/8`, `::1`): the one place plain http may go.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `[webhook]`: where and what to post. Its `Debug` output hides header values and the URL's secrets.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL posted to (`http` or `https`).
    pub url: String,
    /// Extra request headers, e.g. `Authorization`; their values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one post, in seconds (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The events to post (default: all).
    #[serde(default = "all_events")]
    pub events: Vec<WebhookEvent>,
    /// Events waiting to be posted; more are dropped and counted (default 256).
    #[serde(default = "default_queue")]
    pub queue_size: usize,
}

fn default_timeout() -> u64 {
    10
}
fn all_events() -> Vec<WebhookEvent> {
    WebhookEvent::ALL.to_vec()
}
fn default_queue() -> usize {
    256
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("headers", &headers)
            .field("timeout_secs", &self.timeout_secs)
            .field("events", &self.events)
            .field("queue_size", &self.queue_size)
            .finish()
    }
}

impl WebhookConfig {
    /// Checks the values; the error names the key but never a secret.
    pub fn validate(&self) -> Result<(), String> {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => {}
            Ok(u) if u.scheme() == "http" => {
                return Err(format!(
                    "webhook.url: {} is plain http: the events and the headers (often a secret) would cross the network in clear; use https (http is allowed to a loopback host only)",
                    redact_url(&self.url)
                ))
            }
            _ => return Err("webhook.url: must be an https URL with a host".into()),
        }
        self.header_map().map(|_| ())?;
        if !(1..=300).contains(&self.timeout_secs) {
            return Err("webhook.timeout_secs: must be 1..=300".into());
        }
        if self.queue_size == 0 {
            return Err("webhook.queue_size: must be at least 1".into());
        }
        Ok(())
    }

    /// The headers, values marked sensitive.
    fn header_map(&self) -> Result<HeaderMap, String> {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("webhook.headers: {k:?} is not a header name"))?;
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                format!("webhook.headers.{k}: the value is not a valid header value")
            })?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        Ok(map)
    }
}

/// A URL fit for logs: scheme, host and port only. Userinfo and query hold secrets, and so does the path
/// of many webhook services (Slack, Teams), so they are all replaced.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path() == "/" && u.query().is_none() {
                "/"
            } else {
                "/<redacted>"
            };
            let user = if u.username().is_empty() && u.password().is_none() {
                ""
            } else {
                "<redacted>@"
            };
            format!("{}://{user}{host}{port}{rest}", u.scheme())
        }
        Err(_) => "<unparseable url>".into(),
    }
}

/// One posted body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBody {
    /// The event kind.
    pub event: WebhookEvent,
    /// The Auto Scaling group.
    pub group: String,
    /// The instance held by the hook.
    pub instance_id: String,
    /// `launch` or `terminate`.
    pub transition: String,
    /// The lifecycle action token (empty for an action found by reconciliation).
    pub token: String,
    /// Why, when there is a reason.
    pub reason: Option<String>,
    /// `restored_latest`: the writes lost, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_window_secs: Option<u64>,
    /// When, RFC 3339 in UTC.
    pub time: String,
}

/// Posts events in the background; implements `HookObserver`. Dropping it (every clone of the `Arc`)
/// lets the worker post what is queued and end.
pub struct Notifier {
    tx: mpsc::Sender<EventBody>,
    events: HashSet<WebhookEvent>,
    metrics: Option<Metrics>,
    /// Launch hooks whose `failover_started` was sent, by ledger key.
    started: Mutex<HashSet<String>>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Validates `cfg` and starts the posting worker (on the current Tokio runtime).
    pub fn spawn(
        cfg: &WebhookConfig,
        metrics: Option<Metrics>,
    ) -> anyhow::Result<(Arc<Notifier>, JoinHandle<()>)> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let client = reqwest::Client::builder()
            .default_headers(cfg.header_map().map_err(anyhow::Error::msg)?)
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(
                cfg.timeout_secs.min(CONNECT_TIMEOUT_SECS),
            ))
            // A redirect would carry the secret headers to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!reqwest::Url::parse(&cfg.url).is_ok_and(|u| is_loopback(&u)))
            .user_agent(concat!("ferryd/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the webhook's HTTP client")?;
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let worker = tokio::spawn(post_all(client, cfg.url.clone(), rx, metrics.clone()));
        let notifier = Notifier {
            tx,
            events: cfg.events.iter().copied().collect(),
            metrics,
            started: Mutex::default(),
        };
        Ok((Arc::new(notifier), worker))
    }

    /// Queues an event of a hook (see [`Notifier::send`]).
    fn emit(&self, event: WebhookEvent, hook: &HookEvent, reason: Option<String>) {
        self.send(EventBody {
            event,
            group: hook.group.clone(),
            instance_id: hook.instance_id.clone(),
            transition: hook.transition.label().to_string(),
            token: hook.token.clone(),
            reason,
            loss_window_secs: None,
            time: rfc3339(SystemTime::now()),
        });
    }

    /// Queues an event of a launch's source policy.
    fn emit_source(
        &self,
        event: WebhookEvent,
        group: &str,
        instance: &str,
        reason: String,
        loss: Option<u64>,
    ) {
        self.send(EventBody {
            event,
            group: group.to_string(),
            instance_id: instance.to_string(),
            transition: Transition::Launching.label().to_string(),
            token: String::new(),
            reason: Some(reason),
            loss_window_secs: loss,
            time: rfc3339(SystemTime::now()),
        });
    }

    /// Queues a body unless its event is not wanted or the queue is full (then it is dropped and counted).
    fn send(&self, body: EventBody) {
        let event = body.event;
        if !self.events.contains(&event) {
            return;
        }
        if let Err(e) = self.tx.try_send(body) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "worker stopped",
            };
            warn!(event = event.label(), why, "webhook event dropped");
            if let Some(m) = &self.metrics {
                m.record_webhook(event.label(), "dropped");
            }
        }
    }
}

impl HookObserver for Notifier {
    fn on_progress(&self, hook: &HookEvent, _progress: &Progress) {
        if hook.transition != Transition::Launching {
            return;
        }
        let first = self
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hook.ledger_key());
        if first {
            self.emit(WebhookEvent::FailoverStarted, hook, None);
        }
    }

    fn on_error(&self, hook: &HookEvent, error: &StepError) {
        if error.disposition == Disposition::Permanent {
            self.emit(WebhookEvent::HookError, hook, Some(error.to_string()));
        }
    }

    fn on_end(&self, hook: &HookEvent, outcome: &HookOutcome, _took: Duration) {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hook.ledger_key());
        if hook.transition != Transition::Launching {
            return;
        }
        if let HookOutcome::Completed { result, reason } = outcome {
            let event = match result {
                LifecycleResult::Continue => WebhookEvent::FailoverCompleted,
                LifecycleResult::Abandon => WebhookEvent::FailoverAbandoned,
            };
            self.emit(event, hook, Some(reason.clone()));
        }
    }
}

impl SourceEvents for Notifier {
    fn source_unreachable(&self, group: &str, instance: &str, policy: &str, waited: Duration) {
        let why = format!(
            "the newest data has been unreachable for {}s (source_unreachable = {policy})",
            waited.as_secs()
        );
        self.emit_source(WebhookEvent::SourceUnreachable, group, instance, why, None);
    }

    fn restored_latest(
        &self,
        group: &str,
        slot: u32,
        instance: &str,
        loss: u64,
        attached: &[AttachedData],
    ) {
        let what: Vec<String> = attached
            .iter()
            .map(|a| format!("{} {} gen {}", a.logical, a.volume_id, a.generation))
            .collect();
        let why = format!(
            "slot {slot}: restored the newest recovery point: {}; up to {loss}s of acknowledged writes are lost",
            what.join(", ")
        );
        self.emit_source(
            WebhookEvent::RestoredLatest,
            group,
            instance,
            why,
            Some(loss),
        );
    }
}

/// Attempts per event: transport failures and 5xx are tried again after 1 s, then 2 s.
const ATTEMPTS: u32 = 3;

/// The worker: posts events in order until every sender is gone.
async fn post_all(
    client: reqwest::Client,
    url: String,
    mut rx: mpsc::Receiver<EventBody>,
    metrics: Option<Metrics>,
) {
    let shown = redact_url(&url);
    while let Some(body) = rx.recv().await {
        let event = body.event.label();
        let mut outcome = "failed";
        for attempt in 1..=ATTEMPTS {
            match client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    debug!(event, url = %shown, "webhook event sent");
                    outcome = "sent";
                    break;
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    warn!(event, url = %shown, status, attempt, "webhook refused the event");
                    if status < 500 && status != 429 {
                        break;
                    }
                }
                Err(e) => {
                    // `without_url`: reqwest's message would otherwise carry the full URL.
                    let e = e.without_url();
                    warn!(event, url = %shown, error = %e, attempt, "cannot post the webhook event");
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
        if let Some(m) = &metrics {
            m.record_webhook(event, outcome);
        }
    }
}

/// RFC 3339 UTC time with seconds, e.g. `2024-05-01T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
