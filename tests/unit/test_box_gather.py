"""The gather's reads and the create module's token walk, with AWS answers stubbed by botocore's Stubber.

The emulator has no EC2 quotas and ignores ClientTokens, so these decisions are checked against the
answers AWS documents. Stubber also proves what gpubox sends: a request that was not expected fails.
"""

import datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber

from ansible_collections.amazon.aws.plugins.module_utils import cloud
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from ansible_collections.gpubox.box.plugins.module_utils import box_gather as gather
from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity
from ansible_collections.gpubox.box.plugins.module_utils.box_retry import RETRY
from ansible_collections.gpubox.box.plugins.modules import ec2_box_create as create

MANAGED = {"Name": "tag:gpubox:managed-by", "Values": ["gpubox"]}


def client(service):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")


def retrying(ec2):
    """The client as the create module gets it (AnsibleAWSModule.client with its retry decorator)."""
    return RetryingBotoClientWrapper(ec2, RETRY)


def aws_instance(iid, name, state="running", itype="g5.xlarge", generation=None, **tags):
    tag_list = [{"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": name}]
    if generation is not None:
        tag_list.append({"Key": identity.GENERATION, "Value": str(generation)})
    tag_list += [{"Key": k, "Value": v} for k, v in tags.items()]
    return {"InstanceId": iid, "InstanceType": itype, "State": {"Name": state}, "Tags": tag_list,
            "CpuOptions": {"CoreCount": 2, "ThreadsPerCore": 2}}


# --- Reads

def test_instances_are_found_by_exact_escaped_tags_and_look_alikes_are_dropped():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [
            aws_instance("i-1", "lab"), aws_instance("i-2", "lab-data"), aws_instance("i-3", "LAB")]}]},
            {"Filters": [MANAGED, {"Name": "tag:gpubox:name", "Values": ["lab"]}]})
        found = gather.read_instances(ec2, "lab")
    assert [i["instance_id"] for i in found] == ["i-1"]
    assert found[0]["tags"]["gpubox:name"] == "lab" and found[0]["state"] == {"name": "running"}


def test_a_wildcard_in_a_name_reaches_aws_escaped():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [aws_instance("i-1", "x1")]}]},
                          {"Filters": [MANAGED, {"Name": "tag:gpubox:name", "Values": ["x\\*"]}]})
        assert gather.read_instances(ec2, "x*") == []


def test_a_name_that_is_not_a_box_name_is_never_sent():
    sts, ec2 = client("sts"), client("ec2")
    with Stubber(sts) as sts_stub, Stubber(ec2):
        sts_stub.add_response("get_caller_identity", {"UserId": "AIDAME", "Account": "123456789012",
                                                      "Arn": "arn:aws:iam::123456789012:user/me"})
        found = gather.gather({"sts": sts, "ec2": ec2}.get, {"action": "teardown", "name": "x*", "region": "us-east-1"}, {}, {})
    # Stubber fails on any EC2 call that was not expected: there was none.
    assert found["caller"]["user_id"] == "AIDAME" and "instances" not in found


def test_security_groups_and_key_pairs_by_their_exact_name():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_security_groups", {"SecurityGroups": [
            {"GroupId": "sg-1", "GroupName": "gpubox-lab", "VpcId": "vpc-1", "OwnerId": "1", "Description": "d",
             "Tags": [{"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": "lab"}],
             "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}]},
            {"GroupId": "sg-2", "GroupName": "gpubox-lab2", "VpcId": "vpc-1", "OwnerId": "1", "Description": "d"}]},
            {"Filters": [{"Name": "group-name", "Values": ["gpubox-lab"]}]})
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [aws_instance("i-9", "other")]}]},
                          {"Filters": [{"Name": "instance.group-id", "Values": ["sg-1"]},
                                       {"Name": "instance-state-name", "Values": list(identity.LIVE_STATES)}]})
        stub.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "gpubox-lab", "KeyPairId": "key-1",
                                                               "PublicKey": "ssh-ed25519 AAAAkey imported@laptop"}]},
                          {"Filters": [{"Name": "key-name", "Values": ["gpubox-lab"]}], "IncludePublicKey": True})
        groups = gather.read_security_groups(ec2, "lab", with_users=True)
        keys = gather.read_key_pairs(ec2, "lab", with_users=True)
    assert [g["group_id"] for g in groups] == ["sg-1"] and groups[0]["used_by"] == ["i-9"]
    assert groups[0]["ingress"] == [{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidrs": ["203.0.113.7/32"],
                                     "ipv6_cidrs": [], "other": False}]
    # A key pair without gpubox's tags is listed (the planner refuses to take it over) but its users are not read.
    assert keys == [{"name": "gpubox-lab", "id": "key-1", "fingerprint": "", "tags": {}, "public_key": "ssh-ed25519 AAAAkey"}]


