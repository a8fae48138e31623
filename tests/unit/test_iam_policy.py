"""docs/iam-policy.json confines its holder to their own gpubox resources.

The AWS suite proves that the policy allows every call the playbooks make (each test's calls are recorded and
checked against it). This reads the policy's statements and evaluates requests an attacker or a careless user
could make: none may touch, tag or launch with what is not the caller's own gpubox resource.
"""

import pytest

from support import iam

ME, ALICE = "AIDAME", "AIDAALICE"
ARN = "arn:aws:ec2:us-east-1:123456789012"
INSTANCE, VOLUME = f"{ARN}:instance/i-0123", f"{ARN}:volume/vol-0123"
GROUP, KEY = f"{ARN}:security-group/sg-0123", f"{ARN}:key-pair/key-0123"
IMAGE, SUBNET, VPC = "arn:aws:ec2:us-east-1::image/ami-0123", f"{ARN}:subnet/subnet-0123", f"{ARN}:vpc/vpc-0123"
SPOT_REQUEST, SNAPSHOT = f"{ARN}:spot-instances-request/sir-0123", "arn:aws:ec2:us-east-1::snapshot/snap-0123"


def tagged(kind, owner):
    """Context keys of a resource (ResourceTag) or a request (RequestTag) with gpubox's tags for owner."""
    tags = {"gpubox:managed-by": "gpubox", "gpubox:name": "lab"}
    if owner:
        tags["gpubox:owner"] = owner
    return {f"aws:{kind}/{k}": v for k, v in tags.items()}


def allowed(action, resource, **context):
    return iam.decide(action, resource, {"aws:userid": ME, **context})


MINE, ALICES, LEGACY = tagged("ResourceTag", ME), tagged("ResourceTag", ALICE), tagged("ResourceTag", None)


@pytest.mark.parametrize("action", ["ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances",
                                    "ec2:ModifyInstanceAttribute"])
def test_instances_change_only_when_they_are_your_own_gpubox_instances(action):
    assert allowed(action, INSTANCE, **MINE)
    for other in (ALICES, LEGACY, {}):
        assert not allowed(action, INSTANCE, **other)


@pytest.mark.parametrize("action, resource", [
    ("ec2:DeleteVolume", VOLUME), ("ec2:AttachVolume", VOLUME), ("ec2:AttachVolume", INSTANCE),
    ("ec2:DeleteSecurityGroup", GROUP), ("ec2:AuthorizeSecurityGroupIngress", GROUP),
    ("ec2:RevokeSecurityGroupIngress", GROUP), ("ec2:DeleteKeyPair", KEY),
    ("ec2:CancelSpotInstanceRequests", SPOT_REQUEST), ("ec2:CreateSnapshot", VOLUME), ("ec2:CreateVolume", SNAPSHOT),
    ("ec2:DeleteSnapshot", SNAPSHOT)])
def test_volumes_groups_and_keys_change_only_when_your_own(action, resource):
    assert allowed(action, resource, **MINE)
    assert not allowed(action, resource, **ALICES)
    assert not allowed(action, resource)


@pytest.mark.parametrize("action, resource", [
    ("ec2:RunInstances", INSTANCE), ("ec2:RunInstances", VOLUME), ("ec2:CreateVolume", VOLUME),
    ("ec2:CreateSecurityGroup", GROUP), ("ec2:ImportKeyPair", KEY), ("ec2:RunInstances", SPOT_REQUEST),
    ("ec2:CreateSnapshot", SNAPSHOT)])
def test_resources_are_created_only_with_your_own_gpubox_tags(action, resource):
    assert allowed(action, resource, **tagged("RequestTag", ME))
    assert not allowed(action, resource, **tagged("RequestTag", ALICE))
    assert not allowed(action, resource, **{"aws:RequestTag/gpubox:owner": ME})
    assert not allowed(action, resource)


