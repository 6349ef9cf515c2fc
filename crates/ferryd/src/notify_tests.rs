//! Tests of the webhook: secrets stay out of `Debug` and logs; events reach a local receiver in order.

use std::io::Write;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use tokio::net::TcpListener;

use super::*;

const SECRET: &str = "Bearer s3cr3t-t0ken";

fn hook(transition: Transition) -> HookEvent {
    HookEvent {
        hook_name: "h".into(),
        group: "db".into(),
        instance_id: "i-new".into(),
        token: "tok-1".into(),
        transition,
        time: None,
        origin: None,
        destination: None,
        action: None,
        metadata: None,
    }
}

fn config(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        headers: BTreeMap::from([("Authorization".to_string(), SECRET.to_string())]),
        timeout_secs: 5,
        events: all_events(),
        queue_size: 16,
    }
}

type Seen = mpsc::UnboundedSender<(Option<String>, EventBody)>;

/// A receiver on a loopback port that answers `status` and reports each post.
async fn receiver(
    status: StatusCode,
) -> (String, mpsc::UnboundedReceiver<(Option<String>, EventBody)>) {
    async fn take(
        State((tx, status)): State<(Seen, StatusCode)>,
        headers: AxumHeaders,
        Json(body): Json<EventBody>,
    ) -> StatusCode {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let _ = tx.send((auth, body));
        status
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hook", post(take))
        .with_state((tx, status));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

#[test]
fn debug_and_redacted_urls_hide_secrets() {
    let cfg = config(
        "https://ops:pa55@hooks.example.com:8443/services/T0/B0/XyZsecret?key=q5ecret".into(),
    );
    let shown = format!("{cfg:?}");
    for secret in ["s3cr3t", "pa55", "q5ecret", "XyZsecret", "ops:"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(
        shown.contains("Authorization") && shown.contains("hooks.example.com:8443"),
        "{shown}"
    );
    assert_eq!(redact_url("http://10.0.0.1/"), "http://10.0.0.1/");
    assert_eq!(redact_url("not a url"), "<unparseable url>");
    assert_eq!(
        redact_url("https://u:p@h.example/x?y=1"),
        "https://<redacted>@h.example/<redacted>"
    );
}

#[test]
fn config_from_toml_with_defaults_and_validation() {
    let cfg: WebhookConfig = toml::from_str(r#"url = "https://h.example/x""#).expect("parses");
    assert_eq!((cfg.timeout_secs, cfg.queue_size), (10, 256));
    assert_eq!(cfg.events, WebhookEvent::ALL.to_vec());
    assert_eq!(cfg.validate(), Ok(()));
    let events: WebhookConfig = toml::from_str(
        "url = \"https://h.example\"\nevents = [\"failover_abandoned\", \"hook_error\"]",
    )
    .expect("parses");
    assert_eq!(
        events.events,
        [WebhookEvent::FailoverAbandoned, WebhookEvent::HookError]
    );
    assert!(toml::from_str::<WebhookConfig>("url = \"https://h\"\nbogus = 1").is_err());
    assert!(toml::from_str::<WebhookConfig>("url = \"https://h\"\nevents = [\"nope\"]").is_err());
    let bad_url = WebhookConfig {
        url: "ftp://h/x".into(),
        ..cfg.clone()
    };
    assert!(bad_url.validate().is_err());
    for (url, ok) in [
        ("http://hooks.example.com/x", false),
        ("http://10.0.0.1/x", false),
        ("http://127.0.0.1:8080/x", true),
        ("http://[::1]/x", true),
        ("http://localhost/x", true),
        ("https://hooks.example.com/x", true),
    ] {
        let c = WebhookConfig {
            url: url.into(),
            ..cfg.clone()
        };
        assert_eq!(c.validate().is_ok(), ok, "{url}: {:?}", c.validate());
    }
    let clear = WebhookConfig {
        url: "http://hooks.example.com/T0/s3cret".into(),
        ..cfg.clone()
    };
    let err = clear.validate().expect_err("plain http");
    assert!(
        err.starts_with("webhook.url:") && err.contains("https") && !err.contains("s3cret"),
        "{err}"
    );
    let mut bad_header = cfg.clone();
    bad_header
        .headers
        .insert("X-Token".into(), "line\nbreak secret".into());
    let err = bad_header.validate().expect_err("invalid value");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn rfc3339_dates() {
    let at = |s| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
}

#[tokio::test]
async fn posts_lifecycle_events_in_order_with_headers() {
    let (url, mut seen) = receiver(StatusCode::OK).await;
    let metrics = Metrics::new();
    let (n, worker) = Notifier::spawn(&config(url), Some(metrics.clone())).expect("spawns");
    let launch = hook(Transition::Launching);
    n.on_progress(&launch, &Progress::Acted("created vol-1".into()));
    n.on_progress(&launch, &Progress::Waiting("vol-1 creating".into()));
    n.on_error(&launch, &StepError::retry("ec2:AttachVolume", "throttled"));
    n.on_error(
        &launch,
        &StepError::permanent("ec2:AttachVolume", "zone mismatch"),
    );
    n.on_progress(
        &hook(Transition::Terminating),
        &Progress::Acted("snapshot".into()),
    );
    let done = HookOutcome::Completed {
        result: LifecycleResult::Continue,
        reason: "attached".into(),
    };
    n.on_end(&launch, &done, Duration::from_secs(3));
    n.on_end(
        &hook(Transition::Terminating),
        &done,
        Duration::from_secs(3),
    );
    drop(n);
    worker
        .await
        .expect("the worker ends when the notifier is dropped");

    let mut got = Vec::new();
    while let Ok(item) = seen.try_recv() {
        got.push(item);
    }
    let kinds: Vec<WebhookEvent> = got.iter().map(|(_, b)| b.event).collect();
    assert_eq!(
        kinds,
        [
            WebhookEvent::FailoverStarted,
            WebhookEvent::HookError,
            WebhookEvent::FailoverCompleted
        ]
    );
    assert!(got.iter().all(|(auth, _)| auth.as_deref() == Some(SECRET)));
    let (_, body) = &got[1];
    assert_eq!(
        (body.group.as_str(), body.instance_id.as_str()),
        ("db", "i-new")
    );
    assert_eq!(
        (body.transition.as_str(), body.token.as_str()),
        ("launch", "tok-1")
    );
    assert_eq!(
        body.reason.as_deref(),
        Some("ec2:AttachVolume: zone mismatch")
    );
    assert!(
        body.time.ends_with('Z') && body.time.len() == 20,
        "{}",
        body.time
    );
    let text = metrics.encode();
    assert!(
        text.contains("ferry_webhook_events_total{event=\"failover_started\",outcome=\"sent\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let (url, _seen) = receiver(StatusCode::OK).await;
    let metrics = Metrics::new();
    let mut cfg = config(url);
    cfg.queue_size = 1;
    cfg.events = vec![WebhookEvent::FailoverAbandoned];
    let (n, worker) = Notifier::spawn(&cfg, Some(metrics.clone())).expect("spawns");
    let abandoned = HookOutcome::Completed {
        result: LifecycleResult::Abandon,
        reason: "launch-before-terminate".into(),
    };
    // No await in between: the worker takes nothing before the queue fills.
    for _ in 0..4 {
        n.on_end(&hook(Transition::Launching), &abandoned, Duration::ZERO);
    }
    n.on_end(
        &hook(Transition::Launching),
        &HookOutcome::AlreadyEnded,
        Duration::ZERO,
    );
    drop(n);
    worker.await.expect("ends");
    let text = metrics.encode();
    assert!(
        text.contains("event=\"failover_abandoned\",outcome=\"dropped\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("event=\"failover_abandoned\",outcome=\"sent\"} 1"),
        "{text}"
    );
}

/// Collects log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failures_are_logged_without_secrets() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Refused (400: not retried), then unreachable (a port nobody listens on: retried, then given up).
    let (url, _seen) = receiver(StatusCode::BAD_REQUEST).await;
    let refused = url.replace("http://", "http://ops:pa55@") + "?key=q5ecret";
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let unreachable = format!("http://ops:pa55@127.0.0.1:{dead_port}/XyZsecret?key=q5ecret");
    let metrics = Metrics::new();
    for url in [refused, unreachable] {
        let (n, worker) = Notifier::spawn(&config(url), Some(metrics.clone())).expect("spawns");
        n.on_error(
            &hook(Transition::Launching),
            &StepError::permanent("x", "y"),
        );
        drop(n);
        worker.await.expect("ends");
    }
    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(text.contains("webhook refused the event"), "{text}");
    assert!(text.contains("cannot post the webhook event"), "{text}");
    for secret in ["s3cr3t", "pa55", "q5ecret", "XyZsecret"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(metrics
        .encode()
        .contains("event=\"hook_error\",outcome=\"failed\"} 2"));
}