def test_a_failed_read_is_recorded_for_the_planner_not_raised():
    sts, ec2 = client("sts"), client("ec2")
    with Stubber(sts) as sts_stub, Stubber(ec2) as ec2_stub:
        sts_stub.add_response("get_caller_identity", {"UserId": "AIDAME", "Account": "1", "Arn": "arn:aws:iam::1:user/me"})
        ec2_stub.add_response("describe_instances", {"Reservations": []})
        ec2_stub.add_client_error("describe_volumes", service_error_code="UnauthorizedOperation", service_message="no")
        found = gather.gather({"sts": sts, "ec2": ec2}.get, {"action": "stop", "name": "lab"}, {}, {})
    assert found["errors"] == [{"read": "volumes", "code": "UnauthorizedOperation", "message": ANY}]


def test_missing_credentials_stop_the_gather_at_once():
    sts = client("sts")
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", service_error_code="InvalidClientTokenId", service_message="bad")
        found = gather.gather({"sts": sts}.get, {"action": "status"}, {}, {})
    assert [e["read"] for e in found["errors"]] == ["caller"] and "caller" not in found


def test_quota_is_read():
    sq = client("service-quotas")
    with Stubber(sq) as stub:
        stub.add_response("get_service_quota", {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": 8.0}},
                          {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
        assert gather.read_quota(sq, "L-DB2E81BA") == {"value": 8.0, "error": ""}


@pytest.mark.parametrize("code", ["AccessDeniedException", "NoSuchResourceException"])
def test_unreadable_quota_is_reported_not_raised(code):
    sq = client("service-quotas")
    with Stubber(sq) as stub:
        stub.add_client_error("get_service_quota", service_error_code=code, service_message="nope")
        answer = gather.read_quota(sq, "L-DB2E81BA")
    assert answer["value"] is None and answer["error"].startswith(code)


def test_running_vcpus_count_only_each_quotas_families():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": [
            {"Instances": [aws_instance("i-1", "a", itype="g5.xlarge"), aws_instance("i-2", "b", itype="vt1.3xlarge")]},
            {"Instances": [aws_instance("i-3", "c", itype="p3.2xlarge"), aws_instance("i-4", "d", itype="t3.micro")]},
        ]}, {"Filters": [{"Name": "instance-state-name", "Values": ["pending", "running"]}]})
        used = gather.running_vcpus(ec2, {"L-DB2E81BA": "^(g|vt)", "L-417A185B": "^p"})
    assert used == {"L-DB2E81BA": 8, "L-417A185B": 4}


def test_the_quota_is_not_read_for_a_box_that_already_runs_with_its_type():
    running = [{"instance_type": "g5.xlarge", "state": {"name": "running"}}]
    assert not gather._needs_quota(running, "")
    assert not gather._needs_quota(running, "g5.xlarge")
    assert gather._needs_quota(running, "g6.xlarge")
    assert gather._needs_quota([{"instance_type": "g5.xlarge", "state": {"name": "stopped"}}], "")


# --- Creating once, with the token of the first generation not spent

TOKEN = {"owner": "AIDAME", "name": "lab", "resource": "instance", "generation": 3}
PARAMS = {"ImageId": "ami-1", "InstanceType": "g5.xlarge",
          "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "gpubox:name", "Value": "lab"}]}]}
BOX_TAGS = [{"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": "lab"},
            {"Key": "gpubox:owner", "Value": "AIDAME"}]
LIVE_OF_BOX = {"Filters": [MANAGED, {"Name": "tag:gpubox:name", "Values": ["lab"]},
                           {"Name": "tag:gpubox:owner", "Values": ["AIDAME"]},
                           {"Name": "instance-state-name", "Values": list(identity.LIVE_STATES)}]}


NOW = datetime.datetime.now(datetime.timezone.utc)
LONG_AGO = NOW - datetime.timedelta(days=1)


def expect_run(stub, generation, answer=None, error=None, made=None):
    expected = {"ClientToken": identity.client_token("AIDAME", "lab", "instance", generation), "MinCount": 1,
                "MaxCount": 1, "ImageId": "ami-1", "InstanceType": "g5.xlarge", "SecurityGroupIds": ["sg-1"],
                "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                    {"Key": "gpubox:name", "Value": "lab"}, {"Key": identity.GENERATION, "Value": str(generation)}]}]}
    if error:
        stub.add_client_error("run_instances", service_error_code=error, expected_params=expected)
    else:
        stub.add_response("run_instances", {"Instances": [{"InstanceId": answer, "LaunchTime": made or NOW}]}, expected)


def expect_state(stub, iid, state, tags=BOX_TAGS, reason=""):
    instance = {"InstanceId": iid, "State": {"Name": state}, "Tags": tags}
    if reason:
        instance["StateReason"] = {"Code": reason.split(":")[0], "Message": reason}
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [instance]}]}, {"InstanceIds": [iid]})


