//! Tests of the hooks cache and its background refresh, under paused time.

use super::*;
use crate::batched::BatchedActions;
use crate::fake::FakeLifecycleActions;
use crate::loader::LoaderConfig;
use crate::model::LifecycleResult;
use crate::Transition;

fn spec(name: &str, t: Transition, timeout_s: u64) -> HookSpec {
    HookSpec {
        name: name.into(),
        transition: Some(t),
        heartbeat_timeout: Duration::from_secs(timeout_s),
        default_result: LifecycleResult::Abandon,
        target_arn: None,
    }
}

fn hook_reads(fake: &FakeLifecycleActions) -> usize {
    fake.calls()
        .iter()
        .filter(|c| *c == "DescribeLifecycleHooks")
        .count()
}

#[test]
fn the_plan_reads_each_group_once_per_interval_but_never_faster_than_one_a_second() {
    let s = Duration::from_secs;
    let few = RefreshPlan::new(s(900), 10);
    assert_eq!(
        few,
        Some(RefreshPlan {
            spacing: s(90),
            cycle: s(900)
        })
    );
    assert_eq!(few.map(|p| p.ttl()), Some(s(1800)));
    // 10,000 groups in 900 s would be 11 reads a second: the plan slows to one a second.
    let many = RefreshPlan::new(s(900), 10_000);
    assert_eq!(many.map(|p| (p.spacing, p.cycle)), Some((s(1), s(10_000))));
    assert_eq!(RefreshPlan::new(Duration::ZERO, 10), None);
    assert_eq!(RefreshPlan::new(s(900), 0), None);
}

#[tokio::test(start_paused = true)]
async fn a_refreshed_group_answers_hook_checks_with_no_call_long_after_the_short_ttl() {
    let fake = FakeLifecycleActions::default();
    for g in ["a", "b", "c"] {
        fake.put_hook(g, spec("launch", Transition::Launching, 300));
    }
    let groups: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let plan =
        RefreshPlan::new(Duration::from_secs(30), groups.len()).unwrap_or_else(|| panic!("a plan"));
    let cache = Arc::new(HookCache::new(plan.ttl()));
    let asg: Arc<dyn LifecycleActions> = Arc::new(fake.clone());
    let batched =
        BatchedActions::new(asg.clone(), LoaderConfig::default()).with_hook_cache(cache.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(refresh(asg, cache, groups, plan, stop_rx));

    // One cycle (30 s) reads every group once.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(hook_reads(&fake), 3, "{:?}", fake.calls());
    // Long past HOOKS_TTL, a check is answered from the refreshed cache.
    tokio::time::sleep(HOOKS_TTL * 3).await;
    let reads = hook_reads(&fake);
    let got = batched.describe_hook("b", "launch").await;
    assert_eq!(
        got.ok().flatten().map(|h| h.name).as_deref(),
        Some("launch")
    );
    assert_eq!(hook_reads(&fake), reads, "the check made no call");
    // The refresh keeps going at its spacing (10 s a group): six more cycles in 180 s.
    assert_eq!(reads, 3 + 18, "{:?}", fake.calls());

    // An operator's edit is seen within a cycle.
    fake.put_hook("c", spec("launch", Transition::Launching, 60));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let got = batched.describe_hook("c", "launch").await;
    assert_eq!(
        got.ok().flatten().map(|h| h.heartbeat_timeout),
        Some(Duration::from_secs(60))
    );

    let _ = stop_tx.send(true);
    assert!(task.await.is_ok(), "the refresh ends on shutdown");
}

#[tokio::test(start_paused = true)]
async fn an_entry_expires_after_its_ttl_and_is_read_again_on_demand() {
    let fake = FakeLifecycleActions::default();
    fake.put_hook("a", spec("terminate", Transition::Terminating, 300));
    let cache = Arc::new(HookCache::new(Duration::from_secs(100)));
    let batched = BatchedActions::new(Arc::new(fake.clone()), LoaderConfig::default())
        .with_hook_cache(cache.clone());
    assert!(batched.describe_hooks("a").await.is_ok());
    tokio::time::sleep(Duration::from_secs(99)).await;
    assert!(cache.get("a").is_some());
    assert!(batched.describe_hooks("a").await.is_ok());
    assert_eq!(hook_reads(&fake), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cache.get("a"), None);
    assert!(batched.describe_hooks("a").await.is_ok());
    assert_eq!(hook_reads(&fake), 2);
}
