//! The metrics and health HTTP server (`axum`): `/metrics`, `/healthz` (liveness of the poll loop) and
//! `/readyz` (the last readiness check), plus optional systemd notification (`READY=1`, watchdog).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sd_notify::NotifyState;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::metrics::{Metrics, CONTENT_TYPE};

/// `[metrics]`: the metrics and health HTTP server, liveness, recovery-point checks and systemd notify.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz` (default true).
    pub enabled: bool,
    /// The address to listen on (default `127.0.0.1:9464`).
    pub listen: SocketAddr,
    /// `/healthz` fails when the poll loop has not polled for this long, in seconds (default 90).
    pub liveness_window_secs: u64,
    /// How often the age of each volume's newest completed snapshot is measured, in seconds
    /// (default 300; 0 turns the check off).
    pub recovery_interval_secs: u64,
    /// Send `READY=1` and watchdog pings to systemd when `NOTIFY_SOCKET` is set (default true).
    pub sd_notify: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            liveness_window_secs: 90,
            recovery_interval_secs: 300,
            sd_notify: true,
        }
    }
}

impl MetricsConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        // The listener long-polls for up to 20 s between liveness signals: a shorter window flaps.
        if self.liveness_window_secs < 30 {
            return Err("metrics.liveness_window_secs: must be at least 30".into());
        }
        if self.recovery_interval_secs > 86_400 {
            return Err("metrics.recovery_interval_secs: must be at most 86400 (a day)".into());
        }
        Ok(())
    }

    /// The liveness window.
    pub fn liveness_window(&self) -> Duration {
        Duration::from_secs(self.liveness_window_secs)
    }
}

/// Whether ferryd can do its work: set by the daemon's periodic check (credentials valid, queue
/// reachable). Not ready until the first check passes.
#[derive(Debug)]
pub struct Readiness {
    state: RwLock<(bool, String)>,
    draining: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            state: RwLock::new((false, "no readiness check has run yet".into())),
            draining: AtomicBool::new(false),
        }
    }
}

impl Readiness {
    /// Records the result of a readiness check; `reason` says why (shown by `/readyz`).
    pub fn set_ready(&self, ready: bool, reason: impl Into<String>) {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        *s = (ready, reason.into());
    }