def test_instances_launch_only_with_your_own_gpubox_key_and_security_group():
    request = tagged("RequestTag", ME)
    for resource in (GROUP, KEY):
        assert allowed("ec2:RunInstances", resource, **request, **MINE)
        assert not allowed("ec2:RunInstances", resource, **request, **ALICES)
        assert not allowed("ec2:RunInstances", resource, **request)
    for resource in (IMAGE, SUBNET, f"{ARN}:network-interface/eni-0123"):
        assert allowed("ec2:RunInstances", resource, **request)
    assert allowed("ec2:CreateSecurityGroup", VPC, **tagged("RequestTag", ME))


@pytest.mark.parametrize("resource", [INSTANCE, VOLUME, GROUP, KEY, f"{ARN}:snapshot/snap-0123"])
def test_tags_are_written_only_while_creating(resource):
    # No way to add gpubox:managed-by (or an owner) to something that exists: not even to your own.
    keys = ["gpubox:managed-by", "gpubox:name", "gpubox:owner"]
    for existing in ({}, MINE, ALICES, LEGACY):
        assert not allowed("ec2:CreateTags", resource, **existing, **tagged("RequestTag", ME), **{"aws:TagKeys": keys})
    for create in ("RunInstances", "CreateVolume", "CreateSecurityGroup", "ImportKeyPair", "CreateSnapshot", "CreateImage"):
        assert allowed("ec2:CreateTags", resource, **{"ec2:CreateAction": create})
    assert not allowed("ec2:CreateTags", resource, **{"ec2:CreateAction": "CopySnapshot"})
    assert not allowed("ec2:DeleteTags", resource, **MINE)


def test_nothing_else_is_writable():
    writes = {a for s in iam.statements() for a in iam._as_list(s["Action"])
              if not a.split(":")[1].startswith(("Describe", "Get"))}
    assert writes == {
        "ec2:RunInstances", "ec2:CreateVolume", "ec2:CreateSecurityGroup", "ec2:ImportKeyPair", "ec2:CreateTags",
        "ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances", "ec2:ModifyInstanceAttribute",
        "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup",
        "ec2:DeleteKeyPair", "ec2:AttachVolume", "ec2:DeleteVolume", "ec2:CancelSpotInstanceRequests",
        "ec2:CreateSnapshot", "ec2:DeleteSnapshot", "iam:CreateServiceLinkedRole", "ec2:CreateImage",
        "ec2:DeregisterImage"}
    for statement in iam.statements():
        assert "*" not in "".join(iam._as_list(statement["Action"])), statement["Sid"]


def test_only_public_image_parameters_are_readable():
    assert allowed("ssm:GetParameters", "arn:aws:ssm:us-east-1::parameter/aws/service/deeplearning/ami/x")
    assert not allowed("ssm:GetParameters", "arn:aws:ssm:us-east-1:123456789012:parameter/my/secret")


def test_the_aws_suite_would_catch_a_call_the_policy_does_not_allow():
    # What an earlier launch called without the policy allowing it (the AWS suite's fixture checks every test).
    calls = [("ec2", "DescribeInstances"), ("sts", "GetCallerIdentity"), ("iam", "ListAccountAliases"),
             ("ec2", "DescribeInstanceStatus"), ("ec2", "DescribeVpcAttribute")]
    assert iam.refused(calls) == ["ec2:DescribeInstanceStatus", "ec2:DescribeVpcAttribute", "iam:ListAccountAliases"]


@pytest.mark.parametrize("resource", [INSTANCE, VOLUME, GROUP, KEY])
def test_a_box_from_before_owner_tags_can_be_made_yours_and_nothing_else(resource):
    claim = {"aws:RequestTag/gpubox:owner": ME, "aws:TagKeys": ["gpubox:owner", "gpubox:owner-arn"]}
    assert allowed("ec2:CreateTags", resource, **LEGACY, **claim)
    # Not another owner's, not yours again, not for someone else, not something gpubox did not make.
    assert not allowed("ec2:CreateTags", resource, **ALICES, **claim)
    assert not allowed("ec2:CreateTags", resource, **MINE, **claim)
    assert not allowed("ec2:CreateTags", resource, **LEGACY, **{**claim, "aws:RequestTag/gpubox:owner": ALICE})
    assert not allowed("ec2:CreateTags", resource, **{"aws:ResourceTag/Name": "gpubox-lab"}, **claim)
    # Only the owner tags: no name, no managed-by.
    for extra in ("gpubox:name", "gpubox:managed-by", "Name"):
        assert not allowed("ec2:CreateTags", resource, **LEGACY,
                           **{**claim, "aws:TagKeys": ["gpubox:owner", extra]})