def create_instance(ec2):
    return create.create_once(retrying(ec2), "instance", TOKEN, PARAMS, ["sg-1"], sleep=lambda s: None)


ENDED_BY_A_USER = "Client.UserInitiatedShutdown: User initiated shutdown"


# Each case: what EC2 answers, in order, and what create_once returns.
CREATE_CASES = {
    "the first generation creates it": (
        [("run", 3, "i-new", NOW), ("listed", "i-new", "pending", BOX_TAGS)], ("i-new", 3)),
    "a spent token's terminated instance moves on": (  # EC2 answers a spent token with its old instance
        [("run", 3, "i-old", LONG_AGO), ("listed", "i-old", "terminated", BOX_TAGS),
         ("run", 4, "i-new", NOW), ("listed", "i-new", "pending", BOX_TAGS)], ("i-new", 4)),
    "a new instance listed late is waited for, not taken for gone": (
        [("run", 3, "i-new", NOW), ("not listed", "i-new"), ("listed", "i-new", "pending", []),  # tags not yet
         ("listed", "i-new", "pending", BOX_TAGS)], ("i-new", 3)),
    "a new instance someone ended (a launch, a teardown, a launch) is a spent token's": (
        [("run", 3, "i-ended", NOW), ("listed", "i-ended", "terminated", BOX_TAGS, ENDED_BY_A_USER),
         ("run", 4, "i-new", NOW), ("listed", "i-new", "pending", BOX_TAGS)], ("i-new", 4)),
    "an old instance no longer listed is a spent token's": (
        [("run", 3, "i-gone", LONG_AGO), ("not listed", "i-gone"),
         ("run", 4, "i-new", NOW), ("listed", "i-new", "pending", BOX_TAGS)], ("i-new", 4)),
}


@pytest.mark.parametrize("answers, created", CREATE_CASES.values(), ids=list(CREATE_CASES))
def test_create_once(answers, created):
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        for kind, *details in answers:
            if kind == "run":
                generation, instance_id, made = details
                expect_run(stub, generation, answer=instance_id, made=made)
            elif kind == "listed":
                expect_state(stub, *details)
            else:
                stub.add_client_error("describe_instances", service_error_code="InvalidInstanceID.NotFound",
                                      expected_params={"InstanceIds": [details[0]]})
        assert create_instance(ec2) == created


def test_an_instance_ec2_ended_as_it_started_is_refused_with_its_reason():
    """Another generation would only die the same way, and the reason is what the user must fix."""
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        expect_run(stub, 3, answer="i-dead", made=NOW)
        expect_state(stub, "i-dead", "terminated", reason="Client.InternalError: Client error on launch")
        with pytest.raises(create.Refused, match=r"EC2 ended instance i-dead as it started: Client.InternalError: "
                                                 r"Client error on launch\. Nothing else was created"):
            create_instance(ec2)


def test_the_token_carries_the_boxs_security_group():
    """A teardown deletes the group, so a box launched again after one meets none of its spent tokens."""
    first = identity.client_token("AIDAME", "lab", "instance", 1, "sg-1")
    assert first == identity.client_token("AIDAME", "lab", "instance", 1, "sg-1")
    assert first != identity.client_token("AIDAME", "lab", "instance", 1, "sg-2")
    assert first != identity.client_token("AIDAME", "lab", "instance", 1)
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("run_instances", {"Instances": [{"InstanceId": "i-new", "LaunchTime": NOW}]},
                          {"ClientToken": first, "MinCount": 1, "MaxCount": 1, **create._with_generation(PARAMS, 1),
                           "SecurityGroupIds": ["sg-1"]})
        expect_state(stub, "i-new", "pending")
        token = {**TOKEN, "generation": 1, "salt": "sg-1"}
        assert create.create_once(retrying(ec2), "instance", token, PARAMS, ["sg-1"], sleep=lambda s: None) == ("i-new", 1)


