//! Tests of the loader: coalescing, chunking, freshness, errors and pace, under paused time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// The keys of every call made, in order.
type CallLog = Arc<Mutex<Vec<Vec<u64>>>>;

/// A loader over a counter: each call records its keys and answers `key * 1000 + call number`.
fn counting(cfg: LoaderConfig, latency: Duration) -> (Arc<Loader<u64, u64>>, CallLog) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let n = Arc::new(AtomicU64::new(0));
    let loader = Loader::spawn("test:Describe", cfg, move |keys: Vec<u64>| {
        let (seen, n) = (seen.clone(), n.clone());
        async move {
            let call = n.fetch_add(1, Ordering::SeqCst) + 1;
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(keys.clone());
            tokio::time::sleep(latency).await;
            Ok(keys.iter().map(|k| k * 1000 + call).collect())
        }
    });
    (Arc::new(loader), calls)
}

fn calls_of(c: &Mutex<Vec<Vec<u64>>>) -> Vec<Vec<u64>> {
    c.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_share_one_call_and_each_gets_its_own_answer() {
    let (loader, calls) = counting(LoaderConfig::default(), Duration::from_millis(50));
    let mut tasks = Vec::new();
    for k in 0..100u64 {
        let l = loader.clone();
        // Every key twice: duplicates are asked once.
        tasks.push(tokio::spawn(async move { (k % 50, l.load(k % 50).await) }));
    }
    for t in tasks {
        let (k, got) = t.await.unwrap_or((0, Err(StepError::retry("t", "join"))));
        assert_eq!(got.ok(), Some(k * 1000 + 1));
    }
    let made = calls_of(&calls);
    assert_eq!(made.len(), 1, "one call for 100 requests: {made:?}");
    assert_eq!(
        made[0],
        (0..50).collect::<Vec<_>>(),
        "distinct keys, sorted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_round_makes_one_call_per_max_batch_keys_all_at_once() {
    // A pace of one round per 10 s: the round's three calls still go together, not one per token.
    let cfg = LoaderConfig {
        max_batch: 200,
        pace: Limit::new(1, 0.1),
    };
    let (loader, calls) = counting(cfg, Duration::ZERO);
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..450u64)
        .map(|k| {
            let l = loader.clone();
            tokio::spawn(async move { l.load(k).await.is_ok() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap_or(false));
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    let sizes: Vec<usize> = calls_of(&calls).iter().map(Vec::len).collect();
    assert_eq!(sizes, [200, 200, 50]);
}

#[tokio::test(start_paused = true)]
async fn a_request_made_during_a_call_waits_for_the_next_round() {
    let (loader, calls) = counting(LoaderConfig::default(), Duration::from_secs(1));
    let early = {
        let l = loader.clone();
        tokio::spawn(async move { l.load(7).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The first call is in flight and was sent before this request: its answer would be stale for it.
    let late = loader.load(7).await;
    assert_eq!(
        late.ok(),
        Some(7002),
        "answered by a call made after the request"
    );
    let early = early.await.ok().and_then(Result::ok);
    assert_eq!(early, Some(7001));
    assert_eq!(calls_of(&calls).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_error_reaches_every_waiter_of_its_call() {
    let loader: Arc<Loader<u32, u32>> = Arc::new(Loader::spawn(
        "test:Describe",
        LoaderConfig::default(),
        |_keys: Vec<u32>| async {
            Err(StepError::from_aws(
                "test:Describe",
                Some("RequestLimitExceeded"),
                None,
                Some(503),
            ))
        },
    ));
    let tasks: Vec<_> = (0..5u32)
        .map(|k| {
            let l = loader.clone();
            tokio::spawn(async move { l.load(k).await })
        })
        .collect();
    for t in tasks {
        let e = t.await.ok().and_then(Result::err);
        assert!(e.is_some_and(|e| e.is_throttle()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_wrong_sized_answer_is_an_error_not_a_misattributed_value() {
    let loader: Loader<u32, u32> = Loader::spawn(
        "test:Describe",
        LoaderConfig::default(),
        |_keys: Vec<u32>| async { Ok(vec![1]) },
    );
    let (a, b) = tokio::join!(loader.load(1), loader.load(2));
    assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
}

#[tokio::test(start_paused = true)]
async fn the_pace_bounds_rounds_a_second_however_many_wait() {
    let cfg = LoaderConfig {
        max_batch: 200,
        pace: Limit::new(2, 1.0),
    };
    let (loader, calls) = counting(cfg, Duration::ZERO);
    let start = tokio::time::Instant::now();
    // 20 hooks each polling back to back for 10 s of virtual time.
    let tasks: Vec<_> = (0..20u64)
        .map(|k| {
            let l = loader.clone();
            tokio::spawn(async move {
                let mut answers = 0;
                while start.elapsed() < Duration::from_secs(10) {
                    if l.load(k).await.is_ok() {
                        answers += 1;
                    }
                }
                answers
            })
        })
        .collect();
    let mut answered = 0;
    for t in tasks {
        answered += t.await.unwrap_or(0);
    }
    let made = calls_of(&calls).len();
    // The burst of 2, then one a second: at most 12 calls in 10 s (plus the round in flight at the end).
    assert!(made <= 13, "{made} calls");
    assert!(
        answered >= 20 * 10,
        "every hook was answered every round: {answered}"
    );
}
