"""Elastic IP rules ferry relies on: reassociation and disassociation on termination."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import error_code
from test_ebs import run


def test_reassociation_needs_allow_flag(ec2):
    a, b = run(ec2, "us-east-1a"), run(ec2, "us-east-1b")
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=alloc, InstanceId=a)
    with pytest.raises(ClientError) as exc:
        ec2.associate_address(AllocationId=alloc, InstanceId=b, AllowReassociation=False)
    assert error_code(exc) == "Resource.AlreadyAssociated"
    ec2.associate_address(AllocationId=alloc, InstanceId=b, AllowReassociation=True)
    [addr] = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    assert addr["InstanceId"] == b


def test_termination_disassociates(ec2):
    a = run(ec2)
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=alloc, InstanceId=a)
    ec2.terminate_instances(InstanceIds=[a])
    [addr] = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    assert not addr.get("InstanceId") and not addr.get("AssociationId")  # moto: "" instead of absent