def test_a_throttled_launch_is_sent_again_with_the_same_token(monkeypatch):
    """amazon.aws's retry decorator: EC2's request limit is waited out; the same ClientToken makes the retry safe."""
    slept = []
    monkeypatch.setattr(cloud.time, "sleep", slept.append)
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        expect_run(stub, 3, error="RequestLimitExceeded")
        expect_run(stub, 3, answer="i-new")
        expect_state(stub, "i-new", "pending")
        assert create_instance(ec2) == ("i-new", 3)
    assert len(slept) == 1


def test_an_answer_that_is_not_the_box_is_refused():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        expect_run(stub, 3, answer="i-theirs", made=LONG_AGO)
        expect_state(stub, "i-theirs", "running", tags=[{"Key": "gpubox:name", "Value": "lab"}])
        with pytest.raises(create.Refused, match="EC2 answered with i-theirs, which is not box 'lab'"):
            create_instance(ec2)


def test_a_spent_token_with_other_settings_moves_on_only_when_no_instance_of_the_box_shows_up():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        expect_run(stub, 3, error="IdempotentParameterMismatch")
        for _ in range(create.MISMATCH_POLLS):  # EC2 lists a new instance late: it looks several times
            stub.add_response("describe_instances", {"Reservations": []}, LIVE_OF_BOX)
        expect_run(stub, 4, answer="i-new")
        expect_state(stub, "i-new", "pending")
        assert create_instance(ec2) == ("i-new", 4)

    with Stubber(ec2) as stub:
        expect_run(stub, 3, error="IdempotentParameterMismatch")
        stub.add_response("describe_instances", {"Reservations": []}, LIVE_OF_BOX)
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [{"InstanceId": "i-twin"}]}]},
                          LIVE_OF_BOX)
        with pytest.raises(create.Refused, match=r"Another run created box 'lab' at the same time .*\(i-twin\)"):
            create_instance(ec2)


def test_a_key_pair_or_group_made_meanwhile_is_used_only_when_it_is_the_boxs():
    ec2 = client("ec2")
    key = {"KeyName": "gpubox-lab", "TagSpecifications": []}
    lookup = {"Filters": [{"Name": "key-name", "Values": ["gpubox-lab"]}]}
    with Stubber(ec2) as stub:
        stub.add_client_error("import_key_pair", service_error_code="InvalidKeyPair.Duplicate")
        stub.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "gpubox-lab", "Tags": BOX_TAGS}]}, lookup)
        assert create.create_named(retrying(ec2), "key_pair", TOKEN, key, b"ssh-ed25519 AAAA me") == ("gpubox-lab", False)
    with Stubber(ec2) as stub:
        stub.add_client_error("import_key_pair", service_error_code="InvalidKeyPair.Duplicate")
        stub.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "gpubox-lab", "Tags": [
            {"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": "lab"},
            {"Key": "gpubox:owner", "Value": "AIDAALICE"}]}]}, lookup)
        with pytest.raises(create.Refused, match="A key pair named gpubox-lab appeared since gpubox looked"):
            create.create_named(retrying(ec2), "key_pair", TOKEN, key, b"ssh-ed25519 AAAA me")

    group = {"GroupName": "gpubox-lab", "Description": "d", "VpcId": "vpc-1", "TagSpecifications": []}
    with Stubber(ec2) as stub:
        stub.add_client_error("create_security_group", service_error_code="InvalidGroup.Duplicate")
        stub.add_response("describe_security_groups", {"SecurityGroups": [
            {"GroupId": "sg-mine", "GroupName": "gpubox-lab", "Tags": BOX_TAGS}]},
            {"Filters": [{"Name": "group-name", "Values": ["gpubox-lab"]}, {"Name": "vpc-id", "Values": ["vpc-1"]}]})
        # Used as it is: its rules are the other run's business.
        assert create.create_named(retrying(ec2), "security_group", TOKEN, group, ingress=[{"IpProtocol": "tcp"}]) == ("sg-mine", False)


def test_every_command_the_planner_takes_is_gathered_for():
    from ansible_collections.gpubox.box.plugins.action import box_plan as action
    assert set(action.ARGUMENT_SPEC["action"]["choices"]) <= set(gather.READS)
