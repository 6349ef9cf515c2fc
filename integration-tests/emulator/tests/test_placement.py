"""Where the group's instances land: forced placement, AWS-style balancing, subnet consistency."""

from __future__ import annotations

from helpers import instances, make_group


def placement(ec2, iid):
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return inst["Placement"]["AvailabilityZone"], inst.get("SubnetId")


def subnet_az(ec2, subnet_id):
    return ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["AvailabilityZone"]


def test_balancing_fewest_first_in_list_order(asg, ec2):
    make_group(asg, desired=3, azs=["us-east-1b", "us-east-1a", "us-east-1c"])
    zones = sorted(i["AvailabilityZone"] for i in instances(asg))
    assert zones == ["us-east-1a", "us-east-1b", "us-east-1c"]
    for i in instances(asg):
        az, subnet = placement(ec2, i["InstanceId"])
        assert az == i["AvailabilityZone"]
        assert subnet and subnet_az(ec2, subnet) == az


def test_first_launch_goes_to_first_listed_az(asg):
    make_group(asg, desired=1, azs=["us-east-1c", "us-east-1a"])
    assert [i["AvailabilityZone"] for i in instances(asg)] == ["us-east-1c"]


def test_forced_placement_is_sticky_and_clearable(asg, ec2, emulator):
    emulator.ok("POST", "placement", {"group": "db", "az": "us-east-1b"})
    assert emulator.ok("GET", "placement") == {"placement": {"db": "us-east-1b"}}
    make_group(asg, desired=1)
    [first] = instances(asg)
    assert first["AvailabilityZone"] == "us-east-1b"
    asg.terminate_instance_in_auto_scaling_group(InstanceId=first["InstanceId"], ShouldDecrementDesiredCapacity=False)
    [second] = instances(asg)
    assert second["InstanceId"] != first["InstanceId"] and second["AvailabilityZone"] == "us-east-1b"
    emulator.ok("POST", "placement", {"group": "db", "az": "us-east-1c"})
    asg.terminate_instance_in_auto_scaling_group(InstanceId=second["InstanceId"], ShouldDecrementDesiredCapacity=False)
    [third] = instances(asg)
    assert third["AvailabilityZone"] == "us-east-1c"
    emulator.ok("POST", "placement", {"group": "db", "az": None})
    assert emulator.ok("GET", "placement") == {"placement": {}}


def test_vpc_zone_identifier_subnets(asg, ec2, emulator):
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {
        az: ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
        for az, cidr in [("us-east-1a", "10.0.1.0/24"), ("us-east-1b", "10.0.2.0/24")]
    }
    emulator.ok("POST", "placement", {"group": "db", "az": "us-east-1b"})
    make_group(asg, desired=1, subnets=[subnets["us-east-1a"], subnets["us-east-1b"]])
    [inst] = instances(asg)
    az, subnet = placement(ec2, inst["InstanceId"])
    assert (inst["AvailabilityZone"], az, subnet) == ("us-east-1b", "us-east-1b", subnets["us-east-1b"])
    emulator.ok("POST", "placement", {"group": "db", "az": None})
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=2)
    placed = {placement(ec2, i["InstanceId"]) for i in instances(asg)}
    assert placed == {("us-east-1a", subnets["us-east-1a"]), ("us-east-1b", subnets["us-east-1b"])}