def test_your_own_instance_takes_its_auto_stop_tags_and_nothing_else():
    setting = {"aws:TagKeys": ["gpubox:autostop-minutes", "gpubox:max-hours"]}
    assert allowed("ec2:CreateTags", INSTANCE, **MINE, **setting)
    # Not another owner's, not an ownerless or foreign instance, not on a volume, group or key.
    for existing in ({}, ALICES, LEGACY, {"aws:ResourceTag/Name": "gpubox-lab"}):
        assert not allowed("ec2:CreateTags", INSTANCE, **existing, **setting)
    for resource in (VOLUME, GROUP, KEY):
        assert not allowed("ec2:CreateTags", resource, **MINE, **setting)
    # No other key rides along: not managed-by, not the owner, not a name.
    for extra in ("gpubox:managed-by", "gpubox:owner", "gpubox:name", "Name"):
        assert not allowed("ec2:CreateTags", INSTANCE, **MINE,
                           **{"aws:TagKeys": ["gpubox:autostop-minutes", extra]})


def test_the_only_role_gpubox_may_create_is_ec2_spots_own():
    spot_role = "arn:aws:iam::123456789012:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
    assert allowed("iam:CreateServiceLinkedRole", spot_role, **{"iam:AWSServiceName": "spot.amazonaws.com"})
    assert not allowed("iam:CreateServiceLinkedRole", spot_role, **{"iam:AWSServiceName": "ec2.amazonaws.com"})
    assert not allowed("iam:CreateServiceLinkedRole", "arn:aws:iam::123456789012:role/admin",
                       **{"iam:AWSServiceName": "spot.amazonaws.com"})


# Baked images (bake.yml, images.yml, teardown -e delete_images=true).
BAKED = "arn:aws:ec2:us-east-1::image/ami-0baked"


def test_images_are_made_only_of_your_own_gpubox_instances():
    request = tagged("RequestTag", ME)
    assert allowed("ec2:CreateImage", INSTANCE, **MINE, **request)
    for other in (ALICES, LEGACY, {}):
        assert not allowed("ec2:CreateImage", INSTANCE, **other, **request)


def test_images_and_their_snapshots_are_made_only_with_your_own_gpubox_tags():
    for resource in (BAKED, SNAPSHOT):
        assert allowed("ec2:CreateImage", resource, **tagged("RequestTag", ME))
        assert not allowed("ec2:CreateImage", resource, **tagged("RequestTag", ALICE))
        assert not allowed("ec2:CreateImage", resource, **{"aws:RequestTag/gpubox:owner": ME})
        assert not allowed("ec2:CreateImage", resource)
        # Their tags are written by CreateImage itself, never afterwards.
        assert allowed("ec2:CreateTags", resource, **{"ec2:CreateAction": "CreateImage"})
        assert not allowed("ec2:CreateTags", resource, **tagged("RequestTag", ME))


def test_only_your_own_images_are_deregistered_and_their_snapshots_deleted():
    for action, resource in (("ec2:DeregisterImage", BAKED), ("ec2:DeleteSnapshot", SNAPSHOT)):
        assert allowed(action, resource, **MINE)
        for other in (ALICES, LEGACY, {}):
            assert not allowed(action, resource, **other)
    # Another image of the account (an AMI you made by hand): not even with a look-alike name.
    assert not allowed("ec2:DeregisterImage", BAKED, **{"aws:ResourceTag/Name": "gpubox-lab-20261201-0900"})
