//! Tests of the metrics: what each observer call records, read back from the OpenMetrics text.

use super::*;

fn hook(transition: Transition, instance: &str) -> HookEvent {
    HookEvent {
        hook_name: "h".into(),
        group: "db".into(),
        instance_id: instance.into(),
        token: format!("tok-{instance}"),
        transition,
        time: None,
        origin: None,
        destination: None,
        action: None,
        metadata: None,
    }
}

/// The value of the sample whose line starts with `prefix` (metric name and labels).
fn value(m: &Metrics, prefix: &str) -> Option<f64> {
    let text = m.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix).filter(|rest| rest.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn done(result: LifecycleResult, reason: &str) -> HookOutcome {
    HookOutcome::Completed {
        result,
        reason: reason.into(),
    }
}

#[test]
fn names_and_types_are_registered() {
    let text = Metrics::new().encode();
    for line in [
        "# TYPE ferry_hooks counter",
        "# TYPE ferry_hook_duration_seconds histogram",
        "# TYPE ferry_hooks_in_flight gauge",
        "# TYPE ferry_snapshot_wait_seconds histogram",
        "# TYPE ferry_queue_receive_lag_seconds histogram",
        "# TYPE ferry_last_poll_timestamp_seconds gauge",
        "ferry_heartbeats_total 0",
        "ferry_hooks_total{transition=\"launch\",outcome=\"abandon\"} 0",
        "ferry_ignored_hooks_total{delete=\"true\"} 0",
        "ferry_messages_received_total 0",
        "ferry_messages_deleted_total 0",
        "ferry_parse_errors_total 0",
        "ferry_duplicate_deliveries_total 0",
        "ferry_receive_errors_total 0",
        "ferry_snapshot_wait_seconds_bucket{le=\"21600.0\"} 0",
        "# EOF",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn hook_lifecycle() {
    let m = Metrics::new();
    let term = hook(Transition::Terminating, "i-old");
    m.hook_started(&term);
    m.hook_started(&term);
    m.on_progress(&term, &Progress::Acted("snapshot".into()));
    assert_eq!(
        value(&m, "ferry_hooks_in_flight{transition=\"terminate\"}"),
        Some(1.0)
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    m.on_progress(
        &term,
        &Progress::Waiting("snapshots pending: snap-1".into()),
    );
    tokio::time::advance(Duration::from_secs(40)).await;
    m.on_progress(
        &term,
        &Progress::Waiting("snapshots pending: snap-1".into()),
    );
    m.on_heartbeat(&term);
    m.on_error(
        &term,
        &StepError::from_aws("ec2:X", Some("RequestLimitExceeded"), None, Some(400)),
    );
    m.on_error(&term, &StepError::permanent("ec2:Y", "no"));
    tokio::time::advance(Duration::from_secs(15)).await;
    m.on_end(
        &term,
        &done(LifecycleResult::Continue, "snapshots completed"),
        Duration::from_secs(60),
    );

    assert_eq!(
        value(&m, "ferry_hooks_in_flight{transition=\"terminate\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "ferry_hooks_total{transition=\"terminate\",outcome=\"continue\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "ferry_hook_duration_seconds_sum{transition=\"terminate\"}"
        ),
        Some(60.0)
    );
    assert_eq!(value(&m, "ferry_snapshot_wait_seconds_sum"), Some(55.0));
    assert_eq!(value(&m, "ferry_heartbeats_total"), Some(1.0));
    let throttled =
        "ferry_step_errors_total{transition=\"terminate\",disposition=\"retry\",throttle=\"true\"}";
    assert_eq!(value(&m, throttled), Some(1.0));
    let permanent = "ferry_step_errors_total{transition=\"terminate\",disposition=\"permanent\",throttle=\"false\"}";
    assert_eq!(value(&m, permanent), Some(1.0));
}

#[test]
fn interrupted_runs_and_abandons() {
    let m = Metrics::new();
    let launch = hook(Transition::Launching, "i-new");
    // A run that ends without hook_started leaves the gauge alone.
    m.on_end(
        &launch,
        &HookOutcome::Interrupted("shutdown".into()),
        Duration::from_secs(9),
    );
    assert_eq!(
        value(
            &m,
            "ferry_hooks_total{transition=\"launch\",outcome=\"interrupted\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "ferry_hook_duration_seconds_count{transition=\"launch\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "ferry_hooks_in_flight{transition=\"launch\"}"),
        Some(0.0)
    );

    m.on_error(&launch, &StepError::retry("ec2:Z", "later"));
    let why = "launch-before-terminate: i-old is still in service with vol-1 attached after 600s";
    m.on_end(
        &launch,
        &done(LifecycleResult::Abandon, why),
        Duration::from_secs(600),
    );
    m.on_end(
        &launch,
        &done(LifecycleResult::Abandon, "zone mismatch"),
        Duration::from_secs(1),
    );
    assert_eq!(
        value(
            &m,
            "ferry_launch_before_terminate_abandons_total{group=\"db\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "ferry_hooks_total{transition=\"launch\",outcome=\"abandon\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&m, "ferry_hooks_in_flight{transition=\"launch\"}"),
        Some(0.0)
    );
    assert_eq!(value(&m, "ferry_snapshot_wait_seconds_count"), Some(0.0));
}

#[test]
fn listener_events() {
    let m = Metrics::new();
    assert!(!m.poll_clock().has_polled());
    m.on_poll();
    assert!(
        m.poll_clock().has_polled() && m.poll_clock().since_last_poll() < Duration::from_secs(5)
    );
    assert!(value(&m, "ferry_last_poll_timestamp_seconds").is_some_and(|t| t > 1.6e9));
    m.on_received(3);
    m.on_received(0);
    m.on_receive_lag(Duration::from_millis(1500));
    m.on_receive_error(&StepError::retry("sqs:ReceiveMessage", "x"));
    m.on_duplicate();
    m.on_ignored(&hook(Transition::Launching, "i-1"), true);
    m.on_ignored(&hook(Transition::Launching, "i-2"), false);
    m.on_ignored(&hook(Transition::Launching, "i-3"), false);
    m.on_deleted();
    m.on_delete_error(&StepError::retry("sqs:DeleteMessage", "x"));
    m.record_aws_call("sqs", "ReceiveMessage", AwsCallOutcome::Ok);
    m.set_recovery_point_age("db", 0, "data", Duration::from_secs(42));
    assert_eq!(value(&m, "ferry_messages_received_total"), Some(3.0));
    assert_eq!(
        value(&m, "ferry_queue_receive_lag_seconds_bucket{le=\"2.5\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "ferry_queue_receive_lag_seconds_bucket{le=\"1.0\"}"),
        Some(0.0)
    );
    assert_eq!(value(&m, "ferry_receive_errors_total"), Some(1.0));
    assert_eq!(value(&m, "ferry_duplicate_deliveries_total"), Some(1.0));
    assert_eq!(
        value(&m, "ferry_ignored_hooks_total{delete=\"false\"}"),
        Some(2.0)
    );
    assert_eq!(value(&m, "ferry_messages_deleted_total"), Some(1.0));
    assert_eq!(value(&m, "ferry_delete_errors_total"), Some(1.0));
    assert_eq!(
        value(
            &m,
            "ferry_aws_calls_total{service=\"sqs\",operation=\"ReceiveMessage\",outcome=\"ok\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "ferry_recovery_point_age_seconds{group=\"db\",slot=\"0\",volume=\"data\"}"
        ),
        Some(42.0)
    );
}

/// The names ferryd registers: the `"ferry_…"` literals of the metrics modules (OpenMetrics adds the unit
/// and `_total`).
fn registered() -> Vec<String> {
    let sources = [
        include_str!("metrics.rs"),
        include_str!("metrics_dr.rs"),
        include_str!("metrics_lease.rs"),
    ];
    sources
        .iter()
        .flat_map(|src| src.split('"').skip(1).step_by(2))
        .filter(|lit| {
            lit.starts_with("ferry_") && lit.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

/// A registry with a sample in every family ferryd has, for [`exposed`]: a family has no `# TYPE` line
/// until its first label set.
fn populated() -> Metrics {
    use ferry_snapshot::SourceEvents;
    use ferry_state_machine::lease_keeper::LeaseEvents;
    let m = Metrics::new();
    let launch = hook(Transition::Launching, "i-new");
    m.on_error(&launch, &StepError::retry("ec2:X", "later"));
    for why in [
        "launch-before-terminate: i-old is still in service",
        UNREADABLE_DATA,
    ] {
        m.on_end(
            &launch,
            &done(LifecycleResult::Abandon, why),
            Duration::from_secs(1),
        );
    }
    m.hook_unverified(&launch, "wrong_state");
    m.hook_path(&launch, "failover");
    m.record_aws_call("ec2", "CreateVolume", AwsCallOutcome::Throttled);
    m.set_recovery_point_age("db", 0, "data", Duration::from_secs(1));
    m.set_recovery_point_interval("db", Duration::from_secs(300));
    m.recovery_point_taken("db");
    m.record_webhook("failover_started", "sent");
    m.source_unreachable("db", "i-new", "wait", Duration::from_secs(1));
    m.restored_latest("db", 0, "i-new", 60, &[]);
    m.acquired("db/0", true);
    m.lost("db/0");
    m
}

/// The sample names ferryd exposes, from the `# TYPE` lines of [`populated`]: a counter's name with
/// `_total`, a histogram's with `_bucket`, `_sum` and `_count`, any other as it is.
fn exposed() -> Vec<String> {
    let text = populated().encode();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .flat_map(|(name, kind)| match kind {
            "counter" => vec![format!("{name}_total")],
            "histogram" => ["_bucket", "_sum", "_count"]
                .map(|s| format!("{name}{s}"))
                .to_vec(),
            _ => vec![name.to_string()],
        })
        .collect()
}

/// The `ferry_…` words of PromQL text (a bare `ferry_`, as in `{__name__=~"ferry_.+"}`, is a prefix, not a
/// name), sorted and deduplicated.
fn ferry_names(promql: &str) -> Vec<&str> {
    let mut used: Vec<&str> = promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("ferry_") && *w != "ferry_")
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}

/// Asserts that every `ferry_…` name of `file`'s PromQL is one ferryd registers: a name the metrics modules
/// register (less the suffixes OpenMetrics adds), and one [`populated`] exposes with exactly that suffix.
fn assert_ferryd_exports(file: &str, promql: &str, at_least: usize) {
    let names = registered();
    let exposed = exposed();
    let used = ferry_names(promql);
    assert!(used.len() >= at_least, "{file}: {used:?}");
    for name in used {
        let mut base = name;
        for suffix in ["_total", "_bucket", "_sum", "_count", "_seconds"] {
            base = base.strip_suffix(suffix).unwrap_or(base);
        }
        assert!(
            names.iter().any(|n| n == name || n == base),
            "{file} uses {name}, which ferryd does not register: {names:?}"
        );
        assert!(
            exposed.iter().any(|n| n == name),
            "{file} uses {name}, which is not a name ferryd exposes (a new family? give it a sample in \
             populated()): {exposed:?}"
        );
    }
}

#[test]
fn every_metric_the_shipped_alert_rules_use_is_one_ferryd_exports() {
    let rules = include_str!("../../../deploy/prometheus/ferry-alerts.yaml");
    assert_ferryd_exports("deploy/prometheus/ferry-alerts.yaml", rules, 8);
    // The series of the rules' unit tests are ferryd's too.
    let tests = include_str!("../../../deploy/prometheus/ferry-alerts.test.yaml");
    assert_ferryd_exports("deploy/prometheus/ferry-alerts.test.yaml", tests, 8);
}

/// The PromQL of a Grafana dashboard: every panel's (rows' panels too) target expressions, and the
/// query variables' queries.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str();
                out.push(
                    expr.unwrap_or_else(|| panic!("a target without expr: {target}"))
                        .into(),
                );
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] == "query" {
            let q = &var["query"];
            out.extend(q.as_str().or_else(|| q["query"].as_str()).map(String::from));
        }
    }
    out
}

#[test]
fn every_metric_the_shipped_dashboard_queries_is_one_ferryd_exports() {
    let file = "deploy/grafana/ferry-dashboard.json";
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../deploy/grafana/ferry-dashboard.json"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 30, "{file}: {queries:?}");
    assert_ferryd_exports(file, &queries.join("\n"), 30);
    // The variables every query may use.
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        ["datasource", "group"].iter().all(|v| vars.contains(v)),
        "{vars:?}"
    );
}