    /// The last result: ready or not, and why.
    pub fn get(&self) -> (bool, String) {
        if self.is_draining() {
            return (false, "shutting down".into());
        }
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the daemon as shutting down: `/readyz` fails from now on, and `/healthz` and the watchdog
    /// no longer expect the poll loop (which has stopped) while in-flight hooks finish.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`Readiness::set_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The poll loop's liveness signal: when it last polled (`ListenerObserver::on_poll`).
#[derive(Debug)]
pub struct PollClock {
    /// Liveness holds from here until the first poll.
    created: Instant,
    last: Mutex<Option<Instant>>,
}

impl Default for PollClock {
    fn default() -> Self {
        Self {
            created: Instant::now(),
            last: Mutex::new(None),
        }
    }
}

impl PollClock {
    /// Records a poll now.
    pub fn touch(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// How long ago the loop last polled; before its first poll, how long ago the clock was made.
    pub fn since_last_poll(&self) -> Duration {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.unwrap_or(self.created).elapsed()
    }

    /// Whether the loop has polled at all.
    pub fn has_polled(&self) -> bool {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// What the server reports from.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The metrics; their last poll is the liveness signal.
    pub metrics: Metrics,
    /// The readiness set by the daemon.
    pub readiness: Arc<Readiness>,
    /// Liveness fails when the poll loop has not polled for this long.
    pub liveness_window: Duration,
    /// Notify systemd when `NOTIFY_SOCKET` is set.
    pub sd_notify: bool,
}

impl HttpState {
    /// Ok(how long ago the loop polled), or Err(why ferryd is not live).
    pub fn liveness(&self) -> Result<Duration, String> {
        let since = self.metrics.poll_clock().since_last_poll();
        if self.readiness.is_draining() || since <= self.liveness_window {
            return Ok(since);
        }
        let what = if self.metrics.poll_clock().has_polled() {
            "the queue poll loop last polled"
        } else {
            "the queue poll loop has not polled since start-up"
        };
        Err(format!(
            "{what} {}s ago (liveness window {}s)",
            since.as_secs(),
            self.liveness_window.as_secs()
        ))
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on a bound listener until `stop` turns true (or its
/// sender is dropped). With `state.sd_notify` and `NOTIFY_SOCKET` set, also tells systemd `READY=1`
/// once the poll loop runs, and pings its watchdog while liveness holds.
pub async fn serve_on(
    listener: TcpListener,
    state: HttpState,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("the metrics listener has no address")?;
    info!(addr = %addr, "serving /metrics, /healthz and /readyz");
    let notifier = spawn_sd_notify(&state, stop.clone());
    let app = router(state);
    let mut stop = stop;
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .context("the metrics server failed");
    if let Some(mut n) = notifier {
        // Let it say STOPPING=1 when stopped; end it if the server failed instead.
        if tokio::time::timeout(Duration::from_secs(1), &mut n)
            .await
            .is_err()
        {
            n.abort();
        }
    }
    served
}

/// Starts the systemd notifier when `state.sd_notify` is set and `NOTIFY_SOCKET` is: `READY=1` after
/// the first poll, watchdog pings while live, `STOPPING=1` when `stop` turns true. [`serve_on`] calls it;
/// call it yourself only when the HTTP server is disabled.
pub fn spawn_sd_notify(
    state: &HttpState,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !state.sd_notify || std::env::var_os("NOTIFY_SOCKET").is_none() {
        return None;
    }
    let send = |s: &[NotifyState]| {
        if let Err(e) = sd_notify::notify(s) {
            warn!(error = %e, "cannot notify systemd");
        }
    };
    let watchdog = sd_notify::watchdog_enabled();
    Some(tokio::spawn(sd_notify_loop(
        state.clone(),
        watchdog,
        stop,
        send,
    )))
}

/// The routes.
fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.metrics.encode()).into_response()
}

async fn healthz(State(s): State<HttpState>) -> Response {
    match s.liveness() {
        Ok(since) => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "last_poll_secs_ago": since.as_secs() })),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "reason": reason })),
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<HttpState>) -> Response {
    let (ready, reason) = s.readiness.get();
    let (code, status) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (code, Json(json!({ "status": status, "reason": reason }))).into_response()
}

/// How often the notifier looks for the poll loop's first poll.
const READY_CHECK: Duration = Duration::from_millis(250);

/// Sends `READY=1` once the poll loop has polled, then `WATCHDOG=1` every half `watchdog` while
/// liveness holds, and `STOPPING=1` when `stop` turns true.
async fn sd_notify_loop(
    state: HttpState,
    watchdog: Option<Duration>,
    mut stop: watch::Receiver<bool>,
    send: impl Fn(&[NotifyState]),
) {
    let mut ready = false;
    let ping = watchdog.map(|w| (w / 2).max(Duration::from_millis(100)));
    loop {
        if *stop.borrow_and_update() {
            send(&[NotifyState::Stopping]);
            return;
        }
        if !ready && state.metrics.poll_clock().has_polled() {
            send(&[NotifyState::Ready]);
            info!("told systemd READY=1");
            ready = true;
        }
        if ready && ping.is_some() {
            match state.liveness() {
                Ok(_) => send(&[NotifyState::Watchdog]),
                // No ping: systemd restarts a daemon whose poll loop is stuck.
                Err(reason) => warn!(reason = %reason, "not live; withholding the watchdog ping"),
            }
        }
        let wait = match ping {
            Some(p) if ready => p,
            _ => READY_CHECK,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = stop.changed() => if changed.is_err() {
                debug!("the stop signal is gone; the systemd notifier ends");
                return;
            },
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
