"""Warm pools: fill with hooks, stopped warm instances, entry into service, refill, reuse on scale-in, delete."""

from __future__ import annotations

from helpers import LAUNCHING, TERMINATING, complete, ec2_state, make_group, make_queue, put_hook, receive, states


def warm(asg, group="db"):
    return {i["InstanceId"]: i["LifecycleState"] for i in asg.describe_warm_pool(AutoScalingGroupName=group)["Instances"]}


def test_pool_fills_through_the_launch_hook_and_stops_its_instances(asg, ec2, sqs):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0, max_size=2)
    put_hook(asg, LAUNCHING, arn)
    asg.put_warm_pool(AutoScalingGroupName="db", MinSize=1, MaxGroupPreparedCapacity=1, PoolState="Stopped")

    [fill] = receive(sqs, url, 1)
    assert (fill["Origin"], fill["Destination"]) == ("EC2", "WarmPool")
    (iid, lifecycle_state), = warm(asg).items()
    assert fill["EC2InstanceId"] == iid and lifecycle_state == "Warmed:Pending:Wait"
    assert states(asg) == {}, "warm instances are not members"
    [seen] = asg.describe_auto_scaling_instances(InstanceIds=[iid])["AutoScalingInstances"]
    assert seen["LifecycleState"] == "Warmed:Pending:Wait"

    complete(asg, fill)
    assert warm(asg) == {iid: "Warmed:Stopped"}
    assert ec2_state(ec2, iid) == "stopped"
    config = asg.describe_warm_pool(AutoScalingGroupName="db")["WarmPoolConfiguration"]
    assert (config["MinSize"], config["PoolState"]) == (1, "Stopped")


def test_a_warm_instance_enters_service_started_with_origin_warm_pool_and_the_pool_refills(asg, ec2, sqs):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0, max_size=2)
    put_hook(asg, LAUNCHING, arn)
    asg.put_warm_pool(AutoScalingGroupName="db", MinSize=1, MaxGroupPreparedCapacity=1)
    [fill] = receive(sqs, url, 1)
    complete(asg, fill)
    (iid, _), = warm(asg).items()

    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)

    entry, refill = receive(sqs, url, 2)
    assert (entry["EC2InstanceId"], entry["Origin"], entry["Destination"]) == (iid, "WarmPool", "AutoScalingGroup")
    assert states(asg) == {iid: "Pending:Wait"}
    assert ec2_state(ec2, iid) == "running"
    assert (refill["Origin"], refill["Destination"]) == ("EC2", "WarmPool")
    assert list(warm(asg).values()) == ["Warmed:Pending:Wait"]
    complete(asg, entry)
    assert states(asg) == {iid: "InService"}


def test_scale_in_with_reuse_returns_the_instance_through_the_terminate_hook(asg, ec2, sqs):
    url, arn = make_queue(sqs)
    make_group(asg, desired=1, max_size=1)
    put_hook(asg, TERMINATING, arn)
    asg.put_warm_pool(AutoScalingGroupName="db", MinSize=0, InstanceReusePolicy={"ReuseOnScaleIn": True})
    (iid, _), = states(asg).items()

    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=0)

    [back] = receive(sqs, url, 1)
    assert back["LifecycleTransition"] == TERMINATING
    assert (back["Origin"], back["Destination"]) == ("AutoScalingGroup", "WarmPool")
    assert warm(asg) == {iid: "Warmed:Pending:Wait"} and states(asg) == {}
    assert ec2_state(ec2, iid) == "running", "still running while its hook waits"
    complete(asg, back)
    assert warm(asg) == {iid: "Warmed:Stopped"}
    assert ec2_state(ec2, iid) == "stopped", "stopped, not terminated"


def test_an_abandoned_fill_is_terminated_and_replaced(asg, ec2, sqs):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0, max_size=1)
    put_hook(asg, LAUNCHING, arn)
    asg.put_warm_pool(AutoScalingGroupName="db", MinSize=1)
    [fill] = receive(sqs, url, 1)

    complete(asg, fill, "ABANDON")

    assert ec2_state(ec2, fill["EC2InstanceId"]) == "terminated"
    [again] = receive(sqs, url, 1)
    assert again["EC2InstanceId"] != fill["EC2InstanceId"]


def test_delete_ends_warm_instances_through_the_terminate_hook_then_the_pool(asg, ec2, sqs):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0, max_size=1)
    put_hook(asg, TERMINATING, arn)
    asg.put_warm_pool(AutoScalingGroupName="db", MinSize=1)
    (iid, _), = warm(asg).items()

    asg.delete_warm_pool(AutoScalingGroupName="db")

    [gone] = receive(sqs, url, 1)
    assert (gone["Origin"], gone["Destination"]) == ("WarmPool", "EC2")
    assert warm(asg) == {iid: "Warmed:Terminating:Wait"}
    assert asg.describe_warm_pool(AutoScalingGroupName="db")["WarmPoolConfiguration"]["Status"] == "PendingDelete"
    complete(asg, gone)
    assert ec2_state(ec2, iid) == "terminated"
    assert "WarmPoolConfiguration" not in asg.describe_warm_pool(AutoScalingGroupName="db")


def test_pool_size_follows_max_prepared_capacity_less_desired(asg):
    make_group(asg, desired=1, max_size=4)
    asg.put_warm_pool(AutoScalingGroupName="db", MinSize=1)
    assert len(warm(asg)) == 3, "max size 4 less desired 1"
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=3)
    assert len(states(asg)) == 3 and len(warm(asg)) == 1, "MinSize holds"


def test_without_hooks_the_pool_is_ready_at_once(asg, ec2):
    make_group(asg, desired=0, max_size=3)
    asg.put_warm_pool(AutoScalingGroupName="db", MinSize=2, MaxGroupPreparedCapacity=2, PoolState="Running")
    assert sorted(warm(asg).values()) == ["Warmed:Running", "Warmed:Running"]
    assert all(ec2_state(ec2, i) == "running" for i in warm(asg))


def test_boot_times_hold_a_cold_launch_and_a_warm_start_in_pending(emulator, asg, sqs):
    url, arn = make_queue(sqs)
    emulator.ok("POST", "config", {"cold_boot_seconds": 0.6, "warm_start_seconds": 0.3})
    make_group(asg, desired=0, max_size=1)
    put_hook(asg, LAUNCHING, arn)
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    (cold, lifecycle_state), = states(asg).items()
    assert lifecycle_state == "Pending", "booting: no hook yet"
    [msg] = receive(sqs, url, 1, timeout=5)
    assert msg["EC2InstanceId"] == cold and states(asg) == {cold: "Pending:Wait"}
    complete(asg, msg)

    asg.put_warm_pool(AutoScalingGroupName="db", MinSize=1)
    [fill] = receive(sqs, url, 1)
    complete(asg, fill)
    asg.terminate_instance_in_auto_scaling_group(InstanceId=cold, ShouldDecrementDesiredCapacity=False)
    (warm_id, lifecycle_state), = states(asg).items()
    assert warm_id == fill["EC2InstanceId"] and lifecycle_state == "Pending", "starting out of the pool"
    entry = next(m for m in receive(sqs, url, 2, timeout=5) if m["Origin"] == "WarmPool")
    assert entry["EC2InstanceId"] == warm_id
