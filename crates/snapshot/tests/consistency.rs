//! Launch executor tests on the fakes, paused time: EC2's eventual consistency is "not yet", never "gone".
//! Auto Scaling has the launching instance (and a claimant's) before EC2's `DescribeInstances` shows it.

mod common;

use std::time::Duration;

use common::*;
use ferry_snapshot::launch::VISIBILITY_GRACE;
use ferry_state_machine::{tags, LifecycleResult, Transition};
use tokio::time::Instant;

/// A launch hook of `instance` that Auto Scaling has in `Pending:Wait`, which EC2 does not show yet.
fn unseen_launch(w: &World, instance: &str, token: &str) -> ferry_state_machine::HookEvent {
    w.asg_instance(instance, AZ_B, "Pending:Wait");
    w.asg.open_action(GROUP, "launch", instance, token);
    hook(instance, token, Transition::Launching)
}

#[tokio::test(start_paused = true)]
async fn a_launching_instance_ec2_does_not_show_yet_is_waited_for_then_served() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let hook = unseen_launch(&w, "i-new", "tok-launch-1");
    let lag = Duration::from_secs(20);

    let work = w.launch_work();
    let began = Instant::now();
    let (out, ()) = tokio::join!(w.run(&hook, &work), async {
        tokio::time::sleep(lag).await;
        assert_eq!(
            w.ec2.count("CreateVolume"),
            0,
            "nothing done for an instance EC2 does not show"
        );
        w.ec2.add_instance("i-new", AZ_B);
    });

    assert_completed(&out, LifecycleResult::Continue);
    assert!(
        began.elapsed() >= lag,
        "finished after {:?}",
        began.elapsed()
    );
    let vols = w.volumes_of("data");
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_attached(&vols[0], "i-new", "/dev/sdf");
    assert_eq!(w.eip_target().as_deref(), Some("i-new"));
    assert_eq!(w.results_of("i-new"), [LifecycleResult::Continue]);
}

#[tokio::test(start_paused = true)]
async fn an_instance_ec2_never_shows_is_abandoned_after_the_grace_with_nothing_done() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    let hook = unseen_launch(&w, "i-new", "tok-launch-2");

    let began = Instant::now();
    let out = w.run(&hook, &w.launch_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Abandon);
    assert!(reason.contains("does not exist in EC2 after"), "{reason}");
    assert!(
        began.elapsed() >= VISIBILITY_GRACE,
        "abandoned after {:?}",
        began.elapsed()
    );
    assert!(
        w.asg.heartbeats("tok-launch-2") >= 1,
        "heartbeats while waiting"
    );
    for op in [
        "CreateVolume",
        "AttachVolume",
        "CreateTags",
        "AssociateAddress",
    ] {
        assert_eq!(w.ec2.count(op), 0, "{op}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_claimant_ec2_does_not_show_but_auto_scaling_has_is_never_taken_as_fenced() {
    let w = World::new(one_volume());
    w.ec2.set_timings(timings());
    // Another launch created generation 6 in this AZ moments ago; EC2 does not show its instance yet.
    let theirs = w
        .ec2
        .add_volume(AZ_B, 20, &ledger("data", 6, &launch_key("i-other")));
    w.asg_instance("i-other", AZ_B, "Pending:Wait");
    let hook = w.launch_hook("i-new", AZ_B, "tok-launch-3");
    w.ec2.clear_calls();

    let out = w.run(&hook, &w.launch_work()).await;

    let reason = assert_completed(&out, LifecycleResult::Abandon);
    assert!(reason.contains("i-other"), "{reason}");
    let v = w.ec2.volume(&theirs).unwrap();
    assert_eq!(
        v.tag(tags::HOOK),
        Some(launch_key("i-other").as_str()),
        "not claimed"
    );
    assert!(v.attachment.is_none(), "{v:?}");
    for op in [
        "CreateVolume",
        "AttachVolume",
        "CreateTags",
        "StopInstances",
        "AssociateAddress",
    ] {
        assert_eq!(w.ec2.count(op), 0, "{op}");
    }
    assert_eq!(w.volumes_of("data").len(), 1, "no second copy");
}
