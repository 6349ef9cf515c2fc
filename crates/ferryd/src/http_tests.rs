//! Tests of the health server: real HTTP on a loopback port, and the systemd notifier on paused time.

use std::sync::Mutex;

use ferry_hook_listener::ListenerObserver;

use super::*;

fn state(window: Duration) -> HttpState {
    HttpState {
        metrics: Metrics::new(),
        readiness: Arc::new(Readiness::default()),
        liveness_window: window,
        sd_notify: false,
    }
}

async fn start(
    state: HttpState,
) -> (
    String,
    watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(serve_on(listener, state, rx));
    (base, tx, task)
}

async fn get(url: &str) -> (u16, String, serde_json::Value) {
    let resp = reqwest::get(url).await.expect("request");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.text().await.expect("body");
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, ctype, json)
}

#[tokio::test(start_paused = true)]
async fn liveness_follows_the_poll_loop() {
    let st = state(Duration::from_millis(300));
    let (metrics, readiness) = (st.metrics.clone(), st.readiness.clone());

    // Live at start-up (within the window), then not, until the loop polls.
    assert!(st.liveness().is_ok());
    tokio::time::advance(Duration::from_millis(400)).await;
    let reason = st.liveness().expect_err("not live");
    assert!(reason.contains("has not polled since start-up"), "{reason}");
    metrics.on_poll();
    assert!(st.liveness().is_ok());
    tokio::time::advance(Duration::from_millis(400)).await;
    let reason = st.liveness().expect_err("not live");
    assert!(reason.contains("last polled"), "{reason}");

    // Draining: live although the loop no longer polls.
    readiness.set_draining();
    assert!(st.liveness().is_ok());
}

#[tokio::test]
async fn endpoints_report_metrics_liveness_and_readiness() {
    // A window no request can outlast on a slow machine: liveness timing is tested on paused time above.
    let st = state(Duration::from_secs(3600));
    let (metrics, readiness) = (st.metrics.clone(), st.readiness.clone());
    let (base, stop, task) = start(st).await;

    let (code, ctype, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let text = body.as_str().expect("text");
    assert!(text.contains("# TYPE ferry_hooks counter"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));

    metrics.on_poll();
    let (code, _, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));

    // Not ready until a check passes; the reason of a failed check is shown.
    let (code, _, body) = get(&format!("{base}/readyz")).await;
    assert_eq!((code, body["status"].as_str()), (503, Some("not_ready")));
    readiness.set_ready(true, "queue reachable");
    let (code, _, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (200, Some("queue reachable"))
    );
    readiness.set_ready(false, "GetQueueAttributes: AccessDenied");
    let (code, _, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(code, 503);
    assert_eq!(body["reason"], "GetQueueAttributes: AccessDenied");

    // Draining: not ready, but live.
    readiness.set_ready(true, "queue reachable");
    readiness.set_draining();
    assert_eq!(get(&format!("{base}/readyz")).await.0, 503);
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(get(&format!("{base}/nope")).await.0, 404);

    stop.send(true).expect("server running");
    task.await.expect("joined").expect("clean stop");
}

#[tokio::test]
async fn healthz_answers_503_with_the_reason_when_not_live() {
    let st = state(Duration::ZERO);
    let (base, stop, task) = start(st).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (code, _, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(code, 503);
    let reason = body["reason"].as_str().expect("a reason");
    assert!(reason.contains("has not polled since start-up"), "{reason}");
    stop.send(true).expect("server running");
    task.await.expect("joined").expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn systemd_ready_after_first_poll_and_watchdog_only_while_live() {
    let st = state(Duration::from_secs(90));
    let metrics = st.metrics.clone();
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = sent.clone();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(sd_notify_loop(
        st,
        Some(Duration::from_secs(20)),
        rx,
        move |s: &[NotifyState]| {
            let line: Vec<String> = s.iter().map(ToString::to_string).collect();
            log.lock().expect("lock").push(line.join(","));
        },
    ));
    let seen = || sent.lock().expect("lock").clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(seen().is_empty(), "not ready before the loop polls");

    metrics.on_poll();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen(), ["READY=1", "WATCHDOG=1"]);
    // Pings every 10 s (half of WATCHDOG_USEC) while the loop keeps polling.
    for _ in 0..3 {
        metrics.on_poll();
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let pings = seen().iter().filter(|s| *s == "WATCHDOG=1").count();
    assert_eq!(pings, 4, "{:?}", seen());

    // The loop stops polling: once the liveness window passes, no more pings.
    tokio::time::sleep(Duration::from_secs(200)).await;
    let pings = seen().iter().filter(|s| *s == "WATCHDOG=1").count();
    assert!(pings <= 4 + 9, "pings only within the window: {pings}");
    let before = pings;
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(seen().iter().filter(|s| *s == "WATCHDOG=1").count(), before);

    stop.send(true).expect("running");
    task.await.expect("joined");
    assert_eq!(seen().last().map(String::as_str), Some("STOPPING=1"));
}

#[test]
fn config_defaults_and_validation() {
    let c: MetricsConfig = toml::from_str("").expect("all defaults");
    assert_eq!(c, MetricsConfig::default());
    assert_eq!(c.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(c.liveness_window(), Duration::from_secs(90));
    assert_eq!(c.validate(), Ok(()));
    let c: MetricsConfig =
        toml::from_str("listen = \"0.0.0.0:9100\"\nliveness_window_secs = 10").expect("parses");
    assert!(c.validate().is_err());
    assert!(toml::from_str::<MetricsConfig>("bogus = true").is_err());
}
